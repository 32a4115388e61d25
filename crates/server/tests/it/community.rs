//! What surrounds chat messages (`fugue-chat`): signed reactions, pins, mentions, read
//! states kept in sync across an actor's sessions, unread and mention counts, presence from
//! gateway connections (invisible included) and profiles — with who may do what.

use std::time::Duration;

use serde_json::json;

use fugue_proto::api;
use fugue_proto::chat::Message;
use fugue_proto::community::{Actor, Chosen, Pinned, Presence, ReactionBody, ReadState, op};
use fugue_proto::conversation::{Conversation, ConversationMember};
use fugue_proto::{ErrorCode, FederationId};
use fugue_testkit::{ManualClock, TestServer};

use crate::chat_support::{Who, gets_fugue, next_fugue, no_content, ok, problem};

/// A server without the chat limits (these tests send many messages quickly).
async fn server() -> TestServer {
    TestServer::start_with(|c| {
        c.rate_limits.chat_messages_per_5s = 0;
    })
    .await
}

#[tokio::test]
async fn reactions_are_signed_listed_shown_in_history_and_removed() {
    use fugue_proto::chat::Permissions as P;
    let server = server().await;
    let alice = Who::new(&server, "alice").await;
    let bob = Who::new(&server, "bob").await;
    let carol = Who::new(&server, "carol").await;
    let (g, general) = alice.create_guild("club", true).await;
    alice.admit(&bob, g.id, general.id).await;
    let m = alice.sent(general.id, "m1", "hello").await;
    let mut alice_ws = alice.subscribed("fugue-chat").await;

    no_content(bob.react(general.id, m.id, "👍", true, "r1").await).await;
    let added = next_fugue(&mut alice_ws, op::REACTION_ADD).await;
    assert_eq!(added["d"]["message_id"], m.id.to_string(), "{added}");
    assert_eq!(added["d"]["emoji"], "👍");
    assert_eq!(added["d"]["fid"], bob.fid().to_string());
    // The same reaction again changes nothing and announces nothing.
    no_content(bob.react(general.id, m.id, "👍", true, "r1").await).await;
    assert!(
        gets_fugue(&mut alice_ws, op::REACTION_ADD, Duration::from_millis(300))
            .await
            .is_none()
    );
    no_content(alice.react(general.id, m.id, ":party:", true, "r2").await).await;

    // A signature over another reaction (or another message) stores nothing.
    let forged = bob.reaction(
        general.id,
        "r3",
        &ReactionBody {
            message: m.id,
            emoji: "🎉".into(),
            add: true,
        },
    );
    problem(
        bob.call(
            api::add_reaction::target(general.id, m.id, "😀"),
            &[],
            Some(forged),
        )
        .await,
        400,
        ErrorCode::SignatureInvalid,
    )
    .await;
    let moved = bob.reaction(
        general.id,
        "r4",
        &ReactionBody {
            message: m.id + 1,
            emoji: "😀".into(),
            add: true,
        },
    );
    problem(
        bob.call(
            api::add_reaction::target(general.id, m.id, "😀"),
            &[],
            Some(moved),
        )
        .await,
        400,
        ErrorCode::SignatureInvalid,
    )
    .await;
    assert!(bob.reactors(general.id, m.id, "😀").await.is_empty());
    assert!(bob.reactors(general.id, m.id, "🎉").await.is_empty());
    problem(
        bob.react(general.id, m.id, "abc", true, "r5").await,
        400,
        ErrorCode::InvalidChatInput,
    )
    .await;

    assert_eq!(bob.reactors(general.id, m.id, "👍").await, vec![bob.fid()]);
    let history: Vec<Message> = ok(
        bob.call(api::message_history::target(general.id), &[], None)
            .await,
        200,
    )
    .await;
    let mut shown: Vec<(String, FederationId)> = history[0]
        .reactions
        .iter()
        .map(|r| (r.emoji.clone(), r.fid.clone()))
        .collect();
    shown.sort();
    assert_eq!(
        shown,
        vec![
            (":party:".to_owned(), alice.fid()),
            ("👍".to_owned(), bob.fid())
        ]
    );

    // A non-member learns nothing; a member without ADD_REACTIONS may not add, but may take
    // back its own.
    problem(
        carol.react(general.id, m.id, "👍", true, "c1").await,
        404,
        ErrorCode::ChannelNotFound,
    )
    .await;
    problem(
        carol
            .call(
                api::list_reactions::target(general.id, m.id, "👍"),
                &[],
                None,
            )
            .await,
        404,
        ErrorCode::ChannelNotFound,
    )
    .await;
    alice
        .everyone_may(g.id, P::VIEW_CHANNEL | P::SEND_MESSAGES)
        .await;
    problem(
        bob.react(general.id, m.id, "😀", true, "r6").await,
        403,
        ErrorCode::MissingPermission,
    )
    .await;
    no_content(bob.react(general.id, m.id, "👍", false, "r7").await).await;
    let removed = next_fugue(&mut alice_ws, op::REACTION_REMOVE).await;
    assert_eq!(removed["d"]["fid"], bob.fid().to_string(), "{removed}");
    assert!(bob.reactors(general.id, m.id, "👍").await.is_empty());
    // The removal is signed too: a signature over adding does not remove.
    let wrong = alice.reaction(
        general.id,
        "r8",
        &ReactionBody {
            message: m.id,
            emoji: ":party:".into(),
            add: true,
        },
    );
    problem(
        alice
            .call(
                api::remove_reaction::target(general.id, m.id, ":party:"),
                &[],
                Some(wrong),
            )
            .await,
        400,
        ErrorCode::SignatureInvalid,
    )
    .await;
    assert_eq!(
        alice.reactors(general.id, m.id, ":party:").await,
        vec![alice.fid()]
    );
}

