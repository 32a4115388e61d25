//! Resource addressing with relative roots (RawR, core §7.3.1): resource IDs, access
//! properties and the models of the seven resource endpoints.
//!
//! Access properties arrive in two forms (OP-29): the reference SDK's form style in the
//! upload's query (`private,true,public,false,allowlist,a@x.y,x.y,denylist,`) and a JSON
//! object (the `PUT` body, or the query value as JSON). Both parse into one
//! [`AccessProperties`], which decides who may read a resource ([`AccessProperties::admits`]).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{DomainName, FederationId};

/// The longest resource ID (the OpenAPI's `charLimit`).
pub const RID_MAX: usize = 64;
/// The most entries an allow- or denylist holds.
pub const ACCESS_LIST_MAX: usize = 256;
/// Names that are never a resource: path segments below `resource/` that name other
/// endpoints, and the access file beside resources in an export.
const RESERVED: [&str; 3] = ["resources", "usage", crate::export::ACCESS_FILE];

/// A resource ID: 1 to [`RID_MAX`] characters of `A–Z a–z 0–9 . _ -`, not starting with a
/// dot, and not one of the endpoint names beside it (`resources`, `usage`) nor the name of
/// an export's access file (`access_properties.p2al`, core §7.3.2). Unique on the
/// server that stores the resource, and the same after a move to another server.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ResourceId(String);

/// Why a string is not a [`ResourceId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RidError {
    #[error("a resource ID has at most {RID_MAX} characters")]
    TooLong,
    #[error(
        "a resource ID is 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' and '-', not starting with '.', and not \"resources\" or \"usage\""
    )]
    Invalid,
}

impl ResourceId {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The extension the ID ends with (`jxl` of `2c85….jxl`), if any.
    pub fn extension(&self) -> Option<&str> {
        self.0.rsplit_once('.').map(|(_, ext)| ext)
    }

    /// A fresh ID for `content_hash` (the SHA-256 of the bytes), as core §7.3.1 suggests:
    /// the hash of a random nonce and the content's hash, in hex, so that equal files
    /// uploaded twice still get two IDs and an ID reveals nothing of its content.
    pub fn derive(nonce: &[u8; 32], content_hash: &[u8; 32]) -> Self {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(nonce);
        h.update(content_hash);
        Self(hex::encode(h.finalize()))
    }
}

impl FromStr for ResourceId {
    type Err = RidError;
    fn from_str(s: &str) -> Result<Self, RidError> {
        if s.chars().count() > RID_MAX {
            return Err(RidError::TooLong);
        }
        let ok = !s.is_empty()
            && !s.starts_with('.')
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            && !RESERVED.contains(&s);
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(RidError::Invalid)
        }
    }
}

impl TryFrom<String> for ResourceId {
    type Error = RidError;
    fn try_from(s: String) -> Result<Self, RidError> {
        s.parse()
    }
}

impl From<ResourceId> for String {
    fn from(r: ResourceId) -> String {
        r.0
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who may read a resource (`ResourceAccessProperties`). Entries of the lists are FIDs or
/// whole server domains. `public` needs no session at all and ignores the lists;
/// `private` admits only the uploader and the allowlist; otherwise any session of this
/// server (also another server's actor) may read it. The denylist wins over everything
/// but the uploader.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessProperties {
    #[serde(default)]
    pub private: bool,
    /// Always written (OP-30); `false` when absent on input.
    #[serde(default)]
    pub public: bool,
    #[serde(default)]
    pub allowlist: Vec<AccessEntry>,
    #[serde(default)]
    pub denylist: Vec<AccessEntry>,
}

/// One entry of an allow- or denylist: an actor, or every actor of a server.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum AccessEntry {
    Actor(FederationId),
    Server(DomainName),
}

impl AccessEntry {
    /// Whether this entry names `reader` (or its server).
    pub fn names(&self, reader: &FederationId) -> bool {
        match self {
            Self::Actor(fid) => fid == reader,
            Self::Server(domain) => domain == reader.domain(),
        }
    }
}

impl FromStr for AccessEntry {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.contains('@') {
            s.parse()
                .map(Self::Actor)
                .map_err(|e| format!("{s:?} is not a federation ID: {e}"))
        } else {
            s.parse()
                .map(Self::Server)
                .map_err(|e| format!("{s:?} is not a domain: {e}"))
        }
    }
}

impl TryFrom<String> for AccessEntry {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<AccessEntry> for String {
    fn from(e: AccessEntry) -> String {
        e.to_string()
    }
}

impl fmt::Display for AccessEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Actor(fid) => fmt::Display::fmt(fid, f),
            Self::Server(domain) => fmt::Display::fmt(domain, f),
        }
    }
}

