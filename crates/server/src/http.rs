//! The HTTP edge: problem responses, our extractors and canonical JSON responses.
//!
//! Errors become responses here and only here. Extractor rejections are problems too, so a
//! client never sees axum's plain-text errors.

use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use fugue_proto::problem::PROBLEM_JSON;
use fugue_proto::{ErrorCode, Problem};

/// An error on its way to the client: a problem body plus an optional `Retry-After`. The
/// problem is boxed: every handler's `Result` carries an `ApiError`'s size.
#[derive(Debug)]
pub struct ApiError {
    pub problem: Box<Problem>,
    pub retry_after: Option<u64>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, detail: impl Into<String>) -> Self {
        let title = status.canonical_reason().unwrap_or("Error");
        Self {
            problem: Box::new(Problem::new(status.as_u16(), code, title).with_detail(detail)),
            retry_after: None,
        }
    }

    /// The problem with an extension member a route's spec names (RFC 9457 §3.2).
    pub fn with_extension(mut self, name: &str, value: impl Into<serde_json::Value>) -> Self {
        let problem = std::mem::replace(
            &mut *self.problem,
            Problem::new(500, ErrorCode::Internal, ""),
        );
        *self.problem = problem.with_extension(name, value);
        self
    }

    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }

    /// A 500 whose cause is logged, never shown.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "internal error; see the server log",
        )
    }

    /// 503: the server is at capacity now; retry soon.
    pub fn overloaded(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Overloaded,
            detail,
        )
        .with_retry_after(1)
    }

    pub fn rate_limited(retry_after: u64) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            "too many requests; slow down",
        )
        .with_retry_after(retry_after)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = fugue_proto::wire::to_canonical_vec(&self.problem).unwrap_or_default();
        let mut resp = (
            status,
            [(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON))],
            body,
        )
            .into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

/// Largest problem body [`namespaced_problems`] rewrites (ours are a few hundred bytes).
const MAX_PROBLEM_BYTES: usize = 16 * 1024;

/// Marks the problems of an extension's routes with its namespace: whatever produced them
/// (a domain error, an extractor's rejection, the rate limit), the body says `namespace`,
/// and the chat namespaces add chat.md's `message` and numeric `code` (OP-41) —
/// [`Problem::in_namespace`] decides. Other responses pass untouched.
pub async fn namespaced_problems(
    namespace: &'static str,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let resp = next.run(req).await;
    let is_problem = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == PROBLEM_JSON.as_bytes());
    if !is_problem {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_PROBLEM_BYTES).await {
        Ok(bytes) => bytes,
        Err(e) => return ApiError::internal(&e).into_response(),
    };
    let Ok(problem) = serde_json::from_slice::<Problem>(&bytes) else {
        return Response::from_parts(parts, axum::body::Body::from(bytes));
    };
    let body = fugue_proto::wire::to_canonical_vec(&problem.in_namespace(namespace))
        .unwrap_or_else(|_| bytes.to_vec());
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// A JSON body in RFC 8785 canonical form with the given status.
pub struct Canonical<T>(pub StatusCode, pub T);

impl<T: Serialize> IntoResponse for Canonical<T> {
    fn into_response(self) -> Response {
        match fugue_proto::wire::to_canonical_vec(&self.1) {
            Ok(body) => (
                self.0,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                body,
            )
                .into_response(),
            Err(e) => ApiError::internal(&e).into_response(),
        }
    }
}

/// 200 with JSON that is canonical already (built and kept by a service).
pub struct CanonicalJson(pub Vec<u8>);

impl IntoResponse for CanonicalJson {
    fn into_response(self) -> Response {
        (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            self.0,
        )
            .into_response()
    }
}

/// 200 with canonical JSON.
pub fn ok<T: Serialize>(value: T) -> Canonical<T> {
    Canonical(StatusCode::OK, value)
}

/// 201 with canonical JSON.
pub fn created<T: Serialize>(value: T) -> Canonical<T> {
    Canonical(StatusCode::CREATED, value)
}

fn body_rejection(status: StatusCode, text: String) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(status, ErrorCode::PayloadTooLarge, "request body too large")
    } else {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::MalformedRequest, text)
    }
}

/// The raw body, with the size limit turned into a 413 problem.
pub struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Bytes::from_request(req, state)
            .await
            .map(Body)
            .map_err(|r| {
                if timed_out(&r) {
                    ApiError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        ErrorCode::RequestTimeout,
                        "the request body did not arrive in time",
                    )
                } else {
                    body_rejection(r.status(), r.body_text())
                }
            })
    }
}

/// Whether reading a body failed because the body read timeout (set by the accept loop)
/// ran out.
fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = c.source();
    }
    false
}

/// A JSON body. Unlike axum's, it does not require `Content-Type: application/json`: the
/// reference SDK sends JSON without one (SDK-COMPAT §1).
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let Body(bytes) = Body::from_request(req, state).await?;
        serde_json::from_slice(&bytes).map(Json).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::MalformedRequest,
                format!("invalid JSON body: {e}"),
            )
        })
    }
}

