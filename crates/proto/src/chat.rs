//! The polyproto-chat vocabulary: guilds, channels, members, roles, invites, messages, the
//! permission bits, the bytes a message's author signs, and the gateway payloads of the
//! `chat` and `fugue-chat` namespaces (chat.md, the chat OpenAPI, DIGEST §11; OP-46, OP-49).
//!
//! Models are supersets of chat.md's and the OpenAPI's (both `name` and `display_name`,
//! both `id` and `uid`); every id and time travels as a decimal string. Nothing here checks
//! a permission or a signature: the server does, with [`SignedPayload::signed_bytes`] as the
//! one definition of what was signed (docs/decisions.md, "Signed bytes of a message").

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::FederationId;
use crate::wire::u64_string;

/// The gateway namespace and service channel of the chat spec.
pub const CHAT: &str = "chat";
/// Fugue's own chat namespace and service channel (core §8.2, §8.6).
pub const FUGUE_CHAT: &str = "fugue-chat";

/// Longest guild name (the OpenAPI's example limit).
pub const MAX_GUILD_NAME: usize = 32;
/// Longest channel or role name.
pub const MAX_NAME: usize = 100;
/// Longest guild description or channel topic.
pub const MAX_DESCRIPTION: usize = 1024;
/// Longest message text, in characters.
pub const MAX_CONTENT: usize = 4000;
/// Most attachments of one message.
pub const MAX_ATTACHMENTS: usize = 10;
/// The longest side of an attachment's thumbnail, in pixels.
pub const THUMBNAIL_SIZE: u32 = 400;
/// Longest attachment file name, in characters.
pub const MAX_FILENAME: usize = 255;
/// Longest client nonce.
pub const MAX_NONCE: usize = 64;
/// Most messages one history page returns.
pub const MAX_PAGE: u64 = 100;
/// History page size without `limit`.
pub const DEFAULT_PAGE: u64 = 50;
/// Most members one member page returns.
pub const MAX_MEMBER_PAGE: u64 = 1000;
/// Member page size without `limit`.
pub const DEFAULT_MEMBER_PAGE: u64 = 100;

/// A nonce is 1 to [`MAX_NONCE`] printable ASCII characters without spaces.
pub fn valid_nonce(nonce: &str) -> bool {
    !nonce.is_empty() && nonce.len() <= MAX_NONCE && nonce.bytes().all(|b| b.is_ascii_graphic())
}

/// The permission bits of a role, an overwrite, or an actor's effective permissions in a
/// channel. On the wire a decimal string (OP-49).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Permissions(u64);

macro_rules! permissions {
    ($($name:ident = $bit:literal),+ $(,)?) => {
        impl Permissions {
            $(pub const $name: Self = Self(1 << $bit);)+
            /// Every bit this version defines.
            pub const ALL: Self = Self(0 $(| (1 << $bit))+);
            const NAMES: &[(Self, &str)] = &[$((Self::$name, stringify!($name))),+];
        }
    };
}

permissions! {
    VIEW_CHANNEL = 0,
    SEND_MESSAGES = 1,
    MANAGE_MESSAGES = 2,
    MANAGE_CHANNELS = 3,
    MANAGE_ROLES = 4,
    KICK_MEMBERS = 5,
    BAN_MEMBERS = 6,
    CREATE_INVITES = 7,
    MANAGE_GUILD = 8,
    ADD_REACTIONS = 9,
    MENTION_EVERYONE = 10,
    ADMINISTRATOR = 11,
}

impl Permissions {
    /// What `@everyone` may do in a new guild.
    pub const DEFAULT_EVERYONE: Self = Self(
        Self::VIEW_CHANNEL.0
            | Self::SEND_MESSAGES.0
            | Self::CREATE_INVITES.0
            | Self::ADD_REACTIONS.0,
    );
    pub const NONE: Self = Self(0);

    /// Bits as stored; unknown bits are dropped.
    pub const fn from_bits(bits: u64) -> Self {
        Self(bits & Self::ALL.0)
    }

    pub const fn bits(self) -> u64 {
        self.0
    }

    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    pub const fn without(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    /// The names of the set bits, e.g. `SEND_MESSAGES`.
    pub fn names(self) -> Vec<&'static str> {
        Self::NAMES
            .iter()
            .filter(|(p, _)| self.contains(*p))
            .map(|(_, n)| *n)
            .collect()
    }
}

