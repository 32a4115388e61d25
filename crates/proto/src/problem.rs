//! RFC 9457 problem details with a stable `error` code (OP-41).
//!
//! Clients branch on [`ErrorCode`], never on `detail`. The server decides in one place which
//! status each code gets; this module only defines the vocabulary and the body.

use serde::{Deserialize, Serialize};

/// Media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Stable, machine-readable error codes. Renaming one is a breaking API change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
#[repr(u16)]
pub enum ErrorCode {
    // Request shape
    MalformedRequest = 1,
    PayloadTooLarge = 2,
    /// The server is at capacity; retry after `Retry-After`.
    Overloaded = 3,
    /// The request (its body) did not arrive in time.
    RequestTimeout = 4,
    /// The resource changed while the request was handled; reload and retry.
    ConcurrentChange = 5,
    NotFound = 6,
    MethodNotAllowed = 7,
    RateLimited = 8,
    Internal = 9,
    // Authentication
    Unauthenticated = 10,
    InvalidToken = 11,
    Forbidden = 12,
    SensitiveSolutionRequired = 13,
    SensitiveSolutionInvalid = 14,
    TooManyFailedSolutions = 15,
    // Accounts
    InvalidLocalName = 16,
    LocalNameTaken = 17,
    WeakPassword = 18,
    RegistrationClosed = 19,
    InviteRequired = 20,
    InvalidInvite = 21,
    TosConsentRequired = 22,
    InvalidCredentials = 23,
    TotpRequired = 24,
    TotpAlreadyEnrolled = 25,
    TotpNotPending = 26,
    /// TOTP is not enabled for this account, so there is nothing to turn off.
    TotpNotEnabled = 27,
    /// A server administrator suspended this account: it cannot log in.
    AccountSuspended = 28,
    // Certificates
    InvalidCsr = 29,
    CsrSignatureInvalid = 30,
    UnsupportedAlgorithm = 31,
    WeakKey = 32,
    CsrSubjectMismatch = 33,
    CsrCapabilitiesForbidden = 34,
    InvalidSessionId = 35,
    SessionIdInUse = 36,
    /// The actor has as many live sessions as the server allows; end one first.
    TooManySessions = 37,
    ActorNotFound = 38,
    SessionNotFound = 39,
    CertNotFound = 40,
    /// A signature over a request does not verify.
    SignatureInvalid = 41,
    // Federation
    InvalidFederationId = 42,
    /// The FID belongs to this server: key-trial sign-in is for other servers' actors.
    LocalActor = 43,
    /// The actor's home server did not answer usably (timeout, error, garbage, too large).
    HomeServerUnavailable = 44,
    /// The FID's domain has no home server that proves it is one (delegation check failed).
    NotAHomeServer = 45,
    /// A foreign certificate failed a check (chain, FID, cache signature, window, validity).
    ForeignCertInvalid = 46,
    CertRevoked = 47,
    /// The key trial is unknown, expired or already used.
    KeyTrialInvalid = 48,
    // Encrypted private key material
    KeyMaterialExists = 49,
    KeyMaterialTooLarge = 50,
    KeyMaterialSlotsExhausted = 51,
    KeyMaterialNotFound = 52,
    UnknownSerial = 53,
    // Service discovery
    InvalidServiceName = 54,
    InvalidServiceUrl = 55,
    /// This provider of the service is discoverable already.
    ServiceExists = 56,
    /// No such provider of the service is discoverable.
    ServiceNotFound = 57,
    /// The actor has as many discoverable services as the server allows.
    TooManyServices = 58,
    // Resources (RawR)
    /// A resource ID is longer than 64 characters (`charLimit` says how long it may be).
    RidTooLong = 59,
    /// A resource ID has characters or a form resource IDs cannot have.
    InvalidRid = 60,
    /// A resource of that ID exists on this server; choose another ID.
    DuplicateRid = 61,
    /// An upload must say its size in `Content-Length`.
    LengthRequired = 62,
    /// The upload is larger than one upload may be or than the storage left
    /// (`remainingStorageBytes`).
    TooLarge = 63,
    /// This actor may not upload here.
    UploadForbidden = 64,
    /// No resource of that ID that the caller may see.
    ResourceNotFound = 65,
    /// The body ended before (or went past) the size `Content-Length` announced.
    LengthMismatch = 66,
    /// The route needs completed key trials (`X-P2-core-keytrial`) for keys the caller has
    /// not proven; `detail` names them.
    KeyTrialRequired = 67,
    /// A redirect's target is no actor whose home server answers for it.
    RedirectTargetInvalid = 68,
    /// The redirect of that actor names another target.
    RedirectElsewhere = 69,
    /// A data archive (core §7.3.2) is not one this server takes; `detail` says why.
    ArchiveInvalid = 70,
    /// The server keeps no files, so it cannot build or take a data archive.
    StorageUnavailable = 71,
    // Chat (polyproto-chat and fugue-chat)
    GuildNotFound = 100,
    ChannelNotFound = 101,
    MessageNotFound = 102,
    MemberNotFound = 103,
    RoleNotFound = 104,
    InviteNotFound = 105,
    /// The caller lacks a permission in the guild or channel; `detail` names it.
    MissingPermission = 106,
    /// The actor is banned from the guild.
    Banned = 107,
    /// The owner cannot leave or be removed; transfer the guild first.
    OwnerCannotLeave = 108,
    /// A name, topic, content or other field is out of its bounds.
    InvalidChatInput = 109,
    /// The certificate a message carries is not the author's, not valid now, or unknown.
    MessageCertInvalid = 110,
    /// The same nonce was used for a different message or in another channel.
    NonceReused = 111,
    /// The route is declared but not served yet.
    NotImplemented = 112,
    /// No actor of that FID is registered on this server (a DM's recipient), or its home
    /// server does not answer for it (a group's foreign member).
    UserNotFound = 120,
    // MLS (polyproto-mls)
    /// KeyPackages of an upload were refused; `invalid` lists `{id, reason}` per package
    /// (the OpenAPI's 400 body).
    KeyPackageInvalid = 130,
    /// The device keeps as many KeyPackages as it may.
    KeyPackagesFull = 131,
    /// No MLS group of that id that the caller has a device in.
    GroupNotFound = 132,
    /// The group is at another epoch than the proposal or commit was made for; `epoch`
    /// names the current one.
    StaleEpoch = 133,
    /// An MLS object does not parse, verify or apply; `detail` says why.
    MlsMessageInvalid = 134,
    /// Too many KeyPackage claims for this actor; retry after `Retry-After`.
    ClaimsThrottled = 135,
    /// The group's rules do not let the caller do this; `detail` says which.
    MlsForbidden = 136,
    /// An MLS group of that id exists.
    GroupExists = 137,
    /// A proposal of that id is pending in the epoch.
    ProposalExists = 138,
    /// The channel is encrypted: its messages are MLS messages of its group (`mls:`…), and
    /// carry no attachments.
    EncryptionRequired = 139,
    /// The channel is encrypted already, with the group it names.
    AlreadyEncrypted = 140,
    /// No join request of that id for a channel the caller reads.
    JoinRequestNotFound = 141,
    /// A code this version does not know (sent by a newer server).
    #[serde(other)]
    Unknown = 999,
}

