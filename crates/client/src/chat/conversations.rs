//! DMs and group conversations (docs/decisions.md, "Direct messages live on the recipient's
//! server", "Group conversations", "Conversations, as built"): typed calls on one [`Chat`],
//! and the DM model across servers — a message to a peer goes to the peer's chat provider
//! (core §9), replies come to ours, and a client shows both as one conversation.
//!
//! Messages of a conversation use the channel message routes with the conversation's id as
//! channel id ([`Chat::send_message`], [`Chat::message_history`]); what lives here is who
//! talks where. Nothing here decides access: the servers do.

use fugue_proto::api::{
    add_conversation_member, create_dm, create_group, get_conversation, leave_conversation,
    list_conversation_members, list_dms, message_history, remove_conversation_member, rename_group,
    transfer_conversation,
};
use fugue_proto::chat::{self, Message, MessageBody, channel_type};
use fugue_proto::conversation::{Conversation, ConversationMember};
use fugue_proto::services::{ProviderUrl, ServiceName};
use fugue_proto::{DomainName, FederationId};

use super::{Chat, Sent, Verdict};
use crate::error::{Error, Result};
use crate::foreign::ForeignSession;
use crate::http::Client;
use crate::session::Session;

/// The service name chat providers are discovered under (core §9).
pub const CHAT_SERVICE: &str = "chat";

impl Chat {
    // ---- DMs (polyproto-chat) ----

    /// The pair's DM conversation with `recipient`, who must be registered on this server;
    /// opened when new. Idempotent.
    pub async fn open_dm(&self, recipient: &FederationId) -> Result<Conversation> {
        let body = create_dm::Request {
            recipient_id: recipient.clone(),
        };
        self.json(self.authed(create_dm::target())?.json(&body))
            .await
    }

    /// This actor's DM and group conversations on this server.
    pub async fn conversations(&self) -> Result<Vec<Conversation>> {
        self.json(self.authed(list_dms::target())?).await
    }

    /// The DM with `peer` on this server, when there is one (never opens one).
    pub async fn find_dm(&self, peer: &FederationId) -> Result<Option<Conversation>> {
        let own = self.fid();
        Ok(self.conversations().await?.into_iter().find(|c| {
            c.kind == channel_type::DM
                && c.recipients.contains(peer)
                && (peer == own || c.recipients.iter().all(|r| r == peer || r == own))
        }))
    }

    // ---- group conversations (fugue-chat) ----

    /// A group of this actor and `members` (2–15 with the creator), on this server.
    pub async fn create_group(
        &self,
        name: Option<String>,
        members: Vec<FederationId>,
    ) -> Result<Conversation> {
        let body = create_group::Request { name, members };
        self.json(self.authed(create_group::target())?.json(&body))
            .await
    }

    pub async fn conversation(&self, conversation_id: u64) -> Result<Conversation> {
        self.json(self.authed(get_conversation::target(conversation_id))?)
            .await
    }

    /// Renames a group; `None` (or an empty name) removes its name.
    pub async fn rename_group(
        &self,
        conversation_id: u64,
        name: Option<String>,
    ) -> Result<Conversation> {
        let body = rename_group::Request { name };
        let target = rename_group::target(conversation_id);
        self.json(self.authed(target)?.json(&body)).await
    }

    /// The members, longest-standing first.
    pub async fn conversation_members(
        &self,
        conversation_id: u64,
    ) -> Result<Vec<ConversationMember>> {
        let target = list_conversation_members::target(conversation_id);
        self.json(self.authed(target)?).await
    }

    /// Adds `fid` to a group (its owner only).
    pub async fn add_conversation_member(
        &self,
        conversation_id: u64,
        fid: &FederationId,
    ) -> Result<ConversationMember> {
        let target = add_conversation_member::target(conversation_id, fid);
        self.json(self.authed(target)?).await
    }

    /// Removes `fid` from a group (its owner; anyone removes itself).
    pub async fn remove_conversation_member(
        &self,
        conversation_id: u64,
        fid: &FederationId,
    ) -> Result<()> {
        let target = remove_conversation_member::target(conversation_id, fid);
        self.empty(self.authed(target)?).await
    }

    /// Leaves a group: an owner hands it to the longest-standing member.
    pub async fn leave_conversation(&self, conversation_id: u64) -> Result<()> {
        let target = leave_conversation::target(conversation_id);
        self.empty(self.authed(target)?).await
    }

