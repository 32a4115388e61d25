//! `fugue send`, `fugue read`, `fugue edit`, `fugue versions` and `fugue delete`: signed
//! messages in a channel.
//!
//! `read` prints history oldest first and marks every message: `✓` when its signature and
//! certificate checked out against the author's home server, `✗` with the reason when not,
//! `-` for a deleted one. Message text is the author's, not ours: it goes through the
//! terminal filter like everything a server sends.

use clap::Args;

use fugue_client::{Chat, Verdict};
use fugue_proto::api::message_history;
use fugue_proto::chat::{Message, MessageBody};

use super::community::{self, by_emoji};
use super::{ChatOpts, chat, date, e, e2ee};
use crate::terminal::{note, out};

#[derive(Args)]
pub struct SendArgs {
    /// The channel's id.
    channel: u64,
    /// The text (may be empty when files are attached).
    text: String,
    /// The id of the message this answers.
    #[arg(long)]
    reply_to: Option<u64>,
    /// A file to attach (uploaded first); repeatable, at most 10.
    #[arg(long = "attach", value_name = "FILE")]
    attach: Vec<std::path::PathBuf>,
}

#[derive(Args)]
pub struct ReadArgs {
    /// The channel's id.
    channel: u64,
    /// Messages older than this id.
    #[arg(long, conflicts_with_all = ["after", "around"])]
    before: Option<u64>,
    /// Messages newer than this id.
    #[arg(long, conflicts_with = "around")]
    after: Option<u64>,
    /// Messages around this id (it included).
    #[arg(long)]
    around: Option<u64>,
    /// How many (at most 100; the server's default otherwise).
    #[arg(long)]
    limit: Option<u64>,
    /// Mark the channel read up to the newest message shown (see `fugue unread`).
    #[arg(long)]
    mark: bool,
}

#[derive(Args)]
pub struct EditArgs {
    /// The channel's id.
    channel: u64,
    /// The message's id.
    message: u64,
    /// Its new text.
    text: String,
}

#[derive(Args)]
pub struct VersionsArgs {
    /// The channel's id.
    channel: u64,
    /// The message's id.
    message: u64,
}

#[derive(Args)]
pub struct DeleteArgs {
    /// The channel's id.
    channel: u64,
    /// The message's id.
    message: u64,
}

/// `✓`, `✗` or `-`, and the reason of a failure.
pub(super) fn mark(verdict: &Verdict) -> (&'static str, String) {
    match verdict {
        Verdict::Verified => ("✓", String::new()),
        Verdict::Deleted => ("-", String::new()),
        Verdict::Failed(why) => ("✗", format!("  [not verified: {why}]")),
    }
}

/// One line for a message, e.g.
/// `✓ 2026-12-06 20:41 UTC  alice@example.com  [7317…]  hello (reply to 7316…) [👍 2]`.
pub(super) fn line(m: &Message, verdict: &Verdict) -> String {
    let (mark, why) = mark(verdict);
    let text = if m.deleted_timestamp.is_some() {
        "(deleted)".to_owned()
    } else {
        m.content.clone()
    };
    let reply = m
        .reply_to
        .map(|r| format!(" (reply to {r})"))
        .unwrap_or_default();
    let edited = if m.edited_timestamp.is_some() && m.deleted_timestamp.is_none() {
        " (edited)"
    } else {
        ""
    };
    let reactions = by_emoji(&m.reactions)
        .iter()
        .map(|(emoji, who)| format!("{emoji} {}", who.len()))
        .collect::<Vec<_>>()
        .join(", ");
    let reactions = if reactions.is_empty() {
        reactions
    } else {
        format!(" [{reactions}]")
    };
    let files = if m.deleted_timestamp.is_some() {
        String::new()
    } else {
        attachments(m)
    };
    format!(
        "{mark} {}  {}  [{}]  {text}{reply}{edited}{reactions}{files}{why}",
        date(m.timestamp),
        m.author,
        m.id
    )
}

/// A message's attachments, e.g. ` [file: photo.jpg (84,213 bytes, 1000×600) <URL>]`: what the
/// server describes by name, size and dimensions, anything else by its URL.
fn attachments(m: &Message) -> String {
    m.attachments
        .iter()
        .map(
            |url| match m.attachment_details.iter().find(|a| &a.url == url) {
                Some(a) => {
                    let name = a.filename.as_deref().unwrap_or(&a.id);
                    let dims = match (a.width, a.height) {
                        (Some(w), Some(h)) => format!(", {w}×{h}"),
                        _ => String::new(),
                    };
                    format!(" [file: {name} ({} bytes{dims}) {url}]", a.size)
                }
                None => format!(" [file: {url}]"),
            },
        )
        .collect()
}

