//! The chat commands of the `fugue` binary against an in-process server: two people hold a
//! conversation with `fugue` alone (guild, invite, join, send, read, edit, delete, events),
//! and `fugue read` marks a message whose stored content was changed behind its author's
//! back. What the server does with these requests is tested in `crates/server/tests/it`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use fugue_client::{ChatEvent, Session, Verdict};
use fugue_proto::api::{create_channel, create_guild};
use fugue_proto::chat::MessageBody;
use fugue_store::{MessageVersionRow, NewEvent};
use fugue_testkit::{PASSWORD, TestServer, federated_pair};

use crate::support::{Watcher, blocking, fugue_as_client};

/// One person at a terminal: `fugue` with their own key store.
pub(crate) struct Person {
    url: String,
    pub(crate) keystore: PathBuf,
}

impl Person {
    pub(crate) async fn new(server: &TestServer, dir: &std::path::Path, name: &str) -> Self {
        server
            .client()
            .register(name, PASSWORD, None, None)
            .await
            .unwrap();
        let person = Self {
            url: server.url.clone(),
            keystore: dir.join(format!("{name}.json")),
        };
        person
            .ok(&["account", "login", name, "--session-id", "cli"])
            .await;
        person
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut cmd = fugue_as_client(&self.url, &self.keystore);
        cmd.args(args);
        cmd
    }

    pub(crate) async fn run(&self, args: &[&str]) -> (bool, String, String) {
        let mut cmd = self.command(args);
        let out = blocking(move || cmd.output().unwrap()).await;
        (
            out.status.success(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    }

    /// Runs a command that must succeed; its stdout.
    pub(crate) async fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args).await;
        assert!(ok, "fugue {args:?} failed: {err}{out}");
        out
    }
}

/// The first word after `prefix` on the line that starts with it.
pub(crate) fn word_after(out: &str, prefix: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in {out}"))
        .to_owned()
}

pub(crate) fn sent_id(out: &str) -> u64 {
    word_after(out, "sent message ").parse().unwrap()
}

