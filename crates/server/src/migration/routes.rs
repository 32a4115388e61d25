//! Thin handlers for migrations: extract, call [`Migration`](super::Migration), convert.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use fugue_proto::api::{
    self, MessageBatch, abort_resigning, delete_data, messages_to_resign, remove_redirect,
    request_resigning, set_up_redirect_extern,
};

use super::export::{Export, RETRY_AFTER_S};
use crate::AppState;
use crate::http::{ApiResult, Json, Query, Sensitive, ok};
use crate::routes::Routes;
use crate::sessions::Authed;
use crate::sessions::routes::AnySession;

/// The endpoints of migrations.
pub(crate) fn router() -> Routes {
    Routes::new()
        .at(&api::set_up_redirect::ENDPOINT, set_up_redirect)
        .at(&api::remove_redirect::ENDPOINT, remove_redirect)
        .at(
            &api::set_up_redirect_extern::ENDPOINT,
            set_up_redirect_extern,
        )
        .at(
            &api::remove_redirect_extern::ENDPOINT,
            remove_redirect_extern,
        )
        .at(&api::request_resigning::ENDPOINT, request_resigning)
        .at(&api::abort_resigning::ENDPOINT, abort_resigning)
        .at(&api::messages_to_resign::ENDPOINT, messages_to_resign)
        .at(&api::commit_resigned::ENDPOINT, commit_resigned)
        .at(&api::export_data::ENDPOINT, export_data)
        .at(&api::delete_data::ENDPOINT, delete_data)
        .at(&api::import_data::ENDPOINT, import_data)
        .at(&api::data_imports::ENDPOINT, data_imports)
}

/// The `X-P2-core-keytrial` header, if one is sent.
fn keytrial(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(api::KEYTRIAL_HEADER)
        .and_then(|v| v.to_str().ok())
}

/// 200 once both sides confirmed, 202 while one has not.
fn confirmed(both: bool) -> Response {
    if both {
        StatusCode::OK.into_response()
    } else {
        StatusCode::ACCEPTED.into_response()
    }
}

/// `POST /.p2/core/v1/migration/redirect` (body: the new actor's FID)
pub async fn set_up_redirect(
    State(app): State<AppState>,
    authed: Authed,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let both = app
        .migration
        .set_up_redirect(&authed, keytrial(&headers), &body, app.config.clock.now())
        .await?;
    Ok(confirmed(both))
}

/// `DELETE /.p2/core/v1/migration/redirect?removeActorFid=`
pub async fn remove_redirect(
    State(app): State<AppState>,
    authed: Authed,
    Query(q): Query<remove_redirect::Query>,
) -> ApiResult<Response> {
    app.migration
        .remove_redirect(&authed, &q.remove_actor_fid)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /.p2/core/v1/redirect/extern?redirectSourceFid=`
pub async fn set_up_redirect_extern(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Query(q): Query<set_up_redirect_extern::Query>,
) -> ApiResult<Response> {
    let both = app
        .migration
        .confirm_as_target(&authed, &q.redirect_source_fid, app.config.clock.now())
        .await?;
    Ok(confirmed(both))
}

/// `DELETE /.p2/core/v1/redirect/extern?redirectSourceFid=`
pub async fn remove_redirect_extern(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Query(q): Query<set_up_redirect_extern::Query>,
) -> ApiResult<Response> {
    app.migration
        .withdraw_as_target(&authed, &q.redirect_source_fid)
        .await?;
    Ok(StatusCode::OK.into_response())
}

/// `POST /.p2/core/v1/messages`: a grant of re-signing; `{"expires"}` (OP-33).
pub async fn request_resigning(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    headers: HeaderMap,
    Json(req): Json<request_resigning::Request>,
) -> ApiResult<Response> {
    let expires = app
        .migration
        .grant_resigning(&authed, keytrial(&headers), req, app.config.clock.now())
        .await?;
    Ok(ok(request_resigning::Response { expires }).into_response())
}

/// `DELETE /.p2/core/v1/messages?removeActorFid=`
pub async fn abort_resigning(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Query(q): Query<abort_resigning::Query>,
) -> ApiResult<Response> {
    app.migration
        .abort_resigning(&authed, &q.remove_actor_fid)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /.p2/core/v1/messages?limit=&serialNumber=`
pub async fn messages_to_resign(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Query(q): Query<messages_to_resign::Query>,
) -> ApiResult<Response> {
    let batches = app
        .migration
        .to_resign(&authed, q.limit, q.serial_number, app.config.clock.now())
        .await?;
    Ok(with_limit(&app, ok(batches).into_response()))
}

/// `POST /.p2/core/v1/messages/commit`: the next batch, or `{}` when none is left (never an
/// empty body: clients read JSON); `Retry-After` always (core §7.2.2.2).
pub async fn commit_resigned(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Json(batches): Json<Vec<MessageBatch>>,
) -> ApiResult<Response> {
    let next = app
        .migration
        .commit(&authed, batches, app.config.clock.now())
        .await?;
    let mut response = if next.is_empty() {
        ok(serde_json::Map::<String, serde_json::Value>::new()).into_response()
    } else {
        ok(next).into_response()
    };
    response.headers_mut().insert(
        header::RETRY_AFTER,
        axum::http::HeaderValue::from(super::RESIGN_INTERVAL_S),
    );
    Ok(with_limit(&app, response))
}

/// `GET /.p2/core/v1/data`: the archive (core §7.3.2), or 204 with `Retry-After` while it
/// is built.
pub async fn export_data(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let export = app
        .migration
        .export(&authed, keytrial(&headers), app.config.clock.now())
        .await?;
    Ok(match export {
        Export::Building => (
            StatusCode::NO_CONTENT,
            [(header::RETRY_AFTER, RETRY_AFTER_S.to_string())],
        )
            .into_response(),
        Export::Ready {
            object,
            size,
            file_name,
        } => (
            [
                (
                    header::CONTENT_TYPE,
                    fugue_proto::export::CONTENT_TYPE.to_owned(),
                ),
                (header::CONTENT_LENGTH, size.to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{file_name}\""),
                ),
                (header::CACHE_CONTROL, "private, no-store".to_owned()),
            ],
            axum::body::Body::from_stream(object.into_stream()),
        )
            .into_response(),
    })
}

