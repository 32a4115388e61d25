//! Helpers shared by the integration tests.

pub mod fakes;

use fugue_client::{Error, IdentityKey};
use fugue_proto::{ErrorCode, FederationId, SessionId, api};
use fugue_testkit::TestServer;

/// Asserts that `result` failed with `status` and problem code `code`.
#[track_caller]
pub fn assert_problem<T: std::fmt::Debug>(result: Result<T, Error>, status: u16, code: ErrorCode) {
    match result {
        Err(e) => {
            assert_eq!(e.status(), Some(status), "unexpected status: {e}");
            assert_eq!(e.code(), Some(code), "unexpected code: {e}");
        }
        Ok(v) => panic!("expected {status} {code:?}, got Ok({v:?})"),
    }
}

/// Reads a raw reqwest response as a problem and checks status, media type and code.
pub async fn assert_raw_problem(
    resp: reqwest::Response,
    status: u16,
    code: ErrorCode,
) -> fugue_proto::Problem {
    assert_eq!(resp.status().as_u16(), status, "status");
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(ct.as_deref(), Some("application/problem+json"));
    let problem: fugue_proto::Problem = resp.json().await.unwrap();
    assert_eq!(problem.error, code);
    assert_eq!(problem.status, status);
    problem
}

/// The URL of `path_and_query` on `server`, for raw requests.
pub fn url(server: &TestServer, path_and_query: &str) -> String {
    format!("{}{path_and_query}", server.url)
}

/// `DELETE /.p2/core/v1/session?session_id=` with an optional solution.
pub async fn delete_session(
    server: &TestServer,
    token: &str,
    target: &str,
    solution: Option<&str>,
) -> reqwest::Response {
    let mut request = server
        .client()
        .raw()
        .delete(format!(
            "{}{}?session_id={target}",
            server.url,
            api::delete_session::PATH
        ))
        .bearer_auth(token);
    if let Some(solution) = solution {
        request = request.header(api::SENSITIVE_HEADER, solution);
    }
    request.send().await.unwrap()
}

/// alpha.test and beta.test; beta resolves alpha.test to alpha.
pub async fn federated_pair() -> (TestServer, TestServer) {
    let alpha = TestServer::start_with(|c| c.domain = "alpha.test".parse().unwrap()).await;
    let alpha_url = alpha.url.clone();
    let beta = TestServer::start_with(move |c| {
        c.domain = "beta.test".parse().unwrap();
        c.federation.resolve.insert("alpha.test".into(), alpha_url);
    })
    .await;
    (alpha, beta)
}

/// Logs in `local_name` with `password` (and `totp`) as a new session with a fresh key.
pub async fn login_with(
    server: &TestServer,
    local_name: &str,
    password: &str,
    totp: Option<&str>,
    session_id: &str,
) -> fugue_client::Result<fugue_client::Session> {
    let sid: SessionId = session_id.parse().unwrap();
    let fid: FederationId = format!("{}@{}", local_name.to_ascii_lowercase(), server.domain)
        .parse()
        .unwrap();
    server
        .client()
        .login(
            local_name,
            password,
            totp,
            &IdentityKey::generate(),
            &fid,
            &sid,
        )
        .await
}

/// Seconds since the Unix epoch, the unit of every timestamp on the wire.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The TOTP code for the base32 `secret` at Unix time `at` (SHA-1, 6 digits, 30 s steps).
pub fn totp_code_at(secret: &str, at: u64) -> String {
    totp_rs::Builder::new()
        .with_secret(totp_rs::Secret::try_from_base32(secret).unwrap())
        .with_account_name("test")
        .build()
        .unwrap()
        .generate(at)
        .to_string()
}

/// A six-digit code that is none of the codes the server accepts around `at` (±1 step and a
/// margin), so it is wrong however the clock ticks during the test.
pub fn wrong_totp_code(secret: &str, at: u64) -> String {
    let near: Vec<String> = (0..=8)
        .map(|i| totp_code_at(secret, (at + 120).saturating_sub(i * 30)))
        .collect();
    (0..1_000_000u32)
        .map(|n| format!("{n:06}"))
        .find(|c| !near.contains(c))
        .unwrap()
}

/// Waits (at most 3 s) until at least 3 s remain in the current 30 s TOTP step, so a test
/// that spends the codes of steps t-1, t and t+1 in order does not straddle a boundary.
pub async fn wait_for_fresh_totp_step() {
    let into_step = unix_now() % 30;
    if into_step >= 27 {
        tokio::time::sleep(std::time::Duration::from_secs(30 - into_step)).await;
    }
}

/// The code of the step `steps` away from now (-1, 0 or +1 are accepted by the server).
pub fn totp_code_in(secret: &str, steps: i64) -> String {
    totp_code_at(secret, unix_now().saturating_add_signed(steps * 30))
}

/// Enrols and confirms TOTP for `session` (spending the code of the previous step); returns
/// the base32 secret.
pub async fn enrol_totp(session: &fugue_client::Session) -> String {
    let enrolment = session.totp_enroll(fugue_testkit::PASSWORD).await.unwrap();
    wait_for_fresh_totp_step().await;
    session
        .totp_confirm(&totp_code_in(&enrolment.secret, -1))
        .await
        .unwrap();
    enrolment.secret
}

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