#[tokio::test]
async fn two_people_hold_a_conversation_with_fugue_alone() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let alice = Person::new(&server, dir.path(), "alice").await;
    let bob = Person::new(&server, dir.path(), "bob").await;

    let created = alice.ok(&["guild", "create", "book club"]).await;
    let guild = word_after(&created, "created guild ");
    let channel = word_after(&created, "channel ");
    assert!(created.contains("#general"), "{created}");

    // Bob cannot read a private guild before joining, nor join without an invite.
    let (ok, _, err) = bob.run(&["read", &channel]).await;
    assert!(!ok && err.contains("404"), "{err}");
    let (ok, _, err) = bob.run(&["guild", "join", &guild]).await;
    assert!(!ok, "{err}");

    let invite = alice
        .ok(&["guild", "invite", &guild, "--max-uses", "1"])
        .await;
    let code = word_after(&invite, "invite ");
    assert!(
        invite.contains(&format!("fugue guild join {guild} --invite {code}")),
        "{invite}"
    );
    let joined = bob.ok(&["guild", "join", &guild, "--invite", &code]).await;
    assert!(
        joined.contains("book club") && joined.contains("2 members"),
        "{joined}"
    );
    let listed = bob.ok(&["guild", "list"]).await;
    assert!(
        listed.starts_with(&format!("{guild}  book club")),
        "{listed}"
    );

    let hello = sent_id(&alice.ok(&["send", &channel, "hello bob"]).await);
    let answer = bob
        .ok(&[
            "send",
            &channel,
            "hi alice",
            "--reply-to",
            &hello.to_string(),
        ])
        .await;
    let answer = sent_id(&answer);
    assert!(answer > hello);

    // Both read the same history, oldest first, each message verified.
    for person in [&alice, &bob] {
        let read = person.ok(&["read", &channel]).await;
        let lines: Vec<&str> = read.lines().collect();
        assert_eq!(lines.len(), 2, "{read}");
        assert!(lines[0].starts_with("✓ "), "{read}");
        assert!(
            lines[0].contains("alice@localhost")
                && lines[0].ends_with(&format!("[{hello}]  hello bob")),
            "{read}"
        );
        assert!(lines[1].starts_with("✓ "), "{read}");
        assert!(
            lines[1].contains("bob@localhost")
                && lines[1].ends_with(&format!("[{answer}]  hi alice (reply to {hello})")),
            "{read}"
        );
    }
    let after = bob
        .ok(&["read", &channel, "--after", &hello.to_string()])
        .await;
    assert_eq!(after.lines().count(), 1, "{after}");
    assert!(after.contains("hi alice"), "{after}");
    let limited = bob.ok(&["read", &channel, "--limit", "1"]).await;
    assert!(
        limited.contains("hi alice") && !limited.contains("hello bob"),
        "{limited}"
    );

    // An edit is a new signed version; a delete leaves a tombstone.
    bob.ok(&["edit", &channel, &answer.to_string(), "hi alice!"])
        .await;
    let read = alice.ok(&["read", &channel]).await;
    assert!(read.lines().nth(1).unwrap().starts_with("✓ "), "{read}");
    assert!(read.contains("hi alice! (reply to"), "{read}");
    assert!(read.contains("(edited)"), "{read}");
    let versions = alice.ok(&["versions", &channel, &answer.to_string()]).await;
    let lines: Vec<&str> = versions.lines().collect();
    assert_eq!(lines.len(), 2, "{versions}");
    assert!(
        lines[0].starts_with("✓ version 1 ") && lines[0].ends_with("hi alice"),
        "{versions}"
    );
    assert!(
        lines[1].starts_with("✓ version 2 ") && lines[1].ends_with("hi alice!"),
        "{versions}"
    );
    let (ok, _, err) = alice
        .run(&["edit", &channel, &answer.to_string(), "not mine"])
        .await;
    assert!(!ok, "{err}");
    alice.ok(&["delete", &channel, &hello.to_string()]).await;
    let read = bob.ok(&["read", &channel]).await;
    assert!(read.lines().next().unwrap().starts_with("- "), "{read}");
    assert!(!read.contains("hello bob"), "{read}");

    // Channels.
    let made = alice.ok(&["channel", "create", &guild, "random"]).await;
    let random = word_after(&made, "created channel ");
    let channels = bob.ok(&["channel", "list", &guild]).await;
    assert!(
        channels.contains("#general") && channels.contains(&format!("{random}  #random")),
        "{channels}"
    );

    let changed = alice
        .ok(&["channel", "update", &random, "--topic", "anything goes"])
        .await;
    assert!(changed.ends_with("#random  — anything goes\n"), "{changed}");
    alice.ok(&["channel", "delete", &random]).await;
    let channels = bob.ok(&["channel", "list", &guild]).await;
    assert!(!channels.contains("random"), "{channels}");

    // Bob leaves: the guild is no longer his to read or list.
    bob.ok(&["guild", "leave", &guild]).await;
    let (ok, _, _) = bob.run(&["read", &channel]).await;
    assert!(!ok);
    let listed = bob.ok(&["guild", "list"]).await;
    assert!(!listed.contains("book club"), "{listed}");
}

