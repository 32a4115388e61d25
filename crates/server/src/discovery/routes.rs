//! Thin handlers for service discovery: extract, call [`Discovery`](super::Discovery), convert.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use fugue_proto::api::{self, discover_services, register_service, set_primary_provider};
use fugue_proto::services::{Service, parse_delete_query};

use super::Error;
use crate::AppState;
use crate::http::{ApiResult, ClientIp, Json, Path, Query, Sensitive, Solution, created, ok};
use crate::migration::routes::redirected;
use crate::routes::Routes;
use crate::sessions::Authed;

/// The endpoints of service discovery.
pub(crate) fn router() -> Routes {
    Routes::new()
        .at(&api::register_service::ENDPOINT, register_service)
        .at(&api::unregister_service::ENDPOINT, unregister_service)
        .at(&api::set_primary_provider::ENDPOINT, set_primary_provider)
        .at(&api::discover_services::ENDPOINT, discover_services)
        .at(&api::discover_service::ENDPOINT, discover_service)
}

/// `POST /.p2/core/v1/services`
pub async fn register_service(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    authed: Authed,
    Solution(solution): Solution,
    Json(req): Json<register_service::Request>,
) -> ApiResult<Response> {
    // Only a second factor costs anything to check (Argon2).
    if solution.is_some() {
        app.limits.sensitive.check(&ip)?;
    }
    let service = app
        .discovery
        .add(
            &authed,
            req.service,
            solution.as_deref(),
            app.config.clock.now(),
        )
        .await?;
    Ok(created(service).into_response())
}

/// `DELETE /.p2/core/v1/services?url=&name=` — sensitive when a primary provider goes.
pub async fn unregister_service(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    authed: Authed,
    Solution(solution): Solution,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    if solution.is_some() {
        app.limits.sensitive.check(&ip)?;
    }
    let pairs = parse_delete_query(query.as_deref()).map_err(Error::from)?;
    let chosen = app
        .discovery
        .remove(&authed, pairs, solution.as_deref(), app.config.clock.now())
        .await?;
    Ok(ok(chosen).into_response())
}

/// `PUT /.p2/core/v1/services/primary` — sensitive.
pub async fn set_primary_provider(
    State(app): State<AppState>,
    authed: Authed,
    Sensitive(solution): Sensitive,
    Json(req): Json<set_primary_provider::Request>,
) -> ApiResult<Response> {
    let changed = app
        .discovery
        .set_primary(&authed, req, solution.as_deref(), app.config.clock.now())
        .await?;
    Ok(ok(changed).into_response())
}

/// `GET /.p2/core/v1/services/discover/{fid}?limit=`
pub async fn discover_services(
    State(app): State<AppState>,
    Path(fid): Path<String>,
    Query(q): Query<discover_services::Query>,
) -> ApiResult<Response> {
    let limit = limit_query(&q);
    if let Some(moved) = redirected(&app, &fid, |to| {
        format!("{}{limit}", api::discover_services::path(to))
    })
    .await?
    {
        return Ok(moved);
    }
    Ok(listing(app.discovery.discover(&fid, None, q.limit).await?))
}

/// `GET /.p2/core/v1/services/discover/{fid}/{service}?limit=`
pub async fn discover_service(
    State(app): State<AppState>,
    Path((fid, service)): Path<(String, String)>,
    Query(q): Query<discover_services::Query>,
) -> ApiResult<Response> {
    if let Ok(name) = service.parse::<fugue_proto::services::ServiceName>() {
        let limit = limit_query(&q);
        if let Some(moved) = redirected(&app, &fid, |to| {
            format!("{}{limit}", api::discover_service::path(to, &name))
        })
        .await?
        {
            return Ok(moved);
        }
    }
    let found = app
        .discovery
        .discover(&fid, Some(&service), q.limit)
        .await?;
    Ok(listing(found))
}

/// The query a redirected lookup keeps.
fn limit_query(q: &discover_services::Query) -> String {
    q.limit.map(|l| format!("?limit={l}")).unwrap_or_default()
}

/// 200 with the list, or 204 when it is empty.
fn listing(found: Vec<Service>) -> Response {
    if found.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    ok(found).into_response()
}
