//! Other home servers: finding them, fetching their actors' certificates, checking them
//! completely and caching them for exactly the window their home server signed (core §3.1,
//! §6.4; DIGEST §4.8, §5.6).
//!
//! A certificate is believed only when it chains to a root fetched from the FID's own home
//! server — never from a third party —, names that FID, carries a cache signature of the
//! home server's current key over a window that includes now, and is not revoked. Nothing
//! here creates sessions (that is `sessions`, which uses this module); HTTP to other servers
//! is in `remote.rs`.

pub mod error;
pub mod remote;
pub mod resolver;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use fugue_proto::cache::{CacheableIdCert, MAX_WINDOW_S, check_actor_entry, check_root};
use fugue_proto::certs::IdCert;
use fugue_proto::{DomainName, FederationId, Serial, api};

pub use error::Error;
use remote::Remote;

use crate::config;

/// How long a discovered home-server address is reused before it is looked up again.
const HOME_TTL_S: u64 = 600;
/// Entries kept per cache before the expired ones are dropped.
const CACHE_SWEEP_AT: usize = 50_000;
/// Most entries of one actor's list we check for `GET /idcert/actor/{fid}`.
const MAX_LISTED: usize = 256;
/// How long an answer for `GET /idcert/actor/{fid}` that holds no current window (a failure,
/// or only stale entries) is reused before the home server is asked again.
const LIST_RETRY_S: u64 = 60;
/// Most historical roots fetched for one answer, and kept per domain.
const MAX_OLD_ROOT_FETCHES: u32 = 4;
const MAX_OLD_ROOTS: usize = 64;

/// A foreign actor certificate that passed every check, as its home server sent it.
#[derive(Debug, Clone)]
pub struct ForeignCert {
    pub cacheable: CacheableIdCert,
    pub cert: IdCert,
    /// Usable for new verifications until then: the end of the signed window or of the
    /// certificate, whichever is first.
    pub until: u64,
}

#[derive(Clone)]
struct Home {
    /// Scheme, host and port of the home server, without trailing slash; its core API is at
    /// the standard paths (`fugue_proto::api`) below it.
    base: String,
    until: u64,
}

#[derive(Clone)]
struct Root {
    cert: IdCert,
    until: u64,
}

struct Inner {
    own_domain: DomainName,
    remote: Remote,
    homes: Mutex<HashMap<String, Home>>,
    /// Current root per domain.
    roots: Mutex<HashMap<String, Root>>,
    /// Historical roots per domain, shared by every certificate they issued.
    old_roots: Mutex<HashMap<String, Vec<IdCert>>>,
    certs: Mutex<HashMap<(String, u64), ForeignCert>>,
    /// Each actor's answer for `GET /idcert/actor/{fid}` — its checked entries, in the home
    /// server's order, or why there are none — until it is asked again (see `list_until`).
    lists: Mutex<HashMap<String, CachedList>>,
    /// One fetch of an actor's list at a time: concurrent requests wait for its answer.
    list_fetches: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// One checked entry of an actor's list, with what the route's filters look at.
#[derive(Clone)]
struct Listed {
    cacheable: CacheableIdCert,
    not_before: u64,
    not_after: u64,
    session_id: Option<String>,
}

#[derive(Clone)]
struct CachedList {
    /// Failures are kept too: a hostile home server must not cost a fetch and a check of
    /// its whole list per anonymous request.
    answer: Result<Arc<Vec<Listed>>, Error>,
    until: u64,
}

/// Cheap to clone.
#[derive(Clone)]
pub struct Federation(Arc<Inner>);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Federation {
    pub fn new(own_domain: DomainName, cfg: config::Federation) -> Self {
        Self(Arc::new(Inner {
            own_domain,
            remote: Remote::new(cfg),
            homes: Mutex::default(),
            roots: Mutex::default(),
            old_roots: Mutex::default(),
            certs: Mutex::default(),
            lists: Mutex::default(),
            list_fetches: Mutex::default(),
        }))
    }

