//! [`Word`]: a column value from a small vocabulary (a state, a region, a kind of request,
//! an answer, an outcome). A million-order run's records hold tens of millions of such
//! values and a few dozen distinct ones: the ones the rig knows are shared, not allocated
//! per row (the verifier reads rows on one thread and drops them on another, where every
//! allocation costs twice). Any other value is kept as read, so nothing a system writes is
//! lost or changed.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use serde::{Serialize, Serializer};

/// A short text value; compares, hashes, prints and serialises as its text.
#[derive(Clone)]
pub struct Word(Repr);

#[derive(Clone)]
enum Repr {
    Known(&'static str),
    Other(Box<str>),
}

/// The values the rig's records use, shared instead of allocated, by length (one length
/// test picks the few to compare).
fn known(text: &str) -> Option<&'static str> {
    let candidates: &[&'static str] = match text.len() {
        0 => &[""],
        1 => &["a", "b"],
        3 => &["USD", "EUR"],
        4 => &["poll", "void"],
        5 => &["retry", "error"],
        6 => &["repair", "failed", "charge", "lookup", "refund", "voided"],
        7 => &["pending", "invalid", "timeout", "unknown", "dropped"],
        8 => &[
            "checkout", "operator", "rejected", "conflict", "accepted", "declined", "refunded",
        ],
        9 => &["confirmed", "duplicate"],
        10 => &["final_poll", "authorized"],
        12 => &["double_click"],
        13 => &["failed_safely", "connect_error"],
        15 => &["order_confirmed", "payment_pending"],
        18 => &["order_intent_saved", "inventory_reserved"],
        19 => &["payment_authorizing"],
        20 => &["needs_reconciliation"],
        _ => &[],
    };
    candidates.iter().find(|word| **word == text).copied()
}

impl Word {
    /// `text` as a word: shared when the rig knows it, else a copy.
    pub fn new(text: &str) -> Self {
        match known(text) {
            Some(word) => Self(Repr::Known(word)),
            None => Self(Repr::Other(text.into())),
        }
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Known(word) => word,
            Repr::Other(text) => text,
        }
    }
}

impl Default for Word {
    fn default() -> Self {
        Self(Repr::Known(""))
    }
}

impl From<&str> for Word {
    fn from(text: &str) -> Self {
        Self::new(text)
    }
}

impl From<String> for Word {
    fn from(text: String) -> Self {
        match known(&text) {
            Some(word) => Self(Repr::Known(word)),
            None => Self(Repr::Other(text.into_boxed_str())),
        }
    }
}

impl Deref for Word {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Word {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for Word {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Word {}

impl PartialEq<str> for Word {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Word {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Word {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialOrd for Word {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Word {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for Word {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Display for Word {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Word {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Serialize for Word {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A known value and the same text read from elsewhere are one word; an unknown value
    /// is kept exactly; both print and serialise as their text.
    #[test]
    fn words_are_their_text() {
        let shared = Word::new("order_confirmed");
        let owned = Word::from(String::from("order_confirmed"));
        let other = Word::new("a state no one knows \u{e9}");
        assert!(matches!(shared.0, Repr::Known(_)));
        assert!(matches!(owned.0, Repr::Known(_)));
        assert!(matches!(other.0, Repr::Other(_)));
        assert_eq!(shared, owned);
        assert_eq!(shared, "order_confirmed");
        assert_eq!(other.as_str(), "a state no one knows \u{e9}");
        assert!(Word::new("a") < Word::new("b"));
        assert_eq!(format!("{other}"), "a state no one knows \u{e9}");
        assert_eq!(format!("{shared:?}"), "\"order_confirmed\"");
        assert_eq!(
            serde_json::to_string(&other).unwrap(),
            "\"a state no one knows \u{e9}\""
        );
        assert_eq!(Word::default(), "");
        for word in [
            "order_intent_saved",
            "needs_reconciliation",
            "payment_authorizing",
            "connect_error",
            "double_click",
            "final_poll",
            "a",
            "USD",
        ] {
            assert_eq!(known(word), Some(word), "{word} is shared");
        }
        assert_eq!(known("c"), None);
    }
}
