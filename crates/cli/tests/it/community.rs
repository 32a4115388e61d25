//! What surrounds messages, from the command line: two people react (signed), list and take
//! back reactions, pin and unpin, see unread and mention counts go up and down, set a
//! profile and a status the other one reads, and watch it all live in `fugue events`. Then
//! the SDK under the commands: a signed reaction verifies on the server and a tampered one
//! is refused; the community events arrive typed. What the server does with these requests
//! is tested in `crates/server/tests/it/community.rs`.

use std::time::{Duration, Instant};

use fugue_client::{ChatEvent, Verdict};
use fugue_proto::api::update_profile;
use fugue_proto::community::SignedReaction;
use fugue_proto::{ErrorCode, FederationId};
use fugue_testkit::TestServer;

use crate::chat::{Person, guild_of_two, sent_id, text, word_after};
use crate::support::Watcher;

/// Who a list of reactions names, in its order.
fn fids(reactions: &[SignedReaction]) -> Vec<FederationId> {
    reactions.iter().map(|r| r.fid.clone()).collect()
}

/// A public guild of `owner` that `member` joined; its id and its `general` channel.
async fn club(owner: &Person, member: &Person) -> (String, String) {
    let created = owner.ok(&["guild", "create", "club", "--public"]).await;
    let guild = word_after(&created, "created guild ");
    let channel = word_after(&created, "channel ");
    member.ok(&["guild", "join", &guild]).await;
    (guild, channel)
}

/// `fugue events` of `person`, connected.
async fn events(person: &Person) -> Watcher {
    Watcher::start(person.command(&["events"]), "following the events").await
}

