//! `fugue dm`, `fugue dms` and `fugue group`: direct messages and group conversations.
//!
//! A DM to a FID goes to the recipient's chat provider, found through its service discovery
//! (core §9); on a server that is not the home server, the account signs in by key trial
//! (kept in the key store like `fugue federation login`). Reading a DM shows both directions
//! as one conversation: this actor's messages from the peer's server, the peer's from ours,
//! each verified and marked like `fugue read`. Groups live on their creator's server
//! (`--on` for one elsewhere); their messages use `fugue send` / `fugue read` with the
//! group's id as channel. Server text passes the terminal filter.

use clap::{Args, Subcommand};

use fugue_client::{Client, DmServers, ForeignSession};
use fugue_proto::FederationId;
use fugue_proto::chat::{DEFAULT_PAGE, MessageBody, channel_type};
use fugue_proto::conversation::Conversation;

use super::messages::line;
use super::{ChatOpts, chat, current, date, e, e2ee, homes, open_store, restore_session};
use crate::terminal::{note, out};

#[derive(Args)]
pub struct DmArgs {
    /// The recipient, e.g. bob@example.com.
    fid: FederationId,
    /// The message; without it, the conversation with FID is shown.
    text: Option<String>,
    /// How many of the latest messages to show (at most 100; 50 by default).
    #[arg(long)]
    limit: Option<u64>,
    /// Only messages older than this message (of either side), for the page before.
    #[arg(long, conflicts_with = "text")]
    before: Option<u64>,
    /// Encrypt the DM end to end (the first time: a new MLS group with the peer's devices;
    /// nobody can be added later). Reading decrypts wherever a side is encrypted.
    #[arg(long)]
    encrypted: bool,
}

#[derive(Subcommand)]
pub enum DmsCmd {
    /// Your DM conversations on your chat server (or the one of `--on`), with their peers.
    List,
    /// The conversation with FID: both directions, oldest first, each message marked.
    Read {
        fid: FederationId,
        /// How many of the latest messages (at most 100; 50 by default).
        #[arg(long)]
        limit: Option<u64>,
        /// Only messages older than this message (of either side), for the page before.
        #[arg(long)]
        before: Option<u64>,
    },
}

#[derive(Subcommand)]
pub enum GroupCmd {
    /// Create a group of you and the FIDs (2–15 members with you), on your chat server.
    Create {
        #[arg(long)]
        name: Option<String>,
        #[arg(required = true)]
        members: Vec<FederationId>,
        /// Encrypt it end to end: an MLS group with every device of the members that has a
        /// KeyPackage here (only the owner adds people later).
        #[arg(long)]
        encrypted: bool,
    },
    /// Your group conversations on the server.
    List,
    /// A group: name, owner, members.
    Show { group: u64 },
    /// The members, longest-standing first.
    Members { group: u64 },
    /// Add FID (the owner only).
    Add { group: u64, fid: FederationId },
    /// Remove FID (the owner only).
    Remove { group: u64, fid: FederationId },
    /// Leave the group; an owner hands it to the longest-standing member.
    Leave { group: u64 },
    /// Hand the group to FID (the owner only).
    Owner { group: u64, fid: FederationId },
    /// Rename the group ("" removes its name).
    Rename { group: u64, name: String },
}

/// One line for a conversation, e.g. `group 7311… "book club" (owner a@x; a@x, b@x)`.
pub(super) fn describe(c: &Conversation) -> String {
    let members = c
        .recipients
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let kind = match c.kind {
        channel_type::DM => "DM",
        channel_type::GROUP => "group",
        _ => "conversation",
    };
    let name = c
        .name
        .as_ref()
        .map(|n| format!(" \"{n}\""))
        .unwrap_or_default();
    let owner = c
        .owner_id
        .as_ref()
        .map(|o| format!("owner {o}; "))
        .unwrap_or_default();
    let closed = if c.closed { " (closed)" } else { "" };
    format!("{kind} {}{name} ({owner}{members}){closed}", c.id)
}