impl std::ops::BitOr for Permissions {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        self.union(rhs)
    }
}

impl std::fmt::Display for Permissions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.names().join("|"))
    }
}

impl Serialize for Permissions {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        u64_string::serialize(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for Permissions {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        u64_string::deserialize(d).map(Self::from_bits)
    }
}

/// Channel types: the OpenAPI's three, and categories (Fugue) that group channels.
pub mod channel_type {
    pub const TEXT: u8 = 1;
    pub const THREAD: u8 = 2;
    pub const FORUM: u8 = 3;
    /// A category: holds no messages, is the `parent_id` of other channels.
    pub const CATEGORY: u8 = 4;
    /// A direct-message conversation (guild-less; `crate::conversation`).
    pub const DM: u8 = 10;
    /// A group conversation (guild-less; `crate::conversation`).
    pub const GROUP: u8 = 11;

    pub fn known(t: u8) -> bool {
        matches!(t, TEXT | THREAD | FORUM | CATEGORY)
    }
}

/// A guild (chat.md's and the OpenAPI's fields together).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Guild {
    #[serde(with = "u64_string")]
    pub id: u64,
    pub name: String,
    /// The same as `name` (the OpenAPI's spelling).
    pub display_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    pub owner_id: FederationId,
    /// Only members see a private guild; anyone may join a public one without an invite.
    #[serde(default)]
    pub private: bool,
    #[serde(with = "u64_string")]
    pub created_at: u64,
    #[serde(with = "u64_string")]
    pub member_count: u64,
    #[serde(default)]
    pub features: Vec<String>,
}

/// A guild channel (chat.md's flat shape; `description` repeats `topic` for the OpenAPI).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    #[serde(with = "u64_string")]
    pub id: u64,
    #[serde(with = "u64_string")]
    pub guild_id: u64,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: u8,
    pub position: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The category it is in.
    #[serde(
        default,
        with = "u64_string::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub parent_id: Option<u64>,
    #[serde(with = "u64_string")]
    pub created_at: u64,
    /// The caller's effective permissions here (absent in gateway events, which many see).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Permissions>,
}

/// A member of a guild.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    #[serde(with = "u64_string")]
    pub guild_id: u64,
    pub fid: FederationId,
    #[serde(with = "u64_string")]
    pub joined_at: u64,
    /// Role ids besides `@everyone`, as decimal strings.
    #[serde(default)]
    pub roles: Vec<IdString>,
}

/// An id in a list, as a decimal string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IdString(#[serde(with = "u64_string")] pub u64);

/// A role. `@everyone` has the guild's id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    #[serde(with = "u64_string")]
    pub id: u64,
    #[serde(with = "u64_string")]
    pub guild_id: u64,
    pub name: String,
    pub permissions: Permissions,
    pub position: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<u32>,
}

/// Whom a channel permission overwrite is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum OverwriteTarget {
    /// A role (the guild's id for `@everyone`).
    Role(u64),
    /// One member.
    Member(FederationId),
}

impl std::fmt::Display for OverwriteTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OverwriteTarget::Role(id) => id.fmt(f),
            OverwriteTarget::Member(fid) => fid.fmt(f),
        }
    }
}

impl std::str::FromStr for OverwriteTarget {
    type Err = crate::ids::IdError;
    /// A FID has an `@`, a role id is decimal digits.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.contains('@') {
            return s.parse().map(OverwriteTarget::Member);
        }
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return s
                .parse()
                .map(OverwriteTarget::Role)
                .map_err(|_| crate::ids::IdError::FederationId);
        }
        Err(crate::ids::IdError::FederationId)
    }
}

/// A channel permission overwrite: bits allowed and denied there for a role or a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overwrite {
    #[serde(with = "u64_string")]
    pub channel_id: u64,
    /// `role` or `member`.
    pub kind: String,
    /// The role id or the member's FID.
    pub target: String,
    pub allow: Permissions,
    pub deny: Permissions,
}

/// A ban.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ban {
    #[serde(with = "u64_string")]
    pub guild_id: u64,
    pub fid: FederationId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub banned_by: FederationId,
    #[serde(with = "u64_string")]
    pub created_at: u64,
}

