//! The HTTP client: URL building, status checks and body decoding for every call, plus the
//! endpoints anyone may call.
//!
//! Owns the rule that a non-2xx status is always an [`Error::Api`], never a body read as
//! success, and that no answer is read beyond a size cap: the CLI talks to servers it does not
//! trust (`fugue certs show`, `fugue federation login`). Holds no credentials: calls that need
//! a token live on [`Session`](crate::Session).

use std::sync::Arc;
use std::time::Duration;

use fugue_proto::FederationId;
use fugue_proto::api::{
    self, Target, get_actor_idcerts, get_server_idcert, health, key_material_size, register,
    well_known,
};
use fugue_proto::cache::CacheableIdCert;
use reqwest::{RequestBuilder, Response, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result, transport};

const TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer read by default: far above any certificate list or key backup a server
/// sends, far below what would hurt the client's memory.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Largest error body read: a problem document is a few hundred bytes.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// A connection to one home server. Cloning is cheap and shares the connection pool.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Arc<str>,
    max_body: usize,
}

/// Builds a [`Client`] with limits other than the defaults.
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    base_url: String,
    max_body: usize,
    timeout: Duration,
}

impl ClientBuilder {
    /// Largest response body read, in bytes ([`DEFAULT_MAX_BODY_BYTES`] by default); a larger
    /// answer fails with [`Error::ResponseTooLarge`] without being read further.
    pub fn max_body_bytes(mut self, max: usize) -> Self {
        self.max_body = max;
        self
    }

