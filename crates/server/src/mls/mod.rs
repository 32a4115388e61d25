//! polyproto-mls: the home server as MLS authentication service and delivery service
//! (mls.md §2; docs/decisions.md, "End-to-end encryption").
//!
//! **Authentication.** A credential is bound to an actor by its ID-Cert: an X.509
//! credential whose first certificate is the device's ID-Cert, whose key is the leaf's
//! signature key. A local device's certificate must be ours, unrevoked and valid; a foreign
//! one is checked at its home server (`federation`). A KeyPackage is checked with openmls
//! (signature, lifetime, capabilities) and must carry the uploader's current certificate.
//!
//! **Delivery.** KeyPackages are handed out once, one per device; Welcomes go to the one
//! device whose package they name. The server follows every group's public state with
//! openmls' `PublicGroup` — never a secret of it —, so it knows the member devices, checks
//! each proposal and commit against the epoch (exactly one commit wins it), and fans them
//! out on the group's stream.

mod error;
mod joins;
pub mod routes;
mod wire;

pub use joins::FugueMlsChannel;

use std::sync::Arc;

use futures_util::future::BoxFuture;
use openmls::prelude::{
    Ciphersuite, GroupEpoch, GroupId, KeyPackage, KeyPackageIn, MlsMessageBodyIn,
    ProcessedMessageContent, Proposal as MlsProposal, ProposalOrRefType, ProposalStore,
    ProtocolMessage, ProtocolVersion, PublicGroup, Sender, StagedCommit,
};
use openmls_rust_crypto::{MemoryStorage, RustCrypto};
use serde::Serialize;

use fugue_proto::certs::IdCert;
use fugue_proto::mls::{
    self as model, CommitEvent, DeviceEvent, KeyPackageRefusal, KeyPackagesLow, MLS, MemberRole,
    ProposalEvent, WelcomeEvent, op,
};
use fugue_proto::{DomainName, FederationId};
use fugue_store::{KeyPackageRow, MlsGroupRow, MlsMemberRow, MlsProposalRow, Store};

pub use error::Error;

use crate::chat::{ChannelAccess, Chat};
use crate::events::{Audience, Events, Publish};
use crate::federation::Federation;
use crate::gateway::{Follow, Service, View};
use crate::http::ApiError;
use crate::ids::{ActorId, SessionPk, StreamId, from_store, to_store};
use crate::principal::{Actor, stored_name};
use crate::sessions::{Authed, RevocationObserver};
use crate::time::UnixTime;

/// The one suite (mls.md §1.1).
const SUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;
/// Claims of one actor's packages by one requester per window.
const CLAIMS_PER_WINDOW: i64 = 30;
const CLAIM_WINDOW_S: i64 = 3600;
/// Longest MLS object accepted in a request (base64 characters).
const MAX_MESSAGE_B64: usize = 4 * 1024 * 1024;

/// The MLS domain.
#[derive(Clone)]
pub struct Mls(Arc<Inner>);

pub struct Inner {
    store: Store,
    events: Events,
    federation: Federation,
    /// Who reads an encrypted channel, and the rules of DMs and groups.
    chat: Chat,
    domain: DomainName,
    crypto: RustCrypto,
}

/// A device as its credential names it, checked.
#[derive(Debug, Clone)]
struct Device {
    actor_id: i64,
    fid: FederationId,
    session: String,
    serial: u64,
}

use crate::chat::json;