    /// Hands a group to another member (its owner only).
    pub async fn transfer_conversation(
        &self,
        conversation_id: u64,
        owner: &FederationId,
    ) -> Result<Conversation> {
        let body = transfer_conversation::Request {
            owner_id: owner.clone(),
        };
        let target = transfer_conversation::target(conversation_id);
        self.json(self.authed(target)?.json(&body)).await
    }
}

/// A DM as sent: the conversation on the peer's chat server and the message stored there.
#[derive(Debug, Clone)]
pub struct SentDm {
    pub conversation: Conversation,
    pub sent: Sent,
    /// The server it went to.
    pub server: DomainName,
}

/// One message of a DM conversation with a peer, from either side's server.
#[derive(Debug, Clone)]
pub struct DmMessage {
    pub message: Message,
    pub verdict: Verdict,
    /// The server holding it: the peer's chat server for ours, ours for the peer's.
    pub server: DomainName,
}

/// The two servers of a DM with a peer: the peer's chat server (where this actor's messages
/// go) and this actor's own (where the peer's come). One [`Chat`] when they are the same.
#[derive(Debug, Clone)]
pub struct DmServers {
    pub peer: FederationId,
    /// The peer's chat server.
    pub theirs: Chat,
    /// This actor's chat server.
    pub ours: Chat,
}

impl DmServers {
    /// Whether both sides' DMs are one conversation on one server (e.g. two local actors).
    pub fn same_server(&self) -> bool {
        self.theirs.client().base_url() == self.ours.client().base_url()
    }

    /// Signs and sends `body` to the peer: to the pair's DM on the peer's chat server.
    pub async fn send(&self, body: MessageBody) -> Result<SentDm> {
        let conversation = self.theirs.open_dm(&self.peer).await?;
        let sent = self.theirs.send_message(conversation.id, body).await?;
        Ok(SentDm {
            conversation,
            sent,
            server: self.theirs.domain().clone(),
        })
    }

    /// Both directions as one conversation, oldest first, each message verified on the
    /// server holding it: the latest `limit` messages (the server's default page when
    /// `None`) before message `before` (any message id of either side: ids begin with their
    /// time in milliseconds on every server, decisions "Ids"), so that a page holds every
    /// message of both sides newer than its oldest one, and `before` = that oldest one's id
    /// reads the page before it. A side without a DM yet has no messages.
    pub async fn read(&self, limit: Option<u64>, before: Option<u64>) -> Result<Vec<DmMessage>> {
        // Each side asked for the whole page: a limit out of range is the server's to refuse.
        let limit = limit.unwrap_or(chat::DEFAULT_PAGE);
        let mut all = side(&self.theirs, &self.peer, limit, before).await?;
        if !self.same_server() {
            all.extend(side(&self.ours, &self.peer, limit, before).await?);
        }
        all.sort_by_key(|m| (m.message.id >> 22, m.message.timestamp, m.message.id));
        // The newest `limit` of both: an older one of one side kept beside a gap in the other
        // would break "everything newer than the oldest shown".
        let older = all
            .len()
            .saturating_sub(usize::try_from(limit).unwrap_or(usize::MAX));
        all.drain(..older);
        Ok(all)
    }
}

/// One side's latest `limit` messages before `before`, verified, newest first.
async fn side(
    chat: &Chat,
    peer: &FederationId,
    limit: u64,
    before: Option<u64>,
) -> Result<Vec<DmMessage>> {
    let Some(dm) = chat.find_dm(peer).await? else {
        return Ok(Vec::new());
    };
    let query = message_history::Query {
        limit: Some(limit),
        before,
        ..Default::default()
    };
    let messages = chat.message_history(dm.id, &query).await?;
    let verdicts = chat.verify_messages(dm.id, &messages).await;
    Ok(messages
        .into_iter()
        .zip(verdicts)
        .map(|(message, verdict)| DmMessage {
            message,
            verdict,
            server: chat.domain().clone(),
        })
        .collect())
}

