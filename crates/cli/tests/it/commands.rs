//! The client commands of the `fugue` binary as child processes against an in-process server:
//! `fugue account` (password, TOTP, deletion), `fugue federation login`, `fugue events` and
//! `fugue services`. What the server does with these requests is tested in
//! `crates/server/tests/it`; here it is the commands' arguments, prompts, output and key store.

use fugue_client::{KeyStore, Session};
use fugue_proto::ErrorCode;
use fugue_proto::certs::IdCert;
use fugue_testkit::{PASSWORD, TestServer};

use crate::support::{
    Watcher, assert_problem, blocking, federated_pair, fugue_as_client, login_with, totp_code_in,
};

const NEW_PASSWORD: &str = "a completely new passphrase";

#[tokio::test]
async fn the_account_commands_change_the_password_toggle_totp_and_delete() {
    let server = TestServer::start().await;
    server
        .client()
        .register("alice", PASSWORD, None, None)
        .await
        .unwrap();
    let home = tempfile::tempdir().unwrap();
    let keystore = home.path().join("ks.json");
    let url = server.url.clone();
    let run = move |args: &[&str], envs: &[(&str, &str)]| {
        let mut cmd = fugue_as_client(&url, &keystore);
        cmd.args(args).envs(envs.iter().copied());
        cmd
    };
    let output = |mut cmd: std::process::Command| async move {
        let out = blocking(move || cmd.output().unwrap()).await;
        let stdout = String::from_utf8(out.stdout).unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        (out.status.success(), stdout, stderr)
    };
    let (ok, _, err) = output(run(
        &["account", "login", "alice", "--session-id", "cli"],
        &[],
    ))
    .await;
    assert!(ok, "{err}");

    // TOTP on: the secret is printed, the code confirmed in a second step.
    let (ok, out, err) = output(run(&["account", "totp", "enable"], &[])).await;
    assert!(ok, "{err}");
    assert!(out.contains("--confirm"), "{out}");
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("secret: "))
        .unwrap()
        .to_owned();
    crate::support::wait_for_fresh_totp_step().await;
    let code = totp_code_in(&secret, -1);
    let (ok, out, err) = output(run(&["account", "totp", "enable", "--confirm", &code], &[])).await;
    assert!(ok && out.contains("TOTP is on"), "{out}{err}");
    assert_problem(
        login_with(&server, "alice", PASSWORD, None, "no-code").await,
        401,
        ErrorCode::TotpRequired,
    );
    let code = totp_code_in(&secret, 0);
    let (ok, out, err) = output(run(&["account", "totp", "disable", "--totp", &code], &[])).await;
    assert!(ok && out.contains("TOTP is off"), "{out}{err}");
    login_with(&server, "alice", PASSWORD, None, "password-only")
        .await
        .unwrap();

    // A new password; the other sessions end on request.
    let (ok, out, err) = output(run(
        &["account", "password", "--end-sessions"],
        &[("FUGUE_NEW_PASSWORD", NEW_PASSWORD)],
    ))
    .await;
    assert!(ok && out.contains("password changed"), "{out}{err}");
    assert_problem(
        login_with(&server, "alice", PASSWORD, None, "old").await,
        401,
        ErrorCode::InvalidCredentials,
    );
    let other = login_with(&server, "alice", NEW_PASSWORD, None, "other")
        .await
        .unwrap();

    // Deleting asks first; without a confirmation nothing happens.
    let new_pw = [("FUGUE_PASSWORD", NEW_PASSWORD)];
    let (ok, _, err) = output(run(&["account", "delete"], &new_pw)).await;
    assert!(!ok && err.contains("not confirmed"), "{err}");
    other.sessions().await.unwrap();
    let (ok, out, err) = output(run(&["account", "delete", "--yes"], &new_pw)).await;
    assert!(ok && out.contains("deleted alice@localhost"), "{out}{err}");
    assert_problem(other.sessions().await, 401, ErrorCode::InvalidToken);
    assert_problem(
        server
            .client()
            .register("Alice", PASSWORD, None, None)
            .await,
        409,
        ErrorCode::LocalNameTaken,
    );
    // The key store forgot the account.
    let (ok, _, err) = output(run(&["account", "whoami"], &[])).await;
    assert!(!ok && err.contains("not logged in"), "{err}");
}

#[tokio::test]
async fn the_federation_login_command_signs_in_and_keeps_the_token() {
    let (alpha, beta) = federated_pair().await;
    alpha
        .client()
        .register("alice", PASSWORD, None, None)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let keystore = dir.path().join("keystore.json");
    let (alpha_url, path) = (alpha.url.clone(), keystore.clone());
    let fugue = move |args: &[&str]| {
        let mut cmd = fugue_as_client(&alpha_url, &path);
        cmd.args(args);
        blocking(move || cmd.output().unwrap())
    };
    let login = fugue(&["account", "login", "alice", "--session-id", "cli"]).await;
    assert!(login.status.success(), "{login:?}");

    // beta.test is at a loopback address: its trials name its domain, not that address.
    let refused = fugue(&["federation", "login", &beta.url]).await;
    assert!(!refused.status.success(), "{refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("does not name 127.0.0.1"), "{stderr}");
    let out = fugue(&["federation", "login", &beta.url, "--domain", "beta.test"]).await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "signed in on {} as alice@alpha.test (session cli)\n",
            beta.url
        )
    );
    let store = KeyStore::load(&keystore).unwrap();
    let account = store.current().unwrap();
    assert_eq!(
        account.foreign_tokens.keys().collect::<Vec<_>>(),
        [&beta.url]
    );
    let home: Session = account.session(None).unwrap();
    let foreign = account.foreign_session(&beta.url).unwrap().unwrap();
    foreign.update_cert(&home).await.unwrap();

    let list = fugue(&["federation", "list"]).await;
    assert_eq!(
        String::from_utf8_lossy(&list.stdout),
        format!("{}\n", beta.url)
    );
    let own = fugue(&["federation", "login", &alpha.url]).await;
    assert!(!own.status.success());
    let stderr = String::from_utf8_lossy(&own.stderr);
    assert!(stderr.contains("LOCAL_ACTOR"), "{stderr}");
}

