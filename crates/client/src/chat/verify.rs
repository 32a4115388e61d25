//! Verifying received messages: each one's signature over the bytes its author signed, with
//! the certificate it carries, and that certificate against the author's home server.
//!
//! A message is [`Verdict::Verified`] when: it is in the channel it was asked for; its
//! certificate parses, has the serial the message names and is the author's; the hex
//! signature verifies strictly over [`SignedPayload::signed_bytes`] rebuilt from the message
//! (this server's domain, its channel, author, nonce, `edit_of` for an edited version, body);
//! and the author's home server publishes that very certificate, its chain and cache
//! signature checked against the home server's roots (`crate::verify`, core §6.4:
//! certificates through the conversation server, the home server as fallback), not revoked
//! before the message was sent. Anything else is [`Verdict::Failed`] with the reason. A
//! tombstone has nothing left to verify ([`Verdict::Deleted`]). A reaction is checked the same
//! way ([`Chat::verify_reaction`]), over the addition of its emoji to its message.
//!
//! Certificates are cached per author until the earliest cache window of the list closes
//! (core §6.4.1); a serial missing from a cached list is looked up again, once per call. A
//! failure to get them is remembered for a minute, so a page of one unreachable author's
//! messages fails fast after the first.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use fugue_proto::certs::{self, IdCert};
use fugue_proto::chat::{Message, MessageVersion, SignedPayload};
use fugue_proto::community::{ReactionBody, SignedReaction};
use fugue_proto::{DomainName, FederationId, Serial};

use super::Chat;
use crate::error::{Error, Result};
use crate::http::Client;
use crate::verify::VerifiedCert;

/// What checking one message found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Verified,
    /// Deleted: content, signature and certificate are gone.
    Deleted,
    /// Something did not check out; the text says what.
    Failed(String),
}

impl Verdict {
    pub fn is_verified(&self) -> bool {
        matches!(self, Verdict::Verified)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Verified => f.write_str("verified"),
            Verdict::Deleted => f.write_str("deleted"),
            Verdict::Failed(why) => write!(f, "not verified: {why}"),
        }
    }
}

/// Verified certificate lists by author.
#[derive(Default)]
pub(super) struct CertCache {
    by_author: HashMap<FederationId, Cached>,
    /// Authors whose certificates could not be fetched or verified, with why, until when:
    /// a page of their messages costs one attempt, not one per message.
    failed: HashMap<FederationId, (String, u64)>,
}

/// How long a failure to get an author's certificates is remembered.
const FAILURE_TTL_SECS: u64 = 60;

struct Cached {
    certs: Arc<Vec<VerifiedCert>>,
    /// The earliest `not_valid_after` of the list's cache windows.
    until: u64,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What a signed item — a version of a message, a reaction — carries to be checked again.
struct Signed<'a> {
    author: &'a FederationId,
    /// The certificate (PEM) it says it was signed with, and that certificate's serial.
    id_cert: &'a str,
    serial: Serial,
    /// Hex Ed25519 signature.
    signature: &'a str,
    /// What was signed, rebuilt from what was received.
    payload: SignedPayload,
}

impl<'a> Signed<'a> {
    /// The current version of message `m`, as this server's domain `domain` hosts it.
    fn message(domain: &DomainName, m: &'a Message) -> Self {
        // A first version signed `edit_of: null`, an edit the message's own id (a re-signed
        // first version is still a first version).
        let edit_of = m.edited_timestamp.is_some().then_some(m.id);
        Signed {
            author: &m.author,
            id_cert: &m.id_cert,
            serial: m.serial,
            signature: &m.signature,
            payload: SignedPayload::message(
                domain,
                m.channel_id,
                &m.author,
                &m.nonce,
                edit_of,
                &m.body(),
            ),
        }
    }
}

/// The checks that need no network: channel, certificate, signature. Returns the carried
/// certificate for the home server check.
pub(super) fn check_signature(
    domain: &DomainName,
    channel_id: Option<u64>,
    m: &Message,
) -> Result<IdCert, String> {
    if let Some(expected) = channel_id
        && m.channel_id != expected
    {
        return Err(format!(
            "it belongs to channel {}, not {expected}",
            m.channel_id
        ));
    }
    check_signed(&Signed::message(domain, m))
}

