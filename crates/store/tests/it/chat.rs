//! Chat persistence on both engines: guilds with their stream, memberships that begin at
//! their event's position, bans that keep actors out, idempotent sends, edits, tombstones.

use fugue_store::{
    ChannelRow, Conflict, Error, GuildInviteRow, GuildRow, MessageRow, MessageVersionRow, NewEvent,
    OverwriteRow, RoleRow, Sent, SessionGuard, Store, TargetKind,
};

use super::{actor, cert, engines, id, session};

pub(super) fn ev(stream_id: i64, op: i64) -> NewEvent {
    NewEvent {
        stream_id,
        namespace: "chat".into(),
        op,
        payload: format!("{{\"op\":{op}}}"),
        created_at: 10,
        ..Default::default()
    }
}

pub(super) struct Fixture {
    pub(super) guild: GuildRow,
    pub(super) channel: ChannelRow,
    pub(super) owner: i64,
}

pub(super) async fn guild(store: &Store, owner_name: &str) -> Fixture {
    let owner = actor(owner_name);
    store.insert_actor(&owner, None, 1).await.unwrap();
    let g = GuildRow {
        id: id(),
        name: "book club".into(),
        description: None,
        icon: None,
        owner_id: owner.id,
        private: true,
        created_at: 10,
        access_version: 0,
    };
    let c = ChannelRow {
        id: id(),
        guild_id: g.id,
        name: "general".into(),
        kind: 1,
        topic: None,
        parent_id: None,
        position: 0,
        created_at: 10,
    };
    let pos = store
        .create_guild(&g, 3, &c, &ev(g.id, 6), &ev(owner.id, 0))
        .await
        .unwrap();
    assert_eq!(
        pos.guild, 1,
        "the owner's join is the guild stream's first event"
    );
    Fixture {
        guild: g,
        channel: c,
        owner: owner.id,
    }
}

pub(super) fn message(f: &Fixture, author: i64, nonce: &str, text: &str) -> MessageRow {
    message_in(f.guild.id, f.channel.id, author, nonce, text)
}

/// A message of `author` in a channel (a conversation is its own guild and channel).
pub(super) fn message_in(
    guild_id: i64,
    channel_id: i64,
    author: i64,
    nonce: &str,
    text: &str,
) -> MessageRow {
    MessageRow {
        id: id(),
        guild_id,
        channel_id,
        author_id: author,
        author_name: String::new(),
        nonce: nonce.into(),
        content: format!("{{\"content\":\"{text}\"}}"),
        signature: "ab".into(),
        cert_pem: "PEM".into(),
        cert_serial: 5,
        version_nonce: nonce.into(),
        reply_to: None,
        created_at: 20,
        edited_at: None,
        deleted_at: None,
        deleted_by: None,
        version: 1,
        resigned_at: None,
    }
}

#[tokio::test]
async fn a_guild_starts_with_its_owner_role_channel_and_stream() {
    let dir = tempfile::tempdir().unwrap();
    for store in engines(&dir).await {
        let f = guild(&store, "owner").await;
        let g = store.guild(f.guild.id).await.unwrap().unwrap();
        assert_eq!(g.name, "book club");
        assert_eq!(store.member_count(g.id).await.unwrap(), 1);
        assert_eq!(store.guilds_of(f.owner).await.unwrap(), vec![(g.id, 1)]);
        let roles = store.roles(g.id).await.unwrap();
        assert_eq!(roles.len(), 1);
        assert_eq!((roles[0].id, roles[0].permissions), (g.id, 3));
        assert_eq!(store.channels(g.id).await.unwrap(), vec![f.channel.clone()]);
        assert_eq!(store.stream_head(g.id).await.unwrap(), 1);
        let access = store.guild_access(g.id).await.unwrap().unwrap();
        assert_eq!(access.members, vec![(f.owner, 1)]);

        // Deleting it empties it and leaves its deletion as the stream's last event.
        let seq = store.delete_guild(g.id, 30, &ev(g.id, 8)).await.unwrap();
        assert_eq!(seq, 2);
        assert!(store.guild(g.id).await.unwrap().is_none());
        assert!(store.guilds_of(f.owner).await.unwrap().is_empty());
        let events = store.events_after(g.id, 0, 10).await.unwrap();
        assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2]);
        assert!(matches!(
            store.delete_guild(g.id, 31, &ev(g.id, 8)).await,
            Err(Error::Conflict(Conflict::GuildMissing))
        ));
    }
}