/// The chat servers of a DM with `peer`, signing in where needed; new sign-ins are kept in
/// the key store.
async fn dm_servers(opts: &ChatOpts, peer: &FederationId) -> Result<DmServers, String> {
    if opts.on.is_some() {
        return Err("`fugue dm` finds the chat servers itself; leave out --on".into());
    }
    let mut store = open_store(&opts.client)?;
    let (session, _) = restore_session(&store)?;
    let homes = homes(opts)?;
    let peer_home = if peer.domain() == session.fid().domain() {
        session.client().clone()
    } else {
        match homes.iter().find(|(d, _)| d == peer.domain()) {
            Some((_, client)) => client.clone(),
            None => Client::new(&format!("https://{}", peer.domain())).map_err(e)?,
        }
    };
    let account = current(&store)?.clone();
    let known: Vec<ForeignSession> = account
        .foreign_tokens
        .keys()
        .filter_map(|url| account.foreign_session(url).ok().flatten())
        .collect();
    let (mut servers, signed_in) = session
        .dm_servers(peer, &peer_home, &known)
        .await
        .map_err(e)?;
    if !signed_in.is_empty() {
        let mut account = account;
        for foreign in &signed_in {
            account.remember_foreign(foreign);
        }
        store.upsert(account).map_err(e)?;
        store.save().map_err(e)?;
    }
    for (domain, client) in homes {
        servers.theirs = servers
            .theirs
            .with_home_server(domain.clone(), client.clone());
        servers.ours = servers.ours.with_home_server(domain, client);
    }
    Ok(servers)
}

pub async fn dm(opts: ChatOpts, args: DmArgs) -> Result<(), String> {
    match args.text {
        Some(text) if args.encrypted => send_encrypted_dm(opts, args.fid, text).await,
        Some(text) => send_dm(opts, args.fid, text).await,
        None => read_dm(opts, args.fid, args.limit, args.before).await,
    }
}

/// An encrypted DM: to the pair's DM on the peer's chat server, encrypted with its group
/// (made the first time, with every device of the peer there).
async fn send_encrypted_dm(opts: ChatOpts, peer: FederationId, text: String) -> Result<(), String> {
    let servers = dm_servers(&opts, &peer).await?;
    let (session, mls) = e2ee::device(&opts.client).await?;
    let theirs = &servers.theirs;
    e2ee::catch_up(theirs, &session, &mls).await?;
    let dm = theirs.open_dm(&peer).await.map_err(e)?.id;
    let group = match theirs.channel_group(dm).await.map_err(e)? {
        Some(g) => g,
        None => e2ee::encrypt_with(theirs, &mls, dm, std::slice::from_ref(&peer)).await?,
    };
    let sent = theirs
        .send_encrypted(&mls, dm, &group, &text)
        .await
        .map_err(e)?;
    out!(
        "sent encrypted message {} to {peer} (DM {dm} on {})",
        sent.message.id,
        theirs.domain()
    );
    Ok(())
}

async fn send_dm(opts: ChatOpts, peer: FederationId, text: String) -> Result<(), String> {
    let servers = dm_servers(&opts, &peer).await?;
    let body = MessageBody {
        content: text,
        reply_to: None,
        attachments: Vec::new(),
    };
    let sent = servers.send(body).await.map_err(e)?;
    out!(
        "sent message {} to {peer} (DM {} on {})",
        sent.sent.message.id,
        sent.conversation.id,
        sent.server
    );
    Ok(())
}

async fn read_dm(
    opts: ChatOpts,
    peer: FederationId,
    limit: Option<u64>,
    before: Option<u64>,
) -> Result<(), String> {
    let servers = dm_servers(&opts, &peer).await?;
    let mut messages = servers.read(limit, before).await.map_err(e)?;
    // Each side encrypted with its own group, on its own server.
    let mut sides = Vec::new();
    for side in [&servers.theirs, &servers.ours] {
        if let Some(dm) = side.find_dm(&peer).await.map_err(e)?
            && !sides.iter().any(|(_, id, _)| *id == dm.id)
            && let Some(group) = side.channel_group(dm.id).await.map_err(e)?
        {
            sides.push((side, dm.id, group));
        }
    }
    if !sides.is_empty() {
        let (session, mls) = e2ee::device(&opts.client).await?;
        for (side, dm, group) in &sides {
            e2ee::catch_up(side, &session, &mls).await?;
            let mut of_side: Vec<_> = messages
                .iter()
                .filter(|m| m.message.channel_id == *dm)
                .map(|m| m.message.clone())
                .collect();
            e2ee::open(side, &mls, group, &mut of_side);
            for opened in of_side {
                if let Some(m) = messages.iter_mut().find(|m| m.message.id == opened.id) {
                    m.message.content = opened.content;
                }
            }
        }
    }
    if messages.is_empty() {
        out!(
            "no {}messages with {peer}",
            if before.is_some() { "older " } else { "" }
        );
    }
    for m in &messages {
        out!("{}", line(&m.message, &m.verdict));
    }
    let full = u64::try_from(messages.len()).is_ok_and(|n| n == limit.unwrap_or(DEFAULT_PAGE));
    if let (true, Some(oldest)) = (full, messages.first()) {
        note!("older messages: --before {}", oldest.message.id);
    }
    Ok(())
}

