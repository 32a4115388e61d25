//! Direct messages and group conversations over HTTP and the gateway, on one server and
//! between two: who may read and post, membership and ownership rules, and who receives
//! what (docs/decisions.md, "Direct messages live on the recipient's server" and "Group
//! conversations").

use serde_json::json;

use fugue_proto::api;
use fugue_proto::chat::{Message, channel_type};
use fugue_proto::conversation::{Conversation, ConversationMember};
use fugue_proto::{ErrorCode, FederationId};
use fugue_testkit::{TestServer, ws};

use crate::chat_support::{Who, ok, problem, quiet, resume, status, until};

#[tokio::test]
async fn a_dm_between_two_local_actors_is_theirs_alone() {
    let server = TestServer::start().await;
    let alice = Who::new(&server, "alice").await;
    let bob = Who::new(&server, "bob").await;
    let carol = Who::new(&server, "carol").await;

    let dm: Conversation = ok(alice.dm(&bob.fid()).await, 201).await;
    assert_eq!(dm.kind, channel_type::DM);
    assert_eq!(dm.owner_id, None);
    assert_eq!(dm.recipients, vec![alice.fid(), bob.fid()]);
    // One conversation per pair, whoever asks.
    let again: Conversation = ok(alice.dm(&bob.fid()).await, 200).await;
    let from_bob: Conversation = ok(bob.dm(&alice.fid()).await, 200).await;
    assert_eq!((again.id, from_bob.id), (dm.id, dm.id));
    problem(
        alice.dm(&alice.fid()).await,
        400,
        ErrorCode::InvalidChatInput,
    )
    .await;
    let nobody: FederationId = "nobody@localhost".parse().unwrap();
    problem(alice.dm(&nobody).await, 404, ErrorCode::UserNotFound).await;
    // An actor of another server is asked of its home server, which must answer.
    let elsewhere: FederationId = "bob@elsewhere.test".parse().unwrap();
    problem(
        alice.dm(&elsewhere).await,
        424,
        ErrorCode::HomeServerUnavailable,
    )
    .await;

    let hi: Message = ok(alice.send(dm.id, "a1", "hi bob").await, 201).await;
    assert_eq!(hi.channel_id, dm.id);
    let hey: Message = ok(bob.send(dm.id, "b1", "hey alice").await, 201).await;
    for who in [&alice, &bob] {
        let history: Vec<Message> = ok(who.history_call(dm.id, &[]).await, 200).await;
        assert_eq!(
            history.iter().map(|m| m.id).collect::<Vec<_>>(),
            vec![hey.id, hi.id]
        );
    }
    // A third actor learns nothing and posts nothing.
    problem(
        carol.history_call(dm.id, &[]).await,
        404,
        ErrorCode::ChannelNotFound,
    )
    .await;
    problem(
        carol.send(dm.id, "c1", "let me in").await,
        404,
        ErrorCode::ChannelNotFound,
    )
    .await;
    problem(
        carol
            .call(api::get_conversation::target(dm.id), &[], None)
            .await,
        404,
        ErrorCode::ChannelNotFound,
    )
    .await;
    // No owner in a DM: only authors delete.
    problem(
        bob.call(api::delete_message::target(dm.id, hi.id), &[], None)
            .await,
        403,
        ErrorCode::MissingPermission,
    )
    .await;
    assert_eq!(
        status(
            alice
                .call(api::delete_message::target(dm.id, hi.id), &[], None)
                .await
        )
        .await,
        204
    );
    // A DM cannot be left or grown.
    problem(alice.leave(dm.id).await, 400, ErrorCode::InvalidChatInput).await;
    problem(
        alice.add(dm.id, &carol.fid()).await,
        400,
        ErrorCode::InvalidChatInput,
    )
    .await;

    let listed: Vec<Conversation> =
        ok(bob.call(api::list_dms::target(), &[], None).await, 200).await;
    assert_eq!(listed.iter().map(|c| c.id).collect::<Vec<_>>(), vec![dm.id]);
    let none: Vec<Conversation> =
        ok(carol.call(api::list_dms::target(), &[], None).await, 200).await;
    assert!(none.is_empty());

    // Typing and messages reach the other member, not a third actor.
    let mut bob_ws = bob.connect().await;
    let mut carol_ws = carol.connect().await;
    let mut alice_ws = alice.connect().await;
    ws::send(
        &mut alice_ws,
        json!({"n": "chat", "op": 9, "d": {"channel_id": dm.id.to_string()}}),
    )
    .await;
    let typing = until(&mut bob_ws, "chat", 9).await;
    assert_eq!(typing["d"]["channel_id"], dm.id.to_string(), "{typing}");
    let late: Message = ok(alice.send(dm.id, "a2", "are you there?").await, 201).await;
    let got = until(&mut bob_ws, "chat", 0).await;
    assert_eq!(got["d"]["id"], late.id.to_string(), "{got}");
    quiet(&mut carol_ws, "carol is not in the DM").await;
}