#[tokio::test]
async fn memberships_begin_at_their_join_event_and_bans_keep_actors_out() {
    let dir = tempfile::tempdir().unwrap();
    for store in engines(&dir).await {
        let f = guild(&store, "owner").await;
        let g = f.guild.id;
        let bob = actor("bob");
        store.insert_actor(&bob, None, 1).await.unwrap();

        // An invite with one use.
        let hash = vec![7u8; 32];
        store
            .insert_guild_invite(&GuildInviteRow {
                code_hash: hash.clone(),
                guild_id: g,
                channel_id: f.channel.id,
                creator_id: f.owner,
                creator_name: String::new(),
                max_uses: 1,
                uses: 0,
                expires_at: Some(100),
                created_at: 10,
            })
            .await
            .unwrap();
        assert_eq!(store.guild_invites(g, 50).await.unwrap().len(), 1);
        assert!(
            store.guild_invites(g, 100).await.unwrap().is_empty(),
            "expired"
        );
        assert!(matches!(
            store
                .join_guild(g, bob.id, Some(&hash), 100, &ev(g, 6), &ev(bob.id, 0))
                .await,
            Err(Error::Conflict(Conflict::InviteUnusable))
        ));
        let pos = store
            .join_guild(g, bob.id, Some(&hash), 50, &ev(g, 6), &ev(bob.id, 0))
            .await
            .unwrap();
        assert_eq!(pos.guild, 2);
        let m = store.member(g, bob.id).await.unwrap().unwrap();
        assert_eq!((m.since, m.local_name.as_str()), (2, "bob"));
        assert!(matches!(
            store
                .join_guild(g, bob.id, None, 50, &ev(g, 6), &ev(bob.id, 0))
                .await,
            Err(Error::Conflict(Conflict::AlreadyMember))
        ));
        // The failed joins appended nothing.
        assert_eq!(store.stream_head(g).await.unwrap(), 2);
        assert_eq!(store.guild_invite(&hash).await.unwrap().unwrap().uses, 1);

        // Paging by stored name.
        let page = store.members(g, None, 1).await.unwrap();
        assert_eq!(page[0].local_name, "bob");
        let next = store.members(g, Some("bob"), 10).await.unwrap();
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].local_name, "owner");

        // A ban ends the membership and a second invite does not help.
        store
            .ban(
                g,
                bob.id,
                f.owner,
                Some("spam"),
                60,
                &ev(g, 6),
                &ev(bob.id, 1),
            )
            .await
            .unwrap();
        assert!(store.member(g, bob.id).await.unwrap().is_none());
        assert!(store.is_banned(g, bob.id).await.unwrap());
        let bans = store.bans(g).await.unwrap();
        assert_eq!(bans[0].reason.as_deref(), Some("spam"));
        assert_eq!(bans[0].banned_by_name, "owner");
        let fresh = vec![8u8; 32];
        store
            .insert_guild_invite(&GuildInviteRow {
                code_hash: fresh.clone(),
                max_uses: 0,
                expires_at: None,
                ..store.guild_invite(&hash).await.unwrap().unwrap()
            })
            .await
            .unwrap();
        assert!(matches!(
            store
                .join_guild(g, bob.id, Some(&fresh), 61, &ev(g, 6), &ev(bob.id, 0))
                .await,
            Err(Error::Conflict(Conflict::Banned))
        ));
        assert_eq!(store.guild_invite(&fresh).await.unwrap().unwrap().uses, 0);
        store.unban(g, bob.id, &ev(g, 7)).await.unwrap();
        assert!(matches!(
            store.unban(g, bob.id, &ev(g, 7)).await,
            Err(Error::Conflict(Conflict::NotBanned))
        ));
        store
            .join_guild(g, bob.id, Some(&fresh), 62, &ev(g, 6), &ev(bob.id, 0))
            .await
            .unwrap();
        store
            .remove_member(g, bob.id, &ev(g, 7), &ev(bob.id, 1))
            .await
            .unwrap();
        assert!(matches!(
            store
                .remove_member(g, bob.id, &ev(g, 7), &ev(bob.id, 1))
                .await,
            Err(Error::Conflict(Conflict::NotAMember))
        ));
        assert!(store.delete_guild_invite(&fresh).await.unwrap());
        assert!(!store.delete_guild_invite(&fresh).await.unwrap());
    }
}

