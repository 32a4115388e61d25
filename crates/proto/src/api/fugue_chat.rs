//! Fugue's own chat namespace (`/.p2/fugue-chat/v1/`, core §8.2, §8.6): what a chat server
//! needs beyond the chat spec — roles, member roles, channel permission overwrites, bans,
//! history around a message, edit histories and guild ownership; reactions, pins, read
//! states, presence and profiles; attachment details and thumbnails.

endpoints! {
    /// Every endpoint of Fugue's chat additions.
    FUGUE_CHAT_ENDPOINTS;
    /// Where Fugue's chat additions live below a home server's origin.
    FUGUE_CHAT_API = "/.p2/fugue-chat/";

    /// The guild's roles, `@everyone` (id = the guild's id) first.
    list_roles = GET "v1/guilds/{guild_id}/roles" (guild_id: u64), auth AnySession {
        pub type Response = Vec<crate::chat::Role>;
    }

    /// A new role (MANAGE_ROLES; only bits the caller has itself).
    create_role = POST "v1/guilds/{guild_id}/roles" (guild_id: u64), auth AnySession {
        use serde::{Deserialize, Serialize};

        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Request {
            pub name: String,
            #[serde(default)]
            pub permissions: crate::chat::Permissions,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub position: Option<u32>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub color: Option<u32>,
        }
        pub type Response = crate::chat::Role;
    }

    /// Changes a role (MANAGE_ROLES).
    update_role = PATCH "v1/guilds/{guild_id}/roles/{role_id}" (guild_id: u64, role_id: u64),
        auth AnySession {
        use serde::{Deserialize, Serialize};

        #[derive(Debug, Clone, Default, Serialize, Deserialize)]
        pub struct Request {
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub name: Option<String>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub permissions: Option<crate::chat::Permissions>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub position: Option<u32>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub color: Option<u32>,
        }
        pub type Response = crate::chat::Role;
    }

    /// Deletes a role (MANAGE_ROLES); `@everyone` cannot be deleted.
    delete_role = DELETE "v1/guilds/{guild_id}/roles/{role_id}" (guild_id: u64, role_id: u64),
        auth AnySession {}

    /// Gives a member a role (MANAGE_ROLES).
    add_member_role = PUT "v1/guilds/{guild_id}/members/{fid}/roles/{role_id}"
        (guild_id: u64, fid: &crate::FederationId, role_id: u64), auth AnySession {
        pub type Response = crate::chat::Member;
    }

    /// Takes a role from a member (MANAGE_ROLES).
    remove_member_role = DELETE "v1/guilds/{guild_id}/members/{fid}/roles/{role_id}"
        (guild_id: u64, fid: &crate::FederationId, role_id: u64), auth AnySession {}

    /// The permission overwrites of a channel (MANAGE_ROLES).
    list_overwrites = GET "v1/channels/{channel_id}/overwrites" (channel_id: u64), auth AnySession {
        pub type Response = Vec<crate::chat::Overwrite>;
    }

    /// Sets a channel's overwrite for a role (its id) or a member (its FID) (MANAGE_ROLES).
    set_overwrite = PUT "v1/channels/{channel_id}/overwrites/{target}"
        (channel_id: u64, target: &crate::chat::OverwriteTarget), auth AnySession {
        use serde::{Deserialize, Serialize};

        #[derive(Debug, Clone, Default, Serialize, Deserialize)]
        pub struct Request {
            #[serde(default)]
            pub allow: crate::chat::Permissions,
            #[serde(default)]
            pub deny: crate::chat::Permissions,
        }
        pub type Response = crate::chat::Overwrite;
    }

    /// Removes a channel's overwrite (MANAGE_ROLES).
    delete_overwrite = DELETE "v1/channels/{channel_id}/overwrites/{target}"
        (channel_id: u64, target: &crate::chat::OverwriteTarget), auth AnySession {}

    /// The guild's bans (BAN_MEMBERS).
    list_bans = GET "v1/guilds/{guild_id}/bans" (guild_id: u64), auth AnySession {
        pub type Response = Vec<crate::chat::Ban>;
    }

    /// Bans an actor (BAN_MEMBERS): removes it if it is a member; it cannot join again,
    /// also not with a new invite.
    ban_member = PUT "v1/guilds/{guild_id}/bans/{fid}" (guild_id: u64, fid: &crate::FederationId),
        auth AnySession {
        use serde::{Deserialize, Serialize};

        #[derive(Debug, Clone, Default, Serialize, Deserialize)]
        pub struct Request {
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub reason: Option<String>,
        }
        pub type Response = crate::chat::Ban;
    }

    /// Lifts a ban (BAN_MEMBERS).
    unban_member = DELETE "v1/guilds/{guild_id}/bans/{fid}" (guild_id: u64, fid: &crate::FederationId),
        auth AnySession {}

    /// History with context: `before`, `after` or `around` a message id (one of them),
    /// `limit` ≤ 100. Newest first, as the chat route.
    message_history = GET "v1/channels/{channel_id}/messages" (channel_id: u64), auth AnySession {
        use serde::{Deserialize, Serialize};

        #[derive(Debug, Clone, Default, Serialize, Deserialize)]
        pub struct Query {
            #[serde(default, with = "crate::wire::u64_string::option", skip_serializing_if = "Option::is_none")]
            pub limit: Option<u64>,
            #[serde(default, with = "crate::wire::u64_string::option", skip_serializing_if = "Option::is_none")]
            pub before: Option<u64>,
            #[serde(default, with = "crate::wire::u64_string::option", skip_serializing_if = "Option::is_none")]
            pub after: Option<u64>,
            #[serde(default, with = "crate::wire::u64_string::option", skip_serializing_if = "Option::is_none")]
            pub around: Option<u64>,
        }
        pub type Response = Vec<crate::chat::Message>;
    }

    /// Every signed version of a message, oldest first (empty once it is deleted).
    message_versions = GET "v1/channels/{channel_id}/messages/{message_id}/versions"
        (channel_id: u64, message_id: u64), auth AnySession {
        pub type Response = Vec<crate::chat::MessageVersion>;
    }

    /// Hands the guild to another member (the owner only).
    transfer_guild = PUT "v1/guilds/{guild_id}/owner" (guild_id: u64), auth AnySession {
        use serde::{Deserialize, Serialize};

        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Request {
            pub owner_id: crate::FederationId,
        }
        pub type Response = crate::chat::Guild;
    }

    /// A group conversation owned by the caller with 1–14 other members (2–15 in all).
    create_group = POST "v1/conversations", auth AnySession {
        use serde::{Deserialize, Serialize};

        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Request {
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub name: Option<String>,
            /// The other members (the creator is one by creating it).
            pub members: Vec<crate::FederationId>,
        }
        pub type Response = crate::conversation::Conversation;
    }

    /// A conversation (DM or group) the caller is a member of.
    get_conversation = GET "v1/conversations/{conversation_id}" (conversation_id: u64),
        auth AnySession {
        pub type Response = crate::conversation::Conversation;
    }

    /// Renames a group (any member; an empty name removes it).
    rename_group = PATCH "v1/conversations/{conversation_id}" (conversation_id: u64),
        auth AnySession {
        use serde::{Deserialize, Serialize};

        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Request {
            pub name: Option<String>,
        }
        pub type Response = crate::conversation::Conversation;
    }

    /// The conversation's members, longest-standing first.
    list_conversation_members = GET "v1/conversations/{conversation_id}/members"
        (conversation_id: u64), auth AnySession {
        pub type Response = Vec<crate::conversation::ConversationMember>;
    }

    /// Adds a member to a group (the owner only; at most 15 members).
    add_conversation_member = PUT "v1/conversations/{conversation_id}/members/{fid}"
        (conversation_id: u64, fid: &crate::FederationId), auth AnySession {
        pub type Response = crate::conversation::ConversationMember;
    }

    /// Removes a member from a group (the owner; anyone removes itself = leaves).
    remove_conversation_member = DELETE "v1/conversations/{conversation_id}/members/{fid}"
        (conversation_id: u64, fid: &crate::FederationId), auth AnySession {}

    /// Leaves a group; an owner who leaves hands it to the longest-standing member, the last
    /// one to leave closes it.
    leave_conversation = DELETE "v1/conversations/{conversation_id}/members/@me"
        (conversation_id: u64), auth AnySession {}

    /// Hands a group to another member (the owner only).
    transfer_conversation = PUT "v1/conversations/{conversation_id}/owner"
        (conversation_id: u64), auth AnySession {
        use serde::{Deserialize, Serialize};

        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Request {
            pub owner_id: crate::FederationId,
        }
        pub type Response = crate::conversation::Conversation;
    }

    /// Adds the caller's signed reaction to a message (ADD_REACTIONS); adding it again
    /// changes nothing. `emoji` as [`crate::community::valid_emoji`] allows.
    add_reaction = PUT "v1/channels/{channel_id}/messages/{message_id}/reactions/{emoji}"
        (channel_id: u64, message_id: u64, emoji: &str), auth AnySession {
        pub use super::ReactionRequest as Request;
    }

    /// Removes the caller's own reaction, signed with `add` = false.
    remove_reaction = DELETE "v1/channels/{channel_id}/messages/{message_id}/reactions/{emoji}"
        (channel_id: u64, message_id: u64, emoji: &str), auth AnySession {
        pub use super::ReactionRequest as Request;
    }

    /// Who reacted to a message with `emoji`, in the order they did, each with the reaction
    /// they signed.
    list_reactions = GET "v1/channels/{channel_id}/messages/{message_id}/reactions/{emoji}"
        (channel_id: u64, message_id: u64, emoji: &str), auth AnySession {
        pub type Response = Vec<crate::community::SignedReaction>;
    }

    /// Pins a message of the channel (MANAGE_MESSAGES; at most 50 per channel).
    pin_message = PUT "v1/channels/{channel_id}/pins/{message_id}"
        (channel_id: u64, message_id: u64), auth AnySession {}

    /// Unpins a message (MANAGE_MESSAGES).
    unpin_message = DELETE "v1/channels/{channel_id}/pins/{message_id}"
        (channel_id: u64, message_id: u64), auth AnySession {}

    /// The channel's pinned messages, the latest pinned first, with who pinned each and when.
    list_pins = GET "v1/channels/{channel_id}/pins" (channel_id: u64), auth AnySession {
        pub type Response = Vec<crate::community::Pinned>;
    }

    /// Moves the caller's read marker of a channel (to any message of it, also back).
    set_read_state = PUT "v1/channels/{channel_id}/read-state" (channel_id: u64),
        auth AnySession {
        use serde::{Deserialize, Serialize};

        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Request {
            #[serde(with = "crate::wire::u64_string")]
            pub last_read: u64,
        }
        pub type Response = crate::community::ReadState;
    }

    /// The caller's read state of every channel it may read, with unread and mention
    /// counts (each at most 1000).
    read_states = GET "v1/users/@me/read-states", auth AnySession {
        pub type Response = Vec<crate::community::ReadState>;
    }

    /// Sets the caller's availability (1 online, 2 idle, 3 do not disturb, 0 invisible) and
    /// custom status.
    set_presence = PUT "v1/users/@me/presence", auth AnySession {
        use serde::{Deserialize, Serialize};

        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Request {
            pub availability: u8,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub status: Option<String>,
        }
        pub type Response = crate::community::Presence;
    }

    /// The presence of actors (comma-separated FIDs, at most 100): the caller's own and of
    /// those sharing a guild with it; others show offline.
    get_presences = GET "v1/presences", auth AnySession {
        use serde::{Deserialize, Serialize};

        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Query {
            pub fids: String,
        }
        pub type Response = Vec<crate::community::Presence>;
    }

    /// The caller's profile.
    get_own_profile = GET "v1/users/@me/profile", auth AnySession {
        pub type Response = crate::community::Actor;
    }

    /// Changes the caller's profile: a field absent stays, an empty string clears it.
    update_profile = PATCH "v1/users/@me/profile", auth AnySession {
        use serde::{Deserialize, Serialize};

        #[derive(Debug, Clone, Default, Serialize, Deserialize)]
        pub struct Request {
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub display_name: Option<String>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub pronouns: Option<String>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub about: Option<String>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub timezone: Option<String>,
            /// The URL of a public image resource of the caller's (empty: none).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub avatar: Option<String>,
        }
        pub type Response = crate::community::Actor;
    }

    /// The profile of an actor this server knows.
    get_profile = GET "v1/users/{fid}/profile" (fid: &crate::FederationId), auth AnySession {
        pub type Response = crate::community::Actor;
    }

    /// What the server knows of an attachment: size, type, name, image dimensions,
    /// placeholder and thumbnail (who may read the attachment may read this).
    attachment_details = GET "v1/attachments/{resource_id}" (resource_id: &str), auth AnySession {
        pub type Response = crate::chat::Attachment;
    }

    /// An image attachment's thumbnail (at most [`crate::chat::THUMBNAIL_SIZE`] pixels
    /// each way); 404 when it has none.
    attachment_thumbnail = GET "v1/attachments/{resource_id}/thumbnail" (resource_id: &str),
        auth AnySession {}
}

/// A reaction's addition or removal, signed by its author over
/// [`crate::chat::SignedPayload::reaction`].
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ReactionRequest {
    pub nonce: String,
    /// Hex Ed25519 signature.
    pub signature: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_cert: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<crate::Serial>,
}
