//! The real `fugue` binary as a child process: zero-configuration start, key file checks,
//! durability across SIGKILL, graceful SIGTERM, `config example`, `admin invite create` and
//! the command-line client end to end.
//!
//! Every child is owned by a [`Child`] guard that kills it on drop, so no process outlives
//! its test, even a failing one.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output};
use std::time::{Duration, Instant};

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use fugue_client::{Client, IdentityKey};
use fugue_proto::api;
use fugue_proto::certs::IdCert;
use fugue_proto::{ErrorCode, FederationId, SessionId};
use fugue_testkit::PASSWORD;
use fugue_testkit::ws;

use crate::support::{assert_problem, fugue};

use fugue_testkit::free_port;

fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[track_caller]
fn assert_mode(path: &Path, expected: u32) {
    let actual = mode(path);
    assert_eq!(
        actual,
        expected,
        "{} has mode {actual:o}, expected {expected:o}",
        path.display()
    );
}

/// A running `fugue` process whose stdout and stderr go to files; killed on drop.
struct Child {
    process: std::process::Child,
    url: String,
    logs: tempfile::TempDir,
}

impl Child {
    /// Starts `fugue serve` on a free port in `cwd` with `args` added.
    fn serve(cwd: &Path, args: &[&str]) -> Self {
        Self::serve_on("127.0.0.1", cwd, args)
    }

    /// `host` is an IP literal as it appears in a URL (`127.0.0.1`, `[::1]`).
    fn serve_on(host: &str, cwd: &Path, args: &[&str]) -> Self {
        Self::serve_with(host, cwd, args, &[])
    }

    /// [`Child::serve_on`] with environment variables `envs` set.
    fn serve_with(host: &str, cwd: &Path, args: &[&str], envs: &[(&str, &str)]) -> Self {
        let port = free_port();
        let logs = tempfile::tempdir().unwrap();
        let listen = format!("{host}:{port}");
        let process = fugue()
            .arg("serve")
            .args(["--listen", &listen])
            .args(args)
            .envs(envs.iter().copied())
            .current_dir(cwd)
            .stdout(fs::File::create(logs.path().join("stdout")).unwrap())
            .stderr(fs::File::create(logs.path().join("stderr")).unwrap())
            .spawn()
            .unwrap();
        Self {
            process,
            url: format!("http://{listen}"),
            logs,
        }
    }

    /// Starts `fugue serve --data-dir DATA_DIR` (cwd: the data dir) and waits until it serves.
    async fn serve_ready(data_dir: &Path, args: &[&str]) -> Self {
        let mut all = vec!["--data-dir", data_dir.to_str().unwrap()];
        all.extend_from_slice(args);
        let mut child = Self::serve(data_dir, &all);
        child.wait_ready().await;
        child
    }

    fn pid(&self) -> String {
        self.process.id().to_string()
    }

    fn stdout(&self) -> String {
        fs::read_to_string(self.logs.path().join("stdout")).unwrap()
    }

    fn stderr(&self) -> String {
        fs::read_to_string(self.logs.path().join("stderr")).unwrap()
    }

    fn client(&self) -> Client {
        Client::new(&self.url).unwrap()
    }

    /// Polls `GET /health` until the server answers (at most 20 s).
    async fn wait_ready(&mut self) {
        let client = self.client();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.process.try_wait().unwrap() {
                panic!(
                    "fugue exited with {status} before serving; stderr:\n{}",
                    self.stderr()
                );
            }
            if let Ok(health) = client.health().await {
                assert_eq!(health.status, "ok");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "fugue did not serve within 20 s; stderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the process to exit on its own (at most `limit`).
    async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.process.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "fugue still runs after {limit:?}; stderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no chance to flush or clean up.
    fn kill_hard(&mut self) {
        self.process.kill().unwrap();
        self.process.wait().unwrap();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // Kill by PID if still running; reaping avoids a zombie. Errors mean it is gone.
        if let Ok(None) = self.process.try_wait() {
            let _ = self.process.kill();
        }
        let _ = self.process.wait();
    }
}

/// Runs a one-shot `fugue` command (bounded by the commands themselves: each talks to a
/// local server with the client's 30 s timeout).
fn run(args: &[&str], envs: &[(&str, &str)]) -> Output {
    fugue()
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .unwrap()
}

/// `name` registered on `client`'s server and logged in (session `laptop`).
async fn signed_up(client: &Client, name: &str) -> fugue_client::Session {
    client.register(name, PASSWORD, None, None).await.unwrap();
    login_as(client, name, PASSWORD, "laptop").await.unwrap()
}

/// [`run`] without environment, off the test's runtime threads.
async fn run_off(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args, &[])
    })
    .await
    .unwrap()
}

fn stdout_of(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// Asserts that a run failed, saying `words` on stderr.
#[track_caller]
fn assert_failure(output: &Output, words: &str) {
    assert!(!output.status.success(), "expected a failure");
    let err = stderr_of(output);
    assert!(err.contains(words), "{err}");
}

#[track_caller]
fn assert_success(output: &Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed: {}\nstderr:\n{}",
        output.status,
        stderr_of(output)
    );
    stdout_of(output)
}

#[tokio::test]
async fn a_zero_config_start_creates_a_private_data_dir_key_and_database() {
    let cwd = tempfile::tempdir().unwrap();
    let mut child = Child::serve(cwd.path(), &[]);
    child.wait_ready().await;

    let data: PathBuf = cwd.path().join("fugue-data");
    assert_mode(&data, 0o700);
    assert_mode(&data.join("server-key.pem"), 0o600);
    let pem = fs::read_to_string(data.join("server-key.pem")).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
    assert!(data.join("fugue.db").is_file());

    let out = child.stdout();
    assert!(
        out.contains(&child.url),
        "stdout does not name {}: {out}",
        child.url
    );
    assert!(out.contains("localhost"), "{out}");

    // localhost defaults: open registration, public URL from the listen address.
    let client = child.client();
    assert_eq!(
        client.well_known().await.unwrap().api,
        format!("{}/.p2/core/", child.url)
    );
    assert_eq!(
        client
            .register("alice", PASSWORD, None, None)
            .await
            .unwrap()
            .to_string(),
        "alice@localhost"
    );
    // The root certificate carries the key in the key file.
    let root = IdCert::parse(
        client
            .server_cert(None)
            .await
            .unwrap()
            .id_cert_pem
            .as_bytes(),
    )
    .unwrap();
    let key = ed25519_dalek::SigningKey::from_pkcs8_pem(&pem).unwrap();
    assert_eq!(root.key, key.verifying_key());
}

