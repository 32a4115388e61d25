//! Requests to other home servers, bounded: a timeout per request, a size limit per answer,
//! a few requests in flight per server, and only to public addresses (see `resolver`). A
//! slow or hostile server costs us at most that.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fugue_proto::api::{CORE_API, Target};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;

use super::resolver::{NonPublicAddress, PublicOnly, is_public};
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
    #[error("{host} is not at a public address: {reason}")]
    NotPublic { host: String, reason: String },
}

pub struct Remote {
    /// For everything another server names: public addresses only.
    http: reqwest::Client,
    /// For the origins of the operator's `federation.resolve` map only (development).
    mapped: reqwest::Client,
    cfg: config::Federation,
    in_flight: Mutex<HashMap<String, Arc<Semaphore>>>,
    sent: AtomicU64,
}

impl Remote {
    pub fn new(cfg: config::Federation) -> Self {
        let client = |public: Option<PublicOnly>| {
            let builder = reqwest::Client::builder()
                // A proxy from the environment would connect for us, past the resolver.
                .no_proxy()
                .timeout(Duration::from_millis(cfg.request_timeout_ms))
                .connect_timeout(Duration::from_millis(cfg.request_timeout_ms))
                // A redirect could lead anywhere; home servers answer where they are asked.
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("fugue/", env!("CARGO_PKG_VERSION")));
            match public {
                Some(resolver) => builder.dns_resolver(resolver),
                None => builder,
            }
            .build()
            .unwrap_or_default()
        };
        Self {
            http: client(Some(PublicOnly::new(&cfg.hosts))),
            mapped: client(None),
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

    /// The base URL of the home server a delegating `.well-known` names with `api` (core
    /// §3.1): a host, and perhaps a port, at the standard path — never another path, a query,
    /// a fragment or user info, which would let a hostile server choose what we request of
    /// a host. Mapped through `federation.resolve`, otherwise HTTPS to a public DNS name.
    pub fn delegated_base(&self, api: &str) -> Result<String, RemoteError> {
        let garbage = |reason: &str| RemoteError::Garbage {
            host: api.to_owned(),
            reason: reason.into(),
        };
        let url = reqwest::Url::parse(api).map_err(|_| garbage("not an absolute URL"))?;
        if !url.username().is_empty()
            || url.password().is_some()
            || url.query().is_some()
            || url.fragment().is_some()
        {
            return Err(garbage(
                "a delegation names a host, never user info, a query or a fragment",
            ));
        }
        let standard = CORE_API.trim_end_matches('/');
        if url.path() != CORE_API && url.path() != standard {
            return Err(RemoteError::Garbage {
                host: api.to_owned(),
                reason: format!("a delegation names a host; its path must be {CORE_API}"),
            });
        }
        let host = url
            .host_str()
            .ok_or_else(|| garbage("no host"))?
            .to_ascii_lowercase();
        if let Some(base) = self.cfg.resolve.get(&host) {
            return Ok(base.trim_end_matches('/').to_owned());
        }
        if url.scheme() != "https" {
            return Err(RemoteError::NotHttps { host });
        }
        // Another server names this host: only a public DNS name (the resolver checks the
        // addresses it stands for when we connect).
        if !is_public_name(&host) {
            return Err(RemoteError::Garbage {
                host,
                reason: "a delegated host must be a public domain name".into(),
            });
        }
        Ok(match url.port() {
            Some(port) => format!("https://{host}:{port}"),
            None => format!("https://{host}"),
        })
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

    /// GETs `target` with `query` from the server of `host` at `base` (scheme, host and
    /// port, from [`Remote::base_url`] or [`Remote::delegated_base`]) and decodes JSON,
    /// within the limits. `Ok(None)` for 404/204.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        host: &str,
        base: &str,
        target: Target,
        query: &impl Serialize,
    ) -> Result<Option<T>, RemoteError> {
        let garbage = |reason: String| RemoteError::Garbage {
            host: host.into(),
            reason,
        };
        debug_assert_eq!(target.method(), reqwest::Method::GET, "{target:?}");
        let mut url = reqwest::Url::parse(&format!("{base}{}", target.path))
            .map_err(|e| garbage(e.to_string()))?;
        let pairs = fugue_proto::api::query_pairs(query).map_err(garbage)?;
        if !pairs.is_empty() {
            url.query_pairs_mut().extend_pairs(pairs);
        }
        let url = url.as_str();
        let ms = self.cfg.request_timeout_ms;
        let sem = self.permit(host);
        let _permit = tokio::time::timeout(Duration::from_millis(ms), sem.acquire_owned())
            .await
            .map_err(|_| RemoteError::Busy { host: host.into() })?
            .map_err(|_| RemoteError::Busy { host: host.into() })?;
        // Trust goes with the origin the operator mapped, never with a host name another
        // server may name on another port or scheme.
        let mapped = self.is_mapped_origin(url);
        if !mapped {
            self.check_literal(host, url)?;
        }
        let client = if mapped { &self.mapped } else { &self.http };
        self.sent.fetch_add(1, Ordering::Relaxed);
        let work = async {
            let resp = client
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

    /// Whether `url` is at the origin (scheme, host, port) of a `federation.resolve` URL.
    fn is_mapped_origin(&self, url: &str) -> bool {
        let Ok(url) = reqwest::Url::parse(url) else {
            return false;
        };
        let origin = url.origin();
        self.cfg
            .resolve
            .values()
            .filter_map(|base| reqwest::Url::parse(base).ok())
            .any(|base| base.origin() == origin)
    }

    /// An address literal bypasses the resolver: it must be public too.
    fn check_literal(&self, host: &str, url: &str) -> Result<(), RemoteError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| RemoteError::Garbage {
            host: host.into(),
            reason: e.to_string(),
        })?;
        let Some(ip) = literal(&parsed) else {
            return Ok(());
        };
        if is_public(ip) {
            return Ok(());
        }
        Err(RemoteError::NotPublic {
            host: host.into(),
            reason: format!("{ip} is not a public address"),
        })
    }

    fn transport(&self, host: &str, e: &reqwest::Error) -> RemoteError {
        // The resolver's refusal travels as the source of a connect error.
        let mut source = std::error::Error::source(e);
        while let Some(cause) = source {
            if let Some(refused) = cause.downcast_ref::<NonPublicAddress>() {
                return RemoteError::NotPublic {
                    host: host.into(),
                    reason: refused.to_string(),
                };
            }
            source = cause.source();
        }
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

/// The address of a URL whose host is an address literal.
fn literal(url: &reqwest::Url) -> Option<std::net::IpAddr> {
    let host = url.host_str()?;
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
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
    use super::{Remote, RemoteError, is_public_name};
    use crate::config;
    use fugue_proto::api::health;

    #[tokio::test]
    async fn an_address_literal_must_be_public_unless_the_operator_mapped_it() {
        let mut cfg = config::Federation::default();
        cfg.resolve
            .insert("dev.test".into(), "http://127.0.0.1:9".into());
        let remote = Remote::new(cfg);
        for url in [
            "https://10.0.0.1",
            "https://[::ffff:127.0.0.1]",
            "http://[::1]:9",
        ] {
            let err = remote
                .get_json::<serde_json::Value>("x.test", url, health::target(), &())
                .await
                .unwrap_err();
            assert!(matches!(err, RemoteError::NotPublic { .. }), "{url}: {err}");
        }
        assert_eq!(remote.sent(), 0, "nothing was sent");
        // The operator's mapping may name loopback (port 9 is closed: unreachable).
        let err = remote
            .get_json::<serde_json::Value>("dev.test", "http://127.0.0.1:9", health::target(), &())
            .await
            .unwrap_err();
        assert!(matches!(err, RemoteError::Unreachable { .. }), "{err}");
    }

    #[test]
    fn only_the_mapped_origin_is_trusted_not_its_host_on_other_ports_or_schemes() {
        let mut cfg = config::Federation::default();
        cfg.resolve
            .insert("alpha.test".into(), "http://localhost:8081".into());
        let remote = Remote::new(cfg);
        assert!(remote.is_mapped_origin("http://localhost:8081/.p2/core/v1/idcert/server"));
        for other in [
            "https://localhost:8081/.p2/core/",
            "http://localhost:6379/.p2/core/",
            "http://127.0.0.1:8081/.p2/core/",
            "https://alpha.test/.p2/core/",
        ] {
            assert!(!remote.is_mapped_origin(other), "{other}");
        }
    }

    #[test]
    fn a_delegation_names_a_host_and_port_never_a_path_or_query() {
        let mut cfg = config::Federation::default();
        cfg.resolve
            .insert("mapped.test".into(), "http://127.0.0.1:8081/".into());
        let remote = Remote::new(cfg);
        let ok = |api: &str| remote.delegated_base(api).unwrap();
        assert_eq!(
            ok("https://api.example.com/.p2/core/"),
            "https://api.example.com"
        );
        assert_eq!(
            ok("https://API.example.com/.p2/core"),
            "https://api.example.com"
        );
        assert_eq!(
            ok("https://api.example.com:8443/.p2/core/"),
            "https://api.example.com:8443"
        );
        assert_eq!(ok("http://mapped.test/.p2/core/"), "http://127.0.0.1:8081");
        for bad in [
            "https://jenkins.example.com/job/x/build?token=T&",
            "https://api.example.com/.p2/core/?x=1",
            "https://api.example.com/.p2/core/#f",
            "https://user:pw@api.example.com/.p2/core/",
            "https://api.example.com/",
            "https://api.example.com/other/.p2/core/",
            "http://mapped.test/secret",
            "http://api.example.com/.p2/core/",
            "https://127.0.0.1/.p2/core/",
            "https://localhost/.p2/core/",
            "not a url",
        ] {
            assert!(remote.delegated_base(bad).is_err(), "{bad}");
        }
    }

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
