//! Reactions, pins, read markers with unread and mention counts, presence rows and profiles
//! on both engines.

use fugue_store::{Conflict, Error, ProfileRow, ReactionChange, ReactionRow, Sent, Store};

use super::chat::{Fixture, ev, guild, message};
use super::{actor, engines};

async fn sent(store: &Store, f: &Fixture, author: i64, nonce: &str, text: &str) -> i64 {
    sent_as(store, f, super::id(), author, nonce, text).await
}

async fn sent_as(store: &Store, f: &Fixture, id: i64, author: i64, nonce: &str, text: &str) -> i64 {
    let m = fugue_store::MessageRow {
        id,
        ..message(f, author, nonce, text)
    };
    match store
        .insert_message(&m, &ev(f.guild.id, 0), None, None)
        .await
        .unwrap()
    {
        Sent::New(_) => m.id,
        Sent::Existing(_) => panic!("a new nonce"),
    }
}

fn reaction(f: &Fixture, message_id: i64, actor_id: i64, emoji: &str) -> ReactionRow {
    ReactionRow {
        message_id,
        emoji: emoji.into(),
        actor_id,
        actor_name: String::new(),
        channel_id: f.channel.id,
        nonce: "n".into(),
        signature: "ab".into(),
        cert_pem: "PEM".into(),
        cert_serial: 5,
        created_at: 20,
    }
}

