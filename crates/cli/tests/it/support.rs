//! Helpers of the binary's tests: the `fugue` binary as a child process. The helpers the
//! server's tests share with these live in `fugue-testkit`.

pub use fugue_testkit::fakes;
pub use fugue_testkit::totp::{totp_code_in, wait_for_fresh_totp_step};
pub use fugue_testkit::{assert_problem, federated_pair, login_with};

/// The `fugue` binary under test, with every `FUGUE_*` variable, `RUST_LOG` and
/// `XDG_CONFIG_HOME` of the test environment removed and stdin closed, so only what a test
/// sets explicitly counts.
pub fn fugue() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_fugue"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("FUGUE_") {
            cmd.env_remove(&key);
        }
    }
    cmd.env_remove("RUST_LOG")
        .env_remove("XDG_CONFIG_HOME")
        .stdin(std::process::Stdio::null());
    cmd
}

/// [`fugue`] as a client of `server`, keeping its keys in `keystore`, with the test password.
pub fn fugue_as_client(server: &str, keystore: &std::path::Path) -> std::process::Command {
    let mut cmd = fugue();
    cmd.env("FUGUE_SERVER", server)
        .env("FUGUE_KEYSTORE", keystore)
        .env("FUGUE_PASSWORD", fugue_testkit::PASSWORD);
    cmd
}

/// Runs blocking process I/O off the runtime, which also serves the in-process servers.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}
