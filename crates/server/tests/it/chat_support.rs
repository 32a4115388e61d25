//! What the chat tests share: `Who`, one actor's session driving raw chat calls (guilds,
//! signed messages, reactions, conversations, presence, gateway subscriptions), the response
//! helpers (`ok`, `no_content`, `problem`, `status`) and the gateway frame helpers.

use std::time::Duration;

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use fugue_client::Session;
use fugue_proto::api::{self, Target};
use fugue_proto::chat::{
    Channel, Guild, Invite, Member, Message, MessageBody, MessageVersion, OverwriteTarget,
    Permissions, SignedPayload,
};
use fugue_proto::community::{Presence, ReactionBody, ReadState};
use fugue_proto::{ErrorCode, FederationId, Problem};
use fugue_testkit::{TestServer, ws};

/// One actor's session on a server (its own, or another one it signed in on by key trial),
/// for raw chat calls.
pub(crate) struct Who<'a> {
    pub(crate) server: &'a TestServer,
    pub(crate) session: Session,
    /// The token on `server` when `session` is of another server (signed in by key trial).
    foreign_token: Option<String>,
}

impl<'a> Who<'a> {
    pub(crate) async fn new(server: &'a TestServer, name: &str) -> Self {
        Self {
            server,
            session: server.register(name).await,
            foreign_token: None,
        }
    }

    /// An actor's own session on its server.
    pub(crate) fn of(server: &'a TestServer, session: Session) -> Self {
        Self {
            server,
            session,
            foreign_token: None,
        }
    }

    /// Another session of an actor registered before.
    pub(crate) async fn again(server: &'a TestServer, name: &str, session_id: &str) -> Self {
        Self {
            server,
            session: server.login(name, session_id).await.unwrap(),
            foreign_token: None,
        }
    }

    /// `session`'s actor signed in on `server` (another home server) with a key trial.
    pub(crate) async fn foreign(server: &'a TestServer, session: Session) -> Self {
        let signed_in = session
            .sign_in_on(server.client(), &server.domain)
            .await
            .unwrap();
        Self {
            server,
            foreign_token: Some(signed_in.token().to_owned()),
            session,
        }
    }

    pub(crate) fn token(&self) -> &str {
        self.foreign_token
            .as_deref()
            .unwrap_or(self.session.token())
    }

    pub(crate) fn fid(&self) -> FederationId {
        self.session.fid().clone()
    }

    pub(crate) async fn call(
        &self,
        target: Target,
        query: &[(&str, String)],
        body: Option<Value>,
    ) -> reqwest::Response {
        self.call_with(target, query, body, None).await
    }

    /// `call` with the answer to a sensitive action's challenge (`solution`).
    pub(crate) async fn call_with(
        &self,
        target: Target,
        query: &[(&str, String)],
        body: Option<Value>,
        solution: Option<&str>,
    ) -> reqwest::Response {
        let method = Method::from_bytes(target.method().as_str().as_bytes()).unwrap();
        let mut req = self
            .server
            .client()
            .raw()
            .request(method, format!("{}{}", self.server.url, target.path))
            .bearer_auth(self.token())
            .query(query);
        if let Some(body) = body {
            req = req.json(&body);
        }
        if let Some(solution) = solution {
            req = req.header(api::SENSITIVE_HEADER, solution);
        }
        req.send().await.unwrap()
    }

    /// A message body signed for `channel` (or conversation) with `nonce` (`edit_of` for an
    /// edit).
    pub(crate) fn signed(
        &self,
        channel: u64,
        nonce: &str,
        body: &MessageBody,
        edit_of: Option<u64>,
    ) -> String {
        let payload = SignedPayload::message(
            &self.server.domain,
            channel,
            self.session.fid(),
            nonce,
            edit_of,
            body,
        );
        hex::encode(self.session.key().sign(&payload.signed_bytes()))
    }