#[tokio::test]
async fn a_key_file_readable_by_others_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let key = ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng);
    let pem = key
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .unwrap();
    let key_path = data.path().join("server-key.pem");
    fs::write(&key_path, pem.as_bytes()).unwrap();
    fs::set_permissions(&key_path, fs::Permissions::from_mode(0o644)).unwrap();

    let mut child = Child::serve(data.path(), &["--data-dir", data.path().to_str().unwrap()]);
    let status = child.wait_exit(Duration::from_secs(20)).await;
    assert!(!status.success(), "{status}");
    let err = child.stderr();
    let line = err
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line: {err}"));
    assert!(line.contains("readable by other users"), "{line}");
    assert!(line.contains("server-key.pem"), "{line}");
    // Refused before anything else happened: the key is untouched, no database was created.
    assert_mode(&key_path, 0o644);
    assert_eq!(fs::read_to_string(&key_path).unwrap(), pem.as_str());
    assert!(!data.path().join("fugue.db").exists());

    // Made private, the same key is accepted and used.
    fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600)).unwrap();
    let child = Child::serve_ready(data.path(), &[]).await;
    let root = IdCert::parse(
        child
            .client()
            .server_cert(None)
            .await
            .unwrap()
            .id_cert_pem
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(root.key, key.verifying_key());
}

#[tokio::test]
async fn acknowledged_writes_survive_sigkill() {
    let data = tempfile::tempdir().unwrap();
    let mut child = Child::serve_ready(data.path(), &[]).await;
    let client = child.client();
    client
        .register("alice", PASSWORD, None, None)
        .await
        .unwrap();
    let fid: FederationId = "alice@localhost".parse().unwrap();
    let laptop: SessionId = "laptop".parse().unwrap();
    let session = login_as(&client, "alice", PASSWORD, "laptop")
        .await
        .unwrap();
    let serial = session.current_serial().unwrap();
    let server_pem = client.server_cert(None).await.unwrap().id_cert_pem;

    child.kill_hard();
    let child = Child::serve_ready(data.path(), &[]).await;
    let client = child.client();

    assert_eq!(
        client.server_cert(None).await.unwrap().id_cert_pem,
        server_pem
    );
    let verified = client.verified_actor_certs(&fid).await.unwrap();
    assert_eq!(verified.len(), 1);
    assert_eq!(verified[0].cert.serial, serial);
    assert_eq!(verified[0].revoked_at, None);
    // The session and its token survived too, and the account still logs in.
    let restored = fugue_client::Session::restore(
        client.clone(),
        fid.clone(),
        laptop.clone(),
        session.token().to_owned(),
        session.cert_pem().to_owned(),
        session.key().clone(),
    );
    assert_eq!(restored.sessions().await.unwrap().len(), 1);
    login_as(&client, "alice", PASSWORD, "phone").await.unwrap();
    assert_problem(
        login_as(&client, "alice", PASSWORD, "laptop").await,
        409,
        ErrorCode::SessionIdInUse,
    );
}

#[tokio::test]
async fn sigterm_stops_the_server_cleanly() {
    let data = tempfile::tempdir().unwrap();
    let mut child = Child::serve_ready(data.path(), &[]).await;
    let kill = Command::new("kill")
        .arg("-TERM")
        .arg(child.pid())
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(
        status.code(),
        Some(0),
        "{status}; stderr:\n{}",
        child.stderr()
    );
    assert!(
        child.stdout().contains("Fugue stopped."),
        "{}",
        child.stdout()
    );
    // The port is released.
    assert!(child.client().health().await.is_err());
}

#[tokio::test]
async fn sigterm_closes_gateway_connections_with_4000_before_exiting() {
    let data = tempfile::tempdir().unwrap();
    let mut child = Child::serve_ready(data.path(), &[]).await;
    let client = child.client();
    let session = signed_up(&client, "alice").await;
    // Hello, then op 12: the connection is identified.
    let mut ws = ws::identified_at(&ws::url(&child.url), session.token()).await;
    let kill = Command::new("kill")
        .arg("-TERM")
        .arg(child.pid())
        .status()
        .unwrap();
    assert!(kill.success());
    let (code, _) = ws::closed_with(&mut ws).await;
    assert_eq!(code, 4000, "resumable close on shutdown");
    let status = child.wait_exit(Duration::from_secs(15)).await;
    assert_eq!(
        status.code(),
        Some(0),
        "{status}; stderr:\n{}",
        child.stderr()
    );
}

#[tokio::test]
async fn the_example_configuration_is_valid_toml_that_serve_accepts() {
    let output = run(&["config", "example"], &[]);
    let text = assert_success(&output, "fugue config example");
    for needle in [
        "[limits]",
        "[rate_limits]",
        "[certs]",
        "[password_hashing]",
        "registration",
        "json_body_bytes = 1048576",
    ] {
        assert!(text.contains(needle), "{needle} missing");
    }
    // `toml` is a dependency of this package, so the tests can parse with it.
    let table: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(
        table["limits"]["json_body_bytes"].as_integer(),
        Some(1_048_576)
    );
    assert_eq!(table["domain"].as_str(), Some("localhost"));

    // Flags win over the file's listen and data_dir.
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("fugue.toml");
    fs::write(&file, &text).unwrap();
    let child = Child::serve_ready(data.path(), &["--config", file.to_str().unwrap()]).await;
    assert!(data.path().join("server-key.pem").is_file());
    assert!(!data.path().join("fugue-data").exists());
    child
        .client()
        .register("alice", PASSWORD, None, None)
        .await
        .unwrap();
}

#[tokio::test]
async fn an_invite_from_the_admin_command_admits_one_registration() {
    let base = tempfile::tempdir().unwrap();
    let data = base.path().join("data");
    let data_arg = data.to_str().unwrap();
    let output = run(
        &[
            "admin",
            "--data-dir",
            data_arg,
            "--domain",
            "example.org",
            "invite",
            "create",
        ],
        &[],
    );
    let code = assert_success(&output, "fugue admin invite create")
        .trim()
        .to_owned();
    assert_eq!(code.len(), 32, "{code:?}");
    assert!(code.bytes().all(|b| b.is_ascii_hexdigit()), "{code:?}");
    // The admin command created the data dir, and it is private like one `serve` creates.
    assert_mode(&data, 0o700);

    let child = Child::serve_ready(&data, &["--domain", "example.org"]).await;
    let client = child.client();
    assert_problem(
        client.register("alice", PASSWORD, None, None).await,
        403,
        ErrorCode::InviteRequired,
    );
    let fid = client
        .register("alice", PASSWORD, Some(&code), None)
        .await
        .unwrap();
    assert_eq!(fid.to_string(), "alice@example.org");
    assert_problem(
        client.register("bob", PASSWORD, Some(&code), None).await,
        403,
        ErrorCode::InvalidInvite,
    );
}

