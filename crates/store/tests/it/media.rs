//! RawR resources and their blobs on both engines: unique IDs, the quota, one blob per
//! content counted by its resources, and the objects a deletion frees.

use fugue_store::{
    AttachmentMeta, Conflict, Error, MessageVersionRow, NewEvent, NewResource, ResourceOrder,
    Store, Thumbnail,
};

use super::chat::{ev, guild, message};
use super::{actor, engines};

fn new(rid: &str, actor_id: i64, hash: u8, size: i64, at: i64) -> NewResource {
    NewResource {
        rid: rid.into(),
        actor_id,
        hash: vec![hash; 32],
        size,
        content_type: "text/plain".into(),
        private: true,
        public: false,
        allowlist: vec!["bob@b.example".into(), "c.example".into()],
        denylist: vec![],
        created_at: at,
        object_key: format!("key-{rid}"),
        attachment: None,
    }
}

async fn objects(store: &Store, keys: &[&str]) -> Vec<bool> {
    let mut out = Vec::new();
    for key in keys {
        out.push(store.object_in_use(key).await.unwrap());
    }
    out
}

#[tokio::test]
async fn resources_share_blobs_keep_the_quota_and_free_their_objects() {
    let dir = tempfile::tempdir().unwrap();
    for store in engines(&dir).await {
        let engine = store.engine_name();
        let alice = actor("alice");
        let bob = actor("bob");
        store.insert_actor(&alice, None, 1).await.unwrap();
        store.insert_actor(&bob, None, 1).await.unwrap();

        let stored = store
            .insert_resource(&new("a", alice.id, 1, 100, 10), 250)
            .await
            .unwrap();
        assert_eq!(stored.object_key, "key-a", "{engine}");
        // The same content again: the existing object holds it.
        let again = store
            .insert_resource(&new("b", bob.id, 1, 100, 11), 250)
            .await
            .unwrap();
        assert_eq!(again.object_key, "key-a", "{engine}");
        // A taken ID, whoever asks.
        assert!(matches!(
            store
                .insert_resource(&new("a", bob.id, 2, 1, 12), 250)
                .await,
            Err(Error::Unique(_))
        ));
        // The quota counts every resource of the actor in full.
        store
            .insert_resource(&new("c", alice.id, 3, 150, 13), 250)
            .await
            .unwrap();
        assert!(matches!(
            store
                .insert_resource(&new("d", alice.id, 4, 1, 14), 250)
                .await,
            Err(Error::Conflict(Conflict::QuotaExceeded))
        ));
        assert_eq!(
            store.resource_usage(alice.id).await.unwrap(),
            250,
            "{engine}"
        );
        assert_eq!(store.resource_usage(bob.id).await.unwrap(), 100);
        // Refused inserts left no blob behind.
        assert_eq!(
            objects(&store, &["key-a", "key-b", "key-c", "key-d"]).await,
            [true, false, true, false],
            "{engine}"
        );

        let a = store.resource("a").await.unwrap().unwrap();
        assert_eq!(
            (
                a.owner.as_str(),
                a.size,
                a.private,
                a.allowlist.len(),
                a.object_key.as_str()
            ),
            ("alice", 100, true, 2, "key-a"),
            "{engine}"
        );
        assert!(store.resource("zz").await.unwrap().is_none());

        let newest: Vec<_> = store
            .resources_of(alice.id, ResourceOrder::NewestFirst, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.rid)
            .collect();
        assert_eq!(newest, ["c", "a"], "{engine}");
        let smallest = store
            .resources_of(alice.id, ResourceOrder::SizeAsc, 1)
            .await
            .unwrap();
        assert_eq!(smallest[0].rid, "a");

        store
            .set_resource_access("a", alice.id, false, true, &[], &["eve@e.example".into()])
            .await
            .unwrap();
        let a = store.resource("a").await.unwrap().unwrap();
        assert!(a.public && !a.private && a.allowlist.is_empty());
        assert_eq!(a.denylist, ["eve@e.example"]);
        assert!(matches!(
            store
                .set_resource_access("a", bob.id, false, false, &[], &[])
                .await,
            Err(Error::Conflict(Conflict::ResourceMissing))
        ));

        // Deleting: the shared blob stays while a resource uses it.
        assert!(
            store
                .delete_resource("a", alice.id)
                .await
                .unwrap()
                .is_empty(),
            "{engine}"
        );
        assert!(matches!(
            store.delete_resource("b", alice.id).await,
            Err(Error::Conflict(Conflict::ResourceMissing))
        ));
        assert_eq!(
            store.delete_resource("b", bob.id).await.unwrap(),
            ["key-a"],
            "{engine}"
        );
        assert_eq!(objects(&store, &["key-a", "key-c"]).await, [false, true]);
        // The content again gets a new object: the freed key is never named again.
        let fresh = store
            .insert_resource(&new("e", bob.id, 1, 100, 15), 250)
            .await
            .unwrap();
        assert_eq!(fresh.object_key, "key-e", "{engine}");
    }
}