/// `DELETE /.p2/core/v1/data?breakRedirect=`: 204.
pub async fn delete_data(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    headers: HeaderMap,
    Query(q): Query<delete_data::Query>,
) -> ApiResult<Response> {
    app.migration
        .delete_data(
            &authed,
            keytrial(&headers),
            q.break_redirect.unwrap_or(false),
            app.config.clock.now(),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /.p2/core/v1/migration/data` (the archive) — sensitive: 202 once it is checked.
pub async fn import_data(
    State(app): State<AppState>,
    authed: Authed,
    Sensitive(solution): Sensitive,
    headers: HeaderMap,
    body: axum::body::Body,
) -> ApiResult<Response> {
    let length = crate::media::routes::content_length(&headers)?;
    let now = app.config.clock.now();
    app.sessions
        .check_sensitive(&authed.actor, solution.as_deref(), now)
        .await?;
    app.migration
        .import(&authed, length, body.into_data_stream(), now)
        .await?;
    Ok((StatusCode::ACCEPTED, [(header::CONTENT_LENGTH, "0")]).into_response())
}

/// `GET /.p2/fugue-core/v1/migration/imports`
pub async fn data_imports(State(app): State<AppState>, authed: Authed) -> ApiResult<Response> {
    Ok(ok(app.migration.imports(&authed).await?).into_response())
}

/// Adds the largest body a commit takes (core §7.2.2.1).
fn with_limit(app: &AppState, mut response: Response) -> Response {
    response.headers_mut().insert(
        api::RETURN_BODY_SIZE_LIMIT_HEADER,
        axum::http::HeaderValue::from(app.config.limits.json_body_bytes),
    );
    response
}

/// The answer to a lookup of `fid` when it is redirected: 307 (308 once the source's
/// account is deleted) to `path` — the same lookup, of the target — at the target's home
/// server. `None` when `fid` is not redirected.
pub(crate) async fn redirected(
    app: &AppState,
    fid: &str,
    path: impl FnOnce(&fugue_proto::FederationId) -> String,
) -> ApiResult<Option<Response>> {
    let Some(r) = app.migration.redirect_of(fid).await? else {
        return Ok(None);
    };
    let base = app
        .migration
        .home_of(&r.target, app.config.clock.now())
        .await?;
    let status = if r.permanent {
        StatusCode::PERMANENT_REDIRECT
    } else {
        StatusCode::TEMPORARY_REDIRECT
    };
    let location = format!("{base}{}", path(&r.target));
    Ok(Some(
        (status, [(header::LOCATION, location)]).into_response(),
    ))
}