/// An invite. Its `code` is shown once, when it is created; the server keeps only its
/// hash, whose hex form is the `id` listings show (and `DELETE /invites/{..}` accepts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub id: String,
    #[serde(with = "u64_string")]
    pub guild_id: u64,
    #[serde(with = "u64_string")]
    pub channel_id: u64,
    pub creator: FederationId,
    /// 0 = unlimited.
    #[serde(with = "u64_string")]
    pub max_uses: u64,
    #[serde(with = "u64_string")]
    pub uses: u64,
    #[serde(
        default,
        with = "u64_string::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires_at: Option<u64>,
    #[serde(with = "u64_string")]
    pub created_at: u64,
}

/// An uploaded attachment, as its upload answers and as messages that reference it describe
/// it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// Its resource ID.
    pub id: String,
    /// What a message's `attachments` names it by.
    pub url: String,
    #[serde(with = "u64_string")]
    pub size: u64,
    /// The type its bytes show (the uploader's claim is not asked).
    pub content_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// Pixel dimensions of an image, as it is shown (orientation applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// A BlurHash of an image, to show while it loads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placeholder: Option<String>,
    /// Where its thumbnail is, for an image larger than [`THUMBNAIL_SIZE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail: Option<String>,
}

/// The URL of attachment `rid` of the server at `public_url`.
pub fn attachment_url(public_url: &str, rid: &str) -> String {
    format!(
        "{}{}",
        public_url.trim_end_matches('/'),
        crate::api::get_attachment::path(rid)
    )
}

/// The resource ID in `url` when it names an attachment of the server at `public_url`.
pub fn attachment_rid<'a>(public_url: &str, url: &'a str) -> Option<&'a str> {
    match split_attachment_url(url) {
        Some((base, rid)) if base == public_url.trim_end_matches('/') => Some(rid),
        _ => None,
    }
}

/// The server's URL and the resource ID of an attachment's URL.
pub fn split_attachment_url(url: &str) -> Option<(&str, &str)> {
    let marker = crate::api::get_attachment::path("");
    let at = url.find(marker.as_str())?;
    let rid = &url[at + marker.len()..];
    rid.parse::<crate::rawr::ResourceId>()
        .is_ok()
        .then_some((&url[..at], rid))
}

/// An embed (OpenAPI `models.message.Embed`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Embed {
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtitle: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
    pub content: String,
    #[serde(default)]
    pub attachments: Vec<String>,
}

/// A reaction (OpenAPI `models.message.Reaction`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reaction {
    pub emoji: String,
    pub fid: FederationId,
}

/// What the author of a message signs as its `body`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageBody {
    pub content: String,
    /// The message it answers; `null` when none.
    #[serde(with = "u64_string::option")]
    pub reply_to: Option<u64>,
    /// Attachment URIs (RawR resources, with the media work).
    pub attachments: Vec<String>,
}

/// A message (chat.md's and the OpenAPI's fields together). A deleted message is a
/// tombstone: `deleted_timestamp` set, content, signature and certificate empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    #[serde(with = "u64_string")]
    pub id: u64,
    /// The same as `id` (the OpenAPI's spelling).
    pub uid: String,
    /// 1 for the first version, +1 per edit.
    #[serde(with = "u64_string")]
    pub version: u64,
    #[serde(with = "u64_string")]
    pub channel_id: u64,
    #[serde(with = "u64_string")]
    pub guild_id: u64,
    pub author: FederationId,
    pub content: String,
    #[serde(
        default,
        with = "u64_string::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub reply_to: Option<u64>,
    #[serde(with = "u64_string")]
    pub timestamp: u64,
    #[serde(
        default,
        with = "u64_string::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub edited_timestamp: Option<u64>,
    #[serde(
        default,
        with = "u64_string::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub deleted_timestamp: Option<u64>,
    /// When the current version was re-signed to its author (core §7.2): the time its
    /// certificate was valid at, rather than the sending's.
    #[serde(
        default,
        with = "u64_string::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub resigned_timestamp: Option<u64>,
    /// The nonce the current version was signed with.
    pub nonce: String,
    /// Hex Ed25519 signature over [`SignedPayload::signed_bytes`] of the current version.
    pub signature: String,
    /// The author's ID-Cert (PEM) the signature verifies with.
    pub id_cert: String,
    pub serial: crate::Serial,
    #[serde(default)]
    pub attachments: Vec<String>,
    /// What the server knows of those of `attachments` that it stores, in their order:
    /// not signed, not part of the message (dimensions, placeholders, thumbnails).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachment_details: Vec<Attachment>,
    #[serde(default)]
    pub embeds: Vec<Embed>,
    #[serde(default)]
    pub reactions: Vec<Reaction>,
}

