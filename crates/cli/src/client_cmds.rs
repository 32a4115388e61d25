//! The client commands of `fugue`: accounts, sessions, certificates, key backups, the
//! event stream, sign-in on other servers, uploaded files, and chat (guilds, channels, messages, DMs and
//! groups, reactions, pins, read states, presence and profiles).
//!
//! Everything goes through `fugue-client`; these modules only parse arguments, ask for
//! secrets and print results. Secrets come from `FUGUE_PASSWORD` / `FUGUE_PASSPHRASE` when
//! set (scripts), otherwise from a hidden prompt. One file per command group; this one holds
//! the options they share, the dispatch, and the key store and prompt helpers.
//!
//! Errors here are `Result<(), String>`, on purpose: at this layer an error has one fate.
//! `main` prints it once, on one line made safe for the terminal, and exits with 1; no caller
//! matches on it or recovers from it. A message written where the failure is understood
//! ("session ID: …", "cannot create DIR: …") serves the person reading it better than an
//! error type that would only ever be displayed. The libraries keep typed errors with their
//! sources; `e` turns the SDK's into text at this boundary only.

mod account;
mod certs;
mod channel;
mod community;
mod conversations;
mod converse;
mod e2ee;
mod events;
mod federation;
mod guild;
mod keys;
mod media;
mod messages;
mod migrate;
mod role;
mod services;
mod sessions;

use std::path::PathBuf;

use clap::{Args, Subcommand};

use fugue_client::{Account, Chat, KeyStore, Session};

#[derive(Args, Clone)]
pub struct ClientOpts {
    /// Base URL of the home server.
    #[arg(
        long,
        global = true,
        env = "FUGUE_SERVER",
        default_value = "http://127.0.0.1:3000"
    )]
    server: String,
    /// Key store file (default: $XDG_CONFIG_HOME/fugue/keystore.json).
    #[arg(long, global = true, env = "FUGUE_KEYSTORE")]
    keystore: Option<PathBuf>,
}

/// The options of the chat commands: where the conversations are, and where other authors'
/// home servers are.
#[derive(Args, Clone)]
pub struct ChatOpts {
    #[command(flatten)]
    client: ClientOpts,
    /// Chat on another server you signed in on with `fugue federation login` (its URL, or a
    /// host name for https://HOST) instead of your home server.
    #[arg(long, global = true, env = "FUGUE_CHAT_ON")]
    on: Option<String>,
    /// Where the home server of DOMAIN is, as DOMAIN=URL, when not at https://DOMAIN
    /// (verification fetches its authors' certificates there); repeatable.
    #[arg(long = "home", global = true, value_name = "DOMAIN=URL")]
    homes: Vec<String>,
}

