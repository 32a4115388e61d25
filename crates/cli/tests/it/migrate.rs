//! `fugue migrate` as child processes: the old identity asks for a redirect proving its
//! keys, the new one accepts, and lookups of the old identity (here `fugue services
//! discover`) arrive at the new one.

use fugue_testkit::{PASSWORD, TestServer};

use crate::media::Cli;

#[tokio::test]
async fn an_identity_moves_with_a_redirect_both_sides_confirm() {
    let server = TestServer::start().await;
    for name in ["alice", "alice2"] {
        server
            .client()
            .register(name, PASSWORD, None, None)
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let cli = |name: &str| Cli {
        url: server.url.clone(),
        keystore: dir.path().join(format!("{name}.json")),
        cwd: dir.path().to_owned(),
    };
    let (old, new) = (cli("alice"), cli("alice2"));
    old.ok(&["account", "login", "alice"]).await;
    new.ok(&["account", "login", "alice2"]).await;
    // The old identity signed a message: that key must be proven.
    let out = old.ok(&["guild", "create", "club"]).await;
    let channel = out
        .lines()
        .find_map(|l| l.strip_prefix("channel "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    old.ok(&["send", &channel, "moving soon"]).await;
    new.ok(&["services", "add", "chat", "https://chat.new.example"])
        .await;

    let asked = old.ok(&["migrate", "redirect", "alice2@localhost"]).await;
    assert!(asked.contains("asked for (1 keys proven)"), "{asked}");
    let before = old.ok(&["services", "discover", "alice@localhost"]).await;
    assert!(!before.contains("chat.new.example"), "{before}");
    let accepted = new.ok(&["migrate", "accept", "alice@localhost"]).await;
    assert!(
        accepted.contains("alice@localhost now redirects to alice2@localhost"),
        "{accepted}"
    );
    // Lookups of the old identity follow the redirect to the new one.
    let after = old.ok(&["services", "discover", "alice@localhost"]).await;
    assert!(after.contains("chat.new.example"), "{after}");

    new.ok(&["migrate", "withdraw", "alice@localhost"]).await;
    old.ok(&["migrate", "cancel", "alice2@localhost"]).await;
    let (ok, _, err) = old.run(&["migrate", "cancel", "alice2@localhost"]).await;
    assert!(!ok && err.contains("no redirect"), "{err}");

    // Re-signing: the new identity hands over its public key, the old one grants, the new
    // one re-signs; the message is then the new identity's and verifies as such.
    let key = new.ok(&["migrate", "public-key"]).await;
    assert!(key.starts_with("-----BEGIN PUBLIC KEY-----"), "{key}");
    std::fs::write(dir.path().join("new.pem"), &key).unwrap();
    let granted = old
        .ok(&["migrate", "grant", "alice2@localhost", "--key", "new.pem"])
        .await;
    assert!(granted.contains("with 1 of your keys"), "{granted}");
    let resigned = new.ok(&["migrate", "resign"]).await;
    assert!(resigned.starts_with("re-signed 1 messages"), "{resigned}");
    let again = new.ok(&["migrate", "resign"]).await;
    assert!(again.starts_with("re-signed 0 messages"), "{again}");
    let read = old.ok(&["read", &channel]).await;
    let line = read.lines().find(|l| l.contains("moving soon")).unwrap();
    assert!(line.starts_with("✓"), "{line}");
    assert!(line.contains("alice2@localhost"), "{line}");
}
