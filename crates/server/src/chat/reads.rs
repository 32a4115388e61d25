//! Mentions and read states.
//!
//! A message mentions an actor by `<@fid>` in its content and everyone by `@everyone`,
//! which needs MENTION_EVERYONE (checked at send and edit; the content is signed, so the
//! server refuses rather than rewrites it). Nothing else is stored for mentions: counting
//! reads the content of the unread messages.
//!
//! A read marker is one row per (actor, channel); moving it appends `fugue-chat` op 33 to
//! the actor's own stream (collapse key `read:<channel>`), which reaches every session of
//! the actor. Unread and mention counts are computed on request from the marker on (or,
//! without one, from the actor's joining the guild), over the channel's message index,
//! stopping at [`MAX_UNREAD`].

use fugue_proto::FederationId;
use fugue_proto::chat::{FUGUE_CHAT, Permissions, channel_type};
use fugue_proto::community::{self, MAX_UNREAD, ReadMarker, ReadState, mention_of};

use super::messages::MESSAGE_EPOCH;
use super::{Chat, Error, json};
use crate::events::Publish;
use crate::ids::{ActorId, from_store, to_store};
use crate::sessions::Authed;

/// The first message id of second `secs` (UNIX).
fn first_id_at(secs: i64) -> i64 {
    let ms = secs
        .saturating_sub(to_store(MESSAGE_EPOCH))
        .max(0)
        .saturating_mul(1000);
    ms << 22
}

/// A LIKE pattern (escape `\`) matching text that contains `needle`.
fn contains_pattern(needle: &str) -> String {
    let mut p = String::from("%");
    for ch in needle.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(ch);
    }
    p.push('%');
    p
}

impl Chat {
    /// `@everyone` needs MENTION_EVERYONE.
    pub(super) fn check_mentions(p: Permissions, content: &str) -> Result<(), Error> {
        if community::mentions_everyone(content) {
            Self::require(p, Permissions::MENTION_EVERYONE)?;
        }
        Ok(())
    }

    /// `PUT /channels/{id}/read-state`: moves the actor's marker to a message of the
    /// channel and tells its other sessions.
    pub async fn set_read_state(
        &self,
        authed: &Authed,
        channel_id: u64,
        last_read: u64,
    ) -> Result<ReadState, Error> {
        let actor = &authed.actor;
        let (c, _, m) = self.channel_message(actor, channel_id, last_read).await?;
        let now = self.events.now();
        let d = ReadMarker {
            guild_id: from_store(c.guild_id),
            channel_id,
            last_read,
        };
        let e = Publish::to_actor(actor.id, FUGUE_CHAT, community::op::READ_STATE, json(&d))
            .collapse(format!("read:{channel_id}"));
        let seq = self
            .store
            .set_read_state(
                actor.id.to_store(),
                c.id,
                m.id,
                now.to_store(),
                &e.to_new(now),
            )
            .await?;
        self.events.appended(e, seq, now).await;
        self.read_state(actor.id, &actor.fid, c.guild_id, c.id, Some(m.id))
            .await
    }

    async fn read_state(
        &self,
        actor: ActorId,
        fid: &FederationId,
        guild_id: i64,
        channel_id: i64,
        after: Option<i64>,
    ) -> Result<ReadState, Error> {
        let from = match after {
            Some(id) => id,
            // Without a marker, counting starts where the membership did. A DM or group is
            // its own guild (`guild_id` is the conversation's id, as in its messages).
            None if guild_id == channel_id => self
                .store
                .conversation_members(channel_id)
                .await?
                .into_iter()
                .find(|m| m.actor_id == actor.to_store())
                .map_or(0, |m| first_id_at(m.joined_at)),
            None => self
                .store
                .member(guild_id, actor.to_store())
                .await?
                .map_or(0, |m| first_id_at(m.joined_at)),
        };
        let (unread, mentions) = self
            .store
            .unread_counts(
                channel_id,
                from,
                actor.to_store(),
                &contains_pattern(&mention_of(fid)),
                to_store(MAX_UNREAD),
            )
            .await?;
        Ok(ReadState {
            guild_id: from_store(guild_id),
            channel_id: from_store(channel_id),
            last_read: after.map(from_store),
            unread: from_store(unread),
            mentions: from_store(mentions),
        })
    }

    /// `GET /users/@me/read-states`: every channel the actor may read in its guilds, then its
    /// DMs and groups on this server.
    pub async fn read_states(&self, authed: &Authed) -> Result<Vec<ReadState>, Error> {
        let actor = &authed.actor;
        let markers: std::collections::HashMap<i64, i64> = self
            .store
            .read_states(actor.id.to_store())
            .await?
            .into_iter()
            .map(|r| (r.channel_id, r.last_read))
            .collect();
        let mut out = Vec::new();
        for (guild, _) in self.store.guilds_of(actor.id.to_store()).await? {
            let Some(s) = self.snapshot(guild).await? else {
                continue;
            };
            let visible: std::collections::HashSet<i64> = s.visible_channels(actor.id).collect();
            for ch in self.store.channels(guild).await? {
                if ch.kind == i64::from(channel_type::CATEGORY) || !visible.contains(&ch.id) {
                    continue;
                }
                out.push(
                    self.read_state(
                        actor.id,
                        &actor.fid,
                        guild,
                        ch.id,
                        markers.get(&ch.id).copied(),
                    )
                    .await?,
                );
            }
        }
        // The actor's DMs and groups on this server.
        for (conversation, _) in self.store.conversations_of(actor.id.to_store()).await? {
            let marker = markers.get(&conversation).copied();
            out.push(
                self.read_state(actor.id, &actor.fid, conversation, conversation, marker)
                    .await?,
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(contains_pattern("<@a_b@x.y>"), "%<@a\\_b@x.y>%");
        assert_eq!(contains_pattern("100%"), "%100\\%%");
    }

    #[test]
    fn the_first_id_of_a_second_is_below_every_message_of_it() {
        let t = to_store(MESSAGE_EPOCH) + 10;
        assert_eq!(first_id_at(t), 10_000 << 22);
        assert_eq!(first_id_at(0), 0);
    }
}
