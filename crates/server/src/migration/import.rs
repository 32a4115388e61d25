//! Importing an archive of core §7.3.2 (`POST /migration/data`).
//!
//! The body goes to a scratch file (never into memory), bounded by the importer's storage
//! quota plus [`MESSAGES_MAX`]. It is then checked whole, before anything is stored — a
//! gzipped tar of regular files and folders only, each named as the format names them,
//! none twice; messages signed by one of the importer's certificates here and free of
//! context (the chat's say: the importer's own DM messages, signed for its DM here); every
//! resource ID free on this server (or already the importer's with the same bytes, from an
//! import before) and the resources within the importer's storage; access properties only
//! for resources of the archive. Anything wrong refuses the archive with a problem that
//! says what, and nothing is stored. A checked archive is answered 202 and applied in the
//! background, from the same file, in archive order: resources stored under their IDs with
//! their access properties, messages sent in their DMs (under their nonces: importing again
//! stores nothing twice). Certificates and key backups of the old home server are not
//! taken over — this server cannot vouch for them; they stay in the person's archive. The
//! outcome is Fugue's `GET /.p2/fugue-core/v1/migration/imports`.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use fugue_proto::api::BatchMessage;
use fugue_proto::certs::IdCert;
use fugue_proto::export::{self as format, AccessFile, Entry, ImportReport};
use fugue_proto::rawr::{AccessProperties, ResourceId};
use fugue_store::ImportRow;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};

use super::{Error, Migration};
use crate::ids::{from_store, to_store};
use crate::media::objects::Spool;
use crate::principal::Actor;
use crate::sessions::Authed;

/// Largest `messages.p2mb` (beside the resources, which the quota bounds).
pub const MESSAGES_MAX: u64 = 1024 * 1024 * 1024;
/// Largest access file, certificate or key backup file of an archive.
const SMALL_MAX: u64 = 16 * 1024 * 1024;
/// Most resources and messages one archive brings.
const RESOURCES_MAX: usize = 100_000;
const MESSAGE_COUNT_MAX: u64 = 2_000_000;
/// An import still running after this long stopped with its node.
const STALE_IMPORT_S: u64 = 3600;
/// Imports listed at once.
pub const IMPORTS_LISTED: i64 = 20;
/// Notes an import keeps at most.
const NOTES_MAX: usize = 100;
/// Bytes an archive may hold unpacked beyond the quota and the messages: its headers,
/// access properties, certificates and key backups.
const SLACK: u64 = 256 * 1024 * 1024;
/// Entries an archive holds at most (files and folders).
const ENTRIES_MAX: usize = RESOURCES_MAX + 10_000;
/// Messages whose signatures are verified together (spread over the cores).
const VERIFY_CHUNK: usize = 4096;
/// Messages stored at once.
const IMPORT_CHUNK: usize = 1000;
/// Bytes of a resource read at once while it is stored.
const CHUNK: usize = 256 * 1024;

/// What a checked archive brings.
struct Plan {
    /// Resources already the importer's with the same bytes (an import before).
    present: HashSet<String>,
    access: HashMap<String, AccessProperties>,
    resources: usize,
    messages: u64,
    notes: Vec<String>,
}

/// The certificates and conversations an import looked up already.
#[derive(Default)]
struct Seen {
    certs: HashMap<String, Arc<IdCert>>,
    targets: HashSet<u64>,
}

/// What an import stored, and what it left out.
#[derive(Default)]
struct Outcome {
    resources: u64,
    messages: u64,
    notes: Vec<String>,
}

impl Outcome {
    fn note(&mut self, note: String) {
        if self.notes.len() < NOTES_MAX {
            self.notes.push(note);
        }
    }
}