impl Session {
    /// The primary chat provider of `fid` as `home` (its home server) answers service
    /// discovery (core §9). A home server answers its own accounts' home server when they
    /// list none; `None` when no provider is known.
    pub async fn chat_provider(
        &self,
        fid: &FederationId,
        home: &Client,
    ) -> Result<Option<ProviderUrl>> {
        let name: ServiceName = CHAT_SERVICE
            .parse()
            .map_err(|err| Error::UnexpectedResponse(format!("service name: {err}")))?;
        let found = home.discover_services(fid, Some(&name), None).await?;
        let primary = found
            .iter()
            .find(|s| s.primary)
            .or_else(|| found.first())
            .map(|s| s.url.clone());
        Ok(primary)
    }

    /// Whether `url` is this session's home server.
    pub fn is_home(&self, url: &ProviderUrl) -> bool {
        let home: std::result::Result<ProviderUrl, _> = self.client().base_url().parse();
        home.is_ok_and(|home| &home == url)
    }
}

/// The domain a server's current certificate names: what messages sent there are signed for
/// (a server naming another domain would refuse them itself).
pub async fn server_domain(server: &Client) -> Result<DomainName> {
    let cert = server.server_cert(None).await?;
    let cert = fugue_proto::certs::IdCert::parse(cert.id_cert_pem.as_bytes())?;
    let domain = cert.subject.domain();
    domain.parse().map_err(|err| {
        Error::UnexpectedResponse(format!("the server's certificate names {domain:?}: {err}"))
    })
}

impl Session {
    /// Chat on the chat server at `url`: this session's home server itself (by URL, or by
    /// the domain its certificate names), or another
    /// server signed in on by key trial — with `known` (a sign-in kept from before) when
    /// given and still accepted there, else a new one, returned so that the caller can keep
    /// it.
    pub async fn chat_at(
        &self,
        url: &ProviderUrl,
        known: Option<ForeignSession>,
    ) -> Result<(Chat, Option<ForeignSession>)> {
        if self.is_home(url) {
            return Ok((self.chat(), None));
        }
        let server = Client::new(url.as_str())?;
        let domain = server_domain(&server).await?;
        // The home server under another URL than ours (a public URL behind a proxy).
        if &domain == self.fid().domain() {
            return Ok((self.chat(), None));
        }
        if let Some(foreign) = known {
            let chat = self.chat_on(&foreign, domain.clone());
            // A kept sign-in may have ended there (expired, revoked): one cheap call tells.
            match chat.conversations().await {
                Err(err) if err.status() == Some(401) => {}
                Err(err) => return Err(err),
                Ok(_) => return Ok((chat, None)),
            }
        }
        let foreign = self.sign_in_on(server, &domain).await?;
        Ok((self.chat_on(&foreign, domain), Some(foreign.clone())))
    }

    /// The two chat servers of a DM with `peer`, whose home server is `peer_home`: the peer's
    /// primary chat provider and this actor's own, found through service discovery (core
    /// §9). `known` are sign-ins kept from before (used when one is for a server needed);
    /// the answer lists the new ones.
    pub async fn dm_servers(
        &self,
        peer: &FederationId,
        peer_home: &Client,
        known: &[ForeignSession],
    ) -> Result<(DmServers, Vec<ForeignSession>)> {
        let no_provider =
            |fid: &FederationId| Error::UnexpectedResponse(format!("{fid} lists no chat provider"));
        let theirs_url = self
            .chat_provider(peer, peer_home)
            .await?
            .ok_or_else(|| no_provider(peer))?;
        let ours_url = self
            .chat_provider(self.fid(), self.client())
            .await?
            .ok_or_else(|| no_provider(self.fid()))?;
        let known_at = |url: &ProviderUrl| {
            known
                .iter()
                .find(|f| {
                    f.client()
                        .base_url()
                        .parse::<ProviderUrl>()
                        .is_ok_and(|u| &u == url)
                })
                .cloned()
        };
        let mut signed_in = Vec::new();
        let (theirs, new) = self.chat_at(&theirs_url, known_at(&theirs_url)).await?;
        signed_in.extend(new.clone());
        let ours = if ours_url == theirs_url {
            theirs.clone()
        } else {
            let (ours, new) = self.chat_at(&ours_url, known_at(&ours_url)).await?;
            signed_in.extend(new);
            ours
        };
        let servers = DmServers {
            peer: peer.clone(),
            theirs,
            ours,
        };
        Ok((servers, signed_in))
    }
}
