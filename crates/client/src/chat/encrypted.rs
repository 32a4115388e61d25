//! Encrypted channels, DMs and groups (polyproto-mls with `fugue-mls`): the calls on the
//! server holding them, and what a device does with them — catching up with the MLS events
//! it missed (Welcomes, commits), sending a message as an MLS message of the channel's group
//! (signed like every message), opening received ones (the MLS sender must be the message's
//! author), and letting devices in as a gatekeeper.

use fugue_proto::api::{
    accept_join, channel_group, deny_join, encrypt_channel, events, join_requests, request_join,
};
use fugue_proto::chat::{Message, MessageBody};
use fugue_proto::gateway::Envelope;
use fugue_proto::mls::{
    self, ChannelGroup, DeviceEvent, ENCRYPTED_PREFIX, FUGUE_MLS, JoinRequest, MLS, fugue_op, op,
};
use fugue_proto::{ErrorCode, FederationId};
use reqwest::StatusCode;

use super::{Chat, Sent};
use crate::error::{Error, Result};
use crate::http::send;
use crate::mls::{Mls, Received, parse_key_package};

/// What catching up brought, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MlsNotice {
    /// This device joined a group from a Welcome.
    Joined {
        group_id: String,
    },
    /// A commit moved a group to `epoch`; `removed` when it removed this device.
    Commit {
        group_id: String,
        epoch: u64,
        removed: bool,
    },
    DeviceJoined(DeviceEvent),
    DeviceRemoved(DeviceEvent),
    /// A member device's certificate or session ended: it should be removed.
    DeviceRevoked(DeviceEvent),
    JoinRequest(JoinRequest),
    JoinResolved(JoinRequest),
    /// The device's KeyPackages run low: upload more.
    PackagesLow {
        remaining: u64,
    },
    /// An MLS event that could not be applied (`what` says which and why).
    Failed {
        what: String,
    },
}

fn parsed<T: serde::de::DeserializeOwned>(e: &Envelope) -> Result<T> {
    serde_json::from_value(e.d.clone())
        .map_err(|err| Error::UnexpectedResponse(format!("{} op {}: {err}", e.n, e.op)))
}

impl Chat {
    /// The events waiting for this session on this server (`GET /events`), which it then
    /// counts as received.
    pub async fn poll_events(&self) -> Result<Vec<Envelope>> {
        let response = send(self.authed(events::target())?).await?;
        if response.status() == StatusCode::NO_CONTENT {
            return Ok(Vec::new());
        }
        let values: Vec<serde_json::Value> = self.client.read_json(response).await?;
        values
            .iter()
            .map(|v| {
                Envelope::parse(&v.to_string())
                    .map(|(e, _)| e)
                    .map_err(|err| Error::UnexpectedResponse(err.to_string()))
            })
            .collect()
    }

    /// Applies the MLS events of `envelopes` to `mls`: Welcomes first (a device joins, then
    /// reads its group's commits), then commits in their order; the rest become notices.
    pub fn apply_mls(&self, mls: &Mls, envelopes: &[Envelope]) -> Vec<MlsNotice> {
        let mut out = Vec::new();
        for e in envelopes
            .iter()
            .filter(|e| e.n == MLS && e.op == op::WELCOME)
        {
            match parsed::<mls::WelcomeEvent>(e).and_then(|w| mls.join(&w.welcome)) {
                Ok(group_id) => out.push(MlsNotice::Joined { group_id }),
                Err(err) => out.push(MlsNotice::Failed {
                    what: format!("a Welcome: {err}"),
                }),
            }
        }
        for e in envelopes {
            let notice = match (e.n.as_str(), e.op) {
                (MLS, op::COMMIT) => match parsed::<mls::CommitEvent>(e) {
                    Ok(c) => self.apply_commit(mls, &c),
                    Err(err) => Some(MlsNotice::Failed {
                        what: err.to_string(),
                    }),
                },
                (MLS, op::DEVICE_JOINED) => parsed(e).ok().map(MlsNotice::DeviceJoined),
                (MLS, op::DEVICE_REMOVED) => parsed(e).ok().map(MlsNotice::DeviceRemoved),
                (MLS, op::DEVICE_REVOKED) => parsed(e).ok().map(MlsNotice::DeviceRevoked),
                (MLS, op::KEY_PACKAGES_LOW) => {
                    parsed::<mls::KeyPackagesLow>(e)
                        .ok()
                        .map(|l| MlsNotice::PackagesLow {
                            remaining: l.remaining,
                        })
                }
                (FUGUE_MLS, fugue_op::JOIN_REQUEST) => parsed(e).ok().map(MlsNotice::JoinRequest),
                (FUGUE_MLS, fugue_op::JOIN_RESOLVED) => parsed(e).ok().map(MlsNotice::JoinResolved),
                _ => None,
            };
            out.extend(notice);
        }
        out
    }

