//! The gateway's chat events: frames of the `chat` and `fugue-chat` service channels, parsed
//! by namespace and opcode into [`ChatEvent`]. An opcode this client does not know, or a
//! payload without its opcode's shape, is kept raw rather than lost.

use fugue_proto::chat::{
    Ban, CHAT, Channel, ChannelDelete, FUGUE_CHAT, Guild, GuildRef, Member, MemberRef, Message,
    MessageDelete, OverwriteUpdate, Role, RoleDelete, Typing, TypingStart, fugue_op, op,
};
use fugue_proto::community::{self, Actor, PinUpdate, Presence, ReactionEvent, ReadMarker};
use fugue_proto::conversation::{Conversation, ConversationMember, ConversationRef, OwnerChange};
use fugue_proto::gateway::Envelope;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::gateway::{Gateway, GatewayEvent};

/// One chat event. Messages are unverified: check them with
/// [`Chat::verify_message`](super::Chat::verify_message).
#[derive(Debug, Clone, PartialEq)]
pub enum ChatEvent {
    // `chat`
    MessageCreate(Message),
    MessageUpdate(Message),
    MessageDelete(MessageDelete),
    ChannelCreate(Channel),
    ChannelUpdate(Channel),
    ChannelDelete(ChannelDelete),
    MemberAdd(Member),
    MemberRemove(MemberRef),
    GuildUpdate(Guild),
    TypingStart(TypingStart),
    // `fugue-chat`
    GuildJoined(GuildRef),
    GuildLeft(GuildRef),
    RoleUpdate(Role),
    RoleDelete(RoleDelete),
    MemberUpdate(Member),
    OverwriteUpdate(OverwriteUpdate),
    BanAdd(Ban),
    BanRemove(MemberRef),
    GuildDelete(GuildRef),
    /// On the actor's own stream: it is now in this conversation (DM or group).
    ConversationJoined(Conversation),
    /// On the actor's own stream: it no longer is (left or removed).
    ConversationLeft(ConversationRef),
    /// A conversation began, was renamed or closed.
    ConversationUpdate(Conversation),
    ConversationMemberAdd(ConversationMember),
    ConversationMemberRemove(ConversationMember),
    /// A group changed hands (a transfer, or its owner left).
    ConversationOwner(OwnerChange),
    /// A signed reaction was added to a message of a channel one may view.
    ReactionAdd(ReactionEvent),
    /// An actor took its reaction back.
    ReactionRemove(ReactionEvent),
    /// A message was pinned or unpinned.
    PinUpdate(PinUpdate),
    /// On the actor's own stream: one of its sessions moved a read marker.
    ReadState(ReadMarker),
    /// An actor sharing a guild came online, went offline or changed its status
    /// (ephemeral: never replayed).
    PresenceUpdate(Presence),
    /// An actor (this one, or one sharing a guild) changed its profile.
    ProfileUpdate(Actor),
    /// An opcode of either namespace this client does not know.
    Unknown(Envelope),
    /// A known opcode whose payload does not have its shape.
    Malformed {
        error: String,
        envelope: Envelope,
    },
}

fn parse<T: DeserializeOwned>(envelope: &Envelope, make: impl FnOnce(T) -> ChatEvent) -> ChatEvent {
    match serde_json::from_value(envelope.d.clone()) {
        Ok(d) => make(d),
        Err(e) => ChatEvent::Malformed {
            error: e.to_string(),
            envelope: envelope.clone(),
        },
    }
}

