//! The router, built only from endpoint declarations ([`fugue_proto::api`]).
//!
//! Each domain's `routes::router()` answers a [`Routes`]: its handlers, each attached to a
//! declared endpoint, whose method and path come from the declaration and nowhere else.
//! [`Routes`] remembers what it routed, so a test compares that with `api::all()`: every
//! endpoint is routed, once, and nothing else is.

use axum::Router;
use axum::handler::Handler;
use axum::routing::{MethodFilter, on};
use fugue_proto::api::Endpoint;

use crate::AppState;

/// Handlers attached to endpoints; merged across domains in `Server::router`.
pub struct Routes {
    router: Router<AppState>,
    routed: Vec<&'static Endpoint>,
}

impl Routes {
    pub fn new() -> Self {
        Self {
            router: Router::new(),
            routed: Vec::new(),
        }
    }

    /// Answers `endpoint` with `handler`. Endpoints that share a path share its route; the
    /// router answers 405 for the methods none of them declares.
    pub fn at<H, T>(mut self, endpoint: &'static Endpoint, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = match MethodFilter::try_from(endpoint.method.clone()) {
            Ok(filter) => filter,
            // Declarations use the common methods only; this runs when the router is built.
            Err(e) => panic!("endpoint {}: {e}", endpoint.name),
        };
        self.router = self.router.route(endpoint.path, on(filter, handler));
        self.routed.push(endpoint);
        self
    }

    /// Makes every problem these routes answer (their handlers' and their extractors')
    /// a problem of `namespace` ([`crate::http::namespaced_problems`]). Call it after the
    /// routes of the namespace and before merging others.
    pub fn in_namespace(mut self, namespace: &'static str) -> Self {
        self.router = self
            .router
            .route_layer(axum::middleware::from_fn(move |req, next| {
                crate::http::namespaced_problems(namespace, req, next)
            }));
        self
    }

    /// Both sets of routes. Declaring one endpoint twice panics when the router is built.
    pub fn merge(mut self, other: Routes) -> Self {
        self.router = self.router.merge(other.router);
        self.routed.extend(other.routed);
        self
    }

    /// The endpoints routed so far, in the order they were.
    #[cfg(test)]
    pub fn routed(&self) -> &[&'static Endpoint] {
        &self.routed
    }

    pub fn into_router(self) -> Router<AppState> {
        self.router
    }
}

impl Default for Routes {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use fugue_proto::api;

    #[test]
    fn every_declared_endpoint_is_routed_once_and_nothing_else() {
        let routes = crate::app_routes();
        let routed = routes.routed();
        for endpoint in api::all() {
            let times = routed.iter().filter(|e| **e == endpoint).count();
            assert_eq!(
                times, 1,
                "{} {} ({}) is routed {times} times",
                endpoint.method, endpoint.path, endpoint.name
            );
        }
        assert_eq!(routed.len(), api::all().count(), "an undeclared route");
    }
}