    /// A commit of a group this device is in, unless it has it already (its own, or one
    /// from before it joined).
    fn apply_commit(&self, mls: &Mls, c: &mls::CommitEvent) -> Option<MlsNotice> {
        let epoch = mls.epoch(&c.group_id).ok()?;
        if u64::from(c.commit.epoch) <= epoch {
            return None;
        }
        let text = c.commit.mls.as_deref()?;
        Some(match mls.receive(&c.group_id, text) {
            Ok(Received::Commit {
                epoch,
                removed_self,
            }) => MlsNotice::Commit {
                group_id: c.group_id.clone(),
                epoch,
                removed: removed_self,
            },
            Ok(_) => return None,
            Err(err) => MlsNotice::Failed {
                what: format!("commit {} of {}: {err}", c.commit.epoch, c.group_id),
            },
        })
    }

    /// Catches up: the events waiting on this server, the MLS ones applied.
    pub async fn mls_sync(&self, mls: &Mls) -> Result<Vec<MlsNotice>> {
        let envelopes = self.poll_events().await?;
        Ok(self.apply_mls(mls, &envelopes))
    }

    /// A new group of this device alone, registered here. Returns its id.
    pub async fn new_mls_group(&self, mls: &Mls) -> Result<String> {
        let body = mls.create_group()?;
        let id = Mls::group_id_of(&body)?;
        self.mls_create_group(&body).await?;
        Ok(id)
    }

    /// Adds the devices of `packages` (each checked first) to a group: the commit with
    /// their Welcome. When another commit won the epoch, catches up and tries once more.
    pub async fn add_devices(
        &self,
        mls: &Mls,
        group_id: &str,
        packages: &[mls::KeyPackage],
    ) -> Result<()> {
        for attempt in 0..2 {
            let pending = mls.add(group_id, packages)?;
            match self.mls_commit(group_id, &pending.commit).await {
                Ok(_) => return mls.confirm(group_id),
                Err(e) if e.code() == Some(ErrorCode::StaleEpoch) && attempt == 0 => {
                    mls.discard(group_id)?;
                    self.mls_sync(mls).await?;
                }
                Err(e) => {
                    mls.discard(group_id)?;
                    return Err(e);
                }
            }
        }
        Err(Error::Invalid("the group kept moving; try again".into()))
    }

    /// Removes the devices at `leaves` from a group (the same retry as [`Chat::add_devices`]).
    pub async fn remove_devices(&self, mls: &Mls, group_id: &str, leaves: &[u32]) -> Result<()> {
        let pending = mls.remove(group_id, leaves)?;
        match self.mls_commit(group_id, &pending.commit).await {
            Ok(_) => mls.confirm(group_id),
            Err(e) => {
                mls.discard(group_id)?;
                Err(e)
            }
        }
    }

    /// Encrypts a channel, DM or group with a group this device made for it.
    pub async fn encrypt_channel(&self, channel_id: u64, group_id: &str) -> Result<ChannelGroup> {
        let body = mls::SetChannelGroup {
            group_id: group_id.to_owned(),
        };
        self.json(
            self.authed(encrypt_channel::target(channel_id))?
                .json(&body),
        )
        .await
    }

