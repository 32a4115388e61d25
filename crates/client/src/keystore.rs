//! The local key store: one JSON file listing the accounts this client can act as.
//!
//! Owns the file format and its privacy: saves are atomic, the file gets mode 0600 before any
//! secret is written, and a file that group or others may access is refused on load. Never
//! talks to a server; [`Account::session`] only rebuilds a [`Session`] from stored parts.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use fugue_proto::certs::IdCert;
use fugue_proto::{FederationId, Serial, SessionId};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::foreign::ForeignSession;
use crate::http::Client;
use crate::keys::IdentityKey;
use crate::session::Session;

const ENCRYPTED_LABEL: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KeyStore {
    #[serde(skip)]
    path: PathBuf,
    accounts: Vec<Account>,
    current: Option<usize>,
}

/// One logged-in session with its key. `key_pem` is PKCS#8 PEM, encrypted when `encrypted`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub server_url: String,
    pub fid: FederationId,
    pub session_id: SessionId,
    pub token: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub encrypted: bool,
    /// Keys of earlier certificates, kept to open data encrypted to them.
    #[serde(default)]
    pub old_keys: Vec<OldKey>,
    /// Session tokens of this session on other home servers (key trial sign-ins), by the
    /// server's base URL. Absent from stores written before federation.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub foreign_tokens: BTreeMap<String, String>,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OldKey {
    pub serial: Serial,
    pub key_pem: String,
}

fn decode_key(pem: &str, encrypted: bool, passphrase: Option<&str>) -> Result<IdentityKey> {
    match (encrypted, passphrase) {
        (true, Some(passphrase)) => IdentityKey::from_encrypted_pem(pem, passphrase),
        (true, None) => Err(Error::KeyStore(
            "the key is encrypted: a passphrase is needed".into(),
        )),
        (false, _) => IdentityKey::from_pkcs8_pem(pem),
    }
}

fn serial_of(cert_pem: &str) -> Result<Serial> {
    IdCert::parse(cert_pem.as_bytes())
        .map(|c| c.serial)
        .map_err(|e| Error::KeyStore(format!("stored certificate does not parse: {e}")))
}

impl Account {
    /// Captures `session`; with a passphrase the key is stored encrypted.
    pub fn from_session(session: &Session, passphrase: Option<&str>) -> Result<Self> {
        let key = session.key();
        let key_pem = match passphrase {
            Some(passphrase) => key.to_encrypted_pem(passphrase)?,
            None => key.to_pkcs8_pem()?,
        };
        Ok(Self {
            server_url: session.client().base_url().to_owned(),
            fid: session.fid().clone(),
            session_id: session.session_id().clone(),
            token: session.token().to_owned(),
            cert_pem: session.cert_pem().to_owned(),
            key_pem: key_pem.to_string(),
            encrypted: passphrase.is_some(),
            old_keys: Vec::new(),
            foreign_tokens: BTreeMap::new(),
        })
    }

    pub fn key(&self, passphrase: Option<&str>) -> Result<IdentityKey> {
        decode_key(&self.key_pem, self.encrypted, passphrase)
    }

    /// Keeps the token of `foreign`, a sign-in of this account's session elsewhere, replacing
    /// an earlier one for the same server.
    pub fn remember_foreign(&mut self, foreign: &ForeignSession) {
        self.foreign_tokens.insert(
            foreign.client().base_url().to_owned(),
            foreign.token().to_owned(),
        );
    }

    /// The stored sign-in of this account on the server at `server_url`, if any.
    pub fn foreign_session(&self, server_url: &str) -> Result<Option<ForeignSession>> {
        let client = Client::new(server_url)?;
        Ok(self
            .foreign_tokens
            .get(client.base_url())
            .map(|token| ForeignSession::restore(client.clone(), self.fid.clone(), token.clone())))
    }

    /// A session for this account, as it was when stored.
    pub fn session(&self, passphrase: Option<&str>) -> Result<Session> {
        Ok(Session::restore(
            Client::new(&self.server_url)?,
            self.fid.clone(),
            self.session_id.clone(),
            self.token.clone(),
            self.cert_pem.clone(),
            self.key(passphrase)?,
        ))
    }
}

impl OldKey {
    /// Old keys keep the encryption they were stored with, so the PEM label tells.
    pub fn key(&self, passphrase: Option<&str>) -> Result<IdentityKey> {
        let encrypted = self.key_pem.trim_start().starts_with(ENCRYPTED_LABEL);
        decode_key(&self.key_pem, encrypted, passphrase)
    }
}