/// The carried certificate parses, is the one named and the author's, and the signature
/// verifies strictly with it over the rebuilt payload.
fn check_signed(s: &Signed<'_>) -> Result<IdCert, String> {
    let cert = IdCert::parse(s.id_cert.as_bytes())
        .map_err(|e| format!("its certificate does not parse: {e}"))?;
    if cert.serial != s.serial {
        return Err(format!(
            "it names certificate {} but carries {}",
            s.serial, cert.serial
        ));
    }
    if cert.fid().as_ref() != Some(s.author) {
        return Err(format!("certificate {} is not {}'s", cert.serial, s.author));
    }
    let signature = decode_hex(s.signature)
        .filter(|sig| sig.len() == 64)
        .ok_or("its signature is not 64 bytes of hex")?;
    certs::verify_strict(&cert.key, &s.payload.signed_bytes(), &signature).map_err(|_| {
        format!(
            "the signature does not verify with certificate {}",
            cert.serial
        )
    })?;
    Ok(cert)
}

/// Whether the home server's list vouches for `cert` at the time `m` was sent.
pub(super) fn check_published(
    cert: &IdCert,
    m: &Message,
    published: &[VerifiedCert],
) -> Result<(), String> {
    let sent = m
        .resigned_timestamp
        .or(m.edited_timestamp)
        .unwrap_or(m.timestamp);
    check_vouched(cert, &m.author, sent, "message", published)
}

/// Whether the home server's list vouches for `cert` at the time `s` was sent.
fn check_vouched(
    cert: &IdCert,
    author: &FederationId,
    sent: u64,
    what: &str,
    published: &[VerifiedCert],
) -> Result<(), String> {
    let serial = cert.serial;
    let entry = published
        .iter()
        .find(|v| v.cert.serial == serial)
        .ok_or_else(|| format!("{author}'s home server does not list certificate {serial}"))?;
    if entry.cert.der != cert.der {
        return Err(format!(
            "certificate {serial} differs from the one {author}'s home server publishes"
        ));
    }
    if let Some(revoked) = entry.revoked_at
        && revoked <= sent
    {
        return Err(format!(
            "certificate {serial} was revoked before the {what} was sent"
        ));
    }
    cert.valid_at(sent)
        .map_err(|_| format!("certificate {serial} was not valid when the {what} was sent"))
}

pub(super) fn decode_hex(text: &str) -> Option<Vec<u8>> {
    hex::decode(text).ok()
}

impl Chat {
    /// The client of `domain`'s home server: ours, the conversation server when it is that
    /// domain's, one given with [`Chat::with_home_server`], or `https://<domain>`.
    fn home_of(&self, domain: &DomainName) -> Result<Client> {
        if domain == self.signer.fid().domain() {
            return Ok(self.signer.client().clone());
        }
        if domain == &self.domain {
            return Ok(self.client.clone());
        }
        match self.homes.get(domain) {
            Some(client) => Ok(client.clone()),
            None => Client::home_server(domain),
        }
    }

    /// The author's certificates, verified against its home server; from the cache unless
    /// `fresh`.
    async fn author_certs(
        &self,
        author: &FederationId,
        fresh: bool,
    ) -> Result<Arc<Vec<VerifiedCert>>> {
        let now = unix_now();
        if !fresh && let Ok(cache) = self.certs.lock() {
            if let Some(hit) = cache.by_author.get(author)
                && hit.until >= now
            {
                return Ok(hit.certs.clone());
            }
            if let Some((why, until)) = cache.failed.get(author)
                && *until >= now
            {
                return Err(Error::Verification(why.clone()));
            }
        }
        let fetched = async {
            let home = self.home_of(author.domain())?;
            if home.base_url() == self.client.base_url() {
                home.verified_actor_certs(author).await
            } else {
                Ok(home
                    .verified_actor_certs_via(&self.client, author)
                    .await?
                    .certs)
            }
        }
        .await;
        let certs = match fetched {
            Ok(certs) => certs,
            Err(e) => {
                if let Ok(mut cache) = self.certs.lock() {
                    let until = now + FAILURE_TTL_SECS;
                    cache.failed.insert(author.clone(), (e.to_string(), until));
                }
                return Err(e);
            }
        };
        let until = certs
            .iter()
            .map(|c| c.cacheable.not_valid_after)
            .min()
            .unwrap_or(now);
        let certs = Arc::new(certs);
        if let Ok(mut cache) = self.certs.lock() {
            cache.failed.remove(author);
            cache.by_author.insert(
                author.clone(),
                Cached {
                    certs: certs.clone(),
                    until,
                },
            );
        }
        Ok(certs)
    }