#[tokio::test]
async fn roles_and_overwrites_change_the_access_version() {
    let dir = tempfile::tempdir().unwrap();
    for store in engines(&dir).await {
        let f = guild(&store, "owner").await;
        let g = f.guild.id;
        let v0 = store.guild(g).await.unwrap().unwrap().access_version;
        let role = RoleRow {
            id: id(),
            guild_id: g,
            name: "mods".into(),
            permissions: 4,
            position: 1,
            color: Some(0xff0000),
        };
        store.insert_role(&role, &ev(g, 2)).await.unwrap();
        store
            .add_member_role(g, f.owner, role.id, &ev(g, 4))
            .await
            .unwrap();
        assert_eq!(store.roles_of(g, f.owner).await.unwrap(), vec![role.id]);
        assert!(
            matches!(
                store.add_member_role(g, f.owner, g, &ev(g, 4)).await,
                Err(Error::Conflict(Conflict::RoleMissing))
            ),
            "@everyone is not assigned"
        );
        let o = OverwriteRow {
            channel_id: f.channel.id,
            kind: TargetKind::Role,
            target_id: role.id,
            allow: 2,
            deny: 1,
        };
        store.set_overwrite(g, &o, &ev(g, 5)).await.unwrap();
        store
            .set_overwrite(
                g,
                &OverwriteRow {
                    allow: 8,
                    ..o.clone()
                },
                &ev(g, 5),
            )
            .await
            .unwrap();
        assert_eq!(store.overwrites(f.channel.id).await.unwrap()[0].allow, 8);
        let access = store.guild_access(g).await.unwrap().unwrap();
        assert!(access.guild.access_version > v0);
        assert_eq!(access.member_roles, vec![(f.owner, role.id)]);
        assert_eq!(access.overwrites.len(), 1);

        // Deleting the role takes its assignments and overwrites along.
        store.delete_role(g, role.id, &ev(g, 3)).await.unwrap();
        assert!(store.roles_of(g, f.owner).await.unwrap().is_empty());
        assert!(store.overwrites(f.channel.id).await.unwrap().is_empty());
        assert!(
            matches!(
                store.delete_role(g, g, &ev(g, 3)).await,
                Err(Error::Conflict(Conflict::RoleMissing))
            ),
            "@everyone stays"
        );
        assert!(matches!(
            store
                .delete_overwrite(g, f.channel.id, TargetKind::Role, role.id, &ev(g, 5))
                .await,
            Err(Error::Conflict(Conflict::OverwriteMissing))
        ));
    }
}

