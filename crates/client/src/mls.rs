//! End-to-end encryption (polyproto-mls) for one device: its MLS groups and keys, run by
//! openmls with suite 0x0001, signing with the session's identity key under an X.509
//! credential that carries the session's ID-Cert — the binding the server checks.
//!
//! Everything openmls keeps (groups, epoch secrets, private halves of KeyPackages) lives in
//! this device's state, written after every change to a private file (0600) beside the key
//! store when it has a path. Nothing here talks to a server: the calls that carry these
//! objects are [`Chat`](crate::Chat)'s (`mls_*`) and [`Session::upload_key_packages`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use openmls::prelude::{
    Ciphersuite, Credential, CredentialType, CredentialWithKey, ExtensionType, GroupId, KeyPackage,
    KeyPackageIn, LeafNodeIndex, Lifetime, MIXED_PLAINTEXT_WIRE_FORMAT_POLICY, MlsGroup,
    MlsGroupCreateConfig, MlsGroupJoinConfig, MlsMessageBodyIn, MlsMessageOut,
    ProcessedMessageContent, ProtocolMessage, ProtocolVersion, SignaturePublicKey, StagedWelcome,
};
use openmls_rust_crypto::{MemoryStorage, RustCrypto};
use openmls_traits::OpenMlsProvider;
use openmls_traits::signatures::{Signer, SignerError};
use openmls_traits::types::SignatureScheme;

use fugue_proto::FederationId;
use fugue_proto::certs::IdCert;
use fugue_proto::mls::{self as model};
use fugue_proto::mls_wire as wire;

use crate::error::{Error, Result};
use crate::keys::IdentityKey;
use crate::session::Session;

/// The one suite (mls.md §1.1).
pub const SUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;
/// Epochs whose secrets a device keeps, so that a message sent just before a commit it
/// processed still opens.
const PAST_EPOCHS: usize = 8;
/// How long a KeyPackage is good for (its certificate may end it earlier on the server).
const KEY_PACKAGE_LIFETIME_S: u64 = 28 * 24 * 3600;

/// openmls' view of this device: RustCrypto and the device's state.
struct Provider {
    crypto: RustCrypto,
    storage: MemoryStorage,
}

impl OpenMlsProvider for Provider {
    type CryptoProvider = RustCrypto;
    type RandProvider = RustCrypto;
    type StorageProvider = MemoryStorage;

    fn storage(&self) -> &MemoryStorage {
        &self.storage
    }

    fn crypto(&self) -> &RustCrypto {
        &self.crypto
    }

    fn rand(&self) -> &RustCrypto {
        &self.crypto
    }
}

/// The session's identity key as openmls' signer.
struct KeySigner(IdentityKey);

impl Signer for KeySigner {
    fn sign(&self, payload: &[u8]) -> std::result::Result<Vec<u8>, SignerError> {
        Ok(self.0.sign(payload).to_vec())
    }

    fn signature_scheme(&self) -> SignatureScheme {
        SignatureScheme::ED25519
    }
}

/// What a received message was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// An application message, decrypted, from the device named.
    Message { from: Member, text: Vec<u8> },
    /// A commit of the group was applied; the group is at `epoch` now.
    Commit { epoch: u64, removed_self: bool },
    /// A proposal was stored for the next commit.
    Proposal,
}

/// A device of a group, as its credential names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub leaf: u32,
    pub fid: FederationId,
    pub session: String,
    pub serial: u64,
}

/// A commit made for the server: submit it, then [`Mls::confirm`] on success or
/// [`Mls::discard`] when another commit won the epoch.
#[derive(Debug, Clone)]
pub struct PendingCommit {
    pub group_id: String,
    pub commit: model::Commit,
}

/// One device's MLS state.
pub struct Mls {
    provider: Provider,
    signer: KeySigner,
    credential: CredentialWithKey,
    fid: FederationId,
    path: Option<PathBuf>,
    /// One change at a time: openmls' groups are loaded, changed and stored per call.
    lock: Mutex<()>,
}

fn mls_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("MLS: {what}: {e}"))
}

fn encode(m: &MlsMessageOut) -> Result<String> {
    wire::encode(m).map_err(Error::Invalid)
}