impl KeyStore {
    /// Reads the store at `path`; a missing file is an empty store.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let fail = |why: String| Error::KeyStore(format!("{}: {why}", path.display()));
        let Some(bytes) = read_private(path)? else {
            return Ok(Self {
                path: path.to_owned(),
                ..Self::default()
            });
        };
        let text = String::from_utf8(bytes).map_err(|_| fail("not UTF-8".into()))?;
        let mut store: Self =
            serde_json::from_str(&text).map_err(|e| fail(format!("not a key store: {e}")))?;
        if store.current.is_some_and(|i| i >= store.accounts.len()) {
            return Err(fail("`current` points past the last account".into()));
        }
        store.path = path.to_owned();
        Ok(store)
    }

    pub fn save(&self) -> Result<()> {
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::KeyStore(format!("cannot encode the key store: {e}")))?;
        write_private(&self.path, &json)
            .map_err(|e| Error::KeyStore(format!("cannot write {}: {e}", self.path.display())))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn accounts(&self) -> &[Account] {
        &self.accounts
    }

    pub fn current(&self) -> Option<&Account> {
        self.accounts.get(self.current?)
    }

    pub fn find(&self, fid: &FederationId) -> Option<&Account> {
        self.accounts.iter().find(|a| &a.fid == fid)
    }

    /// Makes the account of `fid` current; false when there is none.
    pub fn set_current(&mut self, fid: &FederationId) -> bool {
        let index = self.accounts.iter().position(|a| &a.fid == fid);
        if index.is_some() {
            self.current = index;
        }
        index.is_some()
    }

    pub fn remove(&mut self, fid: &FederationId) -> Option<Account> {
        let index = self.accounts.iter().position(|a| &a.fid == fid)?;
        self.current = match self.current {
            Some(c) if c == index => None,
            Some(c) if c > index => Some(c - 1),
            other => other,
        };
        Some(self.accounts.remove(index))
    }

    /// Adds or replaces the account of `account.fid` and makes it current. When the
    /// certificate changed, the previous key moves to `old_keys` instead of being lost.
    /// Foreign tokens belong to a session: they are kept (unless `account` replaces them)
    /// while the session ID stays, and dropped with a session that is replaced.
    pub fn upsert(&mut self, mut account: Account) -> Result<()> {
        let Some(index) = self.accounts.iter().position(|a| a.fid == account.fid) else {
            self.accounts.push(account);
            self.current = Some(self.accounts.len() - 1);
            return Ok(());
        };
        let previous = &self.accounts[index];
        let mut old_keys = previous.old_keys.clone();
        let old_serial = serial_of(&previous.cert_pem)?;
        if old_serial != serial_of(&account.cert_pem)? {
            old_keys.push(OldKey {
                serial: old_serial,
                key_pem: previous.key_pem.clone(),
            });
        }
        for key in account.old_keys.drain(..) {
            if !old_keys.iter().any(|k| k.serial == key.serial) {
                old_keys.push(key);
            }
        }
        account.old_keys = old_keys;
        if previous.session_id == account.session_id {
            for (server, token) in &previous.foreign_tokens {
                account
                    .foreign_tokens
                    .entry(server.clone())
                    .or_insert_with(|| token.clone());
            }
        }
        self.accounts[index] = account;
        self.current = Some(index);
        Ok(())
    }
}