#[tokio::test]
async fn sends_are_idempotent_and_deletes_leave_scrubbed_tombstones() {
    let dir = tempfile::tempdir().unwrap();
    for store in engines(&dir).await {
        let f = guild(&store, "owner").await;
        let g = f.guild.id;
        let m = message(&f, f.owner, "n1", "hello");
        let about = |op| NewEvent {
            ref_id: Some(m.id),
            ..ev(g, op)
        };
        let Sent::New(seq) = store
            .insert_message(&m, &about(0), None, None)
            .await
            .unwrap()
        else {
            panic!("a first send is new");
        };
        assert_eq!(seq, 2);
        // The same nonce again: nothing stored, the first message answered.
        let again = message(&f, f.owner, "n1", "other text");
        match store
            .insert_message(&again, &about(0), None, None)
            .await
            .unwrap()
        {
            Sent::Existing(existing) => {
                assert_eq!(existing.id, m.id);
                assert!(existing.content.contains("hello"));
            }
            Sent::New(_) => panic!("a repeated nonce was stored twice"),
        }
        assert_eq!(store.stream_head(g).await.unwrap(), 2);
        assert!(store.message(again.id).await.unwrap().is_none());

        // A non-member cannot store one.
        let eve = actor("eve");
        store.insert_actor(&eve, None, 1).await.unwrap();
        assert!(matches!(
            store
                .insert_message(&message(&f, eve.id, "n1", "x"), &ev(g, 0), None, None)
                .await,
            Err(Error::Conflict(Conflict::NotAMember))
        ));

        // An edit is a new version; the old one stays.
        let v2 = MessageVersionRow {
            message_id: m.id,
            version: 2,
            nonce: "n2".into(),
            content: "{\"content\":\"hello!\"}".into(),
            signature: "cd".into(),
            cert_pem: "PEM".into(),
            cert_serial: 5,
            edit_of: Some(m.id),
            created_at: 25,
        };
        store.edit_message(&v2, &about(1)).await.unwrap();
        assert!(matches!(
            store.edit_message(&v2, &about(1)).await,
            Err(Error::Conflict(Conflict::MessageChanged))
        ));
        let now = store.message(m.id).await.unwrap().unwrap();
        assert_eq!((now.version, now.version_nonce.as_str()), (2, "n2"));
        assert_eq!(now.edited_at, Some(25));
        let versions = store.message_versions(m.id).await.unwrap();
        assert_eq!(versions.len(), 2);
        assert!(versions[0].content.contains("hello\""));
        assert_eq!(
            (
                versions[0].version,
                versions[0].nonce.as_str(),
                versions[0].edit_of
            ),
            (1, "n1", None)
        );
        assert_eq!(versions[0].created_at, m.created_at);
        assert_eq!(versions[1], v2);
        // A nonce signed for an earlier version, or the current one, is not signed again;
        // nothing changes.
        for used in ["n1", "n2"] {
            let v3 = MessageVersionRow {
                version: 3,
                nonce: used.into(),
                ..v2.clone()
            };
            assert!(matches!(
                store.edit_message(&v3, &about(1)).await,
                Err(Error::Conflict(Conflict::NonceUsed))
            ));
        }
        assert_eq!(store.message_versions(m.id).await.unwrap(), versions);
        assert_eq!(store.message(m.id).await.unwrap().unwrap(), now);

        // Pages.
        let later = message(&f, f.owner, "n3", "later");
        let later = MessageRow {
            id: m.id + 1,
            ..later
        };
        store
            .insert_message(&later, &ev(g, 0), None, None)
            .await
            .unwrap();
        let newest = store.messages_before(f.channel.id, None, 1).await.unwrap();
        assert_eq!(newest[0].id, later.id);
        let older = store
            .messages_before(f.channel.id, Some(later.id), 10)
            .await
            .unwrap();
        assert_eq!(older.iter().map(|m| m.id).collect::<Vec<_>>(), vec![m.id]);
        let after = store.messages_after(f.channel.id, m.id, 10).await.unwrap();
        assert_eq!(
            after.iter().map(|m| m.id).collect::<Vec<_>>(),
            vec![later.id]
        );

        // Delete: tombstone, versions gone, every event about it scrubbed.
        store
            .delete_message(m.id, g, f.owner, 30, "{\"deleted\":true}", &about(2))
            .await
            .unwrap();
        let tomb = store.message(m.id).await.unwrap().unwrap();
        assert_eq!(tomb.deleted_at, Some(30));
        assert_eq!(tomb.deleted_by, Some(f.owner));
        assert!(tomb.content.is_empty() && tomb.signature.is_empty());
        assert!(store.message_versions(m.id).await.unwrap().is_empty());
        let events = store.events_after(g, 0, 100).await.unwrap();
        for e in events.iter().filter(|e| e.ref_id == Some(m.id)) {
            assert!(
                !e.payload.contains("op\":0") && !e.payload.contains("op\":1"),
                "{e:?}"
            );
        }
        assert!(events.iter().any(|e| e.op == 2 && e.ref_id == Some(m.id)));
        assert!(matches!(
            store
                .delete_message(m.id, g, f.owner, 31, "{}", &about(2))
                .await,
            Err(Error::Conflict(Conflict::MessageMissing))
        ));
    }
}

