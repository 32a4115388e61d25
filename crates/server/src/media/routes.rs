//! Thin handlers for resources (RawR) and chat attachments: extract, call
//! [`Media`](super::Media) (and the chat, which says who may read an attachment), convert.
//!
//! A resource's bytes are served so that nothing in them can act in the server's origin:
//! `nosniff`, a sandboxing Content-Security-Policy, and only passive types inline
//! ([`super::sniff::inline_safe`]); everything else is a download of
//! `application/octet-stream`.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use fugue_proto::api::{self, list_resources, upload_resource};
use fugue_proto::chat::{CHAT, FUGUE_CHAT};

use super::sniff;
use crate::AppState;
use crate::http::{ApiResult, Json, Path, Query, created, ok};
use crate::routes::Routes;
use crate::sessions::Authed;
use crate::sessions::routes::{AnySession, MaybeSession};
use crate::time::UnixTime;

/// The endpoints of resources and chat attachments.
pub(crate) fn router() -> Routes {
    Routes::new()
        .at(&api::get_resource::ENDPOINT, get_resource)
        .at(&api::upload_resource::ENDPOINT, upload_resource)
        .at(&api::set_resource_access::ENDPOINT, set_resource_access)
        .at(&api::delete_resource::ENDPOINT, delete_resource)
        .at(&api::resource_info::ENDPOINT, resource_info)
        .at(&api::list_resources::ENDPOINT, list_resources)
        .at(&api::resource_usage::ENDPOINT, resource_usage)
        .merge(
            Routes::new()
                .at(&api::upload_attachment::ENDPOINT, upload_attachment)
                .at(&api::get_attachment::ENDPOINT, get_attachment)
                .in_namespace(CHAT),
        )
        .merge(
            Routes::new()
                .at(&api::attachment_details::ENDPOINT, attachment_details)
                .at(&api::attachment_thumbnail::ENDPOINT, attachment_thumbnail)
                .in_namespace(FUGUE_CHAT),
        )
}

