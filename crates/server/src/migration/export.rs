//! Exporting and deleting an actor's data (core §7.3, §7.3.2).
//!
//! An export holds the data tied to the keys the caller proves: the messages whose current
//! version one of them signed (`messages.p2mb`, batches by certificate, each message as
//! what it signed), the caller's resources under their IDs with their access properties
//! (`rawr/`), and — on the caller's home server only — its ID-Certs (`certs/<serial>.pem`)
//! and its encrypted key material (`crypt_certs.p2epk`). The archive is built in the
//! background into a scratch file (gzip over tar, one entry after another, so that neither
//! the messages nor a resource is held in memory), then kept as an object for
//! [`EXPORT_KEPT_S`] — in a bucket it is there for every node. `GET /data` answers it when
//! it is ready and 204 with `Retry-After` while it is built; a build that ends within
//! `[limits] export_wait_ms` is answered at once.
//!
//! Deleting (`DELETE /data`) deletes the messages signed with the proven keys (tombstones,
//! as a deletion by their author), the key material of those certificates, the caller's
//! resources and exports, and with `breakRedirect` its redirect. Certificates stay: they
//! are what every copy of the old messages is verified with (core §6.1.3).

use std::io::Write;
use std::sync::Arc;

use fugue_proto::api::{BatchMessage, keymaterial::EncryptedPkm};
use fugue_proto::export::{self as format, AccessFile};
use fugue_proto::{FederationId, Serial};
use fugue_store::{ExportRow, ResourceOrder};
use rand_core::{OsRng, RngCore};

use super::{Error, Migration};
use crate::ids::{ActorId, from_store, to_store};
use crate::media::objects::{ObjectReader, Objects, Spool};
use crate::sessions::Authed;

/// How long a built archive is kept.
pub const EXPORT_KEPT_S: u64 = 24 * 3600;
/// A build unfinished after this long is taken as lost (its node stopped) and begun anew.
const STALE_S: u64 = 30 * 60;
/// `Retry-After` while an archive is built, seconds.
pub const RETRY_AFTER_S: u64 = 2;
/// Messages (and resources) read at once while an archive is built.
const PAGE: i64 = 1000;

/// What `GET /data` answers.
pub enum Export {
    Ready {
        object: ObjectReader,
        size: u64,
        file_name: String,
    },
    Building,
}

/// Whose data an archive holds, and the keys it proved.
#[derive(Clone)]
struct Owner {
    id: ActorId,
    fid: FederationId,
    local: bool,
    serials: Vec<i64>,
}

