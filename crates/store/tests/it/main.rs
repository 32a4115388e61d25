//! The store conformance suite: every scenario runs on SQLite and, when
//! `TEST_DATABASE_URL` is set, on PostgreSQL (in a fresh schema), so both engines keep the
//! same behaviour.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod chat;
mod community;
mod conversations;
mod convert;
mod media;
mod migration;

use rand_core::{OsRng, RngCore};

use fugue_store::{
    ActorRow, CertRow, Conflict, Error, EventRow, KeyMaterialRow, KeyTrialQuery, KeyTrialRow,
    NewEvent, NewForeignSession, NewSession, ServerCertRow, SqliteSync, Store, TrialRef,
};

/// Opens each engine available: SQLite always, PostgreSQL when configured.
async fn engines(dir: &tempfile::TempDir) -> Vec<Store> {
    let mut stores = vec![
        Store::open_sqlite(&dir.path().join("t.db"), SqliteSync::Normal)
            .await
            .unwrap(),
    ];
    if let Ok(url) = std::env::var("TEST_DATABASE_URL")
        && !url.is_empty()
    {
        let schema = format!("s_{:016x}", OsRng.next_u64());
        stores.push(Store::open_postgres(&url, Some(&schema), 4).await.unwrap());
    }
    stores
}

fn id() -> i64 {
    (OsRng.next_u64() >> 1) as i64
}

fn actor(name: &str) -> ActorRow {
    ActorRow {
        id: id(),
        local_name: name.into(),
        password_hash: "hash".into(),
        totp_secret: None,
        totp_pending: None,
        is_admin: false,
        created_at: 1,
        suspended_at: None,
        deleted_at: None,
    }
}

fn cert(actor_id: i64, session: &str) -> CertRow {
    CertRow {
        serial: id(),
        actor_id,
        session_id: session.into(),
        cert_pem: format!("PEM {session}"),
        not_before: 100,
        not_after: 200,
        issued_at: 100,
        revoked_at: None,
    }
}

fn session(actor_id: i64, sid: &str, token: &[u8], cert: Option<CertRow>) -> NewSession {
    NewSession {
        id: id(),
        actor_id,
        session_id: sid.into(),
        token_hash: token.to_vec(),
        created_at: 100,
        cert,
        max_live: 100,
    }
}

#[tokio::test]
async fn actors_are_unique_by_local_name() {
    let dir = tempfile::tempdir().unwrap();
    for store in engines(&dir).await {
        let a = actor("alice");
        store.insert_actor(&a, None, 1).await.unwrap();
        assert!(
            matches!(
                store.insert_actor(&actor("alice"), None, 1).await,
                Err(Error::Unique(_))
            ),
            "{}",
            store.engine_name()
        );
        assert_eq!(store.actor_by_name("alice").await.unwrap(), Some(a.clone()));
        assert_eq!(store.actor_by_id(a.id).await.unwrap(), Some(a));
        assert_eq!(store.actor_by_name("bob").await.unwrap(), None);
        assert!(store.set_admin("alice", true).await.unwrap());
        assert!(
            store
                .actor_by_name("alice")
                .await
                .unwrap()
                .unwrap()
                .is_admin
        );
        assert!(!store.set_admin("nobody", true).await.unwrap());
    }
}

#[tokio::test]
async fn an_invite_is_consumed_atomically_with_the_registration() {
    let dir = tempfile::tempdir().unwrap();
    for store in engines(&dir).await {
        store.insert_invite(b"code", 1, None, 1).await.unwrap();
        store.insert_invite(b"old", 1, Some(5), 10).await.unwrap();
        store
            .insert_actor(&actor("first"), Some(b"code"), 2)
            .await
            .unwrap();
        // Used up: the actor must not be created.
        assert!(matches!(
            store.insert_actor(&actor("second"), Some(b"code"), 3).await,
            Err(Error::Conflict(Conflict::InviteUnusable))
        ));
        assert_eq!(store.actor_by_name("second").await.unwrap(), None);
        // Expired and unknown codes likewise.
        assert!(matches!(
            store.insert_actor(&actor("third"), Some(b"old"), 6).await,
            Err(Error::Conflict(Conflict::InviteUnusable))
        ));
        assert!(matches!(
            store.insert_actor(&actor("fourth"), Some(b"nope"), 3).await,
            Err(Error::Conflict(Conflict::InviteUnusable))
        ));
        assert_eq!(store.actor_by_name("third").await.unwrap(), None);
    }
}

