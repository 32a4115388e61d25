//! `fugue`: the home server (`fugue serve`), its administration, and a command-line client.

mod backup;
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
    /// Accounts: list, suspend, delete, reset passwords.
    #[command(subcommand)]
    Account(AccountCmd),
    /// Write a consistent copy of the server (SQLite database, server key, uploaded files)
    /// to a new directory, also while it runs; `fugue serve --data-dir DIR` starts from it.
    Backup {
        /// The directory to write (new or empty).
        dir: std::path::PathBuf,
    },
    /// Copy the whole database into another, empty one — SQLite to PostgreSQL or back —
    /// then start the server with `--database-url TO`. Stop the server first: what it
    /// writes during the copy may be missed. Uploaded files stay where they are.
    ConvertDb {
        /// The database to fill: `postgres://…` or `sqlite:PATH` (created when missing).
        #[arg(long)]
        to: String,
    },
}

#[derive(Subcommand)]
enum AccountCmd {
    /// Every account: name, created, admin, state, TOTP, live sessions.
    List,
    /// The account can no longer log in; its sessions end.
    Suspend { local_name: String },
    /// The account can log in again.
    Unsuspend { local_name: String },
    /// Delete the account for good (as the owner can): sessions end, certificates are
    /// revoked but stay published, the name can never be registered again.
    Delete { local_name: String },
    /// Set a new password (from FUGUE_PASSWORD or a prompt) and end the account's sessions.
    ResetPassword {
        local_name: String,
        /// Generate a random password and print it instead.
        #[arg(long)]
        generate: bool,
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
    let now = fugue_server::clock::unix_now();
    match command {
        AdminCmd::Account(cmd) => admin_account(settings, cmd, now).await,
        AdminCmd::Backup { dir } => {
            let written = backup::backup(&settings, &dir).await?;
            match &written.bucket {
                None => println!(
                    "backup in {}: database {} bytes, {} uploaded files, server key",
                    dir.display(),
                    written.database_bytes,
                    written.objects
                ),
                Some(bucket) => println!(
                    "backup in {}: database {} bytes, server key; uploaded files stay in bucket \
                     {bucket} (back it up with the object store's own means)",
                    dir.display(),
                    written.database_bytes,
                ),
            }
            Ok(())
        }
        AdminCmd::ConvertDb { to } => {
            let full_sync = match &settings.database {
                settings::Database::Sqlite { full_sync, .. } => *full_sync,
                settings::Database::Postgres(_) => true,
            };
            let target = settings::database(&to, full_sync)?;
            if target == settings.database {
                return Err("the destination is the server's own database".into());
            }
            let source = serve::open_store(&settings).await?;
            let dest = serve::open_store(&settings::Settings {
                database: target,
                ..settings.clone()
            })
            .await?;
            let counts = source
                .copy_into(&dest, |table, rows| {
                    if rows > 0 {
                        println!("{table}: {rows} rows");
                    }
                })
                .await
                .map_err(|e| format!("converting: {e}"))?;
            let total: u64 = counts.iter().map(|(_, n)| n).sum();
            println!(
                "copied {total} rows in {} tables; start the server with --database-url {to}",
                counts.len()
            );
            Ok(())
        }
        // Through the account rules: a deleted (retired) account cannot be promoted.
        AdminCmd::Promote { local_name, revoke } => {
            let server = serve::admin_server(settings).await?;
            let name = server
                .sessions()
                .set_admin(&local_name, !revoke)
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "{name} is {}an administrator",
                if revoke { "no longer " } else { "" }
            );
            server.stop().await;
            Ok(())
        }
        AdminCmd::Invite(InviteCmd::Create {
            uses,
            expires_in_days,
        }) => {
            let store = serve::open_store(&settings).await?;
            let expires = expires_in_days.map(|d| now + d * 86_400);
            let code = fugue_server::sessions::create_invite(&store, uses, expires, now)
                .await
                .map_err(|e| e.to_string())?;
            println!("{code}");
            Ok(())
        }
    }
}

/// Account administration goes through the server's account rules: ending a session revokes
/// its certificate and is announced (on the cluster bus, when there is one).
async fn admin_account(
    settings: settings::Settings,
    cmd: AccountCmd,
    now: u64,
) -> Result<(), String> {
    let server = serve::admin_server(settings).await?;
    let accounts = server.sessions();
    let err = |e: fugue_server::sessions::Error| e.to_string();
    match cmd {
        AccountCmd::List => {
            use fugue_server::sessions::AccountState;
            println!("NAME\tCREATED\tADMIN\tSTATE\tTOTP\tSESSIONS");
            for a in accounts.accounts(now).await.map_err(err)? {
                let state = match a.state {
                    AccountState::Active => "active",
                    AccountState::Suspended => "suspended",
                    AccountState::Deleted => "deleted",
                };
                println!(
                    "{}\t{}\t{}\t{state}\t{}\t{}",
                    a.local_name,
                    client_cmds::date(a.created_at),
                    if a.is_admin { "yes" } else { "no" },
                    if a.totp { "on" } else { "off" },
                    a.sessions
                );
            }
        }
        AccountCmd::Suspend { local_name } => {
            let ended = accounts.suspend(&local_name, now).await.map_err(err)?;
            println!("suspended {local_name}; {ended} session(s) ended");
        }
        AccountCmd::Unsuspend { local_name } => {
            accounts.unsuspend(&local_name).await.map_err(err)?;
            println!("{local_name} can log in again");
        }
        AccountCmd::Delete { local_name } => {
            accounts
                .delete_account_by_name(&local_name, now)
                .await
                .map_err(err)?;
            println!("deleted {local_name}; the name stays retired");
        }
        AccountCmd::ResetPassword {
            local_name,
            generate,
        } => {
            let password = if generate {
                fugue_server::sessions::generate_password()
            } else {
                client_cmds::secret("FUGUE_PASSWORD", "New password: ")?
            };
            let ended = accounts
                .reset_password(&local_name, password.clone(), now)
                .await
                .map_err(err)?;
            if generate {
                println!("{password}");
            }
            eprintln!("password of {local_name} reset; {ended} session(s) ended");
        }
    }
    // The announcements of ended sessions must leave before the process does.
    server.stop().await;
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
