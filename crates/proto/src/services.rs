//! Discoverable services (core §9, DIGEST §8): service names, provider URLs and the `Service`
//! resource, plus the list encoding of `DELETE /services` (OP-35).
//!
//! Inputs are accepted in the spec's shape and in the one the reference SDK 0.21 sends (a name
//! as `{"inner": "chat"}`, SDK-COMPAT §2.2); outputs are always the spec's plain strings.
//! Provider URLs are normalised (lowercase scheme and host, no trailing slash), so the same
//! provider written two ways is one provider.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest service name (a namespace, core §8.2).
pub const MAX_NAME: usize = 64;
/// Shortest service name.
pub const MIN_NAME: usize = 2;
/// Longest provider URL we store and hand out.
pub const MAX_URL: usize = 512;

/// Why a service name, provider URL or list was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    #[error("a service name is 2 to 64 characters of a-z, 0-9, '_' and '-' (core §8.2)")]
    Name,
    #[error(
        "a provider URL is an absolute http(s) URL of at most 512 characters, without user \
         info, query or fragment"
    )]
    Url,
    #[error("{0}")]
    List(&'static str),
}

/// A service name: 2–64 characters of `[a-z0-9_-]`. Not case-folded: `Chat` is refused, not
/// taken for `chat`, as the reference SDK does.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceName(String);

impl ServiceName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ServiceName {
    type Err = ServiceError;
    fn from_str(raw: &str) -> Result<Self, ServiceError> {
        let ok = (MIN_NAME..=MAX_NAME).contains(&raw.len())
            && raw
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'-'));
        if !ok {
            return Err(ServiceError::Name);
        }
        Ok(Self(raw.to_owned()))
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The base URL of a service provider, normalised: scheme and host in lowercase, no trailing
/// slash (the spec allows one; clients add `/.p2/<service>` either way).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProviderUrl(String);

impl ProviderUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ProviderUrl {
    type Err = ServiceError;
    fn from_str(raw: &str) -> Result<Self, ServiceError> {
        let bad = || ServiceError::Url;
        // `http::Uri` would drop a fragment silently; a URL with one is not a base URL.
        if raw.len() > MAX_URL || raw.contains('#') {
            return Err(bad());
        }
        let uri: http::Uri = raw.parse().map_err(|_| bad())?;
        let scheme = uri.scheme_str().ok_or_else(bad)?.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(bad());
        }
        let authority = uri.authority().ok_or_else(bad)?;
        // User info would be published to everyone who discovers the service.
        if authority.as_str().contains('@') || authority.host().is_empty() {
            return Err(bad());
        }
        // `http` keeps a port it cannot read as u16 in the authority without complaint.
        let after_host = authority
            .as_str()
            .rsplit_once(']')
            .map_or(authority.as_str(), |(_, p)| p);
        if let Some((_, port)) = after_host.rsplit_once(':')
            && port.parse::<u16>().is_err()
        {
            return Err(bad());
        }
        if uri.query().is_some() {
            return Err(bad());
        }
        let path = uri.path().trim_end_matches('/');
        Ok(Self(format!(
            "{scheme}://{}{path}",
            authority.as_str().to_ascii_lowercase()
        )))
    }
}

impl fmt::Display for ProviderUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A service name as a request carries it, not yet validated: a plain string (spec) or
/// `{"inner": "…"}` (SDK 0.21). Serialised as a plain string. The server validates it, so a
/// bad name gets its own error code rather than a generic JSON error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameField(pub String);

impl<'de> Deserialize<'de> for NameField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Shape {
            Plain(String),
            Sdk { inner: String },
        }
        Ok(match Shape::deserialize(d)? {
            Shape::Plain(s) | Shape::Sdk { inner: s } => NameField(s),
        })
    }
}

impl Serialize for NameField {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl From<&ServiceName> for NameField {
    fn from(name: &ServiceName) -> Self {
        Self(name.0.clone())
    }
}

impl Serialize for ServiceName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ServiceName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        NameField::deserialize(d)?
            .0
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for ProviderUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ProviderUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        std::borrow::Cow::<str>::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// `Models.Service`: one provider of one service for an actor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub service: ServiceName,
    pub url: ProviderUrl,
    /// Whether this is the actor's primary provider of the service (one per service).
    #[serde(default)]
    pub primary: bool,
}

/// An entry of the `DELETE /services` answer: the server chose `new_primary` because the
/// primary provider of `service` was removed. Sent with `new_primary` (beta.3) and
/// `newPrimary` (SDK 0.21) alike; either is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPrimary {
    pub service: ServiceName,
    pub new_primary: ProviderUrl,
}

