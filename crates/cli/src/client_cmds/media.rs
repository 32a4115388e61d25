//! `fugue upload`, `fugue download` and `fugue resources`: files stored on your home server
//! (RawR), who may read them, and how much room they take.

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};

use fugue_proto::chat::split_attachment_url;
use fugue_proto::rawr::{AccessEntry, AccessProperties, ResourceId, ResourceSort};

use super::{ClientOpts, chat_at, e, open_store, restore_session};
use crate::terminal::out;

/// Who may read a resource, as flags.
#[derive(Args, Clone, Default)]
pub struct AccessArgs {
    /// Anyone may read it, without an account.
    #[arg(long, conflicts_with = "private")]
    public: bool,
    /// Only you and those on --allow may read it (default: anyone with a session here).
    #[arg(long)]
    private: bool,
    /// An actor (name@domain) or a whole server (domain) that may read it; repeatable.
    #[arg(long = "allow", value_name = "FID_OR_DOMAIN")]
    allow: Vec<String>,
    /// An actor or server that may not, whatever else says so; repeatable.
    #[arg(long = "deny", value_name = "FID_OR_DOMAIN")]
    deny: Vec<String>,
}

impl AccessArgs {
    fn properties(&self) -> Result<AccessProperties, String> {
        let entries = |list: &[String]| -> Result<Vec<AccessEntry>, String> {
            list.iter().map(|s| s.parse()).collect()
        };
        AccessProperties {
            private: self.private,
            public: self.public,
            allowlist: entries(&self.allow)?,
            denylist: entries(&self.deny)?,
        }
        .normalized()
    }
}

#[derive(Args)]
pub struct UploadArgs {
    /// The file to upload.
    file: PathBuf,
    /// Its resource ID (default: derived from a random nonce and the file's hash).
    #[arg(long)]
    id: Option<String>,
    #[command(flatten)]
    access: AccessArgs,
}

#[derive(Args)]
pub struct DownloadArgs {
    /// The resource ID, or an attachment's URL (as `fugue read` shows it).
    rid: String,
    /// An attachment's thumbnail instead of the attachment.
    #[arg(long)]
    thumbnail: bool,
    /// Where to write it ("-": standard output; default: a file named after the ID in the
    /// current directory).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Read it from another server (its URL) instead of your home server, with no session:
    /// only public resources.
    #[arg(long)]
    from: Option<String>,
}

