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

/// An identifier as a row carries it (an order id, an event id, a charge id, a provider
/// key): up to 22 bytes kept inline, a longer one on the heap. Every row of every store
/// names its order, most also an event or a charge: kept inline, reading tens of millions
/// of rows allocates (and frees, on another thread) none for them. Compared byte-wise, as
/// the merge orders keys.
#[derive(Clone)]
pub struct Key(KeyRepr);

#[derive(Clone)]
enum KeyRepr {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<str>),
}

/// The longest key kept inline (the enum stays three words).
const INLINE: usize = 22;

impl Key {
    pub fn new(text: &str) -> Self {
        match u8::try_from(text.len()) {
            Ok(len) if text.len() <= INLINE => {
                let mut bytes = [0u8; INLINE];
                bytes[..text.len()].copy_from_slice(text.as_bytes());
                Self(KeyRepr::Inline { len, bytes })
            }
            _ => Self(KeyRepr::Heap(text.into())),
        }
    }

    /// The key's bytes (UTF-8): what the merge compares.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            KeyRepr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            KeyRepr::Heap(text) => text.as_bytes(),
        }
    }

    /// The key as text (checked again: it was text when made, so this never fails, but it
    /// costs a pass; the merge uses [`Key::as_bytes`]).
    pub fn as_str(&self) -> &str {
        match &self.0 {
            KeyRepr::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            KeyRepr::Heap(text) => text,
        }
    }
}

impl Default for Key {
    fn default() -> Self {
        Self::new("")
    }
}

impl From<&str> for Key {
    fn from(text: &str) -> Self {
        Self::new(text)
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Key {}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl PartialEq<&str> for Key {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Serialize for Key {
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

    /// Keys up to the inline length and past it are their text, byte for byte; they sort
    /// as their bytes.
    #[test]
    fn keys_are_their_text() {
        for text in [
            "",
            "o00000001",
            "run-7f3a-1234567890123",
            "run-7f3a-12345678901234",
            "\u{e9}t\u{e9}",
        ] {
            let key = Key::new(text);
            assert_eq!(key.as_str(), text);
            assert_eq!(key.as_bytes(), text.as_bytes());
            assert_eq!(key, text);
            assert_eq!(
                serde_json::to_string(&key).unwrap(),
                serde_json::to_string(text).unwrap()
            );
        }
        assert!(matches!(
            Key::new("1234567890123456789012").0,
            KeyRepr::Inline { .. }
        ));
        assert!(matches!(
            Key::new("12345678901234567890123").0,
            KeyRepr::Heap(_)
        ));
        assert!(Key::new("r-10").as_bytes() < Key::new("r-9").as_bytes());
        assert_eq!(std::mem::size_of::<Key>(), 24);
    }
}
