//! `fugue`: the home server (`fugue serve`), its administration, and a command-line client.

mod client_cmds;
mod serve;
mod settings;
mod terminal;

use std::io::IsTerminal;

use clap::{Parser, Subcommand};

use crate::settings::ServeArgs;

#[derive(Parser)]
#[command(
    name = "fugue",
    version,
    about = "A lean polyproto home server and client"
)]
struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true, env = "FUGUE_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the home server (zero configuration: domain localhost on 127.0.0.1:3000).
    Serve(ServeArgs),
    /// Configuration helpers.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Server administration (works on the database directly; the server may be running).
    Admin {
        #[command(flatten)]
        settings: ServeArgs,
        #[command(subcommand)]
        command: AdminCmd,
    },
    #[command(flatten)]
    Client(client_cmds::ClientCommand),
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Print a documented example configuration with every key and its default.
    Example,
}

#[derive(Subcommand)]
enum AdminCmd {
    /// Invite codes for invite-only registration.
    #[command(subcommand)]
    Invite(InviteCmd),
    /// Make an account a server administrator (or take that away with --revoke).
    Promote {
        local_name: String,
        #[arg(long)]
        revoke: bool,
    },
}

#[derive(Subcommand)]
enum InviteCmd {
    /// Create an invite code and print it.
    Create {
        /// How many registrations the code allows.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// Days until the code expires (default: never).
        #[arg(long)]
        expires_in_days: Option<u64>,
    },
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tower_http=warn"));
    // Colour codes only for a person at a terminal: journald, files and pipes get plain text.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init()
    } else {
        builder.init()
    }
}

async fn admin(settings: ServeArgs, command: AdminCmd) -> Result<(), String> {
    let settings = settings::load(&settings)?;
    let store = serve::open_store(&settings).await?;
    let now = fugue_server::clock::unix_now();
    match command {
        AdminCmd::Invite(InviteCmd::Create {
            uses,
            expires_in_days,
        }) => {
            let expires = expires_in_days.map(|d| now + d * 86_400);
            let code = fugue_server::sessions::create_invite(&store, uses, expires, now)
                .await
                .map_err(|e| e.to_string())?;
            println!("{code}");
        }
        AdminCmd::Promote { local_name, revoke } => {
            let name = local_name.to_ascii_lowercase();
            if !store
                .set_admin(&name, !revoke)
                .await
                .map_err(|e| e.to_string())?
            {
                return Err(format!("no account named {name}"));
            }
            println!(
                "{name} is {}an administrator",
                if revoke { "no longer " } else { "" }
            );
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => {
            init_logging(cli.log_json);
            match settings::load(&args) {
                Ok(s) => serve::run(s).await,
                Err(e) => Err(e),
            }
        }
        Command::Config(ConfigCmd::Example) => {
            print!("{}", settings::EXAMPLE);
            Ok(())
        }
        Command::Admin { settings, command } => admin(settings, command).await,
        Command::Client(cmd) => client_cmds::run(cmd).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // Errors quote servers (problem details, close reasons).
            eprintln!("error: {}", terminal::printable(&e));
            std::process::ExitCode::FAILURE
        }
    }
}