#[derive(Subcommand)]
pub enum ClientCommand {
    /// Register, log in, show who you are.
    Account {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(subcommand)]
        cmd: account::AccountCmd,
    },
    /// Your sessions: spot one you did not create and revoke it.
    Sessions {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(subcommand)]
        cmd: sessions::SessionsCmd,
    },
    /// Certificates of an actor, verified against its home server.
    Certs {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(subcommand)]
        cmd: certs::CertsCmd,
    },
    /// Encrypted backups of your private identity keys on your home server.
    Keys {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(subcommand)]
        cmd: keys::KeysCmd,
    },
    /// Follow your account's events (new sessions, revoked certificates, server key changes)
    /// and chat events (messages, channels, members, reactions, pins, read markers, presence,
    /// profiles) over the gateway, one line each, until Ctrl-C. Messages are verified as they
    /// arrive. While it follows the chat channels you count as online (see `fugue status`).
    Events {
        #[command(flatten)]
        opts: ClientOpts,
        /// Print each event's envelope as one line of JSON instead of a description.
        #[arg(long)]
        json: bool,
        /// Only the account's own events: do not subscribe to the chat channels.
        #[arg(long)]
        no_chat: bool,
    },
    /// Chat guilds: create, list, join, leave, invite, members, kick, ban, transfer, delete.
    Guild {
        #[command(flatten)]
        opts: ChatOpts,
        #[command(subcommand)]
        cmd: guild::GuildCmd,
    },
    /// Roles of a guild: list, create, delete, give, take.
    Role {
        #[command(flatten)]
        opts: ChatOpts,
        #[command(subcommand)]
        cmd: role::RoleCmd,
    },
    /// Channels of a guild: create, list, update, delete, permission overwrites.
    Channel {
        #[command(flatten)]
        opts: ChatOpts,
        #[command(subcommand)]
        cmd: channel::ChannelCmd,
    },
    /// Hold a conversation in one channel: its latest messages, then new ones live, and
    /// every line you type sent as a signed message.
    Chat {
        #[command(flatten)]
        opts: ChatOpts,
        #[command(flatten)]
        args: converse::ChatArgs,
    },
    /// Send a signed direct message to FID on its chat server, or without TEXT show the
    /// conversation with FID (both directions, each message marked).
    Dm {
        #[command(flatten)]
        opts: ChatOpts,
        #[command(flatten)]
        args: conversations::DmArgs,
    },
    /// Direct-message conversations: list, read.
    Dms {
        #[command(flatten)]
        opts: ChatOpts,
        #[command(subcommand)]
        cmd: conversations::DmsCmd,
    },
    /// Group conversations: create, list, show, members, add, remove, leave, owner, rename
    /// (messages: `fugue send` / `fugue read` with the group's id).
    Group {
        #[command(flatten)]
        opts: ChatOpts,
        #[command(subcommand)]
        cmd: conversations::GroupCmd,
    },
    /// Ask to join an encrypted channel, DM or group with this device (a member lets it in).
    Join {
        #[command(flatten)]
        opts: ChatOpts,
        /// The channel's (or conversation's) id.
        channel: u64,
    },
    /// Join requests of an encrypted channel: list, accept, deny.
    Requests {
        #[command(flatten)]
        opts: ChatOpts,
        #[command(subcommand)]
        cmd: e2ee::RequestsCmd,
    },
    /// The devices in an encrypted channel, DM or group (its MLS group's members).
    Devices {
        #[command(flatten)]
        opts: ChatOpts,
        /// The channel's (or conversation's) id.
        channel: u64,
    },
    /// Send a signed message to a channel (encrypted where the channel is).
    Send {
        #[command(flatten)]
        opts: ChatOpts,
        #[command(flatten)]
        args: messages::SendArgs,
    },
    /// Read a channel's history, oldest first, each message marked ✓ (verified) or ✗ (with
    /// the reason).
    Read {
        #[command(flatten)]
        opts: ChatOpts,
        #[command(flatten)]
        args: messages::ReadArgs,
    },
    /// Replace the text of one of your messages with a new signed version.
    Edit {
        #[command(flatten)]
        opts: ChatOpts,
        #[command(flatten)]
        args: messages::EditArgs,
    },
    /// Every signed version of a message (its edit history), oldest first, each marked.
    Versions {
        #[command(flatten)]
        opts: ChatOpts,
        #[command(flatten)]
        args: messages::VersionsArgs,
    },
    /// Delete a message (yours, or any with the permission to manage messages).
    Delete {
        #[command(flatten)]
        opts: ChatOpts,
        #[command(flatten)]
        args: messages::DeleteArgs,
    },
    /// Add your signed reaction to a message (--remove takes it back).
    React {
        #[command(flatten)]
        opts: ChatOpts,
        #[command(flatten)]
        args: community::ReactArgs,
    },
    /// Who reacted to a message with EMOJI, in order; without EMOJI every reaction by emoji.
    Reactions {
        #[command(flatten)]
        opts: ChatOpts,
        #[command(flatten)]
        args: community::ReactionsArgs,
    },
    /// Pin a message in its channel (--remove unpins it; needs the permission to manage
    /// messages).
    Pin {
        #[command(flatten)]
        opts: ChatOpts,
        #[command(flatten)]
        args: community::PinArgs,
    },
    /// A channel's pinned messages, the latest pinned first, each marked like `fugue read`.
    Pins {
        #[command(flatten)]
        opts: ChatOpts,
        #[command(flatten)]
        args: community::PinsArgs,
    },
    /// Channels with unread messages and mentions of you, in every guild you are in.
    Unread {
        #[command(flatten)]
        opts: ChatOpts,
        #[command(flatten)]
        args: community::UnreadArgs,
    },
    /// Mark a channel read up to MESSAGE (default: its newest message).
    MarkRead {
        #[command(flatten)]
        opts: ChatOpts,
        #[command(flatten)]
        args: community::MarkReadArgs,
    },
    /// Set what others see of you: online, idle, dnd (do not disturb) or offline (invisible),
    /// with an optional custom status. You show online only while connected (`fugue events`,
    /// `fugue chat`).
    Status {
        #[command(flatten)]
        opts: ChatOpts,
        #[command(flatten)]
        args: community::StatusArgs,
    },
    /// Whether FIDs are online, idle, do not disturb or offline, with their custom status
    /// (those sharing no guild with you show offline).
    Presence {
        #[command(flatten)]
        opts: ChatOpts,
        #[command(flatten)]
        args: community::PresenceArgs,
    },
    /// Show your profile or the profile of FID; `fugue profile set` changes yours.
    Profile {
        #[command(flatten)]
        opts: ChatOpts,
        /// Whose profile (default: yours).
        fid: Option<String>,
        #[command(subcommand)]
        cmd: Option<community::ProfileCmd>,
    },
    /// Upload a file to your home server (a RawR resource); prints its ID and URL.
    Upload {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(flatten)]
        args: media::UploadArgs,
    },
    /// Download a resource (yours, one shared with you, or a public one).
    Download {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(flatten)]
        args: media::DownloadArgs,
    },
    /// Your uploaded resources: list, info, share, delete, usage.
    Resources {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(subcommand)]
        cmd: media::ResourcesCmd,
    },
    /// Your discoverable services (core §9) and those of others.
    Services {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(subcommand)]
        cmd: services::ServicesCmd,
    },
    /// Sign in on other home servers with your identity key (key trials).
    Federation {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(subcommand)]
        cmd: federation::FederationCmd,
    },
    /// Move your identity: redirects from an old identity to a new one (core §7).
    Migrate {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(subcommand)]
        cmd: migrate::MigrateCmd,
    },
}

