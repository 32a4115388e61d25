//! The HTTP API: one module per namespace (`core`, `auth`, `chat`, `fugue_chat`, `fugue_core`, `mls`, `fugue_mls`, and `origin` for the two paths
//! outside `/.p2/`), one module per endpoint, and an endpoint is one (method, path).
//!
//! Each endpoint is declared once, with [`endpoints!`]: its method, its path template below
//! the namespace's root, who may call it ([`Auth`]), whether it is a sensitive action
//! ([`Sensitive`]), and its body types. The macro derives the rest in the endpoint's module:
//! `METHOD` and `PATH`, `ENDPOINT` (the declaration as data, which the server's routers and
//! the tests read) and `target(..)` (the request target with the path's parameters filled in
//! and escaped, which the client and federation call). [`all`] lists every endpoint; the
//! same macros build it, so it cannot miss one. Nothing outside this module writes a path.
//!
//! Callers name endpoints through the flat re-exports (`api::login`, which is
//! `api::auth::login`): endpoint names are unique across namespaces.
//!
//! Field names follow the spec, with `alias`es for the spellings the reference SDK uses
//! (SDK-COMPAT §1); every u64 goes out as a decimal string (OP-49).

use http::Method;

/// Who may call an endpoint (DIGEST §1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Anyone.
    None,
    /// Anyone; a session token, when one is sent, must be valid and may show more (DIGEST
    /// §1.1 "N/B": a RawR resource that is not public).
    Optional,
    /// A session token of this server, of an actor registered here (DIGEST §1.1 "R").
    Session,
    /// A session token of this server, also one of a foreign actor (DIGEST §1.1 "B").
    AnySession,
    /// A session token of a server administrator.
    Admin,
}

/// Whether an endpoint is a sensitive action (core §4.2): the second factor travels in
/// [`SENSITIVE_HEADER`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sensitive {
    No,
    /// Every call needs the second factor.
    Always,
    /// Some calls do, which only the request tells (replacing a primary service provider,
    /// core §9.1.1; a session's later certificates): the service decides.
    Sometimes,
}

/// One endpoint, as declared: what the router routes, the client calls and the tests probe.
#[derive(Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The name of its module, e.g. `login`.
    pub name: &'static str,
    pub method: Method,
    /// The path template: `{name}` stands for one path segment (axum's syntax).
    pub path: &'static str,
    /// The names of the path's parameters, in order.
    pub params: &'static [&'static str],
    pub auth: Auth,
    pub sensitive: Sensitive,
}

impl Endpoint {
    /// The request target with `values` for the path's parameters, in order, each escaped
    /// with [`path_segment`]. The generated `target(..)` functions call this with typed
    /// arguments; a wrong number of values is a bug in the caller.
    pub fn fill(&'static self, values: &[&str]) -> Target {
        assert_eq!(
            values.len(),
            self.params.len(),
            "{} takes {} path parameters",
            self.name,
            self.params.len()
        );
        let mut path = String::with_capacity(self.path.len() + 32);
        let mut rest = self.path;
        for value in values {
            // The compile-time check guarantees one `{..}` per parameter.
            let (Some(open), Some(close)) = (rest.find('{'), rest.find('}')) else {
                break;
            };
            path.push_str(&rest[..open]);
            path.push_str(&path_segment(value));
            rest = &rest[close + 1..];
        }
        path.push_str(rest);
        Target {
            endpoint: self,
            path,
        }
    }
}

/// What one request asks for: an endpoint and its path with the parameters filled in
/// (no query). Built by the endpoint modules' `target(..)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub endpoint: &'static Endpoint,
    pub path: String,
}

impl Target {
    pub fn method(&self) -> Method {
        self.endpoint.method.clone()
    }
}

