//! `fugue events`: the account's events and its chat events over the gateway, one line each,
//! until Ctrl-C. Messages are verified as they arrive and marked like `fugue read` does.

use fugue_client::{Chat, ChatEvent, Gateway, GatewayEvent, GatewayOptions};
use fugue_proto::certs::IdCert;
use fugue_proto::gateway::Style;

use super::community::{presence_line, profile_summary};
use super::conversations;
use super::messages::line as message_line;
use super::{ClientOpts, date, e, open_store, restore_session};
use crate::terminal::{note, out};

/// Prints events as they arrive (stdout); connection notices go to stderr so that stdout
/// holds exactly one line per event. With `chat`, subscribes to the chat channels first.
pub async fn run(opts: ClientOpts, json: bool, chat: bool) -> Result<(), String> {
    let store = open_store(&opts)?;
    let (session, _) = restore_session(&store)?;
    let mut gateway = session
        .gateway(GatewayOptions::default())
        .await
        .map_err(e)?;
    // A server without chat still has the account's own events to show.
    if chat && let Err(err) = gateway.subscribe_chat().await {
        note!("no chat events: {err}");
    }
    note!(
        "following the events of {} on {} (Ctrl-C to stop)",
        session.fid(),
        session.client().base_url()
    );
    let result = follow(&mut gateway, &session.chat(), json).await;
    gateway.close().await;
    result
}

async fn follow(gateway: &mut Gateway, chat: &Chat, json: bool) -> Result<(), String> {
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let event = tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            event = gateway.recv() => event,
        };
        let Some(event) = event else {
            return Ok(());
        };
        if json && let Some(envelope) = event.envelope() {
            out!("{}", envelope.render(Style::Numbers));
            continue;
        }
        if let Some(chat_event) = event.chat() {
            out!("{}", describe_chat(chat, &chat_event).await);
            continue;
        }
        match describe(&event) {
            Line::Event(text) => out!("{text}"),
            Line::Notice(text) => note!("{text}"),
            Line::End(text) => return Err(text),
        }
    }
}

/// How an event is shown: events on stdout, connection notices on stderr, and the end.
enum Line {
    Event(String),
    Notice(String),
    End(String),
}

fn reason_suffix(reason: Option<&str>) -> String {
    reason.map(|r| format!(": {r}")).unwrap_or_default()
}

/// One line for an event, e.g. `new session laptop alice@example.com cert serial 12`.
fn describe(event: &GatewayEvent) -> Line {
    let text = match event {
        GatewayEvent::NewSession { cert_pem, .. } => match IdCert::parse(cert_pem.as_bytes()) {
            Ok(cert) => {
                let session = cert.session_id().map(|s| s.to_string());
                let fid = cert.fid().map(|f| f.to_string());
                format!(
                    "new session {} {} cert serial {}",
                    session.as_deref().unwrap_or("?"),
                    fid.as_deref().unwrap_or("?"),
                    cert.serial
                )
            }
            Err(err) => format!("new session (its certificate does not parse: {err})"),
        },
        GatewayEvent::CertInvalidated { invalidation, .. } => format!(
            "certificate {} revoked since {}",
            invalidation.serial,
            date(invalidation.invalid_since)
        ),
        GatewayEvent::ServerCertChanged { change, .. } => {
            let serial = IdCert::parse(change.cert.as_bytes())
                .map(|c| format!(" (new serial {})", c.serial))
                .unwrap_or_default();
            format!(
                "server certificate changed{serial}; the old one is invalid since {}",
                date(change.old_invalid_since)
            )
        }
        GatewayEvent::Service { envelope } => {
            format!("{} event op {}: {}", envelope.n, envelope.op, envelope.d)
        }
        GatewayEvent::Malformed { error, envelope } => {
            format!("unreadable op {} event: {error}", envelope.op)
        }
        GatewayEvent::ChannelClosed { service, error } => {
            return Line::Notice(format!(
                "channel {service} closed{}",
                reason_suffix(error.as_deref())
            ));
        }
        GatewayEvent::Reconnected { resumed: true } => {
            return Line::Notice("reconnected; missed events follow".into());
        }
        GatewayEvent::Reconnected { resumed: false } => {
            return Line::Notice(
                "reconnected afresh (the server could not resume); unacknowledged events follow"
                    .into(),
            );
        }
        GatewayEvent::Closed { code, reason } => {
            let code = code.map_or_else(|| "no code".to_owned(), |c| c.to_string());
            return Line::End(format!("the gateway closed ({code}): {reason}"));
        }
    };
    Line::Event(text)
}

