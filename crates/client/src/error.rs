//! The SDK's error type, split by cause so callers can tell a refusal from a broken link.
//!
//! A server refusal keeps its stable [`ErrorCode`] for branching; `detail` is for people only.
//! Nothing here retries or decides what to show: that is the caller's business.

use fugue_proto::certs::CertError;
use fugue_proto::{ErrorCode, Problem};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with a non-2xx status; `problem` is its body when it was one
    /// (boxed: a problem is large, and every `Result` of the SDK would carry its size).
    #[error("{}", api_line(*status, problem.as_deref()))]
    Api {
        status: u16,
        problem: Option<Box<Problem>>,
    },
    /// No usable answer: connection, TLS, timeout, or a request that could not be built.
    #[error("could not talk to the server: {0}")]
    Transport(String),
    /// The server's answer is larger than the client reads
    /// ([`ClientBuilder::max_body_bytes`](crate::ClientBuilder::max_body_bytes)).
    #[error("the server's answer is larger than {limit} bytes; not read further")]
    ResponseTooLarge { limit: usize },
    /// A 2xx answer whose body is not what the endpoint promises.
    #[error("unexpected response from the server: {0}")]
    UnexpectedResponse(String),
    #[error("certificate error: {0}")]
    Cert(#[from] CertError),
    /// A certificate chain or cache signature failed a check; the message names the check.
    #[error("verification failed: {0}")]
    Verification(String),
    #[error("key store: {0}")]
    KeyStore(String),
    /// What the caller asked for cannot be done as asked (the message says why).
    #[error("{0}")]
    Invalid(String),
    /// The gateway handshake went wrong, or the gateway connection has ended.
    #[error("gateway: {0}")]
    Gateway(String),
    /// The server closed the gateway connection during the handshake, e.g. 4004 for a token
    /// that is not a live session.
    #[error("{}", gateway_closed_line(*code, reason))]
    GatewayClosed { code: Option<u16>, reason: String },
}

impl Error {
    /// The server's stable error code, when the server refused with a problem body.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Api {
                problem: Some(p), ..
            } => Some(p.error),
            _ => None,
        }
    }

    /// The HTTP status of a refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Collapses all whitespace runs so server text cannot break the one-line form.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn api_line(status: u16, problem: Option<&Problem>) -> String {
    match problem {
        Some(p) => {
            let text = p
                .detail
                .as_deref()
                .filter(|d| !d.trim().is_empty())
                .unwrap_or(&p.title);
            format!(
                "server refused ({status} {}): {}",
                p.error.as_str(),
                one_line(text)
            )
        }
        None => format!("server refused ({status}) without problem details"),
    }
}

fn gateway_closed_line(code: Option<u16>, reason: &str) -> String {
    let code = code.map_or_else(|| "no code".to_owned(), |c| c.to_string());
    match one_line(reason) {
        r if r.is_empty() => format!("the server closed the gateway ({code})"),
        r => format!("the server closed the gateway ({code}): {r}"),
    }
}

/// Keeps the whole cause chain: reqwest's own message alone rarely names the real failure.
pub(crate) fn transport(err: reqwest::Error) -> Error {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    Error::Transport(one_line(&text))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_display_as_one_line_with_the_code() {
        let problem = Problem::new(409, ErrorCode::SessionIdInUse, "Session ID in use")
            .with_detail("the session ID laptop\nis already in use");
        let err = Error::Api {
            status: 409,
            problem: Some(Box::new(problem)),
        };
        let text = err.to_string();
        assert_eq!(
            text,
            "server refused (409 SESSION_ID_IN_USE): the session ID laptop is already in use"
        );
        assert!(!text.contains('\n'));
        assert_eq!(err.code(), Some(ErrorCode::SessionIdInUse));
        assert_eq!(err.status(), Some(409));

        let bare = Error::Api {
            status: 502,
            problem: None,
        };
        assert_eq!(
            bare.to_string(),
            "server refused (502) without problem details"
        );
        assert_eq!(bare.code(), None);
    }
}
