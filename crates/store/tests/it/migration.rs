//! Migrations on both engines: redirects confirmed by both sides in either order, one target
//! at a time; the keys an actor signed its messages with.

use fugue_store::{Conflict, Error, MessageVersionRow, NewEvent, RedirectRow, Store};

use super::chat::{ev, guild, message};

/// The redirect of the actor `old`.
async fn redirect(store: &Store) -> Option<RedirectRow> {
    let found = store.redirect_of_name("old").await.unwrap();
    // The source is not deleted: its deletion time is none.
    assert!(found.as_ref().is_none_or(|(_, deleted)| deleted.is_none()));
    found.map(|(r, _)| r)
}

#[tokio::test]
async fn a_redirect_is_confirmed_by_both_sides_in_either_order() {
    let dir = tempfile::tempdir().unwrap();
    for store in super::engines(&dir).await {
        let engine = store.engine_name();
        let f = guild(&store, "old").await;
        let src = f.owner;
        assert_eq!(redirect(&store).await, None);

        // Source first, then target.
        let r = store
            .confirm_redirect_source(src, "new@b.example", 10)
            .await
            .unwrap();
        assert!(!r.confirmed(), "{engine}");
        let r = store
            .confirm_redirect_target(src, "new@b.example", 11)
            .await
            .unwrap();
        assert!(r.confirmed(), "{engine}");
        assert_eq!(
            (r.source_confirmed_at, r.target_confirmed_at),
            (Some(10), Some(11))
        );
        // Another target cannot confirm; naming another target drops the old confirmation.
        assert!(matches!(
            store
                .confirm_redirect_target(src, "other@c.example", 12)
                .await,
            Err(Error::Conflict(Conflict::RedirectElsewhere))
        ));
        let r = store
            .confirm_redirect_source(src, "other@c.example", 13)
            .await
            .unwrap();
        assert_eq!(
            (r.target_fid.as_str(), r.target_confirmed_at),
            ("other@c.example", None)
        );
        // Naming the same target again keeps its confirmation.
        store
            .confirm_redirect_target(src, "other@c.example", 14)
            .await
            .unwrap();
        let r = store
            .confirm_redirect_source(src, "other@c.example", 15)
            .await
            .unwrap();
        assert!(r.confirmed(), "{engine}");

        // The target withdraws: pending again; the source removes it: gone.
        assert!(
            store
                .withdraw_redirect_target(src, "other@c.example")
                .await
                .unwrap()
        );
        assert!(
            !store
                .withdraw_redirect_target(src, "other@c.example")
                .await
                .unwrap()
        );
        assert!(!redirect(&store).await.unwrap().confirmed());
        assert!(!store.remove_redirect(src, "new@b.example").await.unwrap());
        assert!(store.remove_redirect(src, "other@c.example").await.unwrap());
        assert_eq!(redirect(&store).await, None);

        // Target first: pending until the source names it; withdrawn alone, it goes.
        store
            .confirm_redirect_target(src, "new@b.example", 20)
            .await
            .unwrap();
        assert!(
            store
                .withdraw_redirect_target(src, "new@b.example")
                .await
                .unwrap()
        );
        assert_eq!(redirect(&store).await, None, "{engine}");
        store
            .confirm_redirect_target(src, "new@b.example", 21)
            .await
            .unwrap();
        let r = store
            .confirm_redirect_source(src, "new@b.example", 22)
            .await
            .unwrap();
        assert!(r.confirmed(), "{engine}");
    }
}

#[tokio::test]
async fn the_keys_an_actor_signed_with_include_earlier_versions() {
    let dir = tempfile::tempdir().unwrap();
    for store in super::engines(&dir).await {
        let engine = store.engine_name();
        let f = guild(&store, "writer").await;
        assert!(store.signing_serials(f.owner).await.unwrap().is_empty());
        let m = message(&f, f.owner, "n1", "hi");
        let about = |op| NewEvent {
            ref_id: Some(m.id),
            ..ev(f.guild.id, op)
        };
        store
            .insert_message(&m, &about(0), None, None)
            .await
            .unwrap();
        // Edited with a newer certificate: both keys signed a version of it.
        let v2 = MessageVersionRow {
            message_id: m.id,
            version: 2,
            nonce: "n2".into(),
            content: "{}".into(),
            signature: "cd".into(),
            cert_pem: "PEM-9".into(),
            cert_serial: 9,
            edit_of: Some(m.id),
            created_at: 25,
        };
        store.edit_message(&v2, &about(1)).await.unwrap();
        assert_eq!(
            store.signing_serials(f.owner).await.unwrap(),
            vec![5, 9],
            "{engine}"
        );
        assert_eq!(
            store.signing_cert(f.owner, 5).await.unwrap().as_deref(),
            Some("PEM"),
            "{engine}"
        );
        assert_eq!(
            store.signing_cert(f.owner, 9).await.unwrap().as_deref(),
            Some("PEM-9")
        );
        assert_eq!(store.signing_cert(f.owner, 6).await.unwrap(), None);
        assert_eq!(store.signing_cert(f.owner + 1, 5).await.unwrap(), None);
    }
}

