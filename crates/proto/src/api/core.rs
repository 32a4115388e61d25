//! The core API (`/.p2/core/`): certificates, sessions, key backups, the server key, key
//! trials for other servers' actors, service discovery and the gateway.

endpoints! {
    /// Every endpoint of the core API.
    CORE_ENDPOINTS;
    /// Where the core API lives below a home server's origin (core §3.1): what a
    /// `.well-known/polyproto-core` names, the only path it may name.
    CORE_API = "/.p2/core/";

    /// The server certificate current at `timestamp` (now without it).
    get_server_idcert = GET "v1/idcert/server", auth None {
        use serde::{Deserialize, Serialize};

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

    /// The actor's certificates with cache information.
    get_actor_idcerts = GET "v1/idcert/actor/{fid}" (fid: &crate::FederationId), auth None {
        use serde::{Deserialize, Serialize};

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

        impl Query {
            /// Whether a certificate valid from `not_before` to `not_after`, of session
            /// `session_id`, is among those asked for: it overlaps the asked window and is of
            /// the asked session.
            pub fn selects(&self, not_before: u64, not_after: u64, session_id: Option<&str>) -> bool {
                self.not_before.is_none_or(|t| not_after >= t)
                    && self.not_after.is_none_or(|t| not_before <= t)
                    && self.session_id.as_deref().is_none_or(|s| session_id == Some(s))
            }
        }
        pub type Response = Vec<crate::cache::CacheableIdCert>;
    }

    /// A new certificate for the current session (body: the CSR, PEM). A session's first
    /// one needs no second factor (it may have logged in without a CSR); every later one
    /// does.
    post_idcert = POST "v1/idcert", auth Session, sensitive Sometimes {
        use serde::{Deserialize, Serialize};

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

    /// Revokes a session (the current one without `session_id`) and its certificate.
    delete_session = DELETE "v1/session", auth Session, sensitive Always {
        use serde::{Deserialize, Serialize};

        #[derive(Debug, Clone, Default, Serialize, Deserialize)]
        pub struct Query {
            #[serde(default, alias = "sessionId", skip_serializing_if = "Option::is_none")]
            pub session_id: Option<String>,
        }
    }

    /// The caller's sessions.
    list_sessions = GET "v1/sessions", auth Session {
        use serde::{Deserialize, Serialize};

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

    /// Stores encrypted private key material (core §6.3; body: a list of
    /// [`EncryptedPkm`](super::keymaterial::EncryptedPkm)).
    upload_key_material = POST "v1/session/keymaterial", auth Session {
        pub type Request = Vec<super::keymaterial::EncryptedPkm>;
    }

    /// The stored key material for `serials` (all without them); 204 when there is none.
    get_key_material = GET "v1/session/keymaterial", auth Session {
        pub use super::keymaterial::Query;
        pub type Response = Vec<super::keymaterial::EncryptedPkm>;
    }

    /// Deletes the stored key material for `serials` (all without them).
    delete_key_material = DELETE "v1/session/keymaterial", auth Session, sensitive Always {
        pub use super::keymaterial::Query;
    }

    /// The largest encrypted key material element the server accepts, in
    /// [`MAX_PAYLOAD_HEADER`](crate::api::MAX_PAYLOAD_HEADER).
    key_material_size = GET "v1/session/keymaterial/size", auth None {}

    /// Rotates the server key; answers the new server certificate (PEM).
    rotate_server_key = POST "v1/key/server", auth Admin, sensitive Always {}

    /// Makes a service provider discoverable (core §9). The first provider of a service
    /// becomes its primary. Asking for `primary` while another provider is primary replaces
    /// that one, which is sensitive (core §9.1.1).
    register_service = POST "v1/services", auth Session, sensitive Sometimes {
        use serde::{Deserialize, Serialize};

        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Request {
            pub service: NewService,
        }

        /// `Models.Service` as a request carries it: the name in either shape, nothing
        /// validated yet (the server answers bad names and URLs with their own error codes).
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct NewService {
            pub service: crate::services::NameField,
            pub url: String,
            #[serde(default)]
            pub primary: bool,
        }

        pub type Response = crate::services::Service;
    }

    /// Removes providers (`?url=&name=`, index-paired lists, see
    /// [`crate::services::delete_query`]); sensitive only when a primary provider is among
    /// them. Answers the services whose primary was removed and for which the server chose
    /// a new one (OP-35): empty when none was.
    unregister_service = DELETE "v1/services", auth Session, sensitive Sometimes {
        pub type Response = Vec<crate::services::NewPrimary>;
    }

    /// Makes an existing provider the primary one of its service. Answers the previous
    /// primary (now `primary: false`), if any, and the new one.
    set_primary_provider = PUT "v1/services/primary", auth Session, sensitive Always {
        use serde::{Deserialize, Serialize};

        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Request {
            pub url: String,
            pub name: crate::services::NameField,
        }

        pub type Response = Vec<crate::services::Service>;
    }

    /// The providers an actor of this server made discoverable (`?limit=`); 204 when none.
    /// `limit=1` gives the primary provider of each service.
    discover_services = GET "v1/services/discover/{fid}" (fid: &crate::FederationId), auth None {
        use serde::{Deserialize, Serialize};

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

    /// The same for one service.
    discover_service = GET "v1/services/discover/{fid}/{service}"
        (fid: &crate::FederationId, service: &crate::services::ServiceName), auth None {
        pub use super::discover_services::{Query, Response};
    }

    /// The WebSocket (DIGEST §3), or its URL for a plain GET (OP-38). Frames and payloads
    /// are in [`crate::gateway`]; the session is named in Identify, not in the request.
    gateway = GET "v1/gateway", auth None {}

    /// Events over HTTP (OP-37): a JSON array of envelopes, or 204.
    events = GET "v1/events", auth AnySession {}

    /// A key trial (`?fid=`, OP-20): without a session, for an actor of another server to
    /// sign in with; with one, for the signed-in actor itself to prove its keys on the
    /// migration routes ([`KEYTRIAL_HEADER`](crate::api::KEYTRIAL_HEADER)).
    key_trial = GET "v1/session/auth", auth None {
        use serde::{Deserialize, Serialize};

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

        pub type Response = KeyTrial;
    }

    /// The completed key trial; answers a session token of this server (`text/plain`,
    /// OP-21).
    sign_in = POST "v1/session/auth", auth None {
        use serde::{Deserialize, Serialize};

        /// `KeyTrialCompleted` with the FID the SDK sends (OP-21); `trial`/`id` name the
        /// trial.
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

        pub type Request = KeyTrialCompleted;
    }

    /// Completed key trials, after they expired.
    keytrials = GET "v1/keytrial/{fid}" (fid: &str), auth None {
        use serde::{Deserialize, Serialize};

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
            pub key_trial: super::key_trial::KeyTrial,
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

    /// A foreign session's certificate changed or was revoked (OP-39; body: the caller's
    /// new ID-Cert, PEM).
    idcert_extern = PUT "v1/session/idcert/extern", auth AnySession {}

    /// A resource's bytes (core §7.3.1). Public ones need no session; without a session
    /// anything else answers 401, with one a resource the caller may not read answers 404
    /// as an absent one does.
    get_resource = GET "v1/resource/{rid}" (rid: &str), auth Optional {}

    /// Uploads a resource under `rid` (body: its bytes; `Content-Length` required).
    upload_resource = POST "v1/resource/{rid}" (rid: &crate::rawr::ResourceId), auth Session {
        use serde::{Deserialize, Serialize};

        #[derive(Debug, Clone, Default, Serialize, Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub struct Query {
            /// [`AccessProperties`](crate::rawr::AccessProperties) in the SDK's form style
            /// or as JSON (OP-29); absent = neither private nor public.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub resource_access_properties: Option<String>,
        }
    }

    /// Replaces a resource's access properties.
    set_resource_access = PUT "v1/resource/{rid}" (rid: &crate::rawr::ResourceId), auth Session {
        pub type Request = crate::rawr::AccessProperties;
    }

    /// Deletes a resource of the caller.
    delete_resource = DELETE "v1/resource/{rid}" (rid: &crate::rawr::ResourceId), auth Session {}

    /// A resource's information, as a one-element list (OP-36); who may read the resource
    /// may read this.
    resource_info = GET "v1/resource/{rid}/info" (rid: &str), auth Optional {
        pub type Response = Vec<crate::rawr::ResourceInformation>;
    }

    /// The caller's resources; 204 when there are none.
    list_resources = GET "v1/resource/resources", auth Session {
        use serde::{Deserialize, Serialize};

        #[derive(Debug, Clone, Default, Serialize, Deserialize)]
        pub struct Query {
            /// At most this many (default 50, at most 1,000).
            #[serde(
                default,
                with = "crate::wire::u64_string::option",
                skip_serializing_if = "Option::is_none"
            )]
            pub limit: Option<u64>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub sort: Option<crate::rawr::ResourceSort>,
            /// With a preview of each image small enough (base64).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub previews: Option<bool>,
        }
        pub type Response = Vec<crate::rawr::ResourceListEntry>;
    }

    /// The caller's storage limit and use, in bytes.
    resource_usage = GET "v1/resource/usage", auth Session {
        pub type Response = crate::rawr::Usage;
    }

    /// The old actor asks for a redirect to its new identity (body: the new FID, as text or
    /// a JSON string), proving every key it signed messages here with
    /// ([`KEYTRIAL_HEADER`](crate::api::KEYTRIAL_HEADER)). 200 once both sides confirmed,
    /// 202 while the new actor has not.
    set_up_redirect = POST "v1/migration/redirect", auth Session {}

    /// The old actor gives up its redirect to `removeActorFid`.
    remove_redirect = DELETE "v1/migration/redirect", auth Session {
        use serde::{Deserialize, Serialize};

        #[derive(Debug, Clone, Serialize, Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub struct Query {
            pub remove_actor_fid: String,
        }
    }

    /// The new actor (signed in here, from any server) confirms the redirect of
    /// `redirectSourceFid` to it. 200 once both sides confirmed, 202 while the old actor has
    /// not.
    set_up_redirect_extern = POST "v1/redirect/extern", auth AnySession {
        use serde::{Deserialize, Serialize};

        #[derive(Debug, Clone, Serialize, Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub struct Query {
            pub redirect_source_fid: String,
        }
    }

    /// The new actor withdraws its confirmation.
    remove_redirect_extern = DELETE "v1/redirect/extern", auth AnySession {
        pub type Query = super::set_up_redirect_extern::Query;
    }

    /// The old actor lets `newActorFid` re-sign the messages it signed here with the keys
    /// it proves ([`KEYTRIAL_HEADER`](crate::api::KEYTRIAL_HEADER)), with the keys
    /// `allowedResigningKeys` (PEM public keys); answers until when (OP-33).
    request_resigning = POST "v1/messages", auth AnySession {
        use serde::{Deserialize, Serialize};

        #[derive(Debug, Clone, Serialize, Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub struct Request {
            pub new_actor_fid: String,
            pub allowed_resigning_keys: Vec<String>,
        }

        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        pub struct Response {
            /// Re-signed messages are accepted until this UNIX time.
            #[serde(with = "crate::wire::u64_string")]
            pub expires: u64,
        }
    }

    /// The old actor ends its grant to `removeActorFid`.
    abort_resigning = DELETE "v1/messages", auth AnySession {
        pub type Query = super::remove_redirect::Query;
    }

    /// The new actor fetches messages it may re-sign, in batches by signing certificate;
    /// uncommitted ones come again.
    messages_to_resign = GET "v1/messages", auth AnySession {
        use serde::{Deserialize, Serialize};

        #[derive(Debug, Clone, Default, Serialize, Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub struct Query {
            /// 1 to 1,000; 300 without.
            #[serde(
                default,
                with = "crate::wire::u64_string::option",
                skip_serializing_if = "Option::is_none"
            )]
            pub limit: Option<u64>,
            /// Only messages signed with this certificate.
            #[serde(
                default,
                with = "crate::wire::u64_string::option",
                skip_serializing_if = "Option::is_none"
            )]
            pub serial_number: Option<u64>,
        }
        pub type Response = Vec<crate::api::MessageBatch>;
    }

    /// The new actor sends re-signed messages; answers the next batch (`{}` when none is
    /// left) and `Retry-After`.
    commit_resigned = POST "v1/messages/commit", auth AnySession {
        pub type Request = Vec<crate::api::MessageBatch>;
    }

    /// The caller's data tied to the keys it proves
    /// ([`KEYTRIAL_HEADER`](crate::api::KEYTRIAL_HEADER)), as an archive of core §7.3.2
    /// ([`crate::export`]): 200 with it, or 204 with `Retry-After` while it is built.
    export_data = GET "v1/data", auth AnySession {}

    /// Deletes the caller's data tied to the keys it proves; `breakRedirect` also removes
    /// its redirect.
    delete_data = DELETE "v1/data", auth AnySession {
        use serde::{Deserialize, Serialize};

        #[derive(Debug, Clone, Default, Serialize, Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub struct Query {
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub break_redirect: Option<bool>,
        }
    }

    /// Imports an archive of core §7.3.2 (the body, `application/gzip`): messages re-signed
    /// by the caller that are not tied to a context elsewhere, and resources under their
    /// IDs. 202 once the archive is checked; the outcome is Fugue's
    /// [`data_imports`](crate::api::data_imports).
    import_data = POST "v1/migration/data", auth Session, sensitive Always {}
}

/// Where core §7.3.1's prose puts resources, without `v1` (OP-28): served as the `v1` path.
pub const UNVERSIONED_RESOURCES: &str = "/.p2/core/resource/";
/// Where the `v1` resource paths start.
pub const RESOURCES: &str = "/.p2/core/v1/resource/";

/// Encrypted private key material (core §6.3): the types the four key material endpoints
/// share.
pub mod keymaterial {
    use serde::{Deserialize, Serialize};

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
