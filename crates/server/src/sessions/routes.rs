//! Thin handlers for accounts and sessions: extract, call [`Sessions`], convert.

use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use fugue_proto::api::{
    delete_session, list_sessions, login, post_idcert, register, totp_confirm, totp_enroll,
};

use super::Authed;
use crate::AppState;
use crate::http::{
    ApiError, ApiResult, Body, ClientIp, Json, Query, Solution, bearer, created, ok,
};

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        Ok(app.sessions.authenticate(bearer(parts)).await?)
    }
}

/// `POST /.p2/auth/v1/register`
pub async fn register(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(req): Json<register::Request>,
) -> ApiResult<Response> {
    app.limits.register.check(&ip)?;
    let fid = app.sessions.register(req, app.config.clock.now()).await?;
    Ok(created(register::Response { fid }).into_response())
}

/// `POST /.p2/auth/v1/login`
pub async fn login(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(req): Json<login::Request>,
) -> ApiResult<Response> {
    app.limits.login.check(&ip)?;
    app.limits
        .login_name
        .check(&req.local_name.to_ascii_lowercase())?;
    let out = app.sessions.login(req, app.config.clock.now()).await?;
    Ok(created(login::Response {
        fid: out.fid,
        session_id: out.session_id,
        token: out.token,
        id_cert_beta3: out.cert_pem.clone(),
        id_cert: out.cert_pem,
    })
    .into_response())
}

/// `POST /.p2/core/v1/idcert` — body: the ID-CSR (PEM or DER).
pub async fn post_idcert(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    authed: Authed,
    Solution(solution): Solution,
    Body(csr): Body,
) -> ApiResult<Response> {
    app.limits.sensitive.check(&ip)?;
    let csr = strip_json_string(&csr);
    let (pem, token) = app
        .sessions
        .new_cert(&authed, &csr, solution.as_deref(), app.config.clock.now())
        .await?;
    Ok(created(post_idcert::Response {
        id_cert_beta3: pem.clone(),
        id_cert: pem,
        token,
    })
    .into_response())
}

/// The SDK sometimes sends a PEM as a JSON string literal (SDK-COMPAT §2.1).
fn strip_json_string(body: &[u8]) -> Vec<u8> {
    if body.trim_ascii_start().starts_with(b"\"")
        && let Ok(s) = serde_json::from_slice::<String>(body)
    {
        return s.into_bytes();
    }
    body.to_vec()
}

/// `DELETE /.p2/core/v1/session?session_id=`
pub async fn delete_session(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    authed: Authed,
    Solution(solution): Solution,
    Query(q): Query<delete_session::Query>,
) -> ApiResult<StatusCode> {
    app.limits.sensitive.check(&ip)?;
    app.sessions
        .revoke(
            &authed,
            q.session_id.as_deref(),
            solution.as_deref(),
            app.config.clock.now(),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /.p2/core/v1/sessions`
pub async fn list_sessions(State(app): State<AppState>, authed: Authed) -> ApiResult<Response> {
    let sessions: list_sessions::Response = app.sessions.list(&authed).await?;
    Ok(ok(sessions).into_response())
}

/// `POST /.p2/auth/v1/totp`
pub async fn totp_enroll(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    authed: Authed,
    Solution(solution): Solution,
) -> ApiResult<Response> {
    app.limits.sensitive.check(&ip)?;
    let (secret, otpauth_url) = app
        .sessions
        .totp_enroll(&authed, solution.as_deref(), app.config.clock.now())
        .await?;
    Ok(ok(totp_enroll::Response {
        secret,
        otpauth_url,
    })
    .into_response())
}

/// `POST /.p2/auth/v1/totp/confirm`
pub async fn totp_confirm(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    authed: Authed,
    Json(req): Json<totp_confirm::Request>,
) -> ApiResult<StatusCode> {
    app.limits.sensitive.check(&ip)?;
    app.sessions
        .totp_confirm(&authed, &req.code, app.config.clock.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
