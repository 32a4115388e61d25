//! `fugue serve`: opens the store, loads or creates the server key, serves until a signal.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rand_core::OsRng;

use fugue_server::{KeySink, Server};
use fugue_store::{SqliteSync, Store};

use crate::settings::{Database, Settings};

/// The server's identity key on disk, PKCS#8 PEM, mode 0600.
pub struct KeyFile(pub PathBuf);

impl KeyFile {
    /// Loads the key, creating it on first start. Refuses a key file others can read.
    pub fn load_or_create(&self) -> Result<SigningKey, String> {
        let path = &self.0;
        match fs::metadata(path) {
            Ok(meta) => {
                let mode = meta.permissions().mode();
                if mode & 0o077 != 0 {
                    return Err(format!(
                        "{} is readable by other users (mode {:o}); run `chmod 600 {}`",
                        path.display(),
                        mode & 0o777,
                        path.display()
                    ));
                }
                let pem = fs::read_to_string(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                SigningKey::from_pkcs8_pem(&pem)
                    .map_err(|e| format!("{} is not an Ed25519 PKCS#8 key: {e}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = SigningKey::generate(&mut OsRng);
                self.persist(&key)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                tracing::info!(path = %path.display(), "created a new server key");
                Ok(key)
            }
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }
}

impl KeySink for KeyFile {
    /// Writes atomically: a 0600 temporary file, fsync, rename, fsync of the directory.
    fn persist(&self, key: &SigningKey) -> std::io::Result<()> {
        let pem = key
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let dir = self
            .0
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = self.0.with_extension("pem.tmp");
        let _ = fs::remove_file(&tmp);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(pem.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, &self.0)?;
        fs::File::open(dir)?.sync_all()
    }
}

/// Makes `dir` readable by its owner only, at every start: it holds password hashes, TOTP
/// secrets and the server key. A directory created by someone else (systemd's
/// `StateDirectory=`, a container volume) is tightened with a warning; one we may not change
/// is refused.
fn private_dir(dir: &Path) -> Result<(), String> {
    if !dir.exists() {
        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    restrict(dir, 0o700)
}

/// Sets `path` to `mode` if others have any access to it, with a warning; a missing file is
/// fine (SQLite creates `-wal` and `-shm` with the database's own mode).
fn restrict(path: &Path, mode: u32) -> Result<(), String> {
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let current = meta.permissions().mode() & 0o777;
    if current & 0o077 == 0 {
        return Ok(());
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| {
        format!(
            "{} is accessible to other users (mode {current:o}) and cannot be restricted: {e}; run `chmod {mode:o} {}` as its owner",
            path.display(),
            path.display()
        )
    })?;
    tracing::warn!(
        path = %path.display(),
        was = %format_args!("{current:o}"),
        now = %format_args!("{mode:o}"),
        "was accessible to other users; restricted it"
    );
    Ok(())
}

/// The SQLite database and its `-wal`/`-shm` companions, owner-only.
fn restrict_database(path: &Path) -> Result<(), String> {
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        restrict(Path::new(&name), 0o600)?;
    }
    Ok(())
}

pub async fn open_store(settings: &Settings) -> Result<Store, String> {
    match &settings.database {
        Database::Sqlite { path, full_sync } => {
            if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                private_dir(dir)?;
            }
            // Before opening (the companions take the database's mode) and after.
            restrict_database(path)?;
            let sync = if *full_sync {
                SqliteSync::Full
            } else {
                SqliteSync::Normal
            };
            let store = Store::open_sqlite(path, sync)
                .await
                .map_err(|e| format!("SQLite {}: {e}", path.display()))?;
            restrict_database(path)?;
            Ok(store)
        }
        Database::Postgres(url) => Store::open_postgres(url, None, 16)
            .await
            .map_err(|e| format!("PostgreSQL: {e}")),
    }
}

fn describe(db: &Database) -> String {
    match db {
        Database::Sqlite { path, .. } => format!("SQLite at {}", path.display()),
        Database::Postgres(_) => "PostgreSQL".to_owned(),
    }
}

pub async fn run(settings: Settings) -> Result<(), String> {
    private_dir(&settings.data_dir)?;
    let key_file = KeyFile(settings.data_dir.join("server-key.pem"));
    let key = key_file.load_or_create()?;
    let store = open_store(&settings).await?;
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", settings.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let domain = settings.config.domain.clone();
    let registration = settings.config.registration;
    let public_url = settings.config.public_url.clone();
    let server = Server::new(settings.config, store, key, Arc::new(key_file))
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "Fugue is serving {domain} on http://{addr} (public URL {public_url}; {}; registration {registration:?})",
        describe(&settings.database)
    );
    server
        .serve(listener, shutdown_signal())
        .await
        .map_err(|e| e.to_string())?;
    println!("Fugue stopped.");
    Ok(())
}

/// The server's services for an administration command, without serving: it needs the
/// server key (to sign revocation notices), so the server must have started once.
pub async fn admin_server(settings: Settings) -> Result<Server, String> {
    let key_file = KeyFile(settings.data_dir.join("server-key.pem"));
    if !key_file.0.exists() {
        return Err(format!(
            "no server key at {}; start the server once (`fugue serve`) first",
            key_file.0.display()
        ));
    }
    let key = key_file.load_or_create()?;
    let store = open_store(&settings).await?;
    Server::new(settings.config, store, key, Arc::new(key_file))
        .await
        .map_err(|e| e.to_string())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_created_0600_and_refused_when_readable_by_others() {
        let dir = tempfile::tempdir().unwrap();
        let kf = KeyFile(dir.path().join("server-key.pem"));
        let key = kf.load_or_create().unwrap();
        let mode = fs::metadata(&kf.0).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(kf.load_or_create().unwrap().to_bytes(), key.to_bytes());
        fs::set_permissions(&kf.0, fs::Permissions::from_mode(0o644)).unwrap();
        let err = kf.load_or_create().unwrap_err();
        assert!(err.contains("readable by other users"), "{err}");
    }
}
