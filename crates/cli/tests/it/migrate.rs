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

    let asked = old.ok(&["migrate", "start", "alice2@localhost"]).await;
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

#[tokio::test]
async fn a_person_takes_dms_and_files_to_a_new_server_and_clears_the_old_one() {
    let (alpha, beta) = fugue_testkit::two_way_pair().await;
    let dir = tempfile::tempdir().unwrap();
    let alice = Person::new(&alpha, dir.path(), "alice").await;
    let carol = Person::new(&alpha, dir.path(), "carol").await;
    let alice2 = Person::new(&beta, dir.path(), "alice2").await;
    let alpha_home = format!("alpha.test={}", alpha.url);
    alice.ok(&["dm", "carol@alpha.test", "hi carol"]).await;
    let note = dir.path().join("note.txt");
    std::fs::write(&note, "remember").unwrap();
    alice
        .ok(&["upload", note.to_str().unwrap(), "--id", "note.txt"])
        .await;

    let archive = dir.path().join("alice.tar.gz");
    let exported = alice
        .ok(&["migrate", "export", archive.to_str().unwrap()])
        .await;
    assert!(
        exported.contains("1 messages, 1 files, 1 certificates"),
        "{exported}"
    );
    assert!(exported.contains("-alice@alpha.test.tar.gz"), "{exported}");
    for _ in 0..2 {
        // Importing twice stores nothing twice.
        let imported = alice2
            .ok(&["migrate", "import", archive.to_str().unwrap()])
            .await;
        assert!(
            imported.starts_with("import done: 1 messages, 1 files"),
            "{imported}"
        );
    }
    // The DM, now alice2's on beta, signed by her and verified (✓).
    let conversation = alice2
        .ok(&["dm", "carol@alpha.test", "--home", &alpha_home])
        .await;
    let line = conversation
        .lines()
        .find(|l| l.contains("hi carol"))
        .unwrap_or_else(|| panic!("{conversation}"));
    assert!(
        line.starts_with('✓') && line.contains("alice2@beta.test"),
        "{conversation}"
    );
    let old_dm = carol.ok(&["dm", "alice@alpha.test"]).await;
    assert!(old_dm.contains("hi carol"), "{old_dm}");
    let resources = alice2.ok(&["resources", "list"]).await;
    assert!(resources.contains("note.txt"), "{resources}");

    let finished = alice.ok(&["migrate", "finish"]).await;
    assert!(finished.starts_with("deleted your data on"), "{finished}");
    let gone = alice.ok(&["resources", "list"]).await;
    assert!(!gone.contains("note.txt"), "{gone}");
    // The old DM lost alice's message; the imported one stays.
    let old_dm = carol.ok(&["dm", "alice@alpha.test"]).await;
    assert!(!old_dm.contains("hi carol"), "{old_dm}");
    let after = alice2
        .ok(&["dm", "carol@alpha.test", "--home", &alpha_home])
        .await;
    assert_eq!(after.matches("hi carol").count(), 1, "{after}");
}
