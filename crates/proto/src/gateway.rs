//! The gateway vocabulary (DIGEST §3): envelope, opcodes, close codes, payloads.
//!
//! Both client styles of SDK-COMPAT §7 are handled here, once: [`Envelope::parse`] accepts
//! `op`/`s` and every integer as a number or a decimal string and reports which [`Style`] the
//! peer used; [`Envelope::render`] writes a frame in a given style. The server and the client
//! share these rules; neither writes gateway JSON by hand.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The WebSocket route (OP-38); a plain GET there answers [`GatewayUrl`].
pub const PATH: &str = crate::api::gateway::PATH;
/// Events over HTTP for clients without a socket (OP-37).
pub const EVENTS_PATH: &str = crate::api::events::PATH;
/// The namespace of core payloads.
pub const CORE: &str = "core";

/// Core opcodes (DIGEST §3.2, OP-2, OP-4).
pub mod op {
    pub const HEARTBEAT: u16 = 0;
    pub const HELLO: u16 = 1;
    pub const IDENTIFY: u16 = 2;
    pub const NEW_SESSION: u16 = 3;
    pub const CERT_INVALIDATION: u16 = 4;
    pub const RESUME: u16 = 5;
    pub const SERVER_CERT_CHANGE: u16 = 6;
    pub const HEARTBEAT_ACK: u16 = 7;
    pub const SERVICE_CHANNEL: u16 = 8;
    pub const SERVICE_CHANNEL_ACK: u16 = 9;
    pub const RESUMED: u16 = 10;
    pub const HEARTBEAT_REQUEST: u16 = 11;
    pub const IDENTIFY_ACK: u16 = 12;
}

/// Close codes (DIGEST §3.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Close {
    UnknownError,
    UnknownOpcode,
    InvalidPayload,
    NotAuthenticated,
    AuthenticationFailed,
    AlreadyAuthenticated,
    InvalidSequence,
    RateLimited,
    Timeout,
    Unresumeable,
}

impl Close {
    pub const ALL: [Close; 10] = [
        Close::UnknownError,
        Close::UnknownOpcode,
        Close::InvalidPayload,
        Close::NotAuthenticated,
        Close::AuthenticationFailed,
        Close::AlreadyAuthenticated,
        Close::InvalidSequence,
        Close::RateLimited,
        Close::Timeout,
        Close::Unresumeable,
    ];

    pub fn code(self) -> u16 {
        match self {
            Close::UnknownError => 4000,
            Close::UnknownOpcode => 4001,
            Close::InvalidPayload => 4002,
            Close::NotAuthenticated => 4003,
            Close::AuthenticationFailed => 4004,
            Close::AlreadyAuthenticated => 4005,
            Close::InvalidSequence => 4007,
            Close::RateLimited => 4008,
            Close::Timeout => 4009,
            Close::Unresumeable => 4010,
        }
    }

    pub fn from_code(code: u16) -> Option<Close> {
        Close::ALL.into_iter().find(|c| c.code() == code)
    }

    /// May the client resume after this close? (4009 only counts when the server sent it.)
    pub fn resumable(self) -> bool {
        matches!(
            self,
            Close::UnknownError
                | Close::UnknownOpcode
                | Close::InvalidPayload
                | Close::InvalidSequence
                | Close::Timeout
        )
    }
}

/// How a peer writes integers: the spec's JSON numbers, or the reference SDK's strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Style {
    #[default]
    Numbers,
    Strings,
}

/// Why a frame is not a gateway payload.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("the frame is not a JSON object")]
    NotAnObject,
    #[error("field `{0}` is missing")]
    Missing(&'static str),
    #[error("field `{0}` is not an unsigned integer or a decimal string of one")]
    NotAnInteger(&'static str),
    #[error("field `n` is not a string")]
    BadNamespace,
}

/// One gateway payload `{n, op, d, s}`; `id` is Fugue's stable event id (see docs/gateway.md).
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub n: String,
    pub op: u16,
    pub d: Value,
    pub s: Option<u64>,
    pub id: Option<u64>,
}