#[tokio::test]
async fn a_signed_reaction_change_is_not_replayed() {
    let server = server().await;
    let alice = Who::new(&server, "alice").await;
    let (_, general) = alice.create_guild("club", true).await;
    let m = alice.sent(general.id, "m1", "hello").await;

    no_content(alice.react(general.id, m.id, "👍", true, "a1").await).await;
    no_content(alice.react(general.id, m.id, "👍", false, "d1").await).await;
    // The addition again, after its removal: a replay, refused; nothing changes.
    problem(
        alice.react(general.id, m.id, "👍", true, "a1").await,
        409,
        ErrorCode::NonceReused,
    )
    .await;
    assert!(alice.reactors(general.id, m.id, "👍").await.is_empty());
    // The removal again while it holds: a retry, answered as done.
    no_content(alice.react(general.id, m.id, "👍", false, "d1").await).await;

    no_content(alice.react(general.id, m.id, "👍", true, "a2").await).await;
    // The old removal after a new addition: a replay, refused; the reaction stays.
    problem(
        alice.react(general.id, m.id, "👍", false, "d1").await,
        409,
        ErrorCode::NonceReused,
    )
    .await;
    assert_eq!(
        alice.reactors(general.id, m.id, "👍").await,
        vec![alice.fid()]
    );
    no_content(alice.react(general.id, m.id, "👍", true, "a2").await).await;
    // A nonce signs one change of one reaction: not another emoji's.
    problem(
        alice.react(general.id, m.id, "🎉", true, "a2").await,
        409,
        ErrorCode::NonceReused,
    )
    .await;
    assert!(alice.reactors(general.id, m.id, "🎉").await.is_empty());
}

