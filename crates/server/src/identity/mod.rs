//! The home server as certificate authority (core §6, DIGEST §4, §5.6–§5.8).
//!
//! Owns the server's Ed25519 key, its root ID-Certs (current and historical), actor ID-Cert
//! issuance, cache signatures and encrypted key backups. HTTP lives in `routes.rs`. The CA key
//! enters once through [`Identity::bootstrap`] and never leaves this module: callers get
//! certificates and signatures, never key material.

mod error;
mod published;
pub mod routes;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use rand_core::{OsRng, RngCore};

use fugue_proto::api::{get_actor_idcerts, keymaterial::EncryptedPkm};
use fugue_proto::cache::{self, CacheableIdCert};
use fugue_proto::certs::IdCert;
use fugue_proto::certs::issue::{self, Window};
use fugue_proto::{DomainName, FederationId, Serial, SessionId};
use fugue_store::{CertRow, KeyMaterialRow, ServerCertRow, Store};

pub use error::{Error, cert_problem};

use crate::config;
use crate::events::{BusMsg, Events, RootChange};
use crate::ids::{ActorId, from_store, to_store};
use crate::time::UnixTime;

const DAY: u64 = 86_400;
/// Hard ceiling for actor certificates (DIGEST §4.2, OP-44).
const MAX_ACTOR_DAYS: u64 = 60;
/// Cache windows start on multiples of this many seconds, so one signature serves every
/// request for the same certificate within that time (OP-13 allows caching per window).
const WINDOW_STEP: u64 = 60;
/// Bound of the signature cache; it is emptied when full or when the window moves on.
const SIG_CACHE_MAX: usize = 100_000;

/// Signed cache windows of the current step: (serial, end, invalidatedAt) → signature.
#[derive(Default)]
struct SigCache {
    step_start: u64,
    signatures: HashMap<(u64, u64, Option<u64>), String>,
}

/// Where a rotated server key is kept. The `fugue` binary writes it to `server-key.pem`.
pub trait KeySink: Send + Sync {
    fn persist(&self, key: &SigningKey) -> std::io::Result<()>;
}

struct Ca {
    key: SigningKey,
    current: IdCert,
    /// Every root this server ever had, oldest first.
    history: Vec<IdCert>,
}

/// The certificate authority service.
#[derive(Clone)]
pub struct Identity {
    store: Store,
    domain: DomainName,
    certs: config::Certs,
    limits: config::Limits,
    ca: Arc<RwLock<Ca>>,
    sink: Arc<dyn KeySink>,
    sig_cache: Arc<Mutex<SigCache>>,
    /// Local actors' certificate lists as published, and how often one was built.
    published: Arc<Mutex<published::Published>>,
    lists_built: Arc<std::sync::atomic::AtomicU64>,
    /// Serialises root changes (rotation, renewal).
    rotation: Arc<tokio::sync::Mutex<()>>,
    /// Where root changes are announced (op 6); none in a bare CA.
    events: Option<Events>,
}

/// A freshly issued actor certificate.
pub struct Issued {
    pub row: CertRow,
    pub cert: IdCert,
}

pub fn random_serial() -> Serial {
    loop {
        let s = OsRng.next_u64() >> 1; // 63 bits: positive as i64 and as an X.509 INTEGER
        if s != 0 {
            return Serial(s);
        }
    }
}

/// Lifetime of new actor certificates, days: as configured, within 1..=60.
fn actor_days(certs: &config::Certs) -> u64 {
    certs.actor_validity_days.clamp(1, MAX_ACTOR_DAYS)
}

/// True when `root` ends before a certificate issued now would.
fn root_expiring(root: &IdCert, certs: &config::Certs, now: u64) -> bool {
    root.not_after < now + actor_days(certs) * DAY
}