/// Query parameters; a bad query is a 400 problem.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|r| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::MalformedRequest,
                    r.body_text(),
                )
            })
    }
}

/// Path parameters; a bad one is a 400 problem.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|r| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::MalformedRequest,
                    r.body_text(),
                )
            })
    }
}

/// The value of `X-P2-Sensitive-Solution`, if any.
pub struct Solution(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for Solution {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let value = parts
            .headers
            .get(fugue_proto::api::SENSITIVE_HEADER)
            // UTF-8, not only ASCII: passwords may use any script.
            .map(|v| {
                std::str::from_utf8(v.as_bytes())
                    .map(str::to_owned)
                    .map_err(|_| {
                        ApiError::new(
                            StatusCode::BAD_REQUEST,
                            ErrorCode::MalformedRequest,
                            "sensitive solution must be UTF-8",
                        )
                    })
            });
        Ok(Solution(value.transpose()?))
    }
}

/// The second-factor answer of an always-sensitive action (`X-P2-Sensitive-Solution`), taken
/// after the per-address limit of sensitive actions: every such route pays the limit before
/// its answer is checked.
pub struct Sensitive(pub Option<String>);

impl FromRequestParts<crate::AppState> for Sensitive {
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut Parts,
        app: &crate::AppState,
    ) -> Result<Self, ApiError> {
        let ClientIp(ip) = ClientIp::from_request_parts(parts, app).await?;
        app.limits.sensitive.check(&ip)?;
        let Solution(solution) = Solution::from_request_parts(parts, app).await?;
        Ok(Sensitive(solution))
    }
}

/// The bearer token of the request, if any.
pub fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The target a request is routed by, when it differs from the one it came with: no
/// trailing slash (OP-36: the SDK asks for `…/info/` and posts to `/migration/data/`), and
/// RawR's path as core §7.3.1's prose writes it, without `v1`, as the `v1` path (OP-28).
pub fn routed_uri(uri: &axum::http::Uri) -> Option<axum::http::Uri> {
    let path = uri.path();
    let unversioned = path.strip_prefix(fugue_proto::api::UNVERSIONED_RESOURCES);
    let trimmed = path.len() > 1 && path.ends_with('/');
    if unversioned.is_none() && !trimmed {
        return None;
    }
    let mut new = match unversioned {
        Some(rest) => format!("{}{rest}", fugue_proto::api::RESOURCES),
        None => path.to_owned(),
    };
    while new.len() > 1 && new.ends_with('/') {
        new.pop();
    }
    if let Some(q) = uri.query() {
        new.push('?');
        new.push_str(q);
    }
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(new.parse().ok()?);
    axum::http::Uri::from_parts(parts).ok()
}

/// A connection's place under `limits.max_connections`, in every request's extensions; an
/// upgraded connection (the gateway) holds on to it for as long as it lives.
#[derive(Clone)]
pub struct ConnectionSlot(pub std::sync::Arc<tokio::sync::OwnedSemaphorePermit>);

/// The client's address of a request, set by the accept loop: the socket peer, or the
/// address a trusted proxy forwarded ([`client_addr`]).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

/// The client's address as rate limits see it ([`ClientAddr`], else the socket peer), with
/// IPv6 clients grouped by their /64, the smallest block one subscriber usually gets.
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let ip = parts
            .extensions
            .get::<ClientAddr>()
            .map(|c| c.0)
            .or_else(|| {
                parts
                    .extensions
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|c| c.0.ip())
            })
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        Ok(ClientIp(rate_key(ip)))
    }
}

/// The key per-client limits use for `ip`: IPv4 as is (also when IPv4-mapped), IPv6 by /64.
pub fn rate_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
        v4 => v4,
    }
}

/// The client of a request that came from `peer`. Only a peer in `trusted` is believed about
/// whom it forwards for: then the forwarding chain (`Forwarded` `for=`, else
/// `X-Forwarded-For`) is read from the right, skipping trusted proxies, and the first other
/// address is the client. Anything unreadable in the chain stops the walk at the last address
/// that could be believed, so a client cannot choose its own address by sending the header.
pub fn client_addr(
    peer: SocketAddr,
    headers: &header::HeaderMap,
    trusted: &[ipnet::IpNet],
) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut client = canonical(peer.ip());
    if !is_trusted(&client) {
        return client;
    }
    let chain = forwarded_chain(headers);
    for hop in chain.iter().rev() {
        let Some(ip) = hop else {
            return client;
        };
        client = *ip;
        if !is_trusted(&client) {
            return client;
        }
    }
    client
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The addresses a request passed through, oldest first; `None` for a hop that is not an
/// address (`unknown`, obfuscated names, garbage). `Forwarded` (RFC 7239) wins over
/// `X-Forwarded-For` when present; every instance of the header counts, in order.
fn forwarded_chain(headers: &header::HeaderMap) -> Vec<Option<IpAddr>> {
    let forwarded: Vec<&str> = headers
        .get_all(header::FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .flat_map(|v| v.split(','))
            .map(|element| {
                element
                    .split(';')
                    .filter_map(|pair| pair.split_once('='))
                    .find(|(k, _)| k.trim().eq_ignore_ascii_case("for"))
                    .and_then(|(_, v)| forwarded_node(v.trim()))
            })
            .collect();
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("?").split(',').collect::<Vec<_>>())
        .map(|hop| hop.trim().parse::<IpAddr>().ok().map(canonical))
        .collect()
}

