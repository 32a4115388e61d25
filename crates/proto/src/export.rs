//! The polyproto export/import format (core §7.3.2): a gzipped tar holding
//! `messages.p2mb` (message batches), `rawr/` (the actor's resources, each named by its ID,
//! and `rawr/access_properties.p2al`) and, from the actor's home server, `certs/` (its
//! ID-Certs, PEM) and `crypt_certs.p2epk` (its encrypted private key material). What an
//! archive may hold, and how its entries are named, is decided here for both sides.

use std::collections::BTreeMap;

use crate::rawr::{AccessProperties, ResourceId};

/// The message batches (JSON: an array of [`crate::api::MessageBatch`]).
pub const MESSAGES: &str = "messages.p2mb";
/// The folder of resources.
pub const RAWR_DIR: &str = "rawr";
/// The access properties' file in [`RAWR_DIR`].
pub const ACCESS_FILE: &str = "access_properties.p2al";
/// The folder of ID-Certs (`<serial>.pem`; the name is Fugue's, the spec names none).
pub const CERTS_DIR: &str = "certs";
/// The encrypted private key material (JSON: an array of
/// [`crate::api::keymaterial::EncryptedPkm`]).
pub const KEY_MATERIAL: &str = "crypt_certs.p2epk";
/// The media type of an archive (OP-33).
pub const CONTENT_TYPE: &str = "application/gzip";

/// `rawr/access_properties.p2al`: one single-key object per resource, its ID to its access
/// properties (`public` always written, OP-30).
pub type AccessFile = Vec<BTreeMap<String, AccessProperties>>;

/// What an entry of an archive is, by its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A folder (`rawr/`, `certs/`): holds nothing itself.
    Folder,
    Messages,
    Resource(ResourceId),
    AccessProperties,
    /// An ID-Cert; the serial its file is named by.
    Cert(u64),
    KeyMaterial,
}

/// Why an archive's entry is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path:?}: {why}")]
pub struct EntryError {
    pub path: String,
    pub why: &'static str,
}

/// What the entry at `path` is: only the names of core §7.3.2, relative, without `..`,
/// `.` or empty segments — anything else (a path leaving the archive, an unknown file) is
/// refused.
pub fn entry(path: &str) -> Result<Entry, EntryError> {
    let refuse = |why| {
        Err(EntryError {
            path: path.chars().take(200).collect(),
            why,
        })
    };
    // The root itself (`tar -C dir .` writes `./` first).
    if matches!(path, "." | "./") {
        return Ok(Entry::Folder);
    }
    let trimmed = path.strip_prefix("./").unwrap_or(path);
    let (trimmed, folder) = match trimmed.strip_suffix('/') {
        Some(t) => (t, true),
        None => (trimmed, false),
    };
    if trimmed.starts_with('/') || trimmed.contains('\\') {
        return refuse("not a relative path");
    }
    let parts: Vec<&str> = trimmed.split('/').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return refuse("a path with an empty, `.` or `..` segment");
    }
    match (parts.as_slice(), folder) {
        ([RAWR_DIR] | [CERTS_DIR], _) => Ok(Entry::Folder),
        (_, true) => refuse("not a folder of the format"),
        ([MESSAGES], _) => Ok(Entry::Messages),
        ([KEY_MATERIAL], _) => Ok(Entry::KeyMaterial),
        ([RAWR_DIR, ACCESS_FILE], _) => Ok(Entry::AccessProperties),
        ([RAWR_DIR, name], _) => match name.parse() {
            Ok(rid) => Ok(Entry::Resource(rid)),
            Err(_) => refuse("not a resource ID"),
        },
        ([CERTS_DIR, name], _) => match name
            .strip_suffix(".pem")
            .and_then(|s| s.parse::<u64>().ok())
        {
            Some(serial) => Ok(Entry::Cert(serial)),
            None => refuse("not <serial>.pem"),
        },
        _ => refuse("not a name of the format"),
    }
}

/// The path of resource `rid` in an archive.
pub fn resource_path(rid: &ResourceId) -> String {
    format!("{RAWR_DIR}/{rid}")
}

/// The archive's name for `local`@`domain`: `export` and 20 random digits, then the actor
/// (core §7.3.2), with `.tar.gz` (OP-33).
pub fn file_name(digits: u64, local: &str, domain: &str) -> String {
    // u64::MAX has 20 digits: zero-padded, any u64 has exactly 20.
    format!("export{digits:020}-{local}@{domain}.tar.gz")
}

