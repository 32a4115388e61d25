//! Encrypted channels and their join requests (`fugue-mls`, polyproto-chat §6): a reader of
//! an encrypted channel asks to join with its device's KeyPackage; the server checks the
//! request (the channel readable, the package sound and bound to the calling device) and
//! tells the channel's readers; any member device may accept — it verifies the package,
//! commits the Add with the Welcome (the `mls` routes) and marks the request accepted, which
//! the server allows only once the group holds that device — or deny it, saying why.

use futures_util::future::BoxFuture;

use fugue_proto::mls::{self as model, ChannelGroup, FUGUE_MLS, JoinRequest, JoinState, fugue_op};
use fugue_store::JoinRequestRow;

use super::{Error, Mls, json, text};
use crate::chat::Chat;
use crate::events::{Audience, Publish};
use crate::gateway::{Follow, Service};
use crate::http::ApiError;
use crate::ids::{ActorId, SessionPk, StreamId, from_store, to_store};
use crate::principal::Actor;
use crate::sessions::Authed;
use crate::time::UnixTime;

impl Mls {
    /// `PUT /channels/{id}/group`.
    pub async fn encrypt_channel(
        &self,
        authed: &Authed,
        channel_id: u64,
        req: &model::SetChannelGroup,
    ) -> Result<ChannelGroup, ApiError> {
        Ok(self
            .0
            .chat
            .encrypt_channel(authed, channel_id, &req.group_id)
            .await?)
    }

    /// `GET /channels/{id}/group`.
    pub async fn channel_group(
        &self,
        authed: &Authed,
        channel_id: u64,
    ) -> Result<ChannelGroup, ApiError> {
        Ok(self.0.chat.channel_group(&authed.actor, channel_id).await?)
    }

    /// The encrypted channel a caller reads, and its group.
    async fn encrypted(
        &self,
        authed: &Authed,
        channel_id: u64,
    ) -> Result<(crate::chat::ChannelAccess, String), ApiError> {
        let a = self
            .0
            .chat
            .channel_for_mls(&authed.actor, channel_id)
            .await?;
        let group = a.group.clone().ok_or_else(|| {
            ApiError::from(crate::chat::Error::EncryptionRequired(format!(
                "channel {channel_id} is not encrypted"
            )))
        })?;
        Ok((a, group))
    }

    /// Whether the caller has a device in the group.
    async fn in_group(&self, authed: &Authed, group: &str) -> Result<bool, Error> {
        Ok(self
            .0
            .store
            .mls_posting(group, authed.actor.id.to_store())
            .await?
            .is_some_and(|(_, member)| member))
    }

    /// A stored request as it stands.
    fn model(&self, r: &JoinRequestRow) -> Result<JoinRequest, Error> {
        let mut j: JoinRequest = serde_json::from_str(&r.body)
            .map_err(|e| Error::Store(fugue_store::Error::Decode(e.to_string())))?;
        j.state = match r.state.as_str() {
            "accepted" => JoinState::Accepted,
            "denied" => JoinState::Denied,
            _ => JoinState::Pending,
        };
        j.reason.clone_from(&r.reason);
        Ok(j)
    }

    /// `POST /channels/{id}/join-requests`: the calling device asks to join.
    pub async fn request_join(
        &self,
        authed: &Authed,
        channel_id: u64,
        kp: model::KeyPackage,
        now: UnixTime,
    ) -> Result<JoinRequest, ApiError> {
        let (a, group) = self.encrypted(authed, channel_id).await?;
        let (package, device, body) = self.key_package(&kp, now).await.map_err(|reason| {
            Error::KeyPackages(vec![model::KeyPackageRefusal {
                id: kp.id.clone(),
                reason,
            }])
        })?;
        if device.actor_id != authed.actor.id.to_store() || device.session != authed.session.id {
            return Err(Error::KeyPackages(vec![model::KeyPackageRefusal {
                id: kp.id.clone(),
                reason: "the credential is not the calling device's certificate".into(),
            }])
            .into());
        }
        let existing_member = self.in_group(authed, &group).await?;
        let hash = package
            .hash_ref(&self.0.crypto)
            .map_err(|e| Error::Mls(e.to_string()))?;
        let id = from_store(crate::chat::random_id());
        let key_package: model::KeyPackage = serde_json::from_str(&body)
            .map_err(|e| Error::Store(fugue_store::Error::Decode(e.to_string())))?;
        let j = JoinRequest {
            id,
            channel_id,
            group_id: group.clone(),
            fid: authed.actor.fid.clone(),
            session: authed.session.id.clone(),
            key_package,
            existing_member,
            state: JoinState::Pending,
            reason: None,
            resolved_by: None,
            created_at: now.secs(),
        };
        let row = JoinRequestRow {
            id: to_store(id),
            channel_id: a.channel_id,
            group_id: group,
            actor_id: authed.actor.id.to_store(),
            session_pk: authed.session.pk.to_store(),
            hash_ref: hash.as_slice().to_vec(),
            body: text(&j),
            state: "pending".into(),
            reason: None,
            resolved_by: None,
            created_at: now.to_store(),
            resolved_at: None,
        };
        let p = Publish::new(a.stream, FUGUE_MLS, fugue_op::JOIN_REQUEST, json(&j))
            .audience(Audience::Channel(a.channel_id));
        let seq = self
            .0
            .store
            .insert_join_request(&row, &p.to_new(now))
            .await
            .map_err(Error::from)?;
        self.0.events.appended(p, seq, now).await;
        Ok(j)
    }

