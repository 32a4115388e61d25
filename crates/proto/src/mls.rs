//! polyproto-mls (`mls.md`, the mls OpenAPI alpha.4): the JSON models of the `mls` routes,
//! the gateway payloads of the `mls` namespace, and the one cipher suite Fugue speaks
//! (docs/decisions.md, "End-to-end encryption").
//!
//! The OpenAPI's models describe RFC 9420 objects in simplified JSON that no MLS
//! implementation can use on its own; every model here therefore also carries the object
//! itself, TLS-encoded as an `MLSMessage` and then base64 (`fugue:mls`, DIGEST OP-45). The
//! server derives the spec's fields from that object when it answers; on input they must
//! agree with it. Nothing here parses MLS: that is the server's and the client's business.

use serde::{Deserialize, Serialize};

use crate::FederationId;
use crate::wire::u64_string;

/// The gateway namespace and service channel of polyproto-mls (mls.md §4).
pub const MLS: &str = "mls";
/// Fugue's own MLS namespace: join requests of encrypted channels (core §8.6).
pub const FUGUE_MLS: &str = "fugue-mls";

/// The one cipher suite accepted: `MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519` (mls.md
/// §1.1). The "Hybrid PQS" suite `0xF110` of §1.2 is undefined upstream and not supported.
pub const CIPHERSUITE: u16 = 0x0001;
/// Its name in RFC 9420 §17.1.
pub const CIPHERSUITE_NAME: &str = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519";
/// The one protocol version, as the spec's capabilities write it.
pub const VERSION_1_0: &str = "1.0";

/// Most KeyPackages one device (session) keeps on the server, its last-resort one included.
pub const MAX_KEY_PACKAGES_PER_DEVICE: usize = 100;
/// Most KeyPackages one upload carries.
pub const MAX_KEY_PACKAGES_PER_UPLOAD: usize = 100;
/// Largest encoded KeyPackage (`fugue:mls`, base64) accepted.
pub const MAX_KEY_PACKAGE_B64: usize = 16 * 1024;
/// A device whose ordinary KeyPackages fall below this is told so (op [`op::KEY_PACKAGES_LOW`]).
pub const KEY_PACKAGES_LOW: usize = 10;
/// Shortest and longest KeyPackage id (OpenAPI).
pub const KEY_PACKAGE_ID_LEN: std::ops::RangeInclusive<usize> = 8..=128;
/// Length of a group id: lowercase hex of 16 to 32 bytes of the MLS group id.
pub const GROUP_ID_HEX_LEN: std::ops::RangeInclusive<usize> = 32..=64;

/// Gateway opcodes of the `mls` namespace (server to client; mls.md §4.1 leaves them to
/// the implementation; docs/gateway.md).
pub mod op {
    /// A proposal was submitted to a group (d: [`super::ProposalEvent`]; the group's
    /// members).
    pub const PROPOSAL: u16 = 0;
    /// A commit started a new epoch (d: [`super::CommitEvent`]; the group's members, those
    /// it removes included).
    pub const COMMIT: u16 = 1;
    /// A Welcome for one device (d: [`super::WelcomeEvent`]; that session alone).
    pub const WELCOME: u16 = 2;
    /// The device's ordinary KeyPackages run low (d: [`super::KeyPackagesLow`]; that
    /// session alone).
    pub const KEY_PACKAGES_LOW: u16 = 3;
    /// A device joined a group (d: [`super::DeviceEvent`]; the group's members). One event
    /// per device, also for a further device of a member.
    pub const DEVICE_JOINED: u16 = 4;
    /// A device left a group or was removed (d: [`super::DeviceEvent`]).
    pub const DEVICE_REMOVED: u16 = 5;
    /// A member device's certificate or session ended: the group should remove it (d:
    /// [`super::DeviceEvent`]).
    pub const DEVICE_REVOKED: u16 = 6;
}

/// Gateway opcodes of Fugue's `fugue-mls` namespace: encrypted channels and their join
/// requests (docs/gateway.md).
pub mod fugue_op {
    /// A device asks to join an encrypted channel (d: [`super::JoinRequest`]; the channel's
    /// readers, on its guild's or conversation's stream).
    pub const JOIN_REQUEST: u16 = 0;
    /// A join request was accepted or denied (d: [`super::JoinRequest`]; the channel's
    /// readers and the requesting device).
    pub const JOIN_RESOLVED: u16 = 1;
    /// A channel is encrypted from now on (d: [`super::ChannelGroup`]; its readers).
    pub const CHANNEL_ENCRYPTED: u16 = 2;
}

