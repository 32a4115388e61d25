//! Delivery over streams (docs/ARCHITECTURE.md, "Delivery: streams"): a test service names
//! which streams each actor follows and which channels it may see there, and the gateway must
//! deliver each event exactly to the followers that may see it, follow joins from where they
//! began, drop what access changes take away before the next event, and replay per stream.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use fugue_proto::gateway::EVENTS_PATH;
use fugue_server::events::{Audience, Publish};
use fugue_server::gateway::{Follow, OpRefused, Service, View};
use fugue_server::http::ApiError;
use fugue_server::ids::{ActorId, StreamId};
use fugue_server::principal::Actor;
use fugue_server::sessions::Authed;
use fugue_testkit::TestServer;
use fugue_testkit::ws::{
    Received, Ws, connect, expect_close, identified, identify_frame, next, send, try_receive,
};

/// One followed stream: `(stream, since, the channels seen there or None for all)`.
type Membership = (StreamId, u64, Option<Vec<i64>>);

/// Who follows what, per actor.
#[derive(Default)]
struct Rooms {
    members: Mutex<HashMap<ActorId, Vec<Membership>>>,
    ops: Mutex<Vec<(ActorId, u16)>>,
    presence: Mutex<Vec<(ActorId, bool)>>,
}

impl Rooms {
    fn set(&self, actor: ActorId, follows: Vec<Membership>) {
        self.members.lock().unwrap().insert(actor, follows);
    }

    fn of(&self, actor: ActorId) -> Vec<Follow> {
        let members = self.members.lock().unwrap();
        members
            .get(&actor)
            .into_iter()
            .flatten()
            .map(|(stream, since, channels)| Follow {
                stream: *stream,
                since: *since,
                view: Arc::new(Channels(
                    channels.as_ref().map(|c| c.iter().copied().collect()),
                )),
            })
            .collect()
    }
}

struct Channels(Option<HashSet<i64>>);

impl View for Channels {
    fn sees(&self, channel: i64) -> bool {
        self.0.as_ref().is_none_or(|c| c.contains(&channel))
    }
}

/// The `room` service channel over [`Rooms`].
struct RoomService(Arc<Rooms>);

impl Service for RoomService {
    fn name(&self) -> &str {
        "room"
    }

    fn follows<'a>(&'a self, actor: &'a Actor) -> BoxFuture<'a, Result<Vec<Follow>, ApiError>> {
        Box::pin(async move { Ok(self.0.of(actor.id)) })
    }

    fn view<'a>(
        &'a self,
        actor: &'a Actor,
        stream: StreamId,
    ) -> BoxFuture<'a, Result<Option<Follow>, ApiError>> {
        Box::pin(async move { Ok(self.0.of(actor.id).into_iter().find(|f| f.stream == stream)) })
    }

    fn connected(&self, actor: &Actor, online: bool) {
        self.0.presence.lock().unwrap().push((actor.id, online));
    }

    fn client_op<'a>(
        &'a self,
        authed: &'a Authed,
        op: u16,
        _d: &'a Value,
    ) -> BoxFuture<'a, Result<(), OpRefused>> {
        Box::pin(async move {
            if op != 1 {
                return Err(OpRefused::Unknown(op));
            }
            self.0.ops.lock().unwrap().push((authed.actor.id, op));
            Ok(())
        })
    }
}

const R1: StreamId = StreamId::from_store(7_000_001);
const R2: StreamId = StreamId::from_store(7_000_002);
const QUIET: Duration = Duration::from_millis(300);

async fn start() -> (TestServer, Arc<Rooms>) {
    let server = TestServer::start().await;
    let rooms = Arc::new(Rooms::default());
    server
        .gateway
        .register_service(Arc::new(RoomService(rooms.clone())));
    (server, rooms)
}

async fn actor(server: &TestServer, name: &str) -> ActorId {
    ActorId::from_store(server.store.actor_by_name(name).await.unwrap().unwrap().id)
}

/// Publishes `{"i": i}` as op 1 of `room` into `stream`; returns its position.
async fn room(server: &TestServer, p: Publish) -> u64 {
    server.events.publish(p).await.unwrap().seq
}

fn event(stream: StreamId, i: u64) -> Publish {
    Publish::new(stream, "room", 1, json!({ "i": i }))
}

