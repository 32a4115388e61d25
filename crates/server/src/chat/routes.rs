//! Thin handlers for chat (`/.p2/chat/v1/`) and Fugue's chat additions
//! (`/.p2/fugue-chat/v1/`): extract, count against the chat limits, call [`Chat`], convert.
//! Both namespaces' problems carry chat.md's `message` and numeric `code` (OP-41).

use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use fugue_proto::FederationId;
use fugue_proto::api::{self, get_guild_by_query};
use fugue_proto::chat::{CHAT, FUGUE_CHAT, OverwriteTarget};

use super::messages::Outcome;
use super::{Chat, Error};
use crate::AppState;
use crate::http::{ApiError, ApiResult, Json, Path, Query, created, ok};
use crate::ratelimit::Standing;
use crate::routes::Routes;
use crate::sessions::routes::{AnySession, PresumedSession};

/// The endpoints of `chat`.
pub(crate) fn router() -> Routes {
    Routes::new()
        .at(&api::get_guild::ENDPOINT, get_guild)
        .at(&api::get_guild_by_query::ENDPOINT, get_guild_by_query)
        .at(&api::create_guild::ENDPOINT, create_guild)
        .at(&api::update_guild::ENDPOINT, update_guild)
        .at(&api::delete_guild::ENDPOINT, delete_guild)
        .at(&api::list_channels::ENDPOINT, list_channels)
        .at(&api::create_channel::ENDPOINT, create_channel)
        .at(&api::update_channel::ENDPOINT, update_channel)
        .at(&api::delete_channel::ENDPOINT, delete_channel)
        .at(&api::get_messages::ENDPOINT, get_messages)
        .at(&api::send_message::ENDPOINT, send_message)
        .at(&api::edit_message::ENDPOINT, edit_message)
        .at(&api::delete_message::ENDPOINT, delete_message)
        .at(&api::list_members::ENDPOINT, list_members)
        .at(&api::join_guild::ENDPOINT, join_guild)
        .at(&api::leave_guild::ENDPOINT, leave_guild)
        .at(&api::kick_member::ENDPOINT, kick_member)
        .at(&api::create_invite::ENDPOINT, create_invite)
        .at(&api::list_invites::ENDPOINT, list_invites)
        .at(&api::delete_invite::ENDPOINT, delete_invite)
        .in_namespace(CHAT)
        .merge(fugue_router())
        .merge(super::conversation_routes::dm_router())
        .merge(super::conversation_routes::group_router())
}

/// The endpoints of `fugue-chat`.
fn fugue_router() -> Routes {
    Routes::new()
        .at(&api::list_roles::ENDPOINT, list_roles)
        .at(&api::create_role::ENDPOINT, create_role)
        .at(&api::update_role::ENDPOINT, update_role)
        .at(&api::delete_role::ENDPOINT, delete_role)
        .at(&api::add_member_role::ENDPOINT, add_member_role)
        .at(&api::remove_member_role::ENDPOINT, remove_member_role)
        .at(&api::list_overwrites::ENDPOINT, list_overwrites)
        .at(&api::set_overwrite::ENDPOINT, set_overwrite)
        .at(&api::delete_overwrite::ENDPOINT, delete_overwrite)
        .at(&api::list_bans::ENDPOINT, list_bans)
        .at(&api::ban_member::ENDPOINT, ban_member)
        .at(&api::unban_member::ENDPOINT, unban_member)
        .at(&api::message_history::ENDPOINT, message_history)
        .at(&api::message_versions::ENDPOINT, message_versions)
        .at(&api::transfer_guild::ENDPOINT, transfer_guild)
        .merge(super::community_routes::router())
        .in_namespace(FUGUE_CHAT)
}

/// A request counted against a chat limit: refused with 429 when it is used up; either way
/// the response tells where the caller stands (`X-RateLimit-*`).
pub(super) struct Limited(Option<Standing>);

impl Limited {
    /// Counted (`Ok`), or the standing of a caller whose window is used up.
    pub(super) fn take(counted: Option<Result<Standing, Standing>>) -> Result<Self, Standing> {
        match counted {
            None => Ok(Self(None)),
            Some(Ok(s)) => Ok(Self(Some(s))),
            Some(Err(s)) => Err(s),
        }
    }

    /// 429, with `Retry-After` and the `X-RateLimit-*` headers.
    pub(super) fn refused(s: Standing) -> Response {
        Self(Some(s)).headers(ApiError::rate_limited(s.reset_after).into_response())
    }