/// `POST /.p2/core/v1/resource/{rid}?resourceAccessProperties=` — the body streams to
/// storage (its limit is the upload limit, not the JSON one).
pub async fn upload_resource(
    State(app): State<AppState>,
    authed: Authed,
    Path(rid): Path<String>,
    Query(q): Query<upload_resource::Query>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    app.media
        .upload(
            &authed,
            &rid,
            q.resource_access_properties.as_deref(),
            content_length(&headers)?,
            body.into_data_stream(),
            UnixTime(app.config.clock.now()),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /.p2/core/v1/resource/{rid}`
pub async fn get_resource(
    State(app): State<AppState>,
    MaybeSession(reader): MaybeSession,
    Path(rid): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let d = app.media.download(reader.as_ref(), &rid).await?;
    let name = match sniff::extension(&d.content_type) {
        Some(ext) if d.rid.extension().is_none() => format!("{}.{ext}", d.rid),
        _ => d.rid.to_string(),
    };
    serve(d, &name, &headers)
}

/// `POST /.p2/chat/v1/attachments?filename=` — the body streams to storage, as a
/// resource's does.
pub async fn upload_attachment(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Query(q): Query<api::upload_attachment::Query>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let attachment = app
        .media
        .upload_attachment(
            &authed,
            q.filename.as_deref(),
            content_length(&headers)?,
            body.into_data_stream(),
            UnixTime(app.config.clock.now()),
        )
        .await?;
    Ok(created(attachment).into_response())
}

/// `GET /.p2/chat/v1/attachments/{rid}`
pub async fn get_attachment(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path(rid): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    attachment(&app, &authed, &rid, false, &headers).await
}

/// `GET /.p2/fugue-chat/v1/attachments/{rid}/thumbnail`
pub async fn attachment_thumbnail(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path(rid): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    attachment(&app, &authed, &rid, true, &headers).await
}

async fn attachment(
    app: &AppState,
    authed: &Authed,
    rid: &str,
    thumbnail: bool,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let row = app.chat.readable_attachment(&authed.actor, rid).await?;
    let d = app.media.open_attachment(&row, thumbnail).await?;
    let name = match (&row.meta.filename, thumbnail) {
        (Some(name), false) => name.clone(),
        _ => match sniff::extension(&d.content_type) {
            Some(ext) => format!("{rid}.{ext}"),
            None => rid.to_owned(),
        },
    };
    serve(d, &name, headers)
}

/// `GET /.p2/fugue-chat/v1/attachments/{rid}`
pub async fn attachment_details(
    State(app): State<AppState>,
    AnySession(authed): AnySession,
    Path(rid): Path<String>,
) -> ApiResult<Response> {
    let row = app.chat.readable_attachment(&authed.actor, &rid).await?;
    Ok(ok(app.media.attachment_view(&row)).into_response())
}

/// The announced size of a body, if it is announced; 411 when it is not a number.
pub(crate) fn content_length(headers: &HeaderMap) -> Result<Option<u64>, super::Error> {
    match headers.get(header::CONTENT_LENGTH) {
        Some(v) => Ok(Some(
            v.to_str()
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or(super::Error::LengthRequired)?,
        )),
        None => Ok(None),
    }
}

/// Sends stored bytes named `name`, so that nothing in them can act in the server's
/// origin; 304 when the client has them (`If-None-Match`).
fn serve(d: super::Download, name: &str, headers: &HeaderMap) -> ApiResult<Response> {
    let etag = format!("\"{}\"", d.hash);
    let mut builder = Response::builder()
        .header(header::ETAG, &etag)
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; sandbox",
        )
        .header(
            header::CACHE_CONTROL,
            if d.public {
                "public, max-age=300"
            } else {
                "private, no-cache"
            },
        );
    if !d.public {
        builder = builder.header(header::VARY, "Authorization");
    }
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if matches {
        return builder
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .map_err(|e| crate::http::ApiError::internal(&e));
    }
    let (content_type, disposition) = if sniff::inline_safe(&d.content_type) {
        let ct = if d.content_type == "text/plain" {
            "text/plain; charset=utf-8".to_owned()
        } else {
            d.content_type.clone()
        };
        (ct, "inline")
    } else {
        ("application/octet-stream".to_owned(), "attachment")
    };
    builder
        .header(header::CONTENT_TYPE, content_type)
        .header(
            header::CONTENT_DISPOSITION,
            disposition_of(disposition, name),
        )
        .header(header::CONTENT_LENGTH, d.size)
        .body(Body::from_stream(d.object.into_stream()))
        .map_err(|e| crate::http::ApiError::internal(&e))
}

/// `Content-Disposition` with a file name: an ASCII fallback (quotes, backslashes and
/// anything else unsafe as `_`) and, when the name is more than that, its UTF-8 form
/// (RFC 6266, RFC 8187).
fn disposition_of(kind: &str, name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if fallback == name {
        format!("{kind}; filename=\"{name}\"")
    } else {
        let encoded =
            percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC);
        format!("{kind}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
    }
}

/// `GET /.p2/core/v1/resource/{rid}/info` (also with the trailing slash, OP-36)
pub async fn resource_info(
    State(app): State<AppState>,
    MaybeSession(reader): MaybeSession,
    Path(rid): Path<String>,
) -> ApiResult<Response> {
    let info = app.media.info(reader.as_ref(), &rid).await?;
    Ok(ok(vec![info]).into_response())
}

/// `PUT /.p2/core/v1/resource/{rid}`
pub async fn set_resource_access(
    State(app): State<AppState>,
    authed: Authed,
    Path(rid): Path<String>,
    Json(access): Json<api::set_resource_access::Request>,
) -> ApiResult<Response> {
    app.media.set_access(&authed, &rid, access).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /.p2/core/v1/resource/{rid}`
pub async fn delete_resource(
    State(app): State<AppState>,
    authed: Authed,
    Path(rid): Path<String>,
) -> ApiResult<Response> {
    app.media.delete(&authed, &rid).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /.p2/core/v1/resource/resources?limit=&sort=&previews=` — 204 when there are none.
pub async fn list_resources(
    State(app): State<AppState>,
    authed: Authed,
    Query(q): Query<list_resources::Query>,
) -> ApiResult<Response> {
    let list = app
        .media
        .list(
            &authed,
            q.limit,
            q.sort.unwrap_or_default(),
            q.previews.unwrap_or(false),
        )
        .await?;
    if list.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok(ok(list).into_response())
}

/// `GET /.p2/core/v1/resource/usage`
pub async fn resource_usage(State(app): State<AppState>, authed: Authed) -> ApiResult<Response> {
    Ok(ok(app.media.usage(&authed).await?).into_response())
}
