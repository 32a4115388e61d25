//! Chat (polyproto-chat and Fugue's `fugue-chat` additions): typed calls for every chat
//! endpoint, signing outgoing messages, verifying received ones, and the chat events of the
//! gateway.
//!
//! A [`Chat`] talks to the server holding the conversations (the actor's home server, or
//! another one it signed in on with a key trial) and signs with the actor's home session:
//! its identity key and ID-Cert. What a message's author signs is
//! [`SignedPayload::signed_bytes`] (docs/decisions.md, "Signed bytes of a message"); the
//! server it is sent to is named in it, so a chat must know that server's domain.
//!
//! Sending is retry-safe: a message is signed once with a fresh nonce ([`Chat::prepare_message`])
//! and the same request may be posted again ([`Chat::post_message`]); the server stores one
//! message per nonce and answers a repeat with it. Verification lives in `verify`, the
//! gateway's chat events in `events`, DMs and groups in `conversations`, and reactions (signed
//! the same way), pins, read states, presence and profiles in `community`.

mod attachments;
mod community;
mod conversations;
mod encrypted;
mod events;
mod mls;
mod verify;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use fugue_proto::api::{
    self, Target, add_member_role, ban_member, create_channel, create_guild, create_invite,
    create_role, delete_channel, delete_guild, delete_invite, delete_message, delete_overwrite,
    delete_role, edit_message, get_guild, get_guild_by_query, get_messages, join_guild,
    kick_member, leave_guild, list_bans, list_channels, list_invites, list_members,
    list_overwrites, list_roles, message_history, message_versions, remove_member_role,
    send_message, set_overwrite, transfer_guild, unban_member, update_channel, update_guild,
    update_role,
};
use fugue_proto::chat::{
    Ban, Channel, Guild, Invite, Member, Message, MessageBody, MessageVersion, Overwrite,
    OverwriteTarget, Role, SignedPayload,
};
use fugue_proto::{DomainName, FederationId};
use rand_core::{OsRng, RngCore};
use reqwest::{RequestBuilder, StatusCode};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::foreign::ForeignSession;
use crate::http::{Client, send};
use crate::session::Session;

pub use community::PreparedReaction;
pub use conversations::{CHAT_SERVICE, DmMessage, DmServers, SentDm, server_domain};
pub use encrypted::MlsNotice;
pub use events::ChatEvent;
use verify::CertCache;
pub use verify::Verdict;

/// How often [`Chat::send_message`] (and an edit or a reaction) posts one signed request when
/// the connection fails before an answer: the server stores it once, whichever attempt
/// arrives.
const SEND_ATTEMPTS: usize = 3;

/// Chat on one server, signed by one session. Cloning is cheap and shares the certificate
/// cache.
#[derive(Clone)]
pub struct Chat {
    /// The server holding the conversations.
    client: Client,
    token: String,
    /// Its domain: the `server` of every signed payload.
    domain: DomainName,
    /// The actor's home session: FID, identity key and ID-Cert.
    signer: Session,
    /// Home servers of authors of other domains, when not at `https://<domain>`.
    homes: Arc<HashMap<DomainName, Client>>,
    certs: Arc<Mutex<CertCache>>,
}

impl std::fmt::Debug for Chat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chat")
            .field("server", &self.client.base_url())
            .field("domain", &self.domain)
            .field("fid", self.signer.fid())
            .finish_non_exhaustive()
    }
}

/// A signed message ready to post, as many times as needed: every post stores it once.
#[derive(Debug, Clone)]
pub struct PreparedMessage {
    pub channel_id: u64,
    pub request: send_message::Request,
}

/// What posting a message did.
#[derive(Debug, Clone)]
pub struct Sent {
    pub message: Message,
    /// `false` when the server had it already under its nonce (a retry).
    pub created: bool,
}

/// A fresh client nonce: 128 random bits in hex.
pub fn new_nonce() -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    hex(&bytes)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// Runs `post` again (at most [`SEND_ATTEMPTS`] times in all) while the connection fails
/// before an answer: for requests the server stores once however often they arrive.
async fn retried<T, F: Future<Output = Result<T>>>(mut post: impl FnMut() -> F) -> Result<T> {
    let mut attempt = 1;
    loop {
        match post().await {
            Err(Error::Transport(_)) if attempt < SEND_ATTEMPTS => attempt += 1,
            other => return other,
        }
    }
}

impl Session {
    /// Chat on this session's home server.
    pub fn chat(&self) -> Chat {
        Chat::new(
            self.client().clone(),
            self.token().to_owned(),
            self.fid().domain().clone(),
            self.clone(),
        )
    }

