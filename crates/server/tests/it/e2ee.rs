//! Encrypted conversations end to end: a guild channel on beta encrypted by its owner, joined
//! through join requests with gatekeepers — by a member of beta, by an actor of alpha signed
//! in by key trial, and by a further device of a member, let in by another member and shown
//! to everyone — read by all, closed to a member removed from it, and never readable by the
//! server; encrypted DMs (which gain no one) and group conversations (where only the owner
//! adds people).

use fugue_client::mls::Mls;
use fugue_client::{Chat, MlsNotice, Session};
use fugue_proto::ErrorCode;
use fugue_proto::api::{create_channel, create_guild, get_messages};
use fugue_proto::chat::{Message, MessageBody};
use fugue_proto::mls::JoinState;
use fugue_testkit::TestServer;

use crate::support::assert_problem;

/// A device: its chat on the server holding the conversation, and its MLS state.
struct Device {
    chat: Chat,
    mls: Mls,
}

impl Device {
    fn home(session: &Session) -> Self {
        Self {
            chat: session.chat(),
            mls: Mls::new(session).unwrap(),
        }
    }

    /// On `server` as a foreign actor signed in by key trial.
    async fn abroad(session: &Session, server: &TestServer) -> Self {
        let foreign = session
            .sign_in_on(server.client(), &server.domain)
            .await
            .unwrap();
        Self {
            chat: session.chat_on(&foreign, server.domain.clone()),
            mls: Mls::new(session).unwrap(),
        }
    }

    async fn sync(&self) -> Vec<MlsNotice> {
        self.chat.mls_sync(&self.mls).await.unwrap()
    }

    /// The texts of a channel's messages, oldest first, as this device opens them.
    async fn read(&self, channel: u64, group: &str) -> Vec<String> {
        let mut page = self.history(channel).await;
        page.reverse();
        page.iter()
            .map(|m| {
                self.chat
                    .decrypt(&self.mls, group, m)
                    .unwrap_or_else(|e| format!("<{e}>"))
            })
            .collect()
    }

    async fn history(&self, channel: u64) -> Vec<Message> {
        self.chat
            .messages(channel, &get_messages::Query::default())
            .await
            .unwrap()
    }
}

/// A public guild of `owner` with one text channel: `(guild, channel)`.
pub(crate) async fn guild_with_channel(owner: &Chat, name: &str) -> (u64, u64) {
    let guild = owner
        .create_guild(&create_guild::Request {
            name: name.into(),
            description: None,
            icon: None,
            private: Some(false),
        })
        .await
        .unwrap();
    let channel = owner
        .create_channel(
            guild.id,
            &create_channel::Request {
                name: "secret".into(),
                kind: None,
                topic: None,
                parent_id: None,
                position: None,
            },
        )
        .await
        .unwrap()
        .id;
    (guild.id, channel)
}

/// The join requests among `notices`.
fn requests(notices: &[MlsNotice]) -> Vec<fugue_proto::mls::JoinRequest> {
    notices
        .iter()
        .filter_map(|n| match n {
            MlsNotice::JoinRequest(j) => Some(j.clone()),
            _ => None,
        })
        .collect()
}

fn joined(notices: &[MlsNotice]) -> bool {
    notices
        .iter()
        .any(|n| matches!(n, MlsNotice::Joined { .. }))
}

