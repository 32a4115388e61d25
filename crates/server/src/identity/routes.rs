//! Thin handlers for certificates, key backups and the server key.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use fugue_proto::ErrorCode;
use fugue_proto::api::{
    self, MAX_PAYLOAD_HEADER, get_actor_idcerts, get_server_idcert, keymaterial,
};

use crate::AppState;
use crate::http::{ApiError, ApiResult, Json, Path, Query, Sensitive, ok};
use crate::routes::Routes;
use crate::sessions::{Authed, Error as SessionError};

/// The endpoints of certificates, key backups and the server key.
pub(crate) fn router() -> Routes {
    Routes::new()
        .at(&api::get_server_idcert::ENDPOINT, server_idcert)
        .at(&api::get_actor_idcerts::ENDPOINT, actor_idcerts)
        .at(&api::rotate_server_key::ENDPOINT, rotate_server_key)
        .at(&api::upload_key_material::ENDPOINT, upload_key_material)
        .at(&api::get_key_material::ENDPOINT, key_material)
        .at(&api::delete_key_material::ENDPOINT, delete_key_material)
        .at(&api::key_material_size::ENDPOINT, key_material_size)
}

/// `GET /.p2/core/v1/idcert/server?timestamp=`
pub async fn server_idcert(
    State(app): State<AppState>,
    Query(q): Query<get_server_idcert::Query>,
) -> ApiResult<Response> {
    Ok(ok(app
        .identity
        .server_cert_at(q.timestamp, app.config.clock.now())?)
    .into_response())
}

/// `GET /.p2/core/v1/idcert/actor/{fid}`
pub async fn actor_idcerts(
    State(app): State<AppState>,
    Path(fid): Path<String>,
    Query(q): Query<get_actor_idcerts::Query>,
) -> ApiResult<Response> {
    let now = app.config.clock.now();
    // An actor of another server that is known here: its home server's entries (core §6.4).
    if let Ok(parsed) = fid.parse::<fugue_proto::FederationId>()
        && parsed.domain() != app.identity.domain()
    {
        let certs = app.sessions.foreign_actor_certs(&parsed, &q, now).await?;
        return Ok(ok(certs).into_response());
    }
    let json = app.identity.actor_certs(&fid, &q, now).await?;
    Ok(crate::http::CanonicalJson(json).into_response())
}

/// `POST /.p2/core/v1/key/server` — administrators only, sensitive.
pub async fn rotate_server_key(
    State(app): State<AppState>,
    authed: Authed,
    Sensitive(solution): Sensitive,
) -> ApiResult<Response> {
    // Who may ask comes first: a non-administrator's answer is never checked, so it can
    // neither spend a TOTP step nor count towards the lockout of their second factor.
    if !authed.actor.is_admin {
        return Err(SessionError::NotAdmin.into());
    }
    let now = app.config.clock.now();
    app.sessions
        .check_sensitive(&authed.actor, solution.as_deref(), now)
        .await?;
    let pem = app.identity.rotate_key(now).await?;
    tracing::warn!(by = %authed.actor.fid, "server key rotated");
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        pem,
    )
        .into_response())
}

fn serials(q: &keymaterial::Query) -> ApiResult<Vec<fugue_proto::Serial>> {
    keymaterial::parse_serials(q.serials.as_deref().unwrap_or("")).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::MalformedRequest,
            "serials must be comma-separated u64 values",
        )
    })
}

/// `POST /.p2/core/v1/session/keymaterial`
pub async fn upload_key_material(
    State(app): State<AppState>,
    authed: Authed,
    Json(items): Json<Vec<keymaterial::EncryptedPkm>>,
) -> ApiResult<StatusCode> {
    app.identity
        .upload_key_material(authed.actor.id, items, app.config.clock.now())
        .await?;
    Ok(StatusCode::CREATED)
}

/// `GET /.p2/core/v1/session/keymaterial?serials=`
pub async fn key_material(
    State(app): State<AppState>,
    authed: Authed,
    Query(q): Query<keymaterial::Query>,
) -> ApiResult<Response> {
    let items = app
        .identity
        .key_material(authed.actor.id, &serials(&q)?)
        .await?;
    if items.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok(ok(items).into_response())
}

/// `DELETE /.p2/core/v1/session/keymaterial?serials=` — sensitive.
pub async fn delete_key_material(
    State(app): State<AppState>,
    authed: Authed,
    Sensitive(solution): Sensitive,
    Query(q): Query<keymaterial::Query>,
) -> ApiResult<StatusCode> {
    let serials = serials(&q)?; // input first: a malformed request spends no second factor
    app.sessions
        .check_sensitive(&authed.actor, solution.as_deref(), app.config.clock.now())
        .await?;
    app.identity
        .delete_key_material(authed.actor.id, &serials)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /.p2/core/v1/session/keymaterial/size`
pub async fn key_material_size(State(app): State<AppState>) -> Response {
    let mut resp = StatusCode::OK.into_response();
    resp.headers_mut().insert(
        MAX_PAYLOAD_HEADER,
        HeaderValue::from(app.identity.key_material_limit()),
    );
    resp
}