#[tokio::test]
async fn a_grant_names_what_may_be_re_signed_and_a_re_signed_message_keeps_its_old_variant() {
    let dir = tempfile::tempdir().unwrap();
    for store in super::engines(&dir).await {
        let engine = store.engine_name();
        let f = guild(&store, "old").await;
        let new = super::actor("new");
        store.insert_actor(&new, None, 1).await.unwrap();
        let about = |id, op| NewEvent {
            ref_id: Some(id),
            ..ev(f.guild.id, op)
        };
        // Two messages signed with certificate 5, one with 6.
        let mut sent = Vec::new();
        for (nonce, serial) in [("a", 5), ("b", 5), ("c", 6)] {
            let m = fugue_store::MessageRow {
                cert_serial: serial,
                ..message(&f, f.owner, nonce, nonce)
            };
            store
                .insert_message(&m, &about(m.id, 0), None, None)
                .await
                .unwrap();
            sent.push(m);
        }
        let grant = fugue_store::GrantRow {
            old_actor_id: f.owner,
            new_fid: "new@localhost".into(),
            serials: vec![5],
            allowed_keys: vec!["ab".repeat(32)],
            expires_at: 100,
            created_at: 10,
        };
        store.insert_resign_grant(&grant).await.unwrap();
        assert_eq!(
            store.resign_grants_to("new@localhost", 50).await.unwrap(),
            vec![grant.clone()]
        );
        assert!(
            store
                .resign_grants_to("new@localhost", 100)
                .await
                .unwrap()
                .is_empty(),
            "{engine}"
        );
        let due = store
            .messages_to_resign(f.owner, "new@localhost", None, 10)
            .await
            .unwrap();
        let mut nonces: Vec<&str> = due.iter().map(|m| m.nonce.as_str()).collect();
        nonces.sort_unstable();
        assert_eq!(nonces, ["a", "b"], "{engine}");
        assert!(due[0].id < due[1].id, "oldest (lowest id) first");
        assert!(
            store
                .messages_to_resign(f.owner, "new@localhost", Some(6), 10)
                .await
                .unwrap()
                .is_empty()
        );

        // Re-signed: the new author and signature; the old variant stays as version 1.
        let resigned = fugue_store::MessageRow {
            author_id: new.id,
            signature: "ee".into(),
            cert_pem: "NEW-PEM".into(),
            cert_serial: 9,
            ..sent[0].clone()
        };
        store
            .resign_message(&resigned, f.owner, &about(sent[0].id, 1))
            .await
            .unwrap();
        let now = store.message(sent[0].id).await.unwrap().unwrap();
        assert_eq!(
            (now.author_id, now.version, now.cert_serial),
            (new.id, 2, 9)
        );
        assert_eq!((now.signature.as_str(), now.nonce.as_str()), ("ee", "a"));
        let versions = store.message_versions(sent[0].id).await.unwrap();
        assert_eq!(versions.len(), 2, "{engine}");
        assert_eq!(
            (versions[0].signature.as_str(), versions[0].cert_serial),
            ("ab", 5)
        );
        // Once only: it is no longer the old author's.
        assert!(matches!(
            store
                .resign_message(&resigned, f.owner, &about(sent[0].id, 1))
                .await,
            Err(Error::Conflict(Conflict::MessageChanged))
        ));
        let due = store
            .messages_to_resign(f.owner, "new@localhost", None, 10)
            .await
            .unwrap();
        assert_eq!(due.len(), 1, "{engine}");

        // A new grant replaces the old; ended, it grants nothing.
        store
            .insert_resign_grant(&fugue_store::GrantRow {
                serials: vec![6],
                ..grant.clone()
            })
            .await
            .unwrap();
        assert_eq!(
            store.resign_grants_to("new@localhost", 50).await.unwrap()[0].serials,
            vec![6]
        );
        assert!(
            store
                .delete_resign_grant(f.owner, "new@localhost")
                .await
                .unwrap()
        );
        assert!(
            !store
                .delete_resign_grant(f.owner, "new@localhost")
                .await
                .unwrap()
        );
        assert!(
            store
                .messages_to_resign(f.owner, "new@localhost", None, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }
}

#[tokio::test]
async fn exports_and_imports_are_recorded_and_pages_of_signed_messages_follow_ids() {
    use fugue_store::{ExportRow, ImportRow};
    let dir = tempfile::tempdir().unwrap();
    for store in super::engines(&dir).await {
        let engine = store.engine_name();
        let f = guild(&store, "mover").await;
        let mut ids = Vec::new();
        for (i, serial) in [5, 5, 9, 5].into_iter().enumerate() {
            let m = fugue_store::MessageRow {
                cert_serial: serial,
                ..message(&f, f.owner, &format!("n{i}"), "hi")
            };
            let e = NewEvent {
                ref_id: Some(m.id),
                ..ev(f.guild.id, 0)
            };
            store.insert_message(&m, &e, None, None).await.unwrap();
            ids.push((m.id, serial));
        }
        let mut signed_5: Vec<i64> = ids
            .iter()
            .filter(|(_, s)| *s == 5)
            .map(|(i, _)| *i)
            .collect();
        signed_5.sort_unstable();
        let first = store.messages_signed_with(f.owner, 5, 0, 2).await.unwrap();
        assert_eq!(
            first.iter().map(|m| m.id).collect::<Vec<_>>(),
            signed_5[..2],
            "{engine}"
        );
        let rest = store
            .messages_signed_with(f.owner, 5, first[1].id, 2)
            .await
            .unwrap();
        assert_eq!(rest.iter().map(|m| m.id).collect::<Vec<_>>(), signed_5[2..]);
        assert!(
            store
                .messages_signed_with(f.owner, 7, 0, 10)
                .await
                .unwrap()
                .is_empty()
        );

        let export = ExportRow {
            id: "e1".into(),
            actor_id: f.owner,
            serials: "5,9".into(),
            state: "building".into(),
            object_key: None,
            size: None,
            file_name: "export1-mover@x.tar.gz".into(),
            error: None,
            created_at: 100,
            finished_at: None,
        };
        store.insert_export(&export).await.unwrap();
        assert_eq!(
            store.latest_export(f.owner, "5,9", 50).await.unwrap(),
            Some(export.clone())
        );
        assert_eq!(store.latest_export(f.owner, "5", 50).await.unwrap(), None);
        assert_eq!(
            store.latest_export(f.owner, "5,9", 101).await.unwrap(),
            None
        );
        assert!(!store.object_in_use("obj").await.unwrap());
        assert!(store.finish_export("e1", "obj", 42, 110).await.unwrap());
        assert!(!store.finish_export("gone", "obj2", 1, 110).await.unwrap());
        let ready = store
            .latest_export(f.owner, "5,9", 0)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                ready.state.as_str(),
                ready.object_key.as_deref(),
                ready.size,
                ready.finished_at
            ),
            ("ready", Some("obj"), Some(42), Some(110)),
            "{engine}"
        );
        assert!(
            store.object_in_use("obj").await.unwrap(),
            "an export's object is named"
        );
        store.fail_export("e1", "disk full", 120).await.unwrap();
        let failed = store
            .latest_export(f.owner, "5,9", 0)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (failed.state.as_str(), failed.error.as_deref()),
            ("failed", Some("disk full"))
        );
        // Old ones, or all of an actor's, are dropped.
        assert!(store.exports_to_drop(100, None).await.unwrap().is_empty());
        assert_eq!(store.exports_to_drop(101, None).await.unwrap().len(), 1);
        assert_eq!(
            store.exports_to_drop(0, Some(f.owner)).await.unwrap().len(),
            1
        );
        store.delete_export("e1").await.unwrap();
        assert_eq!(store.latest_export(f.owner, "5,9", 0).await.unwrap(), None);

        for (id, at) in [("i1", 200), ("i2", 300)] {
            store
                .insert_import(&ImportRow {
                    id: id.into(),
                    actor_id: f.owner,
                    state: "running".into(),
                    messages: 0,
                    resources: 0,
                    report: "[]".into(),
                    created_at: at,
                    finished_at: None,
                })
                .await
                .unwrap();
        }
        store
            .finish_import(&ImportRow {
                id: "i1".into(),
                actor_id: 0,
                state: "done".into(),
                messages: 3,
                resources: 1,
                report: "[\"a note\"]".into(),
                created_at: 0,
                finished_at: Some(250),
            })
            .await
            .unwrap();
        let imports = store.imports_of(f.owner, 10).await.unwrap();
        assert_eq!(
            imports.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
            ["i2", "i1"],
            "newest first"
        );
        assert_eq!(
            (
                imports[1].state.as_str(),
                imports[1].messages,
                imports[1].resources
            ),
            ("done", 3, 1)
        );
        assert_eq!(imports[1].report, "[\"a note\"]");
        assert_eq!(
            (imports[1].created_at, imports[1].finished_at),
            (200, Some(250))
        );
        assert_eq!(store.imports_of(f.owner, 1).await.unwrap().len(), 1);
        // Still running long after it began: its node stopped.
        assert_eq!(
            store
                .fail_stale_imports(300, 900, "[\"stopped\"]")
                .await
                .unwrap(),
            0,
            "i2 began at 300"
        );
        assert_eq!(
            store
                .fail_stale_imports(301, 900, "[\"stopped\"]")
                .await
                .unwrap(),
            1
        );
        let i2 = store.imports_of(f.owner, 1).await.unwrap().remove(0);
        assert_eq!(
            (i2.state.as_str(), i2.report.as_str(), i2.finished_at),
            ("failed", "[\"stopped\"]", Some(900))
        );
    }
}
