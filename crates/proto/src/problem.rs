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
pub enum ErrorCode {
    // Request shape
    MalformedRequest,
    PayloadTooLarge,
    /// The server is at capacity; retry after `Retry-After`.
    Overloaded,
    /// The request (its body) did not arrive in time.
    RequestTimeout,
    /// The resource changed while the request was handled; reload and retry.
    ConcurrentChange,
    NotFound,
    MethodNotAllowed,
    RateLimited,
    Internal,
    // Authentication
    Unauthenticated,
    InvalidToken,
    Forbidden,
    SensitiveSolutionRequired,
    SensitiveSolutionInvalid,
    TooManyFailedSolutions,
    // Accounts
    InvalidLocalName,
    LocalNameTaken,
    WeakPassword,
    RegistrationClosed,
    InviteRequired,
    InvalidInvite,
    TosConsentRequired,
    InvalidCredentials,
    TotpRequired,
    TotpAlreadyEnrolled,
    TotpNotPending,
    /// TOTP is not enabled for this account, so there is nothing to turn off.
    TotpNotEnabled,
    /// A server administrator suspended this account: it cannot log in.
    AccountSuspended,
    // Certificates
    InvalidCsr,
    CsrSignatureInvalid,
    UnsupportedAlgorithm,
    WeakKey,
    CsrSubjectMismatch,
    CsrCapabilitiesForbidden,
    InvalidSessionId,
    SessionIdInUse,
    /// The actor has as many live sessions as the server allows; end one first.
    TooManySessions,
    ActorNotFound,
    SessionNotFound,
    CertNotFound,
    /// A signature over a request does not verify.
    SignatureInvalid,
    // Federation
    InvalidFederationId,
    /// The FID belongs to this server: key-trial sign-in is for other servers' actors.
    LocalActor,
    /// The actor's home server did not answer usably (timeout, error, garbage, too large).
    HomeServerUnavailable,
    /// The FID's domain has no home server that proves it is one (delegation check failed).
    NotAHomeServer,
    /// A foreign certificate failed a check (chain, FID, cache signature, window, validity).
    ForeignCertInvalid,
    CertRevoked,
    /// The key trial is unknown, expired or already used.
    KeyTrialInvalid,
    // Encrypted private key material
    KeyMaterialExists,
    KeyMaterialTooLarge,
    KeyMaterialSlotsExhausted,
    KeyMaterialNotFound,
    UnknownSerial,
    // Service discovery
    InvalidServiceName,
    InvalidServiceUrl,
    /// This provider of the service is discoverable already.
    ServiceExists,
    /// No such provider of the service is discoverable.
    ServiceNotFound,
    /// The actor has as many discoverable services as the server allows.
    TooManyServices,
    /// A code this version does not know (sent by a newer server).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The code as it appears on the wire, e.g. `INVALID_CSR`.
    pub fn as_str(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
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
        }
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
}
