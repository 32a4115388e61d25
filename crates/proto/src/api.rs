//! The HTTP API: one module per endpoint with its method, path and body types.
//!
//! Paths are written once, here; the server's router and the client's calls both use them.
//! Field names follow the spec, with `alias`es for the spellings the reference SDK uses
//! (SDK-COMPAT §1); every u64 goes out as a decimal string (OP-49).

use http::Method;

/// Who may call an endpoint (DIGEST §1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Anyone.
    None,
    /// A session token of this server.
    Session,
    /// A session token plus `X-P2-Sensitive-Solution`.
    Sensitive,
    /// Sensitive, and the actor must be a server administrator.
    Admin,
    /// A session token of this server, also one of a foreign actor (DIGEST §1.1 "B").
    AnySession,
}

/// Header carrying the second factor for sensitive actions.
pub const SENSITIVE_HEADER: &str = "x-p2-sensitive-solution";
/// Header announcing the largest encrypted key material element.
pub const MAX_PAYLOAD_HEADER: &str = "x-max-payload-size";
/// Where the core API lives below a home server's origin (core §3.1): what a
/// `.well-known/polyproto-core` names, the only path it may name.
pub const CORE_API: &str = "/.p2/core/";

/// A value as one path segment: FIDs may contain `%` (OP-19), which must reach the server
/// as itself, not as the start of an escape. Every other FID character is path-safe.
pub fn path_segment(value: &str) -> String {
    value.replace('%', "%25")
}

macro_rules! endpoint {
    ($method:ident $path:literal, $auth:ident) => {
        pub const METHOD: http::Method = http::Method::$method;
        pub const PATH: &str = $path;
        pub const AUTH: super::Auth = super::Auth::$auth;
    };
}

/// `GET /.well-known/polyproto-core` (core §3.1, OP-27).
pub mod well_known {
    use serde::{Deserialize, Serialize};
    endpoint!(GET "/.well-known/polyproto-core", None);

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Response {
        /// Absolute URL of the core API root, e.g. `https://example.com/.p2/core/`.
        pub api: String,
    }
}

/// `GET /health`: liveness and database reachability for operators.
pub mod health {
    use serde::{Deserialize, Serialize};
    endpoint!(GET "/health", None);

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Response {
        pub status: String,
        pub database: String,
    }
}

/// `POST /.p2/auth/v1/register` (polyproto-auth, OP-24).
pub mod register {
    use serde::{Deserialize, Serialize};
    endpoint!(POST "/.p2/auth/v1/register", None);

    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Request {
        #[serde(alias = "local_name")]
        pub local_name: String,
        pub password: String,
        #[serde(
            default,
            alias = "tos_consent",
            skip_serializing_if = "Option::is_none"
        )]
        pub tos_consent: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub invite: Option<String>,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Response {
        pub fid: crate::FederationId,
    }
}

/// `POST /.p2/auth/v1/login`: password (+TOTP) and an ID-CSR → ID-Cert and session token.
pub mod login {
    use serde::{Deserialize, Serialize};
    endpoint!(POST "/.p2/auth/v1/login", None);

    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Request {
        #[serde(alias = "local_name")]
        pub local_name: String,
        pub password: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub totp: Option<String>,
        /// The ID-CSR, PEM. Without it the session starts without a certificate and gets its
        /// first one through `POST /.p2/core/v1/idcert` (no second factor needed then).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub csr: Option<String>,
        #[serde(default, alias = "session_id", skip_serializing_if = "Option::is_none")]
        pub session_id: Option<String>,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Response {
        pub fid: crate::FederationId,
        #[serde(rename = "sessionId")]
        pub session_id: crate::SessionId,
        pub token: String,
        /// The new ID-Cert, PEM, if a CSR was sent. Sent under both spellings: the SDK reads
        /// `idCert`, beta.3 `id_cert`.
        #[serde(rename = "idCert", default, skip_serializing_if = "Option::is_none")]
        pub id_cert: Option<String>,
        #[serde(rename = "id_cert", default, skip_serializing_if = "Option::is_none")]
        pub id_cert_beta3: Option<String>,
    }
}

/// `POST /.p2/auth/v1/totp`: start TOTP enrolment (sensitive). Confirm with [`totp_confirm`].
pub mod totp_enroll {
    use serde::{Deserialize, Serialize};
    endpoint!(POST "/.p2/auth/v1/totp", Sensitive);

    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Response {
        /// Base32 secret for the authenticator app.
        pub secret: String,
        pub otpauth_url: String,
    }
}

/// `POST /.p2/auth/v1/totp/confirm`: a first valid code activates TOTP.
pub mod totp_confirm {
    use serde::{Deserialize, Serialize};
    endpoint!(POST "/.p2/auth/v1/totp/confirm", Session);

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Request {
        pub code: String,
    }
}

/// `DELETE /.p2/auth/v1/totp` (sensitive): turn TOTP off; login then needs the password only.
pub mod totp_disable {
    endpoint!(DELETE "/.p2/auth/v1/totp", Sensitive);
}

/// `PUT /.p2/auth/v1/password` (sensitive, core §4.2): a new password. The old one stops
/// working at once; other sessions stay unless `endSessions` is true.
pub mod change_password {
    use serde::{Deserialize, Serialize};
    endpoint!(PUT "/.p2/auth/v1/password", Sensitive);

    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Request {
        pub password: String,
        /// End every other session of the actor (this one stays).
        #[serde(default, alias = "end_sessions")]
        pub end_sessions: bool,
    }
}

/// `DELETE /.p2/auth/v1/account` (sensitive, core §4.2): ends every session, revokes every
/// certificate (they stay published, so old messages stay verifiable) and retires the name
/// for good.
pub mod delete_account {
    endpoint!(DELETE "/.p2/auth/v1/account", Sensitive);
}

/// `GET /.p2/core/v1/idcert/server?timestamp=` → the server cert current at that time.
pub mod get_server_idcert {
    use serde::{Deserialize, Serialize};
    endpoint!(GET "/.p2/core/v1/idcert/server", None);

