//! `fugue migrate` as child processes: the old identity asks for a redirect proving its
//! keys, the new one accepts, and lookups of the old identity (here `fugue services
//! discover`) arrive at the new one.

use fugue_testkit::TestServer;

use crate::chat::{Person, word_after};

#[tokio::test]
async fn an_identity_moves_with_a_redirect_both_sides_confirm() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let old = Person::new(&server, dir.path(), "alice").await;
    let new = Person::new(&server, dir.path(), "alice2").await;
    // The old identity signed a message: that key must be proven.
    let out = old.ok(&["guild", "create", "club"]).await;
    let channel = word_after(&out, "channel ");
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
    let pem = dir.path().join("new.pem");
    std::fs::write(&pem, &key).unwrap();
    let granted = old
        .ok(&[
            "migrate",
            "grant",
            "alice2@localhost",
            "--key",
            pem.to_str().unwrap(),
        ])
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
