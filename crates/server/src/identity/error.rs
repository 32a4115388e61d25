use axum::http::StatusCode;
use fugue_proto::ErrorCode;
use fugue_proto::certs::CertError;

use crate::http::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("actor {0} is not registered on this server")]
    ActorNotFound(String),
    #[error("no server certificate was current at {0}")]
    NoServerCertAt(u64),
    #[error("the server certificate has expired; rotate the server key")]
    ServerCertExpired,
    #[error("serial {0} is not one of your ID-Certs")]
    UnknownSerial(u64),
    #[error("{0}; delete it first")]
    KeyMaterialExists(String),
    #[error("a key material element is larger than {0} bytes")]
    KeyMaterialTooLarge(usize),
    #[error("at most {0} key material slots per actor")]
    KeyMaterialSlotsExhausted(usize),
    #[error("no key material matched")]
    KeyMaterialNotFound,
    #[error("{0}")]
    InvalidRequest(String),
    /// A client's certificate or CSR is unacceptable.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// Building or parsing a certificate of our own failed: our fault, never the client's.
    #[error("issuing a certificate failed: {0}")]
    Issuance(CertError),
    #[error("the stored server key does not persist: {0}")]
    KeyPersistence(String),
    /// Serialising an answer of our own failed.
    #[error("encoding an answer failed: {0}")]
    Encoding(#[source] serde_json::Error),
    #[error(transparent)]
    Store(#[from] fugue_store::Error),
}

/// How a certificate or CSR problem looks to a client. One place for both domains.
pub fn cert_problem(err: &CertError) -> ApiError {
    let (status, code) = match err {
        CertError::Malformed(_) | CertError::Profile(_) | CertError::OutsideValidity { .. } => {
            (StatusCode::BAD_REQUEST, ErrorCode::InvalidCsr)
        }
        CertError::UnsupportedAlgorithm => {
            (StatusCode::BAD_REQUEST, ErrorCode::UnsupportedAlgorithm)
        }
        CertError::WeakKey => (StatusCode::BAD_REQUEST, ErrorCode::WeakKey),
        CertError::SignatureInvalid => (StatusCode::BAD_REQUEST, ErrorCode::CsrSignatureInvalid),
        CertError::SubjectMismatch(_) => (StatusCode::FORBIDDEN, ErrorCode::CsrSubjectMismatch),
        CertError::CapabilitiesForbidden(_) => {
            (StatusCode::FORBIDDEN, ErrorCode::CsrCapabilitiesForbidden)
        }
        CertError::InvalidSessionId => (StatusCode::BAD_REQUEST, ErrorCode::InvalidSessionId),
    };
    ApiError::new(status, code, err.to_string())
}

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        (&err).into()
    }
}

impl From<&Error> for ApiError {
    fn from(err: &Error) -> Self {
        let (status, code) = match err {
            Error::ActorNotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::ActorNotFound),
            Error::NoServerCertAt(_) => (StatusCode::NOT_FOUND, ErrorCode::CertNotFound),
            Error::UnknownSerial(_) => (StatusCode::NOT_FOUND, ErrorCode::UnknownSerial),
            Error::KeyMaterialExists(_) => (StatusCode::CONFLICT, ErrorCode::KeyMaterialExists),
            Error::KeyMaterialTooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::KeyMaterialTooLarge,
            ),
            Error::KeyMaterialSlotsExhausted(_) => {
                (StatusCode::CONFLICT, ErrorCode::KeyMaterialSlotsExhausted)
            }
            Error::KeyMaterialNotFound => (StatusCode::NOT_FOUND, ErrorCode::KeyMaterialNotFound),
            Error::InvalidRequest(_) => (StatusCode::BAD_REQUEST, ErrorCode::MalformedRequest),
            Error::Cert(e) => return cert_problem(e),
            Error::ServerCertExpired => {
                tracing::error!("{err}");
                return ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::Overloaded,
                    "the server cannot issue certificates right now",
                )
                .with_retry_after(60);
            }
            Error::Issuance(_)
            | Error::KeyPersistence(_)
            | Error::Encoding(_)
            | Error::Store(_) => {
                return ApiError::internal(err);
            }
        };
        ApiError::new(status, code, err.to_string())
    }
}