impl Identity {
    /// Loads the server's root certificates and makes sure `key` has a current one: on first
    /// start, or when the key changed (rotation interrupted, key replaced by the operator) or
    /// the current root is about to expire, a new self-signed root is issued.
    pub async fn bootstrap(
        store: Store,
        domain: DomainName,
        certs: config::Certs,
        limits: config::Limits,
        key: SigningKey,
        sink: Arc<dyn KeySink>,
        now: u64,
    ) -> Result<Self, Error> {
        let mut history = Vec::new();
        for row in store.server_certs().await? {
            history.push(IdCert::parse(row.cert_pem.as_bytes())?);
        }
        let needs_new = match history.last() {
            None => true,
            Some(last) => last.key != key.verifying_key() || root_expiring(last, &certs, now),
        };
        let current = match (needs_new, history.last()) {
            (false, Some(last)) => last.clone(),
            _ => {
                if !history.is_empty() {
                    tracing::warn!(
                        "server key changed or root expiring: issuing a new root certificate"
                    );
                }
                let cert =
                    Self::new_root(&store, &domain, &certs, &key, history.last(), now).await?;
                history.push(cert.clone());
                cert
            }
        };
        Ok(Self {
            store,
            domain,
            certs,
            limits,
            ca: Arc::new(RwLock::new(Ca {
                key,
                current,
                history,
            })),
            sink,
            sig_cache: Arc::default(),
            published: Arc::default(),
            lists_built: Arc::default(),
            rotation: Arc::default(),
            events: None,
        })
    }

    /// Announces root changes (op 6) through `events` from now on.
    pub fn with_events(mut self, events: Events) -> Self {
        self.events = Some(events);
        self
    }

    /// Serial of the current root, as stored.
    pub fn root_serial(&self) -> i64 {
        to_store(self.read().current.serial.0)
    }

    /// The root changes after the root with `serial`, oldest first (op 6 for a session that
    /// was away). Nothing when `serial` is current or unknown.
    pub fn roots_after(&self, serial: i64) -> Vec<RootChange> {
        let ca = self.read();
        let Some(i) = ca
            .history
            .iter()
            .position(|c| to_store(c.serial.0) == serial)
        else {
            return Vec::new();
        };
        ca.history[i + 1..]
            .iter()
            .filter_map(|c| {
                Some(RootChange {
                    cert: c.to_pem().ok()?,
                    old_invalid_since: UnixTime(c.not_before),
                    root_serial: to_store(c.serial.0),
                })
            })
            .collect()
    }

    /// A stored actor certificate with cache information signed now.
    pub fn cacheable_cert(&self, row: &CertRow, now: u64) -> CacheableIdCert {
        self.cacheable_row(&self.read(), row.clone(), now)
    }

    fn cacheable_row(&self, ca: &Ca, row: CertRow, now: u64) -> CacheableIdCert {
        self.cacheable(
            ca,
            row.cert_pem,
            Serial(from_store(row.serial)),
            from_store(row.not_after),
            row.revoked_at.map(from_store),
            now,
        )
    }