    /// Requests sent to other servers so far.
    pub fn requests_sent(&self) -> u64 {
        self.0.remote.sent()
    }

    /// A valid FID of another home server.
    pub fn foreign_fid(&self, fid: &str) -> Result<FederationId, Error> {
        let fid: FederationId = fid
            .parse()
            .map_err(|e: fugue_proto::ids::IdError| Error::InvalidFid(e.to_string()))?;
        if fid.domain() == &self.0.own_domain {
            return Err(Error::LocalActor(fid.to_string()));
        }
        // Anyone can make us fetch from an FID's domain: never from this machine or an
        // address literal, unless the operator mapped it for development.
        let domain = fid.domain().as_str();
        if !remote::is_public_name(domain) && !self.0.remote.is_mapped(domain) {
            return Err(Error::InvalidFid(format!(
                "{domain} is not a public domain name"
            )));
        }
        Ok(fid)
    }

    /// The home server of `domain` (core §3.1): the domain itself when its server cert names
    /// it; otherwise the host its `.well-known/polyproto-core` delegates to, but only if that
    /// host's server cert names `domain`. A delegated host is never a home server for its
    /// own name on that account.
    async fn home(&self, domain: &DomainName, now: u64) -> Result<Home, Error> {
        let key = domain.to_string();
        if let Some(h) = lock(&self.0.homes).get(&key).filter(|h| h.until > now) {
            return Ok(h.clone());
        }
        let remote = &self.0.remote;
        let direct = remote.base_url(&key);
        let home = match self.fetch_root(domain, &direct, now).await {
            Ok(root) => {
                self.remember_root(domain, root, now);
                direct
            }
            Err(direct_err) => {
                let answer: Option<api::well_known::Response> = remote
                    .get_json(&key, &direct, api::well_known::target(), &())
                    .await
                    .map_err(|e| Error::home(domain, e))?;
                let Some(answer) = answer else {
                    return Err(direct_err);
                };
                let base = remote
                    .delegated_base(&answer.api)
                    .map_err(|e| Error::home(domain, e))?;
                let root = self.fetch_root(domain, &base, now).await.map_err(|e| {
                    Error::NotAHomeServer {
                        domain: key.clone(),
                        reason: format!("the host its .well-known names fails: {e}"),
                    }
                })?;
                self.remember_root(domain, root, now);
                base
            }
        };
        let h = Home {
            base: home,
            until: now + HOME_TTL_S,
        };
        bounded_insert(&self.0.homes, key, h.clone(), |h| h.until > now);
        Ok(h)
    }

    /// The base URL of the home server of `domain` (core §3.1), found as [`Self::home`]
    /// finds it.
    pub async fn home_base(&self, domain: &DomainName, now: u64) -> Result<String, Error> {
        Ok(self.home(domain, now).await?.base)
    }

    /// Fetches and checks the current root at `base` for `domain`.
    async fn fetch_root(&self, domain: &DomainName, base: &str, now: u64) -> Result<Root, Error> {
        let cacheable: CacheableIdCert = self
            .0
            .remote
            .get_json(domain.as_str(), base, api::get_server_idcert::target(), &())
            .await
            .map_err(|e| Error::home(domain, e))?
            .ok_or_else(|| Error::NotAHomeServer {
                domain: domain.to_string(),
                reason: "no server certificate".into(),
            })?;
        let cert = check_root(&cacheable, domain, None).map_err(|why| Error::NotAHomeServer {
            domain: domain.to_string(),
            reason: format!("its server certificate {why}"),
        })?;
        cert.valid_at(now).map_err(|e| Error::NotAHomeServer {
            domain: domain.to_string(),
            reason: format!("its server certificate is not valid now: {e}"),
        })?;
        let until = window_end(&cacheable, cert.not_after, now);
        Ok(Root { cert, until })
    }

    fn remember_root(&self, domain: &DomainName, root: Root, now: u64) {
        bounded_insert(&self.0.roots, domain.to_string(), root, |r| r.until > now);
    }

