//! DMs and group conversations from the command line (`fugue dm`, `fugue dms`, `fugue
//! group`) and the SDK under them: a DM goes to the recipient's chat server and reads as
//! one conversation with both directions verified, also across two servers; a group is
//! created, grown, used and handed on when its owner leaves. What the server allows is
//! tested in `crates/server/tests/it/conversations.rs`.

use std::time::Duration;

use fugue_client::{ChatEvent, Verdict};
use fugue_proto::FederationId;
use fugue_testkit::TestServer;

use crate::chat::{Person, sent_id, text, word_after};
use crate::support::Watcher;

fn fid(s: &str) -> FederationId {
    s.parse().unwrap()
}

#[tokio::test]
async fn a_dm_between_two_local_people_reads_as_one_conversation() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let alice = Person::new(&server, dir.path(), "alice").await;
    let bob = Person::new(&server, dir.path(), "bob").await;

    let (ok, out, err) = alice.run(&["dm", "bob@localhost"]).await;
    assert!(
        ok && out.contains("no messages with bob@localhost"),
        "{err}{out}"
    );

    let sent = alice.ok(&["dm", "bob@localhost", "hi bob"]).await;
    let hello = sent_id(&sent);
    let conversation = word_after(
        &sent,
        &format!("sent message {hello} to bob@localhost (DM "),
    );
    let answer = bob.ok(&["dm", "alice@localhost", "hi alice"]).await;
    let reply = sent_id(&answer);
    assert!(reply > hello);
    // Both live on the one server: the same conversation either way.
    assert!(
        answer.contains(&format!("(DM {conversation} on localhost)")),
        "{answer}"
    );

    for (person, read) in [
        (&alice, vec!["dm", "bob@localhost"]),
        (&bob, vec!["dms", "read", "alice@localhost"]),
    ] {
        let read = person.ok(&read).await;
        let lines: Vec<&str> = read.lines().collect();
        assert_eq!(lines.len(), 2, "{read}");
        assert!(
            lines[0].starts_with("✓ ") && lines[0].ends_with(&format!("[{hello}]  hi bob")),
            "{read}"
        );
        assert!(
            lines[1].starts_with("✓ ") && lines[1].ends_with(&format!("[{reply}]  hi alice")),
            "{read}"
        );
    }
    // One at a time, from the newest back, with the way to the page before.
    let (ok, newest, err) = alice.run(&["dm", "bob@localhost", "--limit", "1"]).await;
    assert!(
        ok && newest.ends_with(&format!("[{reply}]  hi alice\n")),
        "{newest}"
    );
    assert!(
        err.contains(&format!("older messages: --before {reply}")),
        "{err}"
    );
    let before = reply.to_string();
    let older = [
        "dms",
        "read",
        "bob@localhost",
        "--limit",
        "1",
        "--before",
        &before,
    ];
    let older = alice.ok(&older).await;
    assert!(older.ends_with(&format!("[{hello}]  hi bob\n")), "{older}");
    let before = hello.to_string();
    let oldest = alice
        .ok(&["dm", "bob@localhost", "--before", &before])
        .await;
    assert_eq!(oldest, "no older messages with bob@localhost\n");
    // A page out of range is refused, not cut short without a word.
    let (ok, _, err) = alice.run(&["dm", "bob@localhost", "--limit", "101"]).await;
    assert!(!ok && err.contains("limit must be 1 to 100"), "{err}");

    let listed = alice.ok(&["dms", "list"]).await;
    assert!(
        listed.starts_with(&format!("DM {conversation} with bob@localhost")),
        "{listed}"
    );
    // Unread counts name a DM by its peer.
    assert_eq!(
        alice.ok(&["unread"]).await,
        format!("{conversation}  DM with bob@localhost  1 unread, 0 mentions\n")
    );
    // The DM is a channel like any other for `fugue read`.
    let read = bob.ok(&["read", &conversation]).await;
    assert_eq!(read.lines().count(), 2, "{read}");
    // Someone else's DM is not there for a third person.
    let carol = Person::new(&server, dir.path(), "carol").await;
    let (ok, _, err) = carol.run(&["read", &conversation]).await;
    assert!(!ok && err.contains("404"), "{err}");
    let (ok, _, err) = alice.run(&["dm", "nobody@localhost", "hello?"]).await;
    assert!(!ok && err.contains("404"), "{err}");
}