/// A message whose stored content was changed (as a compromised database would) still
/// carries its author's signature over the original: `fugue read` marks it ✗ and names why,
/// while the untouched message beside it stays ✓.
#[tokio::test]
async fn a_message_tampered_with_in_the_database_is_marked_unverified() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let alice = Person::new(&server, dir.path(), "alice").await;
    let created = alice.ok(&["guild", "create", "club", "--public"]).await;
    let channel = word_after(&created, "channel ");
    let first = sent_id(&alice.ok(&["send", &channel, "pay bob 5"]).await);
    alice.ok(&["send", &channel, "see you"]).await;

    let stored = server.store.message(first as i64).await.unwrap().unwrap();
    let forged = serde_json::to_string(&MessageBody {
        content: "pay bob 500".into(),
        reply_to: None,
        attachments: vec![],
    })
    .unwrap();
    // The row's content replaced; its signature, certificate and nonce left as they were.
    let version = MessageVersionRow {
        message_id: stored.id,
        version: stored.version + 1,
        nonce: format!("{}-x", stored.version_nonce),
        content: forged,
        signature: stored.signature.clone(),
        cert_pem: stored.cert_pem.clone(),
        cert_serial: stored.cert_serial,
        edit_of: Some(stored.id),
        created_at: stored.created_at,
    };
    let event = NewEvent {
        stream_id: stored.guild_id,
        namespace: "chat".into(),
        op: 1,
        payload: "{}".into(),
        exclude_session: None,
        collapse_key: None,
        created_at: stored.created_at,
        // Reaches no one: the change is the database's, not an event.
        audience: "s:0".into(),
        access: false,
        ref_id: None,
    };
    server.store.edit_message(&version, &event).await.unwrap();

    let read = alice.ok(&["read", &channel]).await;
    let lines: Vec<&str> = read.lines().collect();
    assert_eq!(lines.len(), 2, "{read}");
    assert!(lines[0].starts_with("✗ "), "{read}");
    assert!(lines[0].contains("pay bob 500"), "{read}");
    assert!(
        lines[0].contains("[not verified: the signature does not verify with certificate"),
        "{read}"
    );
    assert!(
        lines[1].starts_with("✓ ") && lines[1].contains("see you"),
        "{read}"
    );
    // Its history shows which version is the author's.
    let versions = alice.ok(&["versions", &channel, &first.to_string()]).await;
    let lines: Vec<&str> = versions.lines().collect();
    assert_eq!(lines.len(), 2, "{versions}");
    assert!(
        lines[0].starts_with("✓ version 1 ") && lines[0].ends_with("pay bob 5"),
        "{versions}"
    );
    assert!(
        lines[1].starts_with("✗ version 2 ") && lines[1].contains("pay bob 500"),
        "{versions}"
    );
}

/// `fugue events` shows chat events live: a member joining and a message, verified.
#[tokio::test]
async fn the_events_command_shows_chat_events_live() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let alice = Person::new(&server, dir.path(), "alice").await;
    let bob = Person::new(&server, dir.path(), "bob").await;
    let created = alice.ok(&["guild", "create", "club", "--public"]).await;
    let guild = word_after(&created, "created guild ");
    let channel = word_after(&created, "channel ");

    let mut events = Watcher::start(alice.command(&["events"]), "following the events").await;

    bob.ok(&["guild", "join", &guild]).await;
    let sent = sent_id(&bob.ok(&["send", &channel, "hello \u{1b}[31mall"]).await);
    // Events of before the subscription (alice's own join) may come first; then these two.
    let seen = events.until(|l| l.contains("hello")).await;
    let joined = format!("guild {guild}: bob@localhost joined");
    assert_eq!(seen[seen.len() - 2], joined, "{seen:?}");
    let message = &seen[seen.len() - 1];
    assert!(
        message.starts_with(&format!("channel {channel}: ✓ ")),
        "{seen:?}"
    );
    // The author's escape sequence arrives as text, not as a colour.
    assert!(
        message.ends_with(&format!("bob@localhost  [{sent}]  hello \\u001b[31mall")),
        "{seen:?}"
    );

    let status = events.interrupt().await;
    assert!(status.success(), "{status:?}");
}

// ---- the SDK the commands are built on ----

/// alice and bob of `server` in a public guild of alice's: their sessions and the guild's
/// `general` channel.
pub(crate) async fn guild_of_two(server: &TestServer) -> (Session, Session, u64) {
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let guild = alice
        .chat()
        .create_guild(&create_guild::Request {
            name: "g".into(),
            description: None,
            icon: None,
            private: Some(false),
        })
        .await
        .unwrap();
    let general = alice.chat().channels(guild.id).await.unwrap()[0].id;
    bob.chat().join_guild(guild.id, None).await.unwrap();
    (alice, bob, general)
}