#[tokio::test]
async fn an_encrypted_channel_across_two_servers_with_gatekeepers_and_device_joins() {
    let (alpha, beta) = fugue_testkit::federated_pair().await;
    let alice_s = beta.register("alice").await;
    let bob_s = beta.register("bob").await;
    let bob_laptop_s = beta.login("bob", "bob-laptop").await.unwrap();
    let carol_s = alpha.register("carol").await;
    let alice = Device::home(&alice_s);
    let bob = Device::home(&bob_s);
    let laptop = Device::home(&bob_laptop_s);
    let carol = Device::abroad(&carol_s, &beta).await;

    let (guild, channel) = guild_with_channel(&alice.chat, "garden").await;
    for d in [&bob, &carol] {
        d.chat.join_guild(guild, None).await.unwrap();
    }
    // Each device has polled once: what it polls later starts from here.
    for d in [&alice, &bob, &laptop, &carol] {
        d.sync().await;
    }

    // alice encrypts the channel; plain messages are refused from then on.
    let group = alice.chat.new_mls_group(&alice.mls).await.unwrap();
    assert_problem(
        bob.chat.encrypt_channel(channel, &group).await,
        403,
        ErrorCode::MissingPermission,
    );
    alice.chat.encrypt_channel(channel, &group).await.unwrap();
    assert_problem(
        alice.chat.encrypt_channel(channel, &group).await,
        409,
        ErrorCode::AlreadyEncrypted,
    );
    assert_eq!(
        bob.chat.channel_group(channel).await.unwrap(),
        Some(group.clone())
    );
    let plain = MessageBody {
        content: "in the clear".into(),
        reply_to: None,
        attachments: Vec::new(),
    };
    assert_problem(
        bob.chat.send_message(channel, plain).await,
        400,
        ErrorCode::EncryptionRequired,
    );

    // bob and carol (of alpha) ask; alice, the gatekeeper, lets them in.
    let bob_req = bob.chat.request_join(&bob.mls, channel).await.unwrap();
    assert!(!bob_req.existing_member);
    let carol_req = carol.chat.request_join(&carol.mls, channel).await.unwrap();
    let seen = requests(&alice.sync().await);
    assert_eq!(seen.len(), 2, "{seen:?}");
    for r in &seen {
        let done = alice.chat.admit(&alice.mls, r).await.unwrap();
        assert_eq!(done.state, JoinState::Accepted);
    }
    assert!(joined(&bob.sync().await));
    assert!(joined(&carol.sync().await));
    assert_eq!(carol_req.fid, *carol_s.fid());

    // bob's laptop is a further device of a member: carol — no manager — lets it in, and
    // everyone sees the device join.
    let laptop_req = laptop
        .chat
        .request_join(&laptop.mls, channel)
        .await
        .unwrap();
    assert!(laptop_req.existing_member);
    let for_carol = requests(&carol.sync().await);
    assert_eq!(for_carol.len(), 1);
    carol.chat.admit(&carol.mls, &for_carol[0]).await.unwrap();
    assert!(joined(&laptop.sync().await));
    for d in [&alice, &bob] {
        let notices = d.sync().await;
        assert!(
            notices.iter().any(|n| matches!(n,
                MlsNotice::DeviceJoined(j) if j.fid == *bob_s.fid() && j.more_devices)),
            "{notices:?}"
        );
    }
    assert_eq!(alice.chat.devices(&group).await.unwrap().len(), 4);

    // Everyone reads everyone.
    alice
        .chat
        .send_encrypted(&alice.mls, channel, &group, "the roses bloom")
        .await
        .unwrap();
    carol
        .chat
        .send_encrypted(&carol.mls, channel, &group, "greetings from alpha")
        .await
        .unwrap();
    for d in [&alice, &bob, &laptop, &carol] {
        assert_eq!(
            d.read(channel, &group).await,
            ["the roses bloom", "greetings from alpha"]
        );
    }
    // Reading again opens nothing twice: the texts are kept on the device.
    assert_eq!(bob.read(channel, &group).await.len(), 2);
    // A reaction would be plain text to the server: refused here.
    let first = alice.history(channel).await.last().unwrap().id;
    assert_problem(
        bob.chat.react(channel, first, "👍").await,
        400,
        ErrorCode::EncryptionRequired,
    );

    // carol leaves the guild; bob — no manager — removes her device, since she no longer
    // reads the channel. What follows is closed to her.
    carol.chat.leave_guild(guild).await.unwrap();
    bob.sync().await;
    let carol_leaf = bob
        .chat
        .mls_members(&group)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.fid == *carol_s.fid())
        .unwrap()
        .id
        .parse()
        .unwrap();
    bob.chat
        .remove_devices(&bob.mls, &group, &[carol_leaf])
        .await
        .unwrap();
    alice.sync().await;
    laptop.sync().await;
    let after = alice
        .chat
        .send_encrypted(&alice.mls, channel, &group, "carol is gone")
        .await
        .unwrap();
    assert_eq!(
        laptop
            .read(channel, &group)
            .await
            .last()
            .map(String::as_str),
        Some("carol is gone")
    );
    carol.sync().await;
    assert!(
        carol
            .chat
            .decrypt(&carol.mls, &group, &after.message)
            .is_err()
    );
    assert_problem(
        carol
            .chat
            .messages(channel, &get_messages::Query::default())
            .await,
        404,
        ErrorCode::ChannelNotFound,
    );

    // The server holds ciphertext only: nothing it stored has a word of the texts.
    for m in alice.history(channel).await {
        assert!(m.content.starts_with("mls:"), "{}", m.content);
    }
    let dir = beta.media_dir().parent().unwrap().to_owned();
    for phrase in ["the roses bloom", "greetings from alpha", "carol is gone"] {
        assert!(
            !contains_anywhere(&dir, phrase.as_bytes()),
            "{phrase} is on disk"
        );
    }
    let _ = alpha;
}