    /// The group encrypting a channel; `None` when it is not encrypted.
    pub async fn channel_group(&self, channel_id: u64) -> Result<Option<String>> {
        match self
            .json::<ChannelGroup>(self.authed(channel_group::target(channel_id))?)
            .await
        {
            Ok(g) => Ok(Some(g.group_id)),
            Err(e) if e.code() == Some(ErrorCode::EncryptionRequired) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Asks to join an encrypted channel with a fresh package of this device.
    pub async fn request_join(&self, mls: &Mls, channel_id: u64) -> Result<JoinRequest> {
        let kp = mls.key_packages(1, false)?.remove(0);
        self.json(self.authed(request_join::target(channel_id))?.json(&kp))
            .await
    }

    pub async fn join_requests(&self, channel_id: u64) -> Result<Vec<JoinRequest>> {
        self.json(self.authed(join_requests::target(channel_id))?)
            .await
    }

    pub async fn deny_join(&self, request_id: u64, reason: &str) -> Result<JoinRequest> {
        let body = mls::DenyJoin {
            reason: reason.to_owned(),
        };
        self.json(self.authed(deny_join::target(request_id))?.json(&body))
            .await
    }

    /// As the gatekeeper: checks the request's package — denying the request when it does
    /// not verify or is not the requester's — adds the device, and marks the request done.
    pub async fn admit(&self, mls: &Mls, request: &JoinRequest) -> Result<JoinRequest> {
        let checked = parse_key_package(&request.key_package).and_then(|kp| {
            let cert = crate::mls::credential_cert(kp.leaf_node().credential())?;
            if cert.fid().as_ref() != Some(&request.fid)
                || cert.session_id().map(|s| s.to_string()).as_deref() != Some(&request.session)
            {
                return Err(Error::Verification(
                    "the package is not the requesting device's".into(),
                ));
            }
            Ok(())
        });
        if let Err(why) = checked {
            return self.deny_join(request.id, &why.to_string()).await;
        }
        self.add_devices(
            mls,
            &request.group_id,
            std::slice::from_ref(&request.key_package),
        )
        .await?;
        self.json(self.authed(accept_join::target(request.id))?)
            .await
    }

    /// Sends `text` to an encrypted channel as an MLS message of its group; when the group
    /// moved on meanwhile, catches up and encrypts again (once).
    pub async fn send_encrypted(
        &self,
        mls: &Mls,
        channel_id: u64,
        group_id: &str,
        text: &str,
    ) -> Result<Sent> {
        for attempt in 0..2 {
            let body = MessageBody {
                content: format!(
                    "{ENCRYPTED_PREFIX}{}",
                    mls.encrypt(group_id, text.as_bytes())?
                ),
                reply_to: None,
                attachments: Vec::new(),
            };
            match self.send_message(channel_id, body).await {
                Ok(sent) => {
                    mls.remember(sent.message.id, sent.message.version, text)?;
                    return Ok(sent);
                }
                Err(e) if e.code() == Some(ErrorCode::StaleEpoch) && attempt == 0 => {
                    self.mls_sync(mls).await?;
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::Invalid("the group kept moving; try again".into()))
    }

    /// The text of a message of an encrypted channel: kept from before, or opened now (and
    /// kept). The MLS sender must be the message's author.
    pub fn decrypt(&self, mls: &Mls, group_id: &str, m: &Message) -> Result<String> {
        if let Some(text) = mls.recall(m.id, m.version) {
            return Ok(text);
        }
        let ciphertext = m
            .content
            .strip_prefix(ENCRYPTED_PREFIX)
            .ok_or_else(|| Error::Verification("not an MLS message".into()))?;
        match mls.receive(group_id, ciphertext)? {
            Received::Message { from, text } => {
                if from.fid != m.author {
                    return Err(Error::Verification(format!(
                        "the MLS sender is {}, the message says {}",
                        from.fid, m.author
                    )));
                }
                let text = String::from_utf8(text)
                    .map_err(|_| Error::Verification("the text is not UTF-8".into()))?;
                mls.remember(m.id, m.version, &text)?;
                Ok(text)
            }
            other => Err(Error::Verification(format!("not a message: {other:?}"))),
        }
    }

    /// The devices of the group encrypting a channel: `(fid, session, member id)`.
    pub async fn devices(&self, group_id: &str) -> Result<Vec<(FederationId, String, String)>> {
        Ok(self
            .mls_members(group_id)
            .await?
            .into_iter()
            .map(|m| (m.fid, m.session, m.id))
            .collect())
    }
}
