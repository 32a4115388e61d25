//! Chat over HTTP and the gateway: guilds, channels, invites, memberships and bans, roles
//! and overwrites, signed messages (tampered, moved, replayed, edited, deleted), history
//! pages, chat problems (`message`, numeric `code`) and the chat rate limits.

use serde_json::{Value, json};

use fugue_proto::ErrorCode;
use fugue_proto::api;
use fugue_proto::chat::{
    Channel, Guild, Invite, Member, Message, MessageBody, Permissions, Role, SignedPayload,
};
use fugue_testkit::{PASSWORD, TestServer, ws};

use crate::chat_support::{Who, next_chat, ok, problem, resume, status, subscribe};

#[tokio::test]
async fn a_guild_lives_from_creation_to_deletion_and_private_ones_are_hidden() {
    let server = TestServer::start().await;
    let alice = Who::new(&server, "alice").await;
    let bob = Who::new(&server, "bob").await;
    let resp = alice
        .call(
            api::create_guild::target(),
            &[],
            Some(json!({"name": "book club", "private": true})),
        )
        .await;
    let raw: Value = ok(resp, 201).await;
    // OP-46/OP-49: both names, ids and times as decimal strings.
    assert_eq!(raw["name"], "book club");
    assert_eq!(raw["display_name"], "book club");
    assert!(
        raw["id"].is_string() && raw["created_at"].is_string(),
        "{raw}"
    );
    assert_eq!(raw["owner_id"], "alice@localhost");
    assert_eq!(raw["member_count"], "1");
    let g: Guild = serde_json::from_value(raw).unwrap();

    // Both read forms answer 200 to a member, 404 to a stranger.
    let by_path: Guild = ok(
        alice.call(api::get_guild::target(g.id), &[], None).await,
        200,
    )
    .await;
    let by_query: Guild = ok(
        alice
            .call(
                api::get_guild_by_query::target(),
                &[("guild_id", g.id.to_string())],
                None,
            )
            .await,
        200,
    )
    .await;
    assert_eq!(by_path, by_query);
    problem(
        bob.call(api::get_guild::target(g.id), &[], None).await,
        404,
        ErrorCode::GuildNotFound,
    )
    .await;
    problem(
        bob.call(
            api::get_guild_by_query::target(),
            &[("guild_id", g.id.to_string())],
            None,
        )
        .await,
        404,
        ErrorCode::GuildNotFound,
    )
    .await;
    problem(
        bob.call(api::list_channels::target(g.id), &[], None).await,
        404,
        ErrorCode::GuildNotFound,
    )
    .await;
    problem(bob.join(g.id, None).await, 404, ErrorCode::GuildNotFound).await;

    // Anonymous calls get a chat problem too.
    let anon = server
        .client()
        .raw()
        .get(format!("{}{}", server.url, api::get_guild::path(g.id)))
        .send()
        .await
        .unwrap();
    problem(anon, 401, ErrorCode::Unauthenticated).await;

    // A public guild is visible and joinable without an invite.
    let (public, _) = alice.create_guild("open house", false).await;
    let seen: Guild = ok(
        bob.call(api::get_guild::target(public.id), &[], None).await,
        200,
    )
    .await;
    assert!(!seen.private);
    let member: Member = ok(bob.join(public.id, None).await, 201).await;
    assert_eq!(member.fid, bob.fid());
    problem(
        bob.join(public.id, None).await,
        409,
        ErrorCode::ConcurrentChange,
    )
    .await;

    // Settings: the owner may, a plain member may not.
    let changed: Guild = ok(
        alice
            .call(
                api::update_guild::target(public.id),
                &[],
                Some(json!({"name": "open house 2", "description": "d"})),
            )
            .await,
        200,
    )
    .await;
    assert_eq!(
        (changed.name.as_str(), changed.description.as_deref()),
        ("open house 2", Some("d"))
    );
    let p = problem(
        bob.call(
            api::update_guild::target(public.id),
            &[],
            Some(json!({"name": "mine"})),
        )
        .await,
        403,
        ErrorCode::MissingPermission,
    )
    .await;
    assert!(p.detail.unwrap().contains("MANAGE_GUILD"));
    problem(
        alice
            .call(
                api::create_guild::target(),
                &[],
                Some(json!({"name": "x".repeat(33)})),
            )
            .await,
        400,
        ErrorCode::InvalidChatInput,
    )
    .await;

    // The owner cannot leave; after a transfer it can, and the new owner deletes the guild
    // with the second factor.
    problem(
        alice
            .call(api::leave_guild::target(public.id), &[], None)
            .await,
        409,
        ErrorCode::OwnerCannotLeave,
    )
    .await;
    problem(
        bob.call(
            api::transfer_guild::target(public.id),
            &[],
            Some(json!({"owner_id": "bob@localhost"})),
        )
        .await,
        403,
        ErrorCode::MissingPermission,
    )
    .await;
    let moved: Guild = ok(
        alice
            .call(
                api::transfer_guild::target(public.id),
                &[],
                Some(json!({"owner_id": "bob@localhost"})),
            )
            .await,
        200,
    )
    .await;
    assert_eq!(moved.owner_id, bob.fid());
    assert_eq!(
        status(
            alice
                .call(api::leave_guild::target(public.id), &[], None)
                .await
        )
        .await,
        204
    );
    problem(
        bob.call(api::delete_guild::target(public.id), &[], None)
            .await,
        401,
        ErrorCode::SensitiveSolutionRequired,
    )
    .await;
    assert_eq!(
        status(
            bob.call_with(
                api::delete_guild::target(public.id),
                &[],
                None,
                Some(PASSWORD)
            )
            .await
        )
        .await,
        204
    );
    problem(
        bob.call(api::get_guild::target(public.id), &[], None).await,
        404,
        ErrorCode::GuildNotFound,
    )
    .await;
}

#[tokio::test]
async fn invites_expire_run_out_and_can_be_revoked() {
    let (server, clock) = TestServer::start_with_clock().await;
    let alice = Who::new(&server, "alice").await;
    let bob = Who::new(&server, "bob").await;
    let carol = Who::new(&server, "carol").await;
    let dave = Who::new(&server, "dave").await;
    let (g, general) = alice.create_guild("club", true).await;

    let once = alice.invite(general.id, json!({"max_uses": 1})).await;
    let code = once.code.clone().unwrap();
    assert!(code.len() >= 20, "{code}");
    assert_eq!(once.id.len(), 64, "the id is the hash, not the code");
    let m: Member = ok(bob.join(g.id, Some(&code)).await, 201).await;
    assert_eq!(m.guild_id, g.id);
    problem(
        carol.join(g.id, Some(&code)).await,
        400,
        ErrorCode::InvalidInvite,
    )
    .await;
    problem(
        carol.join(g.id, Some("not-a-code")).await,
        400,
        ErrorCode::InvalidInvite,
    )
    .await;
    problem(carol.join(g.id, None).await, 404, ErrorCode::GuildNotFound).await;

    // Expiry.
    let short = alice.invite(general.id, json!({"max_age": 60})).await;
    clock.advance(61);
    problem(
        carol.join(g.id, Some(short.code.as_deref().unwrap())).await,
        400,
        ErrorCode::InvalidInvite,
    )
    .await;

    // Listing (no codes) and revocation by id; a plain member may not list.
    let open = alice.invite(general.id, json!({})).await;
    let listed: Vec<Invite> = ok(
        alice.call(api::list_invites::target(g.id), &[], None).await,
        200,
    )
    .await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].id, open.id);
    assert!(listed[0].code.is_none());
    problem(
        bob.call(api::list_invites::target(g.id), &[], None).await,
        403,
        ErrorCode::MissingPermission,
    )
    .await;
    problem(
        bob.call(api::delete_invite::target(&open.id), &[], None)
            .await,
        403,
        ErrorCode::MissingPermission,
    )
    .await;
    assert_eq!(
        status(
            alice
                .call(api::delete_invite::target(&open.id), &[], None)
                .await
        )
        .await,
        204
    );
    problem(
        carol.join(g.id, Some(open.code.as_deref().unwrap())).await,
        400,
        ErrorCode::InvalidInvite,
    )
    .await;
    problem(
        alice
            .call(api::delete_invite::target(&open.id), &[], None)
            .await,
        404,
        ErrorCode::InviteNotFound,
    )
    .await;

    // A member's own invite, revoked by its code.
    let bobs = bob.invite(general.id, json!({"max_uses": 5})).await;
    assert_eq!(
        status(
            bob.call(
                api::delete_invite::target(bobs.code.as_deref().unwrap()),
                &[],
                None
            )
            .await
        )
        .await,
        204
    );
    problem(
        dave.join(g.id, Some(bobs.code.as_deref().unwrap())).await,
        400,
        ErrorCode::InvalidInvite,
    )
    .await;
}

