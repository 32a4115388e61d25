//! Thin handlers: the WebSocket upgrade (or its URL, OP-38) and events over HTTP (OP-37).

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use fugue_proto::ErrorCode;
use fugue_proto::gateway::{GatewayUrl, PATH, websocket_url};

use crate::AppState;
use crate::http::{ApiError, ApiResult, ConnectionSlot, ok};
use crate::routes::Routes;
use crate::sessions::routes::AnySession;

/// The WebSocket and events over HTTP.
pub(crate) fn router() -> Routes {
    Routes::new()
        .at(&fugue_proto::api::gateway::ENDPOINT, gateway)
        .at(&fugue_proto::api::events::ENDPOINT, events)
}

/// `GET /.p2/core/v1/gateway`: the WebSocket, or `{url}` for a plain GET.
pub async fn gateway(State(app): State<AppState>, req: Request) -> ApiResult<Response> {
    let wants_upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !wants_upgrade {
        let base = &app.config.public_url;
        let url = websocket_url(base).unwrap_or_else(|| format!("{base}{PATH}"));
        return Ok(ok(GatewayUrl { url }).into_response());
    }
    let (mut parts, _) = req.into_parts();
    let tcp_slot = parts.extensions.get::<ConnectionSlot>().cloned();
    let upgrade = WebSocketUpgrade::from_request_parts(&mut parts, &())
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::MalformedRequest,
                e.body_text(),
            )
        })?;
    let gw = app.gateway.clone();
    let slot = gw.slot();
    let max = app.config.gateway.max_frame_bytes;
    // Small buffers: tungstenite's 128 KiB defaults cost ~140 KB per idle connection.
    Ok(upgrade
        .read_buffer_size(4096)
        .write_buffer_size(4096)
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| async move {
            let _tcp_slot = tcp_slot;
            match slot {
                Some(slot) => {
                    super::conn::serve(gw, socket).await;
                    drop(slot);
                }
                None => super::conn::refuse(socket).await,
            }
        }))
}

/// `GET /.p2/core/v1/events`: 200 with the events missed since the last poll, 204 if none.
pub async fn events(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
) -> ApiResult<Response> {
    let events = app.gateway.poll(&authed).await?;
    if events.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let body: Vec<serde_json::Value> = events
        .iter()
        .map(|e| e.to_value(fugue_proto::gateway::Style::Numbers))
        .collect();
    Ok(ok(body).into_response())
}