    /// The request body of a message with `text` for `channel`, signed with the session's key.
    pub(crate) fn send_body(&self, channel: u64, nonce: &str, text: &str) -> Value {
        let body = MessageBody {
            content: text.into(),
            reply_to: None,
            attachments: vec![],
        };
        json!({
            "content": text,
            "nonce": nonce,
            "signature": self.signed(channel, nonce, &body, None),
            "id_cert": self.session.cert_pem(),
        })
    }

    /// Sends a signed message naming the attachments `urls` to `channel`.
    pub(crate) async fn send_attached(
        &self,
        channel: u64,
        nonce: &str,
        urls: &[&str],
    ) -> reqwest::Response {
        let body = MessageBody {
            content: "look".into(),
            reply_to: None,
            attachments: urls.iter().map(|u| (*u).to_owned()).collect(),
        };
        let request = json!({
            "content": body.content,
            "attachments": body.attachments,
            "nonce": nonce,
            "signature": self.signed(channel, nonce, &body, None),
            "id_cert": self.session.cert_pem(),
        });
        self.call(api::send_message::target(channel), &[], Some(request))
            .await
    }

    /// Uploads `bytes` as an attachment named `filename`.
    pub(crate) async fn upload_attachment(
        &self,
        bytes: &[u8],
        filename: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self
            .server
            .client()
            .raw()
            .post(format!(
                "{}{}",
                self.server.url,
                api::upload_attachment::path()
            ))
            .bearer_auth(self.token())
            .body(bytes.to_vec());
        if let Some(name) = filename {
            req = req.query(&[("filename", name)]);
        }
        req.send().await.unwrap()
    }

    /// Sends a signed message to `channel` (a guild channel or a conversation).
    pub(crate) async fn send(&self, channel: u64, nonce: &str, text: &str) -> reqwest::Response {
        self.call(
            api::send_message::target(channel),
            &[],
            Some(self.send_body(channel, nonce, text)),
        )
        .await
    }

    /// The message `send` stored (201).
    pub(crate) async fn sent(&self, channel: u64, nonce: &str, text: &str) -> Message {
        ok(self.send(channel, nonce, text).await, 201).await
    }

    /// A reaction request signed over `signed` (what the author claims to sign).
    pub(crate) fn reaction(&self, channel: u64, nonce: &str, signed: &ReactionBody) -> Value {
        let payload = SignedPayload::reaction(
            &self.server.domain,
            channel,
            self.session.fid(),
            nonce,
            signed,
        );
        json!({
            "nonce": nonce,
            "signature": hex::encode(self.session.key().sign(&payload.signed_bytes())),
            "id_cert": self.session.cert_pem(),
        })
    }

    pub(crate) async fn react(
        &self,
        channel: u64,
        message: u64,
        emoji: &str,
        add: bool,
        nonce: &str,
    ) -> reqwest::Response {
        let body = self.reaction(
            channel,
            nonce,
            &ReactionBody {
                message,
                emoji: emoji.into(),
                add,
            },
        );
        let target = if add {
            api::add_reaction::target(channel, message, emoji)
        } else {
            api::remove_reaction::target(channel, message, emoji)
        };
        self.call(target, &[], Some(body)).await
    }

    /// Who reacted with `emoji`; each listed reaction's signature is checked to verify, with
    /// the certificate it carries, over the addition of that emoji to that message.
    pub(crate) async fn reactors(
        &self,
        channel: u64,
        message: u64,
        emoji: &str,
    ) -> Vec<FederationId> {
        let list: Vec<fugue_proto::community::SignedReaction> = ok(
            self.call(
                api::list_reactions::target(channel, message, emoji),
                &[],
                None,
            )
            .await,
            200,
        )
        .await;
        for r in &list {
            let body = ReactionBody {
                message,
                emoji: emoji.to_owned(),
                add: true,
            };
            let payload =
                SignedPayload::reaction(&self.server.domain, channel, &r.fid, &r.nonce, &body);
            let cert = fugue_proto::certs::IdCert::parse(r.id_cert.as_bytes()).unwrap();
            assert_eq!((cert.serial, cert.fid().as_ref()), (r.serial, Some(&r.fid)));
            let signature = hex::decode(&r.signature).unwrap();
            fugue_proto::certs::verify_strict(&cert.key, &payload.signed_bytes(), &signature)
                .unwrap();
        }
        list.into_iter().map(|r| r.fid).collect()
    }