    /// `GET /channels/{id}/join-requests`: for devices in the channel's group.
    pub async fn join_requests(
        &self,
        authed: &Authed,
        channel_id: u64,
    ) -> Result<Vec<JoinRequest>, ApiError> {
        let (a, group) = self.encrypted(authed, channel_id).await?;
        if !self.in_group(authed, &group).await? {
            return Err(
                Error::Forbidden("you have no device in the channel's group".into()).into(),
            );
        }
        let rows = self
            .0
            .store
            .pending_join_requests(a.channel_id)
            .await
            .map_err(Error::from)?;
        Ok(rows
            .iter()
            .map(|r| self.model(r))
            .collect::<Result<_, _>>()?)
    }

    /// `POST /join-requests/{id}/accept|deny`: a member device of the group resolves a
    /// pending request of a channel it reads; accepting needs the requesting device in the
    /// group already (the gatekeeper's commit went first).
    pub async fn resolve_join(
        &self,
        authed: &Authed,
        request_id: u64,
        deny: Option<String>,
        now: UnixTime,
    ) -> Result<JoinRequest, ApiError> {
        let missing = || ApiError::from(Error::JoinRequestNotFound(request_id));
        let r = self
            .0
            .store
            .join_request(to_store(request_id))
            .await
            .map_err(Error::from)?
            .ok_or_else(missing)?;
        let (a, group) = self
            .encrypted(authed, from_store(r.channel_id))
            .await
            .map_err(|_| missing())?;
        if group != r.group_id || !self.in_group(authed, &group).await? {
            return Err(Error::Forbidden(
                "only a device in the channel's group resolves its join requests".into(),
            )
            .into());
        }
        let state = match &deny {
            Some(reason) if reason.trim().is_empty() || reason.len() > 512 => {
                return Err(
                    Error::Invalid("a denial says why, in at most 512 bytes".into()).into(),
                );
            }
            Some(_) => JoinState::Denied,
            None => {
                let wanted = hex::encode(&r.hash_ref);
                let joined = self
                    .0
                    .store
                    .mls_members(&group)
                    .await
                    .map_err(Error::from)?
                    .iter()
                    .any(|m| {
                        serde_json::from_str::<model::KeyPackage>(&m.key_package)
                            .is_ok_and(|k| k.id == wanted)
                    });
                if !joined {
                    return Err(Error::Conflict(
                        "the device is not in the group yet: commit its Add (with the Welcome) first"
                            .into(),
                    )
                    .into());
                }
                JoinState::Accepted
            }
        };
        let mut j = self.model(&r)?;
        j.state = state;
        j.reason.clone_from(&deny);
        j.resolved_by = Some(authed.actor.fid.clone());
        let events = [
            Publish::new(a.stream, FUGUE_MLS, fugue_op::JOIN_RESOLVED, json(&j))
                .audience(Audience::Channel(a.channel_id)),
            Publish::to_actor(
                ActorId::from_store(r.actor_id),
                FUGUE_MLS,
                fugue_op::JOIN_RESOLVED,
                json(&j),
            )
            .audience(Audience::Session(SessionPk::from_store(r.session_pk))),
        ];
        let news: Vec<_> = events.iter().map(|p| p.to_new(now)).collect();
        let label = if deny.is_some() { "denied" } else { "accepted" };
        let seqs = match self
            .0
            .store
            .resolve_join_request(
                r.id,
                label,
                deny.as_deref(),
                authed.actor.id.to_store(),
                now.to_store(),
                &news,
            )
            .await
        {
            Err(fugue_store::Error::Conflict(fugue_store::Conflict::Unchanged)) => {
                return Err(Error::Conflict("the request was resolved already".into()).into());
            }
            other => other.map_err(Error::from)?,
        };
        for (p, seq) in events.into_iter().zip(seqs) {
            self.0.events.appended(p, seq, now).await;
        }
        Ok(j)
    }
}

/// The `fugue-mls` service channel: the guild and conversation streams of the chat, whose
/// join requests and encryption events it carries.
pub struct FugueMlsChannel(pub Chat);

impl Service for FugueMlsChannel {
    fn name(&self) -> &str {
        FUGUE_MLS
    }

    fn follows<'a>(&'a self, actor: &'a Actor) -> BoxFuture<'a, Result<Vec<Follow>, ApiError>> {
        Service::follows(&self.0, actor)
    }

    fn view<'a>(
        &'a self,
        actor: &'a Actor,
        stream: StreamId,
    ) -> BoxFuture<'a, Result<Option<Follow>, ApiError>> {
        Service::view(&self.0, actor, stream)
    }
}