impl Message {
    /// The body its current version signed.
    pub fn body(&self) -> MessageBody {
        MessageBody {
            content: self.content.clone(),
            reply_to: self.reply_to,
            attachments: self.attachments.clone(),
        }
    }
}

/// One version of a message, as kept for its edit history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageVersion {
    #[serde(with = "u64_string")]
    pub message_id: u64,
    #[serde(with = "u64_string")]
    pub version: u64,
    pub content: String,
    #[serde(default)]
    pub attachments: Vec<String>,
    #[serde(
        default,
        with = "u64_string::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub reply_to: Option<u64>,
    pub nonce: String,
    /// `null` for the first version.
    #[serde(with = "u64_string::option")]
    pub edit_of: Option<u64>,
    pub signature: String,
    pub id_cert: String,
    pub serial: crate::Serial,
    /// Who signed this version (its certificate's actor): the message's author, but for the
    /// versions before a re-signing (core §7.2), which keep their old author.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<FederationId>,
    #[serde(with = "u64_string")]
    pub created_at: u64,
}

/// What an author signs (docs/decisions.md, "Signed bytes of a message"): it binds the body
/// to the server and conversation holding it and to a client nonce, so a signed message can
/// be neither moved nor replayed, and an edit names the message it edits.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SignedPayload {
    /// `chat.message`, `chat.reaction`, `chat.join`, `chat.leave`.
    pub kind: &'static str,
    /// The domain of the server holding the conversation.
    pub server: String,
    /// The channel's or conversation's id.
    #[serde(with = "u64_string")]
    pub conversation: u64,
    pub author: FederationId,
    pub nonce: String,
    /// The edited message; `null` for a new one.
    #[serde(with = "u64_string::option")]
    pub edit_of: Option<u64>,
    pub body: Value,
}

/// `kind` of a message and of its edits.
pub const KIND_MESSAGE: &str = "chat.message";
/// `kind` of a reaction's addition or removal.
pub const KIND_REACTION: &str = "chat.reaction";

impl SignedPayload {
    /// A message (`edit_of` = None) or a new version of message `edit_of`.
    pub fn message(
        server: &crate::DomainName,
        conversation: u64,
        author: &FederationId,
        nonce: &str,
        edit_of: Option<u64>,
        body: &MessageBody,
    ) -> Self {
        Self {
            kind: KIND_MESSAGE,
            server: server.as_str().to_owned(),
            conversation,
            author: author.clone(),
            nonce: nonce.to_owned(),
            edit_of,
            // A struct of strings and string lists always becomes JSON.
            body: serde_json::to_value(body).unwrap_or(Value::Null),
        }
    }

    /// Adding (`add`) or removing a reaction `emoji` to message `message` of conversation
    /// `conversation`; `body` = `{"message", "emoji", "add"}`.
    pub fn reaction(
        server: &crate::DomainName,
        conversation: u64,
        author: &FederationId,
        nonce: &str,
        body: &crate::community::ReactionBody,
    ) -> Self {
        Self {
            kind: KIND_REACTION,
            server: server.as_str().to_owned(),
            conversation,
            author: author.clone(),
            nonce: nonce.to_owned(),
            edit_of: None,
            // A struct of a string id, a string and a bool always becomes JSON.
            body: serde_json::to_value(body).unwrap_or(Value::Null),
        }
    }

    /// The bytes signed: RFC 8785 (JCS) text of the payload.
    pub fn signed_bytes(&self) -> Vec<u8> {
        // Serialising strings, ids and a JSON value cannot fail.
        crate::wire::to_canonical_vec(self).unwrap_or_default()
    }
}

