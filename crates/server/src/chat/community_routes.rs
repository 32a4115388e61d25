//! Thin handlers for reactions, pins, read states, presence and profiles
//! (`/.p2/fugue-chat/v1/`, merged into the `fugue-chat` router of `routes.rs`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use fugue_proto::FederationId;
use fugue_proto::api;

use crate::AppState;
use crate::http::{ApiResult, Json, Path, Query, ok};
use crate::migration::routes::redirected;
use crate::routes::Routes;
use crate::sessions::routes::AnySession;

pub(super) fn router() -> Routes {
    Routes::new()
        .at(&api::add_reaction::ENDPOINT, add_reaction)
        .at(&api::remove_reaction::ENDPOINT, remove_reaction)
        .at(&api::list_reactions::ENDPOINT, list_reactions)
        .at(&api::pin_message::ENDPOINT, pin_message)
        .at(&api::unpin_message::ENDPOINT, unpin_message)
        .at(&api::list_pins::ENDPOINT, list_pins)
        .at(&api::set_read_state::ENDPOINT, set_read_state)
        .at(&api::read_states::ENDPOINT, read_states)
        .at(&api::set_presence::ENDPOINT, set_presence)
        .at(&api::get_presences::ENDPOINT, get_presences)
        .at(&api::get_own_profile::ENDPOINT, get_own_profile)
        .at(&api::update_profile::ENDPOINT, update_profile)
        .at(&api::get_profile::ENDPOINT, get_profile)
}

/// `PUT /channels/{c}/messages/{m}/reactions/{emoji}` (signed).
async fn add_reaction(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path((channel_id, message_id, emoji)): Path<(u64, u64, String)>,
    Json(req): Json<api::add_reaction::Request>,
) -> ApiResult<Response> {
    app.chat
        .react(&authed, channel_id, message_id, &emoji, true, req)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /channels/{c}/messages/{m}/reactions/{emoji}` (signed, `add` = false).
async fn remove_reaction(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path((channel_id, message_id, emoji)): Path<(u64, u64, String)>,
    Json(req): Json<api::remove_reaction::Request>,
) -> ApiResult<Response> {
    app.chat
        .react(&authed, channel_id, message_id, &emoji, false, req)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /channels/{c}/messages/{m}/reactions/{emoji}`
async fn list_reactions(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path((channel_id, message_id, emoji)): Path<(u64, u64, String)>,
) -> ApiResult<Response> {
    let who = app
        .chat
        .reactors(&authed, channel_id, message_id, &emoji)
        .await?;
    Ok(ok(who).into_response())
}

/// `PUT /channels/{c}/pins/{m}`
async fn pin_message(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path((channel_id, message_id)): Path<(u64, u64)>,
) -> ApiResult<Response> {
    app.chat
        .set_pin(&authed, channel_id, message_id, true)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /channels/{c}/pins/{m}`
async fn unpin_message(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path((channel_id, message_id)): Path<(u64, u64)>,
) -> ApiResult<Response> {
    app.chat
        .set_pin(&authed, channel_id, message_id, false)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /channels/{c}/pins`
async fn list_pins(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path(channel_id): Path<u64>,
) -> ApiResult<Response> {
    Ok(ok(app.chat.pins(&authed, channel_id).await?).into_response())
}

/// `PUT /channels/{c}/read-state`
async fn set_read_state(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path(channel_id): Path<u64>,
    Json(req): Json<api::set_read_state::Request>,
) -> ApiResult<Response> {
    let state = app
        .chat
        .set_read_state(&authed, channel_id, req.last_read)
        .await?;
    Ok(ok(state).into_response())
}

/// `GET /users/@me/read-states`
async fn read_states(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
) -> ApiResult<Response> {
    Ok(ok(app.chat.read_states(&authed).await?).into_response())
}

/// `PUT /users/@me/presence`
async fn set_presence(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Json(req): Json<api::set_presence::Request>,
) -> ApiResult<Response> {
    Ok(ok(app.chat.set_presence(&authed, req).await?).into_response())
}

/// `GET /presences?fids=`
async fn get_presences(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Query(q): Query<api::get_presences::Query>,
) -> ApiResult<Response> {
    Ok(ok(app.chat.presences(&authed, &q.fids).await?).into_response())
}

/// `GET /users/@me/profile`
async fn get_own_profile(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
) -> ApiResult<Response> {
    Ok(ok(app.chat.own_profile(&authed).await?).into_response())
}

/// `PATCH /users/@me/profile`
async fn update_profile(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Json(req): Json<api::update_profile::Request>,
) -> ApiResult<Response> {
    Ok(ok(app.chat.update_profile(&authed, req).await?).into_response())
}

/// `GET /users/{fid}/profile` (an actor that moved: 307 to its new profile)
async fn get_profile(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path(fid): Path<FederationId>,
) -> ApiResult<Response> {
    if let Some(moved) = redirected(&app, &fid.to_string(), api::get_profile::path).await? {
        return Ok(moved);
    }
    Ok(ok(app.chat.profile(&authed, &fid).await?).into_response())
}
