//! `fugue admin backup DIR`: a consistent copy of a server — running or not — that
//! `fugue serve --data-dir DIR` starts from.
//!
//! What it holds: the SQLite database as of one moment (`VACUUM INTO`), the server key, and
//! every resource object the database names. Objects never change once written, so they are
//! hard links where the backup is on the same file system (instant, and no second copy of
//! the bytes until the original is deleted), copies elsewhere. The order closes the race
//! with uploads and deletions going on: objects are linked first (a link keeps an object
//! whose resource is deleted later), then the database is copied, then objects that
//! appeared meanwhile are linked too; finally the copy is opened and every object it names
//! is checked to be there.

use std::path::{Path, PathBuf};

use fugue_store::{SqliteSync, Store};

use crate::settings::{Database, Settings};

/// What a backup wrote.
pub struct Written {
    pub objects: usize,
    pub database_bytes: u64,
    /// The bucket that keeps the uploaded files, when they are in an object store (it is
    /// backed up by the store's own means, not here).
    pub bucket: Option<String>,
}

pub async fn backup(settings: &Settings, dest: &Path) -> Result<Written, String> {
    let Database::Sqlite { .. } = &settings.database else {
        return Err(
            "the database is PostgreSQL: back it up with pg_dump, and copy the media directory"
                .into(),
        );
    };
    let key = settings.data_dir.join("server-key.pem");
    if !key.exists() {
        return Err(format!("no server key at {}", key.display()));
    }
    if dest.exists() && std::fs::read_dir(dest).map_err(io(dest))?.next().is_some() {
        return Err(format!("{} exists and is not empty", dest.display()));
    }
    create_private_dir(dest)?;
    // Files in an object store stay there: the store keeps its own copies.
    let bucket = settings
        .config
        .media
        .s3_bucket
        .clone()
        .filter(|_| settings.config.media.s3_endpoint.is_some());
    let media = settings
        .config
        .media
        .dir
        .clone()
        .filter(|_| bucket.is_none());
    let media_dest = dest.join("media");
    if let Some(media) = &media {
        link_objects(media, &media_dest)?;
    }
    let store = crate::serve::open_store(settings).await?;
    let db_dest = dest.join("fugue.db");
    store
        .snapshot_to(&db_dest)
        .await
        .map_err(|e| format!("copying the database: {e}"))?;
    if let Some(media) = &media {
        link_objects(media, &media_dest)?;
    }
    std::fs::copy(&key, dest.join("server-key.pem")).map_err(io(&key))?;
    restrict(&dest.join("server-key.pem"))?;
    restrict(&db_dest)?;

    // The copy opens, and names no object it lacks.
    let copy = Store::open_sqlite(&db_dest, SqliteSync::Full)
        .await
        .map_err(|e| format!("the copy does not open: {e}"))?;
    let keys = match bucket {
        Some(_) => Vec::new(),
        None => copy
            .object_keys()
            .await
            .map_err(|e| format!("reading the copy: {e}"))?,
    };
    let missing: Vec<&String> = keys
        .iter()
        .filter(|k| !object_path(&media_dest, k).exists())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "{} of {} objects the database names are missing (first: {}); was a resource uploaded and deleted while the backup ran? Run it again.",
            missing.len(),
            keys.len(),
            missing[0]
        ));
    }
    let database_bytes = std::fs::metadata(&db_dest).map_err(io(&db_dest))?.len();
    Ok(Written {
        objects: keys.len(),
        database_bytes,
        bucket,
    })
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> String + '_ {
    move |e| format!("{}: {e}", path.display())
}

fn object_path(media: &Path, key: &str) -> PathBuf {
    media
        .join("objects")
        .join(key.get(..2).unwrap_or("__"))
        .join(key)
}

/// Links (or copies) every object of `media` not yet in `dest`.
fn link_objects(media: &Path, dest: &Path) -> Result<(), String> {
    let objects = media.join("objects");
    if !objects.exists() {
        return Ok(());
    }
    for shard in std::fs::read_dir(&objects).map_err(io(&objects))? {
        let shard = shard.map_err(io(&objects))?;
        if !shard.file_type().map_err(io(&objects))?.is_dir() {
            continue;
        }
        let target_dir = dest.join("objects").join(shard.file_name());
        std::fs::create_dir_all(&target_dir).map_err(io(&target_dir))?;
        for entry in std::fs::read_dir(shard.path()).map_err(io(&objects))? {
            let entry = entry.map_err(io(&objects))?;
            let target = target_dir.join(entry.file_name());
            if target.exists() {
                continue;
            }
            let source = entry.path();
            match std::fs::hard_link(&source, &target) {
                Ok(()) => {}
                // Deleted since it was listed: its resource is gone too.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                // Another file system: a copy.
                Err(_) => match std::fs::copy(&source, &target) {
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(format!("{}: {e}", source.display())),
                },
            }
        }
    }
    Ok(())
}

fn create_private_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))
}

fn restrict(file: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).map_err(io(file))
}
