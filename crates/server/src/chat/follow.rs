//! The chat service channels of the gateway (op 8): `chat` and `fugue-chat` follow the
//! streams of the guilds and conversations an actor is a member of, from where its membership began, with a
//! view of the channels it may read there now (docs/ARCHITECTURE.md, "Delivery: streams").
//! Typing (`chat` op 9 from a client) is ephemeral: announced, never written.

use std::collections::HashSet;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use fugue_proto::chat::{CHAT, FUGUE_CHAT, Permissions, Typing, TypingStart, op};

use super::{Chat, Error, Snapshot, json};
use crate::events::{Audience, Publish};
use crate::gateway::{Follow, OpRefused, Service, View};
use crate::http::ApiError;
use crate::ids::{ActorId, StreamId, from_store};
use crate::principal::Actor;
use crate::sessions::Authed;

/// The channels of one guild one actor may read, fixed at one access version.
struct GuildView {
    visible: HashSet<i64>,
}

impl View for GuildView {
    fn sees(&self, channel: i64) -> bool {
        self.visible.contains(&channel)
    }
}

fn follow(s: &Snapshot, actor: ActorId) -> Option<Follow> {
    let since = s.since(actor)?;
    Some(Follow {
        stream: StreamId::from_store(s.guild_id),
        since: from_store(since),
        view: Arc::new(GuildView {
            visible: s.visible_channels(actor).collect(),
        }),
    })
}

impl Chat {
    /// One follow per guild and per conversation the actor is a member of.
    pub async fn follows_of(&self, actor: &Actor) -> Result<Vec<Follow>, Error> {
        let mut out = Vec::new();
        for (guild, _) in self.store.guilds_of(actor.id.to_store()).await? {
            if let Some(s) = self.snapshot(guild).await?
                && let Some(f) = follow(&s, actor.id)
            {
                out.push(f);
            }
        }
        for s in self.conversation_follows(actor.id).await? {
            out.extend(follow(&s, actor.id));
        }
        Ok(out)
    }

    /// The actor's view of one guild's or conversation's stream now; `None` when it is no
    /// member (or the stream is neither).
    pub async fn view_of(&self, actor: &Actor, stream: StreamId) -> Result<Option<Follow>, Error> {
        Ok(self
            .stream_snapshot(stream.to_store())
            .await?
            .and_then(|s| follow(&s, actor.id)))
    }

    /// `chat` op 9 from a client: announce that it types in a channel it may send to.
    pub async fn typing(&self, authed: &Authed, d: &serde_json::Value) -> Result<(), Error> {
        let t: Typing = serde_json::from_value(d.clone())
            .map_err(|e| Error::Invalid(format!("typing payload: {e}")))?;
        let (c, _, p) = self.channel_access(&authed.actor, t.channel_id).await?;
        Self::require(p, Permissions::SEND_MESSAGES)?;
        let d = TypingStart {
            guild_id: from_store(c.guild_id),
            channel_id: t.channel_id,
            fid: authed.actor.fid.clone(),
        };
        self.events
            .ephemeral(
                Publish::new(
                    Self::guild_stream(c.guild_id),
                    CHAT,
                    op::TYPING_START,
                    json(&d),
                )
                .audience(Audience::Channel(c.id))
                .except(authed.session.pk),
            )
            .await;
        Ok(())
    }
}

impl Service for Chat {
    fn name(&self) -> &str {
        CHAT
    }

    fn follows<'a>(&'a self, actor: &'a Actor) -> BoxFuture<'a, Result<Vec<Follow>, ApiError>> {
        Box::pin(async move { Ok(self.follows_of(actor).await?) })
    }

    fn view<'a>(
        &'a self,
        actor: &'a Actor,
        stream: StreamId,
    ) -> BoxFuture<'a, Result<Option<Follow>, ApiError>> {
        Box::pin(async move { Ok(self.view_of(actor, stream).await?) })
    }

    /// Presence: the actor's first `chat` connection on this node opened, or its last closed.
    fn connected(&self, actor: &Actor, online: bool) {
        self.connection_edge(actor, online);
    }

    fn client_op<'a>(
        &'a self,
        authed: &'a Authed,
        op: u16,
        d: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<(), OpRefused>> {
        Box::pin(async move {
            if op != fugue_proto::chat::op::TYPING_START {
                return Err(OpRefused::Unknown(op));
            }
            self.typing(authed, d)
                .await
                .map_err(|e| OpRefused::Refused(e.into()))
        })
    }
}

/// The `fugue-chat` channel: the same guild streams, for Fugue's own events.
#[derive(Clone)]
pub struct FugueChatChannel(pub Chat);

impl Service for FugueChatChannel {
    fn name(&self) -> &str {
        FUGUE_CHAT
    }

    fn follows<'a>(&'a self, actor: &'a Actor) -> BoxFuture<'a, Result<Vec<Follow>, ApiError>> {
        self.0.follows(actor)
    }

    fn view<'a>(
        &'a self,
        actor: &'a Actor,
        stream: StreamId,
    ) -> BoxFuture<'a, Result<Option<Follow>, ApiError>> {
        self.0.view(actor, stream)
    }
}