/// The second factor of a sensitive action: a TOTP code given on the command line, or the
/// password.
pub(crate) fn solution(totp: Option<String>) -> Result<String, String> {
    match totp {
        Some(code) => Ok(code),
        None => secret("FUGUE_PASSWORD", "Password (or TOTP code): "),
    }
}

pub(crate) fn secret(var: &str, prompt: &str) -> Result<String, String> {
    if let Ok(v) = std::env::var(var) {
        return Ok(v);
    }
    rpassword::prompt_password(prompt)
        .map_err(|e| format!("cannot read {var}: {e} (set {var} when not on a terminal)"))
}

/// One line from stdin after `prompt` on stderr; `None` at end of input.
fn read_line(prompt: &str) -> Result<Option<String>, String> {
    use std::io::Write;
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let n = std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read stdin: {e}"))?;
    Ok((n > 0).then(|| line.trim().to_owned()))
}

fn keystore_path(opts: &ClientOpts) -> Result<PathBuf, String> {
    if let Some(p) = &opts.keystore {
        return Ok(p.clone());
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .ok_or("set --keystore, XDG_CONFIG_HOME or HOME")?;
    Ok(base.join("fugue").join("keystore.json"))
}

fn open_store(opts: &ClientOpts) -> Result<KeyStore, String> {
    let path = keystore_path(opts)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    KeyStore::load(&path).map_err(|e| e.to_string())
}

fn current(store: &KeyStore) -> Result<&Account, String> {
    store
        .current()
        .ok_or_else(|| "not logged in: run `fugue account login NAME` first".to_owned())
}

fn passphrase_if(encrypted: bool) -> Result<Option<String>, String> {
    encrypted
        .then(|| secret("FUGUE_PASSPHRASE", "Key store passphrase: "))
        .transpose()
}

fn restore_session(store: &KeyStore) -> Result<(Session, Option<String>), String> {
    let account = current(store)?;
    let pass = passphrase_if(account.encrypted)?;
    let session = account
        .session(pass.as_deref())
        .map_err(|e| e.to_string())?;
    Ok((session, pass))
}

/// Chat on the current account's home server, or on the server of `--on`.
async fn chat(opts: &ChatOpts) -> Result<Chat, String> {
    let store = open_store(&opts.client)?;
    let (session, _) = restore_session(&store)?;
    let mut chat = match &opts.on {
        None => session.chat(),
        Some(server) => {
            let url = federation::server_url(server);
            let foreign = current(&store)?
                .foreign_session(&url)
                .map_err(e)?
                .ok_or_else(|| {
                    format!("not signed in on {url}: run `fugue federation login {server}` first")
                })?;
            let domain = server_domain(foreign.client()).await?;
            session.chat_on(&foreign, domain)
        }
    };
    for (domain, client) in homes(opts)? {
        chat = chat.with_home_server(domain, client);
    }
    Ok(chat)
}

/// Chat on the server at `base` (a URL): the home server, or one signed in on with
/// `fugue federation login`.
async fn chat_at(opts: &ClientOpts, base: &str) -> Result<Chat, String> {
    let store = open_store(opts)?;
    let (session, _) = restore_session(&store)?;
    let base = base.trim_end_matches('/');
    if session.client().base_url().trim_end_matches('/') == base {
        return Ok(session.chat());
    }
    let foreign = current(&store)?
        .foreign_session(base)
        .map_err(e)?
        .ok_or_else(|| format!("not signed in on {base}: run `fugue federation login` first"))?;
    let domain = server_domain(foreign.client()).await?;
    Ok(session.chat_on(&foreign, domain))
}

/// The home servers named by `--home DOMAIN=URL`.
fn homes(opts: &ChatOpts) -> Result<Vec<(fugue_proto::DomainName, fugue_client::Client)>, String> {
    let mut homes = Vec::new();
    for home in &opts.homes {
        let (domain, url) = home
            .split_once('=')
            .ok_or_else(|| format!("--home {home}: expected DOMAIN=URL"))?;
        let domain = domain
            .parse()
            .map_err(|err| format!("--home {home}: {err}"))?;
        homes.push((domain, fugue_client::Client::new(url).map_err(e)?));
    }
    Ok(homes)
}

/// The domain a server's current certificate names: what messages sent there are signed
/// for (a server naming another domain would refuse them itself).
async fn server_domain(client: &fugue_client::Client) -> Result<fugue_proto::DomainName, String> {
    fugue_client::server_domain(client).await.map_err(e)
}

/// An SDK error as the line `main` prints.
fn e(err: fugue_client::Error) -> String {
    err.to_string()
}

pub(crate) fn date(unix: u64) -> String {
    // Days since the epoch → civil date (Howard Hinnant's algorithm), to avoid a time crate.
    let days = (unix / 86_400) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let secs = unix % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60
    )
}

