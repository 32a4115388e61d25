use axum::http::StatusCode;
use fugue_proto::ErrorCode;
use fugue_proto::certs::CertError;

use crate::http::ApiError;
use crate::identity;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidLocalName(String),
    #[error("this local name is taken")]
    LocalNameTaken,
    #[error(
        "passwords must have {min} to 1024 characters and no leading or trailing space or control characters"
    )]
    WeakPassword { min: usize },
    #[error("registration is closed on this server")]
    RegistrationClosed,
    #[error("registration on this server needs an invite code")]
    InviteRequired,
    #[error("the invite code is unknown, used up or expired")]
    InvalidInvite,
    #[error("you must accept the terms of service: {0}")]
    TosConsentRequired(String),
    #[error("wrong local name or password")]
    InvalidCredentials,
    #[error("this account uses two-factor authentication: a TOTP code is required")]
    TotpRequired,
    #[error("too many failed logins for this name from your address; try again in {0} s")]
    TooManyFailedLogins(u64),
    #[error("this account is suspended by the server's administrators")]
    AccountSuspended,
    #[error("TOTP is not enabled for this account")]
    TotpNotEnabled,
    #[error("an Authorization: Bearer session token is required")]
    Unauthenticated,
    #[error("the session token is unknown, revoked or expired")]
    InvalidToken,
    #[error(
        "this is a sensitive action: send your password (or TOTP code) in X-P2-Sensitive-Solution"
    )]
    SolutionRequired,
    #[error("the sensitive-action solution is wrong")]
    SolutionInvalid,
    #[error("too many wrong solutions; try again in {0} s")]
    TooManyFailedSolutions(u64),
    #[error("no active session {0} of yours")]
    SessionNotFound(String),
    #[error("session ID {0} is already used by an active session of yours")]
    SessionIdInUse(String),
    #[error("this account has {0} live sessions, the most this server allows; end one first")]
    TooManySessions(usize),
    #[error("{0}")]
    InvalidSessionId(String),
    #[error("the session's certificate changed while this request was handled; retry")]
    ConcurrentChange,
    #[error("the server is busy hashing passwords; retry in a moment")]
    Overloaded,
    #[error("TOTP is already enabled for this account")]
    TotpAlreadyEnrolled,
    #[error("no TOTP enrolment is pending; start one first")]
    TotpNotPending,
    #[error("only server administrators may do this")]
    NotAdmin,
    #[error("certificate {0} is not an active certificate of yours")]
    CertNotFound(u64),
    #[error("the revocation signature does not verify against certificate {0}")]
    RevocationSignatureInvalid(u64),
    #[error(transparent)]
    Events(#[from] crate::events::Error),
    #[error("no usable key trial: unknown, expired or already answered; ask for a new one")]
    KeyTrialInvalid,
    #[error("a key trial completion must name its trial: `id` (or the `trial` text)")]
    KeyTrialUnnamed,
    #[error("the key trial signature does not verify against certificate {0}")]
    KeyTrialSignature(u64),
    #[error("{0}")]
    KeyTrialHeader(String),
    #[error("{0}")]
    KeyTrialRequired(String),
    #[error("this route is for sessions of actors of other home servers")]
    NotForeign,
    #[error("this route is for actors registered on this server")]
    ForeignSession,
    #[error("certificate {0} is not the current certificate of this session at its home server")]
    ForeignCertMismatch(u64),
    #[error("no actor {0} is known here")]
    ActorNotFound(String),
    #[error("the body is not an ID-Cert: {0}")]
    NotACert(String),
    #[error(transparent)]
    Federation(#[from] crate::federation::Error),
    #[error(transparent)]
    Csr(#[from] CertError),
    #[error(transparent)]
    Identity(#[from] identity::Error),
    #[error("password hashing failed: {0}")]
    Hashing(String),
    #[error(transparent)]
    Store(#[from] fugue_store::Error),
}

impl Error {
    /// The token did not identify a live session (as opposed to a server failure).
    pub fn is_auth_failure(&self) -> bool {
        matches!(self, Error::Unauthenticated | Error::InvalidToken)
    }
}

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        let err = match err {
            Error::Federation(e) => return e.into(),
            other => other,
        };
        use StatusCode as S;
        let (status, code) = match &err {
            Error::InvalidLocalName(_) => (S::BAD_REQUEST, ErrorCode::InvalidLocalName),
            Error::LocalNameTaken => (S::CONFLICT, ErrorCode::LocalNameTaken),
            Error::WeakPassword { .. } => (S::BAD_REQUEST, ErrorCode::WeakPassword),
            Error::RegistrationClosed => (S::FORBIDDEN, ErrorCode::RegistrationClosed),
            Error::InviteRequired => (S::FORBIDDEN, ErrorCode::InviteRequired),
            Error::InvalidInvite => (S::FORBIDDEN, ErrorCode::InvalidInvite),
            Error::TosConsentRequired(_) => (S::BAD_REQUEST, ErrorCode::TosConsentRequired),
            Error::InvalidCredentials => (S::UNAUTHORIZED, ErrorCode::InvalidCredentials),
            Error::TotpRequired => (S::UNAUTHORIZED, ErrorCode::TotpRequired),
            Error::TooManyFailedLogins(secs) => {
                let secs = *secs;
                return ApiError::new(
                    S::TOO_MANY_REQUESTS,
                    ErrorCode::RateLimited,
                    err.to_string(),
                )
                .with_retry_after(secs);
            }
            Error::AccountSuspended => (S::FORBIDDEN, ErrorCode::AccountSuspended),
            Error::TotpNotEnabled => (S::CONFLICT, ErrorCode::TotpNotEnabled),
            Error::Unauthenticated => (S::UNAUTHORIZED, ErrorCode::Unauthenticated),
            Error::InvalidToken => (S::UNAUTHORIZED, ErrorCode::InvalidToken),
            Error::SolutionRequired => (S::UNAUTHORIZED, ErrorCode::SensitiveSolutionRequired),
            Error::SolutionInvalid => (S::FORBIDDEN, ErrorCode::SensitiveSolutionInvalid),
            Error::TooManyFailedSolutions(secs) => {
                let secs = *secs;
                return ApiError::new(
                    S::TOO_MANY_REQUESTS,
                    ErrorCode::TooManyFailedSolutions,
                    err.to_string(),
                )
                .with_retry_after(secs);
            }
            Error::SessionNotFound(_) => (S::NOT_FOUND, ErrorCode::SessionNotFound),
            Error::SessionIdInUse(_) => (S::CONFLICT, ErrorCode::SessionIdInUse),
            Error::TooManySessions(_) => (S::CONFLICT, ErrorCode::TooManySessions),
            Error::InvalidSessionId(_) => (S::BAD_REQUEST, ErrorCode::InvalidSessionId),
            Error::TotpAlreadyEnrolled => (S::CONFLICT, ErrorCode::TotpAlreadyEnrolled),
            Error::ConcurrentChange => (S::CONFLICT, ErrorCode::ConcurrentChange),
            Error::Overloaded => {
                return ApiError::new(
                    S::SERVICE_UNAVAILABLE,
                    ErrorCode::Overloaded,
                    err.to_string(),
                )
                .with_retry_after(1);
            }
            Error::TotpNotPending => (S::CONFLICT, ErrorCode::TotpNotPending),
            Error::NotAdmin => (S::FORBIDDEN, ErrorCode::Forbidden),
            Error::CertNotFound(_) => (S::NOT_FOUND, ErrorCode::CertNotFound),
            Error::RevocationSignatureInvalid(_) => (S::FORBIDDEN, ErrorCode::SignatureInvalid),
            Error::KeyTrialInvalid | Error::KeyTrialUnnamed => {
                (S::BAD_REQUEST, ErrorCode::KeyTrialInvalid)
            }
            Error::KeyTrialSignature(_) => (S::FORBIDDEN, ErrorCode::SignatureInvalid),
            Error::KeyTrialHeader(_) => (S::BAD_REQUEST, ErrorCode::KeyTrialInvalid),
            Error::KeyTrialRequired(_) => (S::FORBIDDEN, ErrorCode::KeyTrialRequired),
            Error::NotForeign | Error::ForeignSession => (S::FORBIDDEN, ErrorCode::Forbidden),
            Error::ForeignCertMismatch(_) => (S::FORBIDDEN, ErrorCode::ForeignCertInvalid),
            Error::ActorNotFound(_) => (S::NOT_FOUND, ErrorCode::ActorNotFound),
            Error::NotACert(_) => (S::BAD_REQUEST, ErrorCode::MalformedRequest),
            // Mapped by the federation module above.
            Error::Federation(_) => (S::INTERNAL_SERVER_ERROR, ErrorCode::Internal),
            Error::Csr(e) => return identity::cert_problem(e),
            Error::Identity(e) => return e.into(),
            Error::Hashing(_) | Error::Store(_) | Error::Events(_) => {
                return ApiError::internal(&err);
            }
        };
        ApiError::new(status, code, err.to_string())
    }
}
