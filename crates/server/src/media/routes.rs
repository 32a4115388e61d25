//! Thin handlers for resources (RawR): extract, call [`Media`](super::Media), convert.
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

use super::sniff;
use crate::AppState;
use crate::http::{ApiResult, Json, Path, Query, ok};
use crate::routes::Routes;
use crate::sessions::Authed;
use crate::sessions::routes::MaybeSession;
use crate::time::UnixTime;

/// The endpoints of resources.
pub(crate) fn router() -> Routes {
    Routes::new()
        .at(&api::get_resource::ENDPOINT, get_resource)
        .at(&api::upload_resource::ENDPOINT, upload_resource)
        .at(&api::set_resource_access::ENDPOINT, set_resource_access)
        .at(&api::delete_resource::ENDPOINT, delete_resource)
        .at(&api::resource_info::ENDPOINT, resource_info)
        .at(&api::list_resources::ENDPOINT, list_resources)
        .at(&api::resource_usage::ENDPOINT, resource_usage)
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
    let length = match headers.get(header::CONTENT_LENGTH) {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or(super::Error::LengthRequired)?,
        ),
        None => None,
    };
    app.media
        .upload(
            &authed,
            &rid,
            q.resource_access_properties.as_deref(),
            length,
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
    let name = match sniff::extension(&d.content_type) {
        Some(ext) if d.rid.extension().is_none() => format!("{}.{ext}", d.rid),
        _ => d.rid.to_string(),
    };
    let (content_type, disposition) = if sniff::inline_safe(&d.content_type) {
        let ct = if d.content_type == "text/plain" {
            "text/plain; charset=utf-8".to_owned()
        } else {
            d.content_type.clone()
        };
        (ct, format!("inline; filename=\"{name}\""))
    } else {
        (
            "application/octet-stream".to_owned(),
            format!("attachment; filename=\"{name}\""),
        )
    };
    builder
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_DISPOSITION, disposition)
        .header(header::CONTENT_LENGTH, d.size)
        .body(Body::from_stream(d.object.into_stream()))
        .map_err(|e| crate::http::ApiError::internal(&e))
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
