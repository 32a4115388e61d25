//! polyproto-chat (`/.p2/chat/v1/`): the routes of chat.md and the chat OpenAPI (both guild
//! reads, OP-46), with the model supersets of [`crate::chat`].
//! Fugue's additions are in [`super::fugue_chat`].

endpoints! {
    /// Every endpoint of the chat API.
    CHAT_ENDPOINTS;
    /// Where the chat API lives below a home server's origin.
    CHAT_API = "/.p2/chat/";

    /// A guild (chat.md form): public ones to anyone signed in, private ones to members.
    get_guild = GET "v1/guilds/{guild_id}" (guild_id: u64), auth AnySession {
        pub type Response = crate::chat::Guild;
    }

    /// A guild (OpenAPI form, `?guild_id=`); answers 200 (the OpenAPI's 201 is a typo).
    get_guild_by_query = GET "v1/guilds", auth AnySession {
        use serde::{Deserialize, Serialize};

        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Query {
            #[serde(with = "crate::wire::u64_string")]
            pub guild_id: u64,
        }
        pub type Response = crate::chat::Guild;
    }

    /// A new guild, owned by the caller, with an `@everyone` role and a `general` channel.
    create_guild = POST "v1/guilds", auth AnySession {
        use serde::{Deserialize, Serialize};

        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Request {
            pub name: String,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub description: Option<String>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub icon: Option<String>,
            /// chat.md has no `private`, the OpenAPI requires it: absent = private.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub private: Option<bool>,
        }
        pub type Response = crate::chat::Guild;
    }

    /// Changes a guild's settings (MANAGE_GUILD).
    update_guild = PATCH "v1/guilds/{guild_id}" (guild_id: u64), auth AnySession {
        use serde::{Deserialize, Serialize};

        #[derive(Debug, Clone, Default, Serialize, Deserialize)]
        pub struct Request {
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub name: Option<String>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub description: Option<String>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub icon: Option<String>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub private: Option<bool>,
        }
        pub type Response = crate::chat::Guild;
    }

    /// Deletes a guild (its owner, with the second factor).
    delete_guild = DELETE "v1/guilds/{guild_id}" (guild_id: u64), auth AnySession, sensitive Always {}

    /// The channels of a guild the caller may see.
    list_channels = GET "v1/guilds/{guild_id}/channels" (guild_id: u64), auth AnySession {
        pub type Response = Vec<crate::chat::Channel>;
    }

    /// A new channel or category (MANAGE_CHANNELS).
    create_channel = POST "v1/guilds/{guild_id}/channels" (guild_id: u64), auth AnySession {
        use serde::{Deserialize, Serialize};

        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Request {
            pub name: String,
            /// [`crate::chat::channel_type`]; text when absent.
            #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
            pub kind: Option<u8>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub topic: Option<String>,
            #[serde(
                default,
                with = "crate::wire::u64_string::option",
                skip_serializing_if = "Option::is_none"
            )]
            pub parent_id: Option<u64>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub position: Option<u32>,
        }
        pub type Response = crate::chat::Channel;
    }

    /// Changes a channel (MANAGE_CHANNELS). `parent_id: "0"` takes it out of its category.
    update_channel = PATCH "v1/channels/{channel_id}" (channel_id: u64), auth AnySession {
        use serde::{Deserialize, Serialize};

        #[derive(Debug, Clone, Default, Serialize, Deserialize)]
        pub struct Request {
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub name: Option<String>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub topic: Option<String>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub position: Option<u32>,
            #[serde(
                default,
                with = "crate::wire::u64_string::option",
                skip_serializing_if = "Option::is_none"
            )]
            pub parent_id: Option<u64>,
        }
        pub type Response = crate::chat::Channel;
    }

    /// Deletes a channel and its messages (MANAGE_CHANNELS).
    delete_channel = DELETE "v1/channels/{channel_id}" (channel_id: u64), auth AnySession {}

    /// History, newest first (`limit` ≤ 100, `before`/`after` a message id).
    get_messages = GET "v1/channels/{channel_id}/messages" (channel_id: u64), auth AnySession {
        use serde::{Deserialize, Serialize};

        #[derive(Debug, Clone, Default, Serialize, Deserialize)]
        pub struct Query {
            #[serde(default, with = "crate::wire::u64_string::option", skip_serializing_if = "Option::is_none")]
            pub limit: Option<u64>,
            #[serde(default, with = "crate::wire::u64_string::option", skip_serializing_if = "Option::is_none")]
            pub before: Option<u64>,
            #[serde(default, with = "crate::wire::u64_string::option", skip_serializing_if = "Option::is_none")]
            pub after: Option<u64>,
        }
        pub type Response = Vec<crate::chat::Message>;
    }

    /// A signed message (SEND_MESSAGES). 201 for a new one; the same nonce again answers the
    /// stored message with 200 (idempotent send).
    send_message = POST "v1/channels/{channel_id}/messages" (channel_id: u64), auth AnySession {
        use serde::{Deserialize, Serialize};

        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Request {
            pub content: String,
            /// Hex Ed25519 signature over [`crate::chat::SignedPayload::signed_bytes`].
            pub signature: String,
            pub nonce: String,
            /// The ID-Cert (PEM) the signature verifies with; or `serial` of one the server
            /// knows.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub id_cert: Option<String>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub serial: Option<crate::Serial>,
            #[serde(
                default,
                with = "crate::wire::u64_string::option",
                skip_serializing_if = "Option::is_none"
            )]
            pub reply_to: Option<u64>,
            #[serde(default)]
            pub attachments: Vec<String>,
        }
        pub type Response = crate::chat::Message;
    }

    /// A new signed version of one's own message (`edit_of` = its id, a new nonce; the
    /// body keeps the message's `reply_to`).
    edit_message = PATCH "v1/channels/{channel_id}/messages/{message_id}"
        (channel_id: u64, message_id: u64), auth AnySession {
        use serde::{Deserialize, Serialize};

        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Request {
            pub content: String,
            pub signature: String,
            pub nonce: String,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub id_cert: Option<String>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub serial: Option<crate::Serial>,
            #[serde(default)]
            pub attachments: Vec<String>,
        }
        pub type Response = crate::chat::Message;
    }

    /// Deletes a message (its author, or MANAGE_MESSAGES): a tombstone stays.
    delete_message = DELETE "v1/channels/{channel_id}/messages/{message_id}"
        (channel_id: u64, message_id: u64), auth AnySession {}

    /// Members, ordered by FID (`limit` ≤ 1000, default 100; `after` a FID).
    list_members = GET "v1/guilds/{guild_id}/members" (guild_id: u64), auth AnySession {
        use serde::{Deserialize, Serialize};

        #[derive(Debug, Clone, Default, Serialize, Deserialize)]
        pub struct Query {
            #[serde(default, with = "crate::wire::u64_string::option", skip_serializing_if = "Option::is_none")]
            pub limit: Option<u64>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub after: Option<crate::FederationId>,
        }
        pub type Response = Vec<crate::chat::Member>;
    }

    /// Joins a guild: with an invite, or without one when the guild is public.
    join_guild = POST "v1/guilds/{guild_id}/members" (guild_id: u64), auth AnySession {
        use serde::{Deserialize, Serialize};

        #[derive(Debug, Clone, Default, Serialize, Deserialize)]
        pub struct Request {
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub invite_code: Option<String>,
        }
        pub type Response = crate::chat::Member;
    }

    /// Leaves a guild (its owner must transfer it first).
    leave_guild = DELETE "v1/guilds/{guild_id}/members/@me" (guild_id: u64), auth AnySession {}

    /// Removes a member (KICK_MEMBERS).
    kick_member = DELETE "v1/guilds/{guild_id}/members/{user_id}"
        (guild_id: u64, user_id: &crate::FederationId), auth AnySession {}

    /// The caller's DM conversation with an actor registered on this server (200 when it
    /// exists, 201 when new).
    create_dm = POST "v1/users/@me/channels", auth AnySession {
        use serde::{Deserialize, Serialize};

        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Request {
            pub recipient_id: crate::FederationId,
        }
        pub type Response = crate::conversation::Conversation;
    }

    /// The caller's DM and group conversations on this server.
    list_dms = GET "v1/users/@me/channels", auth AnySession {
        pub type Response = Vec<crate::conversation::Conversation>;
    }

    /// An invite to a guild through one of its channels (CREATE_INVITES): `max_age`
    /// seconds (0 = never expires), `max_uses` (0 = unlimited).
    create_invite = POST "v1/channels/{channel_id}/invites" (channel_id: u64), auth AnySession {
        use serde::{Deserialize, Serialize};

        #[derive(Debug, Clone, Default, Serialize, Deserialize)]
        pub struct Request {
            #[serde(default, with = "crate::wire::u64_string::option", skip_serializing_if = "Option::is_none")]
            pub max_age: Option<u64>,
            #[serde(default, with = "crate::wire::u64_string::option", skip_serializing_if = "Option::is_none")]
            pub max_uses: Option<u64>,
            /// Accepted and ignored: memberships do not end with sessions.
            #[serde(default)]
            pub temporary: bool,
        }
        pub type Response = crate::chat::Invite;
    }

    /// The guild's usable invites (MANAGE_GUILD), without their codes.
    list_invites = GET "v1/guilds/{guild_id}/invites" (guild_id: u64), auth AnySession {
        pub type Response = Vec<crate::chat::Invite>;
    }

    /// Revokes an invite (its creator, or MANAGE_GUILD); by code, or by the `id` listings
    /// show.
    delete_invite = DELETE "v1/invites/{invite_code}" (invite_code: &str), auth AnySession {}

    /// Uploads an attachment (body: its bytes, `Content-Length` required), stored as a
    /// resource of the caller (core §7.3.1) under an ID the server draws. Any session of
    /// this server, also a foreign actor's: a message is sent to the server that stores
    /// it, and so are its attachments.
    upload_attachment = POST "v1/attachments", auth AnySession {
        use serde::{Deserialize, Serialize};

        #[derive(Debug, Clone, Default, Serialize, Deserialize)]
        pub struct Query {
            /// The file's name, shown to readers and offered when they save it.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub filename: Option<String>,
        }
        pub type Response = crate::chat::Attachment;
    }

    /// An attachment's bytes: to its uploader and to whoever may read a message that
    /// references it; 404 to everyone else, as for an absent one.
    get_attachment = GET "v1/attachments/{resource_id}" (resource_id: &str), auth AnySession {}
}