pub async fn dms(opts: ChatOpts, cmd: DmsCmd) -> Result<(), String> {
    match cmd {
        DmsCmd::Read { fid, limit, before } => read_dm(opts, fid, limit, before).await,
        DmsCmd::List => {
            let chat = chat(&opts).await?;
            let own = chat.fid().clone();
            let dms: Vec<_> = chat
                .conversations()
                .await
                .map_err(e)?
                .into_iter()
                .filter(|c| c.kind == channel_type::DM)
                .collect();
            if dms.is_empty() {
                out!("no DMs on {}", chat.domain());
            }
            for c in dms {
                let peer = c.recipients.iter().find(|r| **r != own).unwrap_or(&own);
                out!("DM {} with {peer} since {}", c.id, date(c.created_at));
            }
            Ok(())
        }
    }
}

pub async fn group(opts: ChatOpts, cmd: GroupCmd) -> Result<(), String> {
    let chat = chat(&opts).await?;
    match cmd {
        GroupCmd::Create {
            name,
            members,
            encrypted,
        } => {
            let c = chat.create_group(name, members).await.map_err(e)?;
            out!("created {}", describe(&c));
            if encrypted {
                let (session, mls) = e2ee::device(&opts.client).await?;
                e2ee::catch_up(&chat, &session, &mls).await?;
                let own = chat.fid().clone();
                let others: Vec<_> = c
                    .recipients
                    .iter()
                    .filter(|r| **r != own)
                    .cloned()
                    .collect();
                let group = e2ee::encrypt_with(&chat, &mls, c.id, &others).await?;
                out!("group {} is encrypted with MLS group {group}", c.id);
            }
        }
        GroupCmd::List => {
            let groups: Vec<_> = chat
                .conversations()
                .await
                .map_err(e)?
                .into_iter()
                .filter(|c| c.kind == channel_type::GROUP)
                .collect();
            if groups.is_empty() {
                out!("no groups on {}", chat.domain());
            }
            for c in groups {
                out!("{}", describe(&c));
            }
        }
        GroupCmd::Show { group } => {
            let c = chat.conversation(group).await.map_err(e)?;
            out!("{}", describe(&c));
        }
        GroupCmd::Members { group } => {
            let c = chat.conversation(group).await.map_err(e)?;
            let members = chat.conversation_members(group).await.map_err(e)?;
            for m in members {
                let owner = if c.owner_id.as_ref() == Some(&m.fid) {
                    "  (owner)"
                } else {
                    ""
                };
                out!("{}{owner}", m.fid);
            }
        }
        GroupCmd::Add { group, fid } => {
            chat.add_conversation_member(group, &fid).await.map_err(e)?;
            out!("added {fid} to group {group}");
        }
        GroupCmd::Remove { group, fid } => {
            chat.remove_conversation_member(group, &fid)
                .await
                .map_err(e)?;
            out!("removed {fid} from group {group}");
        }
        GroupCmd::Leave { group } => {
            chat.leave_conversation(group).await.map_err(e)?;
            out!("left group {group}");
        }
        GroupCmd::Owner { group, fid } => {
            let c = chat.transfer_conversation(group, &fid).await.map_err(e)?;
            out!("{}", describe(&c));
        }
        GroupCmd::Rename { group, name } => {
            let name = (!name.is_empty()).then_some(name);
            let c = chat.rename_group(group, name).await.map_err(e)?;
            out!("{}", describe(&c));
        }
    }
    Ok(())
}