/// Identified and subscribed to `room`.
async fn subscribed(server: &TestServer, token: &str) -> Ws {
    let mut ws = identified(server, token).await;
    send(
        &mut ws,
        json!({"n": "core", "op": 8, "d": {"action": "subscribe", "service": "room"}}),
    )
    .await;
    let ack = next(&mut ws).await;
    assert_eq!(ack["d"]["success"], true, "{ack}");
    ws
}

/// The `i` of a room event frame, checking its namespace and id.
#[track_caller]
fn room_i(frame: &Value, id: u64) -> u64 {
    assert_eq!(frame["n"], "room", "{frame}");
    assert_eq!(frame["id"], id, "{frame}");
    frame["d"]["i"].as_u64().unwrap()
}

async fn quiet(ws: &mut Ws) {
    if let Ok(got) = try_receive(ws, QUIET).await {
        let shown = match got {
            Received::Frame(f) => f.to_string(),
            Received::Close(c) => format!("close {c}"),
        };
        panic!("expected nothing, got {shown}");
    }
}

#[tokio::test]
async fn a_stream_event_reaches_each_follower_once_and_nobody_else() {
    let (server, rooms) = start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let carol = server.register("carol").await;
    rooms.set(actor(&server, "alice").await, vec![(R1, 1, None)]);
    rooms.set(actor(&server, "bob").await, vec![(R1, 1, None)]);
    let mut a = subscribed(&server, alice.token()).await;
    let mut b = subscribed(&server, bob.token()).await;
    let mut c = subscribed(&server, carol.token()).await;

    let id = room(&server, event(R1, 1)).await;
    assert_eq!(room_i(&next(&mut a).await, id), 1);
    assert_eq!(room_i(&next(&mut b).await, id), 1);
    quiet(&mut c).await;
    quiet(&mut a).await;
    // A second stream is counted on its own: its first event is position 1.
    let other = room(&server, event(R2, 2)).await;
    assert_eq!(other, 1);
    quiet(&mut a).await;
}

#[tokio::test]
async fn a_channel_audience_reaches_only_the_followers_who_see_the_channel() {
    let (server, rooms) = start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    rooms.set(
        actor(&server, "alice").await,
        vec![(R1, 1, Some(vec![1, 2]))],
    );
    rooms.set(actor(&server, "bob").await, vec![(R1, 1, Some(vec![1]))]);
    let mut a = subscribed(&server, alice.token()).await;
    let mut b = subscribed(&server, bob.token()).await;

    let secret = room(&server, event(R1, 1).audience(Audience::Channel(2))).await;
    let open = room(&server, event(R1, 2).audience(Audience::Channel(1))).await;
    assert_eq!(room_i(&next(&mut a).await, secret), 1);
    assert_eq!(room_i(&next(&mut a).await, open), 2);
    assert_eq!(room_i(&next(&mut b).await, open), 2, "bob skips channel 2");
    // An event for one actor reaches that actor's sessions only.
    let bobs = room(
        &server,
        event(R1, 3).audience(Audience::Actor(actor(&server, "bob").await)),
    )
    .await;
    assert_eq!(room_i(&next(&mut b).await, bobs), 3);
    quiet(&mut a).await;
}

#[tokio::test]
async fn an_access_change_takes_effect_on_the_next_event_of_the_stream() {
    let (server, rooms) = start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let (alice_id, bob_id) = (actor(&server, "alice").await, actor(&server, "bob").await);
    rooms.set(alice_id, vec![(R1, 1, None)]);
    rooms.set(bob_id, vec![(R1, 1, None)]);
    let mut a = subscribed(&server, alice.token()).await;
    let mut b = subscribed(&server, bob.token()).await;

    // Bob is removed: he still gets the removal, then nothing more of the stream.
    rooms.set(bob_id, vec![]);
    let removal = room(&server, event(R1, 1).changes_access()).await;
    let after = room(&server, event(R1, 2)).await;
    assert_eq!(room_i(&next(&mut b).await, removal), 1);
    quiet(&mut b).await;
    assert_eq!(room_i(&next(&mut a).await, removal), 1);
    assert_eq!(room_i(&next(&mut a).await, after), 2);

    // Alice loses channel 3: the change counts from the event that announces it.
    let before = room(&server, event(R1, 3).audience(Audience::Channel(3))).await;
    rooms.set(alice_id, vec![(R1, 1, Some(vec![4]))]);
    let change = room(&server, event(R1, 4).changes_access()).await;
    room(&server, event(R1, 5).audience(Audience::Channel(3))).await;
    let visible = room(&server, event(R1, 6).audience(Audience::Channel(4))).await;
    assert_eq!(room_i(&next(&mut a).await, before), 3);
    assert_eq!(room_i(&next(&mut a).await, change), 4);
    assert_eq!(room_i(&next(&mut a).await, visible), 6);
}