/// Why `messages.p2mb` was not read through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError<E> {
    /// It is not the format; what is wrong.
    Format(String),
    /// The caller refused a message.
    Refused(E),
}

impl<E: std::fmt::Display> std::fmt::Display for ReadError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Format(why) => f.write_str(why),
            Self::Refused(e) => e.fmt(f),
        }
    }
}

/// Reads `messages.p2mb` from `reader` one message at a time, handing each with its batch's
/// certificate (PEM) to `each`; neither the file nor a batch is held whole, so a batch must
/// name its certificate (`idCert`) before its messages. The number of messages; the first
/// refusal of `each` ends the reading.
pub fn each_message<R: std::io::Read, E>(
    reader: R,
    mut each: impl FnMut(&str, crate::api::BatchMessage) -> Result<(), E>,
) -> Result<u64, ReadError<E>> {
    use serde::de::DeserializeSeed;
    // The refusal waits here while the JSON reader unwinds with a text.
    let mut refused = None;
    let mut pass_on = |pem: &str, m| {
        each(pem, m).map_err(|e| {
            refused = Some(e);
            "refused".to_owned()
        })
    };
    let mut de = serde_json::Deserializer::from_reader(reader);
    let mut count = 0u64;
    let read = Batches {
        each: &mut pass_on,
        count: &mut count,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    match (read, refused) {
        (_, Some(e)) => Err(ReadError::Refused(e)),
        (Err(e), None) => Err(ReadError::Format(format!("{MESSAGES}: {e}"))),
        (Ok(()), None) => Ok(count),
    }
}

/// The batches of `messages.p2mb`, each passed on message by message.
struct Batches<'a, F> {
    each: &'a mut F,
    count: &'a mut u64,
}

impl<'de, F> serde::de::DeserializeSeed<'de> for Batches<'_, F>
where
    F: FnMut(&str, crate::api::BatchMessage) -> Result<(), String>,
{
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, F> serde::de::Visitor<'de> for Batches<'_, F>
where
    F: FnMut(&str, crate::api::BatchMessage) -> Result<(), String>,
{
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of message batches")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(Batch {
                each: &mut *self.each,
                count: &mut *self.count,
            })?
            .is_some()
        {}
        Ok(())
    }
}

/// One batch: `idCert` and `messages`, in either order.
struct Batch<'a, F> {
    each: &'a mut F,
    count: &'a mut u64,
}

impl<'de, F> serde::de::DeserializeSeed<'de> for Batch<'_, F>
where
    F: FnMut(&str, crate::api::BatchMessage) -> Result<(), String>,
{
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, F> serde::de::Visitor<'de> for Batch<'_, F>
where
    F: FnMut(&str, crate::api::BatchMessage) -> Result<(), String>,
{
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a message batch: {idCert, messages}")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        use serde::de::Error;
        let mut cert: Option<String> = None;
        let mut seen_messages = false;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "idCert" | "id_cert" => {
                    if cert.is_some() {
                        return Err(A::Error::custom("a batch names its idCert twice"));
                    }
                    cert = Some(map.next_value()?);
                }
                "messages" => {
                    let Some(pem) = cert.as_deref() else {
                        return Err(A::Error::custom(
                            "a batch names its idCert before its messages",
                        ));
                    };
                    if seen_messages {
                        return Err(A::Error::custom("a batch has messages twice"));
                    }
                    seen_messages = true;
                    map.next_value_seed(Messages {
                        cert: pem,
                        each: &mut *self.each,
                        count: &mut *self.count,
                    })?;
                }
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        if cert.is_none() {
            return Err(A::Error::custom("a batch without idCert"));
        }
        Ok(())
    }
}

/// The messages of a batch, passed on as they come.
struct Messages<'a, 'c, F> {
    cert: &'c str,
    each: &'a mut F,
    count: &'a mut u64,
}

impl<'de, F> serde::de::DeserializeSeed<'de> for Messages<'_, '_, F>
where
    F: FnMut(&str, crate::api::BatchMessage) -> Result<(), String>,
{
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, F> serde::de::Visitor<'de> for Messages<'_, '_, F>
where
    F: FnMut(&str, crate::api::BatchMessage) -> Result<(), String>,
{
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of messages")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        use serde::de::Error;
        while let Some(m) = seq.next_element::<crate::api::BatchMessage>()? {
            *self.count += 1;
            (self.each)(self.cert, m).map_err(A::Error::custom)?;
        }
        Ok(())
    }
}

