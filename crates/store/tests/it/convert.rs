//! Converting a whole store: SQLite to PostgreSQL (when `TEST_DATABASE_URL` is set) and back
//! to SQLite, every table holding the same rows at each step — NULLs, blobs, composite keys,
//! and a table larger than one page of the copy.

use fugue_store::{
    ExportRow, KeyMaterialRow, MessageVersionRow, NewEvent, NewResource, SqliteSync, Store, Value,
};
use rand_core::{OsRng, RngCore};

use super::chat::{ev, guild, message};
use super::{actor, cert, session};

/// A server's worth of rows: accounts (one with TOTP), sessions and certificates, key
/// material, a guild with 1,200 messages (one edited), a resource, a redirect, an export, a
/// failed second factor.
async fn populate(store: &Store) {
    let mut alice = actor("alice");
    alice.totp_secret = Some("JBSWY3DPEHPK3PXP".into());
    store.insert_actor(&alice, None, 1).await.unwrap();
    store
        .open_session(&session(
            alice.id,
            "laptop",
            b"token",
            Some(cert(alice.id, "laptop")),
        ))
        .await
        .unwrap();
    store
        .insert_key_material(
            alice.id,
            &[KeyMaterialRow {
                serial: 7,
                key_data: "enc".into(),
                algorithms: vec!["1.2".into()],
                created_at: 5,
            }],
            10,
        )
        .await
        .unwrap();
    store
        .begin_sensitive_attempt(alice.id, 1, 100, 0, 3)
        .await
        .unwrap();
    let f = guild(store, "owner").await;
    let mut first = None;
    for i in 0..1200 {
        let m = message(&f, f.owner, &format!("n{i}"), &format!("message {i}"));
        let e = NewEvent {
            ref_id: Some(m.id),
            ..ev(f.guild.id, 0)
        };
        store.insert_message(&m, &e, None, None).await.unwrap();
        first.get_or_insert(m.id);
    }
    let first = first.unwrap();
    store
        .edit_message(
            &MessageVersionRow {
                message_id: first,
                version: 2,
                nonce: "e1".into(),
                content: "{}".into(),
                signature: "cd".into(),
                cert_pem: "PEM-9".into(),
                cert_serial: 9,
                edit_of: Some(first),
                created_at: 25,
            },
            &NewEvent {
                ref_id: Some(first),
                ..ev(f.guild.id, 1)
            },
        )
        .await
        .unwrap();
    store
        .insert_resource(
            &NewResource {
                rid: "photo.png".into(),
                actor_id: alice.id,
                hash: vec![9; 32],
                size: 3,
                content_type: "image/png".into(),
                private: false,
                public: true,
                allowlist: vec![],
                denylist: vec!["eve@e.example".into()],
                created_at: 50,
                object_key: "obj".into(),
                attachment: None,
            },
            1 << 30,
        )
        .await
        .unwrap();
    store
        .confirm_redirect_source(alice.id, "alice@new.example", 60)
        .await
        .unwrap();
    store
        .insert_export(&ExportRow {
            id: "e1".into(),
            actor_id: alice.id,
            serials: "7".into(),
            state: "building".into(),
            object_key: None,
            size: None,
            file_name: "export1-alice@x.tar.gz".into(),
            error: None,
            created_at: 70,
            finished_at: None,
        })
        .await
        .unwrap();
}

/// Every table's rows, by the schema's table order; each table's rows sorted (the engines
/// order text keys by their own collations) and NULLs alike (SQLite's have no type).
async fn dump(store: &Store) -> Vec<(String, Vec<Vec<Value>>)> {
    let mut out = Vec::new();
    for table in fugue_store::tables() {
        let mut rows: Vec<Vec<Value>> = store
            .rows_of(&table)
            .await
            .unwrap()
            .into_iter()
            .map(|r| {
                r.0.into_iter()
                    .map(|v| match v {
                        Value::Text(None) | Value::Blob(None) => Value::Int(None),
                        v => v,
                    })
                    .collect()
            })
            .collect();
        rows.sort_by_key(|r| format!("{r:?}"));
        out.push((table, rows));
    }
    out
}

/// Asserts that two dumps hold the same rows, naming the first table that differs.
#[track_caller]
fn same(a: &[(String, Vec<Vec<Value>>)], b: &[(String, Vec<Vec<Value>>)], what: &str) {
    assert_eq!(a.len(), b.len());
    for ((table, x), (_, y)) in a.iter().zip(b) {
        assert_eq!(x.len(), y.len(), "{what}: rows of {table}");
        if let Some((r, s)) = x.iter().zip(y).find(|(r, s)| r != s) {
            panic!("{what}: {table} differs: {r:?} against {s:?}");
        }
    }
}

#[tokio::test]
async fn a_store_converts_to_the_other_engine_and_back_with_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let source = Store::open_sqlite(&dir.path().join("a.db"), SqliteSync::Normal)
        .await
        .unwrap();
    populate(&source).await;
    let before = dump(&source).await;
    let messages = before.iter().find(|(t, _)| t == "messages").unwrap();
    assert_eq!(messages.1.len(), 1200, "more than one page");

    let middle = match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => {
            let schema = format!("s_{:016x}", OsRng.next_u64());
            Store::open_postgres(&url, Some(&schema), 4).await.unwrap()
        }
        _ => Store::open_sqlite(&dir.path().join("b.db"), SqliteSync::Normal)
            .await
            .unwrap(),
    };
    let mut heard = Vec::new();
    let counts = source
        .copy_into(&middle, |table, n| heard.push((table.to_owned(), n)))
        .await
        .unwrap();
    assert_eq!(counts, heard);
    assert!(counts.contains(&("messages".to_owned(), 1200)));
    same(&dump(&middle).await, &before, middle.engine_name());

    let back = Store::open_sqlite(&dir.path().join("c.db"), SqliteSync::Normal)
        .await
        .unwrap();
    middle.copy_into(&back, |_, _| {}).await.unwrap();
    same(&dump(&back).await, &before, "back on SQLite");
    assert!(back.actor_by_name("alice").await.unwrap().is_some());

    // Into a store that holds anything: refused, nothing written.
    let err = source.copy_into(&back, |_, _| {}).await.unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");
    same(&dump(&back).await, &before, "after a refused copy");
}
