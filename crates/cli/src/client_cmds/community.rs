//! What surrounds messages: `fugue react` and `fugue reactions` (signed reactions),
//! `fugue pin` and `fugue pins`, `fugue unread` and `fugue mark-read` (read states with
//! unread and mention counts), `fugue status` and `fugue presence`, and `fugue profile`.
//!
//! Reactions are signed with the session's key like messages; pinned messages are verified
//! and marked like `fugue read` marks history.

use clap::{Args, Subcommand, ValueEnum};

use fugue_proto::FederationId;
use fugue_proto::api::update_profile;
use fugue_proto::chat::{Reaction, channel_type};
use fugue_proto::community::{Actor, Chosen, MAX_UNREAD, Presence, ReadState, availability};
use fugue_proto::conversation::Conversation;

use super::guild::parse_fid;
use super::messages::line as message_line;
use super::{ChatOpts, chat, date, e};
use crate::terminal::out;

#[derive(Args)]
pub struct ReactArgs {
    /// The channel's id.
    channel: u64,
    /// The message's id.
    message: u64,
    /// A Unicode emoji (👍) or a named one (:party:).
    emoji: String,
    /// Take your reaction back instead.
    #[arg(long)]
    remove: bool,
}

#[derive(Args)]
pub struct ReactionsArgs {
    /// The channel's id.
    channel: u64,
    /// The message's id.
    message: u64,
    /// Who reacted with this emoji, in order (default: every reaction, by emoji).
    emoji: Option<String>,
}

#[derive(Args)]
pub struct PinArgs {
    /// The channel's id.
    channel: u64,
    /// The message's id.
    message: u64,
    /// Unpin it instead.
    #[arg(long)]
    remove: bool,
}

#[derive(Args)]
pub struct PinsArgs {
    /// The channel's id.
    channel: u64,
}

#[derive(Args)]
pub struct UnreadArgs {
    /// Every channel you may read, also those with nothing unread.
    #[arg(long)]
    all: bool,
}

#[derive(Args)]
pub struct MarkReadArgs {
    /// The channel's id.
    channel: u64,
    /// The last message read (default: the channel's newest).
    message: Option<u64>,
}

/// What others see of you, as `fugue status` sets it.
#[derive(Clone, Copy, ValueEnum)]
pub enum Status {
    Online,
    Idle,
    /// Do not disturb.
    Dnd,
    /// Appear offline while connected (invisible).
    #[value(alias = "invisible")]
    Offline,
}

impl Status {
    fn availability(self) -> u8 {
        match self {
            Status::Online => availability::ONLINE,
            Status::Idle => availability::IDLE,
            Status::Dnd => availability::DO_NOT_DISTURB,
            Status::Offline => availability::INVISIBLE,
        }
    }
}

#[derive(Args)]
pub struct StatusArgs {
    status: Status,
    /// A custom status shown beside it (without it, the previous one is cleared).
    #[arg(long)]
    text: Option<String>,
}

#[derive(Args)]
pub struct PresenceArgs {
    /// Whose presence (at most 100).
    #[arg(required = true, value_name = "FID")]
    fids: Vec<String>,
}

#[derive(Subcommand)]
pub enum ProfileCmd {
    /// Change your profile; a field not given stays, an empty value clears it.
    Set {
        #[arg(long)]
        display_name: Option<String>,
        #[arg(long)]
        pronouns: Option<String>,
        /// About you (line breaks allowed).
        #[arg(long)]
        about: Option<String>,
        /// Your time zone, an IANA name like Europe/Berlin.
        #[arg(long)]
        timezone: Option<String>,
        /// An image to show as your avatar (uploaded public to your home server); an empty
        /// value removes it.
        #[arg(long, value_name = "FILE")]
        avatar: Option<String>,
    },
}

/// `online`, `idle`, `do not disturb` or `offline`.
fn availability_name(a: u8) -> &'static str {
    match a {
        availability::ONLINE => "online",
        availability::IDLE => "idle",
        availability::DO_NOT_DISTURB => "do not disturb",
        _ => "offline",
    }
}