    /// Issues and stores a root for `key`. A root that follows `previous` starts one second
    /// after the later of now and the previous root's start, so a timestamp (whole seconds)
    /// always names exactly one root: certificates signed by the previous key in this
    /// second still resolve to it.
    async fn new_root(
        store: &Store,
        domain: &DomainName,
        certs: &config::Certs,
        key: &SigningKey,
        previous: Option<&IdCert>,
        now: u64,
    ) -> Result<IdCert, Error> {
        let start = match previous {
            Some(p) => now.max(p.not_before) + 1,
            None => now,
        };
        let window = Window {
            not_before: start,
            not_after: start + certs.server_validity_days * DAY,
        };
        let tbs = issue::server_tbs(random_serial(), domain, &key.verifying_key(), window)
            .map_err(Error::Issuance)?;
        let der = issue::finish_cert(tbs, |m| key.sign(m).to_bytes()).map_err(Error::Issuance)?;
        let cert = IdCert::parse(&der).map_err(Error::Issuance)?;
        cert.verify_server_root().map_err(Error::Issuance)?;
        let row = ServerCertRow {
            serial: to_store(cert.serial.0),
            cert_pem: cert.to_pem().map_err(Error::Issuance)?,
            not_before: to_store(window.not_before),
            not_after: to_store(window.not_after),
            created_at: to_store(start),
            superseded_at: None,
        };
        store.insert_server_cert(&row, to_store(start)).await?;
        Ok(cert)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Ca> {
        // A poisoned lock only means a panic elsewhere while holding it; the data is intact
        // because every writer replaces the whole value at once.
        self.ca.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn domain(&self) -> &DomainName {
        &self.domain
    }

    /// The current root certificate.
    pub fn server_cert(&self) -> IdCert {
        self.read().current.clone()
    }

    /// Issues an actor ID-Cert for `fid`/`session` binding `key` (claims already checked).
    pub fn issue_actor_cert(
        &self,
        actor_id: ActorId,
        fid: &FederationId,
        session: &SessionId,
        key: &VerifyingKey,
        now: u64,
    ) -> Result<Issued, Error> {
        let ca = self.read();
        let days = actor_days(&self.certs);
        let not_before = now.max(ca.current.not_before);
        let not_after = (now + days * DAY).min(ca.current.not_after);
        if not_after <= not_before {
            return Err(Error::ServerCertExpired);
        }
        let window = Window {
            not_before,
            not_after,
        };
        let tbs = issue::actor_tbs(random_serial(), fid, session, key, window)
            .map_err(Error::Issuance)?;
        let der =
            issue::finish_cert(tbs, |m| ca.key.sign(m).to_bytes()).map_err(Error::Issuance)?;
        let cert = IdCert::parse(&der).map_err(Error::Issuance)?;
        let row = CertRow {
            serial: to_store(cert.serial.0),
            actor_id: actor_id.to_store(),
            session_id: session.to_string(),
            cert_pem: cert.to_pem().map_err(Error::Issuance)?,
            not_before: to_store(not_before),
            not_after: to_store(not_after),
            issued_at: to_store(now),
            revoked_at: None,
        };
        Ok(Issued { row, cert })
    }

    /// Signs cache information for a certificate (OP-12, OP-13): the window starts at the
    /// current step (≤ now) and ends after the cache TTL, never beyond the certificate's own
    /// validity while it lasts.
    fn cacheable(
        &self,
        ca: &Ca,
        pem: String,
        serial: Serial,
        not_after: u64,
        invalidated_at: Option<u64>,
        now: u64,
    ) -> CacheableIdCert {
        let start = now - now % WINDOW_STEP;
        let ttl_end = start + self.certs.cache_ttl_s;
        let end = if not_after > now {
            ttl_end.min(not_after)
        } else {
            ttl_end
        };
        let signature = {
            let mut cache = self.sig_cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache.step_start != start || cache.signatures.len() >= SIG_CACHE_MAX {
                cache.step_start = start;
                cache.signatures.clear();
            }
            cache
                .signatures
                .entry((serial.0, end, invalidated_at))
                .or_insert_with(|| {
                    let input = cache::signing_input(serial, start, end, invalidated_at);
                    hex::encode(ca.key.sign(input.as_bytes()).to_bytes())
                })
                .clone()
        };
        CacheableIdCert {
            id_cert_pem: pem,
            not_valid_before: start,
            not_valid_after: end,
            signature,
            invalidated_at,
        }
    }

    /// The root certificate current at `timestamp` (default: the current root), with cache
    /// information.
    pub fn server_cert_at(
        &self,
        timestamp: Option<u64>,
        now: u64,
    ) -> Result<CacheableIdCert, Error> {
        let ca = self.read();
        let cert = match timestamp {
            None => &ca.current,
            Some(at) => ca
                .history
                .iter()
                .rev()
                .find(|c| c.not_before <= at)
                .ok_or(Error::NoServerCertAt(at))?,
        };
        Ok(self.cacheable(
            &ca,
            cert.to_pem().map_err(Error::Issuance)?,
            cert.serial,
            cert.not_after,
            None,
            now,
        ))
    }

    /// How many certificate lists were built for `GET /idcert/actor/{fid}` (the rest were
    /// answered from the cache).
    pub fn lists_built(&self) -> u64 {
        self.lists_built.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The JSON answer of `GET /idcert/actor/{fid}` for a local actor: its certificates
    /// overlapping the query window, with cache information ([`published`]).
    pub async fn actor_certs(
        &self,
        fid: &str,
        q: &get_actor_idcerts::Query,
        now: u64,
    ) -> Result<Vec<u8>, Error> {
        let not_found = || Error::ActorNotFound(fid.to_owned());
        let fid: FederationId = fid.parse().map_err(|_| not_found())?;
        if fid.domain() != &self.domain {
            return Err(not_found());
        }
        let actor = self
            .store
            .actor_by_name(fid.local_name().as_str())
            .await?
            .ok_or_else(not_found)?;
        let version = self.store.cert_counts(actor.id).await?;
        let step = now - now % WINDOW_STEP;
        let cached = self
            .published
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(actor.id, step, version);
        let items = match cached {
            Some(items) => items,
            None => {
                let rows = self.store.certs_of(actor.id, None, None, None).await?;
                let ca = self.read();
                let items: Vec<_> = rows
                    .into_iter()
                    .map(|r| {
                        let (not_before, not_after) =
                            (from_store(r.not_before), from_store(r.not_after));
                        let session_id = r.session_id.clone();
                        let entry = self.cacheable_row(&ca, r, now);
                        Ok(published::Item {
                            not_before,
                            not_after,
                            session_id,
                            json: fugue_proto::wire::to_canonical_vec(&entry)
                                .map_err(Error::Encoding)?,
                        })
                    })
                    .collect::<Result<_, Error>>()?;
                let items = Arc::new(items);
                self.lists_built
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                // Stored under the read lock it was signed under: a key rotation clears the
                // lists under the write lock, so no list of the old key survives it.
                self.published
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .put(actor.id, step, version, items.clone());
                drop(ca);
                items
            }
        };
        Ok(published::answer(&items, q))
    }

    /// Rotates the server key: a new key and self-signed root; every earlier root stays
    /// answerable by timestamp. Returns the new root's PEM.
    pub async fn rotate_key(&self, now: u64) -> Result<String, Error> {
        let _one_at_a_time = self.rotation.lock().await;
        let key = SigningKey::generate(&mut OsRng);
        // Persist the key before the certificate: if we crash in between, the next start
        // finds a key without a root and issues one (see `bootstrap`).
        self.sink
            .persist(&key)
            .map_err(|e| Error::KeyPersistence(e.to_string()))?;
        self.install_root(key, now).await
    }

    /// Renews the root with the same key when it would cut actor certificates short: a
    /// long-running server never reaches the day its root expires. Returns whether it did.
    pub async fn renew_root_if_expiring(&self, now: u64) -> Result<bool, Error> {
        let _one_at_a_time = self.rotation.lock().await;
        let (key, expiring) = {
            let ca = self.read();
            (ca.key.clone(), root_expiring(&ca.current, &self.certs, now))
        };
        if !expiring {
            return Ok(false);
        }
        self.install_root(key, now).await?;
        tracing::warn!("renewed the server root certificate before it expires");
        Ok(true)
    }

    /// Issues a root for `key` after the current one and makes both current. Callers hold
    /// `rotation`.
    async fn install_root(&self, key: SigningKey, now: u64) -> Result<String, Error> {
        let previous = self.server_cert();
        let cert = Self::new_root(
            &self.store,
            &self.domain,
            &self.certs,
            &key,
            Some(&previous),
            now,
        )
        .await?;
        let pem = cert.to_pem().map_err(Error::Issuance)?;
        let change = BusMsg::ServerCertChange {
            cert: pem.clone(),
            old_invalid_since: UnixTime(cert.not_before),
            root_serial: to_store(cert.serial.0),
        };
        {
            let mut ca = self.ca.write().unwrap_or_else(|e| e.into_inner());
            ca.history.push(cert.clone());
            ca.current = cert;
            ca.key = key;
            // Signatures of the old key must not be handed out any more. Cleared under the
            // write lock: whatever signs or publishes holds the read lock, so nothing made
            // with the old key can be stored after this.
            self.sig_cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .signatures
                .clear();
            *self.published.lock().unwrap_or_else(|e| e.into_inner()) = Default::default();
        }
        if let Some(events) = &self.events {
            events.announce(change).await;
        }
        Ok(pem)
    }

    // ---- encrypted private key material (core §6.3) ----

    pub fn key_material_limit(&self) -> usize {
        self.limits.key_material_bytes
    }

    pub async fn upload_key_material(
        &self,
        actor_id: ActorId,
        items: Vec<EncryptedPkm>,
        now: u64,
    ) -> Result<(), Error> {
        if items.is_empty() {
            return Err(Error::InvalidRequest(
                "at least one key material element is required".into(),
            ));
        }
        // Slots and existing material are checked by the store, atomically with the write.
        let mut rows = Vec::with_capacity(items.len());
        for item in items {
            if item.key_data.len() > self.limits.key_material_bytes {
                return Err(Error::KeyMaterialTooLarge(self.limits.key_material_bytes));
            }
            let oid_like = |a: &String| {
                a.len() <= 64
                    && a.split('.')
                        .all(|arc| !arc.is_empty() && arc.bytes().all(|b| b.is_ascii_digit()))
            };
            let algs = &item.encryption_algorithms;
            if algs.is_empty() || algs.len() > 8 || !algs.iter().all(oid_like) {
                return Err(Error::InvalidRequest(
                    "encryptionAlgorithms must be 1 to 8 OIDs in dotted-decimal form".into(),
                ));
            }
            let owned = self.store.cert_by_serial(to_store(item.serial.0)).await?;
            if owned.is_none_or(|c| c.actor_id != actor_id.to_store()) {
                return Err(Error::UnknownSerial(item.serial.0));
            }
            if rows
                .iter()
                .any(|r: &KeyMaterialRow| r.serial == to_store(item.serial.0))
            {
                return Err(Error::KeyMaterialExists(format!(
                    "serial {} is uploaded twice",
                    item.serial
                )));
            }
            rows.push(KeyMaterialRow {
                serial: to_store(item.serial.0),
                key_data: item.key_data,
                algorithms: item.encryption_algorithms,
                created_at: to_store(now),
            });
        }
        let slots = self.limits.key_material_slots;
        match self
            .store
            .insert_key_material(actor_id.to_store(), &rows, to_store(slots as u64))
            .await
        {
            Err(fugue_store::Error::Unique(_)) => Err(Error::KeyMaterialExists(
                "an uploaded serial has key material already".into(),
            )),
            Err(fugue_store::Error::Conflict(fugue_store::Conflict::KeyMaterialSlotsFull)) => {
                Err(Error::KeyMaterialSlotsExhausted(slots))
            }
            other => Ok(other?),
        }
    }

    /// Key material of the given serials (all when empty).
    pub async fn key_material(
        &self,
        actor_id: ActorId,
        serials: &[Serial],
    ) -> Result<Vec<EncryptedPkm>, Error> {
        let rows = self.store.key_material(actor_id.to_store()).await?;
        let items: Vec<EncryptedPkm> = rows
            .into_iter()
            .filter(|r| serials.is_empty() || serials.iter().any(|s| to_store(s.0) == r.serial))
            .map(|r| EncryptedPkm {
                key_data: r.key_data,
                serial: Serial(from_store(r.serial)),
                encryption_algorithms: r.algorithms,
            })
            .collect();
        if items.is_empty() && !serials.is_empty() {
            return Err(Error::KeyMaterialNotFound);
        }
        Ok(items)
    }

    pub async fn delete_key_material(
        &self,
        actor_id: ActorId,
        serials: &[Serial],
    ) -> Result<(), Error> {
        if serials.is_empty() {
            return Err(Error::InvalidRequest("serials are required".into()));
        }
        let ids: Vec<i64> = serials.iter().map(|s| to_store(s.0)).collect();
        match self
            .store
            .delete_key_material(actor_id.to_store(), &ids)
            .await?
        {
            0 => Err(Error::KeyMaterialNotFound),
            _ => Ok(()),
        }
    }
}