/// A query struct of this module as name/value pairs, through its serde form: names and
/// value spellings (u64 as decimal strings) come from the declaration, absent fields are
/// left out. The caller's URL library escapes them.
pub fn query_pairs(query: &impl serde::Serialize) -> Result<Vec<(String, String)>, String> {
    use serde_json::Value;
    let fields = match serde_json::to_value(query) {
        Ok(Value::Object(fields)) => fields,
        Ok(Value::Null) => return Ok(Vec::new()),
        Ok(other) => return Err(format!("a query is a struct, not {other}")),
        Err(e) => return Err(format!("cannot encode query: {e}")),
    };
    Ok(fields
        .into_iter()
        .filter_map(|(key, value)| match value {
            Value::Null => None,
            Value::String(s) => Some((key, s)),
            other => Some((key, other.to_string())),
        })
        .collect())
}

/// Header carrying the second factor for sensitive actions.
pub const SENSITIVE_HEADER: &str = "x-p2-sensitive-solution";

/// Completed key trials on the migration routes (core §7, OP-22): a one-line JSON array of
/// [`TrialCompletion`], one per key the caller proves.
pub const KEYTRIAL_HEADER: &str = "x-p2-core-keytrial";

/// The largest body `POST /messages/commit` takes, in bytes (core §7.2.2.1, OP-31).
pub const RETURN_BODY_SIZE_LIMIT_HEADER: &str = "x-p2-return-body-size-limit";

/// Messages signed with one certificate, to re-sign or re-signed (core §7.2.1, OP-34).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MessageBatch {
    /// The certificate (PEM) the messages' signatures verify with.
    #[serde(rename = "idCert", alias = "id_cert")]
    pub id_cert: String,
    pub messages: Vec<BatchMessage>,
}

/// One message of a [`MessageBatch`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BatchMessage {
    /// The message's id on this server.
    #[serde(with = "crate::wire::u64_string")]
    pub id: u64,
    /// Lowercase hex Ed25519 signature over the JCS form of `content`.
    pub signature: String,
    /// What was signed: for chat messages a [`crate::chat::SignedPayload`].
    pub content: serde_json::Value,
    /// In an export (core §7.3.2), Fugue's note of the other member of the DM the message
    /// was sent in, so that an import can place it in the DM with the same actor; not
    /// signed, and absent for any other message.
    #[serde(
        rename = "fugue:peer",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub peer: Option<crate::FederationId>,
}

/// One completion in [`KEYTRIAL_HEADER`]: the trial text signed with the key of certificate
/// `serialNumber` (number or string). `id` names the trial; without it the caller's newest
/// open trial is meant (the reference SDK names none).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrialCompletion {
    /// Lowercase hex Ed25519 signature of the trial text (OP-23).
    pub signature: String,
    #[serde(with = "crate::wire::u64_string")]
    pub serial_number: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}
/// Header announcing the largest encrypted key material element.
pub const MAX_PAYLOAD_HEADER: &str = "x-max-payload-size";

/// A value as one path segment: FIDs may contain `%` (OP-19), which must reach the server
/// as itself, not as the start of an escape. Every other FID character is path-safe.
pub fn path_segment(value: &str) -> String {
    value.replace('%', "%25")
}

/// Whether `template`'s `{..}` placeholders are exactly `names`, in order, each a whole
/// path segment. Evaluated at compile time for every endpoint.
pub const fn placeholders_are(template: &str, names: &[&str]) -> bool {
    let t = template.as_bytes();
    let (mut i, mut n) = (0, 0);
    while i < t.len() {
        if t[i] == b'}' {
            return false;
        }
        if t[i] == b'{' {
            if n >= names.len() || i == 0 || t[i - 1] != b'/' {
                return false;
            }
            let name = names[n].as_bytes();
            let mut j = 0;
            i += 1;
            while i < t.len() && t[i] != b'}' {
                if j >= name.len() || name[j] != t[i] {
                    return false;
                }
                i += 1;
                j += 1;
            }
            if i == t.len() || j != name.len() || (i + 1 < t.len() && t[i + 1] != b'/') {
                return false;
            }
            n += 1;
        }
        i += 1;
    }
    n == names.len()
}