#[tokio::test]
async fn channels_update_and_delete_with_their_messages() {
    let dir = tempfile::tempdir().unwrap();
    for store in engines(&dir).await {
        let f = guild(&store, "owner").await;
        let g = f.guild.id;
        let cat = ChannelRow {
            id: id(),
            name: "topics".into(),
            kind: 4,
            position: 1,
            ..f.channel.clone()
        };
        store.insert_channel(&cat, &ev(g, 3)).await.unwrap();
        let moved = ChannelRow {
            parent_id: Some(cat.id),
            topic: Some("t".into()),
            ..f.channel.clone()
        };
        store.update_channel(&moved, &ev(g, 4)).await.unwrap();
        assert_eq!(store.channel(f.channel.id).await.unwrap().unwrap(), moved);
        let m = message(&f, f.owner, "n1", "hi");
        store
            .insert_message(&m, &ev(g, 0), None, None)
            .await
            .unwrap();
        store.delete_channel(g, cat.id, &ev(g, 5)).await.unwrap();
        assert_eq!(
            store
                .channel(f.channel.id)
                .await
                .unwrap()
                .unwrap()
                .parent_id,
            None
        );
        store
            .delete_channel(g, f.channel.id, &ev(g, 5))
            .await
            .unwrap();
        assert!(store.message(m.id).await.unwrap().is_none());
        assert!(matches!(
            store.delete_channel(g, f.channel.id, &ev(g, 5)).await,
            Err(Error::Conflict(Conflict::ChannelMissing))
        ));
        let other = guild(&store, "owner2").await;
        assert!(
            matches!(
                store.delete_channel(g, other.channel.id, &ev(g, 5)).await,
                Err(Error::Conflict(Conflict::ChannelMissing))
            ),
            "a channel of another guild"
        );
        store
            .transfer_guild(
                other.guild.id,
                other.owner,
                other.owner,
                &ev(other.guild.id, 8),
            )
            .await
            .unwrap();
        assert!(matches!(
            store
                .transfer_guild(other.guild.id, f.owner, other.owner, &ev(other.guild.id, 8))
                .await,
            Err(Error::Conflict(Conflict::NotOwner))
        ));
    }
}

#[tokio::test]
async fn concurrent_sends_check_the_rules_version_and_are_refused_alone() {
    let dir = tempfile::tempdir().unwrap();
    for store in engines(&dir).await {
        let f = guild(&store, "owner").await;
        let g = f.guild.id;
        let version = store.guild(g).await.unwrap().unwrap().access_version;

        // The rules changed after the caller checked the author's permissions: refused, and
        // nothing stored.
        let stale = message(&f, f.owner, "stale", "x");
        assert!(matches!(
            store
                .insert_message(&stale, &ev(g, 0), Some(version + 1), None)
                .await,
            Err(Error::Conflict(Conflict::NotAMember))
        ));
        assert!(store.message(stale.id).await.unwrap().is_none());

        // Many sends at once (committed in groups): each new one stored once at its own
        // position with its event about it; a repeated nonce and a non-member among them are
        // answered alone, the others unharmed.
        let eve = actor("eve");
        store.insert_actor(&eve, None, 1).await.unwrap();
        let head = store.stream_head(g).await.unwrap();
        let mut sends = tokio::task::JoinSet::new();
        for i in 0..24 {
            let (author, nonce) = match i {
                7 => (eve.id, "eve".to_owned()),
                13 => (f.owner, "c3".to_owned()),
                _ => (f.owner, format!("c{i}")),
            };
            let (store, m) = (store.clone(), message(&f, author, &nonce, "hi"));
            sends.spawn(async move {
                let r = store
                    .insert_message(&m, &ev(g, 0), Some(version), None)
                    .await;
                (i, m.id, r)
            });
        }
        let mut stored = Vec::new();
        let (mut refused, mut repeated) = (0, 0);
        while let Some(done) = sends.join_next().await {
            match done.unwrap() {
                (_, id, Ok(Sent::New(seq))) => stored.push((seq, id)),
                (i, _, Ok(Sent::Existing(first))) => {
                    assert!(i == 3 || i == 13, "{}: {i}", store.engine_name());
                    assert_eq!(first.nonce, "c3");
                    repeated += 1;
                }
                (7, _, Err(Error::Conflict(Conflict::NotAMember))) => refused += 1,
                (i, _, other) => panic!("{}: send {i}: {other:?}", store.engine_name()),
            }
        }
        assert_eq!((stored.len(), repeated, refused), (22, 1, 1));
        stored.sort();
        let seqs: Vec<i64> = stored.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(seqs, ((head + 1)..=(head + 22)).collect::<Vec<_>>());
        assert_eq!(store.stream_head(g).await.unwrap(), head + 22);
        let events = store.events_after(g, head, 100).await.unwrap();
        let about: Vec<(i64, Option<i64>)> = events.iter().map(|e| (e.seq, e.ref_id)).collect();
        let expected: Vec<(i64, Option<i64>)> =
            stored.iter().map(|(seq, id)| (*seq, Some(*id))).collect();
        assert_eq!(about, expected, "{}", store.engine_name());
    }
}