#[tokio::test]
async fn the_command_line_client_works_end_to_end() {
    let data = tempfile::tempdir().unwrap();
    let child = Child::serve_ready(data.path(), &[]).await;
    let home = tempfile::tempdir().unwrap();
    let keystore = home.path().join("ks.json");
    let keystore_arg = keystore.to_str().unwrap();
    let env = [
        ("FUGUE_SERVER", child.url.as_str()),
        ("FUGUE_KEYSTORE", keystore_arg),
        ("FUGUE_PASSWORD", PASSWORD),
    ];
    let cli = |args: &[&str]| run(args, &env);

    // Nobody is logged in yet.
    let output = cli(&["account", "whoami"]);
    assert!(!output.status.success());
    assert_eq!(
        stderr_of(&output).lines().count(),
        1,
        "{}",
        stderr_of(&output)
    );

    let out = assert_success(&cli(&["account", "register", "alice"]), "register");
    assert!(out.contains("alice@localhost"), "{out}");
    let out = assert_success(
        &cli(&["account", "login", "alice", "--session-id", "laptop"]),
        "login",
    );
    assert!(out.contains("laptop"), "{out}");
    assert_mode(&keystore, 0o600);

    let out = assert_success(&cli(&["account", "whoami"]), "whoami");
    assert!(
        out.contains("alice@localhost") && out.contains("laptop"),
        "{out}"
    );
    assert!(out.contains("(valid)"), "{out}");

    let out = assert_success(&cli(&["sessions", "list"]), "sessions list");
    assert!(out.contains("laptop (this one)"), "{out}");

    let out = assert_success(&cli(&["certs", "show", "alice@localhost"]), "certs show");
    assert!(
        out.contains("session laptop") && out.contains("valid"),
        "{out}"
    );

    let mut backup_env = env.to_vec();
    backup_env.push(("FUGUE_BACKUP_PASSPHRASE", "x"));
    let out = assert_success(&run(&["keys", "backup"], &backup_env), "keys backup");
    assert!(out.contains("backed up 1"), "{out}");
    let out = assert_success(&run(&["keys", "backup"], &backup_env), "keys backup again");
    assert!(out.contains("backed up 0"), "{out}");

    // A refusal: exactly one line on stderr, with the stable code, and a failing exit status.
    let output = cli(&["account", "login", "alice", "--session-id", "laptop"]);
    assert!(!output.status.success());
    assert_eq!(output.status.code(), Some(1));
    let err = stderr_of(&output);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error:") && err.contains("SESSION_ID_IN_USE"),
        "{err}"
    );
    // The failed login left the stored session alone.
    let out = assert_success(&cli(&["account", "whoami"]), "whoami after the refusal");
    assert!(out.contains("laptop") && out.contains("(valid)"), "{out}");
    assert_mode(&keystore, 0o600);
}

/// Whether a file under `dir` holds `needle`.
fn found_under(dir: &Path, needle: &[u8]) -> bool {
    fs::read_dir(dir).unwrap().flatten().any(|e| {
        let path = e.path();
        if path.is_dir() {
            found_under(&path, needle)
        } else {
            fs::read(&path).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
        }
    })
}

#[tokio::test]
async fn an_encrypted_dm_leaves_no_text_in_the_server_s_files_or_logs() {
    let data = tempfile::tempdir().unwrap();
    let data_arg = data.path().to_str().unwrap().to_owned();
    // Everything the server logs, at its most talkative.
    let mut child = Child::serve_with(
        "127.0.0.1",
        data.path(),
        &["--data-dir", &data_arg],
        &[("RUST_LOG", "trace")],
    );
    child.wait_ready().await;
    let home = tempfile::tempdir().unwrap();
    let person = |name: &str| {
        let keystore = home.path().join(format!("{name}.json"));
        let env = [
            ("FUGUE_SERVER".to_owned(), child.url.clone()),
            (
                "FUGUE_KEYSTORE".to_owned(),
                keystore.to_str().unwrap().to_owned(),
            ),
            ("FUGUE_PASSWORD".to_owned(), PASSWORD.to_owned()),
        ];
        move |args: &[&str]| {
            let env: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            run(args, &env)
        }
    };
    let (alice, bob) = (person("alice"), person("bob"));
    for (cli, name) in [(&alice, "alice"), (&bob, "bob")] {
        assert_success(&cli(&["account", "register", name]), "register");
        assert_success(
            &cli(&["account", "login", name, "--session-id", "cli"]),
            "login",
        );
    }
    // bob's device uploads its KeyPackages on its first encrypted command.
    assert_success(&bob(&["dm", "alice@localhost"]), "bob's first read");
    let secret = "the secret recipe is forty-two";
    let out = assert_success(
        &alice(&["dm", "bob@localhost", secret, "--encrypted"]),
        "encrypted dm",
    );
    assert!(out.starts_with("sent encrypted message"), "{out}");
    let out = assert_success(&bob(&["dm", "alice@localhost"]), "bob reads");
    assert!(out.contains(&format!("🔒 {secret}")), "{out}");

    let logs = format!("{}{}", child.stdout(), child.stderr());
    eprintln!("server log bytes: {}", logs.len());
    assert!(logs.len() > 1000, "the server logged: {logs}");
    assert!(!logs.contains(secret), "the text is in the server's logs");
    assert!(
        !found_under(data.path(), secret.as_bytes()),
        "the text is in the server's files"
    );
    // The device's own files hold it (opened messages are kept there, 0600).
    assert!(found_under(&home.path().join("mls"), secret.as_bytes()));
}

#[tokio::test]
async fn the_server_listens_on_ipv6_too() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let mut child = Child::serve_on("[::1]", dir.path(), &["--data-dir", &data]);
    child.wait_ready().await;
    assert!(child.url.starts_with("http://[::1]:"), "{}", child.url);
    let client = fugue_client::Client::new(&child.url).unwrap();
    assert_eq!(client.health().await.unwrap().status, "ok");
    // The public URL defaults to the listen address, brackets included.
    assert_eq!(
        client.well_known().await.unwrap().api,
        format!("{}/.p2/core/", child.url)
    );
}

#[tokio::test]
async fn settings_come_from_fugue_environment_variables() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("elsewhere");
    let port = free_port();
    let logs = tempfile::tempdir().unwrap();
    let process = fugue()
        .arg("serve")
        .env("FUGUE_LISTEN", format!("127.0.0.1:{port}"))
        .env("FUGUE_DATA_DIR", &data)
        .env("FUGUE_DOMAIN", "example.org")
        .env("FUGUE_PUBLIC_URL", "https://chat.example.org")
        .env("FUGUE_REGISTRATION", "open")
        .current_dir(dir.path())
        .stdout(fs::File::create(logs.path().join("stdout")).unwrap())
        .stderr(fs::File::create(logs.path().join("stderr")).unwrap())
        .spawn()
        .unwrap();
    let mut child = Child {
        process,
        url: format!("http://127.0.0.1:{port}"),
        logs,
    };
    child.wait_ready().await;
    assert!(
        data.join("server-key.pem").exists(),
        "FUGUE_DATA_DIR ignored"
    );
    let client = child.client();
    assert_eq!(
        client.well_known().await.unwrap().api,
        "https://chat.example.org/.p2/core/"
    );
    // FUGUE_REGISTRATION=open overrides the invite-only default of a public domain.
    let fid = client
        .register("alice", "correct horse battery", None, None)
        .await
        .unwrap();
    assert_eq!(fid.to_string(), "alice@example.org");
}