pub async fn send(opts: ChatOpts, args: SendArgs) -> Result<(), String> {
    let chat = chat(&opts).await?;
    if let Some(group) = chat.channel_group(args.channel).await.map_err(e)? {
        if !args.attach.is_empty() || args.reply_to.is_some() {
            return Err("an encrypted channel takes text only (no files, no replies)".into());
        }
        let (session, mls) = e2ee::device(&opts.client).await?;
        e2ee::catch_up(&chat, &session, &mls).await?;
        if !mls.has_group(&group) {
            return Err(format!(
                "channel {} is encrypted and this device is not in its group yet: ask with `fugue join {}`",
                args.channel, args.channel
            ));
        }
        let sent = chat
            .send_encrypted(&mls, args.channel, &group, &args.text)
            .await
            .map_err(e)?;
        out!(
            "sent encrypted message {} to channel {}",
            sent.message.id,
            args.channel
        );
        return Ok(());
    }
    if args.attach.len() > fugue_proto::chat::MAX_ATTACHMENTS {
        return Err(format!(
            "at most {} files per message",
            fugue_proto::chat::MAX_ATTACHMENTS
        ));
    }
    let mut attachments = Vec::with_capacity(args.attach.len());
    for path in &args.attach {
        let a = chat.upload_attachment_file(path).await.map_err(e)?;
        note!("attached {} ({} bytes)", path.display(), a.size);
        attachments.push(a.url);
    }
    let body = MessageBody {
        content: args.text,
        reply_to: args.reply_to,
        attachments,
    };
    let sent = chat.send_message(args.channel, body).await.map_err(e)?;
    let again = if sent.created {
        ""
    } else {
        " (already stored)"
    };
    out!(
        "sent message {} to channel {}{again}",
        sent.message.id,
        args.channel
    );
    Ok(())
}

async fn page(chat: &Chat, args: &ReadArgs) -> Result<Vec<Message>, String> {
    let query = message_history::Query {
        limit: args.limit,
        before: args.before,
        after: args.after,
        around: args.around,
    };
    chat.message_history(args.channel, &query).await.map_err(e)
}

pub async fn read(opts: ChatOpts, args: ReadArgs) -> Result<(), String> {
    let chat = chat(&opts).await?;
    let group = chat.channel_group(args.channel).await.map_err(e)?;
    let device = match &group {
        Some(_) => {
            let (session, mls) = e2ee::device(&opts.client).await?;
            e2ee::catch_up(&chat, &session, &mls).await?;
            Some(mls)
        }
        None => None,
    };
    let mut messages = page(&chat, &args).await?;
    // The server pages newest first; people read oldest first.
    messages.sort_by_key(|m| m.id);
    // Signatures are over what was sent: checked before the texts are opened.
    let verdicts = chat.verify_messages(args.channel, &messages).await;
    if let (Some(group), Some(mls)) = (&group, &device) {
        e2ee::open(&chat, mls, group, &mut messages);
    }
    if messages.is_empty() {
        out!("no messages");
    }
    for (m, verdict) in messages.iter().zip(&verdicts) {
        out!("{}", line(m, verdict));
    }
    if args.mark
        && let Some(newest) = messages.last()
    {
        let state = chat
            .set_read_state(args.channel, newest.id)
            .await
            .map_err(e)?;
        // On stderr: stdout holds exactly the messages.
        note!("{}", community::marked_line(&state));
    }
    Ok(())
}

pub async fn edit(opts: ChatOpts, args: EditArgs) -> Result<(), String> {
    let chat = chat(&opts).await?;
    let m = chat
        .edit_message(args.channel, args.message, args.text, Vec::new())
        .await
        .map_err(e)?;
    out!("edited message {} (version {})", m.id, m.version);
    Ok(())
}

pub async fn delete(opts: ChatOpts, args: DeleteArgs) -> Result<(), String> {
    let chat = chat(&opts).await?;
    chat.delete_message(args.channel, args.message)
        .await
        .map_err(e)?;
    out!("deleted message {}", args.message);
    Ok(())
}

pub async fn versions(opts: ChatOpts, args: VersionsArgs) -> Result<(), String> {
    let chat = chat(&opts).await?;
    let m = chat.message(args.channel, args.message).await.map_err(e)?;
    let versions = chat
        .message_versions(args.channel, args.message)
        .await
        .map_err(e)?;
    if versions.is_empty() {
        out!("message {} has no versions left (deleted)", m.id);
    }
    let verdicts = chat.verify_versions(args.channel, &m, &versions).await;
    for (v, verdict) in versions.iter().zip(&verdicts) {
        let (mark, why) = mark(verdict);
        out!(
            "{mark} version {}  {}  {}{why}",
            v.version,
            date(v.created_at),
            v.content
        );
    }
    Ok(())
}