impl Serialize for NewPrimary {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("NewPrimary", 3)?;
        st.serialize_field("service", &self.service)?;
        st.serialize_field("new_primary", &self.new_primary)?;
        st.serialize_field("newPrimary", &self.new_primary)?;
        st.end()
    }
}

impl<'de> Deserialize<'de> for NewPrimary {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Both keys at once would be a duplicate field for a serde alias.
        #[derive(Deserialize)]
        struct Wire {
            service: ServiceName,
            new_primary: Option<ProviderUrl>,
            #[serde(rename = "newPrimary")]
            new_primary_sdk: Option<ProviderUrl>,
        }
        let w = Wire::deserialize(d)?;
        let new_primary = w
            .new_primary
            .or(w.new_primary_sdk)
            .ok_or_else(|| serde::de::Error::missing_field("new_primary"))?;
        Ok(Self {
            service: w.service,
            new_primary,
        })
    }
}

/// Most (name, url) pairs one `DELETE /services` may name.
pub const MAX_DELETE_PAIRS: usize = 128;

/// The query of `DELETE /services` for `pairs`: `url=a,b&name=x,y`, index-paired. Commas
/// separate entries; every value is percent-encoded, commas inside a URL included (OP-35).
pub fn delete_query(pairs: &[(ServiceName, ProviderUrl)]) -> String {
    let join = |values: Vec<&str>| {
        values
            .into_iter()
            .map(percent_encode)
            .collect::<Vec<_>>()
            .join(",")
    };
    let urls = join(pairs.iter().map(|(_, u)| u.as_str()).collect());
    let names = join(pairs.iter().map(|(n, _)| n.as_str()).collect());
    format!("url={urls}&name={names}")
}