#[tokio::test]
async fn sigterm_lets_a_request_in_flight_finish() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let data = tempfile::tempdir().unwrap();
    let mut child = Child::serve_ready(data.path(), &[]).await;
    // A request whose body is still arriving when the signal comes: it is in flight for sure.
    let body = br#"{"localName":"alice","password":"correct horse battery"}"#;
    let addr = child.url.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        api::register::PATH,
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let kill = Command::new("kill")
        .arg("-TERM")
        .arg(child.pid())
        .status()
        .unwrap();
    assert!(kill.success());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        child.process.try_wait().unwrap().is_none(),
        "exited with a request in flight"
    );
    stream.write_all(&body[10..]).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    let status = child.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(
        status.code(),
        Some(0),
        "{status}; stderr:\n{}",
        child.stderr()
    );
    // What it acknowledged is there after a restart.
    let child = Child::serve_ready(data.path(), &[]).await;
    let again = child
        .client()
        .register("alice", "correct horse battery", None, None)
        .await;
    assert_problem(again, 409, ErrorCode::LocalNameTaken);
}

mod files_and_logs {
    //! What `fugue serve` does to the files it finds and to its log output.

    use super::*;

    /// A data dir made by someone else (systemd's `StateDirectory=`, a container volume) with
    /// a database others can read is made private at start, with a warning.
    #[tokio::test]
    async fn loose_modes_of_the_data_dir_and_database_are_fixed_at_every_start() {
        let parent = tempfile::tempdir().unwrap();
        let data = parent.path().join("data");
        fs::create_dir(&data).unwrap();
        fs::set_permissions(&data, fs::Permissions::from_mode(0o755)).unwrap();
        // Empty files are a valid empty database, WAL and shared-memory index.
        let db = data.join("fugue.db");
        let companions = [
            db.clone(),
            data.join("fugue.db-wal"),
            data.join("fugue.db-shm"),
        ];
        for path in &companions {
            fs::write(path, b"").unwrap();
            fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
        }

        let child = Child::serve_ready(&data, &[]).await;
        assert_mode(&data, 0o700);
        for path in &companions {
            assert_mode(path, 0o600);
        }
        assert_mode(&data.join("server-key.pem"), 0o600);
        let log = child.stderr();
        for name in ["data", "fugue.db", "fugue.db-wal", "fugue.db-shm"] {
            assert!(
                log.lines()
                    .any(|l| l.contains("WARN") && l.contains("restricted") && l.contains(name)),
                "no warning about {name}:\n{log}"
            );
        }
        // The server works on what it found.
        child
            .client()
            .register("alice", PASSWORD, None, None)
            .await
            .unwrap();
        drop(child);

        // Loosened again while stopped: fixed again at the next start.
        fs::set_permissions(&data, fs::Permissions::from_mode(0o750)).unwrap();
        fs::set_permissions(&db, fs::Permissions::from_mode(0o640)).unwrap();
        let _child = Child::serve_ready(&data, &[]).await;
        assert_mode(&data, 0o700);
        assert_mode(&db, 0o600);
    }

    /// A new database is private from its first byte, whatever the umask.
    #[tokio::test]
    async fn a_new_database_and_its_companions_are_created_private() {
        let data = tempfile::tempdir().unwrap();
        let child = Child::serve_ready(data.path(), &[]).await;
        child
            .client()
            .register("alice", PASSWORD, None, None)
            .await
            .unwrap();
        for name in ["fugue.db", "fugue.db-wal", "fugue.db-shm"] {
            assert_mode(&data.path().join(name), 0o600);
        }
        let log = child.stderr();
        assert!(
            !log.lines()
                .any(|l| l.contains("restricted") && l.contains("fugue.db")),
            "{log}"
        );
    }

    /// Logs go to journald or a file, not a terminal: no colour codes in them.
    #[tokio::test]
    async fn logs_to_a_file_carry_no_terminal_escape_codes() {
        let data = tempfile::tempdir().unwrap();
        let child = Child::serve_ready(data.path(), &[]).await;
        let log = child.stderr();
        assert!(log.contains("INFO"), "nothing logged:\n{log}");
        assert!(!log.contains('\u{1b}'), "escape codes in the log:\n{log:?}");
    }
}

mod hostile_server {
    //! The command-line client printing what a server it does not trust says.

    use super::*;

    /// A server that refuses everything with a problem whose detail tries to drive the
    /// terminal: a colour, a window title, a bidi override and a fake second line.
    async fn refusing_stub() -> crate::support::fakes::Fake {
        let problem = fugue_proto::Problem::new(400, ErrorCode::MalformedRequest, "Bad")
            .with_detail("\u{1b}[31mred\u{1b}]0;pwned\u{7} \u{202e}evil\u{9b}2J\nerror: fake");
        let body = serde_json::to_string(&problem).unwrap();
        let router = axum::Router::new().fallback(move || {
            let body = body.clone();
            async move {
                (
                    axum::http::StatusCode::BAD_REQUEST,
                    [("content-type", "application/problem+json")],
                    body,
                )
            }
        });
        crate::support::fakes::serve(router).await
    }

    #[tokio::test]
    async fn server_text_reaches_the_terminal_without_control_characters() {
        let stub = refusing_stub().await;
        let url = stub.url.clone();
        let keystore = tempfile::tempdir().unwrap();
        let keystore = keystore.path().join("keys.json");
        let output = crate::support::blocking(move || {
            crate::support::fugue_as_client(&url, &keystore)
                .args(["account", "register", "bob"])
                .output()
                .unwrap()
        })
        .await;
        assert!(!output.status.success());
        let err = stderr_of(&output);
        assert!(
            !err.chars()
                .any(|c| c.is_control() && c != '\n' || c == '\u{202e}'),
            "terminal controls printed: {err:?}"
        );
        // Shown, escaped, on the one error line.
        assert_eq!(err.lines().count(), 1, "{err:?}");
        assert!(err.contains("\\u001b[31mred"), "{err:?}");
        assert!(err.contains("\\u202eevil\\u009b2J"), "{err:?}");
    }
}

mod nats_bus {
    //! `fugue serve` against a real `nats-server` that wants credentials: the right ones
    //! connect, missing or wrong ones stop the start with a clear error.

    use std::process::Stdio;

    use super::*;