    pub(super) fn headers(&self, mut resp: Response) -> Response {
        if let Some(s) = self.0 {
            let reset = crate::clock::unix_now() + s.reset_after;
            let h = resp.headers_mut();
            for (name, value) in [
                ("x-ratelimit-limit", u64::from(s.limit)),
                ("x-ratelimit-remaining", u64::from(s.remaining)),
                ("x-ratelimit-reset", reset),
                ("x-ratelimit-reset-after", s.reset_after),
            ] {
                h.insert(HeaderName::from_static(name), HeaderValue::from(value));
            }
        }
        resp
    }
}

fn chat(app: &AppState) -> &Chat {
    &app.chat
}

/// `GET /guilds/{guild_id}`
async fn get_guild(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path(guild_id): Path<u64>,
) -> ApiResult<Response> {
    Ok(ok(chat(&app).guild(&authed, guild_id).await?).into_response())
}

/// `GET /guilds?guild_id=` (the OpenAPI's form; 200, not its 201).
async fn get_guild_by_query(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Query(q): Query<get_guild_by_query::Query>,
) -> ApiResult<Response> {
    Ok(ok(chat(&app).guild(&authed, q.guild_id).await?).into_response())
}

/// `POST /guilds` (a guild operation).
async fn create_guild(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Json(req): Json<api::create_guild::Request>,
) -> ApiResult<Response> {
    let limited = match Limited::take(app.chat.limits.guild_ops.take(authed.actor.id)) {
        Ok(l) => l,
        Err(s) => return Ok(Limited::refused(s)),
    };
    let guild = chat(&app).create_guild(&authed, req).await?;
    Ok(limited.headers(created(guild).into_response()))
}

/// `PATCH /guilds/{guild_id}` (a guild operation).
async fn update_guild(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path(guild_id): Path<u64>,
    Json(req): Json<api::update_guild::Request>,
) -> ApiResult<Response> {
    let limited = match Limited::take(app.chat.limits.guild_ops.take(authed.actor.id)) {
        Ok(l) => l,
        Err(s) => return Ok(Limited::refused(s)),
    };
    let guild = chat(&app).update_guild(&authed, guild_id, req).await?;
    Ok(limited.headers(ok(guild).into_response()))
}

/// `DELETE /guilds/{guild_id}` (owner, second factor; a guild operation).
async fn delete_guild(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path(guild_id): Path<u64>,
    crate::http::Sensitive(solution): crate::http::Sensitive,
) -> ApiResult<Response> {
    let limited = match Limited::take(app.chat.limits.guild_ops.take(authed.actor.id)) {
        Ok(l) => l,
        Err(s) => return Ok(Limited::refused(s)),
    };
    chat(&app)
        .delete_guild(&authed, guild_id, solution.as_deref())
        .await?;
    Ok(limited.headers(StatusCode::NO_CONTENT.into_response()))
}

/// `GET /guilds/{guild_id}/channels`
async fn list_channels(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path(guild_id): Path<u64>,
) -> ApiResult<Response> {
    Ok(ok(chat(&app).channels(&authed, guild_id).await?).into_response())
}

/// `POST /guilds/{guild_id}/channels` (5 per 5 minutes per guild).
async fn create_channel(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path(guild_id): Path<u64>,
    Json(req): Json<api::create_channel::Request>,
) -> ApiResult<Response> {
    let key = (authed.actor.id, crate::ids::to_store(guild_id));
    let limited = match Limited::take(app.chat.limits.channels.take(key)) {
        Ok(l) => l,
        Err(s) => return Ok(Limited::refused(s)),
    };
    let channel = chat(&app).create_channel(&authed, guild_id, req).await?;
    Ok(limited.headers(created(channel).into_response()))
}

/// `PATCH /channels/{channel_id}`
async fn update_channel(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path(channel_id): Path<u64>,
    Json(req): Json<api::update_channel::Request>,
) -> ApiResult<Response> {
    Ok(ok(chat(&app).update_channel(&authed, channel_id, req).await?).into_response())
}