impl ChatEvent {
    /// The chat event a frame carries; `None` when it is not of `chat` or `fugue-chat`.
    pub fn from_envelope(envelope: &Envelope) -> Option<ChatEvent> {
        let e = envelope;
        let event = match (e.n.as_str(), e.op) {
            (CHAT, op::MESSAGE_CREATE) => parse(e, ChatEvent::MessageCreate),
            (CHAT, op::MESSAGE_UPDATE) => parse(e, ChatEvent::MessageUpdate),
            (CHAT, op::MESSAGE_DELETE) => parse(e, ChatEvent::MessageDelete),
            (CHAT, op::CHANNEL_CREATE) => parse(e, ChatEvent::ChannelCreate),
            (CHAT, op::CHANNEL_UPDATE) => parse(e, ChatEvent::ChannelUpdate),
            (CHAT, op::CHANNEL_DELETE) => parse(e, ChatEvent::ChannelDelete),
            (CHAT, op::MEMBER_ADD) => parse(e, ChatEvent::MemberAdd),
            (CHAT, op::MEMBER_REMOVE) => parse(e, ChatEvent::MemberRemove),
            (CHAT, op::GUILD_UPDATE) => parse(e, ChatEvent::GuildUpdate),
            (CHAT, op::TYPING_START) => parse(e, ChatEvent::TypingStart),
            (FUGUE_CHAT, fugue_op::GUILD_JOINED) => parse(e, ChatEvent::GuildJoined),
            (FUGUE_CHAT, fugue_op::GUILD_LEFT) => parse(e, ChatEvent::GuildLeft),
            (FUGUE_CHAT, fugue_op::ROLE_UPDATE) => parse(e, ChatEvent::RoleUpdate),
            (FUGUE_CHAT, fugue_op::ROLE_DELETE) => parse(e, ChatEvent::RoleDelete),
            (FUGUE_CHAT, fugue_op::MEMBER_UPDATE) => parse(e, ChatEvent::MemberUpdate),
            (FUGUE_CHAT, fugue_op::OVERWRITE_UPDATE) => parse(e, ChatEvent::OverwriteUpdate),
            (FUGUE_CHAT, fugue_op::BAN_ADD) => parse(e, ChatEvent::BanAdd),
            (FUGUE_CHAT, fugue_op::BAN_REMOVE) => parse(e, ChatEvent::BanRemove),
            (FUGUE_CHAT, fugue_op::GUILD_DELETE) => parse(e, ChatEvent::GuildDelete),
            (FUGUE_CHAT, fugue_op::CONVERSATION_JOINED) => parse(e, ChatEvent::ConversationJoined),
            (FUGUE_CHAT, fugue_op::CONVERSATION_LEFT) => parse(e, ChatEvent::ConversationLeft),
            (FUGUE_CHAT, fugue_op::CONVERSATION_UPDATE) => parse(e, ChatEvent::ConversationUpdate),
            (FUGUE_CHAT, fugue_op::CONVERSATION_MEMBER_ADD) => {
                parse(e, ChatEvent::ConversationMemberAdd)
            }
            (FUGUE_CHAT, fugue_op::CONVERSATION_MEMBER_REMOVE) => {
                parse(e, ChatEvent::ConversationMemberRemove)
            }
            (FUGUE_CHAT, fugue_op::CONVERSATION_OWNER) => parse(e, ChatEvent::ConversationOwner),
            (FUGUE_CHAT, community::op::REACTION_ADD) => parse(e, ChatEvent::ReactionAdd),
            (FUGUE_CHAT, community::op::REACTION_REMOVE) => parse(e, ChatEvent::ReactionRemove),
            (FUGUE_CHAT, community::op::PIN_UPDATE) => parse(e, ChatEvent::PinUpdate),
            (FUGUE_CHAT, community::op::READ_STATE) => parse(e, ChatEvent::ReadState),
            (FUGUE_CHAT, community::op::PRESENCE_UPDATE) => parse(e, ChatEvent::PresenceUpdate),
            (FUGUE_CHAT, community::op::PROFILE_UPDATE) => parse(e, ChatEvent::ProfileUpdate),
            (CHAT | FUGUE_CHAT, _) => ChatEvent::Unknown(e.clone()),
            _ => return None,
        };
        Some(event)
    }
}

impl Gateway {
    /// Subscribes to the `chat` and `fugue-chat` service channels; fails when the server
    /// refuses either.
    pub async fn subscribe_chat(&self) -> Result<()> {
        for service in [CHAT, FUGUE_CHAT] {
            let ack = self.subscribe(service).await?;
            if !ack.success {
                return Err(Error::Gateway(format!(
                    "the server refused the {service} channel: {}",
                    ack.error.as_deref().unwrap_or("no reason given")
                )));
            }
        }
        Ok(())
    }

    /// Tells the viewers of `channel_id` that this actor is typing (`chat` op 9; ephemeral).
    pub async fn typing(&self, channel_id: u64) -> Result<()> {
        let d = fugue_proto::gateway::payload(&Typing { channel_id });
        self.send_service(CHAT, op::TYPING_START, d).await
    }
}

