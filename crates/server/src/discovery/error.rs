use axum::http::StatusCode;
use fugue_proto::ErrorCode;
use fugue_proto::services::{ProviderUrl, ServiceError, ServiceName};

use crate::http::ApiError;
use crate::sessions;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A service name, provider URL or `DELETE` list that breaks the rules.
    #[error("{0}")]
    Invalid(#[from] ServiceError),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("actor {0} is not registered on this server")]
    ActorNotFound(String),
    #[error("only actors registered on this server may change their services, {0} is not")]
    RegistrationRequired(String),
    #[error("{url} is already a provider of {name}")]
    ServiceExists { name: ServiceName, url: ProviderUrl },
    #[error("{url} is not one of your {name} providers")]
    ServiceNotFound { name: ServiceName, url: ProviderUrl },
    #[error("at most {0} services per actor; remove one first")]
    TooManyServices(usize),
    #[error("your services changed while this request was handled; look again and retry")]
    ConcurrentChange,
    /// No or a wrong second factor, or the session failed.
    #[error(transparent)]
    Sessions(#[from] sessions::Error),
    #[error(transparent)]
    Store(#[from] fugue_store::Error),
}

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        use StatusCode as S;
        let detail = err.to_string();
        let (status, code) = match err {
            Error::Invalid(ServiceError::Name) => (S::BAD_REQUEST, ErrorCode::InvalidServiceName),
            Error::Invalid(ServiceError::Url) => (S::BAD_REQUEST, ErrorCode::InvalidServiceUrl),
            Error::Invalid(ServiceError::List(_)) | Error::InvalidRequest(_) => {
                (S::BAD_REQUEST, ErrorCode::MalformedRequest)
            }
            Error::ActorNotFound(_) => (S::NOT_FOUND, ErrorCode::ActorNotFound),
            // As the `Authed` extractor answers foreign sessions.
            Error::RegistrationRequired(_) => (S::FORBIDDEN, ErrorCode::Forbidden),
            Error::ServiceExists { .. } => (S::CONFLICT, ErrorCode::ServiceExists),
            Error::ServiceNotFound { .. } => (S::NOT_FOUND, ErrorCode::ServiceNotFound),
            Error::TooManyServices(_) => (S::CONFLICT, ErrorCode::TooManyServices),
            Error::ConcurrentChange => (S::CONFLICT, ErrorCode::ConcurrentChange),
            Error::Sessions(e) => return e.into(),
            Error::Store(e) => return ApiError::internal(&e),
        };
        ApiError::new(status, code, detail)
    }
}