/// Reads the raw query of `DELETE /services` into (name, url) pairs, unvalidated. Lists may
/// be comma-joined (`url=a,b`, the spec's form) or repeated (`url=a&url=b`); a literal comma
/// separates entries and an encoded one (`%2C`) belongs to its entry. Empty entries are
/// skipped (the SDK sends empty lists as `key=`).
pub fn parse_delete_query(raw: Option<&str>) -> Result<Vec<(String, String)>, ServiceError> {
    let (mut urls, mut names) = (Vec::new(), Vec::new());
    for part in raw.unwrap_or_default().split('&') {
        let (key, value) = part.split_once('=').unwrap_or((part, ""));
        let list = match percent_decode(key)?.as_str() {
            "url" => &mut urls,
            "name" => &mut names,
            _ => continue,
        };
        for entry in value.split(',').filter(|e| !e.is_empty()) {
            list.push(percent_decode(entry)?);
        }
    }
    if urls.is_empty() && names.is_empty() {
        return Err(ServiceError::List("name and url are required"));
    }
    if urls.len() != names.len() {
        return Err(ServiceError::List(
            "the name and url lists must have the same length",
        ));
    }
    if urls.len() > MAX_DELETE_PAIRS {
        return Err(ServiceError::List("at most 128 services per request"));
    }
    Ok(names.into_iter().zip(urls).collect())
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes one `application/x-www-form-urlencoded` value (`+` is a space).
fn percent_decode(value: &str) -> Result<String, ServiceError> {
    let bad = || ServiceError::List("a query value is not valid percent-encoded UTF-8");
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or_else(bad)?;
                let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Result<String, ServiceError> {
        s.parse::<ProviderUrl>().map(|u| u.0)
    }

    #[test]
    fn service_names_follow_the_namespace_rules() {
        for good in ["chat", "ab", "polyproto-chat", "a_1", &"x".repeat(64)] {
            assert!(good.parse::<ServiceName>().is_ok(), "{good} refused");
        }
        for bad in ["", "a", "Chat", "chat!", "ch at", "chät", &"x".repeat(65)] {
            assert_eq!(bad.parse::<ServiceName>(), Err(ServiceError::Name), "{bad}");
        }
    }

    #[test]
    fn provider_urls_are_absolute_http_urls_and_normalised() {
        assert_eq!(
            url("https://chat.example.com").unwrap(),
            "https://chat.example.com"
        );
        assert_eq!(
            url("HTTPS://Chat.Example.COM/").unwrap(),
            "https://chat.example.com"
        );
        assert_eq!(
            url("http://127.0.0.1:8080/base/Path//").unwrap(),
            "http://127.0.0.1:8080/base/Path"
        );
        assert_eq!(url("http://[::1]:3000/").unwrap(), "http://[::1]:3000");
        assert_eq!(
            url("https://a.example/x,y").unwrap(),
            "https://a.example/x,y"
        );
        for bad in [
            "",
            "chat.example.com",
            "/relative",
            "ftp://example.com",
            "https://",
            "https://user:pw@example.com",
            "https://example.com/?q=1",
            "https://example.com?",
            "https://example.com/#frag",
            "https://exa mple.com",
            "https://example.com:99999",
            "https://example.com:x",
            "https://bücher.example",
            &format!("https://example.com/{}", "a".repeat(MAX_URL)),
        ] {
            assert_eq!(url(bad), Err(ServiceError::Url), "{bad} accepted");
        }
    }

    #[test]
    fn names_are_read_in_both_shapes_and_written_plain() {
        let spec: Service =
            serde_json::from_str(r#"{"service":"chat","url":"https://c.example/","primary":true}"#)
                .unwrap();
        let sdk: Service = serde_json::from_str(
            r#"{"service":{"inner":"chat"},"url":"https://c.example","primary":true}"#,
        )
        .unwrap();
        assert_eq!(spec, sdk);
        assert_eq!(
            serde_json::to_string(&spec).unwrap(),
            r#"{"service":"chat","url":"https://c.example","primary":true}"#
        );
        assert!(
            serde_json::from_str::<Service>(
                r#"{"service":{"inner":"Chat"},"url":"https://c.example"}"#
            )
            .is_err()
        );
        let field: NameField = serde_json::from_str(r#"{"inner":"X y"}"#).unwrap();
        assert_eq!(field, NameField("X y".into()));
        assert_eq!(serde_json::to_string(&field).unwrap(), r#""X y""#);
    }

    #[test]
    fn the_sdk_reference_types_read_what_we_write() {
        let ours = Service {
            service: "chat".parse().unwrap(),
            url: "https://c.example/".parse().unwrap(),
            primary: false,
        };
        // The SDK writes names as {"inner": …}; we read that.
        let sdk =
            polyproto::types::Service::new("chat", "https://c.example".parse().unwrap(), false)
                .unwrap();
        let back: Service = serde_json::from_value(serde_json::to_value(&sdk).unwrap()).unwrap();
        assert_eq!(back, ours);
    }

    #[test]
    fn new_primary_entries_carry_both_spellings() {
        let entry = NewPrimary {
            service: "chat".parse().unwrap(),
            new_primary: "https://b.example".parse().unwrap(),
        };
        let json = serde_json::to_value(&entry).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"service":"chat","new_primary":"https://b.example","newPrimary":"https://b.example"})
        );
        assert_eq!(serde_json::from_value::<NewPrimary>(json).unwrap(), entry);
        for one in [
            r#"{"service":"chat","new_primary":"https://b.example"}"#,
            r#"{"service":"chat","newPrimary":"https://b.example"}"#,
        ] {
            assert_eq!(serde_json::from_str::<NewPrimary>(one).unwrap(), entry);
        }
        assert!(serde_json::from_str::<NewPrimary>(r#"{"service":"chat"}"#).is_err());
    }

    #[test]
    fn delete_lists_round_trip_with_commas_inside_urls() {
        let pairs = vec![
            (
                "chat".parse().unwrap(),
                "https://a.example/x,y".parse().unwrap(),
            ),
            (
                "mls".parse().unwrap(),
                "http://b.example:8080".parse().unwrap(),
            ),
        ];
        let query = delete_query(&pairs);
        assert_eq!(
            query,
            "url=https%3A%2F%2Fa.example%2Fx%2Cy,http%3A%2F%2Fb.example%3A8080&name=chat,mls"
        );
        let parsed = parse_delete_query(Some(&query)).unwrap();
        let expected: Vec<(String, String)> = pairs
            .iter()
            .map(|(n, u): &(ServiceName, ProviderUrl)| (n.to_string(), u.to_string()))
            .collect();
        assert_eq!(parsed, expected);
        // Repeated parameters and the SDK's single pair work too; unknown keys are ignored.
        assert_eq!(
            parse_delete_query(Some(
                "url=https://a.example&name=chat&url=https://b.example&name=mls&x=1"
            ))
            .unwrap(),
            vec![
                ("chat".to_owned(), "https://a.example".to_owned()),
                ("mls".to_owned(), "https://b.example".to_owned())
            ]
        );
        for bad in [
            None,
            Some(""),
            Some("url=a"),
            Some("name=a,b&url=c"),
            Some("url=%zz&name=a"),
            Some("url=%ff&name=a"),
        ] {
            assert!(parse_delete_query(bad).is_err(), "{bad:?} accepted");
        }
    }
}
