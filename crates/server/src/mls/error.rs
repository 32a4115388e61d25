use axum::http::StatusCode;
use fugue_proto::ErrorCode;
use fugue_proto::mls::KeyPackageRefusal;

use crate::federation;
use crate::http::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Invalid(String),
    #[error("{} of the KeyPackages were refused", .0.len())]
    KeyPackages(Vec<KeyPackageRefusal>),
    #[error("a device keeps at most {0} KeyPackages; upload more when these are used")]
    KeyPackagesFull(usize),
    #[error("{0} is not registered on this server")]
    ActorNotFound(String),
    #[error("no MLS group {0}")]
    GroupNotFound(String),
    #[error("no member {0} in the group")]
    MemberNotFound(String),
    #[error("{0}")]
    Mls(String),
    #[error("the group is at epoch {current}; this was made for another")]
    StaleEpoch { current: u32 },
    #[error("{0}")]
    Forbidden(String),
    #[error("an MLS group {0} exists already")]
    GroupExists(String),
    #[error("a proposal {0} is pending already")]
    ProposalExists(String),
    #[error("no join request {0} of a channel you read")]
    JoinRequestNotFound(u64),
    #[error("{0}")]
    Conflict(String),
    #[error("too many KeyPackage claims for this actor; retry in {retry_after} s")]
    Throttled { retry_after: u64 },
    #[error(transparent)]
    Federation(#[from] federation::Error),
    #[error(transparent)]
    Store(#[from] fugue_store::Error),
}

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        use StatusCode as S;
        let detail = err.to_string();
        let (status, code) = match err {
            Error::Invalid(_) => (S::BAD_REQUEST, ErrorCode::MalformedRequest),
            Error::KeyPackages(list) => {
                return ApiError::new(S::BAD_REQUEST, ErrorCode::KeyPackageInvalid, detail)
                    .with_extension(
                        "invalid",
                        serde_json::to_value(list).unwrap_or(serde_json::Value::Null),
                    );
            }
            Error::KeyPackagesFull(_) => (S::PAYLOAD_TOO_LARGE, ErrorCode::KeyPackagesFull),
            Error::ActorNotFound(_) => (S::NOT_FOUND, ErrorCode::ActorNotFound),
            Error::GroupNotFound(_) => (S::NOT_FOUND, ErrorCode::GroupNotFound),
            Error::MemberNotFound(_) => (S::NOT_FOUND, ErrorCode::NotFound),
            Error::Mls(_) => (S::BAD_REQUEST, ErrorCode::MlsMessageInvalid),
            Error::StaleEpoch { current } => {
                return ApiError::new(S::CONFLICT, ErrorCode::StaleEpoch, detail)
                    .with_extension("epoch", current);
            }
            Error::Forbidden(_) => (S::FORBIDDEN, ErrorCode::MlsForbidden),
            Error::GroupExists(_) => (S::CONFLICT, ErrorCode::GroupExists),
            Error::ProposalExists(_) => (S::CONFLICT, ErrorCode::ProposalExists),
            Error::JoinRequestNotFound(_) => (S::NOT_FOUND, ErrorCode::JoinRequestNotFound),
            Error::Conflict(_) => (S::CONFLICT, ErrorCode::ConcurrentChange),
            Error::Throttled { retry_after } => {
                return ApiError::new(S::TOO_MANY_REQUESTS, ErrorCode::ClaimsThrottled, detail)
                    .with_retry_after(retry_after);
            }
            // A foreign credential's certificate, checked at its home server.
            Error::Federation(e) => return e.into(),
            Error::Store(e) => return ApiError::internal(&e),
        };
        ApiError::new(status, code, detail)
    }
}