/// Runs `args` until they print `expected` (presence follows connections a moment later).
async fn eventually(person: &Person, args: &[&str], expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = person.ok(args).await;
        if out == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "fugue {args:?} printed {out:?}, not {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn two_people_react_pin_and_keep_track_of_what_they_read() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let alice = Person::new(&server, dir.path(), "alice").await;
    let bob = Person::new(&server, dir.path(), "bob").await;
    let (guild, c) = club(&alice, &bob).await;
    let mut bob_events = events(&bob).await;
    let hello = sent_id(&alice.ok(&["send", &c, "hello"]).await).to_string();

    // Reactions, each signed by its author: listed, summed up in history, the most frequent
    // first. (The server orders reactors by the second they reacted in, then by account, so
    // two in one second may come either way.)
    let reacted = alice.ok(&["react", &c, &hello, "👍"]).await;
    assert_eq!(reacted, format!("reacted 👍 to message {hello}\n"));
    alice.ok(&["react", &c, &hello, ":party:"]).await;
    bob.ok(&["react", &c, &hello, "👍"]).await;
    // Again: nothing changes, nothing is announced.
    alice.ok(&["react", &c, &hello, ":party:"]).await;
    let who = bob.ok(&["reactions", &c, &hello, "👍"]).await;
    // Each checked again: signed by its author, vouched for by the author's home server.
    let mut sorted: Vec<&str> = who.lines().collect();
    sorted.sort_unstable();
    assert_eq!(sorted, ["✓ alice@localhost", "✓ bob@localhost"], "{who}");
    let all = bob.ok(&["reactions", &c, &hello]).await;
    let names: Vec<&str> = who.lines().map(|l| l.trim_start_matches("✓ ")).collect();
    assert_eq!(
        all,
        format!("👍 2  {}\n:party: 1  alice@localhost\n", names.join(", "))
    );
    let read = bob.ok(&["read", &c]).await;
    assert!(
        read.starts_with("✓ ") && read.ends_with(&format!("[{hello}]  hello [👍 2, :party: 1]\n")),
        "{read}"
    );
    let (ok, _, err) = bob.run(&["react", &c, &hello, "abc"]).await;
    assert!(!ok && err.contains("an emoji is `:name:`"), "{err}");

    let took = bob.ok(&["react", &c, &hello, "👍", "--remove"]).await;
    assert_eq!(took, format!("took back 👍 from message {hello}\n"));
    assert_eq!(
        alice.ok(&["reactions", &c, &hello, "👍"]).await,
        "✓ alice@localhost\n"
    );
    assert_eq!(
        alice.ok(&["reactions", &c, &hello, "🎉"]).await,
        format!("no one reacted 🎉 to message {hello}\n")
    );

    // Pins need the permission to manage messages: the owner has it, bob has not.
    let (ok, _, err) = bob.run(&["pin", &c, &hello]).await;
    assert!(
        !ok && err.contains("you lack the MANAGE_MESSAGES permission"),
        "{err}"
    );
    let pinned = alice.ok(&["pin", &c, &hello]).await;
    assert_eq!(pinned, format!("pinned message {hello} in channel {c}\n"));
    let pins = bob.ok(&["pins", &c]).await;
    assert_eq!(pins.lines().count(), 1, "{pins}");
    assert!(
        pins.starts_with("✓ ")
            && pins.contains("alice@localhost")
            && pins.contains(&format!(
                "[{hello}]  hello [👍 1, :party: 1]  (pinned by alice@localhost "
            )),
        "{pins}"
    );
    alice.ok(&["pin", &c, &hello, "--remove"]).await;
    assert_eq!(bob.ok(&["pins", &c]).await, "no pinned messages\n");

    // Bob saw it all live, in order, each once.
    let seen: Vec<String> = bob_events
        .until(|l| l.contains("unpinned by"))
        .await
        .into_iter()
        .filter(|l| l.contains(&format!("message {hello}")))
        .collect();
    assert_eq!(
        seen,
        [
            format!("channel {c}: alice@localhost reacted 👍 to message {hello}"),
            format!("channel {c}: alice@localhost reacted :party: to message {hello}"),
            format!("channel {c}: bob@localhost reacted 👍 to message {hello}"),
            format!("channel {c}: bob@localhost took back 👍 from message {hello}"),
            format!("channel {c}: message {hello} pinned by alice@localhost"),
            format!("channel {c}: message {hello} unpinned by alice@localhost"),
        ]
    );

    // Unread counts: alice's messages since bob joined, and those that mention him.
    let unread = |n: &str| format!("{c}  #general  (guild {guild})  {n}\n");
    assert_eq!(bob.ok(&["unread"]).await, unread("1 unread, 0 mentions"));
    let mention = sent_id(&alice.ok(&["send", &c, "hey <@bob@localhost>"]).await);
    assert_eq!(bob.ok(&["unread"]).await, unread("2 unread, 1 mention"));
    assert_eq!(alice.ok(&["unread"]).await, "nothing unread\n");

    // `read --mark` marks what it showed; bob's sessions hear of it.
    let (ok, out, err) = bob.run(&["read", &c, "--mark"]).await;
    assert!(ok && out.lines().count() == 2, "{err}{out}");
    assert_eq!(
        err,
        format!("channel {c} read up to message {mention} (0 unread, 0 mentions)\n")
    );
    let marked = format!("you read channel {c} up to message {mention}");
    bob_events.until(move |l| l == marked).await;
    assert_eq!(bob.ok(&["unread"]).await, "nothing unread\n");
    assert_eq!(
        bob.ok(&["unread", "--all"]).await,
        unread("0 unread, 0 mentions")
    );

    let more = sent_id(&alice.ok(&["send", &c, "more"]).await);
    assert_eq!(bob.ok(&["unread"]).await, unread("1 unread, 0 mentions"));
    assert_eq!(
        bob.ok(&["mark-read", &c]).await,
        format!("channel {c} read up to message {more} (0 unread, 0 mentions)\n")
    );
    // Back to an earlier message: what follows it is unread again.
    assert_eq!(
        bob.ok(&["mark-read", &c, &hello]).await,
        format!("channel {c} read up to message {hello} (2 unread, 1 mention)\n")
    );
    let (ok, _, err) = bob.run(&["mark-read", &c, "12345"]).await;
    assert!(!ok && err.contains("12345"), "{err}");

    let status = bob_events.interrupt().await;
    assert!(status.success(), "{status:?}");
}

/// What `fugue presence alice@localhost` tells `who` of her.
async fn alice_as_seen_by(who: &Person) -> String {
    let out = who.ok(&["presence", "alice@localhost"]).await;
    out.strip_prefix("alice@localhost is ")
        .and_then(|rest| rest.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("{out}"))
        .to_owned()
}

