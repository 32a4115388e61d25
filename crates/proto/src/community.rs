//! What people around messages need, in Fugue's `fugue-chat` namespace: reactions, pins,
//! mentions, read states, presence and profiles — their models, limits and gateway payloads
//! (docs/decisions.md, "Chat"; payloads in docs/gateway.md).
//!
//! A reaction is a signed message too ([`crate::chat::SignedPayload::reaction`], body
//! [`ReactionBody`]); nothing here checks a signature or a permission.

use serde::{Deserialize, Serialize};

use crate::FederationId;
use crate::wire::u64_string;

/// Gateway opcodes of Fugue's community events in the `fugue-chat` namespace (30 on, so
/// that the guild events (0–8) and the conversation events (20–25) keep theirs).
pub mod op {
    /// A reaction was added (d: [`super::ReactionEvent`]; the channel's viewers).
    pub const REACTION_ADD: u16 = 30;
    /// A reaction was removed (d: [`super::ReactionEvent`]).
    pub const REACTION_REMOVE: u16 = 31;
    /// A message was pinned or unpinned (d: [`super::PinUpdate`]).
    pub const PIN_UPDATE: u16 = 32;
    /// The actor moved a read marker (d: [`super::ReadMarker`]; its own stream, collapsed
    /// by `read:<channel>`).
    pub const READ_STATE: u16 = 33;
    /// An actor's presence changed (d: [`super::Presence`]; ephemeral, to its guilds).
    pub const PRESENCE_UPDATE: u16 = 34;
    /// An actor's profile changed (d: [`super::Actor`]; to its guilds and its own stream,
    /// collapsed by `profile:<fid>`).
    pub const PROFILE_UPDATE: u16 = 35;
}

/// Longest `:name:` emoji name.
pub const MAX_EMOJI_NAME: usize = 32;
/// Most characters of a Unicode emoji (a family or a flag is several code points).
pub const MAX_EMOJI_CHARS: usize = 16;
/// Most pinned messages of one channel.
pub const MAX_PINS: usize = 50;
/// Unread and mention counts stop counting here.
pub const MAX_UNREAD: u64 = 1000;
/// Longest display name.
pub const MAX_DISPLAY_NAME: usize = 64;
/// Longest pronouns.
pub const MAX_PRONOUNS: usize = 40;
/// Longest "about me".
pub const MAX_ABOUT: usize = 1024;
/// Longest custom status.
pub const MAX_STATUS: usize = 128;
/// Longest time zone name (IANA, like `Europe/Berlin`).
pub const MAX_TIMEZONE: usize = 64;
/// Most actors one presence request asks about.
pub const MAX_PRESENCE_BATCH: usize = 100;
/// What mentions every member of the channel (needs MENTION_EVERYONE).
pub const EVERYONE: &str = "@everyone";

/// Whether `emoji` may be a reaction: `:name:` (1–[`MAX_EMOJI_NAME`] of `A-Za-z0-9_+-`),
/// or up to [`MAX_EMOJI_CHARS`] characters with at least one beyond ASCII and no ASCII but
/// digits, `#` and `*` (keycaps), no whitespace, no control characters.
pub fn valid_emoji(emoji: &str) -> bool {
    if let Some(name) = emoji.strip_prefix(':').and_then(|e| e.strip_suffix(':')) {
        return !name.is_empty()
            && name.len() <= MAX_EMOJI_NAME
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-'));
    }
    let n = emoji.chars().count();
    n > 0
        && n <= MAX_EMOJI_CHARS
        && !emoji.is_ascii()
        && emoji.chars().all(|c| {
            !c.is_whitespace()
                && !c.is_control()
                && (!c.is_ascii() || c.is_ascii_digit() || matches!(c, '#' | '*'))
        })
}

/// How a message mentions an actor: `<@fid>`.
pub fn mention_of(fid: &FederationId) -> String {
    format!("<@{fid}>")
}

/// The FIDs a text mentions as `<@fid>` (those that parse), in order, each once.
pub fn mentions(content: &str) -> Vec<FederationId> {
    let mut out: Vec<FederationId> = Vec::new();
    let mut rest = content;
    while let Some(start) = rest.find("<@") {
        rest = &rest[start + 2..];
        let Some(end) = rest.find('>') else { break };
        if let Ok(fid) = rest[..end].parse::<FederationId>()
            && !out.contains(&fid)
        {
            out.push(fid);
        }
        rest = &rest[end + 1..];
    }
    out
}

/// Whether a text mentions everyone.
pub fn mentions_everyone(content: &str) -> bool {
    content.contains(EVERYONE)
}

/// What the author of a reaction signs as `body`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReactionBody {
    #[serde(with = "u64_string")]
    pub message: u64,
    pub emoji: String,
    /// `true` adds, `false` removes.
    pub add: bool,
}