#[tokio::test]
async fn a_guarded_send_is_stored_only_while_its_session_holds() {
    let dir = tempfile::tempdir().unwrap();
    for store in engines(&dir).await {
        let f = guild(&store, "owner").await;
        let g = f.guild.id;
        let certified = cert(f.owner, "phone");
        let serial = certified.serial;
        store
            .open_session(&session(f.owner, "phone", b"tok-phone", Some(certified)))
            .await
            .unwrap();
        store
            .open_session(&session(f.owner, "laptop", b"tok-laptop", None))
            .await
            .unwrap();
        let guard = |token: &[u8], cert_serial| SessionGuard {
            token_hash: token.to_vec(),
            cert_serial,
        };
        let refused =
            |r: fugue_store::Result<Sent>| matches!(r, Err(Error::Conflict(Conflict::NotAMember)));

        // The session as remembered: stored, with or without a certificate.
        for (nonce, held) in [
            ("a", guard(b"tok-phone", Some(serial))),
            ("b", guard(b"tok-laptop", None)),
        ] {
            let m = message(&f, f.owner, nonce, "hi");
            let sent = store.insert_message(&m, &ev(g, 0), None, Some(&held)).await;
            assert!(matches!(sent, Ok(Sent::New(_))), "{}", store.engine_name());
        }

        // Remembered wrongly (another certificate, none, an unknown token): refused, nothing
        // stored.
        for (nonce, stale) in [
            ("c", guard(b"tok-phone", Some(serial + 1))),
            ("d", guard(b"tok-phone", None)),
            ("e", guard(b"tok-laptop", Some(serial))),
            ("f", guard(b"tok-gone", None)),
        ] {
            let m = message(&f, f.owner, nonce, "hi");
            let sent = store
                .insert_message(&m, &ev(g, 0), None, Some(&stale))
                .await;
            assert!(refused(sent), "{}: {nonce}", store.engine_name());
            assert!(store.message(m.id).await.unwrap().is_none());
        }

        // Revoked since: refused; the other session still sends until its actor is
        // suspended.
        assert!(store.revoke_session(f.owner, "phone", 150).await.unwrap());
        let m = message(&f, f.owner, "g", "hi");
        let held = guard(b"tok-phone", Some(serial));
        assert!(refused(
            store.insert_message(&m, &ev(g, 0), None, Some(&held)).await
        ));
        // Not even a repeated nonce is answered to it with the message stored first.
        let again = message(&f, f.owner, "a", "hi");
        assert!(refused(
            store
                .insert_message(&again, &ev(g, 0), None, Some(&held))
                .await
        ));
        let laptop = guard(b"tok-laptop", None);
        let m = message(&f, f.owner, "h", "hi");
        let sent = store
            .insert_message(&m, &ev(g, 0), None, Some(&laptop))
            .await;
        assert!(matches!(sent, Ok(Sent::New(_))), "{}", store.engine_name());
        assert!(store.set_suspended(f.owner, Some(160)).await.unwrap());
        let m = message(&f, f.owner, "i", "hi");
        assert!(refused(
            store
                .insert_message(&m, &ev(g, 0), None, Some(&laptop))
                .await
        ));
        assert!(store.message(m.id).await.unwrap().is_none());

        // Exactly the three sends that held are stored.
        let stored = store
            .messages_before(f.channel.id, None, 100)
            .await
            .unwrap();
        let mut nonces: Vec<&str> = stored.iter().map(|m| m.nonce.as_str()).collect();
        nonces.sort_unstable();
        assert_eq!(nonces, ["a", "b", "h"], "{}", store.engine_name());
    }
}