impl ErrorCode {
    /// The code as it appears on the wire, e.g. `INVALID_CSR`.
    pub fn as_str(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// The code as a stable number: the `code` member chat.md's error object has (OP-41).
    /// Numbers are explicit in the declaration, so adding a code changes no other.
    pub fn number(self) -> u16 {
        self as u16
    }
}

/// An `application/problem+json` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// URI naming the problem type: `https://fugue.invalid/problems/<error>` style, stable.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The stable code clients branch on.
    pub error: ErrorCode,
    /// The polyproto namespace the route belongs to (OP-41/OP-42).
    #[serde(default = "core_namespace")]
    pub namespace: String,
    /// chat.md's error object (OP-41): `detail` (or `title`) again …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// … and the code as a number ([`ErrorCode::number`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    /// Extension members a route's spec names (RFC 9457 §3.2), e.g. RawR's `reason` and
    /// `remainingStorageBytes`.
    #[serde(flatten, default)]
    pub extensions: std::collections::BTreeMap<String, serde_json::Value>,
}

fn core_namespace() -> String {
    "core".to_owned()
}

impl Problem {
    pub fn new(status: u16, error: ErrorCode, title: &str) -> Self {
        Self {
            kind: format!("urn:fugue:problem:{}", error.as_str().to_ascii_lowercase()),
            title: title.to_owned(),
            status,
            detail: None,
            error,
            namespace: core_namespace(),
            message: None,
            code: None,
            extensions: Default::default(),
        }
    }

    /// The problem with the extension member `name`.
    pub fn with_extension(mut self, name: &str, value: impl Into<serde_json::Value>) -> Self {
        self.extensions.insert(name.to_owned(), value.into());
        self
    }

    /// The problem as a route of `namespace` reports it; the chat namespaces add chat.md's
    /// `message` and numeric `code` (OP-41).
    pub fn in_namespace(mut self, namespace: &str) -> Self {
        self.namespace = namespace.to_owned();
        if namespace == crate::chat::CHAT || namespace == crate::chat::FUGUE_CHAT {
            self.message = Some(self.detail.clone().unwrap_or_else(|| self.title.clone()));
            self.code = Some(self.error.number());
        }
        self
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialise_as_screaming_snake_case() {
        assert_eq!(ErrorCode::SessionIdInUse.as_str(), "SESSION_ID_IN_USE");
        let p = Problem::new(409, ErrorCode::SessionIdInUse, "Session ID in use").with_detail("x");
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["error"], "SESSION_ID_IN_USE");
        assert_eq!(json["type"], "urn:fugue:problem:session_id_in_use");
        let back: Problem = serde_json::from_value(json).unwrap();
        assert_eq!(back, p);
        let newer: Problem = serde_json::from_str(
            r#"{"type":"x","title":"t","status":400,"error":"SOMETHING_NEW"}"#,
        )
        .unwrap();
        assert_eq!(newer.error, ErrorCode::Unknown);
    }

    #[test]
    fn chat_problems_carry_message_and_a_numeric_code() {
        let p = Problem::new(403, ErrorCode::MissingPermission, "Forbidden")
            .with_detail("you lack SEND_MESSAGES")
            .in_namespace("chat");
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["message"], "you lack SEND_MESSAGES");
        assert_eq!(json["code"], 106);
        assert_eq!(json["namespace"], "chat");
        assert_eq!(ErrorCode::MalformedRequest.number(), 1);
        let core =
            serde_json::to_value(Problem::new(400, ErrorCode::MalformedRequest, "x")).unwrap();
        assert!(core.get("code").is_none() && core.get("message").is_none());
    }
}
