//! Conversation persistence on both engines: one DM per pair, memberships that begin at
//! their event's position, the member limit, ownership that moves only from its holder, and
//! messages that only open conversations' members can store.

use fugue_store::{Conflict, ConversationRow, Error, MessageRow, NewEvent, Sent, Store};

use super::chat::message_in;
use super::{actor, engines, id};

fn ev(stream_id: i64, op: i64) -> NewEvent {
    NewEvent {
        stream_id,
        namespace: "fugue-chat".into(),
        op,
        payload: format!("{{\"op\":{op}}}"),
        created_at: 10,
        ..Default::default()
    }
}

async fn actors(store: &Store, names: &[&str]) -> Vec<i64> {
    let mut out = Vec::new();
    for n in names {
        let a = actor(n);
        store.insert_actor(&a, None, 1).await.unwrap();
        out.push(a.id);
    }
    out
}

fn row(kind: i64, owner: Option<i64>, pair_key: Option<String>) -> ConversationRow {
    ConversationRow {
        id: id(),
        kind,
        name: None,
        owner_id: owner,
        pair_key,
        created_at: 10,
        closed_at: None,
        access_version: 0,
    }
}

fn message(conversation: i64, author: i64, nonce: &str) -> MessageRow {
    message_in(conversation, conversation, author, nonce, "hi")
}

#[tokio::test]
async fn a_pair_has_one_dm_and_only_its_members_post() {
    let dir = tempfile::tempdir().unwrap();
    for store in engines(&dir).await {
        let ids = actors(&store, &["alice", "bob", "eve"]).await;
        let (a, b, e) = (ids[0], ids[1], ids[2]);
        let key = format!("{}:{}", a.min(b), a.max(b));
        let dm = row(10, None, Some(key.clone()));
        let (at, joined) = store
            .create_conversation(&dm, &[a, b], &ev(dm.id, 22), &[ev(a, 20), ev(b, 20)])
            .await
            .unwrap();
        assert_eq!((at, joined.len()), (1, 2));
        let second = row(10, None, Some(key.clone()));
        assert!(matches!(
            store
                .create_conversation(&second, &[b, a], &ev(second.id, 22), &[])
                .await,
            Err(Error::Conflict(Conflict::AlreadyMember))
        ));
        assert_eq!(store.dm_of_pair(&key).await.unwrap().unwrap().id, dm.id);
        let members = store.conversation_members(dm.id).await.unwrap();
        assert_eq!(
            members
                .iter()
                .map(|m| (m.actor_id, m.since))
                .collect::<Vec<_>>(),
            vec![(a, 1), (b, 1)]
        );
        assert_eq!(store.conversations_of(b).await.unwrap(), vec![(dm.id, 1)]);

        assert!(matches!(
            store
                .insert_message(&message(dm.id, a, "n1"), &ev(dm.id, 0), None, None)
                .await,
            Ok(Sent::New(2))
        ));
        assert!(matches!(
            store
                .insert_message(&message(dm.id, e, "n1"), &ev(dm.id, 0), None, None)
                .await,
            Err(Error::Conflict(Conflict::NotAMember))
        ));
    }
}

#[tokio::test]
async fn groups_grow_to_their_limit_change_hands_and_close() {
    let dir = tempfile::tempdir().unwrap();
    for store in engines(&dir).await {
        let ids = actors(&store, &["owner", "m1", "m2", "m3"]).await;
        let (o, m1, m2, m3) = (ids[0], ids[1], ids[2], ids[3]);
        let g = row(11, Some(o), None);
        store
            .create_conversation(&g, &[o, m1], &ev(g.id, 22), &[ev(o, 20), ev(m1, 20)])
            .await
            .unwrap();
        let (at, _) = store
            .add_conversation_member(g.id, m2, 3, 11, &ev(g.id, 23), &ev(m2, 20))
            .await
            .unwrap();
        assert_eq!(at, 2, "the membership begins at its event");
        assert!(matches!(
            store
                .add_conversation_member(g.id, m3, 3, 11, &ev(g.id, 23), &ev(m3, 20))
                .await,
            Err(Error::Conflict(Conflict::ConversationFull))
        ));
        let members = store.conversation_members(g.id).await.unwrap();
        assert_eq!(
            members.iter().map(|m| m.actor_id).collect::<Vec<_>>(),
            vec![o, m1, m2],
            "longest-standing first, the creator before those named with it"
        );
        // Only the owner hands it on.
        assert!(matches!(
            store
                .transfer_conversation(g.id, m1, m2, &ev(g.id, 25))
                .await,
            Err(Error::Conflict(Conflict::NotOwner))
        ));
        store
            .remove_conversation_member(g.id, o, Some((o, Some(m1))), None, &[ev(g.id, 24)])
            .await
            .unwrap();
        assert_eq!(
            store.conversation(g.id).await.unwrap().unwrap().owner_id,
            Some(m1)
        );
        for m in [m2, m1] {
            let owner = (m == m1).then_some((m1, None));
            let closed = (m == m1).then_some(30);
            store
                .remove_conversation_member(g.id, m, owner, closed, &[ev(g.id, 24)])
                .await
                .unwrap();
        }
        let closed = store.conversation(g.id).await.unwrap().unwrap();
        assert_eq!((closed.owner_id, closed.closed_at), (None, Some(30)));
        // Closed: no one joins, nothing is posted.
        assert!(matches!(
            store
                .add_conversation_member(g.id, m3, 15, 31, &ev(g.id, 23), &ev(m3, 20))
                .await,
            Err(Error::Conflict(Conflict::ConversationMissing))
        ));
        assert!(matches!(
            store
                .insert_message(&message(g.id, m1, "late"), &ev(g.id, 0), None, None)
                .await,
            Err(Error::Conflict(Conflict::NotAMember))
        ));
    }
}
