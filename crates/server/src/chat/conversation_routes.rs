//! Thin handlers for conversations: DMs under `chat` (`/users/@me/channels`), groups under
//! `fugue-chat` (`/conversations`). Their messages use the channel message routes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use fugue_proto::FederationId;
use fugue_proto::api;
use fugue_proto::chat::{CHAT, FUGUE_CHAT};

use super::routes::Limited;
use crate::AppState;
use crate::http::{ApiResult, Json, Path, created, ok};
use crate::routes::Routes;
use crate::sessions::routes::AnySession;

/// The DM endpoints of `chat`.
pub(crate) fn dm_router() -> Routes {
    Routes::new()
        .at(&api::create_dm::ENDPOINT, create_dm)
        .at(&api::list_dms::ENDPOINT, list_dms)
        .in_namespace(CHAT)
}

/// The group endpoints of `fugue-chat`.
pub(crate) fn group_router() -> Routes {
    Routes::new()
        .at(&api::create_group::ENDPOINT, create_group)
        .at(&api::get_conversation::ENDPOINT, get_conversation)
        .at(&api::rename_group::ENDPOINT, rename_group)
        .at(&api::list_conversation_members::ENDPOINT, list_members)
        .at(&api::add_conversation_member::ENDPOINT, add_member)
        .at(&api::remove_conversation_member::ENDPOINT, remove_member)
        .at(&api::leave_conversation::ENDPOINT, leave)
        .at(&api::transfer_conversation::ENDPOINT, transfer)
        .in_namespace(FUGUE_CHAT)
}

/// `POST /users/@me/channels`: 200 with the pair's DM, 201 with a new one.
async fn create_dm(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Json(req): Json<api::create_dm::Request>,
) -> ApiResult<Response> {
    let (dm, new) = app.chat.create_dm(&authed, &req.recipient_id).await?;
    Ok(if new {
        created(dm).into_response()
    } else {
        ok(dm).into_response()
    })
}

/// `GET /users/@me/channels`
async fn list_dms(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
) -> ApiResult<Response> {
    Ok(ok(app.chat.conversations(&authed).await?).into_response())
}

/// `POST /conversations` (counted as a guild operation: it writes to up to 15 actors'
/// streams).
async fn create_group(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Json(req): Json<api::create_group::Request>,
) -> ApiResult<Response> {
    let limited = match Limited::take(app.chat.limits.guild_ops.take(authed.actor.id)) {
        Ok(l) => l,
        Err(s) => return Ok(Limited::refused(s)),
    };
    let group = app.chat.create_group(&authed, req).await?;
    Ok(limited.headers(created(group).into_response()))
}

/// `GET /conversations/{id}`
async fn get_conversation(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path(id): Path<u64>,
) -> ApiResult<Response> {
    Ok(ok(app.chat.conversation(&authed, id).await?).into_response())
}

/// `PATCH /conversations/{id}`
async fn rename_group(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path(id): Path<u64>,
    Json(req): Json<api::rename_group::Request>,
) -> ApiResult<Response> {
    Ok(ok(app.chat.rename_group(&authed, id, req.name).await?).into_response())
}

/// `GET /conversations/{id}/members`
async fn list_members(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path(id): Path<u64>,
) -> ApiResult<Response> {
    Ok(ok(app.chat.conversation_members(&authed, id).await?).into_response())
}

/// `PUT /conversations/{id}/members/{fid}`
async fn add_member(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path((id, fid)): Path<(u64, FederationId)>,
) -> ApiResult<Response> {
    Ok(ok(app.chat.add_conversation_member(&authed, id, &fid).await?).into_response())
}

/// `DELETE /conversations/{id}/members/{fid}`
async fn remove_member(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path((id, fid)): Path<(u64, FederationId)>,
) -> ApiResult<Response> {
    app.chat
        .remove_conversation_member(&authed, id, Some(&fid))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /conversations/{id}/members/@me`
async fn leave(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path(id): Path<u64>,
) -> ApiResult<Response> {
    app.chat
        .remove_conversation_member(&authed, id, None)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `PUT /conversations/{id}/owner`
async fn transfer(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path(id): Path<u64>,
    Json(req): Json<api::transfer_conversation::Request>,
) -> ApiResult<Response> {
    Ok(ok(app
        .chat
        .transfer_conversation(&authed, id, &req.owner_id)
        .await?)
    .into_response())
}