    /// Debian's `nats-server` (/usr/sbin, not always in PATH), or `TEST_NATS_SERVER`.
    fn nats_server_bin() -> PathBuf {
        if let Some(path) = std::env::var_os("TEST_NATS_SERVER").filter(|p| !p.is_empty()) {
            return path.into();
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        let fallback = ["/usr/sbin", "/usr/local/sbin", "/usr/local/bin", "/usr/bin"];
        std::env::split_paths(&path)
            .chain(fallback.map(PathBuf::from))
            .map(|dir| dir.join("nats-server"))
            .find(|p| p.is_file())
            .expect(
                "nats-server not found: install Debian's nats-server package (.ci/run does) or set TEST_NATS_SERVER",
            )
    }

    /// A `nats-server` on a free loopback port; killed on drop.
    struct Nats {
        process: std::process::Child,
        port: u16,
    }

    impl Nats {
        async fn start(args: &[&str]) -> Nats {
            let port = free_port();
            let process = Command::new(nats_server_bin())
                .args(["-a", "127.0.0.1", "-p", &port.to_string()])
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let mut nats = Nats { process, port };
            let deadline = Instant::now() + Duration::from_secs(10);
            while tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
            {
                assert!(
                    nats.process.try_wait().unwrap().is_none(),
                    "nats-server exited"
                );
                assert!(
                    Instant::now() < deadline,
                    "nats-server did not listen in 10 s"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            nats
        }
    }

    impl Drop for Nats {
        fn drop(&mut self) {
            if let Ok(None) = self.process.try_wait() {
                let _ = self.process.kill();
            }
            let _ = self.process.wait();
        }
    }

    /// A config file in `dir` with `cluster` as its `[cluster]` table, readable by its owner
    /// only (it may hold a bus credential).
    fn config(dir: &Path, cluster: &str) -> String {
        let path = dir.join("fugue.toml");
        fs::write(&path, format!("[cluster]\n{cluster}\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        path.to_str().unwrap().to_owned()
    }

    /// Starts `fugue serve` with `cluster` and expects it to refuse; returns its error line.
    async fn refused(cluster: &str) -> String {
        let data = tempfile::tempdir().unwrap();
        let config = config(data.path(), cluster);
        let data_dir = data.path().to_str().unwrap();
        let mut child = Child::serve(data.path(), &["--data-dir", data_dir, "--config", &config]);
        let status = child.wait_exit(Duration::from_secs(20)).await;
        assert!(!status.success(), "{status}");
        let err = child.stderr();
        err.lines()
            .find(|l| l.starts_with("error:"))
            .unwrap_or_else(|| panic!("no error line: {err}"))
            .to_owned()
    }

    /// Starts `fugue serve` with `cluster`, expects it to serve, and registers an account
    /// (which publishes on the bus).
    async fn accepted(cluster: &str) {
        let data = tempfile::tempdir().unwrap();
        let config = config(data.path(), cluster);
        let child = Child::serve_ready(data.path(), &["--config", &config]).await;
        child
            .client()
            .register("alice", PASSWORD, None, None)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_user_and_password_in_the_url_open_a_protected_bus() {
        let nats = Nats::start(&["--user", "fugue", "--pass", "s3cret-pass"]).await;
        let port = nats.port;
        accepted(&format!(
            "nats_url = \"nats://fugue:s3cret-pass@127.0.0.1:{port}\""
        ))
        .await;

        let line = refused(&format!("nats_url = \"nats://127.0.0.1:{port}\"")).await;
        assert!(line.contains("cannot connect to NATS"), "{line}");
        assert!(line.contains("authorization"), "{line}");
        let line = refused(&format!(
            "nats_url = \"nats://fugue:wrong-pass@127.0.0.1:{port}\""
        ))
        .await;
        assert!(line.contains("authorization"), "{line}");
        assert!(
            !line.contains("wrong-pass"),
            "the password is shown: {line}"
        );
    }

    #[tokio::test]
    async fn a_token_opens_a_protected_bus() {
        let nats = Nats::start(&["--auth", "T0KEN-abc"]).await;
        let url = format!("nats_url = \"nats://127.0.0.1:{}\"", nats.port);
        accepted(&format!("{url}\nnats_token = \"T0KEN-abc\"")).await;
        let line = refused(&url).await;
        assert!(line.contains("authorization"), "{line}");
        let line = refused(&format!("{url}\nnats_token = \"wrong\"")).await;
        assert!(line.contains("authorization"), "{line}");
    }

    #[tokio::test]
    async fn an_nkey_seed_file_opens_a_protected_bus() {
        let user = nkeys::KeyPair::new_user();
        let dir = tempfile::tempdir().unwrap();
        let nats_conf = dir.path().join("nats.conf");
        fs::write(
            &nats_conf,
            format!(
                "authorization {{ users = [ {{ nkey: \"{}\" }} ] }}\n",
                user.public_key()
            ),
        )
        .unwrap();
        let nats = Nats::start(&["-c", nats_conf.to_str().unwrap()]).await;
        let seed = dir.path().join("fugue.nk");
        fs::write(&seed, format!("{}\n", user.seed().unwrap())).unwrap();
        fs::set_permissions(&seed, fs::Permissions::from_mode(0o600)).unwrap();
        let url = format!("nats_url = \"nats://127.0.0.1:{}\"", nats.port);
        let with_seed = format!("{url}\nnats_nkey_seed_file = \"{}\"", seed.display());
        accepted(&with_seed).await;
        assert!(refused(&url).await.contains("authorization"));

        // A seed every local user can read is refused before anything else.
        fs::set_permissions(&seed, fs::Permissions::from_mode(0o644)).unwrap();
        let line = refused(&with_seed).await;
        assert!(line.contains("readable by every user"), "{line}");
    }

    /// The checked-in test PKI (`nats-tls/regenerate.sh`).
    fn pki(name: &str) -> String {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/nats-tls");
        dir.join(name).to_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn tls_with_a_private_ca_and_a_client_certificate() {
        let nats = Nats::start(&[
            "--tls",
            "--tlscert",
            &pki("server.pem"),
            "--tlskey",
            &pki("server.key"),
            "--tlsverify",
            "--tlscacert",
            &pki("ca.pem"),
        ])
        .await;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("client.key");
        fs::copy(pki("client.key"), &key).unwrap();
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
        let url = format!("nats_url = \"nats://127.0.0.1:{}\"", nats.port);
        let ca = format!("nats_tls_ca_file = \"{}\"", pki("ca.pem"));
        let client = format!(
            "nats_tls_cert_file = \"{}\"\nnats_tls_key_file = \"{}\"",
            pki("client.pem"),
            key.display()
        );
        accepted(&format!("{url}\n{ca}\n{client}")).await;

        // The server wants a client certificate.
        let line = refused(&format!("{url}\n{ca}")).await;
        assert!(line.contains("cannot connect to NATS"), "{line}");
        // The system's roots do not know the private CA.
        let line = refused(&format!("{url}\nnats_tls_required = true\n{client}")).await;
        assert!(line.contains("nats_tls_ca_file"), "{line}");
        let line = refused(&format!("{url}\nnats_tls_required = true")).await;
        assert!(line.contains("cannot connect to NATS"), "{line}");
    }
}

mod cluster {
    //! Two `fugue serve` processes on one PostgreSQL database and NATS: a node killed with
    //! SIGKILL loses no acknowledged event; its client resumes on the other node.

    use fugue_testkit::ws::{self, next_with_op, send};
    use rand_core::RngCore;
    use serde_json::json;

    use super::*;

    async fn login(child: &Child, session: &str) -> fugue_client::Session {
        login_as(&child.client(), "alice", PASSWORD, session)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_killed_node_loses_no_acknowledged_event_and_its_client_resumes_on_another() {
        let Some(url) = std::env::var("TEST_DATABASE_URL")
            .ok()
            .filter(|u| !u.is_empty())
        else {
            eprintln!("skipped: several nodes need PostgreSQL (TEST_DATABASE_URL)");
            return;
        };
        let schema = format!("t_{:016x}", rand_core::OsRng.next_u64());
        fugue_store::Store::open_postgres(&url, Some(&schema), 1)
            .await
            .unwrap();
        let sep = if url.contains('?') { '&' } else { '?' };
        let db = format!("{url}{sep}options=-c%20search_path%3D{schema}");
        let data = tempfile::tempdir().unwrap();
        let config = data.path().join("fugue.toml");
        fs::write(
            &config,
            format!(
                "[cluster]\nnats_url = \"{}\"\nsubject_prefix = \"fugue-test-{schema}\"\n",
                fugue_testkit::nats_url()
            ),
        )
        .unwrap();
        let args = ["--database-url", &db, "--config", config.to_str().unwrap()];
        let mut a = Child::serve_ready(data.path(), &args).await;
        // The second node reads the key file the first one created.
        let b = Child::serve_ready(data.path(), &args).await;

        b.client()
            .register("alice", PASSWORD, None, None)
            .await
            .unwrap();
        let main = login(&b, "main").await;
        let (mut ws, _) = ws::connect_to(&ws::url(&a.url)).await;
        send(
            &mut ws,
            json!({"n":"core","op":2,"d":{"token": main.token()}}),
        )
        .await;
        next_with_op(&mut ws, 12).await;

        // An event announced by node B reaches the connection on node A, and is acknowledged.
        login(&b, "one").await;
        let one = next_with_op(&mut ws, 3).await;
        send(
            &mut ws,
            json!({"n":"core","op":0,"d":{"from":"0","to": one["s"].to_string()}}),
        )
        .await;
        next_with_op(&mut ws, 7).await;
        // The next one is received but not acknowledged when A dies.
        login(&b, "two").await;
        let two = next_with_op(&mut ws, 3).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        a.kill_hard();
        drop(ws);
        login(&b, "three").await;

        let (mut ws, _) = ws::connect_to(&ws::url(&b.url)).await;
        send(
            &mut ws,
            json!({"n":"core","op":5,"d":{"s": two["s"], "token": main.token()}}),
        )
        .await;
        let resumed = next_with_op(&mut ws, 10).await;
        let ids: Vec<u64> = resumed["d"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_u64().unwrap())
            .collect();
        let (one_id, two_id) = (one["id"].as_u64().unwrap(), two["id"].as_u64().unwrap());
        // From the acknowledged position on: the unacknowledged event again (same id, so the
        // client drops it) and the one published while the node was down. Nothing lost.
        assert_eq!(ids, vec![two_id, two_id + 1], "{resumed}");
        assert!(!ids.contains(&one_id), "an acknowledged event came back");
        let certs: Vec<&str> = resumed["d"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["d"]["cert"].as_str().unwrap())
            .collect();
        assert_eq!(certs[0], two["d"]["cert"].as_str().unwrap());
        assert!(
            IdCert::parse(certs[1].as_bytes())
                .unwrap()
                .session_id()
                .is_some_and(|s| s.as_str() == "three")
        );
    }
}

/// Logs `local_name` in on `client` (a server for `localhost`) as a new session.
async fn login_as(
    client: &Client,
    local_name: &str,
    password: &str,
    session_id: &str,
) -> fugue_client::Result<fugue_client::Session> {
    let fid: FederationId = format!("{local_name}@localhost").parse().unwrap();
    let sid: SessionId = session_id.parse().unwrap();
    client
        .login(
            local_name,
            password,
            None,
            &IdentityKey::generate(),
            &fid,
            &sid,
        )
        .await
}

#[tokio::test]
async fn accounts_are_administered_from_the_command_line() {
    // Before the server's first start there is no key to sign revocation notices with.
    let empty = tempfile::tempdir().unwrap();
    let output = run(
        &[
            "admin",
            "--data-dir",
            empty.path().to_str().unwrap(),
            "account",
            "list",
        ],
        &[],
    );
    assert_failure(&output, "start the server once");

    let data = tempfile::tempdir().unwrap();
    let child = Child::serve_ready(data.path(), &[]).await;
    let client = child.client();
    for name in ["alice", "bob"] {
        client.register(name, PASSWORD, None, None).await.unwrap();
    }
    let alice = login_as(&client, "alice", PASSWORD, "laptop")
        .await
        .unwrap();
    let data_arg = data.path().to_str().unwrap().to_owned();
    let admin = |args: &[&str], envs: &[(&str, &str)]| {
        let mut all = vec!["admin", "--data-dir", data_arg.as_str(), "account"];
        all.extend_from_slice(args);
        run(&all, envs)
    };
    let row = |list: &str, name: &str| {
        list.lines()
            .find(|l| l.starts_with(&format!("{name}\t")))
            .unwrap_or_else(|| panic!("{name} not listed: {list}"))
            .split('\t')
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };

    let list = assert_success(&admin(&["list"], &[]), "account list");
    let alice_row = row(&list, "alice");
    assert_eq!(
        (
            alice_row[2].as_str(),
            alice_row[3].as_str(),
            alice_row[4].as_str(),
            alice_row[5].as_str()
        ),
        ("no", "active", "off", "1"),
        "{list}"
    );

    // Suspended: the session ends at once and login is refused with a clear code.
    assert_success(&admin(&["suspend", "ALICE"], &[]), "account suspend");
    assert_problem(alice.sessions().await, 401, ErrorCode::InvalidToken);
    assert_problem(
        login_as(&client, "alice", PASSWORD, "again").await,
        403,
        ErrorCode::AccountSuspended,
    );
    let list = assert_success(&admin(&["list"], &[]), "account list");
    assert_eq!(row(&list, "alice")[3], "suspended", "{list}");
    assert_success(&admin(&["unsuspend", "alice"], &[]), "account unsuspend");
    let back = login_as(&client, "alice", PASSWORD, "back").await.unwrap();

    // A generated password is printed; every session of the account ends.
    let generated = assert_success(
        &admin(&["reset-password", "alice", "--generate"], &[]),
        "reset-password --generate",
    )
    .trim()
    .to_owned();
    assert!(generated.len() >= 20, "{generated:?}");
    assert_problem(back.sessions().await, 401, ErrorCode::InvalidToken);
    assert_problem(
        login_as(&client, "alice", PASSWORD, "old").await,
        401,
        ErrorCode::InvalidCredentials,
    );
    login_as(&client, "alice", &generated, "generated")
        .await
        .unwrap();
    // Or one chosen by the administrator.
    let chosen = "the administrator's choice";
    assert_success(
        &admin(&["reset-password", "bob"], &[("FUGUE_PASSWORD", chosen)]),
        "reset-password",
    );
    login_as(&client, "bob", chosen, "chosen").await.unwrap();

    assert_success(&admin(&["delete", "alice"], &[]), "account delete");
    assert_problem(
        login_as(&client, "alice", &generated, "deleted").await,
        401,
        ErrorCode::InvalidCredentials,
    );
    assert_problem(
        client.register("Alice", PASSWORD, None, None).await,
        409,
        ErrorCode::LocalNameTaken,
    );
    let list = assert_success(&admin(&["list"], &[]), "account list");
    assert_eq!(row(&list, "alice")[3], "deleted", "{list}");
    assert_eq!(row(&list, "bob")[3], "active", "{list}");

    let output = admin(&["suspend", "nobody"], &[]);
    assert_failure(&output, "nobody");
}

#[tokio::test]
async fn every_message_acknowledged_before_a_sigkill_is_there_exactly_once_after_it() {
    use std::sync::{Arc, Mutex};

    let data = tempfile::tempdir().unwrap();
    // A load, not a spammer: without chat.md's 5 messages per 5 s.
    let config = data.path().join("load.toml");
    fs::write(&config, "[rate_limits]\nchat_messages_per_5s = 0\n").unwrap();
    let config = config.to_str().unwrap().to_owned();
    let mut child = Child::serve_ready(data.path(), &["--config", &config]).await;
    let client = child.client();
    let session = signed_up(&client, "alice").await;
    let http = client.raw().clone();
    let guild: fugue_proto::chat::Guild = http
        .post(format!("{}{}", child.url, api::create_guild::PATH))
        .bearer_auth(session.token())
        .json(&serde_json::json!({"name": "durable", "private": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let channel: fugue_proto::chat::Channel = http
        .post(format!(
            "{}{}",
            child.url,
            api::create_channel::path(guild.id)
        ))
        .bearer_auth(session.token())
        .json(&serde_json::json!({"name": "log", "type": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    // A sustained load from four senders, each bounded; the server dies under it.
    // (nonce, id, the signed request) of every message answered with 201.
    type Acked = Vec<(String, u64, api::send_message::Request)>;
    let acked: Arc<Mutex<Acked>> = Arc::default();
    let url = format!("{}{}", child.url, api::send_message::path(channel.id));
    let mut senders = Vec::new();
    for t in 0..4 {
        let (http, url, acked, session) =
            (http.clone(), url.clone(), acked.clone(), session.clone());
        senders.push(tokio::spawn(async move {
            let chat = session.chat();
            for i in 0..2000 {
                let body = fugue_proto::chat::MessageBody {
                    content: format!("m {t} {i}"),
                    reply_to: None,
                    attachments: Vec::new(),
                };
                let req = chat.prepare_message(channel.id, body).request;
                let Ok(resp) = http
                    .post(&url)
                    .bearer_auth(session.token())
                    .json(&req)
                    .send()
                    .await
                else {
                    return;
                };
                if resp.status().as_u16() != 201 {
                    return;
                }
                let Ok(m) = resp.json::<fugue_proto::chat::Message>().await else {
                    return;
                };
                acked.lock().unwrap().push((req.nonce.clone(), m.id, req));
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked.lock().unwrap().len() < 200 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill_hard();
    for s in senders {
        let _ = tokio::time::timeout(Duration::from_secs(20), s).await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 200, "only {} acknowledged", acked.len());

    let child = Child::serve_ready(data.path(), &[]).await;
    let mut stored: Vec<fugue_proto::chat::Message> = Vec::new();
    let mut before: Option<u64> = None;
    loop {
        let mut page_url = format!(
            "{}{}?limit=100",
            child.url,
            api::get_messages::path(channel.id)
        );
        if let Some(b) = before {
            page_url.push_str(&format!("&before={b}"));
        }
        let page: Vec<fugue_proto::chat::Message> = http
            .get(page_url)
            .bearer_auth(session.token())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        before = page.iter().map(|m| m.id).min();
        let done = page.len() < 100;
        stored.extend(page);
        if done {
            break;
        }
    }
    let mut by_nonce = std::collections::HashMap::new();
    for m in &stored {
        *by_nonce.entry(m.nonce.clone()).or_insert(0) += 1;
    }
    assert!(by_nonce.values().all(|n| *n == 1), "a nonce stored twice");
    let ids: std::collections::HashMap<&str, u64> =
        stored.iter().map(|m| (m.nonce.as_str(), m.id)).collect();
    for (nonce, id, _) in &acked {
        assert_eq!(ids.get(nonce.as_str()), Some(id), "{nonce} lost or changed");
    }
    // Sending an acknowledged message again stores nothing new.
    let (_, id, request) = &acked[0];
    let again = http
        .post(format!(
            "{}{}",
            child.url,
            api::send_message::path(channel.id)
        ))
        .bearer_auth(session.token())
        .json(request)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status().as_u16(), 200);
    let m: fugue_proto::chat::Message = again.json().await.unwrap();
    assert_eq!(m.id, *id);
}

#[tokio::test]
async fn a_backup_of_a_running_server_starts_as_that_server() {
    use fugue_proto::rawr::{AccessProperties, ResourceId};

    let data = tempfile::tempdir().unwrap();
    let child = Child::serve_ready(data.path(), &[]).await;
    let client = child.client();
    let alice = signed_up(&client, "alice").await;
    let server_pem = client.server_cert(None).await.unwrap().id_cert_pem;
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let keep: ResourceId = "keep".parse().unwrap();
    let gone: ResourceId = "gone".parse().unwrap();
    for rid in [&keep, &gone] {
        alice
            .upload_resource(
                rid,
                &AccessProperties::default(),
                bytes.clone(),
                bytes.len() as u64,
            )
            .await
            .unwrap();
    }
    alice.delete_resource(&gone).await.unwrap();
    alice
        .upload_resource(&gone, &AccessProperties::default(), b"other".to_vec(), 5)
        .await
        .unwrap();

    // While it serves.
    let backup = tempfile::tempdir().unwrap();
    let dir = backup.path().join("copy");
    let data_dir = data.path().to_str().unwrap().to_owned();
    let dir_arg = dir.to_str().unwrap().to_owned();
    let out = run_off(&["admin", "backup", &dir_arg, "--data-dir", &data_dir]).await;
    let printed = assert_success(&out, "admin backup");
    assert!(printed.contains("2 uploaded files"), "{printed}");
    assert_mode(&dir, 0o700);
    assert_mode(&dir.join("server-key.pem"), 0o600);
    assert_mode(&dir.join("fugue.db"), 0o600);

    // What happens after the backup is not in it; what was, stays, also what is deleted now.
    alice.delete_resource(&keep).await.unwrap();
    client.register("bob", PASSWORD, None, None).await.unwrap();
    drop(child);

    let restored = Child::serve_ready(&dir, &[]).await;
    let client = restored.client();
    assert_eq!(
        client.server_cert(None).await.unwrap().id_cert_pem,
        server_pem
    );
    let alice = login_as(&client, "alice", PASSWORD, "phone").await.unwrap();
    let mut got = Vec::new();
    alice.download_resource("keep", &mut got).await.unwrap();
    assert_eq!(got, bytes);
    let mut other = Vec::new();
    alice.download_resource("gone", &mut other).await.unwrap();
    assert_eq!(other, b"other");
    assert_problem(
        login_as(&client, "bob", PASSWORD, "x").await,
        401,
        ErrorCode::InvalidCredentials,
    );

    // A backup never writes into a directory that holds something.
    let data_dir = dir.to_str().unwrap().to_owned();
    let again = run_off(&["admin", "backup", &data_dir, "--data-dir", &data_dir]).await;
    assert_failure(&again, "not empty");
}

#[tokio::test]
async fn a_server_moves_to_another_database_and_back_with_convert_db() {
    let data = tempfile::tempdir().unwrap();
    let child = Child::serve_ready(data.path(), &[]).await;
    let client = child.client();
    let alice = signed_up(&client, "alice").await;
    let chat = alice.chat();
    let guild = chat
        .create_guild(&fugue_proto::api::create_guild::Request {
            name: "moving house".into(),
            description: None,
            icon: None,
            private: None,
        })
        .await
        .unwrap();
    let channel = chat.channels(guild.id).await.unwrap()[0].id;
    let hello = chat
        .send_message(
            channel,
            fugue_proto::chat::MessageBody {
                content: "before the move".into(),
                reply_to: None,
                attachments: vec![],
            },
        )
        .await
        .unwrap()
        .message;
    drop(child);

    // To PostgreSQL when one is there, else to another SQLite file; then back to SQLite.
    let data_dir = data.path().to_str().unwrap().to_owned();
    let postgres = std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .map(|url| FreshDatabase::new(&url));
    let schema_db = match &postgres {
        Some(db) => db.url.clone(),
        None => format!("sqlite:{}", data.path().join("middle.db").display()),
    };
    let back = format!("sqlite:{}", data.path().join("back.db").display());
    let out = run_off(&[
        "admin",
        "convert-db",
        "--to",
        &schema_db,
        "--data-dir",
        &data_dir,
    ])
    .await;
    let printed = assert_success(&out, "admin convert-db");
    assert!(printed.contains("messages: 1 rows"), "{printed}");
    let out = run_off(&[
        "admin",
        "convert-db",
        "--to",
        &back,
        "--data-dir",
        &data_dir,
        "--database-url",
        &schema_db,
    ])
    .await;
    assert_success(&out, "admin convert-db back");
    // Into a database that holds something: refused.
    let again = run_off(&[
        "admin",
        "convert-db",
        "--to",
        &back,
        "--data-dir",
        &data_dir,
    ])
    .await;
    assert_failure(&again, "not empty");

    // The server runs on the converted database: same account, same message.
    let moved = Child::serve_ready(data.path(), &["--database-url", &back]).await;
    let client = moved.client();
    let alice = login_as(&client, "alice", PASSWORD, "phone").await.unwrap();
    let again = alice.chat().message(channel, hello.id).await.unwrap();
    assert_eq!(again.content, "before the move");
}

/// A new, empty PostgreSQL database beside the one `url` names (made with `psql`, as
/// `.ci/run` makes that one), dropped with this.
struct FreshDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl FreshDatabase {
    fn new(url: &str) -> Self {
        let name = format!("fugue_convert_{}", std::process::id());
        let (base, _) = url.rsplit_once('/').unwrap();
        let admin_url = format!("{base}/postgres");
        let made = std::process::Command::new("psql")
            .args([&admin_url, "-qc", &format!("CREATE DATABASE {name}")])
            .status();
        assert!(
            made.is_ok_and(|s| s.success()),
            "psql: CREATE DATABASE {name}"
        );
        Self {
            url: format!("{base}/{name}"),
            admin_url,
            name,
        }
    }
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .args([
                &self.admin_url,
                "-qc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .status();
    }
}

#[tokio::test]
async fn serve_keeps_uploads_in_an_object_store_when_configured() {
    use fugue_proto::rawr::{AccessProperties, ResourceId};
    use fugue_testkit::garage::{ACCESS_KEY, BUCKET, Garage, REGION, SECRET_KEY};

    let garage = Garage::start().await;
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("fugue.toml");
    let media = format!(
        "[media]\ns3_endpoint = \"{}\"\ns3_bucket = \"{BUCKET}\"\ns3_region = \"{REGION}\"\n\
         s3_access_key = \"{ACCESS_KEY}\"\ns3_secret_key = \"{SECRET_KEY}\"\n",
        garage.endpoint
    );
    fs::write(&config, &media).unwrap();
    let config = config.to_str().unwrap().to_owned();

    // Half a setting is refused at start, in words.
    let broken = data.path().join("broken.toml");
    fs::write(&broken, media.replace("s3_bucket", "# s3_bucket")).unwrap();
    let broken = broken.to_str().unwrap().to_owned();
    let data_dir = data.path().to_str().unwrap().to_owned();
    let out = run_off(&["serve", "--data-dir", &data_dir, "--config", &broken]).await;
    assert_failure(&out, "media.s3_bucket is required");

    let child = Child::serve_ready(data.path(), &["--config", &config]).await;
    let client = child.client();
    let alice = signed_up(&client, "alice").await;
    let rid: ResourceId = "kept".parse().unwrap();
    let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 241) as u8).collect();
    alice
        .upload_resource(&rid, &AccessProperties::default(), bytes.clone(), 100_000)
        .await
        .unwrap();
    let mut got = Vec::new();
    alice.download_resource("kept", &mut got).await.unwrap();
    assert_eq!(got, bytes);
    assert!(
        !data.path().join("media").join("objects").exists(),
        "the bytes went to the bucket, not the data directory"
    );

    // A backup copies the database and says where the files stay.
    let backup = tempfile::tempdir().unwrap();
    let dir = backup.path().join("copy").to_str().unwrap().to_owned();
    let data_dir = data.path().to_str().unwrap().to_owned();
    let out = run_off(&[
        "admin",
        "backup",
        &dir,
        "--data-dir",
        &data_dir,
        "--config",
        &config,
    ])
    .await;
    let printed = assert_success(&out, "admin backup");
    assert!(
        printed.contains(&format!("uploaded files stay in bucket {BUCKET}")),
        "{printed}"
    );
}