/// The group that encrypts a channel (a guild channel, a DM or a group conversation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelGroup {
    #[serde(with = "u64_string")]
    pub channel_id: u64,
    pub group_id: String,
}

/// `PUT /channels/{id}/group`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetChannelGroup {
    pub group_id: String,
}

/// Where a join request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JoinState {
    Pending,
    Accepted,
    Denied,
}

/// A device's request to join an encrypted channel, with the package it is to be added
/// with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    #[serde(with = "u64_string")]
    pub id: u64,
    #[serde(with = "u64_string")]
    pub channel_id: u64,
    pub group_id: String,
    pub fid: FederationId,
    pub session: String,
    pub key_package: KeyPackage,
    /// The actor has a device in the group already: a new device of a member, which any
    /// member accepts without asking (polyproto-chat §6).
    pub existing_member: bool,
    pub state: JoinState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_by: Option<FederationId>,
    #[serde(with = "u64_string")]
    pub created_at: u64,
}

/// `POST /join-requests/{id}/deny`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DenyJoin {
    pub reason: String,
}

/// The prefix of a message's `content` in an encrypted channel: what follows is the
/// `MLSMessage` (a PrivateMessage of the channel's group), base64.
pub const ENCRYPTED_PREFIX: &str = "mls:";
/// Longest `content` of an encrypted message (the ciphertext of a message of
/// `chat::MAX_CONTENT` characters in UTF-8, with room for its framing).
pub const MAX_ENCRYPTED_CONTENT: usize = 24 * 1024;

/// What a client can do (OpenAPI `ClientCapabilities`): versions as `1.0`, cipher suites
/// and extensions as `0x` and four hex digits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientCapabilities {
    pub versions: Vec<String>,
    pub ciphersuites: Vec<String>,
    pub extensions: Vec<String>,
}

/// A KeyPackage (OpenAPI `KeyPackage`), with the package itself in `fugue:mls`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyPackage {
    /// 8–128 characters, unique among the uploader's packages.
    pub id: String,
    /// The package's HPKE init key, base64.
    #[serde(rename = "publicKey")]
    pub public_key: String,
    pub capabilities: ClientCapabilities,
    /// The package's signature, base64.
    pub signature: String,
    #[serde(rename = "lastResort", default)]
    pub last_resort: bool,
    /// The `MLSMessage` holding the KeyPackage, base64.
    #[serde(rename = "fugue:mls", default, skip_serializing_if = "Option::is_none")]
    pub mls: Option<String>,
}

/// Why one package of an upload was refused (the OpenAPI's 400 body).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyPackageRefusal {
    pub id: String,
    pub reason: String,
}

/// A member's role in a group (OpenAPI `MemberRole`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberRole {
    Admin,
    Member,
}

/// A member of a group: one device, i.e. one leaf of the MLS tree (OpenAPI `GroupMember`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMember {
    /// The leaf index, in decimal.
    pub id: String,
    /// The KeyPackage the device was added with (the creator's: the one it created the
    /// group with).
    #[serde(rename = "keyPackage")]
    pub key_package: KeyPackage,
    pub role: MemberRole,
    /// The actor its credential names.
    #[serde(rename = "fugue:fid")]
    pub fid: FederationId,
    /// The session (device) its credential's certificate names.
    #[serde(rename = "fugue:session")]
    pub session: String,
    /// The serial of the credential's ID-Cert.
    #[serde(rename = "fugue:serial", with = "u64_string")]
    pub serial: u64,
}

/// A group (OpenAPI `Group`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub id: String,
    pub epoch: u32,
    pub members: Vec<GroupMember>,
    /// The group's external public key (from its latest GroupInfo), base64; empty when no
    /// GroupInfo published one.
    #[serde(rename = "publicKey")]
    pub public_key: String,
}

