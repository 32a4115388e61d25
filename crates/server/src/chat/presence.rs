//! Presence and profiles.
//!
//! **Presence** is derived from gateway connections subscribed to `chat`: the gateway tells
//! the service when an actor's first such connection on this node opens and its last one
//! closes ([`crate::gateway::Service::connected`]); the node records a row per (actor, node)
//! and refreshes its rows every minute ([`Chat::refresh_presence`]); a stopping node drops
//! its rows ([`Chat::forget_presence`]) and rows not refreshed for [`FRESH_S`] (a node that
//! died) are ignored. An actor is online when any node holds a fresh row. What others see
//! is the availability the actor set (online, idle, do not disturb) and its custom status
//! while connected, and offline otherwise or when it set invisible (0). Changes are
//! ephemeral `fugue-chat` op 34 events to every guild the actor is in; only the actor
//! itself and those sharing a guild with it learn its presence over HTTP.
//!
//! **Profiles** (display name, pronouns, about, time zone, avatar) are
//! one row per actor with the presence setting; a change appends `fugue-chat` op 35 to the
//! actor's own stream and to each of its guilds' streams (collapse key `profile:<fid>`).

use std::collections::HashSet;
use std::sync::Mutex;

use fugue_proto::FederationId;
use fugue_proto::api::{set_presence, update_profile};
use fugue_proto::chat::FUGUE_CHAT;
use fugue_proto::community::{
    self, Actor as Profile, Chosen, MAX_PRESENCE_BATCH, Presence, availability,
};
use fugue_store::ProfileRow;

use super::{Chat, Error, json, text};
use crate::events::Publish;
use crate::ids::ActorId;
use crate::principal::Actor;
use crate::sessions::Authed;

/// Seconds after which a connection row no node refreshed is ignored.
pub const FRESH_S: u64 = 180;

/// Which actors have a `chat` connection on this node, as the gateway last said, and one
/// lock that puts the writes of their rows in order.
#[derive(Default)]
pub struct Local {
    online: Mutex<HashSet<ActorId>>,
    writes: tokio::sync::Mutex<()>,
}

impl Chat {
    fn node(&self) -> &str {
        self.events.bus().node()
    }

    fn fresh_since(&self) -> i64 {
        self.events
            .now()
            .to_store()
            .saturating_sub(i64::try_from(FRESH_S).unwrap_or(i64::MAX))
    }

    /// The gateway's edge for an actor on this node: noted now, written and announced on
    /// a task (the row follows whatever the gateway said last, whatever order tasks run).
    pub(super) fn connection_edge(&self, actor: &Actor, online: bool) {
        {
            let mut set = self
                .presence
                .online
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if online {
                set.insert(actor.id);
            } else {
                set.remove(&actor.id);
            }
        }
        let chat = self.clone();
        let actor = actor.clone();
        self.tasks.spawn_to_end(async move {
            if let Err(e) = chat.write_presence(&actor).await {
                tracing::error!(error = %e, "recording presence failed");
            }
        });
    }

