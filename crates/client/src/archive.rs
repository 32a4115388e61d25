//! Moving data with archives of core §7.3.2: what an export holds, turning it into an
//! archive the new identity imports, and the import itself.
//!
//! An import takes only what Fugue's chat calls free of context: the old identity's own DM
//! messages. Each message names the server and conversation it was signed for, so the new
//! identity signs it anew for its DM with the same actor on its new home server (keeping
//! the text and the nonce, so that importing twice stores it once; a reply's reference and
//! attachments stay behind, they name messages and files of the old server). Every old
//! signature is checked against its batch's certificate first (core §7.3 step 2): an
//! archive changed on the way is refused. Resources go over as they are, under their IDs
//! with their access properties; certificates and key backups stay in the old archive.
//!
//! The archive functions do blocking file I/O: call them on a blocking thread.

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::path::Path;

use fugue_proto::api::{BatchMessage, import_data};
use fugue_proto::certs::IdCert;
use fugue_proto::chat::{MessageBody, SignedPayload};
use fugue_proto::export::{self as format, Entry, ImportReport};
use fugue_proto::{DomainName, FederationId};

use crate::error::{Error, Result};
use crate::http::send;
use crate::migration::check_signed;
use crate::session::Session;

fn bad(what: impl std::fmt::Display) -> Error {
    Error::Verification(format!("the archive: {what}"))
}

/// Why an archive's messages were not read through.
fn read_error(e: format::ReadError<Error>) -> Error {
    match e {
        format::ReadError::Format(why) => bad(why),
        format::ReadError::Refused(e) => e,
    }
}

/// What an export holds, at a glance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Whose messages it holds (the FID of its batches' certificates).
    pub owner: Option<FederationId>,
    pub messages: u64,
    /// The actors its DM messages were with (`fugue:peer`).
    pub peers: BTreeSet<FederationId>,
    pub resources: u64,
    pub certs: u64,
}

/// Reads an export through once.
pub fn summarize(export: impl Read) -> Result<Summary> {
    let mut summary = Summary::default();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(export));
    // Raw: long-name and extension entries are refused, never read whole into memory.
    for entry in archive.entries().map_err(bad)?.raw(true) {
        let entry = entry.map_err(bad)?;
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        match format::entry(&path).map_err(bad)? {
            Entry::Messages => {
                let mut owners: BTreeSet<String> = BTreeSet::new();
                summary.messages = format::each_message(entry, |pem, m| {
                    owners.insert(pem.to_owned());
                    summary.peers.extend(m.peer);
                    Ok(())
                })
                .map_err(read_error)?;
                for pem in owners {
                    let fid = IdCert::parse(pem.as_bytes())?.fid();
                    match (&summary.owner, fid) {
                        (None, Some(fid)) => summary.owner = Some(fid),
                        (Some(owner), Some(fid)) if *owner == fid => {}
                        _ => return Err(bad("its batches are signed by different actors")),
                    }
                }
            }
            Entry::Resource(_) => summary.resources += 1,
            Entry::Cert(_) => summary.certs += 1,
            _ => {}
        }
    }
    Ok(summary)
}

/// Who signs an archive for import: the new identity on its home server.
pub struct Signer<'a> {
    pub fid: &'a FederationId,
    pub domain: &'a DomainName,
    pub key: &'a crate::IdentityKey,
    /// The certificate (PEM) of `key`.
    pub cert_pem: &'a str,
}

/// What [`rebuild_for_import`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rebuilt {
    /// DM messages signed anew.
    pub messages: u64,
    /// Messages left behind: bound to a guild or group, or of a DM not in `dms`.
    pub bound: u64,
    /// Replies whose reference, and messages whose attachments, stayed behind.
    pub trimmed: u64,
    pub resources: u64,
}