    /// Checks one message; `channel_id` is the channel it was fetched from, if any.
    pub async fn verify_message(&self, channel_id: Option<u64>, m: &Message) -> Verdict {
        if m.deleted_timestamp.is_some() {
            return Verdict::Deleted;
        }
        match check_signature(&self.domain, channel_id, m) {
            Ok(cert) => {
                self.vouched(&m.author, &cert, |published| {
                    check_published(&cert, m, published)
                })
                .await
            }
            Err(why) => Verdict::Failed(why),
        }
    }

    /// Checks a reaction to message `message_id` of `channel_id`, as
    /// [`Chat::reactors`] lists it: signed by its author over the addition of that emoji
    /// to that message, with a certificate the author's home server vouches for.
    pub async fn verify_reaction(
        &self,
        channel_id: u64,
        message_id: u64,
        r: &SignedReaction,
    ) -> Verdict {
        let body = ReactionBody {
            message: message_id,
            emoji: r.emoji.clone(),
            add: true,
        };
        let signed = Signed {
            author: &r.fid,
            id_cert: &r.id_cert,
            serial: r.serial,
            signature: &r.signature,
            payload: SignedPayload::reaction(&self.domain, channel_id, &r.fid, &r.nonce, &body),
        };
        match check_signed(&signed) {
            Ok(cert) => {
                self.vouched(&r.fid, &cert, |published| {
                    check_vouched(&cert, &r.fid, r.timestamp, "reaction", published)
                })
                .await
            }
            Err(why) => Verdict::Failed(why),
        }
    }

    /// `check` over the author's certificates as its home server publishes them, asked
    /// again once when the cached list lacks `cert`.
    async fn vouched(
        &self,
        author: &FederationId,
        cert: &IdCert,
        check: impl Fn(&[VerifiedCert]) -> Result<(), String>,
    ) -> Verdict {
        let mut fresh = false;
        loop {
            let published = match self.author_certs(author, fresh).await {
                Ok(p) => p,
                Err(e) => {
                    return Verdict::Failed(format!(
                        "the certificates of {author} could not be verified: {e}"
                    ));
                }
            };
            match check(&published) {
                Ok(()) => return Verdict::Verified,
                // Issued after the list was cached: ask once more.
                Err(_) if !fresh && !published.iter().any(|v| v.cert.serial == cert.serial) => {
                    fresh = true;
                }
                Err(why) => return Verdict::Failed(why),
            }
        }
    }

    /// Checks every message of a page fetched from `channel_id`, in order.
    pub async fn verify_messages(&self, channel_id: u64, messages: &[Message]) -> Vec<Verdict> {
        let mut verdicts = Vec::with_capacity(messages.len());
        for m in messages {
            verdicts.push(self.verify_message(Some(channel_id), m).await);
        }
        verdicts
    }

    /// Checks every signed version of message `m` of `channel_id` (as
    /// [`Chat::message_versions`] lists them) like a message of its own.
    pub async fn verify_versions(
        &self,
        channel_id: u64,
        m: &Message,
        versions: &[MessageVersion],
    ) -> Vec<Verdict> {
        let mut verdicts = Vec::with_capacity(versions.len());
        for v in versions {
            let verdict = if v.message_id != m.id || v.edit_of.is_some_and(|e| e != m.id) {
                Verdict::Failed(format!(
                    "version {} is not a version of message {}",
                    v.version, m.id
                ))
            } else {
                let as_message = Message {
                    version: v.version,
                    content: v.content.clone(),
                    reply_to: v.reply_to,
                    timestamp: v.created_at,
                    edited_timestamp: v.edit_of.map(|_| v.created_at),
                    resigned_timestamp: None,
                    author: v.author.clone().unwrap_or_else(|| m.author.clone()),
                    deleted_timestamp: None,
                    nonce: v.nonce.clone(),
                    signature: v.signature.clone(),
                    id_cert: v.id_cert.clone(),
                    serial: v.serial,
                    attachments: v.attachments.clone(),
                    ..m.clone()
                };
                self.verify_message(Some(channel_id), &as_message).await
            };
            verdicts.push(verdict);
        }
        verdicts
    }

    /// Forgets the cached certificates (e.g. after an op 4 revocation event).
    pub fn forget_certs(&self, author: Option<&FederationId>) {
        if let Ok(mut cache) = self.certs.lock() {
            match author {
                Some(fid) => {
                    cache.by_author.remove(fid);
                    cache.failed.remove(fid);
                }
                None => *cache = CertCache::default(),
            }
        }
    }
}