pub(crate) fn text(content: &str) -> MessageBody {
    MessageBody {
        content: content.into(),
        reply_to: None,
        attachments: vec![],
    }
}

/// A signed message posted again (a retry after a lost answer) is stored once; a page
/// served as another channel's fails verification.
#[tokio::test]
async fn a_retried_send_is_stored_once_and_a_moved_page_fails() {
    let server = TestServer::start().await;
    let chat = server.register("alice").await.chat();
    let guild = chat
        .create_guild(&create_guild::Request {
            name: "g".into(),
            description: None,
            icon: None,
            private: Some(true),
        })
        .await
        .unwrap();
    let general = chat.channels(guild.id).await.unwrap()[0].id;
    let other = chat
        .create_channel(
            guild.id,
            &create_channel::Request {
                name: "other".into(),
                kind: None,
                topic: None,
                parent_id: None,
                position: None,
            },
        )
        .await
        .unwrap()
        .id;

    let prepared = chat.prepare_message(general, text("once"));
    let first = chat.post_message(&prepared).await.unwrap();
    let again = chat.post_message(&prepared).await.unwrap();
    assert!(first.created && !again.created);
    assert_eq!(first.message.id, again.message.id);
    let page = chat.messages(general, &Default::default()).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(
        chat.verify_messages(general, &page).await,
        [Verdict::Verified]
    );
    // The same page claimed to be another channel's.
    let moved = chat.verify_messages(other, &page).await;
    assert!(
        matches!(&moved[..], [Verdict::Failed(why)] if why.contains(&format!("not {other}"))),
        "{moved:?}"
    );
    // Its content changed on the way.
    let mut changed = page[0].clone();
    changed.content = "twice".into();
    assert!(matches!(
        chat.verify_message(Some(general), &changed).await,
        Verdict::Failed(_)
    ));
}

/// Across servers: alice of alpha.test posts in a guild on beta.test; bob, at home on beta,
/// verifies her message against alpha, and she verifies his against beta.
#[tokio::test]
async fn messages_of_a_foreign_author_verify_against_its_home_server() {
    let (alpha, beta) = federated_pair().await;
    let alice = alpha.register("alice").await;
    let on_beta = alice.sign_in_on(beta.client(), &beta.domain).await.unwrap();
    let alice_chat = alice
        .chat_on(&on_beta, beta.domain.clone())
        .with_home_server(beta.domain.clone(), beta.client());
    let bob_chat = beta
        .register("bob")
        .await
        .chat()
        .with_home_server(alpha.domain.clone(), alpha.client());

    let guild = bob_chat
        .create_guild(&create_guild::Request {
            name: "across".into(),
            description: None,
            icon: None,
            private: Some(false),
        })
        .await
        .unwrap();
    let general = bob_chat.channels(guild.id).await.unwrap()[0].id;
    alice_chat.join_guild(guild.id, None).await.unwrap();
    alice_chat
        .send_message(general, text("hello from alpha"))
        .await
        .unwrap();
    bob_chat
        .send_message(general, text("welcome to beta"))
        .await
        .unwrap();

    for chat in [&bob_chat, &alice_chat] {
        let mut page = chat.messages(general, &Default::default()).await.unwrap();
        page.sort_by_key(|m| m.id);
        let authors: Vec<String> = page.iter().map(|m| m.author.to_string()).collect();
        assert_eq!(authors, ["alice@alpha.test", "bob@beta.test"]);
        assert_eq!(
            chat.verify_messages(general, &page).await,
            [Verdict::Verified, Verdict::Verified]
        );
    }
    // With alice's home server out of reach, her message cannot be verified; bob's can.
    let unreachable = fugue_client::Client::new("http://127.0.0.1:1").unwrap();
    let cut_off = bob_chat
        .clone()
        .with_home_server(alpha.domain.clone(), unreachable);
    cut_off.forget_certs(None);
    let mut page = cut_off
        .messages(general, &Default::default())
        .await
        .unwrap();
    page.sort_by_key(|m| m.id);
    let verdicts = cut_off.verify_messages(general, &page).await;
    assert!(
        matches!(&verdicts[0], Verdict::Failed(why) if why.contains("certificates of alice@alpha.test could not be verified")),
        "{verdicts:?}"
    );
    assert_eq!(verdicts[1], Verdict::Verified);
    // Alice's message as if it were signed for alpha: her signature names beta.
    let alpha_chat = alice
        .chat()
        .with_home_server(beta.domain.clone(), beta.client());
    let page = bob_chat
        .messages(general, &Default::default())
        .await
        .unwrap();
    let verdicts = alpha_chat.verify_messages(general, &page).await;
    assert!(
        verdicts.iter().all(|v| matches!(v, Verdict::Failed(_))),
        "{verdicts:?}"
    );
}