#[tokio::test]
async fn profiles_and_presence_are_seen_by_the_other_person() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let alice = Person::new(&server, dir.path(), "alice").await;
    let bob = Person::new(&server, dir.path(), "bob").await;
    let carol = Person::new(&server, dir.path(), "carol").await;
    club(&alice, &bob).await;
    let mut bob_events = events(&bob).await;

    let set = alice
        .ok(&[
            "profile",
            "set",
            "--display-name",
            "Alice",
            "--pronouns",
            "she/her",
            "--about",
            "reads a lot\nand writes",
        ])
        .await;
    assert!(
        set.starts_with("alice@localhost  Alice (she/her)\n"),
        "{set}"
    );
    assert_eq!(
        bob.ok(&["profile", "alice@localhost"]).await,
        "alice@localhost  Alice (she/her)\npresence: offline\nabout: reads a lot\n       and writes\n"
    );
    let seen = bob_events.until(|l| l.contains("profile changed")).await;
    assert_eq!(
        seen.last().unwrap(),
        "alice@localhost's profile changed: Alice (she/her)"
    );
    // Bob's own, while his `fugue events` keeps him online.
    eventually(
        &bob,
        &["profile"],
        "bob@localhost  (no display name)\npresence: online\n",
    )
    .await;
    let (ok, _, err) = alice.run(&["profile", "set"]).await;
    assert!(!ok && err.contains("nothing to change"), "{err}");
    let (ok, _, err) = alice
        .run(&["profile", "bob@localhost", "set", "--about", "x"])
        .await;
    assert!(!ok && err.contains("your own profile"), "{err}");
    let cleared = alice.ok(&["profile", "set", "--pronouns", ""]).await;
    assert!(cleared.starts_with("alice@localhost  Alice\n"), "{cleared}");
    let (ok, _, err) = bob.run(&["profile", "nobody@localhost"]).await;
    assert!(!ok && err.contains("nobody@localhost"), "{err}");

    // A status counts once alice is connected.
    let status = alice
        .ok(&["status", "idle", "--text", "out for lunch"])
        .await;
    assert!(
        status.starts_with("status set; others see you offline until you are connected"),
        "{status}"
    );
    // Her own profile shows what she chose beside what others see.
    let own = alice.ok(&["profile"]).await;
    assert!(
        own.contains(
            "\npresence: offline (you chose idle: out for lunch; others see it while you are connected)\n"
        ),
        "{own}"
    );
    let presence = ["presence", "alice@localhost", "bob@localhost"];
    assert_eq!(
        bob.ok(&presence).await,
        "alice@localhost is offline\nbob@localhost is online\n"
    );
    let alice_events = events(&alice).await;
    eventually(
        &bob,
        &presence,
        "alice@localhost is idle: out for lunch\nbob@localhost is online\n",
    )
    .await;
    bob_events
        .until(|l| l == "alice@localhost is idle: out for lunch")
        .await;
    assert_eq!(
        alice.ok(&["status", "dnd"]).await,
        "alice@localhost is do not disturb\n"
    );
    assert_eq!(alice_as_seen_by(&bob).await, "do not disturb");
    // Carol shares no guild with alice: she learns nothing.
    assert_eq!(alice_as_seen_by(&carol).await, "offline");
    // Invisible: offline to others while connected.
    assert_eq!(
        alice.ok(&["status", "offline"]).await,
        "you appear offline to others\n"
    );
    assert_eq!(alice_as_seen_by(&bob).await, "offline");
    let own = alice.ok(&["profile"]).await;
    assert!(
        own.contains("\npresence: offline (you are invisible)\n"),
        "{own}"
    );
    bob_events
        .until(|l| l == "alice@localhost is offline")
        .await;
    let (ok, _, err) = bob.run(&["presence", "not a fid"]).await;
    assert!(!ok && err.contains("not a fid"), "{err}");

    for watcher in [alice_events, bob_events] {
        let status = watcher.interrupt().await;
        assert!(status.success(), "{status:?}");
    }
}

// ---- the SDK the commands are built on ----