/// Who asks to read a resource.
#[derive(Debug, Clone, Copy)]
pub enum Reader<'a> {
    /// No session.
    Anonymous,
    /// A session of this server (of a local actor, or of another server's).
    Actor(&'a FederationId),
}

impl AccessProperties {
    /// Checks the combination and the list sizes: a resource cannot be both private and
    /// public, and lists hold at most [`ACCESS_LIST_MAX`] entries. Duplicates are dropped
    /// and the lists sorted, so equal properties are stored equally.
    pub fn normalized(mut self) -> Result<Self, String> {
        if self.private && self.public {
            return Err("a resource cannot be both private and public".into());
        }
        for list in [&mut self.allowlist, &mut self.denylist] {
            list.sort();
            list.dedup();
            if list.len() > ACCESS_LIST_MAX {
                return Err(format!(
                    "an access list holds at most {ACCESS_LIST_MAX} entries"
                ));
            }
        }
        Ok(self)
    }

    /// Whether `reader` may read a resource of `owner` with these properties.
    pub fn admits(&self, owner: &FederationId, reader: Reader<'_>) -> bool {
        if self.public {
            return true;
        }
        let Reader::Actor(reader) = reader else {
            return false;
        };
        if reader == owner {
            return true;
        }
        if self.denylist.iter().any(|e| e.names(reader)) {
            return false;
        }
        !self.private || self.allowlist.iter().any(|e| e.names(reader))
    }

    /// Parses the upload's `resourceAccessProperties` query value: a JSON object, or the
    /// SDK's form style — `private,<bool>,public,<bool>,allowlist,<entries…>,denylist,<entries…>`
    /// in that order, keys optional (OP-29).
    pub fn from_query(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.starts_with('{') {
            let props: Self =
                serde_json::from_str(raw).map_err(|e| format!("resourceAccessProperties: {e}"))?;
            return props.normalized();
        }
        let mut props = Self::default();
        let mut parts = raw.split(',').map(str::trim).peekable();
        let mut list: Option<&mut Vec<AccessEntry>> = None;
        let mut seen_lists = 0u8;
        while let Some(part) = parts.next() {
            // The four keys are never entries: no domain of a list is called `denylist`.
            match part {
                "private" | "public" => {
                    if list.is_some() {
                        return Err(format!(
                            "resourceAccessProperties: {part} must come before the lists"
                        ));
                    }
                    let value = match parts.next() {
                        Some("true") => true,
                        Some("false") => false,
                        other => {
                            return Err(format!(
                                "resourceAccessProperties: {part} must be followed by true or false, not {other:?}"
                            ));
                        }
                    };
                    if part == "private" {
                        props.private = value;
                    } else {
                        props.public = value;
                    }
                }
                "allowlist" | "denylist" => {
                    let order = if part == "allowlist" { 1 } else { 2 };
                    if seen_lists >= order {
                        return Err(format!(
                            "resourceAccessProperties: {part} out of order (allowlist comes before denylist, each once)"
                        ));
                    }
                    seen_lists = order;
                    list = Some(if order == 1 {
                        &mut props.allowlist
                    } else {
                        &mut props.denylist
                    });
                }
                "" => {}
                entry => match list.as_mut() {
                    Some(list) => list.push(
                        entry
                            .parse()
                            .map_err(|e| format!("resourceAccessProperties: {e}"))?,
                    ),
                    None => {
                        return Err(format!(
                            "resourceAccessProperties: unexpected {entry:?} (expected private, public, allowlist or denylist)"
                        ));
                    }
                },
            }
        }
        props.normalized()
    }

    /// The SDK's form style of these properties (what [`Self::from_query`] reads back).
    pub fn to_query(&self) -> String {
        let mut out = format!("private,{},public,{},allowlist", self.private, self.public);
        for e in &self.allowlist {
            out.push(',');
            out.push_str(&e.to_string());
        }
        out.push_str(",denylist");
        for e in &self.denylist {
            out.push(',');
            out.push_str(&e.to_string());
        }
        out
    }
}

/// `ResourceInformation`: one resource as its info and list endpoints show it. `size` is
/// a decimal string, as every u64 (OP-49; the SDK requires it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceInformation {
    pub resource_id: ResourceId,
    #[serde(with = "crate::wire::u64_string")]
    pub size: u64,
    pub access: AccessProperties,
    /// Fugue: the media type the server found in the bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Fugue: when it was uploaded (UNIX seconds).
    #[serde(
        default,
        with = "crate::wire::u64_string::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub created_at: Option<u64>,
}