fn decode(text: &str) -> Result<MlsMessageBodyIn> {
    let bytes = wire::bytes("MLSMessage", text, usize::MAX).map_err(Error::Invalid)?;
    wire::message("MLSMessage", &bytes).map_err(Error::Invalid)
}

/// The ID-Cert a credential carries, as the server binds it.
pub fn credential_cert(c: &Credential) -> Result<IdCert> {
    wire::credential_cert(c).map_err(Error::Verification)
}

fn member_of(leaf: LeafNodeIndex, credential: &Credential) -> Result<Member> {
    let cert = credential_cert(credential)?;
    Ok(Member {
        leaf: leaf.u32(),
        fid: cert
            .fid()
            .ok_or_else(|| Error::Verification("credential names no actor".into()))?,
        session: cert
            .session_id()
            .ok_or_else(|| Error::Verification("credential names no session".into()))?
            .to_string(),
        serial: cert.serial.0,
    })
}

/// A KeyPackage model's package, checked (signature, lifetime) — what a gatekeeper does
/// before it adds a device.
pub fn parse_key_package(m: &model::KeyPackage) -> Result<KeyPackage> {
    let text = m
        .mls
        .as_deref()
        .ok_or_else(|| Error::Verification("the KeyPackage carries no fugue:mls".into()))?;
    let MlsMessageBodyIn::KeyPackage(kp) = decode(text)? else {
        return Err(Error::Verification("fugue:mls holds no KeyPackage".into()));
    };
    let kp: KeyPackageIn = kp;
    let kp = kp
        .validate(&RustCrypto::default(), ProtocolVersion::Mls10)
        .map_err(|e| Error::Verification(format!("the KeyPackage does not verify: {e}")))?;
    if kp.ciphersuite() != SUITE {
        return Err(Error::Verification(
            "the KeyPackage is not of suite 0x0001".into(),
        ));
    }
    let cert = credential_cert(kp.leaf_node().credential())?;
    if cert.key.as_bytes().as_slice() != kp.leaf_node().signature_key().as_slice() {
        return Err(Error::Verification(
            "the KeyPackage does not sign with its certificate's key".into(),
        ));
    }
    Ok(kp)
}

/// Where a message's text is kept in the state (beside openmls' entries, whose keys are
/// labels of its own).
fn plain_key(message: u64, version: u64) -> Vec<u8> {
    let mut k = b"fugue/plaintext/".to_vec();
    k.extend_from_slice(&message.to_be_bytes());
    k.extend_from_slice(&version.to_be_bytes());
    k
}

fn group_id(id: &str) -> Result<GroupId> {
    if !model::valid_group_id(id) {
        return Err(Error::Invalid(format!("{id} is no MLS group id")));
    }
    Ok(GroupId::from_slice(
        &hex::decode(id).map_err(|e| mls_err("group id", e))?,
    ))
}

impl Mls {
    /// The device of `session`, its state kept in memory only.
    pub fn new(session: &Session) -> Result<Self> {
        Self::with_storage(session, MemoryStorage::default(), None)
    }

    /// The device of `session`, its state in the private file `path` (read when it exists).
    pub fn open(session: &Session, path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_owned();
        let storage = match crate::keystore::read_private(&path)? {
            Some(bytes) => {
                let entries = model::decode_entries(&bytes).ok_or_else(|| {
                    Error::KeyStore(format!("{}: not an MLS state", path.display()))
                })?;
                MemoryStorage {
                    values: RwLock::new(entries.into_iter().collect::<HashMap<_, _>>()),
                }
            }
            None => MemoryStorage::default(),
        };
        Self::with_storage(session, storage, Some(path))
    }

    fn with_storage(
        session: &Session,
        storage: MemoryStorage,
        path: Option<PathBuf>,
    ) -> Result<Self> {
        let cert = IdCert::parse(session.cert_pem().as_bytes())?;
        let credential = CredentialWithKey {
            credential: wire::credential(&cert.der).map_err(Error::Invalid)?,
            signature_key: SignaturePublicKey::from(
                session.key().verifying_key().to_bytes().to_vec(),
            ),
        };
        Ok(Self {
            provider: Provider {
                crypto: RustCrypto::default(),
                storage,
            },
            signer: KeySigner(session.key().clone()),
            credential,
            fid: session.fid().clone(),
            path,
            lock: Mutex::new(()),
        })
    }

