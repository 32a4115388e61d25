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

/// An error on its way to the client: a problem body plus an optional `Retry-After`.
#[derive(Debug)]
pub struct ApiError {
    pub problem: Problem,
    pub retry_after: Option<u64>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, detail: impl Into<String>) -> Self {
        let title = status.canonical_reason().unwrap_or("Error");
        Self {
            problem: Problem::new(status.as_u16(), code, title).with_detail(detail),
            retry_after: None,
        }
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
            .map_err(|r| body_rejection(r.status(), r.body_text()))
    }
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

/// The bearer token of the request, if any.
pub fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The client's address as rate limits see it: the socket's peer (put a trusted proxy's
/// header handling here if needed), with IPv6 clients grouped by their /64, the smallest block
/// one subscriber usually gets.
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let ip = match ip {
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
                IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into())
            }
            IpAddr::V6(v6) => {
                IpAddr::V4(v6.to_ipv4_mapped().unwrap_or(std::net::Ipv4Addr::LOCALHOST))
            }
            v4 => v4,
        };
        Ok(ClientIp(ip))
    }
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