/// Alice of alpha.test writes to bob of beta.test and bob answers: `fugue dm` finds the
/// recipient's chat server through its service discovery and signs in there by key trial
/// (kept in the key store), so alice's message lives on beta and bob's on alpha; each reads
/// both as one conversation, every message verified.
#[tokio::test]
async fn a_dm_across_two_servers_goes_to_the_recipients_server_both_ways() {
    let (alpha, beta) = fugue_testkit::two_way_pair().await;
    let dir = tempfile::tempdir().unwrap();
    let alice = Person::new(&alpha, dir.path(), "alice").await;
    let bob = Person::new(&beta, dir.path(), "bob").await;
    let beta_home = format!("beta.test={}", beta.url);
    let alpha_home = format!("alpha.test={}", alpha.url);

    let sent = alice
        .ok(&["dm", "bob@beta.test", "hello across", "--home", &beta_home])
        .await;
    let hello = sent_id(&sent);
    let on_beta = word_after(
        &sent,
        &format!("sent message {hello} to bob@beta.test (DM "),
    );
    assert!(sent.contains("on beta.test)"), "{sent}");
    let servers = alice.ok(&["federation", "list"]).await;
    assert!(servers.contains(&beta.url), "{servers}");

    let answer = bob
        .ok(&[
            "dm",
            "alice@alpha.test",
            "hello back",
            "--home",
            &alpha_home,
        ])
        .await;
    let reply = sent_id(&answer);
    assert!(answer.contains("on alpha.test)"), "{answer}");
    let on_alpha = word_after(
        &answer,
        &format!("sent message {reply} to alice@alpha.test (DM "),
    );

    // A kept sign-in that ended there is replaced by a new one.
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&alice.keystore).unwrap()).unwrap();
    let token = |store: &serde_json::Value| {
        store["accounts"][0]["foreign_tokens"][beta.url.as_str()]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let kept = token(&stored);
    let mut ended = stored.clone();
    ended["accounts"][0]["foreign_tokens"][beta.url.as_str()] = "no-longer-valid".into();
    std::fs::write(&alice.keystore, ended.to_string()).unwrap();
    // A second message reuses the same conversation.
    let again = alice
        .ok(&["dm", "bob@beta.test", "still there?", "--home", &beta_home])
        .await;
    let later = sent_id(&again);
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&alice.keystore).unwrap()).unwrap();
    assert_ne!(token(&stored), kept);
    assert_ne!(token(&stored), "no-longer-valid");
    assert!(
        again.contains(&format!("(DM {on_beta} on beta.test)")),
        "{again}"
    );

    let expected = [
        format!("[{hello}]  hello across"),
        format!("[{reply}]  hello back"),
        format!("[{later}]  still there?"),
    ];
    for (person, peer, home) in [
        (&alice, "bob@beta.test", &beta_home),
        (&bob, "alice@alpha.test", &alpha_home),
    ] {
        let read = person.ok(&["dm", peer, "--home", home]).await;
        let lines: Vec<&str> = read.lines().collect();
        assert_eq!(lines.len(), 3, "{read}");
        for (line, ending) in lines.iter().zip(&expected) {
            assert!(
                line.starts_with("✓ ") && line.ends_with(ending.as_str()),
                "{read}"
            );
        }
    }
    // Each server holds one direction.
    let listed = bob.ok(&["dms", "list"]).await;
    assert!(
        listed.contains(&format!("DM {on_beta} with alice@alpha.test")),
        "{listed}"
    );
    let listed = alice.ok(&["dms", "list"]).await;
    assert!(
        listed.contains(&format!("DM {on_alpha} with bob@beta.test")),
        "{listed}"
    );
    let read = bob.ok(&["read", &on_beta, "--home", &alpha_home]).await;
    assert_eq!(read.lines().count(), 2, "{read}");
    assert!(
        read.lines()
            .all(|l| l.starts_with("✓ ") && l.contains("alice@alpha.test")),
        "{read}"
    );
}

