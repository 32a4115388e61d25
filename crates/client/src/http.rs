//! The HTTP client: URL building, status checks and body decoding for every call, plus the
//! endpoints anyone may call.
//!
//! Owns the rule that a non-2xx status is always an [`Error::Api`], never a body read as
//! success. Holds no credentials: calls that need a token live on [`Session`](crate::Session).

use std::sync::Arc;
use std::time::Duration;

use fugue_proto::FederationId;
use fugue_proto::api::{
    self, get_actor_idcerts, get_server_idcert, health, keymaterial, register, well_known,
};
use fugue_proto::cache::CacheableIdCert;
use reqwest::{Method, RequestBuilder, Response, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{Error, Result, transport};

const TIMEOUT: Duration = Duration::from_secs(30);

/// A connection to one home server. Cloning is cheap and shares the connection pool.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Arc<str>,
}

impl Client {
    /// `base_url` is the server root, e.g. `http://127.0.0.1:3000`; a trailing slash is fine.
    pub fn new(base_url: &str) -> Result<Self> {
        let base = base_url.trim().trim_end_matches('/');
        let url = Url::parse(base)
            .map_err(|e| Error::Transport(format!("invalid server URL {base_url:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::Transport(format!(
                "server URL {base_url:?} is not http(s)"
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .map_err(transport)?;
        Ok(Self {
            http,
            base: base.into(),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The underlying HTTP client, for tests that need to send malformed requests.
    pub fn raw(&self) -> &reqwest::Client {
        &self.http
    }

    pub async fn well_known(&self) -> Result<well_known::Response> {
        send_json(self.request(well_known::METHOD, well_known::PATH)?).await
    }

    pub async fn health(&self) -> Result<health::Response> {
        send_json(self.request(health::METHOD, health::PATH)?).await
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
        let request = self.request(register::METHOD, register::PATH)?.json(&body);
        let response: register::Response = send_json(request).await?;
        Ok(response.fid)
    }

    /// The server's certificate current at `timestamp` (now when `None`). Unverified.
    pub async fn server_cert(&self, timestamp: Option<u64>) -> Result<CacheableIdCert> {
        let query = get_server_idcert::Query { timestamp };
        let path = get_server_idcert::PATH;
        send_json(self.request_with_query(get_server_idcert::METHOD, path, &query)?).await
    }

    /// The actor's certificates as the server lists them. Unverified: see
    /// [`Client::verified_actor_certs`].
    pub async fn actor_certs(
        &self,
        fid: &FederationId,
        query: get_actor_idcerts::Query,
    ) -> Result<Vec<CacheableIdCert>> {
        // Local names may contain '%', which the server would otherwise percent-decode.
        let path = get_actor_idcerts::path(fid);
        send_json(self.request_with_query(get_actor_idcerts::METHOD, &path, &query)?).await
    }

    /// The largest encrypted key material element the server accepts, in bytes.
    pub async fn key_material_size_limit(&self) -> Result<u64> {
        let response = send(self.request(Method::GET, keymaterial::SIZE_PATH)?).await?;
        let header = api::MAX_PAYLOAD_HEADER;
        let value = response.headers().get(header);
        value
            .and_then(|v| v.to_str().ok()?.trim().parse().ok())
            .ok_or_else(|| {
                Error::UnexpectedResponse(format!("{header} is missing or not a number: {value:?}"))
            })
    }

    pub(crate) fn request(&self, method: Method, path: &str) -> Result<RequestBuilder> {
        self.request_with_query(method, path, &())
    }

    /// Encodes `query` through its serde form, so parameter names come from `fugue_proto::api`.
    pub(crate) fn request_with_query(
        &self,
        method: Method,
        path: &str,
        query: &impl Serialize,
    ) -> Result<RequestBuilder> {
        let mut url = Url::parse(&format!("{}{path}", self.base))
            .map_err(|e| Error::Transport(format!("cannot build URL for {path}: {e}")))?;
        let fields = match serde_json::to_value(query) {
            Ok(Value::Object(fields)) => fields,
            Ok(_) => Default::default(),
            Err(e) => return Err(Error::Transport(format!("cannot encode query: {e}"))),
        };
        let pairs: Vec<(String, String)> = fields
            .into_iter()
            .filter_map(|(key, value)| match value {
                Value::Null => None,
                Value::String(s) => Some((key, s)),
                other => Some((key, other.to_string())),
            })
            .collect();
        if !pairs.is_empty() {
            url.query_pairs_mut().extend_pairs(pairs);
        }
        Ok(self.http.request(method, url))
    }
}

/// Sends `request` and turns any non-2xx status into [`Error::Api`].
pub(crate) async fn send(request: RequestBuilder) -> Result<Response> {
    let response = request.send().await.map_err(transport)?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    // An unreadable or non-problem body still leaves the status worth reporting.
    let body = response.bytes().await.unwrap_or_default();
    Err(Error::Api {
        status: status.as_u16(),
        problem: serde_json::from_slice(&body).ok(),
    })
}

pub(crate) async fn read_json<T: DeserializeOwned>(response: Response) -> Result<T> {
    let path = response.url().path().to_owned();
    let body = response.bytes().await.map_err(transport)?;
    serde_json::from_slice(&body).map_err(|e| Error::UnexpectedResponse(format!("{path}: {e}")))
}

pub(crate) async fn send_json<T: DeserializeOwned>(request: RequestBuilder) -> Result<T> {
    read_json(send(request).await?).await
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
        let path = get_actor_idcerts::path(&fid);
        let request = client
            .request_with_query(Method::GET, &path, &query)
            .unwrap();
        let url = request.build().unwrap().url().to_string();
        assert_eq!(
            url,
            "http://127.0.0.1:3000/.p2/core/v1/idcert/actor/a%25b@example.com?notBefore=5"
        );
        let bare = client
            .request(Method::GET, health::PATH)
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(bare.url().as_str(), "http://127.0.0.1:3000/health");
        assert!(Client::new("ftp://example.com").is_err());
    }
}
