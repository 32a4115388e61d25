//! Federation errors and what a client sees of them. A remote server's failure is reported
//! as that server's failure (424), never as if it were ours.

use axum::http::StatusCode;

use fugue_proto::{DomainName, ErrorCode, Serial};

use super::remote::RemoteError;
use crate::http::ApiError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidFid(String),
    #[error("{0} is an actor of this server; sign in with a password instead")]
    LocalActor(String),
    #[error("the home server of {domain} did not answer usably")]
    HomeServer {
        domain: String,
        #[source]
        source: RemoteError,
    },
    #[error("no polyproto home server for {domain}: {reason}")]
    NotAHomeServer { domain: String, reason: String },
    #[error("the home server of {fid} has no certificate {serial} of it")]
    CertNotFound { fid: String, serial: u64 },
    #[error("certificate {serial} does not check out: {reason}")]
    CertInvalid { serial: u64, reason: String },
    #[error("certificate {serial} was revoked at {at}")]
    Revoked { serial: u64, at: u64 },
}

impl Error {
    pub(crate) fn home(domain: &DomainName, source: RemoteError) -> Self {
        Error::HomeServer {
            domain: domain.to_string(),
            source,
        }
    }

    pub(crate) fn invalid(serial: Serial, reason: impl Into<String>) -> Self {
        Error::CertInvalid {
            serial: serial.0,
            reason: reason.into(),
        }
    }
}

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        // What went wrong over there is for our log, not for the client: relayed details
        // would make us an oracle for whatever a hostile server points us at.
        if let Error::HomeServer { domain, source } = &err {
            tracing::warn!(%domain, error = %source, "home server failed");
        }
        use StatusCode as S;
        let (status, code) = match &err {
            Error::InvalidFid(_) => (S::BAD_REQUEST, ErrorCode::InvalidFederationId),
            Error::LocalActor(_) => (S::BAD_REQUEST, ErrorCode::LocalActor),
            Error::HomeServer { .. } => (S::FAILED_DEPENDENCY, ErrorCode::HomeServerUnavailable),
            Error::NotAHomeServer { .. } => (S::FAILED_DEPENDENCY, ErrorCode::NotAHomeServer),
            Error::CertNotFound { .. } => (S::NOT_FOUND, ErrorCode::CertNotFound),
            Error::CertInvalid { .. } => (S::FORBIDDEN, ErrorCode::ForeignCertInvalid),
            Error::Revoked { .. } => (S::FORBIDDEN, ErrorCode::CertRevoked),
        };
        ApiError::new(status, code, err.to_string())
    }
}