    /// Chat on another server this actor signed in on (`foreign`, whose domain is `domain`),
    /// signing with this session.
    pub fn chat_on(&self, foreign: &ForeignSession, domain: DomainName) -> Chat {
        Chat::new(
            foreign.client().clone(),
            foreign.token().to_owned(),
            domain,
            self.clone(),
        )
    }
}

impl Chat {
    fn new(client: Client, token: String, domain: DomainName, signer: Session) -> Self {
        Self {
            client,
            token,
            domain,
            signer,
            homes: Arc::new(HashMap::new()),
            certs: Arc::new(Mutex::new(CertCache::default())),
        }
    }

    /// Where the home server of `domain` is when not at `https://<domain>` (delegation,
    /// development): verification fetches its authors' roots there.
    pub fn with_home_server(mut self, domain: DomainName, server: Client) -> Self {
        Arc::make_mut(&mut self.homes).insert(domain, server);
        self
    }

    /// The server holding the conversations.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Its domain, as signed into every message.
    pub fn domain(&self) -> &DomainName {
        &self.domain
    }

    pub fn fid(&self) -> &FederationId {
        self.signer.fid()
    }

    fn authed(&self, target: Target) -> Result<RequestBuilder> {
        self.authed_query(target, &())
    }

    fn authed_query(&self, target: Target, query: &impl Serialize) -> Result<RequestBuilder> {
        debug_assert_ne!(target.endpoint.auth, api::Auth::None, "{target:?}");
        Ok(self
            .client
            .request_with_query(target, query)?
            .bearer_auth(&self.token))
    }

    async fn json<T: serde::de::DeserializeOwned>(&self, request: RequestBuilder) -> Result<T> {
        self.client.send_json(request).await
    }

    async fn empty(&self, request: RequestBuilder) -> Result<()> {
        send(request).await?;
        Ok(())
    }

    // ---- guilds ----

    pub async fn create_guild(&self, request: &create_guild::Request) -> Result<Guild> {
        self.json(self.authed(create_guild::target())?.json(request))
            .await
    }

    pub async fn guild(&self, guild_id: u64) -> Result<Guild> {
        self.json(self.authed(get_guild::target(guild_id))?).await
    }

    /// The same guild through the OpenAPI's form (`GET /guilds?guild_id=`).
    pub async fn guild_by_query(&self, guild_id: u64) -> Result<Guild> {
        let query = get_guild_by_query::Query { guild_id };
        self.json(self.authed_query(get_guild_by_query::target(), &query)?)
            .await
    }

    pub async fn update_guild(
        &self,
        guild_id: u64,
        request: &update_guild::Request,
    ) -> Result<Guild> {
        self.json(self.authed(update_guild::target(guild_id))?.json(request))
            .await
    }

    /// Deletes a guild (its owner); `solution` is the second factor.
    pub async fn delete_guild(&self, guild_id: u64, solution: &str) -> Result<()> {
        let request = self.authed(delete_guild::target(guild_id))?;
        self.empty(request.header(api::SENSITIVE_HEADER, solution))
            .await
    }

    pub async fn transfer_guild(&self, guild_id: u64, owner: &FederationId) -> Result<Guild> {
        let body = transfer_guild::Request {
            owner_id: owner.clone(),
        };
        self.json(self.authed(transfer_guild::target(guild_id))?.json(&body))
            .await
    }

    // ---- channels ----

    pub async fn channels(&self, guild_id: u64) -> Result<Vec<Channel>> {
        self.json(self.authed(list_channels::target(guild_id))?)
            .await
    }

    pub async fn create_channel(
        &self,
        guild_id: u64,
        request: &create_channel::Request,
    ) -> Result<Channel> {
        self.json(self.authed(create_channel::target(guild_id))?.json(request))
            .await
    }

    pub async fn update_channel(
        &self,
        channel_id: u64,
        request: &update_channel::Request,
    ) -> Result<Channel> {
        self.json(
            self.authed(update_channel::target(channel_id))?
                .json(request),
        )
        .await
    }

    pub async fn delete_channel(&self, channel_id: u64) -> Result<()> {
        self.empty(self.authed(delete_channel::target(channel_id))?)
            .await
    }

    // ---- members, invites, bans ----

    pub async fn members(&self, guild_id: u64, query: &list_members::Query) -> Result<Vec<Member>> {
        self.json(self.authed_query(list_members::target(guild_id), query)?)
            .await
    }