    /// A new guild and its first channel.
    pub(crate) async fn create_guild(&self, name: &str, private: bool) -> (Guild, Channel) {
        let g: Guild = ok(
            self.call(
                api::create_guild::target(),
                &[],
                Some(json!({"name": name, "private": private})),
            )
            .await,
            201,
        )
        .await;
        let channels: Vec<Channel> = ok(
            self.call(api::list_channels::target(g.id), &[], None).await,
            200,
        )
        .await;
        (g, channels[0].clone())
    }

    /// A new channel of `guild` (201).
    pub(crate) async fn create_channel(&self, guild: u64, body: Value) -> Channel {
        ok(
            self.call(api::create_channel::target(guild), &[], Some(body))
                .await,
            201,
        )
        .await
    }

    pub(crate) async fn invite(&self, channel: u64, body: Value) -> Invite {
        ok(
            self.call(api::create_invite::target(channel), &[], Some(body))
                .await,
            201,
        )
        .await
    }

    pub(crate) async fn join(&self, guild: u64, code: Option<&str>) -> reqwest::Response {
        let body = code.map(|c| json!({"invite_code": c}));
        self.call(api::join_guild::target(guild), &[], body).await
    }

    /// `other` joins `self`'s guild with an invite to `channel`.
    pub(crate) async fn admit(&self, other: &Who<'_>, guild: u64, channel: u64) {
        let invite = self.invite(channel, json!({})).await;
        ok::<Member>(
            other
                .join(guild, Some(invite.code.as_deref().unwrap()))
                .await,
            201,
        )
        .await;
    }

    /// Sets `channel`'s overwrite for `target` (200).
    pub(crate) async fn set_overwrite(
        &self,
        channel: u64,
        target: &OverwriteTarget,
        body: Value,
    ) -> Value {
        ok(
            self.call(api::set_overwrite::target(channel, target), &[], Some(body))
                .await,
            200,
        )
        .await
    }

    /// Sets the `@everyone` role's permission bits.
    pub(crate) async fn everyone_may(&self, guild: u64, bits: Permissions) {
        ok::<Value>(
            self.call(
                api::update_role::target(guild, guild),
                &[],
                Some(json!({"permissions": bits.bits().to_string()})),
            )
            .await,
            200,
        )
        .await;
    }

    /// The answer to a history request.
    pub(crate) async fn history_call(
        &self,
        channel: u64,
        query: &[(&str, String)],
    ) -> reqwest::Response {
        self.call(api::message_history::target(channel), query, None)
            .await
    }

    /// A page of history (200).
    pub(crate) async fn history(&self, channel: u64, query: &[(&str, String)]) -> Vec<Message> {
        ok(self.history_call(channel, query).await, 200).await
    }

    /// Every version of a message (200).
    pub(crate) async fn versions(&self, channel: u64, message: u64) -> Vec<MessageVersion> {
        ok(
            self.call(api::message_versions::target(channel, message), &[], None)
                .await,
            200,
        )
        .await
    }

    pub(crate) async fn dm(&self, recipient: &FederationId) -> reqwest::Response {
        self.call(
            api::create_dm::target(),
            &[],
            Some(json!({"recipient_id": recipient.to_string()})),
        )
        .await
    }