#[tokio::test]
async fn kicked_members_may_return_but_banned_ones_not_even_with_a_new_invite() {
    let server = TestServer::start().await;
    let alice = Who::new(&server, "alice").await;
    let bob = Who::new(&server, "bob").await;
    let (g, general) = alice.create_guild("club", true).await;
    let invite = alice.invite(general.id, json!({})).await;
    let code = invite.code.unwrap();
    ok::<Member>(bob.join(g.id, Some(&code)).await, 201).await;

    let members: Vec<Member> = ok(
        bob.call(
            api::list_members::target(g.id),
            &[("limit", "1".into())],
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(members.len(), 1);
    let rest: Vec<Member> = ok(
        bob.call(
            api::list_members::target(g.id),
            &[("after", members[0].fid.to_string())],
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(rest.len(), 1);
    assert_ne!(rest[0].fid, members[0].fid);
    problem(
        bob.call(
            api::list_members::target(g.id),
            &[("limit", "1001".into())],
            None,
        )
        .await,
        400,
        ErrorCode::InvalidChatInput,
    )
    .await;

    // Kick: bob is out, and can come back.
    problem(
        bob.call(api::kick_member::target(g.id, &alice.fid()), &[], None)
            .await,
        403,
        ErrorCode::MissingPermission,
    )
    .await;
    assert_eq!(
        status(
            alice
                .call(api::kick_member::target(g.id, &bob.fid()), &[], None)
                .await
        )
        .await,
        204
    );
    problem(
        bob.call(api::list_channels::target(g.id), &[], None).await,
        404,
        ErrorCode::GuildNotFound,
    )
    .await;
    ok::<Member>(bob.join(g.id, Some(&code)).await, 201).await;

    // Ban: bob is out and stays out, with the old invite or a fresh one.
    let ban: Value = ok(
        alice
            .call(
                api::ban_member::target(g.id, &bob.fid()),
                &[],
                Some(json!({"reason": "spam"})),
            )
            .await,
        200,
    )
    .await;
    assert_eq!(ban["reason"], "spam");
    problem(
        bob.call(api::list_channels::target(g.id), &[], None).await,
        404,
        ErrorCode::GuildNotFound,
    )
    .await;
    problem(bob.join(g.id, Some(&code)).await, 403, ErrorCode::Banned).await;
    let fresh = alice.invite(general.id, json!({})).await;
    problem(
        bob.join(g.id, fresh.code.as_deref()).await,
        403,
        ErrorCode::Banned,
    )
    .await;
    let bans: Vec<Value> = ok(
        alice.call(api::list_bans::target(g.id), &[], None).await,
        200,
    )
    .await;
    assert_eq!(bans.len(), 1);
    assert_eq!(bans[0]["fid"], "bob@localhost");

    // Lifted, the fresh invite works.
    assert_eq!(
        status(
            alice
                .call(api::unban_member::target(g.id, &bob.fid()), &[], None)
                .await
        )
        .await,
        204
    );
    ok::<Member>(bob.join(g.id, fresh.code.as_deref()).await, 201).await;
    assert_eq!(
        status(bob.call(api::leave_guild::target(g.id), &[], None).await).await,
        204
    );
    problem(
        bob.call(api::leave_guild::target(g.id), &[], None).await,
        404,
        ErrorCode::GuildNotFound,
    )
    .await;
}

#[tokio::test]
async fn roles_and_overwrites_decide_who_reads_and_who_writes() {
    let server = TestServer::start().await;
    let alice = Who::new(&server, "alice").await;
    let bob = Who::new(&server, "bob").await;
    let (g, general) = alice.create_guild("club", true).await;
    let code = alice.invite(general.id, json!({})).await.code.unwrap();
    ok::<Member>(bob.join(g.id, Some(&code)).await, 201).await;

    // A staff channel hidden from @everyone (the guild's id), open to the staff role.
    let staff_channel: Channel = alice
        .create_channel(g.id, json!({"name": "staff", "topic": "t"}))
        .await;
    problem(
        bob.call(
            api::create_channel::target(g.id),
            &[],
            Some(json!({"name": "mine"})),
        )
        .await,
        403,
        ErrorCode::MissingPermission,
    )
    .await;
    let everyone = fugue_proto::chat::OverwriteTarget::Role(g.id);
    alice
        .set_overwrite(
            staff_channel.id,
            &everyone,
            json!({"deny": Permissions::VIEW_CHANNEL.bits().to_string()}),
        )
        .await;
    assert_eq!(
        status(alice.send(staff_channel.id, "s1", "staff only").await).await,
        201
    );
    problem(
        bob.call(api::get_messages::target(staff_channel.id), &[], None)
            .await,
        404,
        ErrorCode::ChannelNotFound,
    )
    .await;
    problem(
        bob.send(staff_channel.id, "b1", "let me in").await,
        404,
        ErrorCode::ChannelNotFound,
    )
    .await;
    let visible: Vec<Channel> = ok(
        bob.call(api::list_channels::target(g.id), &[], None).await,
        200,
    )
    .await;
    assert_eq!(
        visible.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![general.id]
    );

    let staff: Role = ok(
        alice
            .call(
                api::create_role::target(g.id),
                &[],
                Some(json!({"name": "staff", "permissions": Permissions::MANAGE_MESSAGES.bits().to_string()})),
            )
            .await,
        201,
    )
    .await;
    let role_target = fugue_proto::chat::OverwriteTarget::Role(staff.id);
    alice
        .set_overwrite(
            staff_channel.id,
            &role_target,
            json!({"allow": Permissions::VIEW_CHANNEL.bits().to_string()}),
        )
        .await;
    let member: Member = ok(
        alice
            .call(
                api::add_member_role::target(g.id, &bob.fid(), staff.id),
                &[],
                None,
            )
            .await,
        200,
    )
    .await;
    assert_eq!(
        member.roles.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![staff.id]
    );
    let read: Vec<Message> = ok(
        bob.call(api::get_messages::target(staff_channel.id), &[], None)
            .await,
        200,
    )
    .await;
    assert_eq!(read.len(), 1);
    // The role lets bob remove others' messages.
    assert_eq!(
        status(
            bob.call(
                api::delete_message::target(staff_channel.id, read[0].id),
                &[],
                None
            )
            .await
        )
        .await,
        204
    );

    // Without SEND_MESSAGES in general: 403 naming it.
    let me = fugue_proto::chat::OverwriteTarget::Member(bob.fid());
    alice
        .set_overwrite(
            general.id,
            &me,
            json!({"deny": Permissions::SEND_MESSAGES.bits().to_string()}),
        )
        .await;
    let p = problem(
        bob.send(general.id, "b2", "hello").await,
        403,
        ErrorCode::MissingPermission,
    )
    .await;
    assert!(p.message.unwrap().contains("SEND_MESSAGES"));
    assert_eq!(
        status(
            alice
                .call(api::delete_overwrite::target(general.id, &me), &[], None)
                .await
        )
        .await,
        204
    );
    assert_eq!(status(bob.send(general.id, "b3", "hello").await).await, 201);

    // Role removed: the staff channel is gone again for bob.
    assert_eq!(
        status(
            alice
                .call(
                    api::remove_member_role::target(g.id, &bob.fid(), staff.id),
                    &[],
                    None
                )
                .await
        )
        .await,
        204
    );
    problem(
        bob.call(api::get_messages::target(staff_channel.id), &[], None)
            .await,
        404,
        ErrorCode::ChannelNotFound,
    )
    .await;
    // A member cannot grant what it does not have.
    problem(
        bob.call(
            api::create_role::target(g.id),
            &[],
            Some(
                json!({"name": "me", "permissions": Permissions::ADMINISTRATOR.bits().to_string()}),
            ),
        )
        .await,
        403,
        ErrorCode::MissingPermission,
    )
    .await;
    let roles: Vec<Role> = ok(
        bob.call(api::list_roles::target(g.id), &[], None).await,
        200,
    )
    .await;
    assert_eq!(roles[0].id, g.id, "@everyone first");
    assert_eq!(
        status(
            alice
                .call(api::delete_role::target(g.id, staff.id), &[], None)
                .await
        )
        .await,
        204
    );
    problem(
        alice
            .call(api::delete_role::target(g.id, g.id), &[], None)
            .await,
        400,
        ErrorCode::InvalidChatInput,
    )
    .await;
}

#[tokio::test]
async fn messages_are_verified_stored_once_edited_as_versions_and_deleted_as_tombstones() {
    let server = TestServer::start().await;
    let alice = Who::new(&server, "alice").await;
    let bob = Who::new(&server, "bob").await;
    let (g, general) = alice.create_guild("club", true).await;
    let other: Channel = alice.create_channel(g.id, json!({"name": "other"})).await;

    // Valid: 201, with what it takes to check it again.
    let sent: Message = ok(alice.send(general.id, "n1", "hello").await, 201).await;
    assert_eq!((sent.content.as_str(), sent.version), ("hello", 1));
    assert_eq!(sent.uid, sent.id.to_string());
    assert_eq!(sent.id_cert, alice.session.cert_pem());
    assert_eq!(sent.author, alice.fid());

    // The same nonce again: the same message, nothing stored twice.
    let again: Message = ok(alice.send(general.id, "n1", "hello").await, 200).await;
    assert_eq!(again.id, sent.id);
    problem(
        alice.send(general.id, "n1", "something else").await,
        409,
        ErrorCode::NonceReused,
    )
    .await;

    // Tampered content: refused, nothing stored.
    let mut tampered = alice.send_body(general.id, "n2", "original");
    tampered["content"] = json!("tampered");
    problem(
        alice
            .call(api::send_message::target(general.id), &[], Some(tampered))
            .await,
        400,
        ErrorCode::SignatureInvalid,
    )
    .await;
    // Signed for another channel (moved): refused.
    let moved = alice.send_body(other.id, "n3", "for the other channel");
    problem(
        alice
            .call(api::send_message::target(general.id), &[], Some(moved))
            .await,
        400,
        ErrorCode::SignatureInvalid,
    )
    .await;
    // Somebody else's certificate: refused.
    let mut foreign_cert = alice.send_body(general.id, "n4", "mine");
    foreign_cert["id_cert"] = json!(bob.session.cert_pem());
    problem(
        alice
            .call(
                api::send_message::target(general.id),
                &[],
                Some(foreign_cert),
            )
            .await,
        400,
        ErrorCode::MessageCertInvalid,
    )
    .await;
    // A non-member: 404.
    problem(
        bob.send(general.id, "b1", "hi").await,
        404,
        ErrorCode::ChannelNotFound,
    )
    .await;
    let history = alice.history(general.id, &[]).await;
    assert_eq!(
        history.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![sent.id]
    );

    // A serial instead of the certificate.
    let mut by_serial = alice.send_body(general.id, "n5", "by serial");
    by_serial.as_object_mut().unwrap().remove("id_cert");
    by_serial["serial"] = json!(alice.session.current_serial().unwrap().0.to_string());
    let second: Message = ok(
        alice
            .call(api::send_message::target(general.id), &[], Some(by_serial))
            .await,
        201,
    )
    .await;
    assert!(second.id > sent.id, "ids grow with time");

    // An edit is a new signed version; the first one stays in the history of versions.
    let body = MessageBody {
        content: "hello, edited".into(),
        reply_to: None,
        attachments: vec![],
    };
    let edit = json!({
        "content": body.content,
        "nonce": "e1",
        "signature": alice.signed(general.id, "e1", &body, Some(sent.id)),
        "id_cert": alice.session.cert_pem(),
    });
    let edited: Message = ok(
        alice
            .call(
                api::edit_message::target(general.id, sent.id),
                &[],
                Some(edit.clone()),
            )
            .await,
        200,
    )
    .await;
    assert_eq!(
        (edited.content.as_str(), edited.version),
        ("hello, edited", 2)
    );
    assert!(edited.edited_timestamp.is_some());
    // An edit signed as a new message (no edit_of) does not verify.
    let mut unbound = edit.clone();
    unbound["nonce"] = json!("e2");
    unbound["signature"] = json!(alice.signed(general.id, "e2", &body, None));
    problem(
        alice
            .call(
                api::edit_message::target(general.id, sent.id),
                &[],
                Some(unbound),
            )
            .await,
        400,
        ErrorCode::SignatureInvalid,
    )
    .await;
    let versions = alice.versions(general.id, sent.id).await;
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0].content, "hello");
    assert_eq!(versions[1].edit_of, Some(sent.id));
    // A nonce the author signed an earlier version with signs no later one; nothing changes.
    let reused_body = MessageBody {
        content: "hello, again".into(),
        reply_to: None,
        attachments: vec![],
    };
    let reused = json!({
        "content": reused_body.content,
        "nonce": "n1",
        "signature": alice.signed(general.id, "n1", &reused_body, Some(sent.id)),
        "id_cert": alice.session.cert_pem(),
    });
    problem(
        alice
            .call(
                api::edit_message::target(general.id, sent.id),
                &[],
                Some(reused),
            )
            .await,
        409,
        ErrorCode::NonceReused,
    )
    .await;
    let after = alice.versions(general.id, sent.id).await;
    assert_eq!(after, versions);

    // Only the author edits.
    let code = alice.invite(general.id, json!({})).await.code.unwrap();
    ok::<Member>(bob.join(g.id, Some(&code)).await, 201).await;
    let bob_edit = json!({
        "content": "bob was here",
        "nonce": "x1",
        "signature": bob.signed(general.id, "x1", &MessageBody { content: "bob was here".into(), reply_to: None, attachments: vec![] }, Some(sent.id)),
        "id_cert": bob.session.cert_pem(),
    });
    problem(
        bob.call(
            api::edit_message::target(general.id, sent.id),
            &[],
            Some(bob_edit),
        )
        .await,
        403,
        ErrorCode::MissingPermission,
    )
    .await;
    // Nor does a member delete another's message without MANAGE_MESSAGES.
    problem(
        bob.call(api::delete_message::target(general.id, sent.id), &[], None)
            .await,
        403,
        ErrorCode::MissingPermission,
    )
    .await;

    // Delete: a tombstone stays, its content and versions are gone for everyone.
    assert_eq!(
        status(
            alice
                .call(api::delete_message::target(general.id, sent.id), &[], None)
                .await
        )
        .await,
        204
    );
    let history = bob.history(general.id, &[]).await;
    let tomb = history.iter().find(|m| m.id == sent.id).unwrap();
    assert!(tomb.deleted_timestamp.is_some());
    assert!(tomb.content.is_empty() && tomb.signature.is_empty() && tomb.id_cert.is_empty());
    let versions = alice.versions(general.id, sent.id).await;
    assert!(versions.is_empty());
    let text = serde_json::to_string(&history).unwrap();
    assert!(!text.contains("hello"), "{text}");
    // Nor is it in the event log.
    let log = server
        .store
        .events_after(g.id as i64, 0, 1000)
        .await
        .unwrap();
    assert!(log.iter().all(|e| !e.payload.contains("hello")), "{log:?}");
    problem(
        alice
            .call(api::delete_message::target(general.id, sent.id), &[], None)
            .await,
        404,
        ErrorCode::MessageNotFound,
    )
    .await;
}

#[tokio::test]
async fn history_pages_before_after_and_around() {
    let server = TestServer::start().await;
    let alice = Who::new(&server, "alice").await;
    let (_, general) = alice.create_guild("club", true).await;
    let mut ids = Vec::new();
    for i in 0..120 {
        let m: Message = ok(
            alice
                .send(general.id, &format!("n{i}"), &format!("m{i}"))
                .await,
            201,
        )
        .await;
        ids.push(m.id);
    }
    let sorted = {
        let mut s = ids.clone();
        s.sort_unstable();
        s
    };
    assert_eq!(ids, sorted, "ids grow in the order of sending");
    let newest_first: Vec<u64> = ids.iter().rev().copied().collect();

    let page = alice.history(general.id, &[]).await;
    assert_eq!(
        page.iter().map(|m| m.id).collect::<Vec<_>>(),
        newest_first[..50]
    );
    let page = alice.history(general.id, &[("limit", "100".into())]).await;
    assert_eq!(page.len(), 100);
    problem(
        alice
            .call(
                api::message_history::target(general.id),
                &[("limit", "101".into())],
                None,
            )
            .await,
        400,
        ErrorCode::InvalidChatInput,
    )
    .await;
    problem(
        alice
            .call(
                api::get_messages::target(general.id),
                &[
                    ("before", ids[5].to_string()),
                    ("after", ids[1].to_string()),
                ],
                None,
            )
            .await,
        400,
        ErrorCode::InvalidChatInput,
    )
    .await;

    let before: Vec<Message> = ok(
        alice
            .call(
                api::get_messages::target(general.id),
                &[("before", ids[60].to_string()), ("limit", "10".into())],
                None,
            )
            .await,
        200,
    )
    .await;
    assert_eq!(
        before.iter().map(|m| m.id).collect::<Vec<_>>(),
        ids[50..60].iter().rev().copied().collect::<Vec<_>>()
    );
    let after = alice
        .history(
            general.id,
            &[("after", ids[60].to_string()), ("limit", "10".into())],
        )
        .await;
    assert_eq!(
        after.iter().map(|m| m.id).collect::<Vec<_>>(),
        ids[61..71].iter().rev().copied().collect::<Vec<_>>()
    );
    let around = alice
        .history(
            general.id,
            &[("around", ids[60].to_string()), ("limit", "9".into())],
        )
        .await;
    assert_eq!(
        around.iter().map(|m| m.id).collect::<Vec<_>>(),
        ids[56..65].iter().rev().copied().collect::<Vec<_>>()
    );
    // Paging through everything, 100 at a time, sees every message once.
    let mut seen = Vec::new();
    let mut before = None::<u64>;
    loop {
        let mut q = vec![("limit", "100".to_string())];
        if let Some(b) = before {
            q.push(("before", b.to_string()));
        }
        let page = alice.history(general.id, &q).await;
        if page.is_empty() {
            break;
        }
        before = page.last().map(|m| m.id);
        seen.extend(page.into_iter().map(|m| m.id));
    }
    assert_eq!(seen, newest_first);
}

#[tokio::test]
async fn the_message_limit_answers_429_with_rate_limit_headers() {
    let server = TestServer::start_with(|c| c.rate_limits.chat_messages_per_5s = 2).await;
    let alice = Who::new(&server, "alice").await;
    let (_, general) = alice.create_guild("club", true).await;
    let first = alice.send(general.id, "a", "1").await;
    assert_eq!(first.status().as_u16(), 201);
    assert_eq!(first.headers()["x-ratelimit-limit"], "2");
    assert_eq!(first.headers()["x-ratelimit-remaining"], "1");
    let reset: u64 = first.headers()["x-ratelimit-reset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(reset > fugue_testkit::totp::unix_now());
    assert_eq!(status(alice.send(general.id, "b", "2").await).await, 201);
    let refused = alice.send(general.id, "c", "3").await;
    assert_eq!(refused.headers()["x-ratelimit-remaining"], "0");
    assert!(refused.headers().contains_key("retry-after"));
    problem(refused, 429, ErrorCode::RateLimited).await;
}

#[tokio::test]
async fn members_following_the_chat_channel_receive_what_they_may_see() {
    let server = TestServer::start().await;
    let alice = Who::new(&server, "alice").await;
    let bob = Who::new(&server, "bob").await;
    let carol = Who::new(&server, "carol").await;
    let (g, general) = alice.create_guild("club", true).await;
    let hidden: Channel = alice.create_channel(g.id, json!({"name": "hidden"})).await;
    let code = alice.invite(general.id, json!({})).await.code.unwrap();
    ok::<Member>(bob.join(g.id, Some(&code)).await, 201).await;
    let bob_target = fugue_proto::chat::OverwriteTarget::Member(bob.fid());
    alice
        .set_overwrite(
            hidden.id,
            &bob_target,
            json!({"deny": Permissions::VIEW_CHANNEL.bits().to_string()}),
        )
        .await;

    let mut bob_ws = ws::identified(&server, bob.token()).await;
    subscribe(&mut bob_ws, "chat").await;
    let mut carol_ws = ws::identified(&server, carol.token()).await;
    subscribe(&mut carol_ws, "chat").await;

    assert_eq!(
        status(alice.send(hidden.id, "h", "secret").await).await,
        201
    );
    let visible: Message = ok(alice.send(general.id, "v", "for everyone").await, 201).await;
    let frame = next_chat(&mut bob_ws).await;
    assert_eq!(frame["op"], 0, "{frame}");
    assert_eq!(
        frame["d"]["id"],
        visible.id.to_string(),
        "the hidden channel's message was skipped: {frame}"
    );
    assert_eq!(frame["d"]["content"], "for everyone");

    // A non-member's connection gets nothing of the guild; once it joins, it follows.
    assert!(
        ws::try_frame_with_op(&mut carol_ws, 0, std::time::Duration::from_millis(300))
            .await
            .is_err()
    );
    ok::<Member>(carol.join(g.id, Some(&code)).await, 201).await;
    let joined = next_chat(&mut carol_ws).await;
    assert_eq!(joined["op"], 6, "carol's own join: {joined}");
    let after_join: Message = ok(alice.send(general.id, "w", "welcome").await, 201).await;
    let frame = next_chat(&mut carol_ws).await;
    assert_eq!(
        (frame["op"].clone(), frame["d"]["id"].clone()),
        (json!(0), json!(after_join.id.to_string())),
        "{frame}"
    );

    // Bob saw carol join, then the welcome.
    let carol_joined = next_chat(&mut bob_ws).await;
    assert_eq!(carol_joined["op"], 6, "{carol_joined}");
    let welcome = next_chat(&mut bob_ws).await;
    assert_eq!(welcome["d"]["content"], "welcome", "{welcome}");

    // Typing is announced to the channel's viewers and never stored.
    ws::send(
        &mut carol_ws,
        json!({"n": "chat", "op": 9, "d": {"channel_id": general.id.to_string()}}),
    )
    .await;
    let typing = next_chat(&mut bob_ws).await;
    assert_eq!(typing["op"], 9, "{typing}");
    assert_eq!(typing["d"]["fid"], "carol@localhost");
    assert!(
        typing.get("id").is_none_or(Value::is_null),
        "ephemeral: {typing}"
    );

    // Kicked, bob's connection stops receiving the guild's messages.
    assert_eq!(
        status(
            alice
                .call(api::kick_member::target(g.id, &bob.fid()), &[], None)
                .await
        )
        .await,
        204
    );
    let removed = next_chat(&mut bob_ws).await;
    assert_eq!(removed["op"], 7, "{removed}");
    assert_eq!(
        status(alice.send(general.id, "x", "after the kick").await).await,
        201
    );
    assert!(
        ws::try_frame_with_op(&mut bob_ws, 0, std::time::Duration::from_millis(300))
            .await
            .is_err(),
        "a removed member receives nothing more"
    );
}

/// The next frame of the `chat` namespace.
#[tokio::test]
async fn foreign_actors_join_and_post_with_certificates_their_home_server_vouches_for() {
    let (alpha, beta) = fugue_testkit::federated_pair().await;
    let bob = Who::new(&beta, "bob").await;
    let alice = Who::foreign(&beta, alpha.register("alice").await).await;
    let carol_home = alpha.register("carol").await;
    let (g, general) = bob.create_guild("across", true).await;
    let code = bob.invite(general.id, json!({})).await.code.unwrap();
    let member: Member = ok(alice.join(g.id, Some(&code)).await, 201).await;
    assert_eq!(member.fid.to_string(), "alice@alpha.test");

    // Signed for beta's channel, with alice's certificate from alpha: stored.
    let sent: Message = ok(alice.send(general.id, "f1", "hello from alpha").await, 201).await;
    assert_eq!(sent.author.to_string(), "alice@alpha.test");
    assert_eq!(sent.id_cert, alice.session.cert_pem());
    // Signed for alpha instead of beta (moved between servers): refused.
    let body = MessageBody {
        content: "moved".into(),
        reply_to: None,
        attachments: vec![],
    };
    let wrong_server = SignedPayload::message(
        &alpha.domain,
        general.id,
        alice.session.fid(),
        "f2",
        None,
        &body,
    );
    let forged = json!({
        "content": "moved",
        "nonce": "f2",
        "signature": hex::encode(alice.session.key().sign(&wrong_server.signed_bytes())),
        "id_cert": alice.session.cert_pem(),
    });
    problem(
        alice
            .call(api::send_message::target(general.id), &[], Some(forged))
            .await,
        400,
        ErrorCode::SignatureInvalid,
    )
    .await;
    // Another alpha actor's certificate under alice's name: refused, nothing stored.
    let mut not_hers = alice.send_body(general.id, "f3", "whose cert?");
    not_hers["id_cert"] = json!(carol_home.cert_pem());
    let p = problem(
        alice
            .call(api::send_message::target(general.id), &[], Some(not_hers))
            .await,
        400,
        ErrorCode::MessageCertInvalid,
    )
    .await;
    assert!(p.detail.is_some());
    let history = bob.history(general.id, &[]).await;
    assert_eq!(
        history.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![sent.id]
    );
}

#[tokio::test]
async fn a_revoked_certificate_signs_nothing_more() {
    let server = TestServer::start().await;
    let alice = Who::new(&server, "alice").await;
    let (_, general) = alice.create_guild("club", true).await;
    // A second session of alice: its messages count while its certificate lives.
    let laptop = Who::again(&server, "alice", "laptop").await;
    assert_eq!(
        status(laptop.send(general.id, "l1", "from the laptop").await).await,
        201
    );
    alice
        .session
        .revoke_session(laptop.session.session_id(), PASSWORD)
        .await
        .unwrap();
    // Signed with the revoked certificate, sent with a live session: refused.
    let with_revoked = laptop.send_body(general.id, "l2", "after revocation");
    let p = problem(
        alice
            .call(
                api::send_message::target(general.id),
                &[],
                Some(with_revoked),
            )
            .await,
        400,
        ErrorCode::MessageCertInvalid,
    )
    .await;
    assert!(p.detail.unwrap().contains("revoked"));
    assert_eq!(alice.history(general.id, &[]).await.len(), 1);
}

/// A send trusts what the node remembers of its session only under a guard in the write:
/// a session ended, a certificate replaced or an actor suspended where this node did not
/// see it (another process, as `fugue admin`, writing the database) stores nothing more.
#[tokio::test]
async fn a_session_ended_behind_the_nodes_back_sends_nothing_more() {
    let server = TestServer::start().await;
    let alice = Who::new(&server, "alice").await;
    let (g, general) = alice.create_guild("club", false).await;
    let laptop = Who::again(&server, "alice", "laptop").await;
    let bob = Who::new(&server, "bob").await;
    ok::<Member>(bob.join(g.id, None).await, 201).await;
    for who in [&laptop, &bob] {
        ok::<Message>(who.send(general.id, "first", "remembered now").await, 201).await;
    }
    let now = i64::try_from(fugue_testkit::totp::unix_now()).unwrap();
    let alice_id = server
        .store
        .actor_by_name("alice")
        .await
        .unwrap()
        .unwrap()
        .id;
    assert!(
        server
            .store
            .revoke_session(alice_id, laptop.session.session_id().as_str(), now)
            .await
            .unwrap()
    );
    let bob_id = server.store.actor_by_name("bob").await.unwrap().unwrap().id;
    assert!(server.store.set_suspended(bob_id, Some(now)).await.unwrap());
    for who in [&laptop, &bob] {
        // Neither a new message nor a repeat of the one stored before.
        for nonce in ["second", "first"] {
            problem(
                who.send(general.id, nonce, "after the end").await,
                401,
                ErrorCode::InvalidToken,
            )
            .await;
        }
    }
    // Alice's first session lives on; nothing of the refused sends was stored.
    ok::<Message>(alice.send(general.id, "mine", "still here").await, 201).await;
    let history = alice.history(general.id, &[]).await;
    let texts: Vec<_> = history.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(texts, ["still here", "remembered now", "remembered now"]);
}

/// A session revoked on one node cannot send on another that remembers it.
#[tokio::test]
async fn a_session_revoked_on_one_node_sends_nothing_on_another() {
    let nodes = TestServer::start_cluster(2, |c| {
        c.rate_limits.chat_messages_per_5s = 0;
    })
    .await;
    let alice = Who::new(&nodes[0], "alice").await;
    let (_, general) = alice.create_guild("two nodes", false).await;
    let laptop = Who::again(&nodes[1], "alice", "laptop").await;
    ok::<Message>(laptop.send(general.id, "l1", "from node 2").await, 201).await;
    alice
        .session
        .revoke_session(laptop.session.session_id(), PASSWORD)
        .await
        .unwrap();
    problem(
        laptop.send(general.id, "l2", "after revocation").await,
        401,
        ErrorCode::InvalidToken,
    )
    .await;
    assert_eq!(alice.history(general.id, &[]).await.len(), 1);
}

/// A channel made in a category starts with the category's overwrites: made in a private
/// category, it is private, and only those who may see it hear of it — on the gateway, in
/// the channel list, in its history. Moved or changed later, it keeps its own.
#[tokio::test]
async fn a_channel_made_in_a_private_category_is_private_and_announced_only_inside() {
    let server = TestServer::start().await;
    let alice = Who::new(&server, "alice").await;
    let bob = Who::new(&server, "bob").await;
    let carol = Who::new(&server, "carol").await;
    let (g, general) = alice.create_guild("club", true).await;
    for who in [&bob, &carol] {
        alice.admit(who, g.id, general.id).await;
    }
    let staff: Channel = alice
        .create_channel(g.id, json!({"name": "Staff", "type": 4}))
        .await;
    let view = Permissions::VIEW_CHANNEL.bits().to_string();
    let everyone = fugue_proto::chat::OverwriteTarget::Role(g.id);
    alice
        .set_overwrite(staff.id, &everyone, json!({"deny": view}))
        .await;
    let carol_target = fugue_proto::chat::OverwriteTarget::Member(carol.fid());
    alice
        .set_overwrite(staff.id, &carol_target, json!({"allow": view}))
        .await;
    let mut bob_ws = bob.subscribed("chat").await;
    let mut carol_ws = carol.subscribed("chat").await;

    let plans: Channel = alice
        .create_channel(
            g.id,
            json!({"name": "plans", "parent_id": staff.id.to_string()}),
        )
        .await;
    let open: Channel = alice.create_channel(g.id, json!({"name": "open"})).await;
    // Carol hears of both; bob only of the one outside the category.
    for (conn, expected) in [
        (&mut carol_ws, vec!["plans", "open"]),
        (&mut bob_ws, vec!["open"]),
    ] {
        for name in expected {
            let frame = next_chat(conn).await;
            assert_eq!(
                (frame["op"].clone(), frame["d"]["name"].clone()),
                (json!(3), json!(name)),
                "{frame}"
            );
        }
    }
    async fn listed(who: &Who<'_>, guild: u64) -> Vec<String> {
        let target = api::list_channels::target(guild);
        let channels: Vec<Channel> = ok(who.call(target, &[], None).await, 200).await;
        channels.into_iter().map(|c| c.name).collect()
    }
    assert!(listed(&carol, g.id).await.contains(&"plans".to_owned()));
    assert!(!listed(&bob, g.id).await.contains(&"plans".to_owned()));
    ok::<Message>(carol.send(plans.id, "c1", "inside").await, 201).await;
    assert_eq!(
        status(bob.send(plans.id, "b1", "let me in").await).await,
        404
    );
    assert_eq!(status(bob.history_call(plans.id, &[]).await).await, 404);
    // Its overwrites are its own from now on: opening the category later does not open it.
    alice
        .set_overwrite(staff.id, &everyone, json!({"allow": view}))
        .await;
    assert!(!listed(&bob, g.id).await.contains(&"plans".to_owned()));
    assert!(listed(&bob, g.id).await.contains(&open.name));
}

/// A valid body for each chat endpoint that takes one, so that only who calls decides.
pub(crate) fn sample_body(name: &str, who: &Who<'_>, channel: u64, message: u64) -> Option<Value> {
    Some(match name {
        "create_guild" | "create_channel" | "create_role" => json!({"name": "n"}),
        "update_guild" | "update_channel" | "update_role" => json!({"name": "n"}),
        "send_message" => who.send_body(channel, "probe", "probe"),
        "edit_message" => who.send_body(channel, "probe-edit", "probe"),
        "join_guild" | "create_invite" | "ban_member" | "set_overwrite" => json!({}),
        "create_dm" => json!({"recipient_id": "alice@localhost"}),
        "create_group" => json!({"members": ["alice@localhost"]}),
        "rename_group" => json!({"name": "n"}),
        "transfer_conversation" => json!({"owner_id": who.fid().to_string()}),
        "transfer_guild" => json!({"owner_id": who.fid().to_string()}),
        "add_reaction" | "remove_reaction" => {
            let body = fugue_proto::community::ReactionBody {
                message,
                emoji: "👍".into(),
                add: name == "add_reaction",
            };
            let payload = SignedPayload::reaction(
                &who.server.domain,
                channel,
                who.session.fid(),
                "probe-reaction",
                &body,
            );
            json!({
                "nonce": "probe-reaction",
                "signature": hex::encode(who.session.key().sign(&payload.signed_bytes())),
                "id_cert": who.session.cert_pem(),
            })
        }
        "set_read_state" => json!({"last_read": message.to_string()}),
        "set_presence" => json!({"availability": 1}),
        "update_profile" => json!({}),
        // Any bytes do (these are a JSON text's).
        "upload_attachment" => json!({"probe": true}),
        _ => return None,
    })
}

#[tokio::test]
async fn strangers_and_banned_actors_learn_nothing_about_a_private_guild() {
    let server = TestServer::start().await;
    let alice = Who::new(&server, "alice").await;
    let stranger = Who::new(&server, "stranger").await;
    let banned = Who::new(&server, "banned").await;
    let (g, general) = alice.create_guild("secret", true).await;
    let code = alice.invite(general.id, json!({})).await.code.unwrap();
    ok::<Member>(banned.join(g.id, Some(&code)).await, 201).await;
    let m: Message = ok(banned.send(general.id, "b", "before the ban").await, 201).await;
    ok::<Value>(
        alice
            .call(api::ban_member::target(g.id, &banned.fid()), &[], None)
            .await,
        200,
    )
    .await;
    let role: Role = ok(
        alice
            .call(
                api::create_role::target(g.id),
                &[],
                Some(json!({"name": "r"})),
            )
            .await,
        201,
    )
    .await;
    let fid = alice.fid();
    let role_target = fugue_proto::chat::OverwriteTarget::Role(role.id);
    let secret: fugue_proto::chat::Attachment =
        ok(alice.upload_attachment(b"minutes", None).await, 201).await;
    let shared: Message = ok(
        alice
            .send_attached(general.id, "files", &[&secret.url])
            .await,
        201,
    )
    .await;

    for who in [&stranger, &banned] {
        for endpoint in api::CHAT_ENDPOINTS.iter().chain(api::FUGUE_CHAT_ENDPOINTS) {
            let values: Vec<String> = endpoint
                .params
                .iter()
                .map(|p| match *p {
                    "guild_id" => g.id.to_string(),
                    "channel_id" | "conversation_id" => general.id.to_string(),
                    "message_id" => m.id.to_string(),
                    "role_id" | "target" => role_target.to_string(),
                    "user_id" | "fid" => fid.to_string(),
                    "invite_code" => code.clone(),
                    "emoji" => "👍".to_owned(),
                    "resource_id" => secret.id.clone(),
                    other => panic!("no value for {other}"),
                })
                .collect();
            let refs: Vec<&str> = values.iter().map(String::as_str).collect();
            let target = endpoint.fill(&refs);
            let query = match endpoint.name {
                "get_guild_by_query" => vec![("guild_id", g.id.to_string())],
                "get_presences" => vec![("fids", fid.to_string())],
                _ => vec![],
            };
            let body = sample_body(endpoint.name, who, general.id, m.id);
            let resp = who.call(target, &query, body).await;
            let got = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            let what = format!(
                "{} {} by {}: {got} {text}",
                endpoint.method,
                endpoint.path,
                who.fid()
            );
            match endpoint.name {
                // Open to anyone signed in, and about nothing of this guild.
                "create_guild" | "create_dm" | "create_group" | "upload_attachment" => {
                    assert_eq!(got, 201, "{what}");
                }
                "list_dms" => assert_eq!(got, 200, "{what}"),
                // About the caller alone, or an actor's profile and presence (offline to
                // those sharing no guild with it).
                "read_states" | "set_presence" | "get_presences" | "get_own_profile"
                | "update_profile" | "get_profile" => assert_eq!(got, 200, "{what}"),
                // Everything else, joining without an invite included: as if it did not exist.
                _ => assert_eq!(got, 404, "{what}"),
            }
            assert!(!text.contains("before the ban"), "{what}");
            if endpoint.name == "read_states" {
                // Only of the guild the probe of `create_guild` made.
                assert!(!text.contains(&g.id.to_string()), "{what}");
            }
        }
    }
    // The banned actor with the invite: refused as banned, not let in.
    problem(banned.join(g.id, Some(&code)).await, 403, ErrorCode::Banned).await;
    // Nothing the probes sent reached the guild.
    let history = alice.history(general.id, &[]).await;
    assert_eq!(
        history.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![shared.id, m.id]
    );
    let members: Vec<Member> = ok(
        alice.call(api::list_members::target(g.id), &[], None).await,
        200,
    )
    .await;
    assert_eq!(members.len(), 1);
    let guild: Guild = ok(
        alice.call(api::get_guild::target(g.id), &[], None).await,
        200,
    )
    .await;
    assert_eq!(guild.name, "secret");
}

#[tokio::test]
async fn polling_members_receive_the_messages_of_their_channels() {
    let server = TestServer::start().await;
    let alice = Who::new(&server, "alice").await;
    let bob = Who::new(&server, "bob").await;
    let (g, general) = alice.create_guild("club", true).await;
    let code = alice.invite(general.id, json!({})).await.code.unwrap();
    ok::<Member>(bob.join(g.id, Some(&code)).await, 201).await;
    // The first poll tells bob of the join (its own stream).
    let joined: Vec<Value> = ok(bob.call(api::events::target(), &[], None).await, 200).await;
    assert!(
        joined
            .iter()
            .any(|e| e["n"] == "fugue-chat" && e["op"] == 0),
        "{joined:?}"
    );
    let sent: Message = ok(alice.send(general.id, "p1", "polled").await, 201).await;
    let polled: Vec<Value> = ok(bob.call(api::events::target(), &[], None).await, 200).await;
    let want = sent.id.to_string();
    assert!(
        polled
            .iter()
            .any(|e| e["n"] == "chat" && e["op"] == 0 && e["d"]["id"] == want.as_str()),
        "{polled:?}"
    );
}

/// Bob follows `general` over the gateway, sees one message live and goes away; returns the
/// `s` of that message's frame.
async fn live_then_away(server: &TestServer, alice: &Who<'_>, bob: &Who<'_>, channel: u64) -> u64 {
    let mut ws1 = ws::identified(server, bob.token()).await;
    subscribe(&mut ws1, "chat").await;
    let seen: Message = ok(alice.send(channel, "m1", "seen live").await, 201).await;
    let live = next_chat(&mut ws1).await;
    assert_eq!(live["d"]["id"], seen.id.to_string(), "{live}");
    live["s"].as_u64().unwrap()
}

fn chat_message_ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["n"] == "chat" && e["op"] == 0)
        .map(|e| e["d"]["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn a_resume_replays_the_missed_messages_of_visible_channels() {
    let server = TestServer::start().await;
    let alice = Who::new(&server, "alice").await;
    let bob = Who::new(&server, "bob").await;
    let (g, general) = alice.create_guild("club", true).await;
    let hidden: Channel = alice.create_channel(g.id, json!({"name": "hidden"})).await;
    let code = alice.invite(general.id, json!({})).await.code.unwrap();
    ok::<Member>(bob.join(g.id, Some(&code)).await, 201).await;
    let bob_target = fugue_proto::chat::OverwriteTarget::Member(bob.fid());
    alice
        .set_overwrite(
            hidden.id,
            &bob_target,
            json!({"deny": Permissions::VIEW_CHANNEL.bits().to_string()}),
        )
        .await;
    let s = live_then_away(&server, &alice, &bob, general.id).await;
    let missed: Message = ok(alice.send(general.id, "m2", "missed").await, 201).await;
    ok::<Message>(alice.send(hidden.id, "h1", "not for bob").await, 201).await;
    let replayed = resume(&server, &bob, s).await;
    assert_eq!(
        chat_message_ids(&replayed),
        vec![missed.id.to_string()],
        "{replayed:?}"
    );
}

/// A channel deleted while a member was away is deleted on its side too when it resumes (no
/// view of now holds a deleted channel, so a delete for the channel's viewers only would be
/// lost on the way).
#[tokio::test]
async fn a_channel_deleted_while_away_is_gone_after_the_resume() {
    let server = TestServer::start().await;
    let alice = Who::new(&server, "alice").await;
    let bob = Who::new(&server, "bob").await;
    let (g, general) = alice.create_guild("club", true).await;
    let books: Channel = alice.create_channel(g.id, json!({"name": "books"})).await;
    alice.admit(&bob, g.id, general.id).await;
    let s = live_then_away(&server, &alice, &bob, general.id).await;
    let deleted = alice
        .call(api::delete_channel::target(books.id), &[], None)
        .await;
    assert_eq!(status(deleted).await, 204);
    let replayed = resume(&server, &bob, s).await;
    assert!(
        replayed.iter().any(|e| e["n"] == "chat"
            && e["op"] == 5
            && e["d"]["id"] == json!(books.id.to_string())),
        "{replayed:?}"
    );
}

#[tokio::test]
async fn a_removed_member_resumes_without_anything_of_the_guild_after_its_removal() {
    let server = TestServer::start().await;
    let alice = Who::new(&server, "alice").await;
    let bob = Who::new(&server, "bob").await;
    let (g, general) = alice.create_guild("club", true).await;
    let code = alice.invite(general.id, json!({})).await.code.unwrap();
    ok::<Member>(bob.join(g.id, Some(&code)).await, 201).await;
    let s = live_then_away(&server, &alice, &bob, general.id).await;
    assert_eq!(
        status(
            alice
                .call(api::kick_member::target(g.id, &bob.fid()), &[], None)
                .await
        )
        .await,
        204
    );
    let after: Message = ok(alice.send(general.id, "m3", "after the kick").await, 201).await;
    let replayed = resume(&server, &bob, s).await;
    // Resume reads the streams the session may follow now: the guild is not among them.
    assert!(chat_message_ids(&replayed).is_empty(), "{replayed:?}");
    assert!(
        !serde_json::to_string(&replayed)
            .unwrap()
            .contains(&after.id.to_string()),
        "{replayed:?}"
    );
}

#[tokio::test]
async fn channels_and_categories_are_created_changed_and_deleted_by_those_who_may() {
    let server = TestServer::start().await;
    let alice = Who::new(&server, "alice").await;
    let bob = Who::new(&server, "bob").await;
    let (g, general) = alice.create_guild("club", true).await;
    let code = alice.invite(general.id, json!({})).await.code.unwrap();
    ok::<Member>(bob.join(g.id, Some(&code)).await, 201).await;

    let category: Channel = alice
        .create_channel(g.id, json!({"name": "Topics", "type": 4}))
        .await;
    let books: Channel = alice
        .create_channel(
            g.id,
            json!({"name": "books", "topic": "what we read", "parent_id": category.id.to_string()}),
        )
        .await;
    assert_eq!(books.parent_id, Some(category.id));
    assert_eq!(books.description.as_deref(), Some("what we read"));
    problem(
        alice
            .call(
                api::create_channel::target(g.id),
                &[],
                Some(json!({"name": "x", "parent_id": books.id.to_string()})),
            )
            .await,
        400,
        ErrorCode::InvalidChatInput,
    )
    .await;
    problem(
        alice
            .call(
                api::create_channel::target(g.id),
                &[],
                Some(json!({"name": "x", "type": 9})),
            )
            .await,
        400,
        ErrorCode::InvalidChatInput,
    )
    .await;
    problem(
        alice.send(category.id, "c1", "into a category").await,
        400,
        ErrorCode::InvalidChatInput,
    )
    .await;

    // Listed in position order, with the caller's permissions.
    let listed: Vec<Channel> = ok(
        bob.call(api::list_channels::target(g.id), &[], None).await,
        200,
    )
    .await;
    assert_eq!(
        listed.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        vec!["general", "Topics", "books"]
    );
    let p = listed[0].permissions.unwrap();
    assert!(p.contains(Permissions::SEND_MESSAGES) && !p.contains(Permissions::MANAGE_CHANNELS));

    // Changes: by a manager only.
    problem(
        bob.call(
            api::update_channel::target(books.id),
            &[],
            Some(json!({"name": "mine"})),
        )
        .await,
        403,
        ErrorCode::MissingPermission,
    )
    .await;
    let changed: Channel = ok(
        alice
            .call(
                api::update_channel::target(books.id),
                &[],
                Some(json!({"name": "novels", "topic": "", "position": 0, "parent_id": "0"})),
            )
            .await,
        200,
    )
    .await;
    assert_eq!(
        (
            changed.name.as_str(),
            changed.topic.as_deref(),
            changed.parent_id,
            changed.position
        ),
        ("novels", None, None, 0)
    );

    // Deleting a channel takes its messages along; deleting a category frees its channels.
    ok::<Message>(bob.send(books.id, "b1", "a message").await, 201).await;
    problem(
        bob.call(api::delete_channel::target(books.id), &[], None)
            .await,
        403,
        ErrorCode::MissingPermission,
    )
    .await;
    assert_eq!(
        status(
            alice
                .call(api::delete_channel::target(books.id), &[], None)
                .await
        )
        .await,
        204
    );
    problem(
        bob.call(api::get_messages::target(books.id), &[], None)
            .await,
        404,
        ErrorCode::ChannelNotFound,
    )
    .await;
    problem(
        alice
            .call(api::delete_channel::target(books.id), &[], None)
            .await,
        404,
        ErrorCode::ChannelNotFound,
    )
    .await;
    assert_eq!(
        status(
            alice
                .call(api::delete_channel::target(category.id), &[], None)
                .await
        )
        .await,
        204
    );
    let left: Vec<Channel> = ok(
        alice
            .call(api::list_channels::target(g.id), &[], None)
            .await,
        200,
    )
    .await;
    assert_eq!(
        left.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![general.id]
    );
}

#[tokio::test]
async fn administrators_may_do_everything_but_what_only_the_owner_may() {
    let server = TestServer::start().await;
    let alice = Who::new(&server, "alice").await;
    let bob = Who::new(&server, "bob").await;
    let carol = Who::new(&server, "carol").await;
    let (g, general) = alice.create_guild("club", true).await;
    let code = alice.invite(general.id, json!({})).await.code.unwrap();
    ok::<Member>(bob.join(g.id, Some(&code)).await, 201).await;
    ok::<Member>(carol.join(g.id, Some(&code)).await, 201).await;
    let hidden: Channel = alice.create_channel(g.id, json!({"name": "hidden"})).await;
    let everyone = fugue_proto::chat::OverwriteTarget::Role(g.id);
    alice
        .set_overwrite(
            hidden.id,
            &everyone,
            json!({"deny": Permissions::VIEW_CHANNEL.bits().to_string()}),
        )
        .await;
    let secret: Message = ok(alice.send(hidden.id, "s", "secret").await, 201).await;
    let admins: Role = ok(
        alice
            .call(
                api::create_role::target(g.id),
                &[],
                Some(json!({"name": "admins", "permissions": Permissions::ADMINISTRATOR.bits().to_string()})),
            )
            .await,
        201,
    )
    .await;
    problem(
        bob.call(api::get_messages::target(hidden.id), &[], None)
            .await,
        404,
        ErrorCode::ChannelNotFound,
    )
    .await;
    ok::<Member>(
        alice
            .call(
                api::add_member_role::target(g.id, &bob.fid(), admins.id),
                &[],
                None,
            )
            .await,
        200,
    )
    .await;

    // Bob the administrator: sees the hidden channel, removes others' messages, manages
    // channels, roles and members, changes the guild.
    let read = bob.history(hidden.id, &[]).await;
    assert_eq!(
        read.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![secret.id]
    );
    assert_eq!(
        status(
            bob.call(api::delete_message::target(hidden.id, secret.id), &[], None)
                .await
        )
        .await,
        204
    );
    ok::<Channel>(
        bob.call(
            api::update_channel::target(hidden.id),
            &[],
            Some(json!({"name": "renamed"})),
        )
        .await,
        200,
    )
    .await;
    ok::<Guild>(
        bob.call(
            api::update_guild::target(g.id),
            &[],
            Some(json!({"description": "run by bob"})),
        )
        .await,
        200,
    )
    .await;
    ok::<Role>(
        bob.call(
            api::create_role::target(g.id),
            &[],
            Some(json!({"name": "mods", "permissions": Permissions::ALL.bits().to_string()})),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(
        status(
            bob.call(api::kick_member::target(g.id, &carol.fid()), &[], None)
                .await
        )
        .await,
        204
    );
    // But the owner stays the owner: not kicked, not banned, the guild not deleted or given
    // away by anyone else.
    problem(
        bob.call(api::kick_member::target(g.id, &alice.fid()), &[], None)
            .await,
        409,
        ErrorCode::OwnerCannotLeave,
    )
    .await;
    problem(
        bob.call(api::ban_member::target(g.id, &alice.fid()), &[], None)
            .await,
        403,
        ErrorCode::Forbidden,
    )
    .await;
    problem(
        bob.call_with(api::delete_guild::target(g.id), &[], None, Some(PASSWORD))
            .await,
        403,
        ErrorCode::MissingPermission,
    )
    .await;
    problem(
        bob.call(
            api::transfer_guild::target(g.id),
            &[],
            Some(json!({"owner_id": "bob@localhost"})),
        )
        .await,
        403,
        ErrorCode::MissingPermission,
    )
    .await;
}

#[tokio::test]
async fn a_message_sent_on_one_node_reaches_members_connected_to_another() {
    let nodes = TestServer::start_cluster(2, |c| {
        c.rate_limits.chat_messages_per_5s = 0;
    })
    .await;
    let alice = Who::new(&nodes[0], "alice").await;
    let bob = Who::new(&nodes[1], "bob").await;
    let (g, general) = alice.create_guild("two nodes", false).await;
    ok::<Member>(bob.join(g.id, None).await, 201).await;

    // Bob listens on the second node; alice writes on the first.
    let mut bob_ws = ws::identified(&nodes[1], bob.token()).await;
    subscribe(&mut bob_ws, "chat").await;
    let mut sent = Vec::new();
    for i in 0..20 {
        let m: Message = ok(
            alice
                .send(general.id, &format!("n{i}"), &format!("hello {i}"))
                .await,
            201,
        )
        .await;
        sent.push(m.id.to_string());
    }
    let mut got = Vec::new();
    while got.len() < sent.len() {
        let frame = next_chat(&mut bob_ws).await;
        if frame["op"] == 0 {
            got.push(frame["d"]["id"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(got, sent, "every message once, in order");

    // A kick on the first node takes effect on the second before the next message.
    assert_eq!(
        status(
            alice
                .call(api::kick_member::target(g.id, &bob.fid()), &[], None)
                .await
        )
        .await,
        204
    );
    ok::<Message>(alice.send(general.id, "after", "not for bob").await, 201).await;
    let removed = next_chat(&mut bob_ws).await;
    assert_eq!(removed["op"], 7, "{removed}");
    assert!(
        ws::try_frame_with_op(&mut bob_ws, 0, std::time::Duration::from_millis(500))
            .await
            .is_err(),
        "a removed member received a message"
    );
}

#[tokio::test]
async fn many_join_a_guild_at_once() {
    let server = TestServer::start().await;
    let owner = Who::new(&server, "owner").await;
    let (g, _) = owner.create_guild("crowd", false).await;
    let mut joiners = Vec::new();
    for i in 0..20 {
        joiners.push(Who::new(&server, &format!("j{i}")).await);
    }
    let joins = joiners.iter().map(|j| j.join(g.id, None));
    for resp in futures_util::future::join_all(joins).await {
        let status = resp.status().as_u16();
        assert_eq!(status, 201, "{}", resp.text().await.unwrap());
    }
}