    /// Joins a guild: with an invite code, or without one when it is public.
    pub async fn join_guild(&self, guild_id: u64, invite_code: Option<&str>) -> Result<Member> {
        let body = join_guild::Request {
            invite_code: invite_code.map(str::to_owned),
        };
        self.json(self.authed(join_guild::target(guild_id))?.json(&body))
            .await
    }

    pub async fn leave_guild(&self, guild_id: u64) -> Result<()> {
        self.empty(self.authed(leave_guild::target(guild_id))?)
            .await
    }

    pub async fn kick(&self, guild_id: u64, fid: &FederationId) -> Result<()> {
        self.empty(self.authed(kick_member::target(guild_id, fid))?)
            .await
    }

    pub async fn create_invite(
        &self,
        channel_id: u64,
        request: &create_invite::Request,
    ) -> Result<Invite> {
        self.json(
            self.authed(create_invite::target(channel_id))?
                .json(request),
        )
        .await
    }

    pub async fn invites(&self, guild_id: u64) -> Result<Vec<Invite>> {
        self.json(self.authed(list_invites::target(guild_id))?)
            .await
    }

    /// Revokes an invite, by its code or by the `id` listings show.
    pub async fn delete_invite(&self, code_or_id: &str) -> Result<()> {
        self.empty(self.authed(delete_invite::target(code_or_id))?)
            .await
    }

    pub async fn bans(&self, guild_id: u64) -> Result<Vec<Ban>> {
        self.json(self.authed(list_bans::target(guild_id))?).await
    }

    pub async fn ban(
        &self,
        guild_id: u64,
        fid: &FederationId,
        reason: Option<&str>,
    ) -> Result<Ban> {
        let body = ban_member::Request {
            reason: reason.map(str::to_owned),
        };
        self.json(self.authed(ban_member::target(guild_id, fid))?.json(&body))
            .await
    }

    pub async fn unban(&self, guild_id: u64, fid: &FederationId) -> Result<()> {
        self.empty(self.authed(unban_member::target(guild_id, fid))?)
            .await
    }

    // ---- roles and overwrites ----

    pub async fn roles(&self, guild_id: u64) -> Result<Vec<Role>> {
        self.json(self.authed(list_roles::target(guild_id))?).await
    }

    pub async fn create_role(&self, guild_id: u64, request: &create_role::Request) -> Result<Role> {
        self.json(self.authed(create_role::target(guild_id))?.json(request))
            .await
    }

    pub async fn update_role(
        &self,
        guild_id: u64,
        role_id: u64,
        request: &update_role::Request,
    ) -> Result<Role> {
        let target = update_role::target(guild_id, role_id);
        self.json(self.authed(target)?.json(request)).await
    }

    pub async fn delete_role(&self, guild_id: u64, role_id: u64) -> Result<()> {
        self.empty(self.authed(delete_role::target(guild_id, role_id))?)
            .await
    }

    pub async fn add_member_role(
        &self,
        guild_id: u64,
        fid: &FederationId,
        role_id: u64,
    ) -> Result<Member> {
        let target = add_member_role::target(guild_id, fid, role_id);
        self.json(self.authed(target)?).await
    }

    pub async fn remove_member_role(
        &self,
        guild_id: u64,
        fid: &FederationId,
        role_id: u64,
    ) -> Result<()> {
        let target = remove_member_role::target(guild_id, fid, role_id);
        self.empty(self.authed(target)?).await
    }

    pub async fn overwrites(&self, channel_id: u64) -> Result<Vec<Overwrite>> {
        self.json(self.authed(list_overwrites::target(channel_id))?)
            .await
    }

    pub async fn set_overwrite(
        &self,
        channel_id: u64,
        target: &OverwriteTarget,
        request: &set_overwrite::Request,
    ) -> Result<Overwrite> {
        let target = set_overwrite::target(channel_id, target);
        self.json(self.authed(target)?.json(request)).await
    }

    pub async fn delete_overwrite(&self, channel_id: u64, target: &OverwriteTarget) -> Result<()> {
        self.empty(self.authed(delete_overwrite::target(channel_id, target))?)
            .await
    }

    // ---- messages ----

    /// A page of history, newest first, as the server sends it (unverified: see
    /// [`Chat::verify_messages`]).
    pub async fn messages(
        &self,
        channel_id: u64,
        query: &get_messages::Query,
    ) -> Result<Vec<Message>> {
        self.json(self.authed_query(get_messages::target(channel_id), query)?)
            .await
    }

    /// History with context (`around` a message too), newest first (unverified).
    pub async fn message_history(
        &self,
        channel_id: u64,
        query: &message_history::Query,
    ) -> Result<Vec<Message>> {
        self.json(self.authed_query(message_history::target(channel_id), query)?)
            .await
    }