/// `idle: out for lunch`, or `online` without a custom status.
fn presence_text(availability: u8, status: Option<&str>) -> String {
    let name = availability_name(availability);
    match status {
        Some(s) => format!("{name}: {s}"),
        None => name.to_owned(),
    }
}

/// What you chose, where others see something else: ` (you are invisible)`, ` (you chose do
/// not disturb: busy; others see it while you are connected)`.
fn chosen_note(shown: u8, chosen: &Chosen) -> String {
    let status = chosen
        .status
        .as_deref()
        .map(|s| format!(": {s}"))
        .unwrap_or_default();
    if chosen.availability == availability::INVISIBLE {
        format!(" (you are invisible{status})")
    } else if shown != chosen.availability {
        format!(
            " (you chose {}{status}; others see it while you are connected)",
            availability_name(chosen.availability)
        )
    } else {
        String::new()
    }
}

/// `bob@example.com is idle: out for lunch`.
pub(super) fn presence_line(p: &Presence) -> String {
    format!(
        "{} is {}",
        p.fid,
        presence_text(p.availability, p.status.as_deref())
    )
}

/// `Alice (she/her)`, or what there is of it.
pub(super) fn profile_summary(a: &Actor) -> String {
    match (&a.display_name, &a.pronouns) {
        (Some(name), Some(pronouns)) => format!("{name} ({pronouns})"),
        (Some(name), None) => name.clone(),
        (None, Some(pronouns)) => format!("({pronouns})"),
        (None, None) => "(no display name)".to_owned(),
    }
}

/// The reactions of a message by emoji, with who: the most frequent first, then as they
/// first appear.
pub(super) fn by_emoji(reactions: &[Reaction]) -> Vec<(&str, Vec<String>)> {
    let mut out: Vec<(&str, Vec<String>)> = Vec::new();
    for r in reactions {
        let who = r.fid.to_string();
        match out.iter_mut().find(|(emoji, _)| *emoji == r.emoji) {
            Some((_, fids)) => fids.push(who),
            None => out.push((&r.emoji, vec![who])),
        }
    }
    out.sort_by_key(|(_, who)| std::cmp::Reverse(who.len()));
    out
}

/// `1000+` once a count reached the server's cap.
fn count(n: u64) -> String {
    if n >= MAX_UNREAD {
        format!("{MAX_UNREAD}+")
    } else {
        n.to_string()
    }
}

/// `0 unread, 1 mention`.
fn counts(s: &ReadState) -> String {
    let mentions = if s.mentions == 1 {
        "mention"
    } else {
        "mentions"
    };
    format!(
        "{} unread, {} {mentions}",
        count(s.unread),
        count(s.mentions)
    )
}

fn print_profile(a: &Actor) {
    out!("{}  {}", a.fid, profile_summary(a));
    out!(
        "presence: {}{}",
        presence_text(a.availability, a.status.as_deref()),
        a.chosen
            .as_ref()
            .map(|c| chosen_note(a.availability, c))
            .unwrap_or_default()
    );
    if let Some(about) = &a.about {
        for (i, l) in about.lines().enumerate() {
            out!("{}{l}", if i == 0 { "about: " } else { "       " });
        }
    }
    if let Some(tz) = &a.timezone {
        out!("time zone: {tz}");
    }
    if let Some(avatar) = &a.avatar {
        out!("avatar: {avatar}");
    }
}

pub async fn react(opts: ChatOpts, args: ReactArgs) -> Result<(), String> {
    let chat = chat(&opts).await?;
    let (c, m, emoji) = (args.channel, args.message, &args.emoji);
    if args.remove {
        chat.unreact(c, m, emoji).await.map_err(e)?;
        out!("took back {emoji} from message {m}");
    } else {
        chat.react(c, m, emoji).await.map_err(e)?;
        out!("reacted {emoji} to message {m}");
    }
    Ok(())
}