    /// Timeout of each request, the whole body included (30 s by default).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn build(self) -> Result<Client> {
        let base_url = &self.base_url;
        let base = base_url.trim().trim_end_matches('/');
        let url = Url::parse(base)
            .map_err(|e| Error::Transport(format!("invalid server URL {base_url:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::Transport(format!(
                "server URL {base_url:?} is not http(s)"
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(self.timeout)
            .build()
            .map_err(transport)?;
        Ok(Client {
            http,
            base: base.into(),
            max_body: self.max_body,
        })
    }
}

impl Client {
    /// `base_url` is the server root, e.g. `http://127.0.0.1:3000`; a trailing slash is fine.
    pub fn new(base_url: &str) -> Result<Self> {
        Self::builder(base_url).build()
    }

    /// A client with limits of its own; see [`ClientBuilder`].
    pub fn builder(base_url: &str) -> ClientBuilder {
        ClientBuilder {
            base_url: base_url.to_owned(),
            max_body: DEFAULT_MAX_BODY_BYTES,
            timeout: TIMEOUT,
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The underlying HTTP client, for tests that need to send malformed requests. Only with
    /// the `test-util` feature.
    #[cfg(feature = "test-util")]
    pub fn raw(&self) -> &reqwest::Client {
        &self.http
    }

    pub async fn well_known(&self) -> Result<well_known::Response> {
        self.send_json(self.request(well_known::target())?).await
    }

    pub async fn health(&self) -> Result<health::Response> {
        self.send_json(self.request(health::target())?).await
    }

    pub async fn register(
        &self,
        local_name: &str,
        password: &str,
        invite: Option<&str>,
        tos_consent: Option<bool>,
    ) -> Result<FederationId> {
        let body = register::Request {
            local_name: local_name.to_owned(),
            password: password.to_owned(),
            tos_consent,
            invite: invite.map(str::to_owned),
        };
        let request = self.request(register::target())?.json(&body);
        let response: register::Response = self.send_json(request).await?;
        Ok(response.fid)
    }

    /// The server's certificate current at `timestamp` (now when `None`). Unverified.
    pub async fn server_cert(&self, timestamp: Option<u64>) -> Result<CacheableIdCert> {
        let query = get_server_idcert::Query { timestamp };
        self.send_json(self.request_with_query(get_server_idcert::target(), &query)?)
            .await
    }

    /// The actor's certificates as the server lists them. Unverified: see
    /// [`Client::verified_actor_certs`].
    pub async fn actor_certs(
        &self,
        fid: &FederationId,
        query: get_actor_idcerts::Query,
    ) -> Result<Vec<CacheableIdCert>> {
        // The target escapes the '%' a local name may contain.
        let target = get_actor_idcerts::target(fid);
        self.send_json(self.request_with_query(target, &query)?)
            .await
    }

    /// The largest encrypted key material element the server accepts, in bytes.
    pub async fn key_material_size_limit(&self) -> Result<u64> {
        let response = send(self.request(key_material_size::target())?).await?;
        let header = api::MAX_PAYLOAD_HEADER;
        let value = response.headers().get(header);
        value
            .and_then(|v| v.to_str().ok()?.trim().parse().ok())
            .ok_or_else(|| {
                Error::UnexpectedResponse(format!("{header} is missing or not a number: {value:?}"))
            })
    }

    /// A request for `target`: its declared method at its path below the base URL. Every
    /// call goes through here, so no URL is built anywhere else.
    pub(crate) fn request(&self, target: Target) -> Result<RequestBuilder> {
        self.request_with_query(target, &())
    }

    /// Encodes `query` through its serde form, so parameter names come from `fugue_proto::api`.
    pub(crate) fn request_with_query(
        &self,
        target: Target,
        query: &impl Serialize,
    ) -> Result<RequestBuilder> {
        let mut url = self.url(&target)?;
        let pairs = api::query_pairs(query).map_err(Error::Transport)?;
        if !pairs.is_empty() {
            url.query_pairs_mut().extend_pairs(pairs);
        }
        Ok(self.http.request(target.method(), url))
    }

    /// A request for `target` with a query already encoded (lists whose encoding has rules
    /// of its own, like [`fugue_proto::services::delete_query`]).
    pub(crate) fn request_with_encoded_query(
        &self,
        target: Target,
        query: &str,
    ) -> Result<RequestBuilder> {
        let mut url = self.url(&target)?;
        if !query.is_empty() {
            url.set_query(Some(query));
        }
        Ok(self.http.request(target.method(), url))
    }

    fn url(&self, target: &Target) -> Result<Url> {
        let path = &target.path;
        Url::parse(&format!("{}{path}", self.base))
            .map_err(|e| Error::Transport(format!("cannot build URL for {path}: {e}")))
    }
}

/// Sends `request` and turns any non-2xx status into [`Error::Api`].
pub(crate) async fn send(request: RequestBuilder) -> Result<Response> {
    let response = request.send().await.map_err(transport)?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    // An unreadable, oversized or non-problem body still leaves the status worth reporting.
    let body = read_capped(response, MAX_ERROR_BODY_BYTES)
        .await
        .unwrap_or_default();
    Err(Error::Api {
        status: status.as_u16(),
        problem: serde_json::from_slice(&body).ok().map(Box::new),
    })
}

/// The body, chunk by chunk, refused as soon as it would exceed `max` bytes: a server that
/// streams without end costs at most `max` bytes of memory.
async fn read_capped(mut response: Response, max: usize) -> Result<Vec<u8>> {
    let too_large = || Error::ResponseTooLarge { limit: max };
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        if chunk.len() > max - body.len() {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

impl Client {
    pub(crate) async fn read_json<T: DeserializeOwned>(&self, response: Response) -> Result<T> {
        let path = response.url().path().to_owned();
        let body = read_capped(response, self.max_body).await?;
        serde_json::from_slice(&body).map_err(|e| Error::UnexpectedResponse(format!("{path}: {e}")))
    }

    pub(crate) async fn read_text(&self, response: Response) -> Result<String> {
        let path = response.url().path().to_owned();
        let body = read_capped(response, self.max_body).await?;
        String::from_utf8(body)
            .map_err(|_| Error::UnexpectedResponse(format!("{path}: the answer is not UTF-8")))
    }

    pub(crate) async fn send_json<T: DeserializeOwned>(
        &self,
        request: RequestBuilder,
    ) -> Result<T> {
        self.read_json(send(request).await?).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn queries_use_the_wire_names_and_skip_absent_fields() {
        let client = Client::new("http://127.0.0.1:3000/").unwrap();
        assert_eq!(client.base_url(), "http://127.0.0.1:3000");
        let fid: FederationId = "a%b@example.com".parse().unwrap();
        let query = get_actor_idcerts::Query {
            not_before: Some(5),
            ..Default::default()
        };
        let request = client
            .request_with_query(get_actor_idcerts::target(&fid), &query)
            .unwrap();
        let url = request.build().unwrap().url().to_string();
        assert_eq!(
            url,
            "http://127.0.0.1:3000/.p2/core/v1/idcert/actor/a%25b@example.com?notBefore=5"
        );
        let bare = client.request(health::target()).unwrap().build().unwrap();
        assert_eq!(bare.url().as_str(), "http://127.0.0.1:3000/health");
        assert!(Client::new("ftp://example.com").is_err());
    }

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A server that answers one request with `head` and then `chunks` chunks of 64 KiB
    /// (chunked encoding), stopping early when the client hangs up. Returns the base URL and
    /// the number of bytes it managed to send.
    async fn stub(head: &'static str, chunks: usize) -> (String, tokio::task::JoinHandle<usize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = tcp.read(&mut buf).await.unwrap();
                assert!(n > 0 && request.len() < 65536);
                request.extend_from_slice(&buf[..n]);
            }
            tcp.write_all(head.as_bytes()).await.unwrap();
            let chunk = format!("10000\r\n{}\r\n", "[".repeat(0x10000));
            let mut sent = 0;
            for _ in 0..chunks {
                if tcp.write_all(chunk.as_bytes()).await.is_err() {
                    break;
                }
                sent += 0x10000;
            }
            sent
        });
        (url, task)
    }

    #[tokio::test]
    async fn an_endless_body_is_cut_off_at_the_cap() {
        // 64 MiB offered; the client must stop after 1 MiB and hang up.
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
        let (url, server) = stub(head, 1024).await;
        let client = Client::builder(&url)
            .max_body_bytes(1024 * 1024)
            .build()
            .unwrap();
        let fid: FederationId = "alice@example.com".parse().unwrap();
        let err = client
            .actor_certs(&fid, Default::default())
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::ResponseTooLarge { limit: 1048576 }),
            "{err}"
        );
        assert!(
            err.to_string().contains("larger than 1048576 bytes"),
            "{err}"
        );
        drop(client);
        let sent = tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .unwrap()
            .unwrap();
        assert!(
            sent < 64 * 1024 * 1024,
            "the whole body was read ({sent} bytes)"
        );
    }

    #[tokio::test]
    async fn a_declared_length_over_the_cap_is_refused_before_reading() {
        let head =
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2147483648\r\n\r\n";
        let (url, _server) = stub(head, 0).await;
        let client = Client::new(&url).unwrap();
        let err = client.health().await.unwrap_err();
        assert!(
            matches!(err, Error::ResponseTooLarge { limit } if limit == DEFAULT_MAX_BODY_BYTES),
            "{err}"
        );
        assert_eq!(DEFAULT_MAX_BODY_BYTES, 16 * 1024 * 1024);
    }

    #[tokio::test]
    async fn a_huge_error_body_still_reports_the_status() {
        let head = "HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/problem+json\r\ntransfer-encoding: chunked\r\n\r\n";
        let (url, server) = stub(head, 1024).await;
        let client = Client::new(&url).unwrap();
        let err = client.health().await.unwrap_err();
        assert_eq!(err.status(), Some(500), "{err}");
        drop(client);
        let sent = tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .unwrap()
            .unwrap();
        assert!(sent < 64 * 1024 * 1024, "the whole error body was read");
    }
}