/// `fugue events` prints a line per event (`--json`: the envelope); SIGINT ends it with
/// success.
#[tokio::test]
async fn the_events_command_prints_events_and_stops_on_ctrl_c() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let keystore = dir.path().join("keystore.json");
    let url = server.url.clone();
    let fugue = move || fugue_as_client(&url, &keystore);
    // One account per run: a second run of the same session would first catch up on the
    // events the first run saw but never acknowledged.
    for (name, json) in [("alice", false), ("bob", true)] {
        server
            .client()
            .register(name, PASSWORD, None, None)
            .await
            .unwrap();
        let mut login = fugue();
        login.args(["account", "login", name, "--session-id", "cli"]);
        let login = blocking(move || login.output().unwrap()).await;
        assert!(login.status.success(), "{login:?}");
        let mut args = vec!["events"];
        if json {
            args.push("--json");
        }
        let mut cmd = fugue();
        cmd.args(&args);
        // The child has connected once stderr says so.
        let mut events = Watcher::start(cmd, "following the events").await;

        let other = server.login(name, "other").await.unwrap();
        let line = events.next().await;
        let serial = IdCert::parse(other.cert_pem().as_bytes()).unwrap().serial;
        if json {
            let value: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert_eq!(value["op"], 3, "{line}");
            assert_eq!(value["d"]["cert"], other.cert_pem(), "{line}");
        } else {
            assert_eq!(
                line,
                format!("new session other {name}@localhost cert serial {serial}")
            );
        }

        let status = events.interrupt().await;
        assert!(status.success(), "{status:?}");
    }
}

#[tokio::test]
async fn the_services_commands_work_end_to_end() {
    let server = TestServer::start().await;
    server
        .client()
        .register("alice", PASSWORD, None, None)
        .await
        .unwrap();
    let home = tempfile::tempdir().unwrap();
    let keystore = home.path().join("ks.json");
    let env: Vec<(String, String)> = vec![
        ("FUGUE_SERVER".into(), server.url.clone()),
        ("FUGUE_KEYSTORE".into(), keystore.to_str().unwrap().into()),
        ("FUGUE_PASSWORD".into(), PASSWORD.into()),
    ];
    let cli = |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let env = env.clone();
        // The server runs on this test's runtime: wait for the child off it.
        tokio::task::spawn_blocking(move || {
            crate::support::fugue()
                .args(&args)
                .envs(env)
                .output()
                .unwrap()
        })
    };
    let ok = |output: std::process::Output, what: &str| {
        let err = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{what} failed: {err}");
        String::from_utf8(output.stdout).unwrap()
    };

    ok(cli(&["account", "login", "alice"]).await.unwrap(), "login");
    let out = ok(
        cli(&["services", "add", "chat", "https://a.example"])
            .await
            .unwrap(),
        "add",
    );
    assert!(out.contains("https://a.example  (primary)"), "{out}");
    ok(
        cli(&["services", "add", "chat", "https://b.example"])
            .await
            .unwrap(),
        "add second",
    );
    // --primary replaces the primary one: the command supplies the password when asked.
    let out = ok(
        cli(&["services", "add", "chat", "https://c.example", "--primary"])
            .await
            .unwrap(),
        "add --primary",
    );
    assert!(out.contains("https://c.example  (primary)"), "{out}");
    let out = ok(cli(&["services", "list"]).await.unwrap(), "list");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        vec![
            "chat  https://c.example  (primary)",
            "chat  https://a.example",
            "chat  https://b.example"
        ],
        "{out}"
    );

    let out = ok(
        cli(&["services", "primary", "chat", "https://b.example"])
            .await
            .unwrap(),
        "primary",
    );
    assert!(
        out.contains("no longer primary: chat  https://c.example"),
        "{out}"
    );
    assert!(
        out.contains("https://b.example is now the primary provider of chat"),
        "{out}"
    );

    let out = ok(
        cli(&["services", "remove", "chat", "https://b.example"])
            .await
            .unwrap(),
        "remove primary",
    );
    assert!(
        out.contains("https://a.example is now the primary provider of chat"),
        "{out}"
    );
    // Discovery needs no login: --server and a FID.
    let out = ok(
        cli(&[
            "services",
            "discover",
            "alice@localhost",
            "chat",
            "--primary",
        ])
        .await
        .unwrap(),
        "discover",
    );
    assert_eq!(out.trim(), "chat  https://a.example  (primary)", "{out}");
    let out = ok(
        cli(&["services", "list", "alice@localhost"]).await.unwrap(),
        "list FID",
    );
    assert_eq!(out.lines().count(), 2, "{out}");

    // A refusal is one line on stderr with the stable code.
    let output = cli(&["services", "add", "chat", "https://a.example"])
        .await
        .unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8(output.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("SERVICE_EXISTS"), "{err}");
    let output = cli(&["services", "discover", "nobody@localhost"])
        .await
        .unwrap();
    assert!(
        String::from_utf8(output.stderr)
            .unwrap()
            .contains("ACTOR_NOT_FOUND")
    );
}