/// Gateway opcodes of the `chat` namespace (chat.md "Chat Opcodes").
pub mod op {
    pub const MESSAGE_CREATE: u16 = 0;
    pub const MESSAGE_UPDATE: u16 = 1;
    pub const MESSAGE_DELETE: u16 = 2;
    pub const CHANNEL_CREATE: u16 = 3;
    pub const CHANNEL_UPDATE: u16 = 4;
    pub const CHANNEL_DELETE: u16 = 5;
    pub const MEMBER_ADD: u16 = 6;
    pub const MEMBER_REMOVE: u16 = 7;
    pub const GUILD_UPDATE: u16 = 8;
    pub const TYPING_START: u16 = 9;
}

/// Gateway opcodes of the `fugue-chat` namespace.
pub mod fugue_op {
    /// On the actor's own stream: it is now a member of a guild (d: [`super::GuildRef`]).
    pub const GUILD_JOINED: u16 = 0;
    /// On the actor's own stream: it no longer is (left, kicked, banned, guild deleted).
    pub const GUILD_LEFT: u16 = 1;
    /// A role was created or changed (d: [`super::Role`]).
    pub const ROLE_UPDATE: u16 = 2;
    /// A role was deleted (d: [`super::RoleDelete`]).
    pub const ROLE_DELETE: u16 = 3;
    /// A member's roles changed (d: [`super::Member`]).
    pub const MEMBER_UPDATE: u16 = 4;
    /// A channel overwrite was set or removed (d: [`super::OverwriteUpdate`]).
    pub const OVERWRITE_UPDATE: u16 = 5;
    /// An actor was banned (d: [`super::Ban`]).
    pub const BAN_ADD: u16 = 6;
    /// A ban was lifted (d: [`super::MemberRef`]).
    pub const BAN_REMOVE: u16 = 7;
    /// The guild was deleted (d: [`super::GuildRef`]).
    pub const GUILD_DELETE: u16 = 8;
    /// On the actor's own stream: it is now a member of a conversation (d:
    /// [`crate::conversation::Conversation`]).
    pub const CONVERSATION_JOINED: u16 = 20;
    /// On the actor's own stream: it no longer is (left or removed; d:
    /// [`crate::conversation::ConversationRef`]).
    pub const CONVERSATION_LEFT: u16 = 21;
    /// A conversation began (the first event of its stream) or was renamed or closed (d:
    /// [`crate::conversation::Conversation`]).
    pub const CONVERSATION_UPDATE: u16 = 22;
    /// A member was added to a group (d: [`crate::conversation::ConversationMember`]).
    pub const CONVERSATION_MEMBER_ADD: u16 = 23;
    /// A member left or was removed (d: [`crate::conversation::ConversationMember`]).
    pub const CONVERSATION_MEMBER_REMOVE: u16 = 24;
    /// A group has a new owner (d: [`crate::conversation::OwnerChange`]).
    pub const CONVERSATION_OWNER: u16 = 25;
}

/// `chat` op 2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageDelete {
    #[serde(with = "u64_string")]
    pub id: u64,
    #[serde(with = "u64_string")]
    pub channel_id: u64,
    #[serde(with = "u64_string")]
    pub guild_id: u64,
    pub deleted_by: FederationId,
}

/// `chat` op 5.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelDelete {
    #[serde(with = "u64_string")]
    pub id: u64,
    #[serde(with = "u64_string")]
    pub guild_id: u64,
}

/// `chat` op 7 and `fugue-chat` op 7.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRef {
    #[serde(with = "u64_string")]
    pub guild_id: u64,
    pub fid: FederationId,
}

/// `fugue-chat` ops 0, 1 and 8.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuildRef {
    #[serde(with = "u64_string")]
    pub guild_id: u64,
}

/// `fugue-chat` op 3.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleDelete {
    #[serde(with = "u64_string")]
    pub id: u64,
    #[serde(with = "u64_string")]
    pub guild_id: u64,
}

/// `fugue-chat` op 5: the overwrite now, or `overwrite: null` when it was removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverwriteUpdate {
    #[serde(with = "u64_string")]
    pub channel_id: u64,
    pub target: String,
    pub overwrite: Option<Overwrite>,
}

/// `chat` op 9 as a client sends it: "I am typing in this channel".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Typing {
    #[serde(with = "u64_string")]
    pub channel_id: u64,
}

