use axum::http::StatusCode;
use fugue_proto::ErrorCode;

use crate::http::ApiError;
use crate::{federation, sessions};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Invalid(String),
    /// The source has not proven keys it signed messages here with.
    #[error("prove every key you signed messages here with; missing: certificates {0}")]
    KeysUnproven(String),
    #[error("{0}")]
    TargetInvalid(String),
    #[error("the redirect of {0} names another actor")]
    Elsewhere(String),
    #[error("no redirect of {0} to you")]
    NoRedirect(String),
    #[error("{0}")]
    NoGrant(String),
    #[error("message {0} is not one you may re-sign")]
    NotYours(u64),
    #[error("certificate {0} is not a valid certificate of yours from your home server")]
    CertNotYours(u64),
    #[error("the grant does not allow the key of certificate {0}")]
    KeyNotAllowed(u64),
    /// Exports need the object store, which a server without a media directory lacks.
    #[error("this server keeps no files, so it cannot build an export")]
    NoStorage,
    #[error("{0}")]
    Archive(String),
    #[error("the export could not be built: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Chat(#[from] crate::chat::Error),
    #[error(transparent)]
    Media(#[from] crate::media::Error),
    #[error(transparent)]
    Identity(#[from] crate::identity::Error),
    #[error(transparent)]
    Sessions(#[from] sessions::Error),
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
            Error::KeysUnproven(_) => (S::FORBIDDEN, ErrorCode::KeyTrialRequired),
            Error::TargetInvalid(_) => (S::BAD_REQUEST, ErrorCode::RedirectTargetInvalid),
            Error::Elsewhere(_) => (S::CONFLICT, ErrorCode::RedirectElsewhere),
            Error::NoRedirect(_) => (S::NOT_FOUND, ErrorCode::NotFound),
            Error::NoGrant(_)
            | Error::NotYours(_)
            | Error::CertNotYours(_)
            | Error::KeyNotAllowed(_) => (S::FORBIDDEN, ErrorCode::Forbidden),
            Error::NoStorage => (S::SERVICE_UNAVAILABLE, ErrorCode::StorageUnavailable),
            Error::Archive(_) => (S::BAD_REQUEST, ErrorCode::ArchiveInvalid),
            Error::Io(e) => return ApiError::internal(&e),
            Error::Chat(e) => return e.into(),
            Error::Media(e) => return e.into(),
            Error::Identity(e) => return e.into(),
            Error::Sessions(e) => return e.into(),
            Error::Federation(e) => return e.into(),
            Error::Store(e) => return ApiError::internal(&e),
        };
        ApiError::new(status, code, detail)
    }
}
