//! [`UnixTime`]: a point in time as the protocol counts it, whole seconds since the Unix
//! epoch.

use serde::{Deserialize, Serialize};

use crate::ids::{from_store, to_store};

/// Seconds since 1970-01-01T00:00:00Z. Serialises as the bare number.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct UnixTime(pub u64);

impl UnixTime {
    pub const fn secs(self) -> u64 {
        self.0
    }

    /// The time `s` seconds earlier, or the epoch.
    pub const fn minus(self, s: u64) -> Self {
        Self(self.0.saturating_sub(s))
    }

    /// The time `s` seconds later, saturating.
    pub const fn plus(self, s: u64) -> Self {
        Self(self.0.saturating_add(s))
    }

    /// The time as the store holds it.
    pub fn to_store(self) -> i64 {
        to_store(self.0)
    }

    pub fn from_store(v: i64) -> Self {
        Self(from_store(v))
    }
}

impl From<u64> for UnixTime {
    fn from(s: u64) -> Self {
        Self(s)
    }
}

impl std::fmt::Display for UnixTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