/// A `for=` node of RFC 7239: `192.0.2.1`, `192.0.2.1:80`, `"[2001:db8::1]:443"`.
fn forwarded_node(value: &str) -> Option<IpAddr> {
    let v = value.trim_matches('"');
    if let Some(rest) = v.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok().map(canonical);
    }
    let host = v.rsplit_once(':').map_or(v, |(h, _)| h);
    host.parse().ok().map(canonical)
}

/// Router fallback: unknown routes are 404 problems.
pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such route")
}

/// Known route, wrong method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        "method not allowed on this route",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_lose_trailing_slashes_and_resources_gain_their_version() {
        let routed = |t: &str| routed_uri(&t.parse().unwrap()).map(|u| u.to_string());
        assert_eq!(routed("/.p2/core/v1/sessions"), None, "left alone");
        assert_eq!(routed("/"), None);
        assert_eq!(
            routed("/.p2/core/v1/resource/x/info/").as_deref(),
            Some("/.p2/core/v1/resource/x/info")
        );
        assert_eq!(
            routed("/.p2/core/resource/pic.png?a=1").as_deref(),
            Some("/.p2/core/v1/resource/pic.png?a=1")
        );
        assert_eq!(
            routed("/.p2/core/resource/x/info/").as_deref(),
            Some("/.p2/core/v1/resource/x/info")
        );
    }

    fn headers(pairs: &[(&str, &str)]) -> header::HeaderMap {
        let mut h = header::HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn nets(list: &[&str]) -> Vec<ipnet::IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn addr(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_peers() {
        let proxy: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let stranger: SocketAddr = "203.0.113.9:5000".parse().unwrap();
        let xff = headers(&[("x-forwarded-for", "198.51.100.7")]);
        let trusted = nets(&["127.0.0.1/32"]);
        assert_eq!(client_addr(proxy, &xff, &trusted), addr("198.51.100.7"));
        assert_eq!(client_addr(stranger, &xff, &trusted), addr("203.0.113.9"));
        assert_eq!(client_addr(proxy, &xff, &[]), addr("127.0.0.1"));
    }

    #[test]
    fn the_chain_is_read_from_the_right_so_a_client_cannot_pick_its_address() {
        let proxy: SocketAddr = "10.0.0.2:5000".parse().unwrap();
        let trusted = nets(&["10.0.0.0/24"]);
        // The client sent "1.2.3.4" itself; the proxy appended the real peer.
        let xff = headers(&[("x-forwarded-for", "1.2.3.4, 198.51.100.7, 10.0.0.3")]);
        assert_eq!(client_addr(proxy, &xff, &trusted), addr("198.51.100.7"));
        let split = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        assert_eq!(client_addr(proxy, &split, &trusted), addr("198.51.100.7"));
        // Garbage stops the walk at the last believable hop.
        let junk = headers(&[("x-forwarded-for", "1.2.3.4, nonsense, 10.0.0.3")]);
        assert_eq!(client_addr(proxy, &junk, &trusted), addr("10.0.0.3"));
    }

    #[test]
    fn rfc_7239_forwarded_wins_and_its_node_forms_parse() {
        let proxy: SocketAddr = "[::1]:5000".parse().unwrap();
        let trusted = nets(&["::1/128"]);
        let both = headers(&[
            (
                "forwarded",
                r#"for=192.0.2.60;proto=https, for="[2001:db8::17]:4711""#,
            ),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        assert_eq!(client_addr(proxy, &both, &trusted), addr("2001:db8::17"));
        let port = headers(&[("forwarded", "for=192.0.2.60:8080")]);
        assert_eq!(client_addr(proxy, &port, &trusted), addr("192.0.2.60"));
        let unknown = headers(&[("forwarded", "for=unknown")]);
        assert_eq!(client_addr(proxy, &unknown, &trusted), addr("::1"));
    }

    #[test]
    fn rate_keys_group_ipv6_by_64_and_unmap_ipv4() {
        assert_eq!(
            rate_key(addr("2001:db8:1:2:3:4:5:6")),
            addr("2001:db8:1:2::")
        );
        assert_eq!(rate_key(addr("::ffff:192.0.2.1")), addr("192.0.2.1"));
        assert_eq!(rate_key(addr("192.0.2.1")), addr("192.0.2.1"));
    }
}