    async fn write_presence(&self, actor: &Actor) -> Result<(), Error> {
        let _order = self.presence.writes.lock().await;
        let online = self
            .presence
            .online
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&actor.id);
        let id = actor.id.to_store();
        if online {
            self.store
                .presence_up(id, self.node(), self.events.now().to_store())
                .await?;
        } else {
            self.store.presence_down(id, self.node()).await?;
        }
        self.announce_presence(actor.id, &actor.fid).await
    }

    /// Every minute: this node's rows are alive.
    pub async fn refresh_presence(&self) {
        if let Err(e) = self
            .store
            .presence_refresh(self.node(), self.events.now().to_store())
            .await
        {
            tracing::error!(error = %e, "refreshing presence failed");
        }
    }

    /// The node stops: its rows (and any stale ones) go.
    pub async fn forget_presence(&self) {
        if let Err(e) = self
            .store
            .presence_drop_node(self.node(), self.fresh_since())
            .await
        {
            tracing::error!(error = %e, "dropping this node's presence failed");
        }
    }

    /// The actor's presence as others see it; for `own` (the actor asking about itself) with
    /// what it chose.
    async fn presence_of(
        &self,
        actor: ActorId,
        fid: &FederationId,
        own: bool,
    ) -> Result<Presence, Error> {
        let connected = self
            .store
            .presence_connected(actor.to_store(), self.fresh_since())
            .await?;
        let setting = self.store.profile(actor.to_store()).await?;
        let chosen = Chosen {
            availability: setting.as_ref().map_or(availability::ONLINE, |p| {
                u8::try_from(p.availability).unwrap_or(availability::ONLINE)
            }),
            status: setting.and_then(|p| p.status),
        };
        let (availability, status) = if !connected || chosen.availability == availability::INVISIBLE
        {
            (availability::OFFLINE, None)
        } else {
            (chosen.availability, chosen.status.clone())
        };
        Ok(Presence {
            fid: fid.clone(),
            availability,
            status,
            chosen: own.then_some(chosen),
        })
    }

    /// Tells the actor's guilds (ephemeral).
    async fn announce_presence(&self, actor: ActorId, fid: &FederationId) -> Result<(), Error> {
        let p = self.presence_of(actor, fid, false).await?;
        for (guild, _) in self.store.guilds_of(actor.to_store()).await? {
            self.events
                .ephemeral(Publish::new(
                    Self::guild_stream(guild),
                    FUGUE_CHAT,
                    community::op::PRESENCE_UPDATE,
                    json(&p),
                ))
                .await;
        }
        Ok(())
    }

    /// Whether `viewer` may learn `actor`'s presence: itself, or sharing a guild.
    async fn sees_presence(&self, viewer: ActorId, actor: ActorId) -> Result<bool, Error> {
        Ok(viewer == actor
            || self
                .store
                .share_a_guild(viewer.to_store(), actor.to_store())
                .await?)
    }

    /// `PUT /users/@me/presence`.
    pub async fn set_presence(
        &self,
        authed: &Authed,
        req: set_presence::Request,
    ) -> Result<Presence, Error> {
        let actor = &authed.actor;
        if req.availability > availability::DO_NOT_DISTURB {
            return Err(Error::Invalid(
                "availability is 0 (invisible), 1 (online), 2 (idle) or 3 (do not disturb)".into(),
            ));
        }
        if let Some(s) = &req.status {
            text("status", s, community::MAX_STATUS, true)?;
        }
        let mut row = self.profile_row(actor.id).await?;
        row.availability = i64::from(req.availability);
        row.status = req.status.filter(|s| !s.trim().is_empty());
        row.updated_at = self.events.now().to_store();
        self.store.set_profile(&row, &[]).await?;
        self.announce_presence(actor.id, &actor.fid).await?;
        self.presence_of(actor.id, &actor.fid, true).await
    }

    /// `GET /presences?fids=a,b`: unknown actors and those sharing no guild with the caller
    /// show offline.
    pub async fn presences(&self, authed: &Authed, fids: &str) -> Result<Vec<Presence>, Error> {
        let list: Vec<&str> = fids.split(',').filter(|f| !f.is_empty()).collect();
        if list.is_empty() || list.len() > MAX_PRESENCE_BATCH {
            return Err(Error::Invalid(format!(
                "fids names 1 to {MAX_PRESENCE_BATCH} actors, comma-separated"
            )));
        }
        let mut out = Vec::with_capacity(list.len());
        for f in list {
            let fid: FederationId = f
                .parse()
                .map_err(|_| Error::Invalid(format!("{f:?} is not a federation id")))?;
            let p = match self.actor_id(&fid).await? {
                Some(id) if self.sees_presence(authed.actor.id, id).await? => {
                    self.presence_of(id, &fid, id == authed.actor.id).await?
                }
                _ => Presence {
                    fid,
                    availability: availability::OFFLINE,
                    status: None,
                    chosen: None,
                },
            };
            out.push(p);
        }
        Ok(out)
    }

    async fn profile_row(&self, actor: ActorId) -> Result<ProfileRow, Error> {
        Ok(self
            .store
            .profile(actor.to_store())
            .await?
            .unwrap_or(ProfileRow {
                actor_id: actor.to_store(),
                availability: i64::from(availability::ONLINE),
                ..ProfileRow::default()
            }))
    }

    /// The profile, with the presence `viewer` may see.
    async fn profile_view(
        &self,
        viewer: Option<ActorId>,
        actor: ActorId,
        fid: &FederationId,
    ) -> Result<Profile, Error> {
        let row = self.profile_row(actor).await?;
        let presence = match viewer {
            Some(v) if !self.sees_presence(v, actor).await? => None,
            _ => Some(self.presence_of(actor, fid, viewer == Some(actor)).await?),
        };
        Ok(Profile {
            fid: fid.clone(),
            display_name: row.display_name,
            pronouns: row.pronouns,
            about: row.about,
            avatar: row.avatar,
            availability: presence
                .as_ref()
                .map_or(availability::OFFLINE, |p| p.availability),
            status: presence.as_ref().and_then(|p| p.status.clone()),
            timezone: row.timezone,
            chosen: presence.and_then(|p| p.chosen),
        })
    }

    /// `GET /users/@me/profile`.
    pub async fn own_profile(&self, authed: &Authed) -> Result<Profile, Error> {
        let a = &authed.actor;
        self.profile_view(Some(a.id), a.id, &a.fid).await
    }

    /// `GET /users/{fid}/profile`: any actor this server knows.
    pub async fn profile(&self, authed: &Authed, fid: &FederationId) -> Result<Profile, Error> {
        let id = self
            .actor_id(fid)
            .await?
            .ok_or_else(|| Error::ActorNotFound(fid.to_string()))?;
        self.profile_view(Some(authed.actor.id), id, fid).await
    }

    /// `PATCH /users/@me/profile`: absent fields stay, empty ones are cleared.
    pub async fn update_profile(
        &self,
        authed: &Authed,
        req: update_profile::Request,
    ) -> Result<Profile, Error> {
        let actor = &authed.actor;
        let fields = [
            (
                "display_name",
                &req.display_name,
                community::MAX_DISPLAY_NAME,
            ),
            ("pronouns", &req.pronouns, community::MAX_PRONOUNS),
            ("timezone", &req.timezone, community::MAX_TIMEZONE),
        ];
        for (name, value, max) in fields {
            if let Some(v) = value {
                text(name, v, max, true)?;
            }
        }
        if let Some(about) = &req.about
            && (about.chars().count() > community::MAX_ABOUT
                || about.chars().any(|c| c.is_control() && c != '\n'))
        {
            return Err(Error::Invalid(format!(
                "about must be at most {} characters without control characters but line \
                 breaks",
                community::MAX_ABOUT
            )));
        }
        if let Some(tz) = &req.timezone
            && !tz
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '+' | '-'))
        {
            return Err(Error::Invalid(
                "timezone is an IANA name like Europe/Berlin".into(),
            ));
        }
        let avatar = self.picture(actor, req.avatar).await?;
        let mut row = self.profile_row(actor.id).await?;
        if let Some(avatar) = avatar {
            row.avatar = avatar;
        }
        let set = |old: &mut Option<String>, new: Option<String>| {
            if let Some(v) = new {
                *old = Some(v).filter(|v| !v.trim().is_empty());
            }
        };
        set(&mut row.display_name, req.display_name);
        set(&mut row.pronouns, req.pronouns);
        set(&mut row.about, req.about);
        set(&mut row.timezone, req.timezone);
        let now = self.events.now();
        row.updated_at = now.to_store();
        // What the event shows: the presence as others see it.
        let mut view = self.profile_view(None, actor.id, &actor.fid).await?;
        view.display_name.clone_from(&row.display_name);
        view.pronouns.clone_from(&row.pronouns);
        view.about.clone_from(&row.about);
        view.timezone.clone_from(&row.timezone);
        view.avatar.clone_from(&row.avatar);
        let key = format!("profile:{}", actor.fid);
        let mut publishes = vec![
            Publish::to_actor(
                actor.id,
                FUGUE_CHAT,
                community::op::PROFILE_UPDATE,
                json(&view),
            )
            .collapse(key.clone()),
        ];
        for (guild, _) in self.store.guilds_of(actor.id.to_store()).await? {
            publishes.push(
                Publish::new(
                    Self::guild_stream(guild),
                    FUGUE_CHAT,
                    community::op::PROFILE_UPDATE,
                    json(&view),
                )
                .collapse(key.clone()),
            );
        }
        let news: Vec<_> = publishes.iter().map(|p| p.to_new(now)).collect();
        let seqs = self.store.set_profile(&row, &news).await?;
        for (p, seq) in publishes.into_iter().zip(seqs) {
            self.events.appended(p, seq, now).await;
        }
        Ok(view)
    }
}