/// Reads an unsigned integer given as a JSON number or a decimal string.
pub fn uint(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s)
            if !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()) =>
        {
            s.parse().ok()
        }
        _ => None,
    }
}

fn field_uint(obj: &Map<String, Value>, name: &'static str) -> Result<Option<u64>, EnvelopeError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => uint(v).map(Some).ok_or(EnvelopeError::NotAnInteger(name)),
    }
}

impl Envelope {
    pub fn new(n: &str, op: u16, d: Value) -> Self {
        Self {
            n: n.to_owned(),
            op,
            d,
            s: None,
            id: None,
        }
    }

    /// Parses a frame and tells the style its `op` was written in.
    pub fn parse(text: &str) -> Result<(Envelope, Style), EnvelopeError> {
        let value: Value = serde_json::from_str(text).map_err(|_| EnvelopeError::NotAnObject)?;
        Self::from_value(value)
    }

    pub fn from_value(value: Value) -> Result<(Envelope, Style), EnvelopeError> {
        let Value::Object(mut obj) = value else {
            return Err(EnvelopeError::NotAnObject);
        };
        let style = match obj.get("op") {
            Some(Value::String(_)) => Style::Strings,
            _ => Style::Numbers,
        };
        let op = field_uint(&obj, "op")?.ok_or(EnvelopeError::Missing("op"))?;
        let op = u16::try_from(op).map_err(|_| EnvelopeError::NotAnInteger("op"))?;
        let s = field_uint(&obj, "s")?;
        let id = field_uint(&obj, "id")?;
        let n = match obj.remove("n") {
            Some(Value::String(n)) => n,
            None => CORE.to_owned(),
            Some(_) => return Err(EnvelopeError::BadNamespace),
        };
        let d = obj.remove("d").ok_or(EnvelopeError::Missing("d"))?;
        Ok((Envelope { n, op, d, s, id }, style))
    }

    /// The frame as a JSON value in `style`: in string style every integer becomes a string.
    pub fn to_value(&self, style: Style) -> Value {
        let mut obj = Map::new();
        obj.insert("n".into(), Value::String(self.n.clone()));
        obj.insert("op".into(), styled_uint(u64::from(self.op), style));
        obj.insert("d".into(), styled(&self.d, style));
        if let Some(s) = self.s {
            obj.insert("s".into(), styled_uint(s, style));
        }
        if let Some(id) = self.id {
            obj.insert("id".into(), styled_uint(id, style));
        }
        Value::Object(obj)
    }

    pub fn render(&self, style: Style) -> String {
        self.to_value(style).to_string()
    }
}

/// A frame whose `d` is already JSON text in `style` (the fan-out path: `d` is rendered once
/// per event, the envelope once per connection). Same shape as [`Envelope::render`].
pub fn render_raw(
    n: &str,
    op: u16,
    d_json: &str,
    s: Option<u64>,
    id: Option<u64>,
    style: Style,
) -> String {
    use std::fmt::Write;
    let q = |v: u64| match style {
        Style::Numbers => v.to_string(),
        Style::Strings => format!("\"{v}\""),
    };
    let mut out = String::with_capacity(d_json.len() + n.len() + 64);
    out.push_str("{\"d\":");
    out.push_str(d_json);
    if let Some(id) = id {
        let _ = write!(out, ",\"id\":{}", q(id));
    }
    let _ = write!(
        out,
        ",\"n\":{},\"op\":{}",
        Value::String(n.to_owned()),
        q(u64::from(op))
    );
    if let Some(s) = s {
        let _ = write!(out, ",\"s\":{}", q(s));
    }
    out.push('}');
    out
}

fn styled_uint(v: u64, style: Style) -> Value {
    match style {
        Style::Numbers => Value::from(v),
        Style::Strings => Value::String(v.to_string()),
    }
}