/// The order of the resource list (`Models.ResourceListSorting`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResourceSort {
    SizeAsc,
    SizeDesc,
    #[default]
    NewestFirst,
    OldestFirst,
}

/// One entry of the resource list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceListEntry {
    pub resource_information: ResourceInformation,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<Preview>,
}

/// A small preview of a resource's content (base64), for the types that have one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Preview {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    pub contents: String,
}

/// Storage use of an actor, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(with = "crate::wire::u64_string")]
    pub limit: u64,
    #[serde(with = "crate::wire::u64_string")]
    pub used: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fid(s: &str) -> FederationId {
        s.parse().unwrap()
    }

    #[test]
    fn resource_ids_are_bounded_and_plain() {
        assert!("2c851bfb6daffa944fa1723c7bd4d362ffbc9defe292f2daaf05e895989d179b.jxl".len() > 64);
        assert_eq!(
            "2c851bfb6daffa944fa1723c7bd4d362ffbc9defe292f2daaf05e895989d179b.jxl"
                .parse::<ResourceId>(),
            Err(RidError::TooLong)
        );
        let ok: ResourceId = "cat_photo-2.JPG".parse().unwrap();
        assert_eq!(ok.extension(), Some("JPG"));
        for bad in [
            "",
            ".hidden",
            "a/b",
            "..",
            "a b",
            "ü",
            "resources",
            "usage",
            "a%2f",
        ] {
            assert_eq!(bad.parse::<ResourceId>(), Err(RidError::Invalid), "{bad:?}");
        }
        assert!("x".repeat(64).parse::<ResourceId>().is_ok());
        let a = ResourceId::derive(&[1; 32], &[2; 32]);
        assert_eq!(a.as_str().len(), 64);
        assert_ne!(a, ResourceId::derive(&[3; 32], &[2; 32]));
    }

    #[test]
    fn both_query_forms_parse_to_the_same_properties() {
        let form = AccessProperties::from_query(
            "private,true,public,false,allowlist,bob@b.example,c.example,denylist,eve@b.example",
        )
        .unwrap();
        let json = AccessProperties::from_query(
            r#"{"private":true,"public":false,"allowlist":["c.example","bob@b.example"],"denylist":["eve@b.example"]}"#,
        )
        .unwrap();
        assert_eq!(form, json);
        assert_eq!(
            AccessProperties::from_query(&form.to_query()).unwrap(),
            form
        );
        // The SDK writes an empty denylist as a trailing "denylist,".
        let empty =
            AccessProperties::from_query("private,false,public,true,allowlist,denylist,").unwrap();
        assert!(empty.public && empty.allowlist.is_empty() && empty.denylist.is_empty());
        assert_eq!(
            AccessProperties::from_query("").unwrap(),
            AccessProperties::default()
        );
        for bad in [
            "private,true,public,true",
            "private,yes",
            "allowlist,not a domain",
            "denylist,a@b.example,allowlist,c@d.example",
            "bogus",
            r#"{"private":true,"extra":1}"#,
        ] {
            assert!(AccessProperties::from_query(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn access_follows_the_lists() {
        let owner = fid("alice@a.example");
        let bob = fid("bob@b.example");
        let eve = fid("eve@b.example");
        let carol = fid("carol@c.example");
        let open = AccessProperties::default();
        assert!(open.admits(&owner, Reader::Actor(&bob)));
        assert!(!open.admits(&owner, Reader::Anonymous));
        let public = AccessProperties {
            public: true,
            denylist: vec![AccessEntry::Actor(bob.clone())],
            ..Default::default()
        };
        assert!(public.admits(&owner, Reader::Anonymous));
        assert!(
            public.admits(&owner, Reader::Actor(&bob)),
            "public ignores the lists"
        );
        let private =
            AccessProperties::from_query("private,true,allowlist,b.example,denylist,eve@b.example")
                .unwrap();
        assert!(private.admits(&owner, Reader::Actor(&owner)));
        assert!(private.admits(&owner, Reader::Actor(&bob)));
        assert!(
            !private.admits(&owner, Reader::Actor(&eve)),
            "the denylist wins"
        );
        assert!(!private.admits(&owner, Reader::Actor(&carol)));
        let deny_self = AccessProperties::from_query("denylist,a.example").unwrap();
        assert!(deny_self.admits(&owner, Reader::Actor(&owner)));
        assert!(!deny_self.admits(&owner, Reader::Actor(&fid("dave@a.example"))));
    }
}
