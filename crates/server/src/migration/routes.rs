//! Thin handlers for migrations: extract, call [`Migration`](super::Migration), convert.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use fugue_proto::api::{self, remove_redirect, set_up_redirect_extern};

use crate::AppState;
use crate::http::{ApiResult, Query};
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