    #[derive(Debug, Clone, Default, Serialize, Deserialize)]
    pub struct Query {
        #[serde(
            default,
            with = "crate::wire::u64_string::option",
            skip_serializing_if = "Option::is_none"
        )]
        pub timestamp: Option<u64>,
    }
    pub type Response = crate::cache::CacheableIdCert;
}

/// `GET /.p2/core/v1/idcert/actor/{fid}` → the actor's certificates with cache information.
pub mod get_actor_idcerts {
    use serde::{Deserialize, Serialize};
    endpoint!(GET "/.p2/core/v1/idcert/actor/{fid}", None);

    pub fn path(fid: &crate::FederationId) -> String {
        format!(
            "/.p2/core/v1/idcert/actor/{}",
            super::path_segment(&fid.to_string())
        )
    }

    #[derive(Debug, Clone, Default, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Query {
        #[serde(
            default,
            with = "crate::wire::u64_string::option",
            skip_serializing_if = "Option::is_none"
        )]
        pub not_before: Option<u64>,
        #[serde(
            default,
            with = "crate::wire::u64_string::option",
            skip_serializing_if = "Option::is_none"
        )]
        pub not_after: Option<u64>,
        #[serde(default, alias = "session_id", skip_serializing_if = "Option::is_none")]
        pub session_id: Option<String>,
    }
    pub type Response = Vec<crate::cache::CacheableIdCert>;
}

/// `POST /.p2/core/v1/idcert`: a new cert for the current session (body: CSR PEM).
pub mod post_idcert {
    use serde::{Deserialize, Serialize};
    endpoint!(POST "/.p2/core/v1/idcert", Session);

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Response {
        /// The new ID-Cert, PEM, under both spellings (SDK `idCert`, beta.3 `id_cert`).
        #[serde(rename = "idCert")]
        pub id_cert: String,
        #[serde(rename = "id_cert", default, skip_serializing_if = "String::is_empty")]
        pub id_cert_beta3: String,
        /// The session token to use from now on.
        pub token: String,
    }
}

/// `DELETE /.p2/core/v1/session?session_id=` (sensitive): revoke a session and its cert.
pub mod delete_session {
    use serde::{Deserialize, Serialize};
    endpoint!(DELETE "/.p2/core/v1/session", Sensitive);

    #[derive(Debug, Clone, Default, Serialize, Deserialize)]
    pub struct Query {
        #[serde(default, alias = "sessionId", skip_serializing_if = "Option::is_none")]
        pub session_id: Option<String>,
    }
}

/// `GET /.p2/core/v1/sessions`: the caller's sessions.
pub mod list_sessions {
    use serde::{Deserialize, Serialize};
    endpoint!(GET "/.p2/core/v1/sessions", Session);

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Session {
        pub session_id: crate::SessionId,
        /// Serial of the session's current ID-Cert; none before its first one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub serial: Option<crate::Serial>,
        #[serde(with = "crate::wire::u64_string")]
        pub created_at: u64,
        #[serde(
            default,
            with = "crate::wire::u64_string::option",
            skip_serializing_if = "Option::is_none"
        )]
        pub cert_not_after: Option<u64>,
        /// True for the session that made this request.
        pub current: bool,
    }
    pub type Response = Vec<Session>;
}