/// The kinds of proposals (OpenAPI `ProposalType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProposalType {
    Add,
    Remove,
    Update,
    ReInit,
    PreSharedKey,
    ExternalInit,
    GroupContextExtensions,
    /// An RFC 9420 proposal type the spec's list does not name (SelfRemove, custom).
    #[serde(rename = "fugue:Other")]
    Other,
}

/// A proposal (OpenAPI `Proposal`), with its `MLSMessage` in `fugue:mls`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: ProposalType,
    /// For Remove: the removed member's id (leaf index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// For Add: the added device's package.
    #[serde(
        rename = "keyPackage",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub key_package: Option<KeyPackage>,
    pub signature: String,
    #[serde(rename = "fugue:mls", default, skip_serializing_if = "Option::is_none")]
    pub mls: Option<String>,
}

/// A commit (OpenAPI `Commit`), with its `MLSMessage` in `fugue:mls`, and what the server
/// passes on with it: the Welcome for the devices it adds and the group's GroupInfo after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    pub id: String,
    #[serde(rename = "groupId")]
    pub group_id: String,
    /// The epoch this commit creates.
    pub epoch: u32,
    /// What it commits, by value or by reference (then as the proposal's id).
    pub proposals: Vec<Proposal>,
    pub signature: String,
    #[serde(rename = "fugue:mls", default, skip_serializing_if = "Option::is_none")]
    pub mls: Option<String>,
    /// The `MLSMessage` with the Welcome of the devices this commit adds, base64.
    #[serde(
        rename = "fugue:welcome",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub welcome: Option<String>,
}

/// A Welcome (OpenAPI `Welcome`): `encryptedGroupState` is the `MLSMessage` holding it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    #[serde(rename = "groupId")]
    pub group_id: String,
    pub epoch: u32,
    /// The package of the device it is for.
    #[serde(rename = "keyPackage")]
    pub key_package: KeyPackage,
    #[serde(rename = "encryptedGroupState")]
    pub encrypted_group_state: String,
}

/// `POST /groups`: the spec's body (the creator's KeyPackage) and the group's first state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateGroup {
    #[serde(flatten)]
    pub key_package: KeyPackage,
    /// The `MLSMessage` with the group's GroupInfo at epoch 0, its ratchet tree in the
    /// `ratchet_tree` extension, base64.
    #[serde(
        rename = "fugue:groupInfo",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub group_info: Option<String>,
}

/// [`op::PROPOSAL`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalEvent {
    #[serde(rename = "groupId")]
    pub group_id: String,
    pub epoch: u32,
    pub proposal: Proposal,
}

/// [`op::COMMIT`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitEvent {
    #[serde(rename = "groupId")]
    pub group_id: String,
    pub commit: Commit,
}

/// [`op::WELCOME`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WelcomeEvent {
    pub welcome: Welcome,
}

/// [`op::KEY_PACKAGES_LOW`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyPackagesLow {
    /// Ordinary packages the device has left.
    #[serde(with = "u64_string")]
    pub remaining: u64,
    /// Whether it has a last-resort package.
    #[serde(rename = "lastResort")]
    pub last_resort: bool,
}

/// [`op::DEVICE_JOINED`], [`op::DEVICE_REMOVED`], [`op::DEVICE_REVOKED`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceEvent {
    #[serde(rename = "groupId")]
    pub group_id: String,
    pub epoch: u32,
    /// The member's id (leaf index).
    #[serde(rename = "memberId")]
    pub member_id: String,
    pub fid: FederationId,
    pub session: String,
    /// For a join: whether the actor had another device in the group already.
    #[serde(rename = "moreDevices", default)]
    pub more_devices: bool,
}

/// `0x0001` style: the spec's way of writing a cipher suite or extension type.
pub fn code(value: u16) -> String {
    format!("0x{value:04x}")
}

/// A cipher suite or extension type as a client may write it in a filter: `0x0001`, `1` or
/// (for the one suite) its name.
pub fn parse_code(text: &str) -> Option<u16> {
    let t = text.trim();
    if t.eq_ignore_ascii_case(CIPHERSUITE_NAME) {
        return Some(CIPHERSUITE);
    }
    match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) if !hex.is_empty() && hex.len() <= 4 => u16::from_str_radix(hex, 16).ok(),
        Some(_) => None,
        None => t.parse().ok(),
    }
}