/// With `--on`, a person chats on another server they signed in on: alice of alpha.test
/// joins and posts in bob's guild on beta.test, and both read the conversation verified
/// (bob tells `fugue` where alpha.test's home server is with `--home`).
#[tokio::test]
async fn a_person_chats_on_another_server_with_on() {
    let (alpha, beta) = federated_pair().await;
    let dir = tempfile::tempdir().unwrap();
    let alice = Person::new(&alpha, dir.path(), "alice").await;
    let bob = Person::new(&beta, dir.path(), "bob").await;
    let created = bob.ok(&["guild", "create", "across", "--public"]).await;
    let guild = word_after(&created, "created guild ");
    let channel = word_after(&created, "channel ");

    let on = ["--on", beta.url.as_str()];
    let (ok, _, err) = alice
        .run(&["guild", "join", &guild, "--on", &beta.url])
        .await;
    assert!(!ok && err.contains("fugue federation login"), "{err}");
    alice
        .ok(&["federation", "login", &beta.url, "--domain", "beta.test"])
        .await;
    let joined = alice
        .ok(&[&["guild", "join", &guild][..], &on].concat())
        .await;
    assert!(joined.contains("as alice@alpha.test"), "{joined}");
    alice
        .ok(&[&["send", &channel, "hello from alpha"][..], &on].concat())
        .await;
    bob.ok(&["send", &channel, "welcome"]).await;

    let home = format!("alpha.test={}", alpha.url);
    let read = bob.ok(&["read", &channel, "--home", &home]).await;
    let theirs = alice.ok(&[&["read", &channel][..], &on].concat()).await;
    for read in [read, theirs] {
        let lines: Vec<&str> = read.lines().collect();
        assert_eq!(lines.len(), 2, "{read}");
        assert!(
            lines[0].starts_with("✓ ") && lines[0].contains("alice@alpha.test"),
            "{read}"
        );
        assert!(
            lines[1].starts_with("✓ ") && lines[1].contains("bob@beta.test"),
            "{read}"
        );
    }
    let listed = alice.ok(&[&["guild", "list"][..], &on].concat()).await;
    assert!(listed.contains("across"), "{listed}");
    let at_home = alice.ok(&["guild", "list"]).await;
    assert!(!at_home.contains("across"), "{at_home}");
}