    /// The current root of the FID's home server, from the cache while its window lasts.
    async fn current_root(
        &self,
        domain: &DomainName,
        home: &Home,
        now: u64,
    ) -> Result<IdCert, Error> {
        if let Some(r) = lock(&self.0.roots)
            .get(domain.as_str())
            .filter(|r| r.until > now)
        {
            return Ok(r.cert.clone());
        }
        let root = self.fetch_root(domain, &home.base, now).await?;
        let cert = root.cert.clone();
        self.remember_root(domain, root, now);
        Ok(cert)
    }

    /// The root that issued `cert`: the current one, a historical one already known, or the
    /// one the home server names for the time of issuance (at most `budget` such fetches),
    /// checked like the current one.
    async fn issuer(
        &self,
        domain: &DomainName,
        home: &Home,
        current: &IdCert,
        cert: &IdCert,
        budget: &mut u32,
    ) -> Result<IdCert, Error> {
        if cert.verify_signature(&current.key).is_ok() {
            return Ok(current.clone());
        }
        let known = lock(&self.0.old_roots)
            .get(domain.as_str())
            .and_then(|roots| roots.iter().find(|r| cert.verify_signature(&r.key).is_ok()))
            .cloned();
        if let Some(r) = known {
            return Ok(r);
        }
        if *budget == 0 {
            return Err(Error::invalid(
                cert.serial,
                "its home server's answer needs too many historical roots",
            ));
        }
        *budget -= 1;
        let at = api::get_server_idcert::Query {
            timestamp: Some(cert.not_before),
        };
        let cacheable: CacheableIdCert = self
            .0
            .remote
            .get_json(
                domain.as_str(),
                &home.base,
                api::get_server_idcert::target(),
                &at,
            )
            .await
            .map_err(|e| Error::home(domain, e))?
            .ok_or_else(|| Error::invalid(cert.serial, "its home server has no root for it"))?;
        let root = check_root(&cacheable, domain, Some(&current.key))
            .map_err(|why| Error::invalid(cert.serial, format!("the root of its time {why}")))?;
        let mut old = lock(&self.0.old_roots);
        if old.len() >= CACHE_SWEEP_AT {
            old.clear();
        }
        let roots = old.entry(domain.to_string()).or_default();
        if roots.len() >= MAX_OLD_ROOTS {
            roots.remove(0);
        }
        roots.push(root.clone());
        Ok(root)
    }

    /// The home server's list for `fid`, as sent.
    async fn fetch_entries(
        &self,
        fid: &FederationId,
        now: u64,
    ) -> Result<(Home, IdCert, Vec<CacheableIdCert>), Error> {
        let domain = fid.domain();
        let home = self.home(domain, now).await?;
        let current = self.current_root(domain, &home, now).await?;
        // The target escapes the FID: a '%' in a local name is itself, not an escape.
        let target = api::get_actor_idcerts::target(fid);
        let entries: Vec<CacheableIdCert> = self
            .0
            .remote
            .get_json(domain.as_str(), &home.base, target, &())
            .await
            .map_err(|e| Error::home(domain, e))?
            .unwrap_or_default();
        Ok((home, current, entries))
    }

    /// Checks one entry of `fid`'s list completely (chain, FID, cache signature).
    async fn check_entry(
        &self,
        fid: &FederationId,
        home: &Home,
        current: &IdCert,
        cacheable: CacheableIdCert,
        now: u64,
        budget: &mut u32,
    ) -> Result<ForeignCert, Error> {
        let parsed = IdCert::parse(cacheable.id_cert_pem.as_bytes())
            .map_err(|e| Error::invalid(Serial(0), format!("does not parse: {e}")))?;
        let root = self
            .issuer(fid.domain(), home, current, &parsed, budget)
            .await?;
        let cert = check_actor_entry(&cacheable, fid, &root, &current.key)
            .map_err(|why| Error::invalid(parsed.serial, why))?;
        let until = window_end(&cacheable, cert.not_after, now);
        Ok(ForeignCert {
            cacheable,
            cert,
            until,
        })
    }

