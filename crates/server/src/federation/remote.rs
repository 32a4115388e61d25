//! Requests to other home servers, bounded: a timeout per request, a size limit per answer,
//! a few requests in flight per server. A slow or hostile server costs us at most that.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;

use crate::config;

/// Why a remote server did not give a usable answer. Never shown to our clients as if it
/// were our own error: the federation error maps it to "the home server failed".
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RemoteError {
    #[error("{host} did not answer within {ms} ms")]
    Timeout { host: String, ms: u64 },
    #[error("{host} is unreachable: {reason}")]
    Unreachable { host: String, reason: String },
    #[error("{host} answered HTTP {status}")]
    Status { host: String, status: u16 },
    #[error("{host} sent more than {limit} bytes")]
    TooLarge { host: String, limit: usize },
    #[error("{host} sent an answer that is not what the protocol says: {reason}")]
    Garbage { host: String, reason: String },
    #[error("{host} has too many requests from us in flight")]
    Busy { host: String },
    #[error("{host} may only be reached over HTTPS (or through federation.resolve)")]
    NotHttps { host: String },
}

pub struct Remote {
    http: reqwest::Client,
    cfg: config::Federation,
    in_flight: Mutex<HashMap<String, Arc<Semaphore>>>,
    sent: AtomicU64,
}

impl Remote {
    pub fn new(cfg: config::Federation) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(cfg.request_timeout_ms))
            .connect_timeout(Duration::from_millis(cfg.request_timeout_ms))
            // A redirect could lead anywhere; home servers answer where they are asked.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("fugue/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Self {
            http,
            cfg,
            in_flight: Mutex::default(),
            sent: AtomicU64::new(0),
        }
    }

    /// Requests sent so far (for measurements).
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Whether the operator mapped `host` in `federation.resolve`.
    pub fn is_mapped(&self, host: &str) -> bool {
        self.cfg.resolve.contains_key(host)
    }

    /// The base URL of `host` (no trailing slash): the configured development mapping, or
    /// `https://host`.
    pub fn base_url(&self, host: &str) -> String {
        match self.cfg.resolve.get(host) {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("https://{host}"),
        }
    }

    /// The base URL for an absolute URL named by another server (a delegating
    /// `.well-known`): its host through the mapping, or the URL itself if it is HTTPS.
    pub fn rebase(&self, url: &str) -> Result<String, RemoteError> {
        let (scheme, rest) = url.split_once("://").ok_or_else(|| RemoteError::Garbage {
            host: url.to_owned(),
            reason: "not an absolute URL".into(),
        })?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let host = authority.to_ascii_lowercase();
        if let Some(base) = self.cfg.resolve.get(&host) {
            return Ok(format!("{}/{path}", base.trim_end_matches('/')));
        }
        if !scheme.eq_ignore_ascii_case("https") {
            return Err(RemoteError::NotHttps { host });
        }
        // Another server names this host: only a public DNS name on the default port, so a
        // hostile `.well-known` cannot point us at this machine or its network.
        if !is_public_name(&host) {
            return Err(RemoteError::Garbage {
                host,
                reason: "a delegated host must be a public domain name".into(),
            });
        }
        Ok(format!("https://{host}/{path}"))
    }

    fn permit(&self, host: &str) -> Arc<Semaphore> {
        let mut map = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 10_000 {
            map.retain(|_, s| Arc::strong_count(s) > 1);
        }
        map.entry(host.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.cfg.max_in_flight_per_server.max(1))))
            .clone()
    }

    /// GETs `url` from `host` and decodes JSON, within the limits. `Ok(None)` for 404/204.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        host: &str,
        url: &str,
    ) -> Result<Option<T>, RemoteError> {
        let ms = self.cfg.request_timeout_ms;
        let sem = self.permit(host);
        let _permit = tokio::time::timeout(Duration::from_millis(ms), sem.acquire_owned())
            .await
            .map_err(|_| RemoteError::Busy { host: host.into() })?
            .map_err(|_| RemoteError::Busy { host: host.into() })?;
        self.sent.fetch_add(1, Ordering::Relaxed);
        let work = async {
            let resp = self
                .http
                .get(url)
                .header("accept", "application/json")
                .send()
                .await
                .map_err(|e| self.transport(host, &e))?;
            let status = resp.status().as_u16();
            if status == 404 || status == 204 {
                return Ok(None);
            }
            if status != 200 {
                return Err(RemoteError::Status {
                    host: host.into(),
                    status,
                });
            }
            let body = self.read_limited(host, resp).await?;
            serde_json::from_slice(&body)
                .map(Some)
                .map_err(|e| RemoteError::Garbage {
                    host: host.into(),
                    reason: e.to_string(),
                })
        };
        // The client timeout covers each phase; this covers a server trickling its body.
        tokio::time::timeout(Duration::from_millis(ms), work)
            .await
            .map_err(|_| RemoteError::Timeout {
                host: host.into(),
                ms,
            })?
    }

    async fn read_limited(
        &self,
        host: &str,
        mut resp: reqwest::Response,
    ) -> Result<Vec<u8>, RemoteError> {
        let limit = self.cfg.max_response_bytes;
        let too_large = || RemoteError::TooLarge {
            host: host.into(),
            limit,
        };
        if resp.content_length().is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.transport(host, &e))? {
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    fn transport(&self, host: &str, e: &reqwest::Error) -> RemoteError {
        if e.is_timeout() {
            RemoteError::Timeout {
                host: host.into(),
                ms: self.cfg.request_timeout_ms,
            }
        } else {
            RemoteError::Unreachable {
                host: host.into(),
                reason: e.to_string(),
            }
        }
    }
}

/// A DNS name with at least two labels, a non-numeric top label, and nothing else (no user
/// info, port or address literal).
pub fn is_public_name(host: &str) -> bool {
    let labels: Vec<&str> = host.split('.').collect();
    let valid = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let tld = labels.last().copied().unwrap_or_default();
    labels.len() >= 2
        && labels.iter().all(|l| valid(l))
        && tld.bytes().any(|b| b.is_ascii_alphabetic())
        && !tld.starts_with("0x")
}

#[cfg(test)]
mod tests {
    use super::is_public_name;

    #[test]
    fn only_public_dns_names_pass() {
        for ok in ["example.com", "p2.example.net", "a-b.example.org"] {
            assert!(is_public_name(ok), "{ok}");
        }
        for bad in [
            "localhost",
            "127.0.0.1",
            "10.0.0.8",
            "0x7f.0.0.1",
            "x@10.0.0.5:8443",
            "example.com:8443",
            "[::1]",
            "a..b",
            "-a.example.com",
            "example.0x1",
        ] {
            assert!(!is_public_name(bad), "{bad}");
        }
    }
}