/// `d` in `style`: string style turns every unsigned integer into a decimal string.
pub fn styled(d: &Value, style: Style) -> Value {
    match (style, d) {
        (Style::Numbers, _) => d.clone(),
        (Style::Strings, Value::Number(n)) => match n.as_u64() {
            Some(u) => Value::String(u.to_string()),
            None => d.clone(),
        },
        (Style::Strings, Value::Array(a)) => {
            Value::Array(a.iter().map(|v| styled(v, style)).collect())
        }
        (Style::Strings, Value::Object(o)) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), styled(v, style)))
                .collect(),
        ),
        (Style::Strings, _) => d.clone(),
    }
}

/// The gateway URL of a server's HTTP(S) base URL: `http` → `ws`, `https` → `wss`, plus
/// [`PATH`]. None for any other scheme.
pub fn websocket_url(base: &str) -> Option<String> {
    let base = base.trim().trim_end_matches('/');
    let (scheme, rest) = base.split_once("://")?;
    let ws = match scheme.to_ascii_lowercase().as_str() {
        "http" => "ws",
        "https" => "wss",
        _ => return None,
    };
    Some(format!("{ws}://{rest}{PATH}"))
}

/// `GET` on the gateway path without an upgrade (OP-38).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GatewayUrl {
    pub url: String,
}

/// Op 1 `d`: both key styles (SDK-COMPAT §7.3 item 1).
pub fn hello(interval_ms: u64) -> Value {
    serde_json::json!({
        "heartbeat_interval": interval_ms,
        "heartbeatInterval": interval_ms.to_string(),
    })
}

/// Reads op 1 `d` in either key style.
pub fn hello_interval_ms(d: &Value) -> Option<u64> {
    d.get("heartbeat_interval")
        .or_else(|| d.get("heartbeatInterval"))
        .and_then(uint)
}

/// Op 2 `d`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Identify {
    pub token: String,
}

/// Op 5 `d`.
#[derive(Debug, Clone)]
pub struct Resume {
    pub s: u64,
    pub token: String,
}

impl Resume {
    pub fn from_value(d: &Value) -> Option<Resume> {
        Some(Resume {
            s: uint(d.get("s")?)?,
            token: d.get("token")?.as_str()?.to_owned(),
        })
    }

    pub fn to_value(&self) -> Value {
        serde_json::json!({ "s": self.s, "token": self.token })
    }
}

/// Op 0 `d`: a minified number list (DIGEST §3.4).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NumberList {
    pub from: u64,
    pub to: u64,
    pub except: Vec<u64>,
}

/// Most numbers one heartbeat may list in `except`; more is an invalid payload.
pub const MAX_EXCEPT: usize = 4096;

impl NumberList {
    pub fn from_value(d: &Value) -> Option<NumberList> {
        let from = uint(d.get("from")?)?;
        let to = uint(d.get("to")?)?;
        let except = match d.get("except") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) if a.len() <= MAX_EXCEPT => {
                a.iter().map(uint).collect::<Option<Vec<u64>>>()?
            }
            Some(_) => return None,
        };
        (from <= to).then_some(NumberList { from, to, except })
    }

    /// Numbers are always decimal strings (DIGEST §3.4).
    pub fn to_value(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("from".into(), Value::String(self.from.to_string()));
        obj.insert("to".into(), Value::String(self.to.to_string()));
        if !self.except.is_empty() {
            obj.insert(
                "except".into(),
                Value::Array(
                    self.except
                        .iter()
                        .map(|e| Value::String(e.to_string()))
                        .collect(),
                ),
            );
        }
        Value::Object(obj)
    }
}

/// Op 8 / op 9 `action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelAction {
    Subscribe,
    Unsubscribe,
}

/// Op 8 `d`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceChannel {
    pub action: ChannelAction,
    pub service: String,
}

/// Op 9 `d`; `error` only on failure.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceChannelAck {
    pub action: ChannelAction,
    pub service: String,
    pub success: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Op 4 `d` (SDK-COMPAT §7.3 item 6, OP-10): the spec's fields and, when the server speaks
/// for the revocation, the revoked certificate's `CacheableIdCert` signed by the server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertInvalidation {
    #[serde(deserialize_with = "crate::wire::u64_string::deserialize")]
    pub serial: u64,
    #[serde(
        rename = "invalidSince",
        deserialize_with = "crate::wire::u64_string::deserialize"
    )]
    pub invalid_since: u64,
    /// Lowercase hex Ed25519 signature over `"{invalidSince}{serial}"` by the revoked cert's
    /// key when the actor revoked it; absent when the server did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub cacheable: Option<crate::cache::CacheableIdCert>,
}