#[tokio::test]
async fn pins_need_manage_messages_and_a_channel_holds_fifty() {
    let server = server().await;
    let alice = Who::new(&server, "alice").await;
    let bob = Who::new(&server, "bob").await;
    let carol = Who::new(&server, "carol").await;
    let (g, general) = alice.create_guild("club", true).await;
    alice.admit(&bob, g.id, general.id).await;
    let first = alice.sent(general.id, "p0", "pin me").await;
    let mut bob_ws = bob.subscribed("fugue-chat").await;

    problem(
        bob.call(api::pin_message::target(general.id, first.id), &[], None)
            .await,
        403,
        ErrorCode::MissingPermission,
    )
    .await;
    problem(
        carol
            .call(api::list_pins::target(general.id), &[], None)
            .await,
        404,
        ErrorCode::ChannelNotFound,
    )
    .await;
    no_content(
        alice
            .call(api::pin_message::target(general.id, first.id), &[], None)
            .await,
    )
    .await;
    let pinned = next_fugue(&mut bob_ws, op::PIN_UPDATE).await;
    assert_eq!(pinned["d"]["message_id"], first.id.to_string(), "{pinned}");
    assert_eq!(pinned["d"]["pinned"], true);
    let pins: Vec<Pinned> = ok(
        bob.call(api::list_pins::target(general.id), &[], None)
            .await,
        200,
    )
    .await;
    assert_eq!(
        pins.iter().map(|p| p.message.id).collect::<Vec<_>>(),
        vec![first.id]
    );
    assert_eq!(pins[0].message.content, "pin me");
    // Who pinned it and when.
    assert_eq!(&pins[0].pinned_by, alice.session.fid());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        (first.timestamp..=now).contains(&pins[0].pinned_at),
        "pinned at {} (sent at {}, now {now})",
        pins[0].pinned_at,
        first.timestamp
    );

    // 49 more fill the channel; the 51st is refused and not stored.
    for i in 1..50 {
        let m = alice.sent(general.id, &format!("p{i}"), "more").await;
        no_content(
            alice
                .call(api::pin_message::target(general.id, m.id), &[], None)
                .await,
        )
        .await;
    }
    let extra = alice.sent(general.id, "p50", "one too many").await;
    problem(
        alice
            .call(api::pin_message::target(general.id, extra.id), &[], None)
            .await,
        400,
        ErrorCode::InvalidChatInput,
    )
    .await;
    // Pinning a pinned message again is fine even when full.
    no_content(
        alice
            .call(api::pin_message::target(general.id, first.id), &[], None)
            .await,
    )
    .await;
    let pins: Vec<Pinned> = ok(
        alice
            .call(api::list_pins::target(general.id), &[], None)
            .await,
        200,
    )
    .await;
    assert_eq!(pins.len(), 50);
    assert!(pins.iter().all(|p| p.message.id != extra.id));

    no_content(
        alice
            .call(api::unpin_message::target(general.id, first.id), &[], None)
            .await,
    )
    .await;
    // Past the 49 pins of the others.
    let unpinned = loop {
        let f = next_fugue(&mut bob_ws, op::PIN_UPDATE).await;
        if f["d"]["pinned"] == false {
            break f;
        }
    };
    assert_eq!(
        unpinned["d"]["message_id"],
        first.id.to_string(),
        "{unpinned}"
    );
    let pins: Vec<Pinned> = ok(
        alice
            .call(api::list_pins::target(general.id), &[], None)
            .await,
        200,
    )
    .await;
    assert_eq!(pins.len(), 49);
    assert!(pins.iter().all(|p| p.message.id != first.id));
}