/// Whether `id` may name a group: lowercase hex of 16–32 bytes.
pub fn valid_group_id(id: &str) -> bool {
    GROUP_ID_HEX_LEN.contains(&id.len())
        && id.len().is_multiple_of(2)
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether `id` may name a KeyPackage: 8–128 printable ASCII characters.
pub fn valid_key_package_id(id: &str) -> bool {
    KEY_PACKAGE_ID_LEN.contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

/// The state an MLS library keeps as key-value entries (a group's public state on the
/// server, a device's groups and keys in the client) in one value: sorted by key, each entry
/// as two big-endian u32 lengths and the bytes.
pub fn encode_entries<'a>(
    entries: impl IntoIterator<Item = (&'a Vec<u8>, &'a Vec<u8>)>,
) -> Vec<u8> {
    let mut all: Vec<_> = entries.into_iter().collect();
    all.sort();
    let mut out = Vec::new();
    for (k, v) in all {
        for part in [k, v] {
            out.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
            out.extend_from_slice(part);
        }
    }
    out
}

/// The entries [`encode_entries`] wrote; `None` when the bytes are not such a value.
pub fn decode_entries(mut bytes: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    fn take(bytes: &mut &[u8]) -> Option<Vec<u8>> {
        let (len, rest) = bytes.split_first_chunk::<4>()?;
        let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
        let part = rest.get(..len)?.to_vec();
        *bytes = rest.get(len..)?;
        Some(part)
    }
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let k = take(&mut bytes)?;
        let v = take(&mut bytes)?;
        out.push((k, v));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_sorted_and_truncation_is_refused() {
        let (a, b, big) = (b"a".to_vec(), b"b".to_vec(), vec![2u8; 300]);
        let empty = Vec::new();
        let bytes = encode_entries([(&b, &big), (&a, &empty)]);
        let back = decode_entries(&bytes).unwrap_or_default();
        assert_eq!(
            back,
            vec![(a.clone(), empty.clone()), (b.clone(), big.clone())]
        );
        assert!(decode_entries(&bytes[..bytes.len() - 1]).is_none());
        assert_eq!(decode_entries(&[]), Some(Vec::new()));
    }

    #[test]
    fn codes_are_read_in_every_spelling_and_written_in_one() {
        assert_eq!(parse_code("0x0001"), Some(1));
        assert_eq!(parse_code("1"), Some(1));
        assert_eq!(parse_code(CIPHERSUITE_NAME), Some(1));
        assert_eq!(parse_code("0xF110"), Some(0xf110));
        assert_eq!(parse_code("0x"), None);
        assert_eq!(parse_code("0x12345"), None);
        assert_eq!(parse_code("suite"), None);
        assert_eq!(code(1), "0x0001");
        assert_eq!(code(0xf110), "0xf110");
    }

    #[test]
    fn group_and_package_ids_are_bounded() {
        assert!(valid_group_id(&"ab".repeat(16)));
        assert!(!valid_group_id(&"ab".repeat(15)));
        assert!(!valid_group_id(&"AB".repeat(16)));
        assert!(!valid_group_id(&"ab".repeat(33)));
        assert!(valid_key_package_id("kp-00001"));
        assert!(!valid_key_package_id("short"));
        assert!(!valid_key_package_id("has a space"));
    }

    #[test]
    fn the_spec_fields_keep_their_names_and_ours_their_prefix() {
        let kp = KeyPackage {
            id: "kp-00001".into(),
            public_key: "AA==".into(),
            capabilities: ClientCapabilities::default(),
            signature: "AA==".into(),
            last_resort: false,
            mls: Some("AA==".into()),
        };
        let v = serde_json::to_value(&kp).unwrap_or_default();
        for key in [
            "id",
            "publicKey",
            "capabilities",
            "signature",
            "lastResort",
            "fugue:mls",
        ] {
            assert!(v.get(key).is_some(), "{key}");
        }
        let back: KeyPackage = serde_json::from_value(serde_json::json!({
            "id": "kp-00001", "publicKey": "", "signature": "",
            "capabilities": {"versions": [], "ciphersuites": [], "extensions": []}
        }))
        .unwrap_or_else(|_| kp.clone());
        assert!(!back.last_resort && back.mls.is_none());
    }
}