    /// A group named `crew` with `members`.
    pub(crate) async fn group(&self, members: &[FederationId]) -> reqwest::Response {
        let members: Vec<String> = members.iter().map(ToString::to_string).collect();
        self.call(
            api::create_group::target(),
            &[],
            Some(json!({"name": "crew", "members": members})),
        )
        .await
    }

    pub(crate) async fn add(&self, group: u64, fid: &FederationId) -> reqwest::Response {
        self.call(api::add_conversation_member::target(group, fid), &[], None)
            .await
    }

    pub(crate) async fn remove(&self, group: u64, fid: &FederationId) -> reqwest::Response {
        self.call(
            api::remove_conversation_member::target(group, fid),
            &[],
            None,
        )
        .await
    }

    pub(crate) async fn leave(&self, group: u64) -> reqwest::Response {
        self.call(api::leave_conversation::target(group), &[], None)
            .await
    }

    /// Moves the read marker of `channel` to `message`.
    pub(crate) async fn mark_read(&self, channel: u64, message: u64) -> reqwest::Response {
        self.call(
            api::set_read_state::target(channel),
            &[],
            Some(json!({"last_read": message.to_string()})),
        )
        .await
    }

    pub(crate) async fn read_states(&self) -> Vec<ReadState> {
        ok(self.call(api::read_states::target(), &[], None).await, 200).await
    }

    pub(crate) async fn presence_of(&self, of: &Who<'_>) -> Presence {
        let list: Vec<Presence> = ok(
            self.call(
                api::get_presences::target(),
                &[("fids", of.fid().to_string())],
                None,
            )
            .await,
            200,
        )
        .await;
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].fid, of.fid());
        list[0].clone()
    }

    /// Waits (a few seconds at most) until `self` sees `of` with `availability`.
    pub(crate) async fn sees_presence(&self, of: &Who<'_>, availability: u8) -> Presence {
        let mut last = None;
        for _ in 0..50 {
            let p = self.presence_of(of).await;
            if p.availability == availability {
                return p;
            }
            last = Some(p);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{} never showed availability {availability}: {last:?}",
            of.fid()
        );
    }

    /// A gateway connection subscribed to `services`.
    pub(crate) async fn subscribed_to(&self, services: &[&str]) -> ws::Ws {
        let mut conn = ws::identified(self.server, self.token()).await;
        for service in services {
            subscribe(&mut conn, service).await;
        }
        conn
    }

    /// A gateway connection subscribed to `service`.
    pub(crate) async fn subscribed(&self, service: &str) -> ws::Ws {
        self.subscribed_to(&[service]).await
    }

    /// A gateway connection subscribed to `chat` and `fugue-chat`.
    pub(crate) async fn connect(&self) -> ws::Ws {
        self.subscribed_to(&["chat", "fugue-chat"]).await
    }
}

/// Subscribes `conn` to `service` and asserts the acknowledgement.
pub(crate) async fn subscribe(conn: &mut ws::Ws, service: &str) {
    ws::send(
        conn,
        json!({"n": "core", "op": 8, "d": {"action": "subscribe", "service": service}}),
    )
    .await;
    let ack = ws::next_with_op(conn, 9).await;
    assert_eq!(ack["d"]["success"], true, "{ack}");
}