/// Encrypted private key material (core §6.3).
pub mod keymaterial {
    use serde::{Deserialize, Serialize};
    endpoint!(POST "/.p2/core/v1/session/keymaterial", Session);
    pub const SIZE_PATH: &str = "/.p2/core/v1/session/keymaterial/size";

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct EncryptedPkm {
        /// Encrypted private key, opaque to the server (we use a PKCS#8
        /// `EncryptedPrivateKeyInfo` PEM).
        #[serde(alias = "keyData")]
        pub key_data: String,
        #[serde(rename = "serialNumber", alias = "serial_number")]
        pub serial: crate::Serial,
        #[serde(rename = "encryptionAlgorithms")]
        pub encryption_algorithms: Vec<String>,
    }

    #[derive(Debug, Clone, Default, Serialize, Deserialize)]
    pub struct Query {
        /// Comma-separated serials.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub serials: Option<String>,
    }

    /// Parses a comma-separated serial list; empty entries are ignored.
    pub fn parse_serials(raw: &str) -> Result<Vec<crate::Serial>, std::num::ParseIntError> {
        raw.split(',')
            .filter(|s| !s.trim().is_empty())
            .map(str::parse)
            .collect()
    }
}

/// `POST /.p2/core/v1/key/server` (admin + sensitive): rotate the server key.
pub mod rotate_server_key {
    endpoint!(POST "/.p2/core/v1/key/server", Admin);
}

/// `POST /.p2/core/v1/services` (registered actors): make a service provider discoverable
/// (core §9). The first provider of a service becomes its primary. Asking for `primary` while
/// another provider is primary replaces that one, which is sensitive (core §9.1.1): then
/// `X-P2-Sensitive-Solution` is required.
pub mod register_service {
    use serde::{Deserialize, Serialize};
    endpoint!(POST "/.p2/core/v1/services", Session);

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Request {
        pub service: NewService,
    }

    /// `Models.Service` as a request carries it: the name in either shape, nothing validated
    /// yet (the server answers bad names and URLs with their own error codes).
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct NewService {
        pub service: crate::services::NameField,
        pub url: String,
        #[serde(default)]
        pub primary: bool,
    }

    pub type Response = crate::services::Service;
}

/// `DELETE /.p2/core/v1/services?url=&name=` (registered actors; sensitive only when a primary
/// provider is among them). Index-paired lists, see [`crate::services::delete_query`]. The
/// answer lists the services whose primary was removed and for which the server chose a new
/// one (OP-35): empty when none was.
pub mod unregister_service {
    endpoint!(DELETE "/.p2/core/v1/services", Session);

    pub type Response = Vec<crate::services::NewPrimary>;
}

/// `PUT /.p2/core/v1/services/primary` (sensitive): make an existing provider the primary
/// one of its service. Answers the previous primary (now `primary: false`), if any, and the
/// new one.
pub mod set_primary_provider {
    use serde::{Deserialize, Serialize};
    endpoint!(PUT "/.p2/core/v1/services/primary", Sensitive);

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Request {
        pub url: String,
        pub name: crate::services::NameField,
    }

    pub type Response = Vec<crate::services::Service>;
}

/// `GET /.p2/core/v1/services/discover/{fid}?limit=`: the providers an actor of this server
/// made discoverable; 204 when none. `limit=1` gives the primary provider of each service.
pub mod discover_services {
    use serde::{Deserialize, Serialize};
    endpoint!(GET "/.p2/core/v1/services/discover/{fid}", None);

    pub fn path(fid: &crate::FederationId) -> String {
        format!(
            "/.p2/core/v1/services/discover/{}",
            super::path_segment(&fid.to_string())
        )
    }

    #[derive(Debug, Clone, Default, Serialize, Deserialize)]
    pub struct Query {
        /// At least 1. Without it, every provider.
        #[serde(
            default,
            with = "crate::wire::u64_string::option",
            skip_serializing_if = "Option::is_none"
        )]
        pub limit: Option<u64>,
    }

    pub type Response = Vec<crate::services::Service>;
}

/// `GET /.p2/core/v1/services/discover/{fid}/{service}?limit=`: the same for one service.
pub mod discover_service {
    endpoint!(GET "/.p2/core/v1/services/discover/{fid}/{service}", None);

    pub fn path(fid: &crate::FederationId, service: &crate::services::ServiceName) -> String {
        format!(
            "/.p2/core/v1/services/discover/{}/{service}",
            super::path_segment(&fid.to_string())
        )
    }

    pub use super::discover_services::{Query, Response};
}