/// A model as stored (our model types always serialise).
fn text(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn epoch_of(e: GroupEpoch) -> Result<u32, Error> {
    u32::try_from(e.as_u64()).map_err(|_| Error::Mls("epochs beyond 2^32 are not kept".into()))
}

/// Where a group's events go (its stream; one per group).
fn stream(g: &MlsGroupRow) -> StreamId {
    StreamId::from_store(g.stream_id)
}

/// The follower view of a group's stream: every event of it.
struct Whole;

impl View for Whole {
    fn sees(&self, _: i64) -> bool {
        true
    }
}

impl Mls {
    pub fn new(
        store: Store,
        events: Events,
        federation: Federation,
        chat: Chat,
        domain: DomainName,
    ) -> Self {
        Self(Arc::new(Inner {
            store,
            events,
            federation,
            chat,
            domain,
            crypto: RustCrypto::default(),
        }))
    }

    /// The device a credential names, checked now: its ID-Cert ours (unrevoked, valid) or
    /// its home server's, naming the actor and session, with `key` as its key.
    async fn device(
        &self,
        credential: &openmls::prelude::Credential,
        key: &[u8],
        now: UnixTime,
    ) -> Result<Device, Error> {
        let cert = wire::credential_cert(credential).map_err(Error::Mls)?;
        if cert.key.as_bytes().as_slice() != key {
            return Err(Error::Mls(
                "the leaf's signature key is not the key of the credential's ID-Cert".into(),
            ));
        }
        let fid = cert
            .fid()
            .ok_or_else(|| Error::Mls("the credential's ID-Cert names no actor".into()))?;
        let session = cert
            .session_id()
            .ok_or_else(|| Error::Mls("the credential's ID-Cert names no session".into()))?
            .to_string();
        let serial = cert.serial.0;
        let actor_id = if fid.domain() == &self.0.domain {
            let row = self
                .0
                .store
                .cert_by_serial(to_store(serial))
                .await?
                .ok_or_else(|| Error::Mls(format!("certificate {serial} is not one of ours")))?;
            let ours = IdCert::parse(row.cert_pem.as_bytes())
                .map_err(|e| Error::Store(fugue_store::Error::Decode(e.to_string())))?;
            if ours.der != cert.der {
                return Err(Error::Mls(format!(
                    "the credential's certificate is not our certificate {serial}"
                )));
            }
            if row.revoked_at.is_some() {
                return Err(Error::Mls(format!("certificate {serial} is revoked")));
            }
            ours.valid_at(now.secs())
                .map_err(|e| Error::Mls(format!("certificate {serial}: {e}")))?;
            row.actor_id
        } else {
            let checked = self
                .0
                .federation
                .verified_cert(&fid, serial, now.secs(), false)
                .await?;
            if checked.cert.der != cert.der {
                return Err(Error::Mls(format!(
                    "the credential's certificate is not {fid}'s certificate {serial}"
                )));
            }
            self.0
                .store
                .foreign_actor(
                    &stored_name(&fid, &self.0.domain),
                    crate::chat::random_id(),
                    to_store(now.secs()),
                )
                .await?
                .id
        };
        Ok(Device {
            actor_id,
            fid,
            session,
            serial,
        })
    }

    /// The JSON model of a package the server saw in a proposal or commit, named by its
    /// KeyPackageRef (hex).
    fn package_model(&self, kp: &KeyPackage) -> Result<model::KeyPackage, Error> {
        let hash = kp
            .hash_ref(&self.0.crypto)
            .map_err(|e| Error::Mls(e.to_string()))?;
        wire::key_package_model(kp, hex::encode(hash.as_slice())).map_err(Error::Mls)
    }

    /// A KeyPackage from its `fugue:mls`, checked by openmls and for our suite, with the
    /// device its credential names.
    async fn key_package(
        &self,
        m: &model::KeyPackage,
        now: UnixTime,
    ) -> Result<(KeyPackage, Device, String), String> {
        if !model::valid_key_package_id(&m.id) {
            return Err("id must be 8 to 128 printable characters".into());
        }
        let encoded = wire::required("fugue:mls", m.mls.as_ref())?;
        let bytes = wire::bytes("fugue:mls", encoded, model::MAX_KEY_PACKAGE_B64)?;
        let MlsMessageBodyIn::KeyPackage(kp) = wire::message("fugue:mls", &bytes)? else {
            return Err("fugue:mls holds no KeyPackage".into());
        };
        let kp: KeyPackageIn = kp;
        let kp = kp
            .validate(&self.0.crypto, ProtocolVersion::Mls10)
            .map_err(|e| format!("the KeyPackage does not verify: {e}"))?;
        if kp.ciphersuite() != SUITE {
            return Err(format!(
                "cipher suite {} is not supported; only {} ({})",
                model::code(u16::from(kp.ciphersuite())),
                model::code(model::CIPHERSUITE),
                model::CIPHERSUITE_NAME
            ));
        }
        let caps = kp.leaf_node().capabilities();
        if !caps.ciphersuites().iter().any(|c| *c == SUITE.into()) {
            return Err("its capabilities do not list cipher suite 0x0001".into());
        }
        if kp.last_resort() != m.last_resort {
            return Err("lastResort disagrees with the KeyPackage's last_resort extension".into());
        }
        let derived = wire::key_package_model(&kp, m.id.clone())?;
        if derived.public_key != m.public_key || derived.signature != m.signature {
            return Err("publicKey or signature disagrees with the KeyPackage".into());
        }
        let leaf = kp.leaf_node();
        let device = self
            .device(leaf.credential(), leaf.signature_key().as_slice(), now)
            .await
            .map_err(|e| e.to_string())?;
        Ok((kp, device, text(&derived)))
    }

    /// `POST /keypackages`: the calling device's packages, each checked; all or none.
    pub async fn upload(
        &self,
        authed: &Authed,
        packages: Vec<model::KeyPackage>,
        now: UnixTime,
    ) -> Result<(), Error> {
        if packages.len() > model::MAX_KEY_PACKAGES_PER_UPLOAD {
            return Err(Error::KeyPackagesFull(model::MAX_KEY_PACKAGES_PER_DEVICE));
        }
        let serial = authed
            .session
            .cert_serial
            .ok_or_else(|| Error::Forbidden("the session has no certificate yet".into()))?;
        let mut rows = Vec::new();
        let mut refused = Vec::new();
        for m in &packages {
            let refuse = |reason: String| KeyPackageRefusal {
                id: m.id.clone(),
                reason,
            };
            if packages.iter().filter(|o| o.id == m.id).count() > 1 {
                refused.push(refuse("the id appears twice in the upload".into()));
                continue;
            }
            let (kp, device, body) = match self.key_package(m, now).await {
                Ok(v) => v,
                Err(reason) => {
                    refused.push(refuse(reason));
                    continue;
                }
            };
            if device.actor_id != authed.actor.id.to_store()
                || device.serial != serial.0
                || device.session != authed.session.id
            {
                refused.push(refuse(format!(
                    "the credential is not this device's current certificate ({serial})"
                )));
                continue;
            }
            let hash_ref = kp
                .hash_ref(&self.0.crypto)
                .map_err(|e| Error::Mls(e.to_string()))?;
            rows.push(KeyPackageRow {
                actor_id: authed.actor.id.to_store(),
                session_pk: authed.session.pk.to_store(),
                serial: to_store(serial.0),
                id: m.id.clone(),
                hash_ref: hash_ref.as_slice().to_vec(),
                body,
                last_resort: kp.last_resort(),
                expires_at: to_store(
                    kp.life_time().not_after().min(
                        authed
                            .session
                            .cert_not_after
                            .map_or(u64::MAX, UnixTime::secs),
                    ),
                ),
                created_at: to_store(now.secs()),
            });
        }
        if !refused.is_empty() {
            return Err(Error::KeyPackages(refused));
        }
        let max = i64::try_from(model::MAX_KEY_PACKAGES_PER_DEVICE).unwrap_or(i64::MAX);
        match self.0.store.insert_key_packages(&rows, max).await {
            Ok(()) => Ok(()),
            Err(fugue_store::Error::Conflict(fugue_store::Conflict::KeyPackagesFull)) => {
                Err(Error::KeyPackagesFull(model::MAX_KEY_PACKAGES_PER_DEVICE))
            }
            Err(fugue_store::Error::Conflict(fugue_store::Conflict::KeyPackageTaken)) => {
                Err(Error::KeyPackages(
                    packages
                        .iter()
                        .map(|m| KeyPackageRefusal {
                            id: m.id.clone(),
                            reason: "a KeyPackage with this id or content is stored already".into(),
                        })
                        .collect(),
                ))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// `GET /keypackages/{fid}`: one package per device of a local actor, each handed out
    /// once (a device's last-resort package when it has no other), within the filters.
    pub async fn claim(
        &self,
        authed: &Authed,
        fid: &FederationId,
        q: &fugue_proto::api::claim_key_packages::Query,
        now: UnixTime,
    ) -> Result<Vec<model::KeyPackage>, Error> {
        let list = |v: &Option<String>| -> Vec<String> {
            v.as_deref()
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let suites = list(&Some(q.ciphersuites.clone()));
        if suites.is_empty() {
            return Err(Error::Invalid("ciphersuites must name at least one".into()));
        }
        let mut codes = Vec::new();
        for s in &suites {
            codes.push(
                model::parse_code(s)
                    .ok_or_else(|| Error::Invalid(format!("{s} is no cipher suite")))?,
            );
        }
        let versions = list(&q.versions);
        let mut extensions = Vec::new();
        for e in list(&q.extensions) {
            extensions.push(
                model::parse_code(&e)
                    .ok_or_else(|| Error::Invalid(format!("{e} is no extension type")))?,
            );
        }
        if fid.domain() != &self.0.domain {
            return Err(Error::ActorNotFound(fid.to_string()));
        }
        let target = self
            .0
            .store
            .actor_by_name(fid.local_name().as_str())
            .await?
            .filter(|a| a.deleted_at.is_none())
            .ok_or_else(|| Error::ActorNotFound(fid.to_string()))?;
        // Nothing is handed out that the filters would drop: every package is 0x0001 and 1.0.
        let suite_ok = codes.contains(&model::CIPHERSUITE);
        let version_ok = versions.is_empty() || versions.iter().any(|v| v == model::VERSION_1_0);
        if !suite_ok || !version_ok {
            return Ok(Vec::new());
        }
        let claim = match self
            .0
            .store
            .claim_key_packages(
                authed.actor.id.to_store(),
                target.id,
                to_store(now.secs()),
                CLAIM_WINDOW_S,
                CLAIMS_PER_WINDOW,
            )
            .await
        {
            Err(fugue_store::Error::Conflict(fugue_store::Conflict::Throttled)) => {
                return Err(Error::Throttled {
                    retry_after: from_store(CLAIM_WINDOW_S),
                });
            }
            other => other?,
        };
        // Each device a package was taken from, with what it has left (a device with none
        // left has no row there).
        let mut taken: Vec<i64> = claim.packages.iter().map(|p| p.session_pk).collect();
        taken.sort_unstable();
        taken.dedup();
        for session in taken {
            let (left, last_resort) = claim
                .left
                .iter()
                .find(|(s, _, _)| *s == session)
                .map_or((0, false), |(_, l, r)| (*l, *r));
            if usize::try_from(left).unwrap_or(0) < model::KEY_PACKAGES_LOW {
                self.low(target.id, session, left, last_resort).await;
            }
        }
        let mut out = Vec::new();
        for p in claim.packages {
            let kp: model::KeyPackage = serde_json::from_str(&p.body)
                .map_err(|e| Error::Store(fugue_store::Error::Decode(e.to_string())))?;
            let has_all = extensions.iter().all(|e| {
                kp.capabilities
                    .extensions
                    .iter()
                    .any(|x| model::parse_code(x) == Some(*e))
            });
            if has_all {
                out.push(kp);
            }
        }
        Ok(out)
    }

    /// Tells a device its ordinary packages run low (op 3, to that session only).
    async fn low(&self, actor_id: i64, session_pk: i64, left: i64, last_resort: bool) {
        let d = KeyPackagesLow {
            remaining: from_store(left),
            last_resort,
        };
        let p = Publish::to_actor(
            ActorId::from_store(actor_id),
            MLS,
            op::KEY_PACKAGES_LOW,
            json(&d),
        )
        .audience(Audience::Session(SessionPk::from_store(session_pk)))
        .collapse(format!("mls-low:{session_pk}"));
        if let Err(e) = self.0.events.publish(p).await {
            tracing::warn!(error = %e, "KeyPackages-low event not written");
        }
    }

    /// A group the caller has a device in, with its members; 404 for everyone else.
    async fn visible(
        &self,
        authed: &Authed,
        id: &str,
    ) -> Result<(MlsGroupRow, Vec<MlsMemberRow>), Error> {
        let missing = || Error::GroupNotFound(id.to_owned());
        if !model::valid_group_id(id) {
            return Err(missing());
        }
        let g = self.0.store.mls_group(id).await?.ok_or_else(missing)?;
        let members = self.0.store.mls_members(id).await?;
        if !members
            .iter()
            .any(|m| m.actor_id == authed.actor.id.to_store())
        {
            return Err(missing());
        }
        Ok((g, members))
    }

    fn member_model(&self, m: &MlsMemberRow) -> Result<model::GroupMember, Error> {
        let decode = |e: String| Error::Store(fugue_store::Error::Decode(e));
        Ok(model::GroupMember {
            id: m.leaf.to_string(),
            key_package: serde_json::from_str(&m.key_package).map_err(|e| decode(e.to_string()))?,
            role: if m.role == "Admin" {
                MemberRole::Admin
            } else {
                MemberRole::Member
            },
            fid: m
                .fid
                .parse()
                .map_err(|_| Error::Store(fugue_store::Error::Decode("member FID".into())))?,
            session: m.session.clone(),
            serial: from_store(m.serial),
        })
    }

    fn group_model(
        &self,
        g: &MlsGroupRow,
        members: &[MlsMemberRow],
    ) -> Result<model::Group, Error> {
        Ok(model::Group {
            id: g.id.clone(),
            epoch: u32::try_from(g.epoch).unwrap_or(u32::MAX),
            members: members
                .iter()
                .map(|m| self.member_model(m))
                .collect::<Result<_, _>>()?,
            public_key: g.public_key.clone(),
        })
    }

    /// `POST /groups`: a group at epoch 0 whose one member is the calling device.
    pub async fn create_group(
        &self,
        authed: &Authed,
        req: model::CreateGroup,
        now: UnixTime,
    ) -> Result<model::Group, Error> {
        let (kp, device, body) = self
            .key_package(&req.key_package, now)
            .await
            .map_err(Error::Mls)?;
        self.require_caller(authed, &device)?;
        let info =
            wire::required("fugue:groupInfo", req.group_info.as_ref()).map_err(Error::Mls)?;
        let bytes = wire::bytes("fugue:groupInfo", info, MAX_MESSAGE_B64).map_err(Error::Mls)?;
        let MlsMessageBodyIn::GroupInfo(info) =
            wire::message("fugue:groupInfo", &bytes).map_err(Error::Mls)?
        else {
            return Err(Error::Mls("fugue:groupInfo holds no GroupInfo".into()));
        };
        if info.ciphersuite() != SUITE {
            return Err(Error::Mls("the group's cipher suite is not 0x0001".into()));
        }
        let tree = info
            .extensions()
            .ratchet_tree()
            .ok_or_else(|| Error::Mls("the GroupInfo carries no ratchet_tree extension".into()))?
            .ratchet_tree()
            .clone();
        let storage = MemoryStorage::default();
        let (group, info) =
            PublicGroup::from_external(&self.0.crypto, &storage, tree, info, ProposalStore::new())
                .map_err(|e| Error::Mls(format!("the GroupInfo does not check out: {e}")))?;
        let id = hex::encode(group.group_id().as_slice());
        if !model::valid_group_id(&id) {
            return Err(Error::Invalid(
                "the MLS group id must be 16 to 32 bytes".into(),
            ));
        }
        let members: Vec<_> = group.members().collect();
        let [creator] = members.as_slice() else {
            return Err(Error::Mls(
                "a new group has its creator's device alone".into(),
            ));
        };
        if group.group_context().epoch().as_u64() != 0
            || creator.signature_key != kp.leaf_node().signature_key().as_slice()
        {
            return Err(Error::Mls(
                "the GroupInfo is not of a new group of the KeyPackage's device".into(),
            ));
        }
        let public_key = info
            .extensions()
            .external_pub()
            .map(|e| wire::b64(e.external_pub().as_slice()))
            .unwrap_or_default();
        let g = MlsGroupRow {
            id: id.clone(),
            stream_id: crate::chat::random_id(),
            epoch: 0,
            state: wire::encode_state(&storage),
            creator_id: authed.actor.id.to_store(),
            public_key,
            latest_commit: None,
            created_at: to_store(now.secs()),
        };
        let member = MlsMemberRow {
            leaf: 0,
            actor_id: device.actor_id,
            fid: device.fid.to_string(),
            serial: to_store(device.serial),
            session: device.session.clone(),
            key_package: body,
            role: "Admin".into(),
            since: None,
        };
        let joined = DeviceEvent {
            group_id: id.clone(),
            epoch: 0,
            member_id: "0".into(),
            fid: device.fid.clone(),
            session: device.session.clone(),
            more_devices: false,
        };
        let p = Publish::new(stream(&g), MLS, op::DEVICE_JOINED, json(&joined));
        let seq = match self
            .0
            .store
            .create_mls_group(&g, &member, authed.session.pk.to_store(), &p.to_new(now))
            .await
        {
            Err(fugue_store::Error::Conflict(fugue_store::Conflict::GroupTaken)) => {
                return Err(Error::GroupExists(id));
            }
            other => other?,
        };
        self.0.events.appended(p, seq, now).await;
        // The creator's connections follow the new stream from here.
        self.0
            .events
            .publish(
                Publish::to_actor(authed.actor.id, MLS, op::DEVICE_JOINED, json(&joined))
                    .audience(Audience::Session(authed.session.pk))
                    .changes_access(),
            )
            .await
            .map_err(|e| Error::Store(fugue_store::Error::Decode(e.to_string())))?;
        let rows = self.0.store.mls_members(&id).await?;
        self.group_model(&g, &rows)
    }

    fn require_caller(&self, authed: &Authed, device: &Device) -> Result<(), Error> {
        if device.actor_id != authed.actor.id.to_store() {
            return Err(Error::Forbidden(format!(
                "the credential is {}'s, not the caller's",
                device.fid
            )));
        }
        Ok(())
    }

    pub async fn group(&self, authed: &Authed, id: &str) -> Result<model::Group, Error> {
        let (g, members) = self.visible(authed, id).await?;
        self.group_model(&g, &members)
    }

    pub async fn members(
        &self,
        authed: &Authed,
        id: &str,
    ) -> Result<Vec<model::GroupMember>, Error> {
        let (_, members) = self.visible(authed, id).await?;
        members.iter().map(|m| self.member_model(m)).collect()
    }

    pub async fn member(
        &self,
        authed: &Authed,
        id: &str,
        member: &str,
    ) -> Result<model::GroupMember, Error> {
        let (_, members) = self.visible(authed, id).await?;
        members
            .iter()
            .find(|m| m.leaf.to_string() == member)
            .ok_or_else(|| Error::MemberNotFound(member.to_owned()))
            .and_then(|m| self.member_model(m))
    }

    /// The group's public state at its epoch, the proposals pending in it applied.
    fn load(
        &self,
        g: &MlsGroupRow,
        pending: &[MlsProposalRow],
    ) -> Result<(PublicGroup, MemoryStorage), Error> {
        let storage = wire::decode_state(&g.state)?;
        let gid = GroupId::from_slice(&hex::decode(&g.id).unwrap_or_default());
        let mut group = PublicGroup::load(&storage, &gid)
            .map_err(|e| Error::Store(fugue_store::Error::Decode(e.to_string())))?
            .ok_or_else(|| Error::Store(fugue_store::Error::Decode("MLS group state".into())))?;
        for p in pending {
            let m: model::Proposal = serde_json::from_str(&p.body)
                .map_err(|e| Error::Store(fugue_store::Error::Decode(e.to_string())))?;
            if let Ok((_, ProcessedMessageContent::ProposalMessage(q))) = self
                .protocol_message(m.mls.as_ref())
                .and_then(|pm| self.process(&group, pm))
            {
                let _ = group.add_proposal(&storage, *q);
            }
        }
        Ok((group, storage))
    }

    fn protocol_message(&self, field: Option<&String>) -> Result<ProtocolMessage, Error> {
        let encoded = wire::required("fugue:mls", field).map_err(Error::Mls)?;
        let bytes = wire::bytes("fugue:mls", encoded, MAX_MESSAGE_B64).map_err(Error::Mls)?;
        match wire::message("fugue:mls", &bytes).map_err(Error::Mls)? {
            MlsMessageBodyIn::PublicMessage(m) => Ok(ProtocolMessage::from(m)),
            MlsMessageBodyIn::PrivateMessage(_) => Err(Error::Mls(
                "handshake messages must be public messages: the server checks them".into(),
            )),
            _ => Err(Error::Mls("fugue:mls holds no proposal or commit".into())),
        }
    }

    fn process(
        &self,
        group: &PublicGroup,
        m: ProtocolMessage,
    ) -> Result<(Sender, ProcessedMessageContent), Error> {
        let current = group.group_context().epoch();
        if m.epoch() != current {
            return Err(Error::StaleEpoch {
                current: epoch_of(current)?,
            });
        }
        group
            .process_message(&self.0.crypto, m)
            .map(|p| (p.sender().clone(), p.into_content()))
            .map_err(|e| Error::Mls(format!("it does not verify against the group: {e}")))
    }

    /// The member row of a sender, which must be a device of the caller.
    fn sender<'a>(
        authed: &Authed,
        sender: &Sender,
        members: &'a [MlsMemberRow],
    ) -> Result<&'a MlsMemberRow, Error> {
        let Sender::Member(leaf) = sender else {
            return Err(Error::Forbidden(
                "only member devices propose and commit here".into(),
            ));
        };
        let m = members
            .iter()
            .find(|m| m.leaf == i64::from(leaf.u32()))
            .ok_or_else(|| Error::Mls("the sender is no member".into()))?;
        if m.actor_id != authed.actor.id.to_store() {
            return Err(Error::Forbidden(
                "the sender is another actor's device".into(),
            ));
        }
        Ok(m)
    }

    /// `POST /groups/{id}/proposals`.
    pub async fn propose(
        &self,
        authed: &Authed,
        id: &str,
        req: model::Proposal,
        now: UnixTime,
    ) -> Result<(), Error> {
        let (g, members) = self.visible(authed, id).await?;
        if req.id.is_empty() || req.id.len() > 128 {
            return Err(Error::Invalid(
                "a proposal's id is 1 to 128 characters".into(),
            ));
        }
        let pending = self.0.store.mls_proposals(id, g.epoch).await?;
        let (group, _) = self.load(&g, &pending)?;
        let m = self.protocol_message(req.mls.as_ref())?;
        let (_, ProcessedMessageContent::ProposalMessage(q)) = self.process(&group, m)? else {
            return Err(Error::Mls("fugue:mls holds no proposal".into()));
        };
        let sender = Self::sender(authed, q.sender(), &members)?;
        self.rules(authed, &g, sender, &members, &[(q.proposal(), true)], now)
            .await?;
        let derived = self.proposal_model(
            req.id.clone(),
            q.proposal(),
            req.signature.clone(),
            req.mls.clone(),
        )?;
        let epoch = epoch_of(group.group_context().epoch())?;
        let d = ProposalEvent {
            group_id: g.id.clone(),
            epoch,
            proposal: derived.clone(),
        };
        let p = Publish::new(stream(&g), MLS, op::PROPOSAL, json(&d));
        let row = MlsProposalRow {
            group_id: g.id.clone(),
            epoch: g.epoch,
            id: req.id.clone(),
            body: text(&derived),
            created_at: to_store(now.secs()),
        };
        let seq = match self.0.store.insert_mls_proposal(&row, &p.to_new(now)).await {
            Err(fugue_store::Error::Conflict(fugue_store::Conflict::StaleEpoch)) => {
                return Err(self.stale(id).await);
            }
            Err(fugue_store::Error::Conflict(fugue_store::Conflict::ProposalTaken)) => {
                return Err(Error::ProposalExists(req.id));
            }
            other => other?,
        };
        self.0.events.appended(p, seq, now).await;
        Ok(())
    }

    async fn stale(&self, id: &str) -> Error {
        match self.0.store.mls_group(id).await {
            Ok(Some(g)) => Error::StaleEpoch {
                current: u32::try_from(g.epoch).unwrap_or(u32::MAX),
            },
            Ok(None) => Error::GroupNotFound(id.to_owned()),
            Err(e) => e.into(),
        }
    }

    /// The group's rules for what `committer` proposes or commits, checked before anything
    /// is stored: every added device's credential (the authentication service's check), and
    /// who may add or remove whom — the channel's rules when the group encrypts one, else
    /// only the group's admins (its creator's devices) remove other actors' devices; a
    /// device whose certificate was revoked goes by any member's commit. Returns the added
    /// packages with their devices.
    async fn rules(
        &self,
        authed: &Authed,
        g: &MlsGroupRow,
        committer: &MlsMemberRow,
        members: &[MlsMemberRow],
        proposals: &[(&MlsProposal, bool)],
        now: UnixTime,
    ) -> Result<Vec<(KeyPackage, Device)>, Error> {
        let mut added = Vec::new();
        // What `committer` proposes itself (by value): proposals by reference were judged as
        // their sender's when they were submitted.
        let mut own_adds = Vec::new();
        let mut removed = Vec::new();
        for (p, own) in proposals {
            match p {
                MlsProposal::Add(a) => {
                    let kp = a.key_package();
                    let leaf = kp.leaf_node();
                    let device = self
                        .device(leaf.credential(), leaf.signature_key().as_slice(), now)
                        .await?;
                    if *own {
                        own_adds.push((kp.clone(), device.clone()));
                    }
                    added.push((kp.clone(), device));
                }
                MlsProposal::Remove(_) if !own => {}
                MlsProposal::Remove(r) => {
                    let Some(m) = members
                        .iter()
                        .find(|m| m.leaf == i64::from(r.removed().u32()))
                    else {
                        continue;
                    };
                    // A device whose certificate was revoked here goes by anyone's commit.
                    if !self.revoked_here(m).await? {
                        removed.push(m.actor_id);
                    }
                }
                _ => {}
            }
        }
        if let Some(channel) = self.0.store.channel_of_mls_group(&g.id).await? {
            let access = self
                .0
                .chat
                .channel_for_mls(&authed.actor, from_store(channel))
                .await
                .map_err(|_| Error::Forbidden("you no longer read the channel".into()))?;
            Self::channel_rules(&access, committer, members, &own_adds, &removed)?;
        } else if committer.role != "Admin" && removed.iter().any(|a| *a != committer.actor_id) {
            return Err(Error::Forbidden(
                "only the group's admins remove other actors' devices".into(),
            ));
        }
        Ok(added)
    }

    /// Whether a member device's certificate is one of ours and revoked.
    async fn revoked_here(&self, m: &MlsMemberRow) -> Result<bool, Error> {
        Ok(self
            .0
            .store
            .cert_by_serial(m.serial)
            .await?
            .is_some_and(|c| c.revoked_at.is_some() && c.actor_id == m.actor_id))
    }

    /// Who may join and who may remove whom in a group that encrypts `a`'s channel: every
    /// added device's actor reads the channel; an encrypted DM gains no one; in a group
    /// conversation only its owner adds a new person or removes another; in a guild channel
    /// another actor's device goes only when that actor no longer reads the channel, or by
    /// a member with MANAGE_CHANNELS.
    fn channel_rules(
        a: &ChannelAccess,
        committer: &MlsMemberRow,
        members: &[MlsMemberRow],
        added: &[(KeyPackage, Device)],
        removed: &[i64],
    ) -> Result<(), Error> {
        let in_group = |actor: i64| members.iter().any(|m| m.actor_id == actor);
        let owner = a.owner.to_store() == committer.actor_id;
        for (_, d) in added {
            if !a.readable_by(ActorId::from_store(d.actor_id)) {
                return Err(Error::Forbidden(format!(
                    "{} does not read the channel this group encrypts",
                    d.fid
                )));
            }
            if in_group(d.actor_id) {
                continue; // a further device of a member
            }
            if a.is_dm() {
                return Err(Error::Forbidden(
                    "an encrypted DM gains no one after its creation; open a new DM".into(),
                ));
            }
            if a.is_group() && !owner {
                return Err(Error::Forbidden(
                    "only the group's owner adds people to it".into(),
                ));
            }
        }
        for actor in removed {
            if *actor == committer.actor_id {
                continue;
            }
            let allowed = if a.is_conversation() {
                a.is_group() && owner
            } else {
                a.has(fugue_proto::chat::Permissions::MANAGE_CHANNELS)
                    || !a.readable_by(ActorId::from_store(*actor))
            };
            if !allowed {
                return Err(Error::Forbidden(
                    "the channel's rules do not let you remove another person's device".into(),
                ));
            }
        }
        Ok(())
    }

    /// The spec's model of a proposal, derived from it; `signature` and `mls` as its
    /// sender gave them (none for a proposal a commit carries by value).
    fn proposal_model(
        &self,
        id: String,
        p: &MlsProposal,
        signature: String,
        mls: Option<String>,
    ) -> Result<model::Proposal, Error> {
        let (target, key_package) = match p {
            MlsProposal::Remove(r) => (Some(r.removed().u32().to_string()), None),
            MlsProposal::Add(a) => (None, Some(self.package_model(a.key_package())?)),
            _ => (None, None),
        };
        Ok(model::Proposal {
            id,
            kind: wire::proposal_type(p.proposal_type()),
            target,
            key_package,
            signature,
            mls,
        })
    }

    pub async fn proposals(
        &self,
        authed: &Authed,
        id: &str,
    ) -> Result<Vec<model::Proposal>, Error> {
        let (g, _) = self.visible(authed, id).await?;
        self.0
            .store
            .mls_proposals(id, g.epoch)
            .await?
            .iter()
            .map(|p| {
                serde_json::from_str(&p.body)
                    .map_err(|e| Error::Store(fugue_store::Error::Decode(e.to_string())))
            })
            .collect()
    }

    pub async fn latest_commit(&self, authed: &Authed, id: &str) -> Result<model::Commit, Error> {
        let (g, _) = self.visible(authed, id).await?;
        let c = g
            .latest_commit
            .ok_or_else(|| Error::MemberNotFound("commit (the group is at epoch 0)".into()))?;
        serde_json::from_str(&c)
            .map_err(|e| Error::Store(fugue_store::Error::Decode(e.to_string())))
    }

    /// `POST /groups/{id}/commits`: the commit for the group's epoch, checked and applied
    /// to its public state; stored only while nothing else took the epoch.
    pub async fn commit(
        &self,
        authed: &Authed,
        id: &str,
        req: model::Commit,
        now: UnixTime,
    ) -> Result<Option<model::Welcome>, Error> {
        let (g, members) = self.visible(authed, id).await?;
        if req.group_id != g.id {
            return Err(Error::Invalid(
                "groupId is not the group of the path".into(),
            ));
        }
        if i64::from(req.epoch) != g.epoch + 1 {
            return Err(Error::StaleEpoch {
                current: u32::try_from(g.epoch).unwrap_or(u32::MAX),
            });
        }
        let pending = self.0.store.mls_proposals(id, g.epoch).await?;
        let (mut group, storage) = self.load(&g, &pending)?;
        let m = self.protocol_message(req.mls.as_ref())?;
        let (from, ProcessedMessageContent::StagedCommitMessage(staged)) =
            self.process(&group, m)?
        else {
            return Err(Error::Mls("fugue:mls holds no commit".into()));
        };
        let staged: StagedCommit = *staged;
        let committer_row = Self::sender(authed, &from, &members)?;
        let committed: Vec<(&MlsProposal, bool)> = staged
            .queued_proposals()
            .map(|q| {
                let own = q.proposal_or_ref_type() == ProposalOrRefType::Proposal;
                (q.proposal(), own)
            })
            .collect();
        let added = self
            .rules(authed, &g, committer_row, &members, &committed, now)
            .await?;
        let proposals: Vec<model::Proposal> = staged
            .queued_proposals()
            .enumerate()
            .map(|(i, q)| {
                self.proposal_model(format!("{}.{i}", req.id), q.proposal(), String::new(), None)
            })
            .collect::<Result<_, _>>()?;
        let welcome = self.welcome(&req, &added, &g).await?;
        group
            .merge_commit(&storage, staged)
            .map_err(|e| Error::Mls(format!("the commit does not apply: {e}")))?;
        let epoch = epoch_of(group.group_context().epoch())?;
        // The members after the commit, leaf by leaf.
        let mut after = Vec::new();
        let mut joined = Vec::new();
        for m in group.members() {
            let leaf = i64::from(m.index.u32());
            let cert = wire::credential_cert(&m.credential).map_err(Error::Mls)?;
            let kept = members
                .iter()
                .find(|o| o.leaf == leaf && o.serial == to_store(cert.serial.0));
            if let Some(o) = kept {
                after.push(o.clone());
                continue;
            }
            let (kp, device) = match added
                .iter()
                .find(|(kp, _)| kp.leaf_node().signature_key().as_slice() == m.signature_key)
            {
                Some((kp, d)) => (Some(kp), d.clone()),
                None => (
                    None,
                    self.device(&m.credential, &m.signature_key, now).await?,
                ),
            };
            let kp_model = match kp {
                Some(kp) => text(&self.package_model(kp)?),
                None => members
                    .iter()
                    .find(|o| o.leaf == leaf)
                    .map(|o| o.key_package.clone())
                    .unwrap_or_default(),
            };
            let more = after
                .iter()
                .chain(members.iter())
                .any(|o| o.actor_id == device.actor_id && o.leaf != leaf);
            joined.push(DeviceEvent {
                group_id: g.id.clone(),
                epoch,
                member_id: leaf.to_string(),
                fid: device.fid.clone(),
                session: device.session.clone(),
                more_devices: more,
            });
            after.push(MlsMemberRow {
                leaf,
                actor_id: device.actor_id,
                fid: device.fid.to_string(),
                serial: to_store(device.serial),
                session: device.session,
                key_package: kp_model,
                role: if device.actor_id == g.creator_id {
                    "Admin".into()
                } else {
                    "Member".into()
                },
                since: None,
            });
        }
        let removed: Vec<DeviceEvent> = members
            .iter()
            .filter(|o| {
                !after
                    .iter()
                    .any(|a| a.leaf == o.leaf && a.serial == o.serial)
            })
            .map(|o| {
                Ok(DeviceEvent {
                    group_id: g.id.clone(),
                    epoch,
                    member_id: o.leaf.to_string(),
                    fid: o.fid.parse().map_err(|_| {
                        Error::Store(fugue_store::Error::Decode("member FID".into()))
                    })?,
                    session: o.session.clone(),
                    more_devices: false,
                })
            })
            .collect::<Result<_, Error>>()?;
        let signature = req.signature.clone();
        let stored = model::Commit {
            id: req.id.clone(),
            group_id: g.id.clone(),
            epoch,
            proposals,
            signature,
            mls: req.mls.clone(),
            welcome: req.welcome.clone(),
        };
        let changed = !removed.is_empty() || !joined.is_empty();
        let mut publishes = vec![{
            let p = Publish::new(
                stream(&g),
                MLS,
                op::COMMIT,
                json(&CommitEvent {
                    group_id: g.id.clone(),
                    commit: stored.clone(),
                }),
            );
            if changed { p.changes_access() } else { p }
        }];
        publishes.extend(
            joined
                .iter()
                .map(|d| Publish::new(stream(&g), MLS, op::DEVICE_JOINED, json(d))),
        );
        publishes.extend(
            removed
                .iter()
                .map(|d| Publish::new(stream(&g), MLS, op::DEVICE_REMOVED, json(d))),
        );
        // Each new device's actor stream: its connections follow the group from here, and
        // the Welcome goes to the device it is for.
        for (to, w) in &welcome.targets {
            publishes.push(
                Publish::to_actor(to.0, MLS, op::WELCOME, json(w))
                    .audience(to.1.map_or(Audience::Actor(to.0), Audience::Session))
                    .changes_access(),
            );
        }
        let welcomed: Vec<i64> = welcome
            .targets
            .iter()
            .filter_map(|((_, session), _)| session.map(SessionPk::to_store))
            .collect();
        let next = MlsGroupRow {
            epoch: i64::from(epoch),
            state: wire::encode_state(&storage),
            latest_commit: Some(text(&stored)),
            public_key: String::new(),
            ..g.clone()
        };
        let news: Vec<_> = publishes.iter().map(|p| p.to_new(now)).collect();
        let seqs = match self
            .0
            .store
            .commit_mls_group(&next, g.epoch, &after, &welcomed, &news)
            .await
        {
            Err(fugue_store::Error::Conflict(fugue_store::Conflict::StaleEpoch)) => {
                return Err(self.stale(id).await);
            }
            other => other?,
        };
        for (p, seq) in publishes.into_iter().zip(seqs) {
            self.0.events.appended(p, seq, now).await;
        }
        Ok(welcome.answer)
    }

    /// The Welcome a commit carries: every device it names must be one the commit adds.
    async fn welcome(
        &self,
        req: &model::Commit,
        added: &[(KeyPackage, Device)],
        g: &MlsGroupRow,
    ) -> Result<Welcomes, Error> {
        let Some(encoded) = req.welcome.as_deref() else {
            if !added.is_empty() {
                return Err(Error::Mls(
                    "a commit that adds devices carries their Welcome (fugue:welcome)".into(),
                ));
            }
            return Ok(Welcomes::default());
        };
        let bytes = wire::bytes("fugue:welcome", encoded, MAX_MESSAGE_B64).map_err(Error::Mls)?;
        let MlsMessageBodyIn::Welcome(w) =
            wire::message("fugue:welcome", &bytes).map_err(Error::Mls)?
        else {
            return Err(Error::Mls("fugue:welcome holds no Welcome".into()));
        };
        if w.ciphersuite() != SUITE {
            return Err(Error::Mls(
                "the Welcome's cipher suite is not 0x0001".into(),
            ));
        }
        let mut out = Welcomes::default();
        for secret in w.secrets() {
            let named = secret.new_member();
            let (kp, device) = added
                .iter()
                .find(|(kp, _)| {
                    kp.hash_ref(&self.0.crypto)
                        .is_ok_and(|h| h.as_slice() == named.as_slice())
                })
                .ok_or_else(|| {
                    Error::Mls("the Welcome names a device this commit does not add".into())
                })?;
            let session = self
                .0
                .store
                .claimed_package(named.as_slice())
                .await?
                .filter(|c| c.actor_id == device.actor_id)
                .map(|c| SessionPk::from_store(c.session_pk));
            let welcome = model::Welcome {
                group_id: g.id.clone(),
                epoch: req.epoch,
                key_package: self.package_model(kp)?,
                encrypted_group_state: encoded.to_owned(),
            };
            if out.answer.is_none() {
                out.answer = Some(welcome.clone());
            }
            out.targets.push((
                (ActorId::from_store(device.actor_id), session),
                WelcomeEvent { welcome },
            ));
        }
        if out.targets.len() != added.len() {
            return Err(Error::Mls(
                "the Welcome must name every device the commit adds".into(),
            ));
        }
        Ok(out)
    }

    /// The hourly sweep: KeyPackages whose lifetime, certificate or session ended, and the
    /// record of packages handed out more than a day ago.
    pub async fn sweep(&self, now: UnixTime) -> Result<u64, Error> {
        let now = to_store(now.secs());
        let gone = self.0.store.sweep_key_packages(now).await?;
        self.0.store.sweep_claimed_packages(now - 86_400).await?;
        Ok(gone)
    }

    /// Where an actor's membership of a group's stream began.
    async fn follow_of(&self, actor: &Actor, stream_id: i64) -> Result<Option<Follow>, Error> {
        Ok(self
            .0
            .store
            .mls_member_since(stream_id, actor.id.to_store())
            .await?
            .map(|since| Follow {
                stream: StreamId::from_store(stream_id),
                since: from_store(since),
                view: Arc::new(Whole),
            }))
    }
}

/// The Welcomes of one commit: the first for the answer, each to its device.
#[derive(Default)]
struct Welcomes {
    answer: Option<model::Welcome>,
    targets: Vec<((ActorId, Option<SessionPk>), WelcomeEvent)>,
}

/// A revoked certificate's device is shown to every group it is in (op 6): its members
/// should remove it. Its KeyPackages went in the revocation's own transaction.
impl RevocationObserver for Mls {
    fn revoked<'a>(&'a self, serial: i64) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let leaves = match self.0.store.mls_leaves_of_cert(serial).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(error = %e, serial, "MLS groups of a revoked certificate");
                    return;
                }
            };
            for (group_id, stream_id, epoch, leaf) in leaves {
                let members = self
                    .0
                    .store
                    .mls_members(&group_id)
                    .await
                    .unwrap_or_default();
                let Some(m) = members.iter().find(|m| m.leaf == leaf) else {
                    continue;
                };
                let Ok(fid) = m.fid.parse() else { continue };
                let d = DeviceEvent {
                    group_id,
                    epoch: u32::try_from(epoch).unwrap_or(u32::MAX),
                    member_id: leaf.to_string(),
                    fid,
                    session: m.session.clone(),
                    more_devices: false,
                };
                let p = Publish::new(
                    StreamId::from_store(stream_id),
                    MLS,
                    op::DEVICE_REVOKED,
                    json(&d),
                );
                if let Err(e) = self.0.events.publish(p).await {
                    tracing::error!(error = %e, "device-revoked event not written");
                }
            }
        })
    }
}

impl Service for Mls {
    fn name(&self) -> &str {
        MLS
    }

    fn follows<'a>(&'a self, actor: &'a Actor) -> BoxFuture<'a, Result<Vec<Follow>, ApiError>> {
        Box::pin(async move {
            let groups = self
                .0
                .store
                .mls_groups_of(actor.id.to_store())
                .await
                .map_err(Error::from)?;
            Ok(groups
                .into_iter()
                .map(|(stream_id, since)| Follow {
                    stream: StreamId::from_store(stream_id),
                    since: from_store(since),
                    view: Arc::new(Whole) as Arc<dyn View>,
                })
                .collect())
        })
    }

    fn view<'a>(
        &'a self,
        actor: &'a Actor,
        stream: StreamId,
    ) -> BoxFuture<'a, Result<Option<Follow>, ApiError>> {
        Box::pin(async move { Ok(self.follow_of(actor, stream.to_store()).await?) })
    }
}