/// Writes `bytes` to `path` through a private temp file in the same directory and a rename, so
/// readers see the old or the new store, never half of one.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    fs::create_dir_all(dir)?;
    let mut tmp_name = OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    // A leftover from an interrupted save would make `create_new` fail.
    let _ = fs::remove_file(&tmp);
    let result = (|| -> io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        // `mode` above is filtered by the umask; set it outright before any secret lands.
        file.set_permissions(Permissions::from_mode(0o600))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        // The rename is durable only once the directory entry is.
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The bytes of a private file (one `write_private` wrote); `None` when it does not exist.
/// Refused when group or others may access it.
pub(crate) fn read_private(path: &Path) -> Result<Option<Vec<u8>>> {
    let fail = |why: String| Error::KeyStore(format!("{}: {why}", path.display()));
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(fail(e.to_string())),
    };
    let mode = file
        .metadata()
        .map_err(|e| fail(e.to_string()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(fail(format!(
            "group or others may access it (mode {:03o}); run chmod 600 on it",
            mode & 0o777
        )));
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| fail(e.to_string()))?;
    Ok(Some(bytes))
}

/// Leaves out the token and keys: accounts end up in logs through `{:?}`.
impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("server_url", &self.server_url)
            .field("fid", &self.fid)
            .field("session_id", &self.session_id)
            .field("encrypted", &self.encrypted)
            .field("old_keys", &self.old_keys)
            .field("foreign_servers", &self.foreign_tokens.keys())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for OldKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OldKey")
            .field("serial", &self.serial)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use fugue_proto::certs::issue::{Window, actor_tbs, cert_pem, finish_cert};

    fn account(ca: &IdentityKey, serial: u64, key: &IdentityKey) -> Account {
        let fid: FederationId = "alice@example.com".parse().unwrap();
        let session: SessionId = "laptop".parse().unwrap();
        let window = Window {
            not_before: 1_700_000_000,
            not_after: 1_800_000_000,
        };
        let tbs = actor_tbs(Serial(serial), &fid, &session, &key.verifying_key(), window).unwrap();
        let der = finish_cert(tbs, |bytes| ca.sign(bytes)).unwrap();
        Account {
            server_url: "http://127.0.0.1:3000".into(),
            fid,
            session_id: session,
            token: "secret-token".into(),
            cert_pem: cert_pem(&der).unwrap(),
            key_pem: key.to_pkcs8_pem().unwrap().to_string(),
            encrypted: false,
            old_keys: Vec::new(),
            foreign_tokens: BTreeMap::new(),
        }
    }

    #[test]
    fn store_round_trips_keeps_old_keys_and_stays_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("keys.json");
        let mut store = KeyStore::load(&path).unwrap();
        assert!(store.current().is_none());

        let (ca, first, second) = (
            IdentityKey::generate(),
            IdentityKey::generate(),
            IdentityKey::generate(),
        );
        store.upsert(account(&ca, 1, &first)).unwrap();
        store.save().unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        let mut store = KeyStore::load(&path).unwrap();
        let current = store.current().unwrap().clone();
        assert_eq!(current, account(&ca, 1, &first));
        assert_eq!(
            current.key(None).unwrap().verifying_key(),
            first.verifying_key()
        );

        store.upsert(account(&ca, 2, &second)).unwrap();
        store.save().unwrap();
        let store = KeyStore::load(&path).unwrap();
        assert_eq!(store.accounts().len(), 1);
        let current = store.find(&current.fid).unwrap();
        assert_eq!(
            current.key(None).unwrap().verifying_key(),
            second.verifying_key()
        );
        assert_eq!(current.old_keys.len(), 1);
        assert_eq!(current.old_keys[0].serial, Serial(1));
        assert_eq!(
            current.old_keys[0].key(None).unwrap().verifying_key(),
            first.verifying_key()
        );
        assert!(!format!("{current:?}").contains("secret-token"));

        fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        let err = KeyStore::load(&path).unwrap_err();
        assert!(matches!(err, Error::KeyStore(_)), "{err}");
    }

    #[test]
    fn foreign_tokens_are_optional_and_follow_their_session() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let ca = IdentityKey::generate();
        let first = account(&ca, 1, &IdentityKey::generate());
        // A store written before federation has no `foreign_tokens`.
        let before = serde_json::json!({ "accounts": [first], "current": 0 });
        assert!(before["accounts"][0].get("foreign_tokens").is_none());
        write_private(&path, before.to_string().as_bytes()).unwrap();
        let mut store = KeyStore::load(&path).unwrap();
        let mut current = store.current().unwrap().clone();
        assert!(current.foreign_tokens.is_empty());
        assert!(
            current
                .foreign_session("http://beta.test")
                .unwrap()
                .is_none()
        );

        current
            .foreign_tokens
            .insert("http://beta.test".into(), "beta-token".into());
        store.upsert(current).unwrap();
        store.save().unwrap();
        let mut store = KeyStore::load(&path).unwrap();
        let current = store.current().unwrap();
        let foreign = current
            .foreign_session("http://beta.test/")
            .unwrap()
            .unwrap();
        assert_eq!(foreign.token(), "beta-token");
        assert_eq!(foreign.fid(), &current.fid);
        assert!(!format!("{current:?}").contains("beta-token"));

        // A new certificate of the same session keeps them; a new session drops them.
        store
            .upsert(account(&ca, 2, &IdentityKey::generate()))
            .unwrap();
        assert_eq!(store.current().unwrap().foreign_tokens.len(), 1);
        let mut other = account(&ca, 3, &IdentityKey::generate());
        other.session_id = "phone".parse().unwrap();
        store.upsert(other).unwrap();
        assert!(store.current().unwrap().foreign_tokens.is_empty());
    }

    #[test]
    fn an_encrypted_key_needs_its_passphrase() {
        let ca = IdentityKey::generate();
        let key = IdentityKey::generate();
        let mut stored = account(&ca, 1, &key);
        stored.key_pem = key.to_encrypted_pem("pw").unwrap().to_string();
        stored.encrypted = true;
        assert!(stored.key(None).is_err());
        assert_eq!(
            stored.key(Some("pw")).unwrap().verifying_key(),
            key.verifying_key()
        );
    }
}