/// The methods the router must answer on each path; used by tidy tests.
pub fn all() -> Vec<(Method, &'static str)> {
    vec![
        (well_known::METHOD, well_known::PATH),
        (health::METHOD, health::PATH),
        (register::METHOD, register::PATH),
        (login::METHOD, login::PATH),
        (totp_enroll::METHOD, totp_enroll::PATH),
        (totp_confirm::METHOD, totp_confirm::PATH),
        (totp_disable::METHOD, totp_disable::PATH),
        (change_password::METHOD, change_password::PATH),
        (delete_account::METHOD, delete_account::PATH),
        (get_server_idcert::METHOD, get_server_idcert::PATH),
        (get_actor_idcerts::METHOD, get_actor_idcerts::PATH),
        (post_idcert::METHOD, post_idcert::PATH),
        (delete_session::METHOD, delete_session::PATH),
        (list_sessions::METHOD, list_sessions::PATH),
        (keymaterial::METHOD, keymaterial::PATH),
        (rotate_server_key::METHOD, rotate_server_key::PATH),
        (register_service::METHOD, register_service::PATH),
        (unregister_service::METHOD, unregister_service::PATH),
        (set_primary_provider::METHOD, set_primary_provider::PATH),
        (discover_services::METHOD, discover_services::PATH),
        (discover_service::METHOD, discover_service::PATH),
        (gateway::METHOD, gateway::PATH),
        (events::METHOD, events::PATH),
        (session_auth::METHOD, session_auth::PATH),
        (session_auth::POST_METHOD, session_auth::PATH),
        (keytrials::METHOD, keytrials::PATH),
        (idcert_extern::METHOD, idcert_extern::PATH),
    ]
}

/// `GET /.p2/core/v1/gateway`: the WebSocket (DIGEST §3), or its URL for a plain GET (OP-38).
/// Frames and payloads are in [`crate::gateway`].
pub mod gateway {
    endpoint!(GET "/.p2/core/v1/gateway", None);
}

/// `GET /.p2/core/v1/events`: events over HTTP (OP-37), a JSON array of envelopes, or 204.
pub mod events {
    endpoint!(GET "/.p2/core/v1/events", Session);
}

/// `GET /.p2/core/v1/session/auth?fid=` hands out a key trial (OP-20); `POST` with the
/// completed trial answers a session token of this server (`text/plain`, OP-21).
pub mod session_auth {
    use serde::{Deserialize, Serialize};
    endpoint!(GET "/.p2/core/v1/session/auth", None);
    pub const POST_METHOD: http::Method = http::Method::POST;

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Query {
        pub fid: String,
    }

    /// `KeyTrial` plus its `id` (OP-20).
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct KeyTrial {
        pub trial: String,
        #[serde(with = "crate::wire::u64_string")]
        pub expires: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub id: Option<String>,
    }

    /// `KeyTrialCompleted` with the FID the SDK sends (OP-21); `trial`/`id` name the trial.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct KeyTrialCompleted {
        /// Lowercase hex Ed25519 signature of the trial text (OP-23).
        pub signature: String,
        #[serde(with = "crate::wire::u64_string")]
        pub serial_number: u64,
        pub fid: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub trial: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub id: Option<String>,
    }
}

/// `GET /.p2/core/v1/keytrial/{fid}`: completed key trials after they expired.
pub mod keytrials {
    use serde::{Deserialize, Serialize};
    endpoint!(GET "/.p2/core/v1/keytrial/{fid}", None);

    pub fn path(fid: &str) -> String {
        format!("/.p2/core/v1/keytrial/{}", super::path_segment(fid))
    }

    #[derive(Debug, Clone, Default, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Query {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub limit: Option<u16>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub id: Option<String>,
        #[serde(
            default,
            with = "crate::wire::u64_string::option",
            skip_serializing_if = "Option::is_none"
        )]
        pub not_before: Option<u64>,
        #[serde(
            default,
            with = "crate::wire::u64_string::option",
            skip_serializing_if = "Option::is_none"
        )]
        pub not_after: Option<u64>,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Entry {
        pub key_trial: super::session_auth::KeyTrial,
        pub key_trial_completion: Vec<Completion>,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Completion {
        pub signature: String,
        #[serde(with = "crate::wire::u64_string")]
        pub serial_number: u64,
    }
}

/// `PUT /.p2/core/v1/session/idcert/extern` (body: the caller's new ID-Cert PEM): a foreign
/// session's certificate changed or was revoked (OP-39).
pub mod idcert_extern {
    endpoint!(PUT "/.p2/core/v1/session/idcert/extern", AnySession);
}