#[tokio::test]
async fn a_group_is_created_used_and_handed_on_when_its_owner_leaves() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let alice = Person::new(&server, dir.path(), "alice").await;
    let bob = Person::new(&server, dir.path(), "bob").await;
    let carol = Person::new(&server, dir.path(), "carol").await;

    let created = alice
        .ok(&["group", "create", "--name", "book club", "bob@localhost"])
        .await;
    let group = word_after(&created, "created group ");
    assert!(
        created.contains("\"book club\" (owner alice@localhost; alice@localhost, bob@localhost)"),
        "{created}"
    );
    // Only the owner adds members.
    let (ok, _, err) = bob.run(&["group", "add", &group, "carol@localhost"]).await;
    assert!(!ok && err.contains("403"), "{err}");
    alice.ok(&["group", "add", &group, "carol@localhost"]).await;
    let listed = carol.ok(&["group", "list"]).await;
    assert!(
        listed.contains(&format!("group {group} \"book club\"")),
        "{listed}"
    );

    let hello = sent_id(&bob.ok(&["send", &group, "hello group"]).await);
    let read = carol.ok(&["read", &group]).await;
    assert!(
        read.starts_with("✓ ")
            && read
                .trim_end()
                .ends_with(&format!("[{hello}]  hello group")),
        "{read}"
    );
    let renamed = carol.ok(&["group", "rename", &group, "readers"]).await;
    assert!(renamed.contains("\"readers\""), "{renamed}");

    alice.ok(&["group", "leave", &group]).await;
    let members = bob.ok(&["group", "members", &group]).await;
    assert_eq!(
        members.lines().collect::<Vec<_>>(),
        ["bob@localhost  (owner)", "carol@localhost"],
        "{members}"
    );
    let (ok, _, err) = alice.run(&["read", &group]).await;
    assert!(!ok && err.contains("404"), "{err}");
    // The new owner hands it on and the old one can no longer remove anyone.
    bob.ok(&["group", "owner", &group, "carol@localhost"]).await;
    let (ok, _, err) = bob
        .run(&["group", "remove", &group, "carol@localhost"])
        .await;
    assert!(!ok && err.contains("403"), "{err}");
    carol
        .ok(&["group", "remove", &group, "bob@localhost"])
        .await;
    let members = carol.ok(&["group", "members", &group]).await;
    assert_eq!(members.trim_end(), "carol@localhost  (owner)", "{members}");
}

/// `fugue events` prints conversation events as lines (the server refuses control
/// characters in a group's name; the lines pass the terminal filter anyway).
#[tokio::test]
async fn the_events_command_shows_conversation_events() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let alice = Person::new(&server, dir.path(), "alice").await;
    let bob = Person::new(&server, dir.path(), "bob").await;

    let mut events = Watcher::start(bob.command(&["events"]), "following the events").await;

    let created = alice
        .ok(&["group", "create", "--name", "club", "bob@localhost"])
        .await;
    let group = word_after(&created, "created group ");
    alice.ok(&["group", "leave", &group]).await;
    let seen = events.until(|l| l.contains("owner now")).await;
    let joined = format!(
        "you are now in group {group} \"club\" (owner alice@localhost; alice@localhost, bob@localhost)"
    );
    assert!(seen.contains(&joined), "{seen:?}");
    assert!(
        seen.contains(&format!(
            "conversation {group}: alice@localhost left or was removed"
        )),
        "{seen:?}"
    );
    assert_eq!(
        seen.last().unwrap(),
        &format!("group {group}: bob@localhost is the owner now (was alice@localhost)")
    );

    let status = events.interrupt().await;
    assert!(status.success(), "{status:?}");
}