#[tokio::test]
async fn reactions_and_pins_change_once_and_pins_stop_at_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    for store in engines(&dir).await {
        let f = guild(&store, "owner").await;
        let m1 = sent(&store, &f, f.owner, "a", "one").await;
        let m2 = sent(&store, &f, f.owner, "b", "two").await;
        let g = f.guild.id;

        let seq = store
            .add_reaction(&reaction(&f, m1, f.owner, "👍"), &ev(g, 20))
            .await
            .unwrap();
        // The same change again (its nonce used), or the same reaction under a new nonce:
        // nothing changes, and only the second leaves the nonce unused.
        assert!(matches!(
            store
                .add_reaction(&reaction(&f, m1, f.owner, "👍"), &ev(g, 20))
                .await,
            Err(Error::Conflict(Conflict::NonceUsed))
        ));
        let renewed = ReactionRow {
            nonce: "n2".into(),
            ..reaction(&f, m1, f.owner, "👍")
        };
        assert!(matches!(
            store.add_reaction(&renewed, &ev(g, 20)).await,
            Err(Error::Conflict(Conflict::Unchanged))
        ));
        assert_eq!(store.stream_head(g).await.unwrap(), seq, "no second event");
        assert_eq!(
            store.reaction_nonce(m1, f.owner, "n").await.unwrap(),
            Some(("👍".to_owned(), true, true))
        );
        assert_eq!(store.reaction_nonce(m1, f.owner, "n2").await.unwrap(), None);
        let who = store.reactions_with(m1, "👍", 10).await.unwrap();
        assert_eq!(who.len(), 1);
        assert_eq!(who[0].actor_name, "owner");
        let page = store
            .reactions_between(f.channel.id, m1.min(m2), m1.max(m2))
            .await
            .unwrap();
        assert_eq!(page.len(), 1);
        let removal = |nonce| ReactionChange {
            message_id: m1,
            channel_id: f.channel.id,
            actor_id: f.owner,
            emoji: "👍",
            nonce,
        };
        store
            .remove_reaction(&removal("r1"), &ev(g, 21))
            .await
            .unwrap();
        assert!(matches!(
            store.remove_reaction(&removal("r2"), &ev(g, 21)).await,
            Err(Error::Conflict(Conflict::Unchanged))
        ));
        assert!(matches!(
            store.remove_reaction(&removal("r1"), &ev(g, 21)).await,
            Err(Error::Conflict(Conflict::NonceUsed))
        ));
        assert_eq!(
            store.reaction_nonce(m1, f.owner, "r1").await.unwrap(),
            Some(("👍".to_owned(), false, false))
        );
        // The old addition, after the removal: refused, the reaction stays gone.
        assert!(matches!(
            store
                .add_reaction(&reaction(&f, m1, f.owner, "👍"), &ev(g, 20))
                .await,
            Err(Error::Conflict(Conflict::NonceUsed))
        ));
        assert!(store.reactions_with(m1, "👍", 10).await.unwrap().is_empty());

        // Limit 1: the first pin fits, pinning it again changes nothing, a second is full.
        store
            .pin(f.channel.id, m1, f.owner, 30, 1, &ev(g, 22))
            .await
            .unwrap();
        // The list reads each pin with its message, who pinned it and when.
        let pinned = store.pinned_messages(f.channel.id).await.unwrap();
        assert_eq!(pinned.len(), 1);
        assert_eq!(
            Some(&pinned[0].message),
            store.message(m1).await.unwrap().as_ref()
        );
        assert_eq!(
            (pinned[0].pinned_by.as_str(), pinned[0].pinned_at),
            ("owner", 30)
        );
        assert!(matches!(
            store
                .pin(f.channel.id, m1, f.owner, 31, 1, &ev(g, 22))
                .await,
            Err(Error::Conflict(Conflict::Unchanged))
        ));
        assert!(matches!(
            store
                .pin(f.channel.id, m2, f.owner, 31, 1, &ev(g, 22))
                .await,
            Err(Error::Conflict(Conflict::PinsFull))
        ));
        assert_eq!(store.pins(f.channel.id).await.unwrap(), vec![m1]);
        store.unpin(f.channel.id, m1, &ev(g, 22)).await.unwrap();
        assert!(store.pins(f.channel.id).await.unwrap().is_empty());

        // A deleted guild takes its reactions and pins along.
        store
            .add_reaction(&reaction(&f, m2, f.owner, "👍"), &ev(g, 20))
            .await
            .unwrap();
        store
            .pin(f.channel.id, m2, f.owner, 32, 1, &ev(g, 22))
            .await
            .unwrap();
        store.delete_guild(g, 40, &ev(g, 8)).await.unwrap();
        assert!(store.reactions_with(m2, "👍", 10).await.unwrap().is_empty());
        assert!(store.pins(f.channel.id).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn unread_counts_skip_own_and_deleted_messages_and_stop_at_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    for store in engines(&dir).await {
        let f = guild(&store, "owner").await;
        let reader = actor("re_der");
        store.insert_actor(&reader, None, 1).await.unwrap();
        store
            .join_guild(
                f.guild.id,
                reader.id,
                None,
                15,
                &ev(f.guild.id, 6),
                &ev(reader.id, 0),
            )
            .await
            .unwrap();
        let c = f.channel.id;
        // Ids in sending order (time-ordered as the server makes them).
        let base = 1_000;
        let first = sent_as(&store, &f, base + 1, f.owner, "1", "hello").await;
        sent_as(&store, &f, base + 2, f.owner, "2", "hi <@reXder@x>").await;
        sent_as(&store, &f, base + 3, f.owner, "3", "hi <@re_der@x>").await;
        sent_as(&store, &f, base + 4, f.owner, "4", "@everyone").await;
        sent_as(&store, &f, base + 5, reader.id, "5", "<@re_der@x> mine").await;
        let gone = sent_as(&store, &f, base + 6, f.owner, "6", "<@re_der@x> gone").await;
        store
            .delete_message(gone, f.guild.id, f.owner, 50, "{}", &ev(f.guild.id, 2))
            .await
            .unwrap();

        // `_` is escaped: `<@reXder@x>` is no mention of `re_der@x`.
        let pattern = "%<@re\\_der@x>%";
        assert_eq!(
            store
                .unread_counts(c, 0, reader.id, pattern, 1000)
                .await
                .unwrap(),
            (4, 2)
        );
        assert_eq!(
            store
                .unread_counts(c, first, reader.id, pattern, 1000)
                .await
                .unwrap(),
            (3, 2)
        );
        assert_eq!(
            store
                .unread_counts(c, 0, reader.id, pattern, 2)
                .await
                .unwrap(),
            (2, 0),
            "only the first two after the marker are looked at"
        );

        store
            .set_read_state(reader.id, c, first, 60, &ev(reader.id, 23))
            .await
            .unwrap();
        store
            .set_read_state(reader.id, c, gone, 61, &ev(reader.id, 23))
            .await
            .unwrap();
        let marks = store.read_states(reader.id).await.unwrap();
        assert_eq!(marks.len(), 1);
        assert_eq!(marks[0].last_read, gone);
    }
}

#[tokio::test]
async fn presence_rows_are_per_node_refreshed_and_dropped() {
    let dir = tempfile::tempdir().unwrap();
    for store in engines(&dir).await {
        let f = guild(&store, "owner").await;
        let a = f.owner;
        assert!(!store.presence_connected(a, 0).await.unwrap());
        store.presence_up(a, "n1", 100).await.unwrap();
        store.presence_up(a, "n2", 100).await.unwrap();
        assert!(store.presence_connected(a, 90).await.unwrap());
        assert!(!store.presence_connected(a, 101).await.unwrap(), "stale");
        assert_eq!(store.presence_refresh("n1", 200).await.unwrap(), 1);
        assert!(store.presence_connected(a, 150).await.unwrap());
        store.presence_down(a, "n1").await.unwrap();
        assert!(!store.presence_connected(a, 150).await.unwrap());
        assert!(
            store.presence_connected(a, 0).await.unwrap(),
            "n2's stale row"
        );
        // A stopping node drops its rows and the stale ones of others.
        store.presence_up(a, "n3", 300).await.unwrap();
        assert_eq!(store.presence_drop_node("n3", 250).await.unwrap(), 2);
        assert!(!store.presence_connected(a, 0).await.unwrap());
    }
}

#[tokio::test]
async fn a_profile_is_written_with_its_events() {
    let dir = tempfile::tempdir().unwrap();
    for store in engines(&dir).await {
        let f = guild(&store, "owner").await;
        assert_eq!(store.profile(f.owner).await.unwrap(), None);
        let mut p = ProfileRow {
            actor_id: f.owner,
            display_name: Some("Owner".into()),
            availability: 1,
            updated_at: 70,
            avatar: Some("https://example.com/.p2/core/v1/resource/face".into()),
            ..ProfileRow::default()
        };
        let seqs = store
            .set_profile(&p, &[ev(f.owner, 25), ev(f.guild.id, 25)])
            .await
            .unwrap();
        assert_eq!(seqs.len(), 2);
        assert_eq!(seqs[1], store.stream_head(f.guild.id).await.unwrap());
        p.display_name = None;
        p.status = Some("away".into());
        assert!(store.set_profile(&p, &[]).await.unwrap().is_empty());
        assert_eq!(store.profile(f.owner).await.unwrap(), Some(p));
    }
}

#[tokio::test]
async fn a_deleted_message_leaves_the_pins_and_frees_its_place() {
    let dir = tempfile::tempdir().unwrap();
    for store in engines(&dir).await {
        let f = guild(&store, "owner").await;
        let g = f.guild.id;
        let m1 = sent(&store, &f, f.owner, "a", "one").await;
        let m2 = sent(&store, &f, f.owner, "b", "two").await;
        store
            .pin(f.channel.id, m1, f.owner, 30, 1, &ev(g, 22))
            .await
            .unwrap();
        store
            .delete_message(m1, g, f.owner, 31, "{}", &ev(g, 2))
            .await
            .unwrap();
        assert!(store.pins(f.channel.id).await.unwrap().is_empty());
        // Its place is free again: with room for one pin, another message takes it.
        store
            .pin(f.channel.id, m2, f.owner, 32, 1, &ev(g, 22))
            .await
            .unwrap();
        assert_eq!(store.pins(f.channel.id).await.unwrap(), vec![m2]);
    }
}