impl Migration {
    /// `POST /migration/data`: checks the archive `body` (`length` bytes, when announced)
    /// and applies it in the background; the import's id.
    pub async fn import<S, E>(
        &self,
        authed: &Authed,
        length: Option<u64>,
        mut body: S,
        now: u64,
    ) -> Result<String, Error>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let objects = self.media.shared_objects().ok_or(Error::NoStorage)?;
        let max = self.media.quota_bytes().saturating_add(MESSAGES_MAX);
        let too_large = || {
            Error::Archive(format!(
                "an archive has at most {max} bytes: your storage and {MESSAGES_MAX} bytes of messages"
            ))
        };
        if length.is_some_and(|n| n > max) {
            return Err(too_large());
        }
        let mut spool = objects.spool()?;
        let mut got = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk =
                chunk.map_err(|e| Error::Archive(format!("the body did not arrive: {e}")))?;
            got += chunk.len() as u64;
            if got > max {
                return Err(too_large());
            }
            spool.append(chunk).await?;
        }
        if length.is_some_and(|n| n != got) {
            return Err(Error::Archive(
                "the body did not have the size its Content-Length announced".into(),
            ));
        }
        let rt = tokio::runtime::Handle::current();
        let this = self.clone();
        let actor = authed.actor.clone();
        let (plan, spool) = tokio::task::spawn_blocking(move || {
            let plan = this.check_archive(&actor, &mut spool, &rt);
            (plan, spool)
        })
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))?;
        let plan = plan?;
        let id = hex::encode(super::export::random_bytes::<16>());
        self.store
            .insert_import(&ImportRow {
                id: id.clone(),
                actor_id: authed.actor.id.to_store(),
                state: "running".into(),
                messages: 0,
                resources: 0,
                report: "[]".into(),
                created_at: to_store(now),
                finished_at: None,
            })
            .await?;
        tracing::info!(actor = %authed.actor.fid, messages = plan.messages, resources = plan.resources, "import accepted");
        let this = self.clone();
        let (import_id, token) = (id.clone(), authed.token.clone());
        tokio::spawn(async move { this.apply(&import_id, &token, plan, spool).await });
        Ok(id)
    }

    /// Checks the archive in `spool` whole (on a blocking thread; `rt` runs the reads).
    fn check_archive(
        &self,
        actor: &Actor,
        spool: &mut Spool,
        rt: &tokio::runtime::Handle,
    ) -> Result<Plan, Error> {
        spool.rewind()?;
        let mut names: HashSet<String> = HashSet::new();
        let mut sizes: HashMap<String, u64> = HashMap::new();
        let mut present = HashSet::new();
        let mut access: Option<AccessFile> = None;
        let mut seen = Seen::default();
        let mut messages = 0u64;
        let mut notes = Vec::new();
        let cap = self
            .media
            .quota_bytes()
            .saturating_add(MESSAGES_MAX + SLACK);
        let mut archive = tar::Archive::new(Capped::new(
            flate2::read::GzDecoder::new(std::io::BufReader::with_capacity(CHUNK, spool)),
            cap,
        ));
        let mut new_bytes = 0u64;
        // Raw: long-name and extension entries arrive as entries (and are refused), never
        // read whole into memory by the reader.
        for (i, entry) in archive.entries().map_err(unreadable)?.raw(true).enumerate() {
            if i >= ENTRIES_MAX {
                return Err(Error::Archive(format!(
                    "an archive holds at most {ENTRIES_MAX} entries"
                )));
            }
            let mut entry = entry.map_err(unreadable)?;
            let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let kind = entry.header().entry_type();
            let what = format::entry(&path).map_err(|e| Error::Archive(e.to_string()))?;
            let name = path.trim_start_matches("./").to_owned();
            if !names.insert(name.clone()) {
                return Err(Error::Archive(format!("{name:?} is in the archive twice")));
            }
            match (kind, &what) {
                (tar::EntryType::Directory, Entry::Folder) => continue,
                (tar::EntryType::Regular, Entry::Folder) => {
                    return Err(Error::Archive(format!("{path:?} is a file, not a folder")));
                }
                (tar::EntryType::Regular, _) => {}
                (other, _) => {
                    return Err(Error::Archive(format!(
                        "{path:?} is {other:?}: an archive holds only files and folders \
                         (no links, devices or other entries)"
                    )));
                }
            }
            let size = entry.header().size().map_err(unreadable)?;
            match what {
                Entry::Folder => {}
                Entry::Messages => {
                    if size > MESSAGES_MAX {
                        return Err(Error::Archive(format!(
                            "{} has more than {MESSAGES_MAX} bytes",
                            format::MESSAGES
                        )));
                    }
                    // Signatures are verified a few thousand at a time, on every core.
                    let mut unverified = Vec::new();
                    messages = format::each_message(&mut entry, |pem, m| {
                        unverified.push(self.check_message(actor, &mut seen, (pem, &m), rt)?);
                        if unverified.len() >= VERIFY_CHUNK {
                            verify_all(&std::mem::take(&mut unverified))?;
                        }
                        Ok(())
                    })
                    .map_err(read_error)?;
                    verify_all(&unverified)?;
                    if messages > MESSAGE_COUNT_MAX {
                        return Err(Error::Archive(format!(
                            "an archive brings at most {MESSAGE_COUNT_MAX} messages"
                        )));
                    }
                }
                Entry::Resource(rid) => {
                    if sizes.len() >= RESOURCES_MAX {
                        return Err(Error::Archive(format!(
                            "an archive brings at most {RESOURCES_MAX} resources"
                        )));
                    }
                    // Already the importer's with the same bytes (an import before): kept,
                    // and not counted again; else new, within the storage left.
                    match rt.block_on(self.store.resource(rid.as_str()))? {
                        Some(row) => {
                            if row.actor_id != actor.id.to_store()
                                || row.hash != hash_of(&mut entry, size, &path)?
                            {
                                return Err(Error::Archive(format!(
                                    "resource {rid} exists on this server already (core \
                                     §7.3.1): its ID cannot move here"
                                )));
                            }
                            present.insert(rid.to_string());
                        }
                        None => {
                            new_bytes += size;
                            rt.block_on(self.media.admits(actor.id.to_store(), size, new_bytes))?;
                            hash_of(&mut entry, size, &path)?;
                        }
                    }
                    sizes.insert(rid.to_string(), size);
                }
                Entry::AccessProperties => {
                    let bytes = small(&mut entry, size, &path)?;
                    access = Some(serde_json::from_slice(&bytes).map_err(|e| {
                        Error::Archive(format!("{path}: not access properties: {e}"))
                    })?);
                }
                Entry::Cert(_) | Entry::KeyMaterial => {
                    small(&mut entry, size, &path)?;
                    let note = "certificates and key backups of the old home server are not \
                                taken over: this server cannot vouch for them; keep the archive"
                        .to_owned();
                    if !notes.contains(&note) {
                        notes.push(note);
                    }
                }
            }
        }
        // Every resource's access properties, each for a resource of the archive.
        let mut properties = HashMap::new();
        for (rid, props) in access.unwrap_or_default().into_iter().flatten() {
            if !sizes.contains_key(&rid) {
                return Err(Error::Archive(format!(
                    "the access properties name {rid:?}, which the archive does not hold"
                )));
            }
            let props = props
                .normalized()
                .map_err(|e| Error::Archive(format!("access properties of {rid}: {e}")))?;
            if properties.insert(rid.clone(), props).is_some() {
                return Err(Error::Archive(format!(
                    "the access properties name {rid:?} twice"
                )));
            }
        }
        Ok(Plan {
            present,
            access: properties,
            resources: sizes.len(),
            messages,
            notes,
        })
    }

    /// Checks one message of an archive but for its signature: signed by `pem`, a
    /// certificate of the importer's from this server (each looked up once, in `seen`), and
    /// importable as the chat says (each conversation looked up once). The message and the
    /// certificate its signature must verify with.
    fn check_message(
        &self,
        actor: &Actor,
        seen: &mut Seen,
        (pem, m): (&str, &BatchMessage),
        rt: &tokio::runtime::Handle,
    ) -> Result<(crate::chat::Importable, Arc<IdCert>), Error> {
        if !seen.certs.contains_key(pem) {
            let cert = rt.block_on(self.own_cert(actor, pem))?;
            seen.certs.insert(pem.to_owned(), Arc::new(cert));
        }
        let cert = seen.certs[pem].clone();
        let checked = self.chat.importable(actor, m)?;
        if !seen.targets.contains(&checked.conversation) {
            rt.block_on(self.chat.check_import_target(actor, checked.conversation))?;
            seen.targets.insert(checked.conversation);
        }
        Ok((checked, cert))
    }

    /// `pem`, when it is a certificate this server issued to `actor` and did not revoke.
    async fn own_cert(&self, actor: &Actor, pem: &str) -> Result<IdCert, Error> {
        let refuse = || {
            Error::Archive(
                "messages must be re-signed by you with a certificate of yours from this \
                 server: another signer's messages cannot be imported"
                    .into(),
            )
        };
        let cert = IdCert::parse(pem.as_bytes()).map_err(|_| refuse())?;
        let stored = self
            .store
            .cert_by_serial(to_store(cert.serial.0))
            .await?
            .filter(|c| c.actor_id == actor.id.to_store() && c.revoked_at.is_none())
            .and_then(|c| IdCert::parse(c.cert_pem.as_bytes()).ok());
        match stored {
            Some(s) if s.der == cert.der && cert.fid().as_ref() == Some(&actor.fid) => Ok(cert),
            _ => Err(refuse()),
        }
    }

    /// Applies a checked archive and records the outcome.
    async fn apply(&self, id: &str, token: &str, plan: Plan, spool: Spool) {
        let mut outcome = Outcome {
            notes: plan.notes.clone(),
            ..Outcome::default()
        };
        let state = match self.sessions.reread(token).await {
            Ok((authed, guard)) => {
                let rt = tokio::runtime::Handle::current();
                let this = self.clone();
                let applied = tokio::task::spawn_blocking(move || {
                    let mut spool = spool;
                    let mut outcome = outcome;
                    let result =
                        this.apply_archive(&(authed, guard), &plan, &mut spool, &rt, &mut outcome);
                    (result, outcome)
                })
                .await;
                match applied {
                    Ok((result, done)) => {
                        outcome = done;
                        match result {
                            Ok(()) => "done",
                            Err(e) => {
                                outcome.note(format!("the import stopped: {e}"));
                                "failed"
                            }
                        }
                    }
                    Err(e) => {
                        outcome = Outcome::default();
                        outcome.note(format!("the import stopped: {e}"));
                        "failed"
                    }
                }
            }
            Err(e) => {
                outcome.note(format!("the session that sent the archive ended: {e}"));
                "failed"
            }
        };
        let row = ImportRow {
            id: id.to_owned(),
            actor_id: 0,
            state: state.into(),
            messages: to_store(outcome.messages),
            resources: to_store(outcome.resources),
            report: serde_json::to_string(&outcome.notes).unwrap_or_else(|_| "[]".into()),
            created_at: 0,
            finished_at: Some(self.chat.now().to_store()),
        };
        if let Err(e) = self.store.finish_import(&row).await {
            tracing::error!(error = %e, import = id, "recording an import's outcome failed");
        }
        tracing::info!(
            import = id,
            state,
            messages = outcome.messages,
            resources = outcome.resources,
            "import finished"
        );
    }

    /// Stores what the archive in `spool` brings, in its order (on a blocking thread).
    fn apply_archive(
        &self,
        session: &(Authed, fugue_store::SessionGuard),
        plan: &Plan,
        spool: &mut Spool,
        rt: &tokio::runtime::Handle,
        outcome: &mut Outcome,
    ) -> Result<(), Error> {
        let (authed, _) = session;
        spool.rewind()?;
        // The same bytes the check read whole.
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(
            std::io::BufReader::with_capacity(CHUNK, spool),
        ));
        let mut seen = Seen::default();
        for entry in archive.entries().map_err(unreadable)?.raw(true) {
            let mut entry = entry.map_err(unreadable)?;
            let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            match format::entry(&path) {
                Ok(Entry::Messages) => {
                    // Checked whole before: only what changed since (a DM left, a
                    // certificate revoked) is refused now, and noted.
                    // Stored a chunk at a time as they are read: never all in memory.
                    let mut due = Vec::new();
                    let (mut count, mut new) = (0u64, 0u64);
                    let mut store = |due: &mut Vec<_>| -> Result<(), Error> {
                        count += due.len() as u64;
                        new += rt.block_on(
                            self.chat.store_imported(&authed.actor, std::mem::take(due)),
                        )?;
                        Ok(())
                    };
                    format::each_message(&mut entry, |pem, m| {
                        match self.check_message(&authed.actor, &mut seen, (pem, &m), rt) {
                            Ok((checked, cert)) => {
                                due.push((checked, pem.to_owned(), cert.serial));
                            }
                            Err(e) => outcome.note(format!("message {}: {e}", m.id)),
                        }
                        if due.len() >= IMPORT_CHUNK {
                            store(&mut due)?;
                        }
                        Ok(())
                    })
                    .map_err(read_error)?;
                    store(&mut due)?;
                    outcome.messages += count;
                    if new < count {
                        outcome.note(format!(
                            "{} messages were not stored again: imported before (or their DM \
                             no longer takes your messages)",
                            count - new
                        ));
                    }
                }
                Ok(Entry::Resource(rid)) => {
                    if plan.present.contains(rid.as_str()) {
                        outcome.resources += 1;
                        continue;
                    }
                    let size = entry.header().size().map_err(unreadable)?;
                    let access = plan.access.get(rid.as_str()).cloned().unwrap_or_default();
                    match self.store_resource(authed, &rid, &access, size, &mut entry, rt) {
                        Ok(()) => outcome.resources += 1,
                        Err(e) => outcome.note(format!("resource {rid}: {e}")),
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Stores the `size` bytes of `data` as resource `rid` of `authed` with `access`.
    fn store_resource(
        &self,
        authed: &Authed,
        rid: &ResourceId,
        access: &AccessProperties,
        size: u64,
        data: &mut impl Read,
        rt: &tokio::runtime::Handle,
    ) -> Result<(), Error> {
        // Read as the upload asks for the next chunk: this thread is the upload's.
        let chunks = std::iter::from_fn(|| {
            let mut chunk = vec![0u8; CHUNK];
            match data.read(&mut chunk) {
                Ok(0) => None,
                Ok(n) => {
                    chunk.truncate(n);
                    Some(Ok::<_, std::io::Error>(Bytes::from(chunk)))
                }
                Err(e) => Some(Err(e)),
            }
        });
        let now = self.chat.now();
        rt.block_on(self.media.upload_as(
            authed,
            rid,
            access,
            Some(size),
            futures_util::stream::iter(chunks),
            now,
        ))?;
        Ok(())
    }

    /// Imports running for longer than any takes ([`STALE_IMPORT_S`]) stopped with their
    /// node: they end as failed, so the person knows to import again. How many.
    pub async fn fail_stale_imports(&self, now: u64) -> Result<u64, Error> {
        let note = serde_json::to_string(&[
            "the server stopped during the import; import the archive again (nothing is stored twice)",
        ])
        .unwrap_or_else(|_| "[]".into());
        Ok(self
            .store
            .fail_stale_imports(
                to_store(now.saturating_sub(STALE_IMPORT_S)),
                to_store(now),
                &note,
            )
            .await?)
    }

    /// `GET /.p2/fugue-core/v1/migration/imports`: the caller's imports, newest first.
    pub async fn imports(&self, authed: &Authed) -> Result<Vec<ImportReport>, Error> {
        let rows = self
            .store
            .imports_of(authed.actor.id.to_store(), IMPORTS_LISTED)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| ImportReport {
                id: r.id,
                state: r.state,
                messages: from_store(r.messages),
                resources: from_store(r.resources),
                notes: serde_json::from_str(&r.report).unwrap_or_default(),
                started_at: from_store(r.created_at),
                finished_at: r.finished_at.map(from_store),
            })
            .collect())
    }
}

/// Verifies the signatures of `messages`, spread over the machine's cores.
fn verify_all(messages: &[(crate::chat::Importable, Arc<IdCert>)]) -> Result<(), Error> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let per = messages.len().div_ceil(cores).max(1);
    std::thread::scope(|scope| {
        let parts: Vec<_> = messages
            .chunks(per)
            .map(|part| {
                scope.spawn(move || {
                    part.iter().try_for_each(|(m, cert)| {
                        m.verify(cert).map_err(|e| Error::Archive(e.to_string()))
                    })
                })
            })
            .collect();
        parts.into_iter().try_for_each(|p| {
            p.join()
                .unwrap_or_else(|_| Err(Error::Archive("a check failed".into())))
        })
    })
}