impl Migration {
    /// `GET /data`: the archive of the caller's data tied to the keys it proves, or
    /// [`Export::Building`] while it is built.
    pub async fn export(
        &self,
        authed: &Authed,
        keytrial: Option<&str>,
        now: u64,
    ) -> Result<Export, Error> {
        let objects = self.media.shared_objects().ok_or(Error::NoStorage)?;
        let owner = self.owner(authed, keytrial, now).await?;
        let serials = serial_list(&owner.serials);
        let actor = owner.id.to_store();
        let since = to_store(now.saturating_sub(EXPORT_KEPT_S));
        if let Some(row) = self.store.latest_export(actor, &serials, since).await? {
            match row.state.as_str() {
                "ready" => {
                    if let Some(ready) = ready(&objects, &row).await? {
                        return Ok(ready);
                    }
                }
                "building" if from_store(row.created_at) + STALE_S > now => {
                    return Ok(Export::Building);
                }
                _ => {}
            }
        }
        let row = ExportRow {
            id: hex::encode(random_bytes::<16>()),
            actor_id: actor,
            serials,
            state: "building".into(),
            object_key: None,
            size: None,
            file_name: format::file_name(
                u64::from_le_bytes(random_bytes()),
                owner.fid.local_name().as_str(),
                owner.fid.domain().as_str(),
            ),
            error: None,
            created_at: to_store(now),
            finished_at: None,
        };
        self.store.insert_export(&row).await?;
        tracing::info!(actor = %owner.fid, keys = owner.serials.len(), "export started");
        let this = self.clone();
        let (id, file_name) = (row.id.clone(), row.file_name.clone());
        let job = tokio::spawn(async move { this.build(&id, owner, objects, now).await });
        match tokio::time::timeout(self.export_wait, job).await {
            Ok(Ok(Ok(Some((object, size))))) => Ok(Export::Ready {
                object,
                size,
                file_name,
            }),
            // Deleted while built: the next request builds what is left.
            Ok(Ok(Ok(None))) => Ok(Export::Building),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(e)) => Err(Error::Io(std::io::Error::other(e))),
            Err(_) => Ok(Export::Building),
        }
    }

    /// The caller and the keys it proves (at least one).
    async fn owner(
        &self,
        authed: &Authed,
        keytrial: Option<&str>,
        now: u64,
    ) -> Result<Owner, Error> {
        let proven = self.sessions.proven_keys(authed, keytrial, now).await?;
        let mut serials: Vec<i64> = proven.iter().map(|p| to_store(p.serial)).collect();
        serials.sort_unstable();
        serials.dedup();
        Ok(Owner {
            id: authed.actor.id,
            fid: authed.actor.fid.clone(),
            local: authed.actor.is_local(),
            serials,
        })
    }

    /// Builds the archive of export `id` and keeps it as an object; records the outcome.
    /// The archive, opened for reading, and its size — `None` when the export was deleted
    /// meanwhile (with the data it held).
    async fn build(
        &self,
        id: &str,
        owner: Owner,
        objects: Arc<Objects>,
        now: u64,
    ) -> Result<Option<(ObjectReader, u64)>, Error> {
        let rt = tokio::runtime::Handle::current();
        let this = self.clone();
        let shared = objects.clone();
        let stored = async {
            let spool =
                tokio::task::spawn_blocking(move || this.write_archive(&owner, &shared, &rt, now))
                    .await
                    .map_err(|e| Error::Io(std::io::Error::other(e)))??;
            let key = objects.store_spool(&spool).await?;
            Ok::<_, Error>((key, spool.size()?))
        }
        .await;
        let now = to_store(now);
        // Whatever fails, the export says so: a request finding it asks for a new one.
        let (key, size) = match stored {
            Ok(done) => done,
            Err(e) => {
                tracing::warn!(error = %e, "an export failed");
                self.store.fail_export(id, &e.to_string(), now).await?;
                return Err(e);
            }
        };
        match self
            .store
            .finish_export(id, &key, to_store(size), now)
            .await
        {
            Ok(true) => Ok(Some((objects.open_read(&key).await?, size))),
            // Its data was deleted while it was built: the archive goes too.
            Ok(false) => {
                objects.delete(&key).await?;
                Ok(None)
            }
            Err(e) => {
                // Unnamed, the object goes with the next sweep.
                self.store.fail_export(id, &e.to_string(), now).await?;
                Err(e.into())
            }
        }
    }

    /// Writes the archive (on a blocking thread; `rt` runs the reads).
    fn write_archive(
        &self,
        owner: &Owner,
        objects: &Objects,
        rt: &tokio::runtime::Handle,
        mtime: u64,
    ) -> Result<Spool, Error> {
        let messages = self.write_messages(owner, objects, rt)?;
        let archive = objects.spool()?;
        let gz = flate2::write::GzEncoder::new(
            std::io::BufWriter::with_capacity(256 * 1024, archive),
            flate2::Compression::fast(),
        );
        let mut tar = tar::Builder::new(gz);
        append(
            &mut tar,
            format::MESSAGES,
            messages.size()?,
            mtime,
            messages,
        )?;
        folder(&mut tar, format::RAWR_DIR, mtime)?;
        let mut access: AccessFile = Vec::new();
        let resources = rt.block_on(self.store.resources_of(
            owner.id.to_store(),
            ResourceOrder::OldestFirst,
            i64::MAX,
        ))?;
        for r in &resources {
            // An ID stored before it became reserved (`access_properties.p2al`) cannot be
            // named in an archive: left out, and logged.
            let Ok(rid) = r.rid.parse() else {
                tracing::warn!(rid = r.rid, "a resource an archive cannot name is left out");
                continue;
            };
            let object = rt.block_on(objects.open_read(&r.object_key))?;
            append(
                &mut tar,
                &format::resource_path(&rid),
                from_store(r.size),
                mtime,
                object.into_pulled(rt.clone()),
            )?;
            access.push([(r.rid.clone(), crate::media::access_of(r)?)].into());
        }
        let access = serde_json::to_vec(&access).map_err(std::io::Error::other)?;
        append(
            &mut tar,
            &format!("{}/{}", format::RAWR_DIR, format::ACCESS_FILE),
            access.len() as u64,
            mtime,
            &access[..],
        )?;
        if owner.local {
            folder(&mut tar, format::CERTS_DIR, mtime)?;
            let certs = rt.block_on(self.store.certs_of(owner.id.to_store(), None, None, None))?;
            for c in certs {
                append(
                    &mut tar,
                    &format!("{}/{}.pem", format::CERTS_DIR, from_store(c.serial)),
                    c.cert_pem.len() as u64,
                    mtime,
                    c.cert_pem.as_bytes(),
                )?;
            }
            let keys: Vec<EncryptedPkm> =
                rt.block_on(self.identity.key_material(owner.id, &[] as &[Serial]))?;
            let keys = serde_json::to_vec(&keys).map_err(std::io::Error::other)?;
            append(
                &mut tar,
                format::KEY_MATERIAL,
                keys.len() as u64,
                mtime,
                &keys[..],
            )?;
        }
        let mut spool = tar
            .into_inner()?
            .finish()?
            .into_inner()
            .map_err(|e| e.into_error())?;
        spool.flush()?;
        Ok(spool)
    }

    /// `messages.p2mb` into a scratch file: one batch per proven certificate that signed
    /// messages, each message as what it signed — and, for a DM, with whom (`fugue:peer`).
    fn write_messages(
        &self,
        owner: &Owner,
        objects: &Objects,
        rt: &tokio::runtime::Handle,
    ) -> Result<Spool, Error> {
        let mut out = std::io::BufWriter::with_capacity(256 * 1024, objects.spool()?);
        let io = std::io::Error::other;
        out.write_all(b"[")?;
        let mut first_batch = true;
        // Whether each channel is a DM, and with whom.
        let mut peers: std::collections::HashMap<i64, Option<FederationId>> =
            std::collections::HashMap::new();
        for &serial in &owner.serials {
            let mut after = 0;
            let mut started = false;
            loop {
                let page = rt.block_on(self.store.messages_signed_with(
                    owner.id.to_store(),
                    serial,
                    after,
                    PAGE,
                ))?;
                for m in &page {
                    if started {
                        out.write_all(b",")?;
                    } else {
                        if !first_batch {
                            out.write_all(b",")?;
                        }
                        out.write_all(b"{\"idCert\":")?;
                        serde_json::to_writer(&mut out, &m.cert_pem).map_err(io)?;
                        out.write_all(b",\"messages\":[")?;
                        started = true;
                        first_batch = false;
                    }
                    let peer = match peers.get(&m.channel_id) {
                        Some(peer) => peer.clone(),
                        None => {
                            let peer = rt.block_on(self.chat.dm_peer(m.channel_id, owner.id))?;
                            peers.insert(m.channel_id, peer.clone());
                            peer
                        }
                    };
                    let message = BatchMessage {
                        id: from_store(m.id),
                        signature: m.signature.clone(),
                        content: self.chat.resign_content(m)?,
                        peer,
                    };
                    serde_json::to_writer(&mut out, &message).map_err(io)?;
                }
                match page.last() {
                    Some(m) if page.len() as i64 == PAGE => after = m.id,
                    _ => break,
                }
            }
            if started {
                out.write_all(b"]}")?;
            }
        }
        out.write_all(b"]")?;
        let mut spool = out.into_inner().map_err(|e| e.into_error())?;
        spool.rewind()?;
        Ok(spool)
    }

    /// `DELETE /data?breakRedirect=`: deletes the caller's data tied to the keys it proves.
    pub async fn delete_data(
        &self,
        authed: &Authed,
        keytrial: Option<&str>,
        break_redirect: bool,
        now: u64,
    ) -> Result<(), Error> {
        let owner = self.owner(authed, keytrial, now).await?;
        let actor = owner.id.to_store();
        let mut messages = 0u64;
        for &serial in &owner.serials {
            loop {
                let page = self
                    .store
                    .messages_signed_with(actor, serial, 0, PAGE)
                    .await?;
                if page.is_empty() {
                    break;
                }
                for m in page {
                    match self.chat.tombstone(m, (owner.id, &owner.fid)).await {
                        // Deleted meanwhile by someone else: gone either way.
                        Ok(()) | Err(crate::chat::Error::MessageNotFound(_)) => messages += 1,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        if owner.local {
            self.store
                .delete_key_material(actor, &owner.serials)
                .await?;
        }
        let resources = self
            .store
            .resources_of(actor, ResourceOrder::OldestFirst, i64::MAX)
            .await?;
        for r in &resources {
            match self.media.delete(authed, &r.rid).await {
                Ok(()) | Err(crate::media::Error::NotFound) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.drop_exports(Some(actor), now).await?;
        if break_redirect
            && owner.local
            && let Some((row, _)) = self
                .store
                .redirect_of_name(owner.fid.local_name().as_str())
                .await?
        {
            self.store.remove_redirect(actor, &row.target_fid).await?;
        }
        tracing::info!(actor = %owner.fid, messages, resources = resources.len(), break_redirect, "data deleted");
        Ok(())
    }

    /// Deletes exports older than [`EXPORT_KEPT_S`] (and every export of `actor`), with
    /// their archives. How many went.
    pub async fn drop_exports(&self, actor: Option<i64>, now: u64) -> Result<usize, Error> {
        let before = to_store(now.saturating_sub(EXPORT_KEPT_S));
        let rows = self.store.exports_to_drop(before, actor).await?;
        let objects = self.media.shared_objects();
        for row in &rows {
            self.store.delete_export(&row.id).await?;
            if let (Some(objects), Some(key)) = (&objects, &row.object_key) {
                // A failure leaves an unnamed object, which the media sweep deletes.
                if let Err(e) = objects.delete(key).await {
                    tracing::warn!(error = %e, key, "deleting an export failed");
                }
            }
        }
        Ok(rows.len())
    }
}

/// The archive of a ready export, if its object is still there.
async fn ready(objects: &Objects, row: &ExportRow) -> Result<Option<Export>, Error> {
    let (Some(key), Some(size)) = (&row.object_key, row.size) else {
        return Ok(None);
    };
    match objects.open_read(key).await {
        Ok(object) => Ok(Some(Export::Ready {
            object,
            size: from_store(size),
            file_name: row.file_name.clone(),
        })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn serial_list(serials: &[i64]) -> String {
    serials
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

pub(super) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut raw = [0u8; N];
    OsRng.fill_bytes(&mut raw);
    raw
}

/// Appends a file of `size` bytes read from `data`.
fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    size: u64,
    mtime: u64,
    data: impl std::io::Read,
) -> std::io::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(mtime);
    // A source shorter than announced would shift every later entry: refuse it.
    let mut data = data.take(size);
    let mut counted = Counted(&mut data, 0);
    tar.append_data(&mut header, path, &mut counted)?;
    if counted.1 != size {
        return Err(std::io::Error::other(format!(
            "{path}: {} bytes instead of {size}",
            counted.1
        )));
    }
    Ok(())
}

/// Appends a folder.
fn folder<W: Write>(tar: &mut tar::Builder<W>, path: &str, mtime: u64) -> std::io::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_size(0);
    header.set_mode(0o755);
    header.set_mtime(mtime);
    tar.append_data(&mut header, format!("{path}/"), std::io::empty())
}

/// A reader that counts what it gave.
struct Counted<R>(R, u64);

impl<R: std::io::Read> std::io::Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.read(buf)?;
        self.1 += n as u64;
        Ok(n)
    }
}