/// Declares a namespace's endpoints: its root, then each endpoint as
///
/// ```text
/// /// docs
/// name = METHOD "path/below/the/root/{param}" (param: &Type), auth Session, sensitive Always {
///     // body types: Request, Response, Query, …
/// }
/// ```
///
/// `sensitive` may be left out (`No`); `(params)` must name the template's placeholders in
/// order (checked at compile time). Path arguments are written with `Display` and escaped.
macro_rules! endpoints {
    (@sensitive) => { $crate::api::Sensitive::No };
    (@sensitive $sensitive:ident) => { $crate::api::Sensitive::$sensitive };
    (
        $(#[$list_doc:meta])*
        $list:ident;
        $(#[$root_doc:meta])*
        $root_name:ident = $root:literal;
        $(
            $(#[$doc:meta])*
            $name:ident = $method:ident $path:literal $(($($param:ident: $ty:ty),+))?,
                auth $auth:ident $(, sensitive $sensitive:ident)? {
                $($body:item)*
            }
        )+
    ) => {
        $(#[$root_doc])*
        pub const $root_name: &str = $root;

        $(
            $(#[$doc])*
            pub mod $name {
                /// The method of this endpoint.
                pub const METHOD: ::http::Method = ::http::Method::$method;
                /// The path template of this endpoint.
                pub const PATH: &str = concat!($root, $path);
                const PARAMS: &[&str] = &[$($(stringify!($param)),+)?];
                const _: () = assert!(
                    $crate::api::placeholders_are(PATH, PARAMS),
                    concat!("the path parameters of `", stringify!($name), "` do not match its template"),
                );

                /// This endpoint as data.
                pub static ENDPOINT: $crate::api::Endpoint = $crate::api::Endpoint {
                    name: stringify!($name),
                    method: METHOD,
                    path: PATH,
                    params: PARAMS,
                    auth: $crate::api::Auth::$auth,
                    sensitive: endpoints!(@sensitive $($sensitive)?),
                };

                /// The request target: method, and the path with its parameters escaped.
                pub fn target($($($param: $ty),+)?) -> $crate::api::Target {
                    ENDPOINT.fill(&[$($($param.to_string().as_str()),+)?])
                }

                /// The path alone, parameters escaped.
                pub fn path($($($param: $ty),+)?) -> String {
                    target($($($param),+)?).path
                }

                $($body)*
            }
        )+

        $(#[$list_doc])*
        pub static $list: &[&$crate::api::Endpoint] = &[$(&$name::ENDPOINT),+];
    };
}

/// Declares the namespaces: their modules, the flat re-exports and [`all`].
macro_rules! namespaces {
    ($($(#[$doc:meta])* $ns:ident: $list:ident),+ $(,)?) => {
        $(
            $(#[$doc])*
            pub mod $ns;
            pub use self::$ns::*;
        )+

        /// Every endpoint, namespace by namespace in declaration order.
        pub fn all() -> impl Iterator<Item = &'static Endpoint> {
            [$(self::$ns::$list),+].into_iter().flatten().copied()
        }
    };
}

namespaces! {
    /// At the server's origin, outside `/.p2/`: discovery (core §3.1) and health.
    origin: ORIGIN_ENDPOINTS,
    /// The core API (`/.p2/core/`).
    core: CORE_ENDPOINTS,
    /// Accounts (`/.p2/auth/`, polyproto-auth).
    auth: AUTH_ENDPOINTS,
    /// polyproto-chat (`/.p2/chat/`).
    chat: CHAT_ENDPOINTS,
    /// Fugue's chat additions (`/.p2/fugue-chat/`).
    fugue_chat: FUGUE_CHAT_ENDPOINTS,
    /// Fugue's core additions (`/.p2/fugue-core/`).
    fugue_core: FUGUE_CORE_ENDPOINTS,
    /// polyproto-mls (`/.p2/mls/`).
    mls: MLS_ENDPOINTS,
    /// Fugue's MLS additions (`/.p2/fugue-mls/`).
    fugue_mls: FUGUE_MLS_ENDPOINTS,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_unique_by_name_and_by_method_and_path() {
        let all: Vec<_> = all().collect();
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a.name, b.name);
                assert!(
                    a.method != b.method || a.path != b.path,
                    "{} and {} are both {} {}",
                    a.name,
                    b.name,
                    a.method,
                    a.path
                );
            }
        }
        assert!(all.len() >= 30, "{}", all.len());
    }

    #[test]
    fn paths_stand_below_their_namespace_root() {
        for e in CORE_ENDPOINTS {
            assert!(e.path.starts_with(CORE_API), "{}", e.path);
        }
        for e in AUTH_ENDPOINTS {
            assert!(e.path.starts_with(AUTH_API), "{}", e.path);
        }
        for e in CHAT_ENDPOINTS {
            assert!(e.path.starts_with("/.p2/chat/v1/"), "{}", e.path);
            assert!(e.path.starts_with(CHAT_API), "{}", e.path);
        }
        for e in FUGUE_CHAT_ENDPOINTS {
            assert!(e.path.starts_with("/.p2/fugue-chat/v1/"), "{}", e.path);
            assert!(e.path.starts_with(FUGUE_CHAT_API), "{}", e.path);
        }
        for e in FUGUE_CORE_ENDPOINTS {
            assert!(e.path.starts_with("/.p2/fugue-core/v1/"), "{}", e.path);
            assert!(e.path.starts_with(FUGUE_CORE_API), "{}", e.path);
        }
        for e in MLS_ENDPOINTS {
            assert!(e.path.starts_with("/.p2/mls/v1/"), "{}", e.path);
            assert!(e.path.starts_with(MLS_API), "{}", e.path);
        }
        for e in FUGUE_MLS_ENDPOINTS {
            assert!(e.path.starts_with("/.p2/fugue-mls/v1/"), "{}", e.path);
            assert!(e.path.starts_with(FUGUE_MLS_API), "{}", e.path);
        }
    }

    #[test]
    fn placeholders_must_match_the_declared_parameters() {
        assert!(placeholders_are("/a/{fid}/b", &["fid"]));
        assert!(placeholders_are("/a/{fid}/{service}", &["fid", "service"]));
        assert!(placeholders_are("/a/b", &[]));
        assert!(!placeholders_are("/a/{fid}", &[]));
        assert!(!placeholders_are("/a/b", &["fid"]));
        assert!(!placeholders_are("/a/{fid}", &["fix"]));
        assert!(!placeholders_are("/a/{fid}", &["fi"]));
        assert!(!placeholders_are("/a/{service}/{fid}", &["fid", "service"]));
        assert!(!placeholders_are("/a/x{fid}", &["fid"]));
        assert!(!placeholders_are("/a/{fid}x", &["fid"]));
        assert!(!placeholders_are("/a/{fid", &["fid"]));
        assert!(!placeholders_are("/a/fid}", &[]));
    }

    #[test]
    fn targets_fill_and_escape_the_parameters() {
        let fid: crate::FederationId = "a%b@example.com".parse().unwrap();
        let t = get_actor_idcerts::target(&fid);
        assert_eq!(t.path, "/.p2/core/v1/idcert/actor/a%25b@example.com");
        assert_eq!(t.method(), Method::GET);
        assert_eq!(t.endpoint, &get_actor_idcerts::ENDPOINT);
        let service: crate::services::ServiceName = "chat".parse().unwrap();
        assert_eq!(
            discover_service::path(&fid, &service),
            "/.p2/core/v1/services/discover/a%25b@example.com/chat"
        );
        assert_eq!(login::target().path, "/.p2/auth/v1/login");
        assert_eq!(well_known::PATH, "/.well-known/polyproto-core");
        assert_eq!(
            kick_member::path(7, &fid),
            "/.p2/chat/v1/guilds/7/members/a%25b@example.com"
        );
        let target = crate::chat::OverwriteTarget::Role(9);
        assert_eq!(
            set_overwrite::path(3, &target),
            "/.p2/fugue-chat/v1/channels/3/overwrites/9"
        );
    }

    #[test]
    fn queries_become_pairs_by_their_wire_names() {
        let q = get_actor_idcerts::Query {
            not_before: Some(5),
            session_id: Some("s 1".into()),
            ..Default::default()
        };
        assert_eq!(
            query_pairs(&q).unwrap(),
            [
                ("notBefore".to_owned(), "5".to_owned()),
                ("sessionId".to_owned(), "s 1".to_owned())
            ]
        );
        assert!(query_pairs(&()).unwrap().is_empty());
        assert!(query_pairs(&5u8).is_err());
    }
}