/// Over the gateway: a member subscribed to the chat channels receives messages once, with
/// their verdict, and another member's typing.
#[tokio::test]
async fn the_gateway_delivers_typed_chat_events() {
    let server = TestServer::start().await;
    let (alice, bob, general) = guild_of_two(&server).await;
    let (alice_chat, bob_chat) = (alice.chat(), bob.chat());

    let options = fugue_client::GatewayOptions::default();
    let mut alice_gw = alice.gateway(options.clone()).await.unwrap();
    alice_gw.subscribe_chat().await.unwrap();
    let bob_gw = bob.gateway(options).await.unwrap();
    bob_gw.subscribe_chat().await.unwrap();

    let sent = bob_chat
        .send_message(general, text("over the wire"))
        .await
        .unwrap()
        .message;
    bob_gw.typing(general).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let event = tokio::time::timeout(Duration::from_secs(10), alice_gw.recv())
            .await
            .unwrap()
            .unwrap();
        match event.chat() {
            Some(ChatEvent::MessageCreate(m)) => {
                assert_eq!(m, sent);
                assert_eq!(
                    alice_chat.verify_message(Some(general), &m).await,
                    Verdict::Verified
                );
                seen.push("message");
            }
            Some(ChatEvent::TypingStart(t)) => {
                assert_eq!(
                    (t.channel_id, t.fid.to_string()),
                    (general, "bob@localhost".into())
                );
                seen.push("typing");
            }
            _ => {}
        }
    }
    // Typing is ephemeral and travels apart from the stream: either may come first.
    seen.sort_unstable();
    assert_eq!(seen, ["message", "typing"]);
    alice_gw.close().await;
    bob_gw.close().await;
}

/// Moderation from the command line: a role that may not send, a ban that outlasts invites,
/// and the owner handing the guild over before it is deleted.
#[tokio::test]
async fn owners_moderate_with_roles_bans_and_transfers() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let alice = Person::new(&server, dir.path(), "alice").await;
    let bob = Person::new(&server, dir.path(), "bob").await;
    let created = alice.ok(&["guild", "create", "mods", "--public"]).await;
    let guild = word_after(&created, "created guild ");
    let channel = word_after(&created, "channel ");
    bob.ok(&["guild", "join", &guild]).await;

    // @everyone loses SEND_MESSAGES; a role gives it back to bob.
    let roles = alice.ok(&["role", "list", &guild]).await;
    assert!(
        roles.starts_with(&format!("{guild}  @everyone  (")),
        "{roles}"
    );
    let made = alice
        .ok(&[
            "role",
            "create",
            &guild,
            "speakers",
            "--permissions",
            "send_messages",
        ])
        .await;
    let role = word_after(&made, "created role ");
    assert!(made.contains("(SEND_MESSAGES)"), "{made}");
    let (ok, _, err) = alice
        .run(&["role", "create", &guild, "x", "--permissions", "FLY"])
        .await;
    assert!(!ok && err.contains("unknown permission FLY"), "{err}");
    bob.ok(&["send", &channel, "before"]).await;
    let everyone = alice
        .ok(&[
            "role",
            "set",
            &guild,
            &guild,
            "--permissions",
            "VIEW_CHANNEL,CREATE_INVITES",
        ])
        .await;
    assert!(
        everyone.contains("(VIEW_CHANNEL|CREATE_INVITES)"),
        "{everyone}"
    );
    let (ok, _, err) = bob.run(&["send", &channel, "muted"]).await;
    assert!(!ok && err.contains("MISSING_PERMISSION"), "{err}");
    let given = alice
        .ok(&["role", "give", &guild, "bob@localhost", &role])
        .await;
    assert_eq!(given, format!("bob@localhost now has role {role}\n"));
    bob.ok(&["send", &channel, "with a role"]).await;
    alice
        .ok(&["role", "take", &guild, "bob@localhost", &role])
        .await;
    let (ok, _, err) = bob.run(&["send", &channel, "muted again"]).await;
    assert!(!ok && err.contains("MISSING_PERMISSION"), "{err}");

    // An overwrite lets bob speak in this channel alone; removed, he is muted again.
    let set = alice
        .ok(&[
            "channel",
            "overwrite",
            &channel,
            "bob@localhost",
            "--allow",
            "SEND_MESSAGES",
        ])
        .await;
    assert!(
        set.ends_with("member bob@localhost  allow SEND_MESSAGES  deny -\n"),
        "{set}"
    );
    let listed = alice.ok(&["channel", "overwrites", &channel]).await;
    assert_eq!(
        listed,
        "member bob@localhost  allow SEND_MESSAGES  deny -\n"
    );
    bob.ok(&["send", &channel, "allowed here"]).await;
    alice
        .ok(&[
            "channel",
            "overwrite",
            &channel,
            "bob@localhost",
            "--remove",
        ])
        .await;
    assert_eq!(alice.ok(&["channel", "overwrites", &channel]).await, "");

    // A ban removes bob and keeps him out, also of a public guild.
    alice
        .ok(&["guild", "ban", &guild, "bob@localhost", "--reason", "spam"])
        .await;
    let bans = alice.ok(&["guild", "bans", &guild]).await;
    assert!(
        bans.starts_with("bob@localhost  banned ") && bans.contains(": spam"),
        "{bans}"
    );
    let (ok, _, err) = bob.run(&["guild", "join", &guild]).await;
    assert!(!ok, "{err}");
    alice.ok(&["guild", "unban", &guild, "bob@localhost"]).await;
    bob.ok(&["guild", "join", &guild]).await;
    let members = alice.ok(&["guild", "members", &guild]).await;
    assert_eq!(members.lines().count(), 2, "{members}");
    alice.ok(&["guild", "kick", &guild, "bob@localhost"]).await;
    let members = alice.ok(&["guild", "members", &guild]).await;
    assert_eq!(members.lines().count(), 1, "{members}");

    // Handed to bob, the guild is his to delete (with his password), after confirming.
    bob.ok(&["guild", "join", &guild]).await;
    let handed = alice
        .ok(&["guild", "transfer", &guild, "bob@localhost"])
        .await;
    assert!(handed.contains("owner bob@localhost"), "{handed}");
    let (ok, _, err) = bob.run(&["guild", "delete", &guild]).await;
    assert!(!ok && err.contains("--yes"), "{err}");
    bob.ok(&["guild", "delete", &guild, "--yes"]).await;
    let (ok, _, err) = alice.run(&["read", &channel]).await;
    assert!(!ok && err.contains("404"), "{err}");
}

