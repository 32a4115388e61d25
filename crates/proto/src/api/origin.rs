//! The two endpoints at a server's origin, outside `/.p2/`.

endpoints! {
    /// Every endpoint at the origin.
    ORIGIN_ENDPOINTS;
    /// The origin itself.
    ORIGIN = "/";

    /// Where a domain's core API is (core §3.1, OP-27).
    well_known = GET ".well-known/polyproto-core", auth None {
        use serde::{Deserialize, Serialize};

        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Response {
            /// Absolute URL of the core API root, e.g. `https://example.com/.p2/core/`.
            pub api: String,
        }
    }

    /// Liveness and database reachability, for operators.
    health = GET "health", auth None {
        use serde::{Deserialize, Serialize};

        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Response {
            pub status: String,
            pub database: String,
        }
    }
}