    /// Writes the state to its file (when it has one).
    fn save(&self) -> Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let bytes = self
            .provider
            .storage
            .values
            .read()
            .map(|v| model::encode_entries(v.iter()))
            .unwrap_or_default();
        crate::keystore::write_private(path, &bytes)
            .map_err(|e| Error::KeyStore(format!("{}: {e}", path.display())))
    }

    fn group(&self, id: &str) -> Result<MlsGroup> {
        MlsGroup::load(&self.provider.storage, &group_id(id)?)
            .map_err(|e| mls_err("loading the group", e))?
            .ok_or_else(|| Error::Invalid(format!("this device is in no MLS group {id}")))
    }

    fn capabilities() -> openmls::prelude::Capabilities {
        openmls::prelude::Capabilities::builder()
            .versions(vec![ProtocolVersion::Mls10])
            .ciphersuites(vec![SUITE])
            .credentials(vec![CredentialType::X509])
            .extensions(vec![ExtensionType::LastResort])
            .build()
    }

    /// `n` new KeyPackages (the last one last-resort with `last_resort`), their private
    /// halves kept in the state.
    pub fn key_packages(&self, n: usize, last_resort: bool) -> Result<Vec<model::KeyPackage>> {
        let _one = self.lock.lock().map_err(|_| mls_err("state", "poisoned"))?;
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let mut b = KeyPackage::builder()
                .key_package_lifetime(Lifetime::new(KEY_PACKAGE_LIFETIME_S))
                .leaf_node_capabilities(Self::capabilities());
            if last_resort && i + 1 == n {
                b = b.mark_as_last_resort();
            }
            let bundle = b
                .build(SUITE, &self.provider, &self.signer, self.credential.clone())
                .map_err(|e| mls_err("KeyPackage", e))?;
            let kp = bundle.key_package();
            let hash = kp
                .hash_ref(&self.provider.crypto)
                .map_err(|e| mls_err("KeyPackage", e))?;
            out.push(
                wire::key_package_model(kp, hex::encode(hash.as_slice()))
                    .map_err(Error::Invalid)?,
            );
        }
        self.save()?;
        Ok(out)
    }

    fn create_config() -> MlsGroupCreateConfig {
        MlsGroupCreateConfig::builder()
            .ciphersuite(SUITE)
            .use_ratchet_tree_extension(true)
            .wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
            .max_past_epochs(PAST_EPOCHS)
            .capabilities(Self::capabilities())
            .build()
    }

    fn join_config() -> MlsGroupJoinConfig {
        MlsGroupJoinConfig::builder()
            .use_ratchet_tree_extension(true)
            .wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
            .max_past_epochs(PAST_EPOCHS)
            .build()
    }

    /// A new group with this device alone, and the body that registers it with a server
    /// (`POST /groups`).
    pub fn create_group(&self) -> Result<model::CreateGroup> {
        let kp = self.key_packages(1, false)?.remove(0);
        let _one = self.lock.lock().map_err(|_| mls_err("state", "poisoned"))?;
        let mut id = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut id);
        let group = MlsGroup::new_with_group_id(
            &self.provider,
            &self.signer,
            &Self::create_config(),
            GroupId::from_slice(&id),
            self.credential.clone(),
        )
        .map_err(|e| mls_err("creating the group", e))?;
        let info = group
            .export_group_info(&self.provider.crypto, &self.signer, true)
            .map_err(|e| mls_err("GroupInfo", e))?;
        self.save()?;
        Ok(model::CreateGroup {
            key_package: kp,
            group_info: Some(encode(&info)?),
        })
    }

    /// The id of a group as the server names it.
    pub fn group_id_of(body: &model::CreateGroup) -> Result<String> {
        let text = body
            .group_info
            .as_deref()
            .ok_or_else(|| Error::Invalid("no GroupInfo".into()))?;
        match decode(text)? {
            MlsMessageBodyIn::GroupInfo(i) => Ok(hex::encode(i.group_id().as_slice())),
            _ => Err(Error::Invalid("not a GroupInfo".into())),
        }
    }

    /// A commit adding the devices of `packages` (each checked first), with their Welcome.
    pub fn add(&self, id: &str, packages: &[model::KeyPackage]) -> Result<PendingCommit> {
        let kps = packages
            .iter()
            .map(parse_key_package)
            .collect::<Result<Vec<_>>>()?;
        let _one = self.lock.lock().map_err(|_| mls_err("state", "poisoned"))?;
        let mut group = self.group(id)?;
        let (commit, welcome, _) = group
            .add_members(&self.provider, &self.signer, &kps)
            .map_err(|e| mls_err("adding", e))?;
        self.pending(id, &group, &commit, Some(&welcome))
    }

    /// A commit removing the devices at `leaves`.
    pub fn remove(&self, id: &str, leaves: &[u32]) -> Result<PendingCommit> {
        let _one = self.lock.lock().map_err(|_| mls_err("state", "poisoned"))?;
        let mut group = self.group(id)?;
        let leaves: Vec<_> = leaves.iter().map(|l| LeafNodeIndex::new(*l)).collect();
        let (commit, welcome, _) = group
            .remove_members(&self.provider, &self.signer, &leaves)
            .map_err(|e| mls_err("removing", e))?;
        self.pending(id, &group, &commit, welcome.as_ref())
    }

    /// A proposal to remove the device at `leaf`, for the server to pass on; this device
    /// keeps it pending for the epoch's commit.
    pub fn propose_remove(&self, id: &str, leaf: u32) -> Result<model::Proposal> {
        let _one = self.lock.lock().map_err(|_| mls_err("state", "poisoned"))?;
        let mut group = self.group(id)?;
        let (message, reference) = group
            .propose_remove_member(&self.provider, &self.signer, LeafNodeIndex::new(leaf))
            .map_err(|e| mls_err("proposing", e))?;
        self.save()?;
        Ok(model::Proposal {
            id: hex::encode(reference.as_slice()),
            kind: model::ProposalType::Remove,
            target: Some(leaf.to_string()),
            key_package: None,
            signature: String::new(),
            mls: Some(encode(&message)?),
        })
    }

    /// A commit of the proposals received for this epoch (and a fresh path).
    pub fn commit_pending(&self, id: &str) -> Result<PendingCommit> {
        let _one = self.lock.lock().map_err(|_| mls_err("state", "poisoned"))?;
        let mut group = self.group(id)?;
        let (commit, welcome, _) = group
            .commit_to_pending_proposals(&self.provider, &self.signer)
            .map_err(|e| mls_err("committing", e))?;
        self.pending(id, &group, &commit, welcome.as_ref())
    }

    fn pending(
        &self,
        id: &str,
        group: &MlsGroup,
        commit: &MlsMessageOut,
        welcome: Option<&MlsMessageOut>,
    ) -> Result<PendingCommit> {
        self.save()?;
        let epoch = u32::try_from(group.epoch().as_u64() + 1)
            .map_err(|_| Error::Invalid("epoch beyond 2^32".into()))?;
        let mut nonce = [0u8; 8];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
        Ok(PendingCommit {
            group_id: id.to_owned(),
            commit: model::Commit {
                id: hex::encode(nonce),
                group_id: id.to_owned(),
                epoch,
                proposals: Vec::new(),
                signature: String::new(),
                mls: Some(encode(commit)?),
                welcome: welcome.map(encode).transpose()?,
            },
        })
    }

    /// The server took the commit: the group moves to its epoch.
    pub fn confirm(&self, id: &str) -> Result<()> {
        let _one = self.lock.lock().map_err(|_| mls_err("state", "poisoned"))?;
        let mut group = self.group(id)?;
        group
            .merge_pending_commit(&self.provider)
            .map_err(|e| mls_err("merging", e))?;
        self.save()
    }

    /// Another commit won the epoch: forget this one.
    pub fn discard(&self, id: &str) -> Result<()> {
        let _one = self.lock.lock().map_err(|_| mls_err("state", "poisoned"))?;
        let mut group = self.group(id)?;
        group
            .clear_pending_commit(&self.provider.storage)
            .map_err(|e| mls_err("clearing", e))?;
        self.save()
    }

    /// Joins the group a Welcome is for. Returns its id.
    pub fn join(&self, welcome: &model::Welcome) -> Result<String> {
        let _one = self.lock.lock().map_err(|_| mls_err("state", "poisoned"))?;
        let MlsMessageBodyIn::Welcome(w) = decode(&welcome.encrypted_group_state)? else {
            return Err(Error::Invalid(
                "encryptedGroupState holds no Welcome".into(),
            ));
        };
        let group = StagedWelcome::new_from_welcome(&self.provider, &Self::join_config(), w, None)
            .map_err(|e| mls_err("the Welcome", e))?
            .into_group(&self.provider)
            .map_err(|e| mls_err("joining", e))?;
        // Every device of the group must carry a certificate-bound credential.
        for m in group.members() {
            member_of(m.index, &m.credential)?;
        }
        self.save()?;
        Ok(hex::encode(group.group_id().as_slice()))
    }

    /// Whether this device is in the group.
    pub fn has_group(&self, id: &str) -> bool {
        self.group(id).is_ok_and(|g| g.is_active())
    }

    pub fn epoch(&self, id: &str) -> Result<u64> {
        Ok(self.group(id)?.epoch().as_u64())
    }

    /// The group's devices as this device knows them.
    pub fn members(&self, id: &str) -> Result<Vec<Member>> {
        self.group(id)?
            .members()
            .map(|m| member_of(m.index, &m.credential))
            .collect()
    }

    /// This device's leaf in the group.
    pub fn own_leaf(&self, id: &str) -> Result<u32> {
        Ok(self.group(id)?.own_leaf_index().u32())
    }

    /// `text` encrypted for the group: an `MLSMessage` (a PrivateMessage), base64.
    pub fn encrypt(&self, id: &str, text: &[u8]) -> Result<String> {
        let _one = self.lock.lock().map_err(|_| mls_err("state", "poisoned"))?;
        let mut group = self.group(id)?;
        let out = group
            .create_message(&self.provider, &self.signer, text)
            .map_err(|e| mls_err("encrypting", e))?;
        self.save()?;
        encode(&out)
    }

    /// A message of the group received through the server: decrypted and verified, or a
    /// commit or proposal applied.
    pub fn receive(&self, id: &str, message: &str) -> Result<Received> {
        let _one = self.lock.lock().map_err(|_| mls_err("state", "poisoned"))?;
        let mut group = self.group(id)?;
        let m: ProtocolMessage = match decode(message)? {
            MlsMessageBodyIn::PublicMessage(m) => m.into(),
            MlsMessageBodyIn::PrivateMessage(m) => m.into(),
            _ => return Err(Error::Invalid("not a group message".into())),
        };
        let processed = group
            .process_message(&self.provider, m)
            .map_err(|e| mls_err("processing", e))?;
        let sender = processed.credential().clone();
        let leaf = match processed.sender() {
            openmls::prelude::Sender::Member(l) => *l,
            _ => LeafNodeIndex::new(u32::MAX),
        };
        let out = match processed.into_content() {
            ProcessedMessageContent::ApplicationMessage(a) => Received::Message {
                from: member_of(leaf, &sender)?,
                text: a.into_bytes(),
            },
            ProcessedMessageContent::ProposalMessage(p) => {
                group
                    .store_pending_proposal(&self.provider.storage, *p)
                    .map_err(|e| mls_err("storing the proposal", e))?;
                Received::Proposal
            }
            ProcessedMessageContent::StagedCommitMessage(c) => {
                let removed_self = c.self_removed();
                group
                    .merge_staged_commit(&self.provider, *c)
                    .map_err(|e| mls_err("merging", e))?;
                Received::Commit {
                    epoch: group.epoch().as_u64(),
                    removed_self,
                }
            }
            _ => {
                return Err(Error::Invalid(
                    "an MLS message this client does not take".into(),
                ));
            }
        };
        self.save()?;
        Ok(out)
    }

    /// Keeps the text of a message this device sent or decrypted: an MLS message opens only
    /// once (its key is gone after), so history is read from here afterwards.
    pub fn remember(&self, message: u64, version: u64, text: &str) -> Result<()> {
        let _one = self.lock.lock().map_err(|_| mls_err("state", "poisoned"))?;
        if let Ok(mut v) = self.provider.storage.values.write() {
            v.insert(plain_key(message, version), text.as_bytes().to_vec());
        }
        self.save()
    }

    /// The text [`Mls::remember`] kept.
    pub fn recall(&self, message: u64, version: u64) -> Option<String> {
        let v = self.provider.storage.values.read().ok()?;
        v.get(&plain_key(message, version))
            .and_then(|b| String::from_utf8(b.clone()).ok())
    }

    /// The actor this device signs for.
    pub fn fid(&self) -> &FederationId {
        &self.fid
    }
}