/// `fugue chat CHANNEL`: one terminal shows the conversation live and sends what is typed.
#[tokio::test]
async fn the_chat_command_holds_a_conversation_in_one_terminal() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let alice = Person::new(&server, dir.path(), "alice").await;
    let bob = Person::new(&server, dir.path(), "bob").await;
    let created = alice.ok(&["guild", "create", "talk", "--public"]).await;
    let guild = word_after(&created, "created guild ");
    let channel = word_after(&created, "channel ");
    bob.ok(&["guild", "join", &guild]).await;
    alice.ok(&["send", &channel, "earlier"]).await;

    let mut chat = alice.command(&["chat", &channel]);
    chat.stdin(Stdio::piped());
    let mut chat = Watcher::start(chat, "chatting in channel").await;

    // Kept open: the end of input ends the conversation.
    let mut stdin = chat.stdin();
    let stdin = blocking(move || {
        use std::io::Write;
        writeln!(stdin, "typed here").unwrap();
        stdin
    })
    .await;
    let first = chat.next().await;
    assert!(
        first.starts_with("✓ ") && first.ends_with("]  earlier"),
        "{first}"
    );
    let typed = chat.next().await;
    assert!(
        typed.starts_with("✓ ")
            && typed.contains("alice@localhost")
            && typed.ends_with("]  typed here"),
        "{typed}"
    );
    bob.ok(&["send", &channel, "heard you"]).await;
    let answer = chat.next().await;
    assert!(
        answer.starts_with("✓ ")
            && answer.contains("bob@localhost")
            && answer.ends_with("]  heard you"),
        "{answer}"
    );

    // The end of input ends the conversation.
    drop(stdin);
    let status = chat.wait().await;
    assert!(status.success(), "{status:?}");
}