impl CertInvalidation {
    /// The bytes the actor signs (OP-10): decimal `invalidSince` then decimal serial.
    pub fn signing_input(invalid_since: u64, serial: u64) -> String {
        format!("{invalid_since}{serial}")
    }
}

/// Op 6 `d`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerCertChange {
    pub cert: String,
    #[serde(
        rename = "oldInvalidSince",
        deserialize_with = "crate::wire::u64_string::deserialize"
    )]
    pub old_invalid_since: u64,
}

/// Op 3 `d`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewSession {
    pub cert: String,
}

/// A payload type as the `d` of a frame. The payload types here are plain structs of
/// strings, numbers and lists: serialising them cannot fail.
pub fn payload(value: &impl Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// Op 12 `d`: the token the connection is identified with.
pub type IdentifyAck = Identify;

/// A core payload a client sends, parsed once: the server's connection matches on it, and
/// the client builds its frames from it.
#[derive(Debug, Clone)]
pub enum ClientOp {
    Heartbeat(NumberList),
    Identify(Identify),
    Resume(Resume),
    CertInvalidation(CertInvalidation),
    ServiceChannel(ServiceChannel),
}

/// Why a core payload from a client is not one.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClientOpError {
    #[error("opcode {0} is not for clients")]
    NotForClients(u16),
    #[error("{0}")]
    Malformed(String),
}

impl ClientOp {
    /// The payload of a core frame with opcode `op`.
    pub fn parse(op: u16, d: &Value) -> Result<ClientOp, ClientOpError> {
        let malformed = |why: &str| ClientOpError::Malformed(why.to_owned());
        let typed = |e: serde_json::Error| ClientOpError::Malformed(e.to_string());
        match op {
            op::HEARTBEAT => NumberList::from_value(d)
                .map(ClientOp::Heartbeat)
                .ok_or_else(|| malformed("a heartbeat is {from, to, except?}")),
            op::IDENTIFY => d
                .get("token")
                .and_then(Value::as_str)
                .map(|t| {
                    ClientOp::Identify(Identify {
                        token: t.to_owned(),
                    })
                })
                .ok_or_else(|| malformed("Identify needs a token")),
            op::RESUME => Resume::from_value(d)
                .map(ClientOp::Resume)
                .ok_or_else(|| malformed("Resume needs s and token")),
            op::CERT_INVALIDATION => serde_json::from_value(d.clone())
                .map(ClientOp::CertInvalidation)
                .map_err(typed),
            op::SERVICE_CHANNEL => serde_json::from_value(d.clone())
                .map(ClientOp::ServiceChannel)
                .map_err(typed),
            other => Err(ClientOpError::NotForClients(other)),
        }
    }

    pub fn op(&self) -> u16 {
        match self {
            ClientOp::Heartbeat(_) => op::HEARTBEAT,
            ClientOp::Identify(_) => op::IDENTIFY,
            ClientOp::Resume(_) => op::RESUME,
            ClientOp::CertInvalidation(_) => op::CERT_INVALIDATION,
            ClientOp::ServiceChannel(_) => op::SERVICE_CHANNEL,
        }
    }