#[tokio::test]
async fn unread_and_mention_counts_follow_the_read_marker() {
    use fugue_proto::chat::Permissions as P;
    let server = server().await;
    let alice = Who::new(&server, "alice").await;
    let bob = Who::new(&server, "bob").await;
    let carol = Who::new(&server, "carol").await;
    let (g, general) = alice.create_guild("club", true).await;
    alice.admit(&bob, g.id, general.id).await;

    let states = bob.read_states().await;
    assert_eq!(states.len(), 1, "{states:?}");
    assert_eq!((states[0].unread, states[0].mentions), (0, 0));
    assert_eq!(states[0].last_read, None);

    let mention = format!("hi <@{}>", bob.fid());
    let m1 = alice.sent(general.id, "a1", "one").await;
    alice.sent(general.id, "a2", &mention).await;
    alice.sent(general.id, "a3", "three").await;
    bob.sent(general.id, "b1", "mine do not count").await;
    // @everyone needs MENTION_EVERYONE: bob lacks it, the owner has everything.
    problem(
        bob.send(general.id, "b2", "hey @everyone").await,
        403,
        ErrorCode::MissingPermission,
    )
    .await;
    let m4 = alice.sent(general.id, "a4", "@everyone look").await;
    alice
        .sent(general.id, "a5", &format!("<@{}>", carol.fid()))
        .await;

    let s = &bob.read_states().await[0];
    assert_eq!((s.unread, s.mentions), (5, 2), "{s:?}");

    let marked: ReadState = ok(bob.mark_read(general.id, m1.id).await, 200).await;
    assert_eq!(marked.last_read, Some(m1.id));
    assert_eq!((marked.unread, marked.mentions), (4, 2));
    ok::<ReadState>(bob.mark_read(general.id, m4.id).await, 200).await;
    let s = &bob.read_states().await[0];
    assert_eq!((s.unread, s.mentions, s.last_read), (1, 0, Some(m4.id)));

    // A marker on a message of another channel, or in a guild one is not in, is refused.
    problem(
        carol.mark_read(general.id, m4.id).await,
        404,
        ErrorCode::ChannelNotFound,
    )
    .await;
    assert!(carol.read_states().await.is_empty());
    // A channel bob can no longer view drops out of his read states.
    alice.everyone_may(g.id, P::SEND_MESSAGES).await;
    assert!(bob.read_states().await.is_empty());
}

#[tokio::test]
async fn dms_and_groups_have_read_states_too() {
    let manual = ManualClock::default();
    let clock = manual.clock();
    let server = TestServer::start_with(move |c| {
        c.clock = clock;
        c.rate_limits.chat_messages_per_5s = 0;
    })
    .await;
    let alice = Who::new(&server, "alice").await;
    let bob = Who::new(&server, "bob").await;
    let carol = Who::new(&server, "carol").await;
    let dm: Conversation = ok(alice.dm(&bob.fid()).await, 201).await;
    alice.sent(dm.id, "a1", "one").await;
    let two = alice
        .sent(dm.id, "a2", &format!("two <@{}>", bob.fid()))
        .await;
    bob.sent(dm.id, "b1", "his own do not count").await;

    // A DM is its own guild: `guild_id` is the conversation's id, as in its messages.
    let states = bob.read_states().await;
    assert_eq!(states.len(), 1, "{states:?}");
    let s = &states[0];
    assert_eq!((s.guild_id, s.channel_id), (dm.id, dm.id));
    assert_eq!((s.unread, s.mentions, s.last_read), (2, 1, None));

    let marked: ReadState = ok(bob.mark_read(dm.id, two.id).await, 200).await;
    assert_eq!((marked.unread, marked.mentions), (0, 0));
    assert_eq!(bob.read_states().await[0].last_read, Some(two.id));
    // Carol is in neither.
    assert!(carol.read_states().await.is_empty());

    // A member added to a group counts from joining it, not from its first message.
    let group: Conversation = ok(alice.group(&[bob.fid()]).await, 201).await;
    alice.sent(group.id, "g1", "before carol").await;
    manual.advance(2);
    let _: ConversationMember = ok(alice.add(group.id, &carol.fid()).await, 200).await;
    alice.sent(group.id, "g2", "after carol").await;
    let carols = carol.read_states().await;
    assert_eq!(carols.len(), 1, "{carols:?}");
    assert_eq!((carols[0].channel_id, carols[0].unread), (group.id, 1));
    let bobs = bob.read_states().await;
    let in_group = bobs.iter().find(|s| s.channel_id == group.id).unwrap();
    assert_eq!(in_group.unread, 2, "{bobs:?}");
}