/// `DELETE /channels/{channel_id}`
async fn delete_channel(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path(channel_id): Path<u64>,
) -> ApiResult<Response> {
    chat(&app).delete_channel(&authed, channel_id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /channels/{channel_id}/messages` (`before`/`after`).
async fn get_messages(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path(channel_id): Path<u64>,
    Query(q): Query<api::get_messages::Query>,
) -> ApiResult<Response> {
    let q = api::message_history::Query {
        limit: q.limit,
        before: q.before,
        after: q.after,
        around: None,
    };
    Ok(ok(chat(&app).history(&authed, channel_id, q).await?).into_response())
}

/// `POST /channels/{channel_id}/messages` (5 per 5 seconds per channel): 201, or 200 for
/// a nonce sent before.
async fn send_message(
    State(app): State<AppState>,
    PresumedSession(authed, guard): PresumedSession,
    Path(channel_id): Path<u64>,
    Json(req): Json<api::send_message::Request>,
) -> ApiResult<Response> {
    let key = (authed.actor.id, crate::ids::to_store(channel_id));
    let limited = match Limited::take(app.chat.limits.messages.take(key)) {
        Ok(l) => l,
        Err(s) => return Ok(Limited::refused(s)),
    };
    let sent = chat(&app)
        .send_message(&authed, &guard, channel_id, req)
        .await?;
    let resp = match sent {
        Outcome::Created(m) => created(m).into_response(),
        Outcome::Existing(m) => ok(m).into_response(),
    };
    Ok(limited.headers(resp))
}

/// `PATCH /channels/{channel_id}/messages/{message_id}`
async fn edit_message(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path((channel_id, message_id)): Path<(u64, u64)>,
    Json(req): Json<api::edit_message::Request>,
) -> ApiResult<Response> {
    let m = chat(&app)
        .edit_message(&authed, channel_id, message_id, req)
        .await?;
    Ok(ok(m).into_response())
}

/// `DELETE /channels/{channel_id}/messages/{message_id}`
async fn delete_message(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path((channel_id, message_id)): Path<(u64, u64)>,
) -> ApiResult<Response> {
    chat(&app)
        .delete_message(&authed, channel_id, message_id)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /guilds/{guild_id}/members`
async fn list_members(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path(guild_id): Path<u64>,
    Query(q): Query<api::list_members::Query>,
) -> ApiResult<Response> {
    Ok(ok(chat(&app).members(&authed, guild_id, q).await?).into_response())
}

/// `POST /guilds/{guild_id}/members` (the body may be absent for a public guild).
async fn join_guild(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path(guild_id): Path<u64>,
    body: crate::http::Body,
) -> ApiResult<Response> {
    let req: api::join_guild::Request = if body.0.is_empty() {
        api::join_guild::Request::default()
    } else {
        serde_json::from_slice(&body.0)
            .map_err(|e| ApiError::from(Error::Invalid(format!("join request: {e}"))))?
    };
    let member = chat(&app)
        .join(&authed, guild_id, req.invite_code.as_deref())
        .await?;
    Ok(created(member).into_response())
}

/// `DELETE /guilds/{guild_id}/members/@me`
async fn leave_guild(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path(guild_id): Path<u64>,
) -> ApiResult<Response> {
    chat(&app).leave(&authed, guild_id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /guilds/{guild_id}/members/{user_id}`
async fn kick_member(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path((guild_id, fid)): Path<(u64, FederationId)>,
) -> ApiResult<Response> {
    chat(&app).kick(&authed, guild_id, &fid).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /channels/{channel_id}/invites`
async fn create_invite(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path(channel_id): Path<u64>,
    body: crate::http::Body,
) -> ApiResult<Response> {
    let req: api::create_invite::Request = if body.0.is_empty() {
        api::create_invite::Request::default()
    } else {
        serde_json::from_slice(&body.0)
            .map_err(|e| ApiError::from(Error::Invalid(format!("invite request: {e}"))))?
    };
    let invite = chat(&app).create_invite(&authed, channel_id, req).await?;
    Ok(created(invite).into_response())
}

/// `GET /guilds/{guild_id}/invites`
async fn list_invites(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path(guild_id): Path<u64>,
) -> ApiResult<Response> {
    Ok(ok(chat(&app).invites(&authed, guild_id).await?).into_response())
}

/// `DELETE /invites/{invite_code}`
async fn delete_invite(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path(code): Path<String>,
) -> ApiResult<Response> {
    chat(&app).delete_invite(&authed, &code).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- fugue-chat ----

/// `GET /guilds/{guild_id}/roles`
async fn list_roles(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path(guild_id): Path<u64>,
) -> ApiResult<Response> {
    Ok(ok(chat(&app).roles(&authed, guild_id).await?).into_response())
}

/// `POST /guilds/{guild_id}/roles`
async fn create_role(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path(guild_id): Path<u64>,
    Json(req): Json<api::create_role::Request>,
) -> ApiResult<Response> {
    Ok(created(chat(&app).create_role(&authed, guild_id, req).await?).into_response())
}

/// `PATCH /guilds/{guild_id}/roles/{role_id}`
async fn update_role(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path((guild_id, role_id)): Path<(u64, u64)>,
    Json(req): Json<api::update_role::Request>,
) -> ApiResult<Response> {
    Ok(ok(chat(&app)
        .update_role(&authed, guild_id, role_id, req)
        .await?)
    .into_response())
}

/// `DELETE /guilds/{guild_id}/roles/{role_id}`
async fn delete_role(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path((guild_id, role_id)): Path<(u64, u64)>,
) -> ApiResult<Response> {
    chat(&app).delete_role(&authed, guild_id, role_id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `PUT /guilds/{guild_id}/members/{fid}/roles/{role_id}`
async fn add_member_role(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path((guild_id, fid, role_id)): Path<(u64, FederationId, u64)>,
) -> ApiResult<Response> {
    let member = chat(&app)
        .set_member_role(&authed, guild_id, &fid, role_id, true)
        .await?;
    Ok(ok(member).into_response())
}

/// `DELETE /guilds/{guild_id}/members/{fid}/roles/{role_id}`
async fn remove_member_role(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path((guild_id, fid, role_id)): Path<(u64, FederationId, u64)>,
) -> ApiResult<Response> {
    chat(&app)
        .set_member_role(&authed, guild_id, &fid, role_id, false)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn target(raw: &str) -> Result<OverwriteTarget, ApiError> {
    raw.parse().map_err(|_| {
        Error::Invalid(format!("{raw:?} is neither a role id nor a federation id")).into()
    })
}

/// `GET /channels/{channel_id}/overwrites`
async fn list_overwrites(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path(channel_id): Path<u64>,
) -> ApiResult<Response> {
    Ok(ok(chat(&app).overwrites(&authed, channel_id).await?).into_response())
}

/// `PUT /channels/{channel_id}/overwrites/{target}`
async fn set_overwrite(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path((channel_id, raw)): Path<(u64, String)>,
    Json(req): Json<api::set_overwrite::Request>,
) -> ApiResult<Response> {
    let target = target(&raw)?;
    let o = chat(&app)
        .set_overwrite(&authed, channel_id, &target, Some(req))
        .await?;
    Ok(ok(o).into_response())
}

/// `DELETE /channels/{channel_id}/overwrites/{target}`
async fn delete_overwrite(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path((channel_id, raw)): Path<(u64, String)>,
) -> ApiResult<Response> {
    let target = target(&raw)?;
    chat(&app)
        .set_overwrite(&authed, channel_id, &target, None)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /guilds/{guild_id}/bans`
async fn list_bans(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path(guild_id): Path<u64>,
) -> ApiResult<Response> {
    Ok(ok(chat(&app).bans(&authed, guild_id).await?).into_response())
}

/// `PUT /guilds/{guild_id}/bans/{fid}` (the body may be absent).
async fn ban_member(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path((guild_id, fid)): Path<(u64, FederationId)>,
    body: crate::http::Body,
) -> ApiResult<Response> {
    let req: api::ban_member::Request = if body.0.is_empty() {
        api::ban_member::Request::default()
    } else {
        serde_json::from_slice(&body.0)
            .map_err(|e| ApiError::from(Error::Invalid(format!("ban request: {e}"))))?
    };
    let ban = chat(&app).ban(&authed, guild_id, &fid, req.reason).await?;
    Ok(ok(ban).into_response())
}

/// `DELETE /guilds/{guild_id}/bans/{fid}`
async fn unban_member(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path((guild_id, fid)): Path<(u64, FederationId)>,
) -> ApiResult<Response> {
    chat(&app).unban(&authed, guild_id, &fid).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /channels/{channel_id}/messages` (fugue-chat: also `around`).
async fn message_history(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path(channel_id): Path<u64>,
    Query(q): Query<api::message_history::Query>,
) -> ApiResult<Response> {
    Ok(ok(chat(&app).history(&authed, channel_id, q).await?).into_response())
}

/// `GET /channels/{channel_id}/messages/{message_id}/versions`
async fn message_versions(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path((channel_id, message_id)): Path<(u64, u64)>,
) -> ApiResult<Response> {
    let versions = chat(&app).versions(&authed, channel_id, message_id).await?;
    Ok(ok(versions).into_response())
}

/// `PUT /guilds/{guild_id}/owner` (a guild operation).
async fn transfer_guild(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path(guild_id): Path<u64>,
    Json(req): Json<api::transfer_guild::Request>,
) -> ApiResult<Response> {
    let limited = match Limited::take(app.chat.limits.guild_ops.take(authed.actor.id)) {
        Ok(l) => l,
        Err(s) => return Ok(Limited::refused(s)),
    };
    let guild = chat(&app)
        .transfer_guild(&authed, guild_id, &req.owner_id)
        .await?;
    Ok(limited.headers(ok(guild).into_response()))
}