#[tokio::test]
async fn a_dm_and_a_group_between_actors_of_two_servers() {
    let (alpha, beta) = fugue_testkit::federated_pair().await;
    let bob = Who::new(&beta, "bob").await;
    let carol = Who::new(&beta, "carol").await;
    // Alice of alpha writes to bob on bob's server, signed in there by key trial.
    let alice = Who::foreign(&beta, alpha.register("alice").await).await;

    let dm: Conversation = ok(alice.dm(&bob.fid()).await, 201).await;
    assert_eq!(dm.recipients, vec![alice.fid(), bob.fid()]);
    let from_alpha: Message = ok(alice.send(dm.id, "a1", "hello from alpha").await, 201).await;
    assert_eq!(from_alpha.author.to_string(), "alice@alpha.test");
    let reply: Message = ok(bob.send(dm.id, "b1", "hello from beta").await, 201).await;
    for who in [&alice, &bob] {
        let history: Vec<Message> = ok(who.history_call(dm.id, &[]).await, 200).await;
        assert_eq!(
            history.iter().map(|m| m.id).collect::<Vec<_>>(),
            vec![reply.id, from_alpha.id]
        );
    }
    // An actor registered here opens its DM with an actor of another server here too: the
    // same conversation, where that actor's messages to it arrive. One the other server
    // does not know is no recipient.
    let bobs: Conversation = ok(bob.dm(&alice.fid()).await, 200).await;
    assert_eq!(bobs.id, dm.id);
    let ghost: FederationId = "ghost@alpha.test".parse().unwrap();
    problem(bob.dm(&ghost).await, 404, ErrorCode::UserNotFound).await;
    // An actor of another server only opens DMs with actors registered here.
    let dave: FederationId = "dave@alpha.test".parse().unwrap();
    problem(alice.dm(&dave).await, 404, ErrorCode::UserNotFound).await;

    // Bob's group on beta with alice of alpha: alpha answers for her.
    let dave_of_alpha = alpha.register("dave").await;
    let group: Conversation = ok(bob.group(&[alice.fid(), carol.fid()]).await, 201).await;
    assert_eq!(group.kind, channel_type::GROUP);
    assert_eq!(group.owner_id, Some(bob.fid()));
    assert_eq!(group.recipients, vec![bob.fid(), alice.fid(), carol.fid()]);
    // An actor alpha does not know cannot be added.
    let ghost: FederationId = "ghost@alpha.test".parse().unwrap();
    problem(
        bob.add(group.id, &ghost).await,
        404,
        ErrorCode::UserNotFound,
    )
    .await;
    // One alpha has: recorded here, and a member.
    let added: ConversationMember = ok(bob.add(group.id, dave_of_alpha.fid()).await, 200).await;
    assert_eq!(added.fid.to_string(), "dave@alpha.test");

    // Alice's connection to beta's gateway follows the group like a local member's.
    let mut alice_ws = alice.connect().await;
    let from_bob: Message = ok(bob.send(group.id, "b2", "welcome, alpha").await, 201).await;
    let got = until(&mut alice_ws, "chat", 0).await;
    assert_eq!(got["d"]["id"], from_bob.id.to_string(), "{got}");
    let posted: Message = ok(alice.send(group.id, "g1", "alpha in the group").await, 201).await;
    let history: Vec<Message> = ok(carol.history_call(group.id, &[]).await, 200).await;
    assert_eq!(
        history.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![posted.id, from_bob.id]
    );

    // Ownership goes to the foreign member, who then removes carol.
    let handed: Conversation = ok(
        bob.call(
            api::transfer_conversation::target(group.id),
            &[],
            Some(json!({"owner_id": alice.fid().to_string()})),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(handed.owner_id, Some(alice.fid()));
    problem(
        bob.remove(group.id, &carol.fid()).await,
        403,
        ErrorCode::MissingPermission,
    )
    .await;
    assert_eq!(
        status(alice.remove(group.id, &carol.fid()).await).await,
        204
    );
    problem(
        carol.history_call(group.id, &[]).await,
        404,
        ErrorCode::ChannelNotFound,
    )
    .await;
    let now: Conversation = ok(
        bob.call(api::get_conversation::target(group.id), &[], None)
            .await,
        200,
    )
    .await;
    assert_eq!(
        now.recipients
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        vec!["bob@beta.test", "alice@alpha.test", "dave@alpha.test"]
    );
}

#[tokio::test]
async fn only_the_owner_adds_and_removes_and_a_group_holds_fifteen() {
    let server = TestServer::start().await;
    let owner = Who::new(&server, "owner").await;
    let mut others = Vec::new();
    for i in 0..15 {
        others.push(Who::new(&server, &format!("m{i}")).await);
    }
    let fids: Vec<FederationId> = others.iter().map(Who::fid).collect();
    // 16 with the creator, or only the creator: refused.
    problem(owner.group(&fids).await, 400, ErrorCode::InvalidChatInput).await;
    problem(owner.group(&[]).await, 400, ErrorCode::InvalidChatInput).await;
    let nobody: FederationId = "nobody@localhost".parse().unwrap();
    problem(
        owner.group(&[fids[0].clone(), nobody]).await,
        404,
        ErrorCode::UserNotFound,
    )
    .await;

    let g: Conversation = ok(owner.group(&fids[..2]).await, 201).await;
    let (m0, m1, m2) = (&others[0], &others[1], &others[2]);
    // A member who is not the owner adds and removes no one else.
    problem(
        m0.add(g.id, &m2.fid()).await,
        403,
        ErrorCode::MissingPermission,
    )
    .await;
    problem(
        m0.remove(g.id, &m1.fid()).await,
        403,
        ErrorCode::MissingPermission,
    )
    .await;
    problem(
        m0.call(
            api::transfer_conversation::target(g.id),
            &[],
            Some(json!({"owner_id": m0.fid().to_string()})),
        )
        .await,
        403,
        ErrorCode::MissingPermission,
    )
    .await;
    // Any member renames.
    let renamed: Conversation = ok(
        m1.call(
            api::rename_group::target(g.id),
            &[],
            Some(json!({"name": "the fifteen"})),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(renamed.name.as_deref(), Some("the fifteen"));
    problem(
        owner.add(g.id, &fids[1]).await,
        409,
        ErrorCode::ConcurrentChange,
    )
    .await;
    // The owner fills it up to 15; the 16th is refused.
    for m in &fids[2..14] {
        ok::<ConversationMember>(owner.add(g.id, m).await, 200).await;
    }
    problem(
        owner.add(g.id, &fids[14]).await,
        400,
        ErrorCode::InvalidChatInput,
    )
    .await;
    let members: Vec<ConversationMember> = ok(
        owner
            .call(api::list_conversation_members::target(g.id), &[], None)
            .await,
        200,
    )
    .await;
    assert_eq!(members.len(), 15);
    assert_eq!(members[0].fid, owner.fid());
    // A member leaves by its FID as well as by @me.
    assert_eq!(status(m1.remove(g.id, &m1.fid()).await).await, 204);
    problem(
        m1.history_call(g.id, &[]).await,
        404,
        ErrorCode::ChannelNotFound,
    )
    .await;
    ok::<ConversationMember>(owner.add(g.id, &fids[14]).await, 200).await;
}

#[tokio::test]
async fn members_receive_a_groups_events_and_lose_them_when_removed() {
    let server = TestServer::start().await;
    let alice = Who::new(&server, "alice").await;
    let bob = Who::new(&server, "bob").await;
    let carol = Who::new(&server, "carol").await;
    let mut bob_ws = bob.connect().await;
    let mut carol_ws = carol.connect().await;

    let g: Conversation = ok(alice.group(&[bob.fid()]).await, 201).await;
    let joined = until(&mut bob_ws, "fugue-chat", 20).await;
    assert_eq!(joined["d"]["id"], g.id.to_string(), "{joined}");
    let created = until(&mut bob_ws, "fugue-chat", 22).await;
    assert_eq!(created["d"]["id"], g.id.to_string(), "{created}");
    let first: Message = ok(alice.send(g.id, "a1", "welcome bob").await, 201).await;
    let got = until(&mut bob_ws, "chat", 0).await;
    assert_eq!(got["d"]["id"], first.id.to_string(), "{got}");
    quiet(&mut carol_ws, "carol is no member").await;

    // Carol is added: her connection follows the group from her join on.
    ok::<ConversationMember>(alice.add(g.id, &carol.fid()).await, 200).await;
    until(&mut carol_ws, "fugue-chat", 20).await;
    let add = until(&mut carol_ws, "fugue-chat", 23).await;
    assert_eq!(add["d"]["fid"], "carol@localhost", "{add}");
    let second: Message = ok(bob.send(g.id, "b1", "hi carol").await, 201).await;
    let got = until(&mut carol_ws, "chat", 0).await;
    assert_eq!(got["d"]["id"], second.id.to_string(), "{got}");
    let add = until(&mut bob_ws, "fugue-chat", 23).await;
    assert_eq!(add["d"]["fid"], "carol@localhost", "{add}");

    // The owner leaves: the longest-standing member (bob) owns the group now.
    assert_eq!(status(alice.leave(g.id).await).await, 204);
    for w in [&mut bob_ws, &mut carol_ws] {
        let removed = until(w, "fugue-chat", 24).await;
        assert_eq!(removed["d"]["fid"], "alice@localhost", "{removed}");
        let owner = until(w, "fugue-chat", 25).await;
        assert_eq!(owner["d"]["owner_id"], "bob@localhost", "{owner}");
        assert_eq!(owner["d"]["previous"], "alice@localhost", "{owner}");
    }
    problem(
        alice.send(g.id, "a2", "still here?").await,
        404,
        ErrorCode::ChannelNotFound,
    )
    .await;

    // Bob removes carol: she receives nothing more of it and reads nothing.
    assert_eq!(status(bob.remove(g.id, &carol.fid()).await).await, 204);
    let removed = until(&mut carol_ws, "fugue-chat", 24).await;
    assert_eq!(removed["d"]["fid"], "carol@localhost", "{removed}");
    let left = until(&mut carol_ws, "fugue-chat", 21).await;
    assert_eq!(left["d"]["conversation_id"], g.id.to_string(), "{left}");
    ok::<Message>(bob.send(g.id, "b2", "just me").await, 201).await;
    quiet(&mut carol_ws, "a removed member receives nothing more").await;
    problem(
        carol.history_call(g.id, &[]).await,
        404,
        ErrorCode::ChannelNotFound,
    )
    .await;

    // The last member leaves: the group closes.
    until(&mut bob_ws, "chat", 0).await;
    assert_eq!(status(bob.leave(g.id).await).await, 204);
    let closed = until(&mut bob_ws, "fugue-chat", 22).await;
    assert_eq!(closed["d"]["closed"], true, "{closed}");
    until(&mut bob_ws, "fugue-chat", 24).await;
    problem(
        bob.send(g.id, "b3", "anyone?").await,
        404,
        ErrorCode::ChannelNotFound,
    )
    .await;
    problem(
        alice.add(g.id, &bob.fid()).await,
        404,
        ErrorCode::ChannelNotFound,
    )
    .await;
    let none: Vec<Conversation> = ok(bob.call(api::list_dms::target(), &[], None).await, 200).await;
    assert!(none.is_empty());
}

#[tokio::test]
async fn a_resume_after_being_added_replays_from_the_join() {
    let server = TestServer::start().await;
    let alice = Who::new(&server, "alice").await;
    let bob = Who::new(&server, "bob").await;
    let dave = Who::new(&server, "dave").await;
    let g: Conversation = ok(alice.group(&[bob.fid()]).await, 201).await;
    // Dave's connection sees a DM begin, then goes away.
    let s = {
        let mut w = dave.connect().await;
        ok::<Conversation>(alice.dm(&dave.fid()).await, 201).await;
        let f = until(&mut w, "fugue-chat", 22).await;
        f["s"].as_u64().unwrap()
    };
    let before: Message = ok(alice.send(g.id, "m1", "before dave").await, 201).await;
    ok::<ConversationMember>(alice.add(g.id, &dave.fid()).await, 200).await;
    let after: Message = ok(alice.send(g.id, "m2", "after dave").await, 201).await;
    let replayed = resume(&server, &dave, s).await;
    let messages: Vec<&str> = replayed
        .iter()
        .filter(|e| e["n"] == "chat" && e["op"] == 0)
        .map(|e| e["d"]["id"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(messages, vec![after.id.to_string()], "{replayed:?}");
    assert!(
        !serde_json::to_string(&replayed)
            .unwrap()
            .contains(&before.id.to_string()),
        "{replayed:?}"
    );
    assert!(
        replayed
            .iter()
            .any(|e| e["n"] == "fugue-chat" && e["op"] == 23 && e["d"]["fid"] == "dave@localhost"),
        "the join is replayed: {replayed:?}"
    );
}
