//! Thin handlers for accounts and sessions: extract, call [`Sessions`], convert.

use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use fugue_proto::api::{
    self, change_password, delete_session, key_trial, keytrials, list_sessions, login, post_idcert,
    register, sign_in, totp_confirm, totp_enroll,
};

use super::Authed;
use crate::AppState;
use crate::http::{
    ApiError, ApiResult, Body, ClientIp, Json, Path, Query, Sensitive, bearer, created, ok,
};
use crate::routes::Routes;

/// The endpoints of accounts, sessions and key-trial sign-in.
pub(crate) fn router() -> Routes {
    Routes::new()
        .at(&api::register::ENDPOINT, register)
        .at(&api::login::ENDPOINT, login)
        .at(&api::totp_enroll::ENDPOINT, totp_enroll)
        .at(&api::totp_confirm::ENDPOINT, totp_confirm)
        .at(&api::totp_disable::ENDPOINT, totp_disable)
        .at(&api::change_password::ENDPOINT, change_password)
        .at(&api::delete_account::ENDPOINT, delete_account)
        .at(&api::post_idcert::ENDPOINT, post_idcert)
        .at(&api::delete_session::ENDPOINT, delete_session)
        .at(&api::list_sessions::ENDPOINT, list_sessions)
        .at(&api::key_trial::ENDPOINT, key_trial)
        .at(&api::sign_in::ENDPOINT, sign_in)
        .at(&api::keytrials::ENDPOINT, public_key_trials)
        .at(&api::idcert_extern::ENDPOINT, idcert_extern)
}

/// A session of an actor registered here (DIGEST §1.1 "R"): foreign sessions get 403.
impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let authed = app.sessions.authenticate(bearer(parts)).await?;
        if authed.is_foreign() {
            return Err(super::Error::ForeignSession.into());
        }
        Ok(authed)
    }
}

/// Any session of this server, also one of another server's actor (DIGEST §1.1 "B").
pub struct AnySession(pub Authed);

impl FromRequestParts<AppState> for AnySession {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        Ok(Self(app.sessions.authenticate(bearer(parts)).await?))
    }
}

/// A session when the request names one (`Authorization`), as [`AnySession`]; `None`
/// without (DIGEST §1.1 "N/B"). A token that is sent must be valid.
pub struct MaybeSession(pub Option<Authed>);

impl FromRequestParts<AppState> for MaybeSession {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        if !parts
            .headers
            .contains_key(axum::http::header::AUTHORIZATION)
        {
            return Ok(Self(None));
        }
        Ok(Self(Some(app.sessions.authenticate(bearer(parts)).await?)))
    }
}

/// Any session, as [`AnySession`], for a write that stores only while the session still
/// holds: as this node found it lately (no read), with the guard to make the write under.
pub struct PresumedSession(pub Authed, pub fugue_store::SessionGuard);

impl FromRequestParts<AppState> for PresumedSession {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let (authed, guard) = app.sessions.presumed(bearer(parts)).await?;
        Ok(Self(authed, guard))
    }
}

/// `GET /.p2/core/v1/session/auth?fid=`: a key trial for an actor of another server to sign
/// in with, or — with a session — one for the signed-in actor to prove its keys.
pub async fn key_trial(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    MaybeSession(authed): MaybeSession,
    Query(q): Query<key_trial::Query>,
) -> ApiResult<Response> {
    app.limits.login.check(&ip)?;
    let now = app.config.clock.now();
    let trial = match authed {
        Some(authed) => app.sessions.proof_trial(&authed, &q.fid, now).await?,
        None => app.sessions.key_trial(&q.fid, now).await?,
    };
    Ok(ok(trial).into_response())
}

/// `POST /.p2/core/v1/session/auth`: the completed trial → a session token (`text/plain`).
pub async fn sign_in(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(c): Json<sign_in::KeyTrialCompleted>,
) -> ApiResult<Response> {
    app.limits.login.check(&ip)?;
    let token = app.sessions.sign_in(c, app.config.clock.now()).await?;
    Ok((
        StatusCode::OK,
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        token,
    )
        .into_response())
}

/// `PUT /.p2/core/v1/session/idcert/extern` — body: the session's certificate (PEM).
pub async fn idcert_extern(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Body(body): Body,
) -> ApiResult<Response> {
    app.sessions
        .update_foreign_cert(&authed, &body, app.config.clock.now())
        .await?;
    Ok((
        StatusCode::CREATED,
        [(axum::http::header::CONTENT_LENGTH, "0")],
    )
        .into_response())
}

/// `GET /.p2/core/v1/keytrial/{fid}`: completed key trials, once expired.
pub async fn public_key_trials(
    State(app): State<AppState>,
    Path(fid): Path<String>,
    Query(q): Query<keytrials::Query>,
) -> ApiResult<Response> {
    let entries = app
        .sessions
        .public_key_trials(&fid, &q, app.config.clock.now())
        .await?;
    if entries.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok(ok(entries).into_response())
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
    let out = app.sessions.login(req, ip, app.config.clock.now()).await?;
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
    authed: Authed,
    Sensitive(solution): Sensitive,
    Body(csr): Body,
) -> ApiResult<Response> {
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
    authed: Authed,
    Sensitive(solution): Sensitive,
    Query(q): Query<delete_session::Query>,
) -> ApiResult<StatusCode> {
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
    authed: Authed,
    Sensitive(solution): Sensitive,
) -> ApiResult<Response> {
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

/// `DELETE /.p2/auth/v1/totp`
pub async fn totp_disable(
    State(app): State<AppState>,
    authed: Authed,
    Sensitive(solution): Sensitive,
) -> ApiResult<StatusCode> {
    app.sessions
        .disable_totp(&authed, solution.as_deref(), app.config.clock.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /.p2/auth/v1/password`
pub async fn change_password(
    State(app): State<AppState>,
    authed: Authed,
    Sensitive(solution): Sensitive,
    Json(req): Json<change_password::Request>,
) -> ApiResult<StatusCode> {
    app.sessions
        .change_password(&authed, req, solution.as_deref(), app.config.clock.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /.p2/auth/v1/account`
pub async fn delete_account(
    State(app): State<AppState>,
    authed: Authed,
    Sensitive(solution): Sensitive,
) -> ApiResult<StatusCode> {
    app.sessions
        .delete_account(&authed, solution.as_deref(), app.config.clock.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