/// `chat` op 9 as the server delivers it (ephemeral: never replayed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypingStart {
    #[serde(with = "u64_string")]
    pub guild_id: u64,
    #[serde(with = "u64_string")]
    pub channel_id: u64,
    pub fid: FederationId,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn attachment_urls_name_attachments_of_one_server() {
        let url = attachment_url("https://chat.example.com/", "ab12");
        assert_eq!(url, "https://chat.example.com/.p2/chat/v1/attachments/ab12");
        assert_eq!(
            attachment_rid("https://chat.example.com", &url),
            Some("ab12")
        );
        for other in [
            "https://other.example/.p2/chat/v1/attachments/ab12",
            "https://chat.example.com/.p2/core/v1/resource/ab12",
            "https://chat.example.com/.p2/chat/v1/attachments/",
            "https://chat.example.com/.p2/chat/v1/attachments/a/b",
            "https://chat.example.com/.p2/chat/v1/attachments/.hidden",
            "https://chat.example.com.evil/.p2/chat/v1/attachments/ab12",
        ] {
            assert_eq!(
                attachment_rid("https://chat.example.com", other),
                None,
                "{other}"
            );
        }
    }

    fn payload(conversation: u64, nonce: &str) -> SignedPayload {
        SignedPayload::message(
            &"example.com".parse().unwrap(),
            conversation,
            &"alice@example.com".parse().unwrap(),
            nonce,
            None,
            &MessageBody {
                content: "hi \"there\"".into(),
                reply_to: Some(7),
                attachments: vec![],
            },
        )
    }

    #[test]
    fn signed_bytes_are_the_canonical_payload() {
        assert_eq!(
            String::from_utf8(payload(42, "n-1").signed_bytes()).unwrap(),
            r#"{"author":"alice@example.com","body":{"attachments":[],"content":"hi \"there\"","reply_to":"7"},"conversation":"42","edit_of":null,"kind":"chat.message","nonce":"n-1","server":"example.com"}"#
        );
        let mut edit = payload(42, "n-2");
        edit.edit_of = Some(9);
        assert!(
            String::from_utf8(edit.signed_bytes())
                .unwrap()
                .contains(r#""edit_of":"9""#)
        );
    }

    #[test]
    fn moving_or_replaying_changes_the_bytes() {
        let base = payload(42, "n-1").signed_bytes();
        assert_ne!(base, payload(43, "n-1").signed_bytes());
        assert_ne!(base, payload(42, "n-2").signed_bytes());
        let mut other_server = payload(42, "n-1");
        other_server.server = "example.org".into();
        assert_ne!(base, other_server.signed_bytes());
        assert_eq!(base, payload(42, "n-1").signed_bytes());
    }

    #[test]
    fn permissions_travel_as_strings_and_drop_unknown_bits() {
        let p = Permissions::VIEW_CHANNEL | Permissions::SEND_MESSAGES;
        assert_eq!(serde_json::to_string(&p).unwrap(), r#""3""#);
        let back: Permissions = serde_json::from_str(r#""18446744073709551615""#).unwrap();
        assert_eq!(back, Permissions::ALL);
        assert!(Permissions::ALL.contains(Permissions::ADMINISTRATOR));
        assert_eq!(
            Permissions::SEND_MESSAGES.to_string(),
            "SEND_MESSAGES".to_owned()
        );
        assert!(
            !p.without(Permissions::SEND_MESSAGES)
                .contains(Permissions::SEND_MESSAGES)
        );
    }

    #[test]
    fn overwrite_targets_are_roles_or_members() {
        assert_eq!(
            "12".parse::<OverwriteTarget>().unwrap(),
            OverwriteTarget::Role(12)
        );
        assert!(matches!(
            "Bob@Example.com".parse::<OverwriteTarget>().unwrap(),
            OverwriteTarget::Member(f) if f.to_string() == "bob@example.com"
        ));
        assert!("x".parse::<OverwriteTarget>().is_err());
        assert!("".parse::<OverwriteTarget>().is_err());
    }

    #[test]
    fn nonces_are_short_printable_tokens() {
        assert!(valid_nonce("abc-1"));
        assert!(!valid_nonce(""));
        assert!(!valid_nonce("a b"));
        assert!(!valid_nonce(&"x".repeat(65)));
    }
}