/// Whether any file under `dir` holds `needle`.
fn contains_anywhere(dir: &std::path::Path, needle: &[u8]) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let path = e.path();
        if path.is_dir() {
            contains_anywhere(&path, needle)
        } else {
            std::fs::read(&path)
                .map(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
                .unwrap_or(false)
        }
    })
}

/// `who`'s devices' packages, uploaded where `who` is registered.
async fn packages(d: &Device, session: &Session, n: usize) {
    let kps = d.mls.key_packages(n, true).unwrap();
    session.upload_key_packages(&kps).await.unwrap();
}

#[tokio::test]
async fn an_encrypted_dm_gains_no_one_but_its_members_devices() {
    let server = TestServer::start().await;
    let (alice_s, bob_s, carol_s) = (
        server.register("alice").await,
        server.register("bob").await,
        server.register("carol").await,
    );
    let bob_laptop_s = server.login("bob", "bob-laptop").await.unwrap();
    let (alice, bob, laptop, carol) = (
        Device::home(&alice_s),
        Device::home(&bob_s),
        Device::home(&bob_laptop_s),
        Device::home(&carol_s),
    );
    packages(&bob, &bob_s, 2).await;
    packages(&carol, &carol_s, 2).await;
    let dm = alice.chat.open_dm(bob_s.fid()).await.unwrap().id;
    for d in [&alice, &bob, &laptop] {
        d.sync().await;
    }
    // alice makes the DM's group with bob's phone and encrypts the DM with it.
    let group = alice.chat.new_mls_group(&alice.mls).await.unwrap();
    let bobs = alice.chat.claim_key_packages(bob_s.fid()).await.unwrap();
    alice
        .chat
        .add_devices(&alice.mls, &group, &bobs)
        .await
        .unwrap();
    alice.chat.encrypt_channel(dm, &group).await.unwrap();
    assert!(joined(&bob.sync().await));

    // carol is nobody in the DM: no one adds her devices.
    let carols = alice.chat.claim_key_packages(carol_s.fid()).await.unwrap();
    assert_problem(
        alice.chat.add_devices(&alice.mls, &group, &carols).await,
        403,
        ErrorCode::MlsForbidden,
    );
    // bob's laptop, a device of a member, comes in by its join request.
    let req = laptop.chat.request_join(&laptop.mls, dm).await.unwrap();
    assert!(req.existing_member);
    bob.chat.admit(&bob.mls, &req).await.unwrap();
    assert!(joined(&laptop.sync().await));
    alice.sync().await;

    alice
        .chat
        .send_encrypted(&alice.mls, dm, &group, "just us two")
        .await
        .unwrap();
    laptop
        .chat
        .send_encrypted(&laptop.mls, dm, &group, "and my laptop")
        .await
        .unwrap();
    for d in [&alice, &bob, &laptop] {
        assert_eq!(d.read(dm, &group).await, ["just us two", "and my laptop"]);
    }
    assert_problem(
        carol
            .chat
            .messages(dm, &get_messages::Query::default())
            .await,
        404,
        ErrorCode::ChannelNotFound,
    );
}