#[tokio::test]
async fn a_join_announced_on_the_own_stream_follows_the_new_stream_from_where_it_began() {
    let (server, rooms) = start().await;
    let alice = server.register("alice").await;
    let alice_id = actor(&server, "alice").await;
    let mut a = subscribed(&server, alice.token()).await;

    room(&server, event(R1, 1)).await; // before the join: never hers
    let join = room(&server, event(R1, 2)).await;
    rooms.set(alice_id, vec![(R1, join, None)]);
    let joined = room(
        &server,
        Publish::to_actor(alice_id, "room", 2, json!({"joined": true})).changes_access(),
    )
    .await;
    let own = next(&mut a).await;
    assert_eq!(
        (own["op"].as_u64(), own["id"].as_u64()),
        (Some(2), Some(joined))
    );
    assert_eq!(room_i(&next(&mut a).await, join), 2);
    let live = room(&server, event(R1, 3)).await;
    assert_eq!(room_i(&next(&mut a).await, live), 3);
}

#[tokio::test]
async fn resume_replays_each_followed_stream_and_nothing_of_one_left_while_away() {
    let (server, rooms) = start().await;
    let alice = server.register("alice").await;
    let alice_id = actor(&server, "alice").await;
    rooms.set(alice_id, vec![(R1, 1, None), (R2, 1, None)]);
    let mut a = subscribed(&server, alice.token()).await;
    let r1 = room(&server, event(R1, 1)).await;
    let r2 = room(&server, event(R2, 1)).await;
    let mut last_s = 0;
    for id in [r1, r2] {
        let f = next(&mut a).await;
        room_i(&f, id);
        last_s = f["s"].as_u64().unwrap();
    }
    drop(a);

    let r1b = room(&server, event(R1, 2)).await;
    room(&server, event(R2, 2)).await;
    rooms.set(alice_id, vec![(R1, 1, None)]);
    let (mut ws, _) = connect(&server).await;
    send(
        &mut ws,
        json!({"n": "core", "op": 5, "d": {"s": last_s, "token": alice.token()}}),
    )
    .await;
    let resumed = next(&mut ws).await;
    assert_eq!(resumed["op"], 10, "{resumed}");
    let replayed = resumed["d"].as_array().unwrap();
    assert_eq!(replayed.len(), 1, "{resumed}");
    assert_eq!(room_i(&replayed[0], r1b), 2);
    // Live again on the streams followed now.
    room(&server, event(R2, 3)).await;
    let r1c = room(&server, event(R1, 3)).await;
    assert_eq!(room_i(&next(&mut ws).await, r1c), 3);
}

