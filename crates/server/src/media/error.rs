use axum::http::StatusCode;
use fugue_proto::ErrorCode;
use fugue_proto::rawr::{RID_MAX, RidError};

use crate::http::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server stores no resources (core §7.3.1: such a server answers 404).
    #[error("this server does not store resources")]
    Disabled,
    #[error("{0}")]
    Rid(#[from] RidError),
    #[error("{0}")]
    InvalidAccess(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("an upload must say its size in Content-Length")]
    LengthRequired,
    #[error(
        "too large: one upload may have {max_upload} bytes, and {remaining} bytes of your storage are left"
    )]
    TooLarge { max_upload: u64, remaining: u64 },
    #[error("a resource of this ID exists on this server; choose another ID")]
    DuplicateRid,
    #[error("only actors registered on this server may upload resources here")]
    UploadForbidden,
    #[error("the upload's body did not have the size its Content-Length announced")]
    LengthMismatch,
    #[error("the upload's body failed: {0}")]
    BodyFailed(String),
    /// Absent, or not readable by the caller: the same answer for both (core §7.3.1).
    #[error("no such resource")]
    NotFound,
    /// No session, and the resource (if there is one) is not public.
    #[error("a session is needed to read this resource, if it exists")]
    AuthRequired,
    #[error("media storage failed: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] fugue_store::Error),
}

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        use StatusCode as S;
        let detail = err.to_string();
        let (status, code) = match err {
            Error::Disabled => (S::NOT_FOUND, ErrorCode::NotFound),
            Error::Rid(RidError::TooLong) => {
                return ApiError::new(S::URI_TOO_LONG, ErrorCode::RidTooLong, detail)
                    .with_extension("reason", "RID_TOO_LONG")
                    .with_extension("charLimit", RID_MAX);
            }
            Error::Rid(RidError::Invalid) => (S::BAD_REQUEST, ErrorCode::InvalidRid),
            Error::InvalidAccess(_) | Error::InvalidRequest(_) => {
                (S::BAD_REQUEST, ErrorCode::MalformedRequest)
            }
            Error::LengthRequired => (S::LENGTH_REQUIRED, ErrorCode::LengthRequired),
            Error::TooLarge { remaining, .. } => {
                return ApiError::new(S::PAYLOAD_TOO_LARGE, ErrorCode::TooLarge, detail)
                    .with_extension("reason", "TOO_LARGE")
                    .with_extension("remainingStorageBytes", remaining.to_string());
            }
            Error::DuplicateRid => (S::CONFLICT, ErrorCode::DuplicateRid),
            Error::UploadForbidden => (S::FORBIDDEN, ErrorCode::UploadForbidden),
            Error::LengthMismatch | Error::BodyFailed(_) => {
                (S::BAD_REQUEST, ErrorCode::LengthMismatch)
            }
            Error::NotFound => (S::NOT_FOUND, ErrorCode::ResourceNotFound),
            Error::AuthRequired => (S::UNAUTHORIZED, ErrorCode::Unauthenticated),
            Error::Io(e) => return ApiError::internal(&e),
            Error::Store(e) => return ApiError::internal(&e),
        };
        ApiError::new(status, code, detail)
    }
}