    /// The core frame carrying this payload.
    pub fn envelope(&self) -> Envelope {
        let d = match self {
            ClientOp::Heartbeat(list) => list.to_value(),
            ClientOp::Identify(i) => payload(i),
            ClientOp::Resume(r) => r.to_value(),
            ClientOp::CertInvalidation(c) => payload(c),
            ClientOp::ServiceChannel(c) => payload(c),
        };
        Envelope::new(CORE, self.op(), d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_styles_parse_and_report_their_style() {
        let (e, st) = Envelope::parse(r#"{"n":"core","op":"2","d":{"token":"t"}}"#).unwrap();
        assert_eq!((e.op, st), (2, Style::Strings));
        let (e, st) = Envelope::parse(r#"{"n":"core","op":0,"d":{"from":"1","to":2}}"#).unwrap();
        assert_eq!((e.op, st), (0, Style::Numbers));
        assert_eq!(
            NumberList::from_value(&e.d),
            Some(NumberList {
                from: 1,
                to: 2,
                except: vec![]
            })
        );
    }

    #[test]
    fn client_ops_round_trip_through_their_frames() {
        let ops = [
            ClientOp::Heartbeat(NumberList {
                from: 1,
                to: 9,
                except: vec![4],
            }),
            ClientOp::Identify(Identify { token: "t".into() }),
            ClientOp::Resume(Resume {
                s: 7,
                token: "t".into(),
            }),
            ClientOp::ServiceChannel(ServiceChannel {
                action: ChannelAction::Subscribe,
                service: "chat".into(),
            }),
        ];
        for op in ops {
            let env = op.envelope();
            let (back, _) = Envelope::parse(&env.render(Style::Numbers)).unwrap();
            let parsed = ClientOp::parse(back.op, &back.d).unwrap();
            assert_eq!(parsed.envelope(), env, "{op:?}");
        }
        assert_eq!(
            ClientOp::parse(op::HELLO, &Value::Null).unwrap_err(),
            ClientOpError::NotForClients(op::HELLO)
        );
        assert!(matches!(
            ClientOp::parse(op::IDENTIFY, &serde_json::json!({})),
            Err(ClientOpError::Malformed(_))
        ));
    }

    #[test]
    fn malformed_frames_are_rejected() {
        for bad in [
            "[]",
            "nonsense",
            r#"{"op":"x","d":{}}"#,
            r#"{"op":70000,"d":{}}"#,
            r#"{"op":-1,"d":{}}"#,
            r#"{"op":1}"#,
            r#"{"n":5,"op":1,"d":{}}"#,
            r#"{"op":1,"d":{},"s":"01x"}"#,
        ] {
            assert!(Envelope::parse(bad).is_err(), "{bad}");
        }
        assert!(NumberList::from_value(&serde_json::json!({"from":"5","to":"4"})).is_none());
    }

    #[test]
    fn string_style_stringifies_every_integer() {
        let mut e = Envelope::new(CORE, 4, serde_json::json!({"serial": 7, "x": {"y": [1]}}));
        e.s = Some(3);
        assert_eq!(
            e.render(Style::Strings),
            r#"{"d":{"serial":"7","x":{"y":["1"]}},"n":"core","op":"4","s":"3"}"#
        );
        assert_eq!(
            e.render(Style::Numbers),
            r#"{"d":{"serial":7,"x":{"y":[1]}},"n":"core","op":4,"s":3}"#
        );
    }

    #[test]
    fn raw_rendering_matches_envelope_rendering() {
        let d = serde_json::json!({"cert": "PEM \"quoted\"", "n": 5});
        let mut e = Envelope::new("chat", 3, d.clone());
        e.s = Some(9);
        e.id = Some(12);
        for style in [Style::Numbers, Style::Strings] {
            let raw = render_raw(
                "chat",
                3,
                &styled(&d, style).to_string(),
                Some(9),
                Some(12),
                style,
            );
            assert_eq!(raw, e.render(style));
        }
    }

    #[test]
    fn websocket_urls_follow_the_http_scheme() {
        assert_eq!(
            websocket_url("http://127.0.0.1:3000/").as_deref(),
            Some("ws://127.0.0.1:3000/.p2/core/v1/gateway")
        );
        assert_eq!(
            websocket_url("HTTPS://example.com/fugue").as_deref(),
            Some("wss://example.com/fugue/.p2/core/v1/gateway")
        );
        assert_eq!(websocket_url("ftp://example.com"), None);
        assert_eq!(websocket_url("example.com"), None);
    }

    #[test]
    fn close_codes_round_trip() {
        for c in Close::ALL {
            assert_eq!(Close::from_code(c.code()), Some(c));
        }
        assert_eq!(Close::from_code(4006), None);
    }
}