/// The body of a response with `status`.
pub(crate) async fn ok<T: DeserializeOwned>(resp: reqwest::Response, status: u16) -> T {
    let got = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    assert_eq!(got, status, "{text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Asserts a 204 answer.
pub(crate) async fn no_content(resp: reqwest::Response) {
    let got = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    assert_eq!(got, 204, "{text}");
}

/// A chat problem: status, code, and chat.md's `message` and numeric `code` besides.
pub(crate) async fn problem(resp: reqwest::Response, status: u16, code: ErrorCode) -> Problem {
    let got = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    assert_eq!(got, status, "{text}");
    let p: Problem = serde_json::from_str(&text).unwrap();
    assert_eq!(p.error, code, "{text}");
    assert_eq!(p.code, Some(code.number()), "{text}");
    assert!(
        p.message.as_deref().is_some_and(|m| !m.is_empty()),
        "{text}"
    );
    p
}

pub(crate) async fn status(resp: reqwest::Response) -> u16 {
    resp.status().as_u16()
}

/// The next `chat` frame, skipping others.
pub(crate) async fn next_chat(conn: &mut ws::Ws) -> Value {
    loop {
        let f = ws::next(conn).await;
        if f["n"] == "chat" {
            return f;
        }
    }
}

/// The next frame of `chat` or `fugue-chat`.
pub(crate) async fn next_chat_or_fugue(conn: &mut ws::Ws) -> Value {
    loop {
        let f = ws::next(conn).await;
        if f["n"] == "chat" || f["n"] == "fugue-chat" {
            return f;
        }
    }
}

/// The next frames of `chat` or `fugue-chat` until one with namespace `n` and `op` (returned).
pub(crate) async fn until(conn: &mut ws::Ws, n: &str, op: u16) -> Value {
    loop {
        let f = next_chat_or_fugue(conn).await;
        if f["n"] == n && f["op"] == op {
            return f;
        }
    }
}

/// Asserts that no frame of `chat` or `fugue-chat` arrives for a while.
pub(crate) async fn quiet(conn: &mut ws::Ws, what: &str) {
    loop {
        match ws::try_receive(conn, Duration::from_millis(300)).await {
            Err(_) => return,
            Ok(ws::Received::Frame(f)) if f["n"] == "chat" || f["n"] == "fugue-chat" => {
                panic!("{what}: {f}")
            }
            Ok(_) => {}
        }
    }
}

/// The next `fugue-chat` frame with `op`, skipping others.
pub(crate) async fn next_fugue(conn: &mut ws::Ws, op: u16) -> Value {
    loop {
        let f = ws::next(conn).await;
        if f["n"] == "fugue-chat" && f["op"] == op {
            return f;
        }
    }
}

/// Whether a `fugue-chat` frame with `op` arrives within `wait`.
pub(crate) async fn gets_fugue(conn: &mut ws::Ws, op: u16, wait: Duration) -> Option<Value> {
    let until = tokio::time::Instant::now() + wait;
    loop {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        match ws::try_receive(conn, left).await {
            Ok(ws::Received::Frame(f)) if f["n"] == "fugue-chat" && f["op"] == op => {
                return Some(f);
            }
            Ok(ws::Received::Frame(_)) => {}
            _ => return None,
        }
    }
}

/// Resumes `who`'s session after frame `s`; returns every event replayed (as frames or in
/// op 10's `d`).
pub(crate) async fn resume(server: &TestServer, who: &Who<'_>, s: u64) -> Vec<Value> {
    let (mut conn, _) = ws::connect(server).await;
    ws::send(
        &mut conn,
        json!({"n": "core", "op": 5, "d": {"s": s, "token": who.token()}}),
    )
    .await;
    let mut replayed = Vec::new();
    loop {
        let f = ws::next(&mut conn).await;
        if f["op"] == 10 && f["n"] == "core" {
            if let Some(d) = f["d"].as_array() {
                replayed.extend(d.iter().cloned());
            }
            return replayed;
        }
        replayed.push(f);
    }
}

/// A PNG of `width` × `height` (with transparency when `alpha`).
pub(crate) fn png(width: u32, height: u32, alpha: bool) -> Vec<u8> {
    let img = if alpha {
        image::DynamicImage::ImageRgba8(image::RgbaImage::from_fn(width, height, |x, y| {
            image::Rgba([(x % 256) as u8, (y % 256) as u8, 200, 100])
        }))
    } else {
        image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 200])
        }))
    };
    let mut out = Vec::new();
    img.write_with_encoder(image::codecs::png::PngEncoder::new(&mut out))
        .unwrap();
    out
}
