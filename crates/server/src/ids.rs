//! Identifiers of the server's own rows, typed, and the one place where the store's `i64`
//! integers become the server's unsigned ones and back.
//!
//! `fugue-store` speaks plain `i64` (it knows no protocol types); the server converts at
//! that boundary and passes [`ActorId`], [`SessionPk`] and [`UnixTime`](crate::time::UnixTime)
//! around instead, so an actor id cannot stand in for a session key. Both serialise as the
//! bare number, so what travels over the cluster bus is unchanged.

use serde::{Deserialize, Serialize};

/// An actor's primary key (`actors.id`), local or foreign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ActorId(i64);

/// A session's primary key (`sessions.id`); not the session ID the protocol shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionPk(i64);

/// A stream's id (`streams.id`): an actor's own stream has the actor's id, a guild's or a
/// conversation's the id of the guild or conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StreamId(i64);

impl StreamId {
    /// The actor's own stream.
    pub const fn of_actor(actor: ActorId) -> Self {
        Self(actor.0)
    }
}

macro_rules! row_key {
    ($t:ident) => {
        impl $t {
            /// The key as the store holds it.
            pub const fn from_store(v: i64) -> Self {
                Self(v)
            }
            pub const fn to_store(self) -> i64 {
                self.0
            }
        }

        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $t {
            type Err = std::num::ParseIntError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map(Self)
            }
        }
    };
}

row_key!(ActorId);
row_key!(SessionPk);
row_key!(StreamId);

/// A count, position, serial or time for the store: values past `i64::MAX` (which no real
/// one reaches) saturate rather than wrap.
pub(crate) fn to_store(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A stored non-negative integer back: a negative one (which the server never writes) reads
/// as 0 rather than wrapping to a huge value.
pub(crate) fn from_store(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}