/// A reaction is signed by its author's session: posted twice it is stored once, and a
/// signature over another emoji, or over adding when removing, or by someone else, is
/// refused with nothing stored. Meanwhile a member's gateway receives the community events
/// typed.
#[tokio::test]
async fn a_signed_reaction_verifies_and_a_tampered_one_is_refused() {
    let server = TestServer::start().await;
    let (alice, bob, general) = guild_of_two(&server).await;
    let (a, b) = (alice.chat(), bob.chat());
    let m = a
        .send_message(general, text("react to me"))
        .await
        .unwrap()
        .message
        .id;
    let mut gateway = bob
        .gateway(fugue_client::GatewayOptions::default())
        .await
        .unwrap();
    gateway.subscribe_chat().await.unwrap();

    // Posted again (a retry after a lost answer): one reaction.
    let prepared = a.prepare_reaction(general, m, "👍", true);
    a.post_reaction(&prepared).await.unwrap();
    a.post_reaction(&prepared).await.unwrap();
    let listed = b.reactors(general, m, "👍").await.unwrap();
    assert_eq!(fids(&listed), [a.fid().clone()]);
    // Anyone can check a listed reaction again; one moved to another message or emoji, or
    // claimed for someone else, does not check out.
    assert_eq!(
        b.verify_reaction(general, m, &listed[0]).await,
        Verdict::Verified
    );
    assert!(
        !b.verify_reaction(general, m + 1, &listed[0])
            .await
            .is_verified()
    );
    let other_emoji = SignedReaction {
        emoji: "🎉".into(),
        ..listed[0].clone()
    };
    assert!(
        !b.verify_reaction(general, m, &other_emoji)
            .await
            .is_verified()
    );
    let claimed = SignedReaction {
        fid: b.fid().clone(),
        ..listed[0].clone()
    };
    assert!(!b.verify_reaction(general, m, &claimed).await.is_verified());

    let refused = |err: fugue_client::Error| {
        assert_eq!(err.code(), Some(ErrorCode::SignatureInvalid), "{err}");
    };
    let mut moved = a.prepare_reaction(general, m, "🎉", true);
    moved.emoji = "😀".into();
    refused(a.post_reaction(&moved).await.unwrap_err());
    let mut removal = prepared.clone();
    removal.add = false;
    refused(a.post_reaction(&removal).await.unwrap_err());
    // Bob's signed reaction posted by alice names bob, not her.
    let bobs = b.prepare_reaction(general, m, "😀", true);
    assert!(a.post_reaction(&bobs).await.is_err());
    assert!(b.reactors(general, m, "😀").await.unwrap().is_empty());
    assert_eq!(
        fids(&b.reactors(general, m, "👍").await.unwrap()),
        [a.fid().clone()]
    );

    a.unreact(general, m, "👍").await.unwrap();
    assert!(b.reactors(general, m, "👍").await.unwrap().is_empty());
    b.react(general, m, "🎉").await.unwrap();
    a.pin(general, m).await.unwrap();
    assert_eq!(b.pins(general).await.unwrap()[0].message.id, m);
    let state = b.mark_read(general).await.unwrap().unwrap();
    assert_eq!((state.last_read, state.unread), (Some(m), 0));
    let request = update_profile::Request {
        display_name: Some("Alice".into()),
        ..Default::default()
    };
    a.update_profile(&request).await.unwrap();
    assert_eq!(
        b.profile(a.fid()).await.unwrap().display_name.as_deref(),
        Some("Alice")
    );

    // Bob's gateway: every change once, typed, in order (the bare retry announced nothing).
    let mut seen = Vec::new();
    while !matches!(seen.last(), Some(ChatEvent::ProfileUpdate(_))) {
        let event = tokio::time::timeout(Duration::from_secs(10), gateway.recv())
            .await
            .unwrap()
            .unwrap();
        // Events of before (bob's join, the message) and presence may come in between.
        if let Some(
            e @ (ChatEvent::ReactionAdd(_)
            | ChatEvent::ReactionRemove(_)
            | ChatEvent::PinUpdate(_)
            | ChatEvent::ReadState(_)
            | ChatEvent::ProfileUpdate(_)),
        ) = event.chat()
        {
            seen.push(e);
        }
    }
    let brief: Vec<String> = seen
        .iter()
        .map(|e| match e {
            ChatEvent::ReactionAdd(r) => format!("+{} {} {}", r.emoji, r.fid, r.message_id),
            ChatEvent::ReactionRemove(r) => format!("-{} {} {}", r.emoji, r.fid, r.message_id),
            ChatEvent::PinUpdate(p) => format!("pin {} {} {}", p.pinned, p.by, p.message_id),
            ChatEvent::ReadState(r) => format!("read {} {}", r.channel_id, r.last_read),
            ChatEvent::ProfileUpdate(p) => format!("profile {:?}", p.display_name),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        brief,
        [
            format!("+👍 alice@localhost {m}"),
            format!("-👍 alice@localhost {m}"),
            format!("+🎉 bob@localhost {m}"),
            format!("pin true alice@localhost {m}"),
            format!("read {general} {m}"),
            "profile Some(\"Alice\")".to_owned(),
        ]
    );
    gateway.close().await;
}