/// The SDK: a DM across two servers read from both sides' chat servers as one
/// conversation, and the conversation events of a group over the gateway.
#[tokio::test]
async fn the_sdk_merges_both_sides_of_a_dm_and_sees_conversation_events() {
    let (alpha, beta) = fugue_testkit::two_way_pair().await;
    let alice = alpha.register("alice").await;
    let bob = beta.register("bob").await;
    let with_homes = |servers: fugue_client::DmServers| fugue_client::DmServers {
        theirs: servers
            .theirs
            .with_home_server(alpha.domain.clone(), alpha.client())
            .with_home_server(beta.domain.clone(), beta.client()),
        ours: servers
            .ours
            .with_home_server(alpha.domain.clone(), alpha.client())
            .with_home_server(beta.domain.clone(), beta.client()),
        ..servers
    };

    let (alice_dm, signed_in) = alice
        .dm_servers(&fid("bob@beta.test"), &beta.client(), &[])
        .await
        .unwrap();
    assert_eq!(signed_in.len(), 1);
    assert!(!alice_dm.same_server());
    let alice_dm = with_homes(alice_dm);
    let (bob_dm, _) = bob
        .dm_servers(&fid("alice@alpha.test"), &alpha.client(), &[])
        .await
        .unwrap();
    let bob_dm = with_homes(bob_dm);

    // Ids order messages by each server's millisecond clock: two servers' messages within
    // one millisecond have no order between them, so the sends here are a few apart.
    let apart = || tokio::time::sleep(std::time::Duration::from_millis(5));
    let one = alice_dm.send(text("one")).await.unwrap();
    assert_eq!(one.server, beta.domain);
    apart().await;
    let two = bob_dm.send(text("two")).await.unwrap();
    assert_eq!(two.server, alpha.domain);
    assert_ne!(one.conversation.id, two.conversation.id);
    apart().await;
    let three = alice_dm.send(text("three")).await.unwrap();
    assert_eq!(three.conversation.id, one.conversation.id);

    let contents = |page: &[fugue_client::DmMessage]| -> Vec<String> {
        page.iter().map(|m| m.message.content.clone()).collect()
    };
    for dm in [&alice_dm, &bob_dm] {
        let merged = dm.read(None, None).await.unwrap();
        assert_eq!(contents(&merged), ["one", "two", "three"]);
        // Paged across both servers: the newest two, then what came before the older one.
        let newest = dm.read(Some(2), None).await.unwrap();
        assert_eq!(contents(&newest), ["two", "three"]);
        let before = dm.read(Some(2), Some(newest[0].message.id)).await.unwrap();
        assert_eq!(contents(&before), ["one"]);
        assert!(
            merged.iter().all(|m| m.verdict == Verdict::Verified),
            "{merged:?}"
        );
        let servers: Vec<String> = merged.iter().map(|m| m.server.to_string()).collect();
        assert_eq!(servers, ["beta.test", "alpha.test", "beta.test"]);
    }
    // A kept sign-in is used instead of a new key trial.
    let (_, again) = alice
        .dm_servers(&fid("bob@beta.test"), &beta.client(), &signed_in)
        .await
        .unwrap();
    assert!(again.is_empty());

    // Group events over the gateway: bob is added, then becomes owner when alice leaves.
    let carol = beta.register("carol").await;
    let bob_gw = bob
        .gateway(fugue_client::GatewayOptions::default())
        .await
        .unwrap();
    bob_gw.subscribe_chat().await.unwrap();
    let mut bob_gw = bob_gw;
    let carol_chat = carol.chat();
    let group = carol_chat
        .create_group(Some("g".into()), vec![fid("bob@beta.test")])
        .await
        .unwrap();
    carol_chat.leave_conversation(group.id).await.unwrap();
    let (mut joined, mut owner) = (false, false);
    while !(joined && owner) {
        let event = tokio::time::timeout(Duration::from_secs(10), bob_gw.recv())
            .await
            .unwrap()
            .unwrap();
        match event.chat() {
            Some(ChatEvent::ConversationJoined(c)) if c.id == group.id => joined = true,
            Some(ChatEvent::ConversationOwner(o)) if o.conversation_id == group.id => {
                assert_eq!(o.owner_id, fid("bob@beta.test"));
                assert_eq!(o.previous, Some(fid("carol@beta.test")));
                owner = true;
            }
            Some(ChatEvent::Unknown(e) | ChatEvent::Malformed { envelope: e, .. }) => {
                panic!("unparsed chat event {e:?}")
            }
            _ => {}
        }
    }
    bob_gw.close().await;
}