/// One line for a chat event; messages are verified first.
async fn describe_chat(chat: &Chat, event: &ChatEvent) -> String {
    match event {
        ChatEvent::MessageCreate(m) => {
            let verdict = chat.verify_message(None, m).await;
            format!("channel {}: {}", m.channel_id, message_line(m, &verdict))
        }
        ChatEvent::MessageUpdate(m) => {
            let verdict = chat.verify_message(None, m).await;
            format!(
                "channel {} edited: {}",
                m.channel_id,
                message_line(m, &verdict)
            )
        }
        ChatEvent::MessageDelete(d) => format!(
            "channel {}: message {} deleted by {}",
            d.channel_id, d.id, d.deleted_by
        ),
        ChatEvent::ChannelCreate(c) => {
            format!("guild {}: channel {} #{} created", c.guild_id, c.id, c.name)
        }
        ChatEvent::ChannelUpdate(c) => {
            format!("guild {}: channel {} #{} changed", c.guild_id, c.id, c.name)
        }
        ChatEvent::ChannelDelete(c) => format!("guild {}: channel {} deleted", c.guild_id, c.id),
        ChatEvent::MemberAdd(m) => format!("guild {}: {} joined", m.guild_id, m.fid),
        ChatEvent::MemberRemove(m) => format!("guild {}: {} left", m.guild_id, m.fid),
        ChatEvent::MemberUpdate(m) => format!("guild {}: {}'s roles changed", m.guild_id, m.fid),
        ChatEvent::GuildUpdate(g) => format!("guild {} changed: {}", g.id, g.name),
        ChatEvent::TypingStart(t) => format!("channel {}: {} is typing", t.channel_id, t.fid),
        ChatEvent::GuildJoined(g) => format!("you are now a member of guild {}", g.guild_id),
        ChatEvent::GuildLeft(g) => format!("you are no longer a member of guild {}", g.guild_id),
        ChatEvent::GuildDelete(g) => format!("guild {} was deleted", g.guild_id),
        ChatEvent::RoleUpdate(r) => format!(
            "guild {}: role {} {} is now {}",
            r.guild_id, r.id, r.name, r.permissions
        ),
        ChatEvent::RoleDelete(r) => format!("guild {}: role {} deleted", r.guild_id, r.id),
        ChatEvent::OverwriteUpdate(o) => match &o.overwrite {
            Some(w) => format!(
                "channel {}: permissions of {} set (allow {}, deny {})",
                o.channel_id, o.target, w.allow, w.deny
            ),
            None => format!(
                "channel {}: permissions of {} reset",
                o.channel_id, o.target
            ),
        },
        ChatEvent::BanAdd(b) => {
            format!("guild {}: {} banned by {}", b.guild_id, b.fid, b.banned_by)
        }
        ChatEvent::BanRemove(m) => format!("guild {}: {} unbanned", m.guild_id, m.fid),
        ChatEvent::ConversationJoined(c) => {
            format!("you are now in {}", conversations::describe(c))
        }
        ChatEvent::ConversationLeft(c) => {
            format!("you are no longer in conversation {}", c.conversation_id)
        }
        ChatEvent::ConversationUpdate(c) => format!("{} changed", conversations::describe(c)),
        ChatEvent::ConversationMemberAdd(m) => {
            format!("conversation {}: {} added", m.conversation_id, m.fid)
        }
        ChatEvent::ConversationMemberRemove(m) => {
            format!(
                "conversation {}: {} left or was removed",
                m.conversation_id, m.fid
            )
        }
        ChatEvent::ConversationOwner(o) => match &o.previous {
            Some(previous) => format!(
                "group {}: {} is the owner now (was {previous})",
                o.conversation_id, o.owner_id
            ),
            None => format!(
                "group {}: {} is the owner now",
                o.conversation_id, o.owner_id
            ),
        },
        ChatEvent::ReactionAdd(r) => format!(
            "channel {}: {} reacted {} to message {}",
            r.channel_id, r.fid, r.emoji, r.message_id
        ),
        ChatEvent::ReactionRemove(r) => format!(
            "channel {}: {} took back {} from message {}",
            r.channel_id, r.fid, r.emoji, r.message_id
        ),
        ChatEvent::PinUpdate(p) => format!(
            "channel {}: message {} {} by {}",
            p.channel_id,
            p.message_id,
            if p.pinned { "pinned" } else { "unpinned" },
            p.by
        ),
        ChatEvent::ReadState(r) => format!(
            "you read channel {} up to message {}",
            r.channel_id, r.last_read
        ),
        ChatEvent::PresenceUpdate(p) => presence_line(p),
        ChatEvent::ProfileUpdate(a) => {
            format!("{}'s profile changed: {}", a.fid, profile_summary(a))
        }
        ChatEvent::Unknown(envelope) => {
            format!("{} event op {}: {}", envelope.n, envelope.op, envelope.d)
        }
        ChatEvent::Malformed { error, envelope } => {
            format!(
                "unreadable {} op {} event: {error}",
                envelope.n, envelope.op
            )
        }
    }
}