#[tokio::test]
async fn a_read_marker_reaches_the_actors_other_sessions_only() {
    let server = server().await;
    let alice = Who::new(&server, "alice").await;
    let bob = Who::new(&server, "bob").await;
    let bob_phone = Who::again(&server, "bob", "phone").await;
    let (g, general) = alice.create_guild("club", true).await;
    alice.admit(&bob, g.id, general.id).await;
    let m = alice.sent(general.id, "a1", "read me").await;
    let mut phone_ws = bob_phone.subscribed("fugue-chat").await;
    let mut alice_ws = alice.subscribed("fugue-chat").await;

    ok::<ReadState>(bob.mark_read(general.id, m.id).await, 200).await;
    let f = next_fugue(&mut phone_ws, op::READ_STATE).await;
    assert_eq!(f["d"]["channel_id"], general.id.to_string(), "{f}");
    assert_eq!(f["d"]["last_read"], m.id.to_string(), "{f}");
    assert!(
        gets_fugue(&mut alice_ws, op::READ_STATE, Duration::from_millis(300))
            .await
            .is_none()
    );
    // The phone sees the same state over HTTP.
    let s = &bob_phone.read_states().await[0];
    assert_eq!((s.last_read, s.unread), (Some(m.id), 0));
}

#[tokio::test]
async fn presence_follows_chat_connections_and_invisible_shows_offline() {
    let server = server().await;
    let alice = Who::new(&server, "alice").await;
    let bob = Who::new(&server, "bob").await;
    let bob_phone = Who::again(&server, "bob", "phone").await;
    let carol = Who::new(&server, "carol").await;
    let (g, general) = alice.create_guild("club", true).await;
    alice.admit(&bob, g.id, general.id).await;
    let mut alice_ws = alice.subscribed("fugue-chat").await;

    assert_eq!(alice.presence_of(&bob).await.availability, 0);
    let laptop = bob.subscribed("chat").await;
    alice.sees_presence(&bob, 1).await;
    let online = next_fugue(&mut alice_ws, op::PRESENCE_UPDATE).await;
    assert_eq!(online["d"]["fid"], bob.fid().to_string(), "{online}");
    assert_eq!(online["d"]["availability"], 1, "{online}");
    // Someone sharing no guild with bob does not learn it.
    assert_eq!(carol.presence_of(&bob).await.availability, 0);

    // Two connections: closing one keeps bob online, closing both takes him offline.
    let phone = bob_phone.subscribed("chat").await;
    drop(laptop);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(alice.presence_of(&bob).await.availability, 1);
    drop(phone);
    alice.sees_presence(&bob, 0).await;

    // A set availability and status show while connected; invisible shows offline.
    let _laptop = bob.subscribed("chat").await;
    let set: Presence = ok(
        bob.call(
            api::set_presence::target(),
            &[],
            Some(json!({"availability": 3, "status": "focus time"})),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(set.availability, 3);
    let p = alice.sees_presence(&bob, 3).await;
    assert_eq!(p.status.as_deref(), Some("focus time"));
    // What bob chose is his to see, not alice's.
    assert_eq!(p.chosen, None);
    let focus = Some(Chosen {
        availability: 3,
        status: Some("focus time".into()),
    });
    assert_eq!(set.chosen, focus);
    assert_eq!(bob.presence_of(&bob).await.chosen, focus);
    let invisible: Presence = ok(
        bob.call(
            api::set_presence::target(),
            &[],
            Some(json!({"availability": 0, "status": "away"})),
        )
        .await,
        200,
    )
    .await;
    let hidden = alice.sees_presence(&bob, 0).await;
    assert_eq!((hidden.status, hidden.chosen), (None, None));
    // Bob sees that he is invisible (others see him offline), and so does his profile.
    let away = Some(Chosen {
        availability: 0,
        status: Some("away".into()),
    });
    assert_eq!((invisible.availability, &invisible.chosen), (0, &away));
    let own: Actor = ok(
        bob.call(api::get_own_profile::target(), &[], None).await,
        200,
    )
    .await;
    assert_eq!((own.availability, own.chosen), (0, away));
    let seen: Actor = ok(
        alice
            .call(api::get_profile::target(&bob.fid()), &[], None)
            .await,
        200,
    )
    .await;
    assert_eq!((seen.availability, seen.chosen), (0, None));
    problem(
        bob.call(
            api::set_presence::target(),
            &[],
            Some(json!({"availability": 4})),
        )
        .await,
        400,
        ErrorCode::InvalidChatInput,
    )
    .await;
}

#[tokio::test]
async fn profiles_are_changed_by_their_actor_and_read_by_anyone() {
    let server = server().await;
    let alice = Who::new(&server, "alice").await;
    let bob = Who::new(&server, "bob").await;
    let (g, general) = alice.create_guild("club", true).await;
    alice.admit(&bob, g.id, general.id).await;
    let mut bob_ws = bob.subscribed("fugue-chat").await;

    let me: Actor = ok(
        alice.call(api::get_own_profile::target(), &[], None).await,
        200,
    )
    .await;
    assert_eq!(me.fid, alice.fid());
    assert_eq!(me.display_name, None);

    let changed: Actor = ok(
        alice
            .call(
                api::update_profile::target(),
                &[],
                Some(json!({
                    "display_name": "Alice A.",
                    "pronouns": "she/her",
                    "about": "likes\nchat",
                    "timezone": "Europe/Berlin",
                })),
            )
            .await,
        200,
    )
    .await;
    assert_eq!(changed.display_name.as_deref(), Some("Alice A."));
    let event = next_fugue(&mut bob_ws, op::PROFILE_UPDATE).await;
    assert_eq!(event["d"]["fid"], alice.fid().to_string(), "{event}");
    assert_eq!(event["d"]["display_name"], "Alice A.", "{event}");

    let seen: Actor = ok(
        bob.call(api::get_profile::target(&alice.fid()), &[], None)
            .await,
        200,
    )
    .await;
    assert_eq!(seen.pronouns.as_deref(), Some("she/her"));
    assert_eq!(seen.about.as_deref(), Some("likes\nchat"));
    assert_eq!(seen.timezone.as_deref(), Some("Europe/Berlin"));

    // An empty field clears it; absent ones stay.
    let cleared: Actor = ok(
        alice
            .call(
                api::update_profile::target(),
                &[],
                Some(json!({"pronouns": ""})),
            )
            .await,
        200,
    )
    .await;
    assert_eq!(cleared.pronouns, None);
    assert_eq!(cleared.display_name.as_deref(), Some("Alice A."));

    for bad in [
        json!({"display_name": "x".repeat(65)}),
        json!({"timezone": "Berlin time!"}),
        json!({"about": "a\u{7}b"}),
    ] {
        problem(
            alice
                .call(api::update_profile::target(), &[], Some(bad))
                .await,
            400,
            ErrorCode::InvalidChatInput,
        )
        .await;
    }
    let unknown: FederationId = format!("nobody@{}", server.domain).parse().unwrap();
    problem(
        bob.call(api::get_profile::target(&unknown), &[], None)
            .await,
        404,
        ErrorCode::ActorNotFound,
    )
    .await;
}

#[tokio::test]
async fn presence_on_one_node_is_seen_on_another() {
    let nodes = TestServer::start_cluster(2, |_| {}).await;
    let alice = Who::new(&nodes[0], "alice").await;
    let bob = Who::new(&nodes[1], "bob").await;
    let (g, general) = alice.create_guild("two nodes", true).await;
    alice.admit(&bob, g.id, general.id).await;
    let mut alice_ws = alice.subscribed("fugue-chat").await;
    assert_eq!(alice.presence_of(&bob).await.availability, 0);

    // Bob connects to the second node: the first answers him online, and its connection
    // hears of it over the bus.
    let bob_ws = bob.subscribed("chat").await;
    alice.sees_presence(&bob, 1).await;
    let online = next_fugue(&mut alice_ws, op::PRESENCE_UPDATE).await;
    assert_eq!(
        (&online["d"]["fid"], &online["d"]["availability"]),
        (&json!(bob.fid().to_string()), &json!(1)),
        "{online}"
    );
    // His last connection there closes: offline on the first node too.
    drop(bob_ws);
    alice.sees_presence(&bob, 0).await;
    let offline = next_fugue(&mut alice_ws, op::PRESENCE_UPDATE).await;
    assert_eq!(offline["d"]["availability"], 0, "{offline}");
}