pub async fn reactions(opts: ChatOpts, args: ReactionsArgs) -> Result<(), String> {
    let chat = chat(&opts).await?;
    let (c, m) = (args.channel, args.message);
    if let Some(emoji) = &args.emoji {
        let who = chat.reactors(c, m, emoji).await.map_err(e)?;
        if who.is_empty() {
            out!("no one reacted {emoji} to message {m}");
        }
        for r in who {
            let (mark, why) = super::messages::mark(&chat.verify_reaction(c, m, &r).await);
            out!("{mark} {}{why}", r.fid);
        }
        return Ok(());
    }
    let message = chat.message(c, m).await.map_err(e)?;
    let grouped = by_emoji(&message.reactions);
    if grouped.is_empty() {
        out!("no reactions to message {m}");
    }
    for (emoji, who) in grouped {
        out!("{emoji} {}  {}", who.len(), who.join(", "));
    }
    Ok(())
}

pub async fn pin(opts: ChatOpts, args: PinArgs) -> Result<(), String> {
    let chat = chat(&opts).await?;
    let (c, m) = (args.channel, args.message);
    if args.remove {
        chat.unpin(c, m).await.map_err(e)?;
        out!("unpinned message {m} in channel {c}");
    } else {
        chat.pin(c, m).await.map_err(e)?;
        out!("pinned message {m} in channel {c}");
    }
    Ok(())
}

/// The pinned messages, latest pinned first, each verified and marked.
pub async fn pins(opts: ChatOpts, args: PinsArgs) -> Result<(), String> {
    let chat = chat(&opts).await?;
    let pinned = chat.pins(args.channel).await.map_err(e)?;
    if pinned.is_empty() {
        out!("no pinned messages");
    }
    let (messages, by): (Vec<_>, Vec<_>) = pinned
        .into_iter()
        .map(|p| (p.message, (p.pinned_by, p.pinned_at)))
        .unzip();
    let verdicts = chat.verify_messages(args.channel, &messages).await;
    for ((m, (who, at)), verdict) in messages.iter().zip(by).zip(&verdicts) {
        out!(
            "{}  (pinned by {who} {})",
            message_line(m, verdict),
            date(at)
        );
    }
    Ok(())
}

/// One line a channel: `CHANNEL  #name  (guild G)  3 unread, 1 mention`, or for a DM or
/// group `CHANNEL  DM with bob@x  3 unread, 1 mention`.
pub async fn unread(opts: ChatOpts, args: UnreadArgs) -> Result<(), String> {
    let chat = chat(&opts).await?;
    let states: Vec<ReadState> = chat
        .read_states()
        .await
        .map_err(e)?
        .into_iter()
        .filter(|s| args.all || s.unread > 0 || s.mentions > 0)
        .collect();
    if states.is_empty() {
        out!("nothing unread");
    }
    // DMs and groups (their `guild_id` is their own id) are named from the conversation
    // list; a list that fails leaves them unnamed, not the command failed.
    let conversations = if states.iter().any(|s| s.guild_id == s.channel_id) {
        chat.conversations().await.unwrap_or_default()
    } else {
        Vec::new()
    };
    // Read states name channels by id; their names come from each guild's channel list.
    let mut names: Vec<(u64, String)> = Vec::new();
    let mut guilds_asked: Vec<u64> = Vec::new();
    for s in &states {
        if s.guild_id == s.channel_id {
            let name = conversations
                .iter()
                .find(|c| c.id == s.channel_id)
                .map_or_else(|| "conversation".to_owned(), |c| label(c, chat.fid()));
            out!("{}  {name}  {}", s.channel_id, counts(s));
            continue;
        }
        if !guilds_asked.contains(&s.guild_id) {
            guilds_asked.push(s.guild_id);
            // A channel list that fails leaves ids without names, not the command failed.
            if let Ok(channels) = chat.channels(s.guild_id).await {
                names.extend(channels.into_iter().map(|c| (c.id, c.name)));
            }
        }
        let name = names
            .iter()
            .find(|(id, _)| *id == s.channel_id)
            .map(|(_, n)| format!("  #{n}"))
            .unwrap_or_default();
        out!(
            "{}{name}  (guild {})  {}",
            s.channel_id,
            s.guild_id,
            counts(s)
        );
    }
    Ok(())
}