#[derive(Subcommand)]
pub enum ResourcesCmd {
    /// Your resources: ID, size, type, who may read it.
    List {
        /// At most this many.
        #[arg(long)]
        limit: Option<u64>,
        /// size-asc, size-desc, newest (default) or oldest.
        #[arg(long, default_value = "newest", value_parser = parse_sort)]
        sort: ResourceSort,
    },
    /// One resource's size, type and access.
    Info { rid: String },
    /// Replace who may read a resource of yours.
    Share {
        rid: String,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// Delete a resource of yours.
    Delete { rid: String },
    /// How much of your storage you use.
    Usage,
}

fn parse_sort(s: &str) -> Result<ResourceSort, String> {
    match s {
        "size-asc" => Ok(ResourceSort::SizeAsc),
        "size-desc" => Ok(ResourceSort::SizeDesc),
        "newest" => Ok(ResourceSort::NewestFirst),
        "oldest" => Ok(ResourceSort::OldestFirst),
        other => Err(format!(
            "expected size-asc, size-desc, newest or oldest, not {other:?}"
        )),
    }
}

fn rid(s: &str) -> Result<ResourceId, String> {
    s.parse().map_err(|err| format!("resource ID {s:?}: {err}"))
}

/// A fresh resource ID for `path`: the hash of a random nonce and the file's hash (core
/// §7.3.1), so the same file uploaded twice gets two IDs that reveal nothing of it.
fn derive_rid(path: &Path) -> Result<ResourceId, String> {
    let mut file = std::fs::File::open(path).map_err(|err| format!("{}: {err}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|err| format!("{}: {err}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let mut nonce = [0u8; 32];
    OsRng.fill_bytes(&mut nonce);
    Ok(ResourceId::derive(&nonce, &hasher.finalize().into()))
}

fn describe(access: &AccessProperties) -> String {
    let who = if access.public {
        "public".to_owned()
    } else if access.private {
        let allowed: Vec<String> = access.allowlist.iter().map(ToString::to_string).collect();
        if allowed.is_empty() {
            "private".to_owned()
        } else {
            format!("private, allowed: {}", allowed.join(", "))
        }
    } else {
        "sessions of this server".to_owned()
    };
    if access.denylist.is_empty() || access.public {
        who
    } else {
        let denied: Vec<String> = access.denylist.iter().map(ToString::to_string).collect();
        format!("{who}; denied: {}", denied.join(", "))
    }
}

/// One resource as a line: ID, size, type, who may read it (tab-separated).
fn line(info: &fugue_proto::rawr::ResourceInformation) -> String {
    format!(
        "{}\t{} bytes\t{}\t{}",
        info.resource_id,
        info.size,
        info.content_type.as_deref().unwrap_or("?"),
        describe(&info.access)
    )
}

pub async fn upload(opts: ClientOpts, args: UploadArgs) -> Result<(), String> {
    let store = open_store(&opts)?;
    let (session, _) = restore_session(&store)?;
    let access = args.access.properties()?;
    let rid = match &args.id {
        Some(id) => rid(id)?,
        None => derive_rid(&args.file)?,
    };
    session
        .upload_file(&rid, &access, &args.file)
        .await
        .map_err(e)?;
    out!(
        "{}",
        line(&session.resource_info(rid.as_str()).await.map_err(e)?)
    );
    eprintln!(
        "{}{}",
        session.client().base_url(),
        fugue_proto::api::get_resource::path(rid.as_str())
    );
    Ok(())
}

pub async fn download(opts: ClientOpts, args: DownloadArgs) -> Result<(), String> {
    if let Some((base, rid)) = split_attachment_url(&args.rid) {
        return download_attachment(&opts, &args, base, rid).await;
    }
    if args.thumbnail {
        return Err("only attachments have thumbnails: give an attachment's URL".into());
    }
    let path = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.rid));
    save(&path, async |sink| match &args.from {
        Some(url) => {
            let client = fugue_client::Client::new(url)?;
            client.download_resource(None, &args.rid, sink).await
        }
        None => {
            let store = open_store(&opts).map_err(fugue_client::Error::Transport)?;
            let (session, _) = restore_session(&store).map_err(fugue_client::Error::Transport)?;
            session.download_resource(&args.rid, sink).await
        }
    })
    .await
}

/// `fugue download URL` of an attachment: from the server in the URL (home, or one signed
/// in on), saved under its file name unless `-o` says otherwise.
async fn download_attachment(
    opts: &ClientOpts,
    args: &DownloadArgs,
    base: &str,
    rid: &str,
) -> Result<(), String> {
    let chat = chat_at(opts, base).await?;
    let path = match &args.output {
        Some(path) => path.clone(),
        None => {
            let a = chat.attachment(rid).await.map_err(e)?;
            let name = a
                .filename
                .filter(|n| !n.starts_with('.') && Path::new(n).file_name() == Some(n.as_ref()))
                .unwrap_or(a.id);
            PathBuf::from(if args.thumbnail {
                format!("thumbnail-{name}")
            } else {
                name
            })
        }
    };
    save(&path, async |sink| {
        chat.download_attachment(rid, args.thumbnail, sink).await
    })
    .await
}

/// Writes what `fetch` downloads to `path` ("-": standard output): a new file only, never
/// overwriting one, and none left behind when the download fails.
async fn save(
    path: &Path,
    fetch: impl AsyncFnOnce(
        &mut Box<dyn tokio::io::AsyncWrite + Unpin>,
    ) -> fugue_client::Result<fugue_client::Downloaded>,
) -> Result<(), String> {
    let to_stdout = path == Path::new("-");
    let mut sink: Box<dyn tokio::io::AsyncWrite + Unpin> = if to_stdout {
        Box::new(tokio::io::stdout())
    } else {
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .await
            .map_err(|err| format!("{}: {err}", path.display()))?;
        Box::new(file)
    };
    match fetch(&mut sink).await {
        Ok(got) if !to_stdout => {
            eprintln!("{}: {} bytes", path.display(), got.bytes);
            Ok(())
        }
        Ok(_) => Ok(()),
        Err(err) => {
            drop(sink);
            if !to_stdout {
                let _ = std::fs::remove_file(path);
            }
            Err(e(err))
        }
    }
}

pub async fn run(opts: ClientOpts, cmd: ResourcesCmd) -> Result<(), String> {
    let store = open_store(&opts)?;
    let (session, _) = restore_session(&store)?;
    match cmd {
        ResourcesCmd::List { limit, sort } => {
            let list = session.resources(limit, sort, false).await.map_err(e)?;
            if list.is_empty() {
                out!("no resources");
            }
            for entry in list {
                out!("{}", line(&entry.resource_information));
            }
        }
        ResourcesCmd::Info { rid } => {
            out!("{}", line(&session.resource_info(&rid).await.map_err(e)?));
        }
        ResourcesCmd::Share { rid: id, access } => {
            let access = access.properties()?;
            session
                .set_resource_access(&rid(&id)?, &access)
                .await
                .map_err(e)?;
            out!("{id}: {}", describe(&access));
        }
        ResourcesCmd::Delete { rid: id } => {
            session.delete_resource(&rid(&id)?).await.map_err(e)?;
            out!("deleted {id}");
        }
        ResourcesCmd::Usage => {
            let usage = session.resource_usage().await.map_err(e)?;
            out!("{} of {} bytes used", usage.used, usage.limit);
        }
    }
    Ok(())
}