/// Why the messages of an archive were not read through, as a problem: what is wrong with
/// the archive is `ARCHIVE_INVALID`; the database or the disk failing is what it is.
fn read_error(e: format::ReadError<Error>) -> Error {
    match e {
        format::ReadError::Format(why) => Error::Archive(why),
        format::ReadError::Refused(e @ (Error::Store(_) | Error::Io(_))) => e,
        format::ReadError::Refused(Error::Chat(crate::chat::Error::Store(e))) => Error::Store(e),
        format::ReadError::Refused(e) => Error::Archive(e.to_string()),
    }
}

/// A reader that refuses to give more than `left` bytes: an archive that unpacks beyond
/// what it may hold (a decompression bomb) stops there.
struct Capped<R> {
    inner: R,
    left: u64,
}

impl<R> Capped<R> {
    fn new(inner: R, cap: u64) -> Self {
        Self { inner, left: cap }
    }
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Err(std::io::Error::other(
                "it unpacks to more than an archive may hold",
            ));
        }
        let max = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        self.left -= n as u64;
        Ok(n)
    }
}

fn unreadable(e: std::io::Error) -> Error {
    Error::Archive(format!(
        "not a whole gzipped tar archive (truncated, or another format): {e}"
    ))
}

/// SHA-256 of the `size` bytes of an entry, which must all be there.
fn hash_of(data: &mut impl Read, size: u64, path: &str) -> Result<Vec<u8>, Error> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut read = 0u64;
    loop {
        let n = data.read(&mut buf).map_err(unreadable)?;
        if n == 0 {
            break;
        }
        read += n as u64;
        hasher.update(&buf[..n]);
    }
    if read != size {
        return Err(Error::Archive(format!(
            "{path}: the archive ends inside it"
        )));
    }
    Ok(hasher.finalize().to_vec())
}

/// The bytes of a small entry (at most [`SMALL_MAX`]).
fn small(data: &mut impl Read, size: u64, path: &str) -> Result<Vec<u8>, Error> {
    if size > SMALL_MAX {
        return Err(Error::Archive(format!(
            "{path} has more than {SMALL_MAX} bytes"
        )));
    }
    let mut bytes = Vec::new();
    data.take(SMALL_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 != size {
        return Err(Error::Archive(format!(
            "{path}: the archive ends inside it"
        )));
    }
    Ok(bytes)
}
