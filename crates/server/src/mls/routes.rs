//! Thin handlers for polyproto-mls: extract, call [`Mls`](super::Mls), convert.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use fugue_proto::FederationId;
use fugue_proto::api::{self, claim_key_packages};

use crate::AppState;
use crate::http::{ApiResult, Json, Path, Query, created, ok};
use crate::routes::Routes;
use crate::sessions::Authed;
use crate::sessions::routes::AnySession;
use crate::time::UnixTime;

/// The endpoints of polyproto-mls.
pub(crate) fn router() -> Routes {
    Routes::new()
        .at(&api::create_mls_group::ENDPOINT, create_group)
        .at(&api::get_mls_group::ENDPOINT, get_group)
        .at(&api::submit_proposal::ENDPOINT, submit_proposal)
        .at(&api::list_proposals::ENDPOINT, list_proposals)
        .at(&api::submit_commit::ENDPOINT, submit_commit)
        .at(&api::latest_commit::ENDPOINT, latest_commit)
        .at(&api::group_members::ENDPOINT, group_members)
        .at(&api::group_member::ENDPOINT, group_member)
        .at(&api::upload_key_packages::ENDPOINT, upload_key_packages)
        .at(&api::claim_key_packages::ENDPOINT, claim)
        .in_namespace(fugue_proto::mls::MLS)
        .merge(
            Routes::new()
                .at(&api::encrypt_channel::ENDPOINT, encrypt_channel)
                .at(&api::channel_group::ENDPOINT, channel_group)
                .at(&api::request_join::ENDPOINT, request_join)
                .at(&api::join_requests::ENDPOINT, join_requests)
                .at(&api::accept_join::ENDPOINT, accept_join)
                .at(&api::deny_join::ENDPOINT, deny_join)
                .in_namespace(fugue_proto::mls::FUGUE_MLS),
        )
}

/// `PUT /.p2/fugue-mls/v1/channels/{id}/group`
pub async fn encrypt_channel(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path(channel_id): Path<u64>,
    Json(req): Json<api::encrypt_channel::Request>,
) -> ApiResult<Response> {
    Ok(ok(app.mls.encrypt_channel(&authed, channel_id, &req).await?).into_response())
}

/// `GET /.p2/fugue-mls/v1/channels/{id}/group`
pub async fn channel_group(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path(channel_id): Path<u64>,
) -> ApiResult<Response> {
    Ok(ok(app.mls.channel_group(&authed, channel_id).await?).into_response())
}

/// `POST /.p2/fugue-mls/v1/channels/{id}/join-requests` — 201.
pub async fn request_join(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path(channel_id): Path<u64>,
    Json(req): Json<api::request_join::Request>,
) -> ApiResult<Response> {
    let j = app
        .mls
        .request_join(&authed, channel_id, req, UnixTime(app.config.clock.now()))
        .await?;
    Ok(created(j).into_response())
}

/// `GET /.p2/fugue-mls/v1/channels/{id}/join-requests`
pub async fn join_requests(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path(channel_id): Path<u64>,
) -> ApiResult<Response> {
    Ok(ok(app.mls.join_requests(&authed, channel_id).await?).into_response())
}

/// `POST /.p2/fugue-mls/v1/join-requests/{id}/accept`
pub async fn accept_join(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path(request_id): Path<u64>,
) -> ApiResult<Response> {
    let j = app
        .mls
        .resolve_join(&authed, request_id, None, UnixTime(app.config.clock.now()))
        .await?;
    Ok(ok(j).into_response())
}

/// `POST /.p2/fugue-mls/v1/join-requests/{id}/deny`
pub async fn deny_join(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path(request_id): Path<u64>,
    Json(req): Json<api::deny_join::Request>,
) -> ApiResult<Response> {
    let j = app
        .mls
        .resolve_join(
            &authed,
            request_id,
            Some(req.reason),
            UnixTime(app.config.clock.now()),
        )
        .await?;
    Ok(ok(j).into_response())
}

/// `POST /.p2/mls/v1/keypackages` — 200 with no body when all were stored.
pub async fn upload_key_packages(
    State(app): State<AppState>,
    authed: Authed,
    Json(req): Json<api::upload_key_packages::Request>,
) -> ApiResult<Response> {
    app.mls
        .upload(&authed, req, UnixTime(app.config.clock.now()))
        .await?;
    Ok(StatusCode::OK.into_response())
}

/// `GET /.p2/mls/v1/keypackages/{fid}` — 204 when no device has a package.
pub async fn claim(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path(fid): Path<FederationId>,
    Query(q): Query<claim_key_packages::Query>,
) -> ApiResult<Response> {
    let out = app
        .mls
        .claim(&authed, &fid, &q, UnixTime(app.config.clock.now()))
        .await?;
    if out.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok(ok(out).into_response())
}

/// `POST /.p2/mls/v1/groups`
pub async fn create_group(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Json(req): Json<api::create_mls_group::Request>,
) -> ApiResult<Response> {
    let g = app
        .mls
        .create_group(&authed, req, UnixTime(app.config.clock.now()))
        .await?;
    Ok(ok(g).into_response())
}

/// `GET /.p2/mls/v1/groups/{id}`
pub async fn get_group(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(ok(app.mls.group(&authed, &id).await?).into_response())
}

/// `POST /.p2/mls/v1/groups/{id}/proposals` — 204.
pub async fn submit_proposal(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path(id): Path<String>,
    Json(req): Json<api::submit_proposal::Request>,
) -> ApiResult<Response> {
    app.mls
        .propose(&authed, &id, req, UnixTime(app.config.clock.now()))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /.p2/mls/v1/groups/{id}/proposals`
pub async fn list_proposals(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(ok(app.mls.proposals(&authed, &id).await?).into_response())
}

/// `POST /.p2/mls/v1/groups/{id}/commits` — 200 with the Welcome, 204 without one.
pub async fn submit_commit(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path(id): Path<String>,
    Json(req): Json<api::submit_commit::Request>,
) -> ApiResult<Response> {
    match app
        .mls
        .commit(&authed, &id, req, UnixTime(app.config.clock.now()))
        .await?
    {
        Some(w) => Ok(ok(w).into_response()),
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

/// `GET /.p2/mls/v1/groups/{id}/commits/latest`
pub async fn latest_commit(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(ok(app.mls.latest_commit(&authed, &id).await?).into_response())
}

/// `GET /.p2/mls/v1/groups/{id}/members`
pub async fn group_members(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(ok(app.mls.members(&authed, &id).await?).into_response())
}

/// `GET /.p2/mls/v1/groups/{id}/members/{member}`
pub async fn group_member(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path((id, member)): Path<(String, String)>,
) -> ApiResult<Response> {
    Ok(ok(app.mls.member(&authed, &id, &member).await?).into_response())
}