/// What came of a data import (Fugue's
/// [`data_imports`](crate::api::data_imports)).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImportReport {
    pub id: String,
    /// `running`, `done` (what could be stored is) or `failed` (nothing was stored).
    pub state: String,
    /// Messages and resources stored.
    #[serde(with = "crate::wire::u64_string")]
    pub messages: u64,
    #[serde(with = "crate::wire::u64_string")]
    pub resources: u64,
    /// What was left out and why, one line each.
    pub notes: Vec<String>,
    #[serde(with = "crate::wire::u64_string")]
    pub started_at: u64,
    #[serde(default, with = "crate::wire::u64_string::option")]
    pub finished_at: Option<u64>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_names_of_the_format_are_entries() {
        assert_eq!(entry("messages.p2mb"), Ok(Entry::Messages));
        assert_eq!(entry("./messages.p2mb"), Ok(Entry::Messages));
        assert_eq!(entry("crypt_certs.p2epk"), Ok(Entry::KeyMaterial));
        assert_eq!(entry("rawr/"), Ok(Entry::Folder));
        assert_eq!(entry("./"), Ok(Entry::Folder));
        assert_eq!(entry("./rawr/"), Ok(Entry::Folder));
        assert_eq!(entry("certs"), Ok(Entry::Folder));
        assert_eq!(
            entry("rawr/access_properties.p2al"),
            Ok(Entry::AccessProperties)
        );
        assert_eq!(
            entry("rawr/photo.jxl"),
            Ok(Entry::Resource("photo.jxl".parse().unwrap()))
        );
        assert_eq!(entry("certs/42.pem"), Ok(Entry::Cert(42)));
    }

    #[test]
    fn paths_leaving_the_archive_or_unknown_names_are_refused() {
        for bad in [
            "../messages.p2mb",
            "/etc/passwd",
            "rawr/../../x",
            "rawr/./a",
            "rawr//a",
            "rawr/.hidden",
            "rawr/a/b",
            "rawr/a\\b",
            "certs/x.pem",
            "certs/1.txt",
            "notes.txt",
            "messages.p2mb/",
            "",
        ] {
            assert!(entry(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn messages_are_read_one_by_one_with_their_certificate() {
        let file = r#"[{"idCert":"A","messages":[{"id":"1","signature":"aa","content":{"x":1}},
            {"id":"2","signature":"bb","content":"text","fugue:peer":"bob@b.example"}]},
            {"extra":0,"id_cert":"B","messages":[{"id":"3","signature":"cc","content":null}]}]"#;
        let mut seen = Vec::new();
        let n = each_message(file.as_bytes(), |cert, m| -> Result<(), ()> {
            seen.push((cert.to_owned(), m.id, m.peer.map(|p| p.to_string())));
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 3);
        assert_eq!(
            seen,
            vec![
                ("A".into(), 1, None),
                ("A".into(), 2, Some("bob@b.example".into())),
                ("B".into(), 3, None)
            ]
        );
        // What the callback refuses stops the reading, with its reason.
        let err = each_message(
            file.as_bytes(),
            |_, m| {
                if m.id == 2 { Err("no") } else { Ok(()) }
            },
        )
        .unwrap_err();
        assert_eq!(err, ReadError::Refused("no"));
        for bad in [
            "{}",
            "[{\"messages\":[]}]",
            "[{\"messages\":[],\"idCert\":\"A\"}]",
            "[{\"idCert\":\"A\",\"idCert\":\"B\",\"messages\":[]}]",
            "[{\"idCert\":\"A\",\"messages\":[{\"id\":\"x\"}]}]",
            "[] trailing",
            "[",
        ] {
            let read = each_message(bad.as_bytes(), |_, _| Ok::<_, ()>(()));
            assert!(matches!(read, Err(ReadError::Format(_))), "{bad}");
        }
    }

    #[test]
    fn the_file_name_has_twenty_digits_and_the_actor() {
        let name = file_name(u64::MAX, "alice", "example.com");
        let digits = name
            .strip_prefix("export")
            .and_then(|r| r.split('-').next())
            .unwrap();
        assert_eq!(digits.len(), 20, "{name}");
        assert!(digits.bytes().all(|b| b.is_ascii_digit()));
        assert!(name.ends_with("-alice@example.com.tar.gz"), "{name}");
        assert_eq!(
            file_name(7, "a", "b.c"),
            "export00000000000000000007-a@b.c.tar.gz"
        );
    }
}