#[tokio::test]
async fn a_session_id_is_unique_among_active_sessions_and_free_again_after_revocation() {
    let dir = tempfile::tempdir().unwrap();
    for store in engines(&dir).await {
        let a = actor("alice");
        store.insert_actor(&a, None, 1).await.unwrap();
        let c1 = cert(a.id, "laptop");
        store
            .open_session(&session(a.id, "laptop", b"t1", Some(c1.clone())))
            .await
            .unwrap();
        let dup = store
            .open_session(&session(a.id, "laptop", b"t2", Some(cert(a.id, "laptop"))))
            .await;
        assert!(
            matches!(dup, Err(Error::Unique(_))),
            "{}: {dup:?}",
            store.engine_name()
        );
        let found = store.session_by_token(b"t1").await.unwrap().unwrap();
        assert_eq!(
            (found.session_id.as_str(), found.cert_serial),
            ("laptop", Some(c1.serial))
        );
        // The one read every request makes: the session with its actor.
        let (with, owner) = store.session_with_actor(b"t1").await.unwrap().unwrap();
        assert_eq!(with, found);
        assert_eq!((owner.id, owner.local_name.as_str()), (a.id, "alice"));
        assert_eq!(store.session_with_actor(b"t2").await.unwrap(), None);
        assert_eq!(
            store.session_by_token(b"t2").await.unwrap(),
            None,
            "nothing of the failed login remains"
        );

        assert!(store.revoke_session(a.id, "laptop", 150).await.unwrap());
        assert!(!store.revoke_session(a.id, "laptop", 151).await.unwrap());
        assert_eq!(store.session_by_token(b"t1").await.unwrap(), None);
        assert_eq!(store.session_with_actor(b"t1").await.unwrap(), None);
        assert_eq!(
            store
                .cert_by_serial(c1.serial)
                .await
                .unwrap()
                .unwrap()
                .revoked_at,
            Some(150)
        );
        store
            .open_session(&session(a.id, "laptop", b"t3", Some(cert(a.id, "laptop"))))
            .await
            .unwrap();
        assert_eq!(store.sessions_of(a.id).await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn live_sessions_are_capped_per_actor_and_ended_ones_do_not_count() {
    let dir = tempfile::tempdir().unwrap();
    for store in engines(&dir).await {
        let a = actor("alice");
        store.insert_actor(&a, None, 1).await.unwrap();
        let capped = |sid: &str, token: &[u8]| NewSession {
            max_live: 2,
            ..session(a.id, sid, token, Some(cert(a.id, sid)))
        };
        store.open_session(&capped("one", b"t1")).await.unwrap();
        store.open_session(&capped("two", b"t2")).await.unwrap();
        let third = store.open_session(&capped("three", b"t3")).await;
        assert!(
            matches!(third, Err(Error::Conflict(Conflict::TooManySessions))),
            "{}: {third:?}",
            store.engine_name()
        );
        assert_eq!(store.session_by_token(b"t3").await.unwrap(), None);
        assert_eq!(
            store.cert_counts(a.id).await.unwrap(),
            (2, 0),
            "nothing of it stored"
        );
        // Another actor is not affected, and an ended session frees its place.
        let b = actor("bob");
        store.insert_actor(&b, None, 1).await.unwrap();
        store
            .open_session(&NewSession {
                max_live: 2,
                ..session(b.id, "one", b"b1", None)
            })
            .await
            .unwrap();
        assert!(store.revoke_session(a.id, "one", 150).await.unwrap());
        store.open_session(&capped("three", b"t3")).await.unwrap();
        assert_eq!(store.cert_counts(a.id).await.unwrap(), (3, 1));
    }
}

#[tokio::test]
async fn replacing_a_session_cert_revokes_the_old_one_and_refuses_stale_requests() {
    let dir = tempfile::tempdir().unwrap();
    for store in engines(&dir).await {
        let a = actor("alice");
        store.insert_actor(&a, None, 1).await.unwrap();
        // A session that starts without a certificate (token first, cert later).
        let s = session(a.id, "sdk", b"tok", None);
        store.open_session(&s).await.unwrap();
        assert_eq!(
            store
                .session_by_token(b"tok")
                .await
                .unwrap()
                .unwrap()
                .cert_serial,
            None
        );
        let first = cert(a.id, "sdk");
        store
            .replace_session_cert(s.id, None, &first, None, 120)
            .await
            .unwrap();
        assert_eq!(
            store
                .session_by_token(b"tok")
                .await
                .unwrap()
                .unwrap()
                .cert_serial,
            Some(first.serial)
        );

        let second = cert(a.id, "sdk");
        store
            .replace_session_cert(s.id, Some(first.serial), &second, Some(b"tok2"), 130)
            .await
            .unwrap();
        assert_eq!(
            store.session_by_token(b"tok").await.unwrap(),
            None,
            "old token dies with the old cert"
        );
        assert_eq!(
            store
                .session_by_token(b"tok2")
                .await
                .unwrap()
                .unwrap()
                .cert_serial,
            Some(second.serial)
        );
        assert_eq!(
            store
                .cert_by_serial(first.serial)
                .await
                .unwrap()
                .unwrap()
                .revoked_at,
            Some(130)
        );

        // A request based on the stale cert changes nothing.
        let third = cert(a.id, "sdk");
        let stale = store
            .replace_session_cert(s.id, Some(first.serial), &third, Some(b"tok3"), 140)
            .await;
        assert!(
            matches!(stale, Err(Error::Conflict(Conflict::SessionChanged))),
            "{stale:?}"
        );
        assert_eq!(store.cert_by_serial(third.serial).await.unwrap(), None);
        assert!(store.session_by_token(b"tok2").await.unwrap().is_some());
    }
}

#[tokio::test]
async fn certificates_are_listed_by_window_and_session() {
    let dir = tempfile::tempdir().unwrap();
    for store in engines(&dir).await {
        let a = actor("alice");
        store.insert_actor(&a, None, 1).await.unwrap();
        let mut c = cert(a.id, "one");
        c.not_before = 10;
        c.not_after = 20;
        store
            .open_session(&session(a.id, "one", b"a", Some(c.clone())))
            .await
            .unwrap();
        let mut d = cert(a.id, "two");
        d.not_before = 30;
        d.not_after = 40;
        store
            .open_session(&session(a.id, "two", b"b", Some(d.clone())))
            .await
            .unwrap();
        let serials = |v: Vec<CertRow>| v.into_iter().map(|c| c.serial).collect::<Vec<_>>();
        assert_eq!(
            serials(store.certs_of(a.id, None, None, None).await.unwrap()),
            vec![c.serial, d.serial]
        );
        assert_eq!(
            serials(store.certs_of(a.id, Some(25), None, None).await.unwrap()),
            vec![d.serial]
        );
        assert_eq!(
            serials(store.certs_of(a.id, None, Some(25), None).await.unwrap()),
            vec![c.serial]
        );
        assert_eq!(
            serials(store.certs_of(a.id, None, None, Some("two")).await.unwrap()),
            vec![d.serial]
        );
        assert!(
            store
                .certs_of(a.id, Some(50), None, None)
                .await
                .unwrap()
                .is_empty()
        );
    }
}

#[tokio::test]
async fn server_certs_keep_their_history() {
    let dir = tempfile::tempdir().unwrap();
    for store in engines(&dir).await {
        let row = |serial, created_at| ServerCertRow {
            serial,
            cert_pem: format!("PEM {serial}"),
            not_before: created_at,
            not_after: created_at + 100,
            created_at,
            superseded_at: None,
        };
        store.insert_server_cert(&row(1, 10), 10).await.unwrap();
        store.insert_server_cert(&row(2, 20), 20).await.unwrap();
        let all = store.server_certs().await.unwrap();
        assert_eq!(
            all.iter()
                .map(|c| (c.serial, c.superseded_at))
                .collect::<Vec<_>>(),
            vec![(1, Some(20)), (2, None)]
        );
    }
}

#[tokio::test]
async fn key_material_is_unique_per_serial_and_deletable() {
    let dir = tempfile::tempdir().unwrap();
    for store in engines(&dir).await {
        let a = actor("alice");
        store.insert_actor(&a, None, 1).await.unwrap();
        let k = |serial| KeyMaterialRow {
            serial,
            key_data: "enc".into(),
            algorithms: vec!["1.2".into()],
            created_at: 5,
        };
        store
            .insert_key_material(a.id, &[k(1), k(2)], 10)
            .await
            .unwrap();
        // All or nothing: serial 3 must not be stored when serial 2 collides.
        assert!(matches!(
            store.insert_key_material(a.id, &[k(3), k(2)], 10).await,
            Err(Error::Unique(_))
        ));
        assert_eq!(
            store
                .key_material(a.id)
                .await
                .unwrap()
                .iter()
                .map(|r| r.serial)
                .collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(store.delete_key_material(a.id, &[2, 9]).await.unwrap(), 1);
        assert_eq!(store.key_material(a.id).await.unwrap(), vec![k(1)]);
        // Full slots and an unknown actor are told apart.
        assert!(matches!(
            store.insert_key_material(a.id, &[k(3), k(4)], 2).await,
            Err(Error::Conflict(Conflict::KeyMaterialSlotsFull))
        ));
        assert!(matches!(
            store.insert_key_material(a.id ^ 1, &[k(5)], 10).await,
            Err(Error::Conflict(Conflict::ActorMissing))
        ));
        // The algorithms come back as they went in, empty lists included.
        let none = KeyMaterialRow {
            algorithms: vec![],
            ..k(6)
        };
        let two = KeyMaterialRow {
            algorithms: vec!["1.2.840".into(), "1.3.101.112".into()],
            ..k(7)
        };
        store
            .insert_key_material(a.id, &[none.clone(), two.clone()], 10)
            .await
            .unwrap();
        assert_eq!(
            store.key_material(a.id).await.unwrap(),
            vec![k(1), none, two]
        );
    }
}

#[tokio::test]
async fn account_changes_and_a_deleted_account_stays_as_a_tombstone() {
    let dir = tempfile::tempdir().unwrap();
    for store in engines(&dir).await {
        let engine = store.engine_name();
        let a = actor("alice");
        store.insert_actor(&a, None, 1).await.unwrap();
        let b = actor("bob");
        store.insert_actor(&b, None, 2).await.unwrap();
        // A foreign actor is stored under its whole FID and is no account of this server.
        store
            .insert_actor(&actor("carol@other.example"), None, 3)
            .await
            .unwrap();

        assert!(store.set_password(a.id, "new-hash").await.unwrap());
        let row = store.actor_by_id(a.id).await.unwrap().unwrap();
        assert_eq!(row.password_hash, "new-hash", "{engine}");

        // TOTP: off only when on; a pending enrolment goes with it.
        assert!(!store.disable_totp(a.id).await.unwrap(), "{engine}");
        store.set_totp_pending(a.id, "SECRET").await.unwrap();
        assert!(store.activate_totp(a.id, "SECRET").await.unwrap());
        store.set_totp_pending(a.id, "OTHER").await.unwrap();
        assert!(store.disable_totp(a.id).await.unwrap(), "{engine}");
        let row = store.actor_by_id(a.id).await.unwrap().unwrap();
        assert_eq!(
            (row.totp_secret, row.totp_pending),
            (None, None),
            "{engine}"
        );

        assert!(store.set_suspended(b.id, Some(50)).await.unwrap());
        assert_eq!(
            store
                .actor_by_name("bob")
                .await
                .unwrap()
                .unwrap()
                .suspended_at,
            Some(50)
        );
        assert!(store.set_suspended(b.id, None).await.unwrap());
        assert_eq!(
            store.actor_by_id(b.id).await.unwrap().unwrap().suspended_at,
            None
        );

        // Two sessions with certificates, one old certificate already revoked, one backup.
        let c1 = cert(a.id, "laptop");
        let c2 = cert(a.id, "phone");
        store
            .open_session(&session(a.id, "laptop", b"ta1", Some(c1.clone())))
            .await
            .unwrap();
        store
            .open_session(&session(a.id, "phone", b"ta2", Some(c2.clone())))
            .await
            .unwrap();
        store
            .insert_key_material(
                a.id,
                &[KeyMaterialRow {
                    serial: 1,
                    key_data: "enc".into(),
                    algorithms: vec![],
                    created_at: 5,
                }],
                10,
            )
            .await
            .unwrap();
        let listed = store.accounts(150).await.unwrap();
        let names: Vec<_> = listed.iter().map(|r| r.local_name.as_str()).collect();
        assert_eq!(names, ["alice", "bob"], "{engine}");
        assert_eq!((listed[0].sessions, listed[1].sessions), (2, 0), "{engine}");
        assert!(
            !listed[0].totp && listed[0].deleted_at.is_none(),
            "{engine}"
        );
        // Certificates end at 200: at 250 no session is live any more.
        assert_eq!(
            store.accounts(250).await.unwrap()[0].sessions,
            0,
            "{engine}"
        );

        store.set_admin("alice", true).await.unwrap();
        assert!(store.delete_actor(a.id, 160).await.unwrap(), "{engine}");
        assert!(
            !store.delete_actor(a.id, 170).await.unwrap(),
            "deleted once"
        );
        let row = store.actor_by_name("alice").await.unwrap().unwrap();
        assert_eq!(row.deleted_at, Some(160), "{engine}");
        assert!(row.password_hash.is_empty() && !row.is_admin, "{engine}");
        // Every certificate is revoked and still listed; tokens no longer resolve.
        let certs = store.certs_of(a.id, None, None, None).await.unwrap();
        assert_eq!(certs.len(), 2, "{engine}");
        assert!(certs.iter().all(|c| c.revoked_at == Some(160)), "{engine}");
        assert_eq!(store.session_by_token(b"ta1").await.unwrap(), None);
        assert!(store.key_material(a.id).await.unwrap().is_empty());
        // The name stays taken; a tombstone cannot be changed back.
        assert!(matches!(
            store.insert_actor(&actor("alice"), None, 200).await,
            Err(Error::Unique(_))
        ));
        assert!(!store.set_password(a.id, "again").await.unwrap());
        assert!(!store.set_suspended(a.id, Some(1)).await.unwrap());
        assert_eq!(
            store.accounts(150).await.unwrap()[0].deleted_at,
            Some(160),
            "{engine}"
        );
    }
}

#[tokio::test]
async fn second_factor_attempts_are_counted_in_a_window_and_forgiven_when_right() {
    let dir = tempfile::tempdir().unwrap();
    for store in engines(&dir).await {
        let a = actor("alice");
        store.insert_actor(&a, None, 1).await.unwrap();
        for (attempt, t) in [(1, 100), (2, 200), (3, 300)] {
            assert!(
                store
                    .begin_sensitive_attempt(a.id, attempt, t, 0, 3)
                    .await
                    .unwrap()
            );
        }
        assert!(
            !store
                .begin_sensitive_attempt(a.id, 4, 310, 0, 3)
                .await
                .unwrap(),
            "{}: limit ignored",
            store.engine_name()
        );
        assert_eq!(
            store.sensitive_failures_since(a.id, 150).await.unwrap(),
            (2, Some(200))
        );
        store.forgive_sensitive_attempt(a.id, 3).await.unwrap();
        assert_eq!(
            store.sensitive_failures_since(a.id, 0).await.unwrap(),
            (2, Some(100))
        );
        // Attempts older than the window are forgotten, making room again.
        assert!(
            store
                .begin_sensitive_attempt(a.id, 5, 400, 150, 3)
                .await
                .unwrap()
        );
        assert_eq!(
            store.sensitive_failures_since(a.id, 0).await.unwrap(),
            (2, Some(200))
        );
        // An unknown actor is not a full window.
        assert!(matches!(
            store.begin_sensitive_attempt(a.id ^ 1, 6, 400, 0, 3).await,
            Err(Error::Conflict(Conflict::ActorMissing))
        ));
    }
}

#[tokio::test]
async fn events_follow_each_other_without_gaps_in_each_stream() {
    let dir = tempfile::tempdir().unwrap();
    for store in engines(&dir).await {
        let a = actor("alice");
        store.insert_actor(&a, None, 1).await.unwrap();
        let event = |stream_id, op| NewEvent {
            stream_id,
            namespace: "core".into(),
            op,
            payload: "{}".into(),
            created_at: 10 * op,
            audience: "c:5".into(),
            access: op == 2,
            ref_id: Some(op * 100),
            ..Default::default()
        };
        for op in 1..=3 {
            assert_eq!(store.append_event(&event(a.id, op)).await.unwrap(), op);
        }
        let seqs = |rows: Vec<EventRow>| rows.iter().map(|e| (e.seq, e.op)).collect::<Vec<_>>();
        assert_eq!(
            seqs(store.events_after(a.id, 1, 10).await.unwrap()),
            vec![(2, 2), (3, 3)]
        );
        assert_eq!(
            seqs(store.newest_events_after(a.id, 0, 2).await.unwrap()),
            vec![(2, 2), (3, 3)]
        );
        assert_eq!(store.stream_head(a.id).await.unwrap(), 3);
        let back = store.events_after(a.id, 1, 1).await.unwrap().remove(0);
        assert_eq!(
            (back.audience.as_str(), back.access, back.ref_id),
            ("c:5", true, Some(200))
        );
        // Another stream counts on its own.
        assert_eq!(store.append_event(&event(a.id ^ 1, 1)).await.unwrap(), 1);
        assert_eq!(store.stream_head(a.id).await.unwrap(), 3);
        // A scrubbed event keeps its place and loses its payload.
        assert_eq!(store.scrub_events(a.id, 300, "null").await.unwrap(), 1);
        assert_eq!(
            store.events_after(a.id, 2, 1).await.unwrap()[0].payload,
            "null"
        );
        assert_eq!(store.delete_events_before(25).await.unwrap(), 3);
        assert_eq!(
            seqs(store.events_after(a.id, 0, 10).await.unwrap()),
            vec![(3, 3)]
        );
    }
}

#[tokio::test]
async fn gateway_positions_keep_service_channels_and_only_move_forward() {
    let dir = tempfile::tempdir().unwrap();
    for store in engines(&dir).await {
        let engine = store.engine_name();
        let a = actor("alice");
        store.insert_actor(&a, None, 1).await.unwrap();
        let s = session(a.id, "laptop", b"tok", None);
        store.open_session(&s).await.unwrap();
        // A new session starts at its actor's newest event, on no node.
        assert_eq!(store.stream_positions(s.id).await.unwrap(), vec![(a.id, 0)]);
        assert!(store.gateway_position(s.id).await.unwrap().is_none());

        let channels = vec!["core".to_owned(), "chat".to_owned()];
        store
            .record_connection(s.id, "node-1", 7, &channels, 110)
            .await
            .unwrap();
        let p = store.gateway_position(s.id).await.unwrap().unwrap();
        assert_eq!(p.services, channels, "{engine}");
        assert_eq!(
            (p.node.as_deref(), p.root_serial),
            (Some("node-1"), Some(7))
        );

        store
            .advance_positions(s.id, &[(a.id, 5), (77, 2)])
            .await
            .unwrap();
        store
            .advance_positions(s.id, &[(a.id, 3), (77, 4)])
            .await
            .unwrap();
        let mut at = store.stream_positions(s.id).await.unwrap();
        at.sort_unstable();
        let mut want = vec![(a.id, 5), (77, 4)];
        want.sort_unstable();
        assert_eq!(at, want, "{engine}");

        // No channel at all is an empty list, not one empty name.
        store
            .record_connection(s.id, "node-2", 7, &[], 140)
            .await
            .unwrap();
        let p = store.gateway_position(s.id).await.unwrap().unwrap();
        assert_eq!((p.services, p.updated_at), (vec![], 140), "{engine}");
    }
}

#[tokio::test]
async fn a_foreign_session_replaces_the_active_one_with_its_session_id() {
    let dir = tempfile::tempdir().unwrap();
    for store in engines(&dir).await {
        let bob = store
            .foreign_actor("bob@other.example", id(), 1)
            .await
            .unwrap();
        assert_eq!(
            store
                .foreign_actor("bob@other.example", id(), 2)
                .await
                .unwrap(),
            bob
        );
        let open = |token: &[u8], serial| NewForeignSession {
            id: id(),
            actor_id: bob.id,
            session_id: "phone".into(),
            token_hash: token.to_vec(),
            serial,
            expires_at: 500,
            created_at: 100,
        };
        let first = open(b"f1", 11);
        assert_eq!(
            store.open_foreign_session(&first).await.unwrap(),
            Vec::<i64>::new()
        );
        let second = open(b"f2", 12);
        assert_eq!(
            store.open_foreign_session(&second).await.unwrap(),
            vec![first.id]
        );
        assert_eq!(store.active_session(first.id).await.unwrap(), None);
        let s = store.session_by_token(b"f2").await.unwrap().unwrap();
        assert_eq!((s.id, s.cert_not_after), (second.id, Some(500)));
        assert_eq!(store.foreign_serial(second.id).await.unwrap(), Some(12));
        assert!(
            store
                .update_foreign_session(second.id, 13, 600)
                .await
                .unwrap()
        );
        assert_eq!(store.foreign_serial(second.id).await.unwrap(), Some(13));
        // A re-check of the old certificate does not undo the move to the new one.
        assert!(
            !store
                .extend_foreign_session(second.id, 12, 650)
                .await
                .unwrap()
        );
        assert!(
            store
                .extend_foreign_session(second.id, 13, 650)
                .await
                .unwrap()
        );
        assert_eq!(store.foreign_serial(second.id).await.unwrap(), Some(13));
        assert!(store.end_session(second.id, 150).await.unwrap());
        assert!(
            !store
                .extend_foreign_session(second.id, 13, 700)
                .await
                .unwrap()
        );
        assert!(
            !store
                .update_foreign_session(second.id, 14, 700)
                .await
                .unwrap()
        );
    }
}

#[tokio::test]
async fn parallel_second_factor_attempts_cannot_slip_under_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    for store in engines(&dir).await {
        let a = actor("alice");
        store.insert_actor(&a, None, 1).await.unwrap();
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .begin_sensitive_attempt(a.id, i, 100, 0, 10)
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut admitted = 0;
        for t in tasks {
            admitted += usize::from(t.await.unwrap());
        }
        assert_eq!(admitted, 10, "{}", store.engine_name());
    }
}

#[tokio::test]
async fn a_session_id_is_free_again_once_its_certificate_expired() {
    let dir = tempfile::tempdir().unwrap();
    for store in engines(&dir).await {
        let a = actor("alice");
        store.insert_actor(&a, None, 1).await.unwrap();
        let old = cert(a.id, "laptop"); // valid 100..200
        store
            .open_session(&session(a.id, "laptop", b"old", Some(old.clone())))
            .await
            .unwrap();
        // Still valid at 150: the ID is taken.
        let mut early = session(a.id, "laptop", b"new", Some(cert(a.id, "laptop")));
        early.created_at = 150;
        assert!(matches!(
            store.open_session(&early).await,
            Err(Error::Unique(_))
        ));
        // Expired at 250: the old session ends, its cert stays unrevoked (it expired).
        let mut late = session(a.id, "laptop", b"new", Some(cert(a.id, "laptop")));
        late.created_at = 250;
        store.open_session(&late).await.unwrap();
        assert_eq!(store.session_by_token(b"old").await.unwrap(), None);
        assert_eq!(
            store
                .cert_by_serial(old.serial)
                .await
                .unwrap()
                .unwrap()
                .revoked_at,
            None
        );
        // A session that never got a certificate ends after CERTLESS_SESSION_S.
        store
            .open_session(&session(a.id, "sdk", b"t1", None))
            .await
            .unwrap();
        let mut again = session(a.id, "sdk", b"t2", None);
        again.created_at = 100 + fugue_store::CERTLESS_SESSION_S + 1;
        store.open_session(&again).await.unwrap();
        assert_eq!(store.session_by_token(b"t1").await.unwrap(), None);
    }
}

#[tokio::test]
async fn nodes_starting_together_migrate_once() {
    let Ok(url) = std::env::var("TEST_DATABASE_URL") else {
        return;
    };
    if url.is_empty() {
        return;
    }
    let schema = format!("m_{:016x}", OsRng.next_u64());
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let (url, schema) = (url.clone(), schema.clone());
            tokio::spawn(async move {
                Store::open_postgres(&url, Some(&schema), 2)
                    .await
                    .map(|_| ())
            })
        })
        .collect();
    for o in opens {
        o.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn sqlite_data_survives_reopening_and_migrations_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("durable.db");
    {
        let store = Store::open_sqlite(&path, SqliteSync::Full).await.unwrap();
        store.insert_actor(&actor("alice"), None, 1).await.unwrap();
    }
    let store = Store::open_sqlite(&path, SqliteSync::Full).await.unwrap();
    assert!(store.actor_by_name("alice").await.unwrap().is_some());
    store.ping().await.unwrap();
}

#[tokio::test]
async fn a_totp_step_is_spent_once_and_never_an_older_one() {
    let dir = tempfile::tempdir().unwrap();
    for store in engines(&dir).await {
        let a = actor("alice");
        store.insert_actor(&a, None, 1).await.unwrap();
        assert!(store.spend_totp_step(a.id, 100).await.unwrap());
        assert!(
            !store.spend_totp_step(a.id, 100).await.unwrap(),
            "{}: replay accepted",
            store.engine_name()
        );
        assert!(!store.spend_totp_step(a.id, 99).await.unwrap());
        assert!(store.spend_totp_step(a.id, 101).await.unwrap());
    }
}

#[tokio::test]
async fn parallel_key_material_uploads_cannot_exceed_the_slot_limit() {
    let dir = tempfile::tempdir().unwrap();
    for store in engines(&dir).await {
        let a = actor("alice");
        store.insert_actor(&a, None, 1).await.unwrap();
        let uploads: Vec<_> = (0..12)
            .map(|serial| {
                let store = store.clone();
                tokio::spawn(async move {
                    let row = KeyMaterialRow {
                        serial,
                        key_data: "enc".into(),
                        algorithms: vec![],
                        created_at: 1,
                    };
                    store.insert_key_material(a.id, &[row], 5).await
                })
            })
            .collect();
        let mut stored = 0;
        for u in uploads {
            match u.await.unwrap() {
                Ok(()) => stored += 1,
                Err(Error::Conflict(Conflict::KeyMaterialSlotsFull)) => {}
                Err(e) => panic!("{}: {e}", store.engine_name()),
            }
        }
        assert_eq!(stored, 5, "{}", store.engine_name());
        assert_eq!(store.key_material(a.id).await.unwrap().len(), 5);
    }
}

mod discoverable_services {
    //! Discoverable services (core §9): one listing per provider, one primary per service,
    //! the oldest remaining provider promoted when the primary goes.

    use fugue_store::{Conflict, Error, ServiceRow, Store};

    use super::{actor, engines};

    fn row(actor_id: i64, name: &str, url: &str, created_at: i64) -> ServiceRow {
        ServiceRow {
            actor_id,
            name: name.into(),
            url: url.into(),
            primary: false,
            created_at,
        }
    }

    /// (name, url, primary) of every provider, in the store's order.
    async fn listing(store: &Store, actor_id: i64) -> Vec<(String, String, bool)> {
        store
            .services_of(actor_id, None)
            .await
            .unwrap()
            .into_iter()
            .map(|s| (s.name, s.url, s.primary))
            .collect()
    }

    fn entry(name: &str, url: &str, primary: bool) -> (String, String, bool) {
        (name.into(), url.into(), primary)
    }

    #[tokio::test]
    async fn the_first_provider_of_a_service_is_primary_and_each_is_listed_once() {
        let dir = tempfile::tempdir().unwrap();
        for store in engines(&dir).await {
            let a = actor("alice");
            store.insert_actor(&a, None, 1).await.unwrap();
            let (first, demoted) = store
                .insert_service(&row(a.id, "chat", "https://a", 10), false, 10)
                .await
                .unwrap();
            assert!(
                first.primary && demoted.is_none(),
                "{}",
                store.engine_name()
            );
            let (second, _) = store
                .insert_service(&row(a.id, "chat", "https://b", 11), false, 10)
                .await
                .unwrap();
            assert!(!second.primary);
            // Nor is a third one.
            store
                .insert_service(&row(a.id, "chat", "https://c", 12), false, 10)
                .await
                .unwrap();
            store
                .insert_service(&row(a.id, "mls", "https://a", 13), false, 10)
                .await
                .unwrap();
            assert!(matches!(
                store
                    .insert_service(&row(a.id, "chat", "https://b", 14), false, 10)
                    .await,
                Err(Error::Unique(_))
            ));
            assert_eq!(
                listing(&store, a.id).await,
                vec![
                    entry("chat", "https://a", true),
                    entry("chat", "https://b", false),
                    entry("chat", "https://c", false),
                    entry("mls", "https://a", true),
                ]
            );
            let mls = store.services_of(a.id, Some("mls")).await.unwrap();
            assert_eq!(mls.len(), 1);
            assert_eq!(mls[0].created_at, 13);
            assert_eq!(store.services_of(a.id, Some("none")).await.unwrap(), vec![]);
            // Another actor's listing is its own.
            let b = actor("bob");
            store.insert_actor(&b, None, 1).await.unwrap();
            let (bobs, _) = store
                .insert_service(&row(b.id, "chat", "https://b", 20), false, 10)
                .await
                .unwrap();
            assert!(bobs.primary);
            assert_eq!(listing(&store, b.id).await.len(), 1);
        }
    }

    #[tokio::test]
    async fn taking_the_primary_demotes_the_previous_one() {
        let dir = tempfile::tempdir().unwrap();
        for store in engines(&dir).await {
            let a = actor("alice");
            store.insert_actor(&a, None, 1).await.unwrap();
            store
                .insert_service(&row(a.id, "chat", "https://a", 10), false, 10)
                .await
                .unwrap();
            let (new, old) = store
                .insert_service(&row(a.id, "chat", "https://b", 11), true, 10)
                .await
                .unwrap();
            assert!(new.primary, "{}", store.engine_name());
            assert_eq!(
                old.map(|o| (o.url, o.primary)),
                Some(("https://a".into(), false))
            );
            // A failed insert changes nothing, not even the demotion before it.
            assert!(matches!(
                store
                    .insert_service(&row(a.id, "chat", "https://a", 12), true, 10)
                    .await,
                Err(Error::Unique(_))
            ));
            assert_eq!(
                listing(&store, a.id).await,
                vec![
                    entry("chat", "https://a", false),
                    entry("chat", "https://b", true)
                ]
            );

            let (new, old) = store
                .set_primary_service(a.id, "chat", "https://a")
                .await
                .unwrap();
            assert!(new.primary && new.url == "https://a");
            assert_eq!(
                old.map(|o| (o.url, o.primary)),
                Some(("https://b".into(), false))
            );
            // Already primary: nothing else changes.
            let (new, old) = store
                .set_primary_service(a.id, "chat", "https://a")
                .await
                .unwrap();
            assert!(new.primary && old.is_none());
            assert!(matches!(
                store.set_primary_service(a.id, "chat", "https://zzz").await,
                Err(Error::Conflict(Conflict::ServiceNotListed))
            ));
            assert!(matches!(
                store.set_primary_service(a.id, "mls", "https://a").await,
                Err(Error::Conflict(Conflict::ServiceNotListed))
            ));
            assert_eq!(
                listing(&store, a.id).await,
                vec![
                    entry("chat", "https://a", true),
                    entry("chat", "https://b", false)
                ]
            );
        }
    }

    #[tokio::test]
    async fn removing_the_primary_promotes_the_oldest_remaining_provider() {
        let dir = tempfile::tempdir().unwrap();
        for store in engines(&dir).await {
            let a = actor("alice");
            store.insert_actor(&a, None, 1).await.unwrap();
            for (url, t) in [("https://a", 10), ("https://b", 30), ("https://c", 20)] {
                store
                    .insert_service(&row(a.id, "chat", url, t), false, 10)
                    .await
                    .unwrap();
            }
            store
                .insert_service(&row(a.id, "mls", "https://m", 5), false, 10)
                .await
                .unwrap();
            // All or nothing: a stale primary flag aborts the whole removal.
            let stale = [
                entry("mls", "https://m", true),
                entry("chat", "https://a", false),
            ];
            assert!(matches!(
                store.delete_services(a.id, &stale).await,
                Err(Error::Conflict(Conflict::ServiceNotListed))
            ));
            assert_eq!(listing(&store, a.id).await.len(), 4);

            let promoted = store
                .delete_services(a.id, &[entry("chat", "https://a", true)])
                .await
                .unwrap();
            assert_eq!(promoted.len(), 1, "{}", store.engine_name());
            assert_eq!(
                (promoted[0].url.as_str(), promoted[0].primary),
                ("https://c", true)
            );
            // Removing a provider that is not primary promotes nobody.
            assert_eq!(
                store
                    .delete_services(a.id, &[entry("chat", "https://b", false)])
                    .await
                    .unwrap(),
                vec![]
            );
            // The last provider of a service leaves nobody to promote; several at once.
            let promoted = store
                .delete_services(
                    a.id,
                    &[
                        entry("chat", "https://c", true),
                        entry("mls", "https://m", true),
                    ],
                )
                .await
                .unwrap();
            assert_eq!(promoted, vec![]);
            assert_eq!(listing(&store, a.id).await, vec![]);
            assert!(matches!(
                store
                    .delete_services(a.id, &[entry("chat", "https://c", true)])
                    .await,
                Err(Error::Conflict(Conflict::ServiceNotListed))
            ));
        }
    }

    #[tokio::test]
    async fn the_providers_per_actor_are_limited_and_need_an_actor() {
        let dir = tempfile::tempdir().unwrap();
        for store in engines(&dir).await {
            let a = actor("alice");
            store.insert_actor(&a, None, 1).await.unwrap();
            for url in ["https://a", "https://b"] {
                store
                    .insert_service(&row(a.id, "chat", url, 1), false, 2)
                    .await
                    .unwrap();
            }
            assert!(matches!(
                store
                    .insert_service(&row(a.id, "mls", "https://c", 1), false, 2)
                    .await,
                Err(Error::Conflict(Conflict::TooManyServices))
            ));
            assert!(matches!(
                store
                    .insert_service(&row(a.id ^ 1, "chat", "https://a", 1), false, 2)
                    .await,
                Err(Error::Conflict(Conflict::ActorMissing))
            ));
        }
    }

    #[tokio::test]
    async fn parallel_primary_changes_leave_exactly_one_primary() {
        let dir = tempfile::tempdir().unwrap();
        for store in engines(&dir).await {
            let a = actor("alice");
            store.insert_actor(&a, None, 1).await.unwrap();
            let urls: Vec<String> = (0..8).map(|i| format!("https://p{i}")).collect();
            let adds: Vec<_> = urls
                .iter()
                .map(|url| {
                    let (store, url) = (store.clone(), url.clone());
                    tokio::spawn(async move {
                        store
                            .insert_service(&row(a.id, "chat", &url, 1), true, 100)
                            .await
                    })
                })
                .collect();
            for t in adds {
                t.await.unwrap().unwrap();
            }
            let switches: Vec<_> = urls
                .iter()
                .map(|url| {
                    let (store, url) = (store.clone(), url.clone());
                    tokio::spawn(async move { store.set_primary_service(a.id, "chat", &url).await })
                })
                .collect();
            for t in switches {
                t.await.unwrap().unwrap();
            }
            let all = store.services_of(a.id, Some("chat")).await.unwrap();
            assert_eq!(all.len(), 8);
            assert_eq!(
                all.iter().filter(|s| s.primary).count(),
                1,
                "{}",
                store.engine_name()
            );
        }
    }
}

fn key_trial(id: &str, fid: &str, expires_at: i64) -> KeyTrialRow {
    KeyTrialRow {
        id: id.into(),
        fid: fid.into(),
        trial: format!("beta.test.{id}"),
        expires_at,
        created_at: expires_at - 300,
        completed_at: None,
        completion: None,
        actor_id: None,
    }
}

#[tokio::test]
async fn key_trials_are_spent_only_when_named_and_unanswered_ones_are_swept() {
    let dir = tempfile::tempdir().unwrap();
    for store in engines(&dir).await {
        let engine = store.engine_name();
        let fid = "alice@alpha.test";
        for (id, expires) in [("open-old", 1000), ("failed", 1000), ("done", 1000)] {
            store
                .insert_key_trial(&key_trial(id, fid, expires))
                .await
                .unwrap();
        }
        store
            .insert_key_trial(&key_trial("open-new", fid, 5000))
            .await
            .unwrap();
        // Spent by id (and text), or by text alone; a wrong text spends nothing.
        let by_id = TrialRef::Id {
            id: "failed",
            trial: None,
        };
        assert!(
            store
                .claim_key_trial(fid, by_id, 900)
                .await
                .unwrap()
                .is_some()
        );
        let wrong_text = TrialRef::Id {
            id: "done",
            trial: Some("beta.test.other"),
        };
        assert!(
            store
                .claim_key_trial(fid, wrong_text, 900)
                .await
                .unwrap()
                .is_none()
        );
        let done = store
            .claim_key_trial(fid, TrialRef::Text("beta.test.done"), 900)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(done.id, "done", "{engine}");
        store
            .record_key_trial_completion("done", r#"{"signature":"00","serialNumber":"1"}"#)
            .await
            .unwrap();

        // At 2000: the expired open trial and the expired failed answer go; the completed
        // one stays public, the unexpired one stays usable.
        assert_eq!(
            store.delete_unanswered_key_trials(2000).await.unwrap(),
            2,
            "{engine}"
        );
        assert_eq!(
            store.delete_unanswered_key_trials(2000).await.unwrap(),
            0,
            "{engine}"
        );
        let public = store
            .public_key_trials(fid, &KeyTrialQuery::default(), 2000)
            .await
            .unwrap();
        assert_eq!(public.len(), 1, "{engine}");
        assert_eq!(public[0].trial.id, "done");
        let open = TrialRef::Text("beta.test.open-new");
        assert!(
            store
                .claim_key_trial(fid, open, 2000)
                .await
                .unwrap()
                .is_some()
        );
    }
}

#[tokio::test]
async fn proof_trials_take_many_answers_and_are_never_spent_by_a_sign_in() {
    let dir = tempfile::tempdir().unwrap();
    for store in engines(&dir).await {
        let engine = store.engine_name();
        let alice = actor("alice");
        store.insert_actor(&alice, None, 1).await.unwrap();
        let fid = "alice@localhost";
        for (id, created) in [("older", 700), ("newer", 800), ("unanswered", 600)] {
            store
                .insert_key_trial(&KeyTrialRow {
                    created_at: created,
                    actor_id: Some(alice.id),
                    ..key_trial(id, fid, 1000)
                })
                .await
                .unwrap();
        }
        // The newest open one, or the one named; none once expired, none of another actor.
        let newest = store
            .proof_trial(alice.id, None, 900)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(newest.id, "newer", "{engine}");
        let named = store
            .proof_trial(alice.id, Some("older"), 900)
            .await
            .unwrap();
        assert_eq!(named.unwrap().id, "older", "{engine}");
        assert_eq!(store.proof_trial(alice.id, None, 1001).await.unwrap(), None);
        assert_eq!(
            store.proof_trial(alice.id + 1, None, 900).await.unwrap(),
            None
        );
        // A sign-in cannot spend a proof trial.
        assert_eq!(
            store
                .claim_key_trial(fid, TrialRef::Text("beta.test.newer"), 900)
                .await
                .unwrap(),
            None
        );
        // Answers for several keys, recorded again without harm.
        let answers = vec![(5, "aa".to_owned()), (7, "bb".to_owned())];
        for _ in 0..2 {
            store
                .record_proof_completions("newer", &answers, 910)
                .await
                .unwrap();
        }
        assert!(
            store
                .public_key_trials(fid, &KeyTrialQuery::default(), 900)
                .await
                .unwrap()
                .is_empty(),
            "public only once expired"
        );
        // Expired: the answered ones are public with every answer; the others are swept.
        assert_eq!(
            store.delete_unanswered_key_trials(2000).await.unwrap(),
            2,
            "{engine}"
        );
        let public = store
            .public_key_trials(fid, &KeyTrialQuery::default(), 2000)
            .await
            .unwrap();
        assert_eq!(public.len(), 1, "{engine}");
        assert_eq!(public[0].trial.id, "newer");
        assert_eq!(public[0].trial.completed_at, Some(910));
        assert_eq!(public[0].completions, answers);
    }
}

#[tokio::test]
async fn concurrent_writes_commit_together_and_a_refused_one_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    for store in engines(&dir).await {
        let engine = store.engine_name();
        store.insert_actor(&actor("taken"), None, 1).await.unwrap();
        let names: Vec<String> = (0..64)
            .map(|i| {
                if i == 17 {
                    "taken".into()
                } else {
                    format!("n{i}")
                }
            })
            .collect();
        let writes = names.iter().map(|n| {
            let store = store.clone();
            let a = actor(n);
            tokio::spawn(async move { store.insert_actor(&a, None, 1).await })
        });
        let mut refused = 0;
        for w in writes.collect::<Vec<_>>() {
            match w.await.unwrap() {
                Ok(()) => {}
                Err(Error::Unique(_)) => refused += 1,
                Err(e) => panic!("{engine}: {e}"),
            }
        }
        assert_eq!(refused, 1, "{engine}");
        for n in names.iter().filter(|n| *n != "taken") {
            assert!(
                store.actor_by_name(n).await.unwrap().is_some(),
                "{engine}: {n} lost"
            );
        }
    }
}

#[tokio::test]
async fn concurrent_appends_to_one_stream_take_every_position_once() {
    let dir = tempfile::tempdir().unwrap();
    for store in engines(&dir).await {
        let engine = store.engine_name();
        let appends = (0..100).map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .append_event(&NewEvent {
                        stream_id: 4242,
                        namespace: "chat".into(),
                        op: i,
                        payload: "{}".into(),
                        created_at: 1,
                        ..Default::default()
                    })
                    .await
            })
        });
        let mut positions = Vec::new();
        for a in appends.collect::<Vec<_>>() {
            positions.push(a.await.unwrap().unwrap());
        }
        positions.sort_unstable();
        assert_eq!(positions, (1..=100).collect::<Vec<i64>>(), "{engine}");
        let rows = store.events_after(4242, 0, 1000).await.unwrap();
        assert_eq!(rows.len(), 100, "{engine}");
        assert!(
            rows.windows(2).all(|w| w[1].seq == w[0].seq + 1),
            "{engine}"
        );
    }
}