#[tokio::test]
async fn acknowledged_positions_are_kept_per_stream_and_identify_starts_after_them() {
    let (server, rooms) = start().await;
    let alice = server.register("alice").await;
    rooms.set(actor(&server, "alice").await, vec![(R1, 1, None)]);
    let mut a = subscribed(&server, alice.token()).await;
    let first = room(&server, event(R1, 1)).await;
    let f = next(&mut a).await;
    room_i(&f, first);
    let s = f["s"].as_u64().unwrap();
    send(
        &mut a,
        json!({"n": "core", "op": 0, "d": {"from": "1", "to": s.to_string(), "except": []}}),
    )
    .await;
    assert_eq!(next(&mut a).await["op"], 7);
    drop(a);
    let missed = room(&server, event(R1, 2)).await;

    // A new connection (Identify, not Resume) of the same session, once the position is
    // recorded: it replays what came after the acknowledged position only.
    let pk = {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let sessions = server
                .store
                .sessions_of(actor(&server, "alice").await.to_store())
                .await
                .unwrap();
            let pk = sessions[0].id;
            let at = server.store.stream_positions(pk).await.unwrap();
            if at.contains(&(R1.to_store(), i64::try_from(first).unwrap())) {
                break pk;
            }
            assert!(tokio::time::Instant::now() < deadline, "{at:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    assert!(pk > 0);
    let mut b = subscribed(&server, alice.token()).await;
    assert_eq!(room_i(&next(&mut b).await, missed), 2);
    quiet(&mut b).await;
}

#[tokio::test]
async fn events_over_http_cover_every_stream_the_actor_may_follow_now() {
    let (server, rooms) = start().await;
    let alice = server.register("alice").await;
    rooms.set(actor(&server, "alice").await, vec![(R1, 1, Some(vec![1]))]);
    let url = format!("{}{EVENTS_PATH}", server.url);
    let poll = || {
        server
            .client()
            .raw()
            .get(&url)
            .bearer_auth(alice.token())
            .send()
    };
    assert_eq!(poll().await.unwrap().status().as_u16(), 204);
    let seen = room(&server, event(R1, 1).audience(Audience::Channel(1))).await;
    room(&server, event(R1, 2).audience(Audience::Channel(2))).await;
    let resp = poll().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let got: Vec<Value> = resp.json().await.unwrap();
    assert_eq!(
        got,
        vec![json!({"n": "room", "op": 1, "id": seen, "d": {"i": 1}})]
    );
    assert_eq!(poll().await.unwrap().status().as_u16(), 204);
}

#[tokio::test]
async fn ephemeral_events_reach_connected_followers_and_are_never_replayed() {
    let (server, rooms) = start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    rooms.set(actor(&server, "alice").await, vec![(R1, 1, None)]);
    rooms.set(actor(&server, "bob").await, vec![(R1, 1, Some(vec![9]))]);
    let mut a = subscribed(&server, alice.token()).await;
    let mut b = subscribed(&server, bob.token()).await;
    server
        .events
        .ephemeral(
            Publish::new(R1, "room", 5, json!({"typing": true})).audience(Audience::Channel(1)),
        )
        .await;
    let f = next(&mut a).await;
    assert_eq!((f["op"].as_u64(), f.get("id")), (Some(5), None), "{f}");
    quiet(&mut b).await;
    assert_eq!(server.events.head(R1).await.unwrap(), 0, "nothing written");
}

#[tokio::test]
async fn client_payloads_in_a_service_namespace_go_to_the_service() {
    let (server, rooms) = start().await;
    let alice = server.register("alice").await;
    let mut a = subscribed(&server, alice.token()).await;
    send(&mut a, json!({"n": "room", "op": 1, "d": {}})).await;
    // The connection stays: a heartbeat is still answered.
    send(
        &mut a,
        json!({"n": "core", "op": 0, "d": {"from": "0", "to": "0", "except": []}}),
    )
    .await;
    assert_eq!(next(&mut a).await["op"], 7);
    let alice_id = actor(&server, "alice").await;
    assert_eq!(rooms.ops.lock().unwrap().as_slice(), &[(alice_id, 1)]);
    send(&mut a, json!({"n": "room", "op": 9, "d": {}})).await;
    expect_close(&mut a, 4001).await;
    // Not subscribed: 4002.
    let (mut ws, _) = connect(&server).await;
    send(&mut ws, identify_frame(alice.token())).await;
    assert_eq!(next(&mut ws).await["op"], 12);
    send(&mut ws, json!({"n": "room", "op": 1, "d": {}})).await;
    expect_close(&mut ws, 4002).await;
}

#[tokio::test]
async fn the_service_hears_when_an_actors_first_connection_opens_and_its_last_closes() {
    let (server, rooms) = start().await;
    let alice = server.register("alice").await;
    let alice_id = actor(&server, "alice").await;
    let presence = || rooms.presence.lock().unwrap().clone();
    let first = subscribed(&server, alice.token()).await;
    let mut second = subscribed(&server, alice.token()).await;
    assert_eq!(presence(), vec![(alice_id, true)]);
    drop(first);
    // The second connection still holds: nothing changes until it goes too.
    send(
        &mut second,
        json!({"n": "core", "op": 0, "d": {"from": "0", "to": "0", "except": []}}),
    )
    .await;
    assert_eq!(next(&mut second).await["op"], 7);
    assert_eq!(presence(), vec![(alice_id, true)]);
    send(
        &mut second,
        json!({"n": "core", "op": 8, "d": {"action": "unsubscribe", "service": "room"}}),
    )
    .await;
    assert_eq!(next(&mut second).await["d"]["success"], true);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while presence().len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "{:?}", presence());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(presence(), vec![(alice_id, true), (alice_id, false)]);
}
