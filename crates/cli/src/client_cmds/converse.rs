//! `fugue chat CHANNEL`: a conversation in one terminal. Shows the channel's latest messages,
//! then every new message, edit and deletion there as it arrives (verified, like `fugue
//! read`), and sends each line typed on stdin as a signed message. Ends at end of input or
//! Ctrl-C.

use clap::Args;
use tokio::sync::mpsc;

use fugue_client::{Chat, ChatEvent, GatewayEvent, GatewayOptions};
use fugue_proto::api::message_history;
use fugue_proto::chat::MessageBody;

use super::messages::line;
use super::{ChatOpts, chat, e, open_store, restore_session};
use crate::terminal::{note, out};

#[derive(Args)]
pub struct ChatArgs {
    /// The channel's id.
    channel: u64,
    /// How many earlier messages to show first.
    #[arg(long, default_value_t = 20)]
    last: u64,
}

/// Lines of stdin, read on a thread of their own (stdin blocks); `None` at end of input.
fn stdin_lines() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Prints the latest `last` messages; returns the newest message id, below which live
/// events are replays of what the history already covers (a first connection catches up
/// on the guild's stream).
async fn show_history(chat: &Chat, channel: u64, last: u64) -> Result<u64, String> {
    let query = message_history::Query {
        limit: Some(last.clamp(1, fugue_proto::chat::MAX_PAGE)),
        ..Default::default()
    };
    let mut page = chat.message_history(channel, &query).await.map_err(e)?;
    page.sort_by_key(|m| m.id);
    let newest = page.last().map_or(0, |m| m.id);
    if last == 0 {
        return Ok(newest);
    }
    let verdicts = chat.verify_messages(channel, &page).await;
    for (m, verdict) in page.iter().zip(&verdicts) {
        out!("{}", line(m, verdict));
    }
    Ok(newest)
}

pub async fn run(opts: ChatOpts, args: ChatArgs) -> Result<(), String> {
    if opts.on.is_some() {
        return Err(
            "fugue chat follows your home server's gateway; --on is not supported yet".into(),
        );
    }
    let chat = chat(&opts).await?;
    let store = open_store(&opts.client)?;
    let (session, _) = restore_session(&store)?;
    let mut gateway = session
        .gateway(GatewayOptions::default())
        .await
        .map_err(e)?;
    gateway.subscribe_chat().await.map_err(e)?;
    let seen = show_history(&chat, args.channel, args.last).await?;
    note!(
        "chatting in channel {} as {} (type a line to send it; Ctrl-D or Ctrl-C to stop)",
        args.channel,
        chat.fid()
    );
    let mut lines = stdin_lines();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let result = loop {
        tokio::select! {
            _ = &mut ctrl_c => break Ok(()),
            typed = lines.recv() => {
                let Some(text) = typed else { break Ok(()) };
                if text.trim().is_empty() {
                    continue;
                }
                let body = MessageBody { content: text, reply_to: None, attachments: Vec::new() };
                if let Err(err) = chat.send_message(args.channel, body).await {
                    note!("not sent: {err}");
                }
            }
            event = gateway.recv() => match event {
                None => break Ok(()),
                Some(GatewayEvent::Closed { code, reason }) => {
                    let code = code.map_or_else(|| "no code".to_owned(), |c| c.to_string());
                    break Err(format!("the gateway closed ({code}): {reason}"));
                }
                Some(event) => show_event(&chat, args.channel, seen, &event).await,
            },
        }
    };
    gateway.close().await;
    result
}

/// Prints what happened in `channel` (new messages above `seen`); everything else is not
/// this conversation.
async fn show_event(chat: &Chat, channel: u64, seen: u64, event: &GatewayEvent) {
    match event.chat() {
        Some(ChatEvent::MessageCreate(m)) if m.channel_id == channel && m.id > seen => {
            let verdict = chat.verify_message(Some(channel), &m).await;
            out!("{}", line(&m, &verdict));
        }
        Some(ChatEvent::MessageUpdate(m)) if m.channel_id == channel => {
            let verdict = chat.verify_message(Some(channel), &m).await;
            out!("{}", line(&m, &verdict));
        }
        Some(ChatEvent::MessageDelete(d)) if d.channel_id == channel => {
            out!("- message {} deleted by {}", d.id, d.deleted_by);
        }
        Some(ChatEvent::TypingStart(t)) if t.channel_id == channel && t.fid != *chat.fid() => {
            note!("{} is typing…", t.fid);
        }
        _ => {}
    }
}