    /// Every signed version of a message, oldest first (unverified).
    pub async fn message_versions(
        &self,
        channel_id: u64,
        message_id: u64,
    ) -> Result<Vec<MessageVersion>> {
        let target = message_versions::target(channel_id, message_id);
        self.json(self.authed(target)?).await
    }

    /// One message of `channel_id` by its id (unverified).
    pub async fn message(&self, channel_id: u64, message_id: u64) -> Result<Message> {
        let query = message_history::Query {
            around: Some(message_id),
            limit: Some(1),
            ..Default::default()
        };
        self.message_history(channel_id, &query)
            .await?
            .into_iter()
            .find(|m| m.id == message_id)
            .ok_or_else(|| {
                Error::UnexpectedResponse(format!(
                    "message {message_id} is not in the history of channel {channel_id}"
                ))
            })
    }

    /// Signs `body` for `channel_id` (`edit_of`: the message it is a new version of) with
    /// `nonce`; returns the hex signature.
    pub fn sign(
        &self,
        channel_id: u64,
        nonce: &str,
        edit_of: Option<u64>,
        body: &MessageBody,
    ) -> String {
        let payload = SignedPayload::message(
            &self.domain,
            channel_id,
            self.signer.fid(),
            nonce,
            edit_of,
            body,
        );
        self.sign_payload(&payload)
    }

    /// The hex signature of the session's key over `payload`'s signed bytes.
    fn sign_payload(&self, payload: &SignedPayload) -> String {
        hex(&self.signer.key().sign(&payload.signed_bytes()))
    }

    /// A new message for `channel_id`, signed with a fresh nonce and carrying the session's
    /// ID-Cert.
    pub fn prepare_message(&self, channel_id: u64, body: MessageBody) -> PreparedMessage {
        let nonce = new_nonce();
        let signature = self.sign(channel_id, &nonce, None, &body);
        PreparedMessage {
            channel_id,
            request: send_message::Request {
                content: body.content,
                signature,
                nonce,
                id_cert: Some(self.signer.cert_pem().to_owned()),
                serial: None,
                reply_to: body.reply_to,
                attachments: body.attachments,
            },
        }
    }

    /// Posts a prepared message once. Posting it again is safe: the server answers a
    /// nonce it stored with that message (`created: false`).
    pub async fn post_message(&self, prepared: &PreparedMessage) -> Result<Sent> {
        let target = send_message::target(prepared.channel_id);
        let response = send(self.authed(target)?.json(&prepared.request)).await?;
        let created = response.status() == StatusCode::CREATED;
        let message: Message = self.client.read_json(response).await?;
        if message.nonce != prepared.request.nonce && message.version == 1 {
            return Err(Error::UnexpectedResponse(format!(
                "the server answered message {} for another nonce",
                message.id
            )));
        }
        Ok(Sent { message, created })
    }

    /// Signs and sends a message, posting it again (same nonce) when the connection fails
    /// before an answer.
    pub async fn send_message(&self, channel_id: u64, body: MessageBody) -> Result<Sent> {
        let prepared = self.prepare_message(channel_id, body);
        retried(|| self.post_message(&prepared)).await
    }

    /// A new signed version of one's own message `message_id` (its `reply_to` stays).
    /// Retried like a send: the same version again is answered with the message.
    pub async fn edit_message(
        &self,
        channel_id: u64,
        message_id: u64,
        content: String,
        attachments: Vec<String>,
    ) -> Result<Message> {
        // The server signs over the message's reply_to, which an edit cannot change.
        let current = self.message(channel_id, message_id).await?;
        let body = MessageBody {
            content,
            reply_to: current.reply_to,
            attachments,
        };
        let nonce = new_nonce();
        let request = edit_message::Request {
            signature: self.sign(channel_id, &nonce, Some(message_id), &body),
            content: body.content,
            nonce,
            id_cert: Some(self.signer.cert_pem().to_owned()),
            serial: None,
            attachments: body.attachments,
        };
        let target = edit_message::target(channel_id, message_id);
        retried(|| async { self.json(self.authed(target.clone())?.json(&request)).await }).await
    }

    /// Deletes a message (one's own, or with MANAGE_MESSAGES); a tombstone stays.
    pub async fn delete_message(&self, channel_id: u64, message_id: u64) -> Result<()> {
        self.empty(self.authed(delete_message::target(channel_id, message_id))?)
            .await
    }
}

#[cfg(test)]
mod tests;
