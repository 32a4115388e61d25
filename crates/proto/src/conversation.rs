//! Conversations (docs/decisions.md, "Direct messages live on the recipient's server" and
//! "Group conversations"): guild-less channels of two (a DM, channel type
//! [`crate::chat::channel_type::DM`]) or 2–15 members (a group,
//! [`crate::chat::channel_type::GROUP`]) whose stream is their own id. Their messages use
//! the channel message routes with the conversation's id as the channel id.

use serde::{Deserialize, Serialize};

use crate::FederationId;
use crate::wire::u64_string;

/// Most members of a group, its owner included.
pub const MAX_GROUP_MEMBERS: usize = 15;
/// Fewest members a group is created with, its creator included.
pub const MIN_GROUP_MEMBERS: usize = 2;
/// Most characters of a group's name.
pub const MAX_GROUP_NAME: usize = 100;

/// A DM or group conversation as its members see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    #[serde(with = "u64_string")]
    pub id: u64,
    /// [`crate::chat::channel_type::DM`] or [`crate::chat::channel_type::GROUP`].
    #[serde(rename = "type")]
    pub kind: u8,
    /// A group's name (none for DMs and unnamed groups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A group's owner (none for DMs, and for a closed group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<FederationId>,
    /// The members, longest-standing first.
    pub recipients: Vec<FederationId>,
    #[serde(with = "u64_string")]
    pub created_at: u64,
    /// The last member left: nothing more can be posted.
    #[serde(default)]
    pub closed: bool,
}

/// A member of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationMember {
    #[serde(with = "u64_string")]
    pub conversation_id: u64,
    pub fid: FederationId,
    #[serde(with = "u64_string")]
    pub joined_at: u64,
}

/// `fugue-chat` op 21: the actor is no longer in a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationRef {
    #[serde(with = "u64_string")]
    pub conversation_id: u64,
}

/// `fugue-chat` op 25: a group changed hands (a transfer, or its owner left).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerChange {
    #[serde(with = "u64_string")]
    pub conversation_id: u64,
    pub owner_id: FederationId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<FederationId>,
}
