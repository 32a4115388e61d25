//! Validated identifier newtypes (DIGEST §4.3, §4.5, §4.7; OP-19).
//!
//! Every constructor checks its input, so a value of one of these types is always well formed.
//! Federation IDs are case-insensitive: they are lowercased (ASCII) before validation and
//! stored lowercased.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why an identifier was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("local name must be 1 to {max} characters of a-z, 0-9, '.', '_', '%', '+', '-'")]
    LocalName { max: usize },
    #[error("domain name must be dot-separated labels of a-z, 0-9 and '-' (no port)")]
    Domain,
    #[error("federation ID must have the form localname@domain")]
    FederationId,
    #[error("session ID must be 1 to 32 printable ASCII characters")]
    SessionId,
}

/// Longest local name accepted from any server (the reference SDK's limit, OP-19).
pub const MAX_FOREIGN_LOCAL_NAME: usize = 160;

fn local_char(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-')
}

/// The part of a federation ID before the `@`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LocalName(String);

impl LocalName {
    /// Lowercases and validates `raw`; at most `max` characters.
    pub fn parse_with_max(raw: &str, max: usize) -> Result<Self, IdError> {
        let lower = raw.to_ascii_lowercase();
        let max = max.min(MAX_FOREIGN_LOCAL_NAME);
        if lower.is_empty() || lower.len() > max || !lower.bytes().all(local_char) {
            return Err(IdError::LocalName { max });
        }
        Ok(Self(lower))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for LocalName {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Self::parse_with_max(s, MAX_FOREIGN_LOCAL_NAME)
    }
}

/// A DNS name without port: the visible domain of a home server.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DomainName(String);

impl DomainName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The domain components in written order (`["example", "com"]`).
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('.')
    }
}

impl FromStr for DomainName {
    type Err = IdError;
    fn from_str(raw: &str) -> Result<Self, IdError> {
        let lower = raw.to_ascii_lowercase();
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        };
        if lower.is_empty() || lower.len() > 253 || !lower.split('.').all(label_ok) {
            return Err(IdError::Domain);
        }
        Ok(Self(lower))
    }
}

/// `localname@domain`, lowercased.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FederationId {
    local: LocalName,
    domain: DomainName,
}

impl FederationId {
    pub fn new(local: LocalName, domain: DomainName) -> Self {
        Self { local, domain }
    }

    pub fn local_name(&self) -> &LocalName {
        &self.local
    }

    pub fn domain(&self) -> &DomainName {
        &self.domain
    }
}

impl FromStr for FederationId {
    type Err = IdError;
    fn from_str(raw: &str) -> Result<Self, IdError> {
        let (local, domain) = raw.rsplit_once('@').ok_or(IdError::FederationId)?;
        let local = local.parse().map_err(|_| IdError::FederationId)?;
        let domain = domain.parse().map_err(|_| IdError::FederationId)?;
        Ok(Self { local, domain })
    }
}

impl fmt::Display for FederationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local.0, self.domain.0)
    }
}

impl fmt::Display for LocalName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Session ID: 1–32 IA5 characters chosen by the client (DIGEST §4.5). We accept printable
/// ASCII without spaces, a subset of IA5 that survives query strings and logs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(String);

impl SessionId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for SessionId {
    type Err = IdError;
    fn from_str(raw: &str) -> Result<Self, IdError> {
        if raw.is_empty() || raw.len() > 32 || !raw.bytes().all(|c| c.is_ascii_graphic()) {
            return Err(IdError::SessionId);
        }
        Ok(Self(raw.to_owned()))
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Certificate serial number. Issued serials are random, positive and fit in 63 bits
/// (OP-43), so they survive every u64/i64 conversion on the way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Serial(pub u64);

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

macro_rules! string_serde {
    ($($ty:ty),*) => {$(
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = std::borrow::Cow::<str>::deserialize(d)?;
                raw.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}
string_serde!(FederationId, LocalName, DomainName, SessionId);

impl Serialize for Serial {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::wire::u64_string::serialize(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for Serial {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::wire::u64_string::deserialize(d).map(Serial)
    }
}

impl FromStr for Serial {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim().parse().map(Serial)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn federation_ids_are_lowercased_and_validated() {
        let fid: FederationId = "Alice@Example.COM".parse().unwrap();
        assert_eq!(fid.to_string(), "alice@example.com");
        for bad in [
            "alice",
            "@example.com",
            "alice@",
            "al ice@example.com",
            "a@b:8080",
            "a@-x.com",
            "a@x..com",
        ] {
            assert!(bad.parse::<FederationId>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn local_names_respect_the_configured_maximum() {
        assert!(LocalName::parse_with_max("abc", 3).is_ok());
        assert!(LocalName::parse_with_max("abcd", 3).is_err());
        assert!(LocalName::parse_with_max("", 3).is_err());
        assert!(LocalName::parse_with_max("bob/x", 32).is_err());
    }

    #[test]
    fn session_ids_are_one_to_32_visible_ascii_characters() {
        assert!("laptop-1".parse::<SessionId>().is_ok());
        assert!("a".repeat(32).parse::<SessionId>().is_ok());
        assert!("a".repeat(33).parse::<SessionId>().is_err());
        assert!("".parse::<SessionId>().is_err());
        assert!("with space".parse::<SessionId>().is_err());
        assert!("ümlaut".parse::<SessionId>().is_err());
    }
}