    fn cache_cert(&self, fid: &FederationId, c: &ForeignCert, now: u64) {
        if in_window(c, now) {
            bounded_insert(
                &self.0.certs,
                (fid.to_string(), c.cert.serial.0),
                c.clone(),
                |c| in_window(c, now),
            );
        }
    }

    /// The certificate `serial` of `fid`, checked completely (see the module docs). From the
    /// cache while its signed window lasts, unless `fresh` (a status check, OP-39). Only the
    /// entry asked for is checked and cached: a home server's long list costs us nothing.
    pub async fn verified_cert(
        &self,
        fid: &FederationId,
        serial: u64,
        now: u64,
        fresh: bool,
    ) -> Result<ForeignCert, Error> {
        let key = (fid.to_string(), serial);
        let cached = lock(&self.0.certs)
            .get(&key)
            .filter(|c| !fresh && in_window(c, now))
            .cloned();
        // A cached entry is judged like a fresh one: a revoked certificate stays revoked.
        if let Some(c) = cached {
            return usable(c, now);
        }
        let not_found = || Error::CertNotFound {
            fid: fid.to_string(),
            serial,
        };
        let (home, current, entries) = self.fetch_entries(fid, now).await?;
        let entry = entries
            .into_iter()
            .find(|e| IdCert::parse(e.id_cert_pem.as_bytes()).is_ok_and(|c| c.serial.0 == serial))
            .ok_or_else(not_found)?;
        let mut budget = MAX_OLD_ROOT_FETCHES;
        let checked = self
            .check_entry(fid, &home, &current, entry, now, &mut budget)
            .await?;
        self.cache_cert(fid, &checked, now);
        usable(checked, now)
    }

    /// Every certificate the home server lists for `fid` (at most `MAX_LISTED`), each
    /// checked and cached; the answers are passed on unchanged (core §6.4). Revoked and
    /// expired ones are included (callers decide), entries that fail a check are an error.
    pub async fn fetch_certs(
        &self,
        fid: &FederationId,
        now: u64,
    ) -> Result<Vec<ForeignCert>, Error> {
        let (home, current, entries) = self.fetch_entries(fid, now).await?;
        if entries.len() > MAX_LISTED {
            return Err(Error::home(
                fid.domain(),
                remote::RemoteError::Garbage {
                    host: fid.domain().to_string(),
                    reason: format!("more than {MAX_LISTED} certificates for one actor"),
                },
            ));
        }
        let mut budget = MAX_OLD_ROOT_FETCHES;
        let mut out = Vec::with_capacity(entries.len());
        for cacheable in entries {
            out.push(
                self.check_entry(fid, &home, &current, cacheable, now, &mut budget)
                    .await?,
            );
        }
        for c in &out {
            self.cache_cert(fid, c, now);
        }
        Ok(out)
    }

    /// Waits for the turn to fetch `key`'s list; held until the answer is cached.
    async fn list_fetch_turn(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let turn = {
            let mut map = lock(&self.0.list_fetches);
            if map.len() >= CACHE_SWEEP_AT {
                map.retain(|_, m| Arc::strong_count(m) > 1);
            }
            map.entry(key.to_owned()).or_default().clone()
        };
        turn.lock_owned().await
    }

