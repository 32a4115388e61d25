//! Fugue's own chat namespace (`/.p2/fugue-chat/v1/`, core §8.2, §8.6): what a chat server
//! needs beyond the chat spec — roles, member roles, channel permission overwrites, bans,
//! history around a message, edit histories and guild ownership.

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
}