#[tokio::test]
async fn in_an_encrypted_group_only_the_owner_adds_people_or_removes_others() {
    let server = TestServer::start().await;
    let names = ["alice", "bob", "carol", "dave"];
    let mut sessions = Vec::new();
    for n in names {
        sessions.push(server.register(n).await);
    }
    let devices: Vec<Device> = sessions.iter().map(Device::home).collect();
    let [alice, bob, carol, dave] = &devices[..] else {
        unreachable!()
    };
    for (d, s) in devices.iter().zip(&sessions).skip(1) {
        packages(d, s, 3).await;
    }
    let conv = alice
        .chat
        .create_group(
            Some("plans".into()),
            vec![sessions[1].fid().clone(), sessions[2].fid().clone()],
        )
        .await
        .unwrap()
        .id;
    for d in &devices {
        d.sync().await;
    }
    // Only the owner encrypts the group.
    let bobs_group = bob.chat.new_mls_group(&bob.mls).await.unwrap();
    assert_problem(
        bob.chat.encrypt_channel(conv, &bobs_group).await,
        403,
        ErrorCode::MissingPermission,
    );
    let group = alice.chat.new_mls_group(&alice.mls).await.unwrap();
    for who in [&sessions[1], &sessions[2]] {
        let kps = alice.chat.claim_key_packages(who.fid()).await.unwrap();
        alice
            .chat
            .add_devices(&alice.mls, &group, &kps)
            .await
            .unwrap();
    }
    alice.chat.encrypt_channel(conv, &group).await.unwrap();
    assert!(joined(&bob.sync().await));
    assert!(joined(&carol.sync().await));

    // dave joins the conversation; bob may not add him to the group, alice may.
    alice
        .chat
        .add_conversation_member(conv, sessions[3].fid())
        .await
        .unwrap();
    let daves = bob
        .chat
        .claim_key_packages(sessions[3].fid())
        .await
        .unwrap();
    assert_problem(
        bob.chat.add_devices(&bob.mls, &group, &daves).await,
        403,
        ErrorCode::MlsForbidden,
    );
    let daves = alice
        .chat
        .claim_key_packages(sessions[3].fid())
        .await
        .unwrap();
    alice
        .chat
        .add_devices(&alice.mls, &group, &daves)
        .await
        .unwrap();
    assert!(joined(&dave.sync().await));
    bob.sync().await;
    carol.sync().await;

    // bob may not remove carol; alice may.
    let carol_leaf: u32 = carol.mls.own_leaf(&group).unwrap();
    assert_problem(
        bob.chat
            .remove_devices(&bob.mls, &group, &[carol_leaf])
            .await,
        403,
        ErrorCode::MlsForbidden,
    );
    alice
        .chat
        .remove_devices(&alice.mls, &group, &[carol_leaf])
        .await
        .unwrap();
    for d in [bob, dave] {
        d.sync().await;
    }
    alice
        .chat
        .send_encrypted(&alice.mls, conv, &group, "without carol")
        .await
        .unwrap();
    assert_eq!(dave.read(conv, &group).await, ["without carol"]);
    assert_eq!(bob.read(conv, &group).await, ["without carol"]);
    // carol is still in the conversation but not in its group: she cannot post, and what
    // she is shown she cannot open.
    carol.sync().await;
    let sent = carol
        .chat
        .send_encrypted(&carol.mls, conv, &group, "let me in")
        .await;
    assert!(sent.is_err());
    let history = carol.history(conv).await;
    assert!(carol.chat.decrypt(&carol.mls, &group, &history[0]).is_err());
}

