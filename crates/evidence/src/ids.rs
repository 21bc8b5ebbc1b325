//! The identities every record carries: the two regions, and which region owns an order.

use serde::{Deserialize, Serialize};

use crate::seed::fnv1a64;

/// One of the two regions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegionId {
    A,
    B,
}

impl RegionId {
    pub const ALL: [RegionId; 2] = [RegionId::A, RegionId::B];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::A => "a",
            Self::B => "b",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "a" => Some(Self::A),
            "b" => Some(Self::B),
            _ => None,
        }
    }

    pub fn peer(self) -> Self {
        match self {
            Self::A => Self::B,
            Self::B => Self::A,
        }
    }
}

impl std::fmt::Display for RegionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The owner region of an order: a pure, stable function of its id (FNV-1a, so it never
/// changes between runs, processes or versions).
pub fn owner_of(order_id: &str) -> RegionId {
    if fnv1a64(order_id.as_bytes()).is_multiple_of(2) {
        RegionId::A
    } else {
        RegionId::B
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ownership is pinned: both regions own orders, and a given id always maps the same way.
    #[test]
    fn owner_is_stable_and_splits_the_ids() {
        let owners: Vec<RegionId> = (0..64).map(|i| owner_of(&format!("ord-{i}"))).collect();
        assert!(owners.contains(&RegionId::A) && owners.contains(&RegionId::B));
        assert_eq!(owner_of("ord-1"), owner_of("ord-1"));
        assert_eq!(RegionId::parse("b"), Some(RegionId::B));
        assert_eq!(RegionId::A.peer(), RegionId::B);
    }
}