#[tokio::test]
async fn attachments_are_linked_to_the_messages_that_name_them() {
    let dir = tempfile::tempdir().unwrap();
    for store in engines(&dir).await {
        let engine = store.engine_name();
        let f = guild(&store, "owner").await;
        let meta = AttachmentMeta {
            filename: Some("cat.png".into()),
            width: Some(1000),
            height: Some(600),
            placeholder: Some("LEHV6nWB2yk8pyo0adR*.7kCMdnj".into()),
            thumbnail: Some(Thumbnail {
                object_key: "thumb-p".into(),
                content_type: "image/jpeg".into(),
                size: 9,
            }),
        };
        let photo = NewResource {
            attachment: Some(meta.clone()),
            ..new("p", f.owner, 7, 100, 10)
        };
        store.insert_resource(&photo, 1000).await.unwrap();
        store
            .insert_resource(&new("plain", f.owner, 8, 5, 10), 1000)
            .await
            .unwrap();
        let row = store.attachment("p").await.unwrap().unwrap();
        assert_eq!(
            (row.resource.rid.as_str(), &row.meta),
            ("p", &meta),
            "{engine}"
        );
        // A resource that is no attachment is not one.
        assert_eq!(store.attachment("plain").await.unwrap(), None, "{engine}");
        assert!(store.object_in_use("thumb-p").await.unwrap(), "{engine}");
        assert!(
            store
                .object_keys()
                .await
                .unwrap()
                .contains(&"thumb-p".to_owned())
        );

        // A send links; one refused (a repeated nonce) links nothing more.
        let m = message(&f, f.owner, "n1", "look");
        let about = |id, op| NewEvent {
            ref_id: Some(id),
            ..ev(f.guild.id, op)
        };
        let rids = vec!["p".to_owned()];
        store
            .insert_message_attaching(&m, &rids, &about(m.id, 0), None, None)
            .await
            .unwrap();
        let other = message(&f, f.owner, "n2", "no files");
        store
            .insert_message(&other, &about(other.id, 0), None, None)
            .await
            .unwrap();
        assert_eq!(
            store.attachment_channels("p", 10).await.unwrap(),
            vec![f.channel.id],
            "{engine}"
        );
        let (first, last) = (m.id.min(other.id), m.id.max(other.id));
        let linked = store
            .attachments_of_messages(f.channel.id, first, last)
            .await
            .unwrap();
        assert_eq!(linked.len(), 1, "{engine}");
        assert_eq!(
            (linked[0].0, linked[0].1.resource.rid.as_str()),
            (m.id, "p")
        );

        // An edit that names it too links the other message; a deletion unlinks one.
        let v2 = MessageVersionRow {
            message_id: other.id,
            version: 2,
            nonce: "n3".into(),
            content: "{}".into(),
            signature: "cd".into(),
            cert_pem: "PEM".into(),
            cert_serial: 5,
            edit_of: Some(other.id),
            created_at: 25,
        };
        store
            .edit_message_attaching(&v2, &rids, &about(other.id, 1))
            .await
            .unwrap();
        let linked = store
            .attachments_of_messages(f.channel.id, first, last)
            .await
            .unwrap();
        assert_eq!(linked.len(), 2, "{engine}");
        store
            .delete_message(m.id, f.guild.id, f.owner, 30, "{}", &about(m.id, 2))
            .await
            .unwrap();
        store
            .delete_message(other.id, f.guild.id, f.owner, 30, "{}", &about(other.id, 2))
            .await
            .unwrap();
        assert!(
            store.attachment_channels("p", 10).await.unwrap().is_empty(),
            "{engine}"
        );

        // Deleting the resource frees its thumbnail with its blob.
        let mut freed = store.delete_resource("p", f.owner).await.unwrap();
        freed.sort();
        assert_eq!(
            freed,
            vec!["key-p".to_owned(), "thumb-p".to_owned()],
            "{engine}"
        );
        assert_eq!(store.attachment("p").await.unwrap(), None, "{engine}");
        assert!(!store.object_in_use("thumb-p").await.unwrap(), "{engine}");
    }
}