#[tokio::test]
async fn join_requests_are_checked_denied_with_a_reason_and_accepted_only_once_in() {
    let server = TestServer::start().await;
    let alice_s = server.register("alice").await;
    let bob_s = server.register("bob").await;
    let eve_s = server.register("eve").await;
    let (alice, bob, eve) = (
        Device::home(&alice_s),
        Device::home(&bob_s),
        Device::home(&eve_s),
    );
    let (guild, channel) = guild_with_channel(&alice.chat, "club").await;
    bob.chat.join_guild(guild, None).await.unwrap();
    for d in [&alice, &bob, &eve] {
        d.sync().await;
    }
    // A plain channel takes no join request.
    assert_problem(
        bob.chat.request_join(&bob.mls, channel).await,
        400,
        ErrorCode::EncryptionRequired,
    );
    let group = alice.chat.new_mls_group(&alice.mls).await.unwrap();
    alice.chat.encrypt_channel(channel, &group).await.unwrap();
    // eve is no member of the guild: the channel does not exist for her.
    assert_problem(
        eve.chat.request_join(&eve.mls, channel).await,
        404,
        ErrorCode::ChannelNotFound,
    );
    // A package that does not verify is refused before anyone sees it.
    let mut kp = bob.mls.key_packages(1, false).unwrap().remove(0);
    let mut bytes =
        fugue_proto::mls_wire::bytes("", kp.mls.as_deref().unwrap(), usize::MAX).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    kp.mls = Some(fugue_proto::mls_wire::b64(&bytes));
    let raw = bob
        .chat
        .client()
        .raw()
        .post(format!(
            "{}{}",
            server.url,
            fugue_proto::api::request_join::path(channel)
        ))
        .bearer_auth(bob_s.token())
        .json(&kp)
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    // Alice's package is not bob's device.
    let alices = alice.mls.key_packages(1, false).unwrap().remove(0);
    let raw = bob
        .chat
        .client()
        .raw()
        .post(format!(
            "{}{}",
            server.url,
            fugue_proto::api::request_join::path(channel)
        ))
        .bearer_auth(bob_s.token())
        .json(&alices)
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);

    // A sound request: accepting before the device is in is refused; a denial says why and
    // reaches the requesting device.
    let req = bob.chat.request_join(&bob.mls, channel).await.unwrap();
    let early = alice
        .chat
        .client()
        .raw()
        .post(format!(
            "{}{}",
            server.url,
            fugue_proto::api::accept_join::path(req.id)
        ))
        .bearer_auth(alice_s.token())
        .send()
        .await
        .unwrap();
    assert_eq!(early.status(), 409);
    assert_problem(
        bob.chat.deny_join(req.id, "not you").await,
        403,
        ErrorCode::MlsForbidden,
    );
    assert_eq!(alice.chat.join_requests(channel).await.unwrap().len(), 1);
    let denied = alice
        .chat
        .deny_join(req.id, "members only on Sundays")
        .await
        .unwrap();
    assert_eq!(denied.state, JoinState::Denied);
    assert_problem(
        alice.chat.deny_join(req.id, "again").await,
        409,
        ErrorCode::ConcurrentChange,
    );
    let notices = bob.sync().await;
    assert!(
        notices.iter().any(|n| matches!(n,
            MlsNotice::JoinResolved(j) if j.state == JoinState::Denied
                && j.reason.as_deref() == Some("members only on Sundays"))),
        "{notices:?}"
    );
    assert!(alice.chat.join_requests(channel).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_revoked_device_is_shown_to_its_groups_and_its_packages_go() {
    let server = TestServer::start().await;
    let alice_s = server.register("alice").await;
    let bob_s = server.register("bob").await;
    let laptop_s = server.login("bob", "bob-laptop").await.unwrap();
    let carol_s = server.register("carol").await;
    let (alice, laptop, carol) = (
        Device::home(&alice_s),
        Device::home(&laptop_s),
        Device::home(&carol_s),
    );
    packages(&laptop, &laptop_s, 3).await;
    packages(&carol, &carol_s, 2).await;
    alice.sync().await;
    carol.sync().await;
    let group = alice.chat.new_mls_group(&alice.mls).await.unwrap();
    for who in [&bob_s, &carol_s] {
        let kps = alice.chat.claim_key_packages(who.fid()).await.unwrap();
        assert_eq!(kps.len(), 1);
        alice
            .chat
            .add_devices(&alice.mls, &group, &kps)
            .await
            .unwrap();
    }
    alice.sync().await;
    assert!(joined(&carol.sync().await));
    // carol is no admin: bob's laptop is not hers to remove while it is sound.
    let laptop_leaf: u32 = alice
        .chat
        .mls_members(&group)
        .await
        .unwrap()
        .iter()
        .find(|m| m.session == laptop_s.session_id().to_string())
        .unwrap()
        .id
        .parse()
        .unwrap();
    assert_problem(
        carol
            .chat
            .remove_devices(&carol.mls, &group, &[laptop_leaf])
            .await,
        403,
        ErrorCode::MlsForbidden,
    );

    bob_s
        .revoke_session(laptop_s.session_id(), fugue_testkit::PASSWORD)
        .await
        .unwrap();
    let notices = alice.sync().await;
    assert!(
        notices.iter().any(|n| matches!(n,
            MlsNotice::DeviceRevoked(d) if d.session == laptop_s.session_id().to_string())),
        "{notices:?}"
    );
    assert!(
        alice
            .chat
            .claim_key_packages(bob_s.fid())
            .await
            .unwrap()
            .is_empty()
    );
    // Revoked, it goes by anyone's commit: carol takes it out, and the group is two.
    carol.sync().await;
    carol
        .chat
        .remove_devices(&carol.mls, &group, &[laptop_leaf])
        .await
        .unwrap();
    assert_eq!(alice.chat.mls_members(&group).await.unwrap().len(), 2);
}
