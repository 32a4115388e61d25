//! A real S3-compatible object store for tests: a single-node Garage (the `garage` binary,
//! `cargo install garage --locked`; `.ci/run` installs it) on free loopback ports, with one
//! bucket and key, in a temporary directory. Killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand_core::{OsRng, RngCore};

use fugue_server::config;

use crate::free_port;

/// The bucket, region and key every test Garage has.
pub const BUCKET: &str = "fugue";
pub const REGION: &str = "garage";
pub const ACCESS_KEY: &str = "GK0123456789abcdef01234567";
pub const SECRET_KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

pub struct Garage {
    process: Child,
    _dir: tempfile::TempDir,
    /// Its S3 API, `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

/// Whether a `garage` binary is there to start (benchmarks skip what needs one).
pub fn available() -> bool {
    find_garage().is_some()
}

/// `TEST_GARAGE`, or `garage` on the `PATH` or in Cargo's bin directory.
fn garage_bin() -> PathBuf {
    find_garage().expect(
        "garage not found: `cargo install garage --locked` (.ci/run does) or set TEST_GARAGE",
    )
}

fn find_garage() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TEST_GARAGE").filter(|p| !p.is_empty()) {
        return Some(path.into());
    }
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|home| home.join("bin"));
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(cargo_bin)
        .map(|dir| dir.join("garage"))
        .find(|p| p.is_file())
}

impl Garage {
    /// Starts Garage and waits until its bucket answers.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (s3, rpc) = (free_port(), free_port());
        let mut secret = [0u8; 32];
        OsRng.fill_bytes(&mut secret);
        let secret: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        let config = format!(
            "metadata_dir = {meta:?}\n\
             data_dir = {data:?}\n\
             db_engine = \"sqlite\"\n\
             replication_factor = 1\n\
             rpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
             rpc_public_addr = \"127.0.0.1:{rpc}\"\n\
             rpc_secret = \"{secret}\"\n\
             [s3_api]\n\
             s3_region = \"{REGION}\"\n\
             api_bind_addr = \"127.0.0.1:{s3}\"\n\
             root_domain = \".s3.garage.localhost\"\n",
            meta = dir.path().join("meta"),
            data = dir.path().join("data"),
        );
        let path = dir.path().join("garage.toml");
        std::fs::write(&path, config).expect("garage.toml");
        let process = Command::new(garage_bin())
            .arg("-c")
            .arg(&path)
            .args(["server", "--single-node", "--default-bucket"])
            .env("GARAGE_DEFAULT_ACCESS_KEY", ACCESS_KEY)
            .env("GARAGE_DEFAULT_SECRET_KEY", SECRET_KEY)
            .env("GARAGE_DEFAULT_BUCKET", BUCKET)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("garage starts");
        let garage = Self {
            process,
            _dir: dir,
            endpoint: format!("http://127.0.0.1:{s3}"),
        };
        let mut media = config::Media::default();
        garage.configure(&mut media);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match fugue_server::media::Objects::open(&media).await {
                Ok(_) => return garage,
                Err(e) if Instant::now() > deadline => panic!("garage did not come up: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Points `media` at this Garage's bucket.
    pub fn configure(&self, media: &mut config::Media) {
        media.s3_endpoint = Some(self.endpoint.clone());
        media.s3_bucket = Some(BUCKET.into());
        media.s3_region = REGION.into();
        media.s3_access_key = Some(ACCESS_KEY.into());
        media.s3_secret_key = Some(SECRET_KEY.into());
        media.s3_path_style = true;
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}