impl GatewayEvent {
    /// The chat event this is, when it is one.
    pub fn chat(&self) -> Option<ChatEvent> {
        match self {
            GatewayEvent::Service { envelope } => ChatEvent::from_envelope(envelope),
            _ => None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chat_frames_parse_by_namespace_and_opcode() {
        let delete = Envelope::new(
            CHAT,
            op::MESSAGE_DELETE,
            json!({"id": "5", "channel_id": "6", "guild_id": "7", "deleted_by": "a@example.com"}),
        );
        assert!(matches!(
            ChatEvent::from_envelope(&delete),
            Some(ChatEvent::MessageDelete(d)) if d.id == 5 && d.channel_id == 6
        ));
        let joined = Envelope::new(FUGUE_CHAT, fugue_op::GUILD_JOINED, json!({"guild_id": "9"}));
        assert_eq!(
            ChatEvent::from_envelope(&joined),
            Some(ChatEvent::GuildJoined(GuildRef { guild_id: 9 }))
        );
        // The same opcode in the other namespace is another event.
        let other = Envelope::new(CHAT, fugue_op::GUILD_JOINED, json!({"guild_id": "9"}));
        assert!(matches!(
            ChatEvent::from_envelope(&other),
            Some(ChatEvent::MessageCreate(_)) | Some(ChatEvent::Malformed { .. })
        ));
        let owner = Envelope::new(
            FUGUE_CHAT,
            fugue_op::CONVERSATION_OWNER,
            json!({"conversation_id": "12", "owner_id": "b@example.com", "previous": "a@example.com"}),
        );
        assert!(matches!(
            ChatEvent::from_envelope(&owner),
            Some(ChatEvent::ConversationOwner(o)) if o.conversation_id == 12 && o.owner_id.to_string() == "b@example.com"
        ));
        let left = Envelope::new(
            FUGUE_CHAT,
            fugue_op::CONVERSATION_LEFT,
            json!({"conversation_id": "12"}),
        );
        assert_eq!(
            ChatEvent::from_envelope(&left),
            Some(ChatEvent::ConversationLeft(ConversationRef {
                conversation_id: 12
            }))
        );
        let reaction = Envelope::new(
            FUGUE_CHAT,
            community::op::REACTION_REMOVE,
            json!({"guild_id": "1", "channel_id": "2", "message_id": "3", "emoji": "👍", "fid": "b@example.com"}),
        );
        assert!(matches!(
            ChatEvent::from_envelope(&reaction),
            Some(ChatEvent::ReactionRemove(r)) if r.message_id == 3 && r.emoji == "👍"
        ));
        let read = Envelope::new(
            FUGUE_CHAT,
            community::op::READ_STATE,
            json!({"guild_id": "1", "channel_id": "2", "last_read": "3"}),
        );
        assert_eq!(
            ChatEvent::from_envelope(&read),
            Some(ChatEvent::ReadState(ReadMarker {
                guild_id: 1,
                channel_id: 2,
                last_read: 3
            }))
        );
        let presence = Envelope::new(
            FUGUE_CHAT,
            community::op::PRESENCE_UPDATE,
            json!({"fid": "b@example.com", "availability": 2, "status": "away"}),
        );
        assert!(matches!(
            ChatEvent::from_envelope(&presence),
            Some(ChatEvent::PresenceUpdate(p)) if p.availability == 2 && p.status.as_deref() == Some("away")
        ));
        // Op 30 of `fugue-chat` is a reaction; a payload without one's fields is kept raw.
        let not_a_reaction = Envelope::new(FUGUE_CHAT, community::op::REACTION_ADD, json!({}));
        assert!(matches!(
            ChatEvent::from_envelope(&not_a_reaction),
            Some(ChatEvent::Malformed { .. })
        ));
        let unknown = Envelope::new(FUGUE_CHAT, 200, json!({}));
        assert!(
            matches!(ChatEvent::from_envelope(&unknown), Some(ChatEvent::Unknown(e)) if e.op == 200)
        );
        let bad = Envelope::new(CHAT, op::CHANNEL_DELETE, json!({"id": "x"}));
        assert!(matches!(
            ChatEvent::from_envelope(&bad),
            Some(ChatEvent::Malformed { .. })
        ));
        assert_eq!(
            ChatEvent::from_envelope(&Envelope::new("core", 3, json!({}))),
            None
        );
    }
}