/// `DM with bob@x`, `group "name"` or `group with a@x, b@y`.
fn label(c: &Conversation, own: &FederationId) -> String {
    let others = || {
        c.recipients
            .iter()
            .filter(|r| *r != own)
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (c.kind, &c.name) {
        (channel_type::DM, _) => format!("DM with {}", others()),
        (_, Some(name)) => format!("group \"{name}\""),
        _ => format!("group with {}", others()),
    }
}

/// Moves the read marker; prints what is left unread.
pub async fn mark_read(opts: ChatOpts, args: MarkReadArgs) -> Result<(), String> {
    let chat = chat(&opts).await?;
    let state = match args.message {
        Some(m) => Some(chat.set_read_state(args.channel, m).await.map_err(e)?),
        None => chat.mark_read(args.channel).await.map_err(e)?,
    };
    match state {
        Some(s) => out!("{}", marked_line(&s)),
        None => out!("channel {} has no messages", args.channel),
    }
    Ok(())
}

/// `channel C read up to message M (0 unread, 0 mentions)`.
pub(super) fn marked_line(s: &ReadState) -> String {
    format!(
        "channel {} read up to message {} ({})",
        s.channel_id,
        s.last_read
            .map_or_else(|| "-".to_owned(), |m| m.to_string()),
        counts(s)
    )
}

pub async fn status(opts: ChatOpts, args: StatusArgs) -> Result<(), String> {
    let chat = chat(&opts).await?;
    let wanted = args.status.availability();
    let shown = chat.set_presence(wanted, args.text).await.map_err(e)?;
    if wanted == availability::INVISIBLE {
        out!("you appear offline to others");
    } else if shown.availability == availability::OFFLINE {
        out!(
            "status set; others see you offline until you are connected (`fugue events` or \
             `fugue chat`)"
        );
    } else {
        out!("{}", presence_line(&shown));
    }
    Ok(())
}

pub async fn presence(opts: ChatOpts, args: PresenceArgs) -> Result<(), String> {
    let chat = chat(&opts).await?;
    let fids = args
        .fids
        .iter()
        .map(|f| parse_fid(f))
        .collect::<Result<Vec<_>, _>>()?;
    for p in chat.presences(&fids).await.map_err(e)? {
        out!("{}", presence_line(&p));
    }
    Ok(())
}

pub async fn profile(
    opts: ChatOpts,
    fid: Option<String>,
    cmd: Option<ProfileCmd>,
) -> Result<(), String> {
    let chat = chat(&opts).await?;
    let shown = match (fid, cmd) {
        (Some(_), Some(_)) => {
            return Err("`fugue profile set` changes your own profile: leave out the FID".into());
        }
        (Some(fid), None) => chat.profile(&parse_fid(&fid)?).await.map_err(e)?,
        (
            None,
            Some(ProfileCmd::Set {
                display_name,
                pronouns,
                about,
                timezone,
                avatar,
            }),
        ) => {
            let avatar = match avatar {
                Some(path) if path.is_empty() => Some(String::new()),
                Some(path) => Some(
                    chat.upload_picture(std::path::Path::new(&path))
                        .await
                        .map_err(e)?,
                ),
                None => None,
            };
            let request = update_profile::Request {
                display_name,
                pronouns,
                about,
                timezone,
                avatar,
            };
            if request.display_name.is_none()
                && request.pronouns.is_none()
                && request.about.is_none()
                && request.timezone.is_none()
                && request.avatar.is_none()
            {
                return Err(
                    "nothing to change: give --display-name, --pronouns, --about, \
                            --timezone or --avatar (an empty value clears one)"
                        .into(),
                );
            }
            chat.update_profile(&request).await.map_err(e)?
        }
        (None, None) => chat.own_profile().await.map_err(e)?,
    };
    print_profile(&shown);
    Ok(())
}
