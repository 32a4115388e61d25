//! End-to-end encryption from the terminal: `fugue channel encrypt`, `fugue join`,
//! `fugue requests`, `fugue devices`, `send`/`read` in an encrypted channel, and
//! `fugue dm --encrypted`, between two people with key stores of their own; the device's
//! MLS state kept private beside the key store, so a new process reads what an earlier one
//! opened.

use std::os::unix::fs::PermissionsExt;

use fugue_testkit::TestServer;

use crate::chat::{Person, word_after};

#[tokio::test]
async fn an_encrypted_channel_and_dm_from_the_terminal() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let alice = Person::new(&server, dir.path(), "alice").await;
    let bob = Person::new(&server, dir.path(), "bob").await;
    let created = alice.ok(&["guild", "create", "club", "--public"]).await;
    let guild = word_after(&created, "created guild ");
    let channel = word_after(&created, "channel ");
    bob.ok(&["guild", "join", &guild]).await;

    let encrypted = alice.ok(&["channel", "encrypt", &channel]).await;
    assert!(encrypted.contains("is encrypted with group"), "{encrypted}");
    // A plain send is now an encrypted one; bob is not in the group yet.
    let (ok, _, err) = bob.run(&["send", &channel, "too early"]).await;
    assert!(!ok && err.contains("fugue join"), "{err}");
    let asked = bob.ok(&["join", &channel]).await;
    let request = asked
        .split("(request ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .unwrap_or_else(|| panic!("{asked}"))
        .to_owned();
    let listed = alice.ok(&["requests", "list", &channel]).await;
    assert!(
        listed.contains(&format!("join request {request} of bob@")),
        "{listed}"
    );
    let accepted = alice.ok(&["requests", "accept", &channel, &request]).await;
    assert!(accepted.contains("Accepted"), "{accepted}");

    let sent = bob.ok(&["send", &channel, "the cake is in the oven"]).await;
    assert!(sent.starts_with("sent encrypted message"), "{sent}");
    alice.ok(&["send", &channel, "do not tell anyone"]).await;
    for reader in [&alice, &bob] {
        let read = reader.ok(&["read", &channel]).await;
        assert!(
            read.contains("🔒 the cake is in the oven") && read.contains("🔒 do not tell anyone"),
            "{read}"
        );
        assert!(read.lines().all(|l| l.starts_with('✓')), "{read}");
    }
    // Read again by a new process: the texts come from the device's state.
    let again = bob.ok(&["read", &channel]).await;
    assert!(again.contains("🔒 do not tell anyone"), "{again}");
    let devices = bob.ok(&["devices", &channel]).await;
    assert!(
        devices.contains("alice@") && devices.contains("bob@") && devices.lines().count() == 2,
        "{devices}"
    );

    // An encrypted DM: alice to bob, read by bob.
    let bob_fid = format!("bob@{}", server.domain);
    let alice_fid = format!("alice@{}", server.domain);
    let dm = alice
        .ok(&["dm", &bob_fid, "psst, only you", "--encrypted"])
        .await;
    assert!(dm.starts_with("sent encrypted message"), "{dm}");
    let read = bob.ok(&["dm", &alice_fid]).await;
    assert!(read.contains("🔒 psst, only you"), "{read}");

    // An encrypted group: bob posts, alice reads.
    let made = alice
        .ok(&["group", "create", "--encrypted", &bob_fid])
        .await;
    let group = word_after(&made, "created group ");
    assert!(made.contains("is encrypted with MLS group"), "{made}");
    bob.ok(&["send", &group, "group secret"]).await;
    let read = alice.ok(&["read", &group]).await;
    assert!(read.contains("🔒 group secret"), "{read}");

    // bob's packages run low (others claimed them): his next command uploads more.
    let alices = fugue_client::KeyStore::load(&alice.keystore)
        .unwrap()
        .current()
        .unwrap()
        .session(None)
        .unwrap();
    let bob_id: fugue_proto::FederationId = bob_fid.parse().unwrap();
    for _ in 0..12 {
        alices.chat().claim_key_packages(&bob_id).await.unwrap();
    }
    let (ok, _, err) = bob.run(&["read", &channel]).await;
    assert!(ok && err.contains("KeyPackages of this device"), "{err}");
    assert_eq!(err.matches("uploaded").count(), 1, "{err}");
    // Topped up to 20 ordinary packages: the next claims each get one (the throttle allows
    // 30 an hour per requester).
    for _ in 0..8 {
        let kps = alices.chat().claim_key_packages(&bob_id).await.unwrap();
        assert!(!kps[0].last_resort);
    }

    // The state files are private.
    let states: Vec<_> = std::fs::read_dir(dir.path().join("mls"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(states.len(), 2);
    for s in states {
        let mode = s.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", s.path().display());
    }
}