    /// `GET /idcert/actor/{fid}` for a foreign actor known here: the home server's entries,
    /// unchanged, that match the route's filters (as for our own actors). The checked answer
    /// is kept until the first current window among its entries ends; an answer without one
    /// (a failure, or only stale entries) for `LIST_RETRY_S`. However often it is asked, a
    /// list costs one fetch and one check per window.
    pub async fn foreign_actor_certs(
        &self,
        fid: &FederationId,
        q: &api::get_actor_idcerts::Query,
        now: u64,
    ) -> Result<Vec<CacheableIdCert>, Error> {
        let key = fid.to_string();
        let cached = || {
            lock(&self.0.lists)
                .get(&key)
                .filter(|c| c.until > now)
                .map(|c| c.answer.clone())
        };
        let mut answer = cached();
        let mut _one_fetch: Option<tokio::sync::OwnedMutexGuard<()>> = None;
        if answer.is_none() {
            _one_fetch = Some(self.list_fetch_turn(&key).await);
            // Whoever had the turn before us may have fetched it.
            answer = cached();
        }
        let answer = match answer {
            Some(answer) => answer,
            None => {
                let answer = self.fetch_certs(fid, now).await.map(|certs| {
                    Arc::new(
                        certs
                            .into_iter()
                            .map(|c| Listed {
                                not_before: c.cert.not_before,
                                not_after: c.cert.not_after,
                                session_id: c.cert.session_id().map(|s| s.to_string()),
                                cacheable: c.cacheable,
                            })
                            .collect::<Vec<_>>(),
                    )
                });
                // Our own in-flight cap says nothing about the home server: not kept.
                let ours = matches!(
                    &answer,
                    Err(Error::HomeServer {
                        source: remote::RemoteError::Busy { .. },
                        ..
                    })
                );
                if !ours {
                    let until = list_until(answer.as_deref().ok(), now);
                    let entry = CachedList {
                        answer: answer.clone(),
                        until,
                    };
                    bounded_insert(&self.0.lists, key, entry, |c| c.until > now);
                }
                answer
            }
        };
        Ok(answer?
            .iter()
            .filter(|e| q.selects(e.not_before, e.not_after, e.session_id.as_deref()))
            .map(|e| e.cacheable.clone())
            .collect())
    }
}

/// Until when a list answer is reused: the first end among the signed windows that include
/// now; `LIST_RETRY_S` when there is none (a failure, an empty list, only stale entries).
fn list_until(list: Option<&Vec<Listed>>, now: u64) -> u64 {
    list.into_iter()
        .flatten()
        .filter(|e| e.cacheable.window_contains(now))
        .map(|e| window_end(&e.cacheable, e.not_after, now))
        .min()
        .filter(|until| *until > now)
        .unwrap_or(now + LIST_RETRY_S)
}

/// May stand in for asking the home server now: its signed window has begun and not ended.
fn in_window(c: &ForeignCert, now: u64) -> bool {
    c.until > now && c.cacheable.window_contains(now)
}

/// Usable for a new verification now: inside its window and validity, not revoked.
fn usable(c: ForeignCert, now: u64) -> Result<ForeignCert, Error> {
    let serial = c.cert.serial;
    if let Some(at) = c.cacheable.invalidated_at {
        return Err(Error::Revoked {
            serial: serial.0,
            at,
        });
    }
    if !c.cacheable.window_contains(now) {
        return Err(Error::invalid(
            serial,
            "its cache window does not include now",
        ));
    }
    c.cert
        .valid_at(now)
        .map_err(|e| Error::invalid(serial, format!("not valid now: {e}")))?;
    Ok(c)
}

/// The end of a signed window, never beyond the certificate nor beyond what the spec allows.
fn window_end(c: &CacheableIdCert, not_after: u64, now: u64) -> u64 {
    c.not_valid_after
        .min(not_after)
        .min(c.not_valid_before.saturating_add(MAX_WINDOW_S))
        .min(now.saturating_add(MAX_WINDOW_S))
}

/// Inserts into a cache map; past `CACHE_SWEEP_AT` entries, drops those `keep` rejects, and
/// if that is not enough, everything (a hostile peer must not grow our memory).
fn bounded_insert<K: std::hash::Hash + Eq, V>(
    map: &Mutex<HashMap<K, V>>,
    key: K,
    value: V,
    keep: impl Fn(&V) -> bool,
) {
    let mut m = lock(map);
    if m.len() >= CACHE_SWEEP_AT {
        m.retain(|_, v| keep(v));
        if m.len() >= CACHE_SWEEP_AT {
            m.clear();
        }
    }
    m.insert(key, value);
}