pub async fn run(cmd: ClientCommand) -> Result<(), String> {
    match cmd {
        ClientCommand::Account { opts, cmd } => account::run(opts, cmd).await,
        ClientCommand::Sessions { opts, cmd } => sessions::run(opts, cmd).await,
        ClientCommand::Certs { opts, cmd } => certs::run(opts, cmd).await,
        ClientCommand::Keys { opts, cmd } => keys::run(opts, cmd).await,
        ClientCommand::Events {
            opts,
            json,
            no_chat,
        } => events::run(opts, json, !no_chat).await,
        ClientCommand::Guild { opts, cmd } => guild::run(opts, cmd).await,
        ClientCommand::Channel { opts, cmd } => channel::run(opts, cmd).await,
        ClientCommand::Role { opts, cmd } => role::run(opts, cmd).await,
        ClientCommand::Chat { opts, args } => converse::run(opts, args).await,
        ClientCommand::Dm { opts, args } => conversations::dm(opts, args).await,
        ClientCommand::Dms { opts, cmd } => conversations::dms(opts, cmd).await,
        ClientCommand::Group { opts, cmd } => conversations::group(opts, cmd).await,
        ClientCommand::Join { opts, channel } => e2ee::join(opts, channel).await,
        ClientCommand::Requests { opts, cmd } => e2ee::requests(opts, cmd).await,
        ClientCommand::Devices { opts, channel } => e2ee::devices(opts, channel).await,
        ClientCommand::Send { opts, args } => messages::send(opts, args).await,
        ClientCommand::Read { opts, args } => messages::read(opts, args).await,
        ClientCommand::Edit { opts, args } => messages::edit(opts, args).await,
        ClientCommand::Versions { opts, args } => messages::versions(opts, args).await,
        ClientCommand::Delete { opts, args } => messages::delete(opts, args).await,
        ClientCommand::React { opts, args } => community::react(opts, args).await,
        ClientCommand::Reactions { opts, args } => community::reactions(opts, args).await,
        ClientCommand::Pin { opts, args } => community::pin(opts, args).await,
        ClientCommand::Pins { opts, args } => community::pins(opts, args).await,
        ClientCommand::Unread { opts, args } => community::unread(opts, args).await,
        ClientCommand::MarkRead { opts, args } => community::mark_read(opts, args).await,
        ClientCommand::Status { opts, args } => community::status(opts, args).await,
        ClientCommand::Presence { opts, args } => community::presence(opts, args).await,
        ClientCommand::Profile { opts, fid, cmd } => community::profile(opts, fid, cmd).await,
        ClientCommand::Upload { opts, args } => media::upload(opts, args).await,
        ClientCommand::Download { opts, args } => media::download(opts, args).await,
        ClientCommand::Resources { opts, cmd } => media::run(opts, cmd).await,
        ClientCommand::Services { opts, cmd } => services::run(opts, cmd).await,
        ClientCommand::Federation { opts, cmd } => federation::run(opts, cmd).await,
        ClientCommand::Migrate { opts, cmd } => migrate::run(opts, cmd).await,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_are_rendered_in_utc() {
        assert_eq!(super::date(0), "1970-01-01 00:00 UTC");
        assert_eq!(super::date(1_700_000_000), "2023-11-14 22:13 UTC");
        assert_eq!(super::date(951_782_400), "2000-02-29 00:00 UTC");
    }
}