/// Reads the export `old` of `old_fid` and writes to `out` the archive `signer` imports:
/// the DM messages with the actors `dms` names (peer → the DM's id on the new server),
/// each checked against its old signature and signed anew; the resources and their access
/// properties as they are.
pub fn rebuild_for_import(
    old: impl Read,
    out: impl Write,
    old_fid: &FederationId,
    signer: &Signer<'_>,
    dms: &HashMap<FederationId, u64>,
) -> Result<Rebuilt> {
    let mut rebuilt = Rebuilt::default();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(old));
    let gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut certs: HashMap<String, IdCert> = HashMap::new();
    // Raw: long-name and extension entries are refused, never read whole into memory.
    for entry in archive.entries().map_err(bad)?.raw(true) {
        let mut entry = entry.map_err(bad)?;
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        match format::entry(&path).map_err(bad)? {
            Entry::Messages => {
                let mut signed: Vec<BatchMessage> = Vec::new();
                format::each_message(&mut entry, |pem, m| {
                    signed.extend(resign(
                        pem,
                        &m,
                        old_fid,
                        signer,
                        dms,
                        &mut certs,
                        &mut rebuilt,
                    )?);
                    Ok(())
                })
                .map_err(read_error)?;
                let batches = if signed.is_empty() {
                    Vec::new()
                } else {
                    vec![fugue_proto::api::MessageBatch {
                        id_cert: signer.cert_pem.to_owned(),
                        messages: signed,
                    }]
                };
                let bytes = serde_json::to_vec(&batches).map_err(bad)?;
                append(&mut tar, format::MESSAGES, &bytes[..], bytes.len() as u64)?;
            }
            what @ (Entry::Resource(_) | Entry::AccessProperties) => {
                if matches!(what, Entry::Resource(_)) {
                    rebuilt.resources += 1;
                }
                let size = entry.header().size().map_err(bad)?;
                append(&mut tar, &path, &mut entry, size)?;
            }
            Entry::Folder | Entry::Cert(_) | Entry::KeyMaterial => {}
        }
    }
    tar.into_inner()
        .map_err(bad)?
        .finish()
        .map_err(bad)?
        .flush()
        .map_err(bad)?;
    Ok(rebuilt)
}

/// One message of the export signed anew for its DM on the new server, when it is a DM
/// message of `old_fid`'s with an actor `dms` names.
fn resign(
    pem: &str,
    m: &BatchMessage,
    old_fid: &FederationId,
    signer: &Signer<'_>,
    dms: &HashMap<FederationId, u64>,
    certs: &mut HashMap<String, IdCert>,
    rebuilt: &mut Rebuilt,
) -> Result<Option<BatchMessage>> {
    if !certs.contains_key(pem) {
        let cert = IdCert::parse(pem.as_bytes())?;
        if cert.fid().as_ref() != Some(old_fid) {
            return Err(bad(format!(
                "a batch's certificate is not {old_fid}'s: refusing another signer's messages"
            )));
        }
        certs.insert(pem.to_owned(), cert);
    }
    check_signed(&certs[pem], m)?;
    if m.content.get("author").and_then(|a| a.as_str()) != Some(old_fid.to_string().as_str()) {
        return Err(bad(format!("message {} is not {old_fid}'s", m.id)));
    }
    let Some(conversation) = m.peer.as_ref().and_then(|p| dms.get(p)) else {
        rebuilt.bound += 1;
        return Ok(None);
    };
    let nonce = m
        .content
        .get("nonce")
        .and_then(|n| n.as_str())
        .ok_or_else(|| bad(format!("message {} has no nonce", m.id)))?;
    let mut body: MessageBody = m
        .content
        .get("body")
        .cloned()
        .and_then(|b| serde_json::from_value(b).ok())
        .ok_or_else(|| bad(format!("message {} is no chat message", m.id)))?;
    if body.reply_to.is_some() || !body.attachments.is_empty() {
        rebuilt.trimmed += 1;
        body.reply_to = None;
        body.attachments.clear();
    }
    let payload =
        SignedPayload::message(signer.domain, *conversation, signer.fid, nonce, None, &body);
    rebuilt.messages += 1;
    Ok(Some(BatchMessage {
        id: m.id,
        signature: crate::chat::hex(&signer.key.sign(&payload.signed_bytes())),
        content: serde_json::to_value(&payload).map_err(bad)?,
        peer: None,
    }))
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    data: impl Read,
    size: u64,
) -> Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(size);
    header.set_mode(0o644);
    tar.append_data(&mut header, path, data).map_err(bad)
}

impl Session {
    /// Imports the archive at `path` (core §7.3) — a sensitive action, `solution` being
    /// the password or a TOTP code. The server checks it whole first (a problem says what
    /// is wrong, and nothing is stored), then stores it in the background: see
    /// [`Session::data_imports`].
    pub async fn import_data(&self, path: &Path, solution: &str) -> Result<()> {
        let (body, length) = crate::media::file_body(path).await?;
        let request = self
            .authed(import_data::target())?
            .header(fugue_proto::api::SENSITIVE_HEADER, solution)
            .header(reqwest::header::CONTENT_TYPE, format::CONTENT_TYPE);
        send(crate::media::with_body(request, body, length)).await?;
        Ok(())
    }

    /// This actor's imports, newest first, with what each stored and left out.
    pub async fn data_imports(&self) -> Result<Vec<ImportReport>> {
        self.client()
            .send_json(self.authed(fugue_proto::api::data_imports::target())?)
            .await
    }
}