/// `fugue-chat` ops 30 and 31.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReactionEvent {
    #[serde(with = "u64_string")]
    pub guild_id: u64,
    #[serde(with = "u64_string")]
    pub channel_id: u64,
    #[serde(with = "u64_string")]
    pub message_id: u64,
    pub emoji: String,
    pub fid: FederationId,
}

/// `fugue-chat` op 32.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinUpdate {
    #[serde(with = "u64_string")]
    pub guild_id: u64,
    #[serde(with = "u64_string")]
    pub channel_id: u64,
    #[serde(with = "u64_string")]
    pub message_id: u64,
    pub pinned: bool,
    pub by: FederationId,
}

/// A reaction as the list of who reacted with one emoji shows it: with what its author
/// signed, so that anyone can check it again, as a message — the signature is over
/// [`crate::chat::SignedPayload::reaction`] of the channel with body `{message, emoji,
/// add: true}`, made with the certificate `id_cert` (serial `serial`) at `timestamp`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedReaction {
    pub emoji: String,
    pub fid: FederationId,
    pub nonce: String,
    /// Hex Ed25519 signature.
    pub signature: String,
    /// The author's ID-Cert (PEM) the signature verifies with.
    pub id_cert: String,
    pub serial: crate::Serial,
    #[serde(with = "u64_string")]
    pub timestamp: u64,
}

/// A pinned message, as the channel's pin list shows it: the message with who pinned it
/// and when (seconds since the Unix epoch, like a message's `timestamp`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pinned {
    pub message: crate::chat::Message,
    pub pinned_by: FederationId,
    #[serde(with = "u64_string")]
    pub pinned_at: u64,
}

/// One channel's read state for the calling actor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadState {
    /// The guild; for a DM or group, the conversation's own id (as in its messages).
    #[serde(with = "u64_string")]
    pub guild_id: u64,
    #[serde(with = "u64_string")]
    pub channel_id: u64,
    /// The last message read; `null` when the actor never marked this channel (counts then
    /// start at its joining the guild).
    #[serde(default, with = "u64_string::option")]
    pub last_read: Option<u64>,
    /// Messages of others after the marker, at most [`MAX_UNREAD`].
    pub unread: u64,
    /// Of those, the ones that mention the actor or everyone.
    pub mentions: u64,
}

/// `fugue-chat` op 33: a read marker moved (on the actor's own stream).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadMarker {
    #[serde(with = "u64_string")]
    pub guild_id: u64,
    #[serde(with = "u64_string")]
    pub channel_id: u64,
    #[serde(with = "u64_string")]
    pub last_read: u64,
}

/// `models.actor.Availability`: 0 offline, 1 online, 2 idle, 3 do not disturb. Set by the
/// actor, 0 means invisible: it shows offline to others while connected.
pub mod availability {
    pub const OFFLINE: u8 = 0;
    pub const ONLINE: u8 = 1;
    pub const IDLE: u8 = 2;
    pub const DO_NOT_DISTURB: u8 = 3;
    /// What an actor sets to appear offline.
    pub const INVISIBLE: u8 = 0;
}

/// An actor's presence as others see it (`fugue-chat` op 34).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    pub fid: FederationId,
    /// [`availability`]: offline unless the actor has a chat connection and is not invisible.
    pub availability: u8,
    /// The custom status (absent while offline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// What the actor chose, in its own view only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chosen: Option<Chosen>,
}

/// What an actor set as its presence (`PUT /users/@me/presence`), shown to itself only:
/// others see it offline while it is invisible or has no chat connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chosen {
    /// [`availability`] as set (0: invisible).
    pub availability: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// An actor's profile (`models.actor.Actor` of the chat OpenAPI; `fugue-chat` op 35).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub fid: FederationId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pronouns: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub about: Option<String>,
    /// The URL of a public image resource of the actor's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar: Option<String>,
    pub availability: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// What the actor chose as its presence, in its own view only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chosen: Option<Chosen>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn emoji_are_short_pictures_or_names() {
        for ok in ["👍", "❤️", "1️⃣", "🇩🇪", "👨‍👩‍👧‍👦", ":party_parrot:", ":+1:"]
        {
            assert!(valid_emoji(ok), "{ok}");
        }
        for bad in [
            "",
            "a",
            "abc",
            "::",
            ":a b:",
            "👍 ",
            "👍\n",
            "x👍",
            ":aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:",
            "👍👍👍👍👍👍👍👍👍👍👍👍👍👍👍👍👍",
        ] {
            assert!(!valid_emoji(bad), "{bad:?}");
        }
    }

    #[test]
    fn mentions_are_parsed_once_each() {
        let text = "hi <@alice@a.example> and <@bob@b.example>, <@alice@a.example>! <@nope> <@";
        let m = mentions(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].to_string(), "alice@a.example");
        assert!(mentions_everyone("hey @everyone"));
        assert!(!mentions_everyone("hey everyone"));
    }
}
