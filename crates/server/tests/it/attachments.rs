//! Chat attachments: uploads described by the server (dimensions, placeholder, thumbnail),
//! read by exactly those who may read a message naming them, bounded image decoding; avatars
//! and guild icons as public images of whoever sets them.

use serde_json::{Value, json};

use fugue_proto::api;
use fugue_proto::chat::{Attachment, Channel, Guild, Message, MessageBody, Permissions};
use fugue_proto::community::Actor as Profile;
use fugue_proto::rawr::{AccessProperties, ResourceId};
use fugue_proto::{ErrorCode, Problem};
use fugue_testkit::TestServer;

use crate::chat_support::{Who, no_content, ok, png, problem};
use crate::support::assert_raw_problem;

/// A 1×1 PNG whose header claims `width` × `height`: a decompression bomb's shape.
fn bomb(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = png(1, 1, false);
    bytes[16..20].copy_from_slice(&width.to_be_bytes());
    bytes[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32fast::hash(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    bytes
}

async fn uploaded(who: &Who<'_>, bytes: &[u8], filename: Option<&str>) -> Attachment {
    ok(who.upload_attachment(bytes, filename).await, 201).await
}

async fn fetch(who: &Who<'_>, path: &str) -> reqwest::Response {
    who.server
        .client()
        .raw()
        .get(format!("{}{path}", who.server.url))
        .bearer_auth(who.token())
        .send()
        .await
        .unwrap()
}

async fn attachment(who: &Who<'_>, rid: &str) -> reqwest::Response {
    fetch(who, &api::get_attachment::path(rid)).await
}

/// Absent or hidden: the same 404 with the same words.
async fn hidden(resp: reqwest::Response) -> Problem {
    problem(resp, 404, ErrorCode::ResourceNotFound).await
}

#[tokio::test]
async fn an_attachment_is_read_by_exactly_those_who_may_read_a_message_naming_it() {
    let server = TestServer::start().await;
    let alice = Who::new(&server, "alice").await;
    let bob = Who::new(&server, "bob").await;
    let carol = Who::new(&server, "carol").await;
    let (g, general) = alice.create_guild("club", true).await;
    alice.admit(&bob, g.id, general.id).await;

    // The upload is described: the type from the bytes, dimensions, placeholder, thumbnail.
    let photo = png(1000, 600, false);
    let a = uploaded(&alice, &photo, Some("été \"photo\".png")).await;
    assert_eq!(a.content_type, "image/png");
    assert_eq!(a.size, photo.len() as u64);
    assert_eq!((a.width, a.height), (Some(1000), Some(600)));
    assert_eq!(a.filename.as_deref(), Some("été \"photo\".png"));
    assert_eq!(a.placeholder.as_ref().map(String::len), Some(28));
    assert_eq!(
        a.url,
        format!("{}{}", server.url, api::get_attachment::path(&a.id))
    );
    assert!(a.thumbnail.is_some());

    // Before a message names it, only its uploader reads it.
    let resp = attachment(&alice, &a.id).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), photo.as_slice());
    let absent = hidden(attachment(&bob, "0123456789abcdef0123456789abcdef").await).await;
    let p = hidden(attachment(&bob, &a.id).await).await;
    assert_eq!(p.detail, absent.detail);
    // The RawR route does not open it either, and without a session nothing does.
    assert_raw_problem(
        fetch(&bob, &api::get_resource::path(&a.id)).await,
        404,
        ErrorCode::ResourceNotFound,
    )
    .await;
    let anonymous = server.client().raw().get(&a.url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);

    // Sent in general: bob, a member, reads it and sees its details in the message.
    let sent: Message = ok(alice.send_attached(general.id, "m1", &[&a.url]).await, 201).await;
    assert_eq!(sent.attachment_details, vec![a.clone()]);
    let page = bob.history(general.id, &[]).await;
    assert_eq!(page[0].attachments, vec![a.url.clone()]);
    assert_eq!(page[0].attachment_details, vec![a.clone()]);
    let resp = attachment(&bob, &a.id).await;
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert_eq!(h["content-type"], "image/png");
    assert_eq!(h["x-content-type-options"], "nosniff");
    let disposition = h["content-disposition"].to_str().unwrap();
    assert!(
        disposition.starts_with("inline; filename=\"_t_ _photo_.png\"; filename*=UTF-8''%C3%A9t%C3%A9%20%22photo%22%2Epng"),
        "{disposition}"
    );
    assert_eq!(resp.bytes().await.unwrap().as_ref(), photo.as_slice());
    let details: Attachment = ok(
        fetch(&bob, &api::attachment_details::path(&a.id)).await,
        200,
    )
    .await;
    assert_eq!(details, a);
    let thumb = fetch(&bob, &api::attachment_thumbnail::path(&a.id)).await;
    assert_eq!(thumb.status(), 200);
    assert_eq!(thumb.headers()["content-type"], "image/jpeg");
    let small = image::load_from_memory(&thumb.bytes().await.unwrap()).unwrap();
    assert_eq!((small.width(), small.height()), (400, 240));
    // Carol, no member, learns nothing.
    for path in [
        api::get_attachment::path(&a.id),
        api::attachment_details::path(&a.id),
        api::attachment_thumbnail::path(&a.id),
    ] {
        assert_eq!(
            hidden(fetch(&carol, &path).await).await.detail,
            absent.detail
        );
    }

    // In a channel bob may not view, another attachment stays hidden from him.
    let staff: Channel = alice.create_channel(g.id, json!({"name": "staff"})).await;
    let everyone = fugue_proto::chat::OverwriteTarget::Role(g.id);
    alice
        .set_overwrite(
            staff.id,
            &everyone,
            json!({"deny": Permissions::VIEW_CHANNEL.bits().to_string()}),
        )
        .await;
    let plan = uploaded(&alice, b"the plan", Some("plan.txt")).await;
    assert_eq!(
        (plan.content_type.as_str(), plan.width),
        ("text/plain", None)
    );
    ok::<Message>(alice.send_attached(staff.id, "s1", &[&plan.url]).await, 201).await;
    hidden(attachment(&bob, &plan.id).await).await;
    // A small image is its own thumbnail: none is made.
    let icon = uploaded(&alice, &png(40, 30, true), None).await;
    assert_eq!(
        (icon.width, icon.height, icon.thumbnail.as_deref()),
        (Some(40), Some(30), None)
    );
    hidden(fetch(&alice, &api::attachment_thumbnail::path(&icon.id)).await).await;

    // A message names only its author's attachments of this server.
    for (nonce, url) in [
        ("b1", a.url.clone()),
        (
            "b2",
            "https://elsewhere.example/.p2/chat/v1/attachments/abc".to_owned(),
        ),
        (
            "b3",
            format!("{}{}", server.url, api::get_resource::path("abc")),
        ),
    ] {
        problem(
            bob.send_attached(general.id, nonce, &[&url]).await,
            400,
            ErrorCode::InvalidChatInput,
        )
        .await;
    }
    assert_eq!(
        bob.history(general.id, &[]).await.len(),
        1,
        "nothing stored"
    );

    // An edit that names another attachment opens that one too; the old stays readable
    // (it is in the message's history).
    let b = uploaded(&alice, b"second", Some("b.txt")).await;
    let body = MessageBody {
        content: "look again".into(),
        reply_to: None,
        attachments: vec![b.url.clone()],
    };
    let edit = json!({
        "content": body.content,
        "attachments": body.attachments,
        "nonce": "m1-e",
        "signature": alice.signed(general.id, "m1-e", &body, Some(sent.id)),
        "id_cert": alice.session.cert_pem(),
    });
    let edited: Message = ok(
        alice
            .call(
                api::edit_message::target(general.id, sent.id),
                &[],
                Some(edit),
            )
            .await,
        200,
    )
    .await;
    assert_eq!(edited.attachment_details, vec![b.clone()]);
    assert_eq!(attachment(&bob, &b.id).await.status(), 200);
    assert_eq!(attachment(&bob, &a.id).await.status(), 200);

    // Deleted, the message opens nothing any more (its uploader still reads them).
    no_content(
        alice
            .call(api::delete_message::target(general.id, sent.id), &[], None)
            .await,
    )
    .await;
    hidden(attachment(&bob, &a.id).await).await;
    hidden(attachment(&bob, &b.id).await).await;
    assert_eq!(attachment(&alice, &a.id).await.status(), 200);

    // Deleting the resource removes the attachment and its thumbnail.
    alice
        .session
        .delete_resource(&a.id.parse::<ResourceId>().unwrap())
        .await
        .unwrap();
    hidden(attachment(&alice, &a.id).await).await;
    hidden(fetch(&alice, &api::attachment_thumbnail::path(&a.id)).await).await;
}

#[tokio::test]
async fn hostile_images_are_stored_but_never_decoded_beyond_the_limits() {
    let server = TestServer::start().await;
    let alice = Who::new(&server, "alice").await;

    // 15,000 × 15,000 claimed by a few bytes: measured, never decoded.
    let started = std::time::Instant::now();
    let a = uploaded(&alice, &bomb(15_000, 15_000), Some("bomb.png")).await;
    assert_eq!((a.width, a.height), (Some(15_000), Some(15_000)));
    assert_eq!((&a.placeholder, &a.thumbnail), (&None, &None));
    // Wider than any decoder is let read: nothing is known but the type.
    let b = uploaded(&alice, &bomb(100_000, 4), None).await;
    assert_eq!((b.width, &b.thumbnail), (None, &None));
    // Cut short: stored as a file, undescribed.
    let mut cut = png(600, 600, false);
    cut.truncate(cut.len() / 2);
    let c = uploaded(&alice, &cut, None).await;
    assert_eq!((c.content_type.as_str(), c.width), ("image/png", None));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    // Each reads back as uploaded.
    let resp = attachment(&alice, &a.id).await;
    assert_eq!(
        resp.bytes().await.unwrap().as_ref(),
        bomb(15_000, 15_000).as_slice()
    );

    // The upload's limits and problems are RawR's.
    let no_length = server
        .client()
        .raw()
        .post(format!("{}{}", server.url, api::upload_attachment::path()))
        .bearer_auth(alice.token())
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            vec![Ok::<_, std::io::Error>(b"x".to_vec())],
        )))
        .send()
        .await
        .unwrap();
    problem(no_length, 411, ErrorCode::LengthRequired).await;
    for bad in ["", "a/b", "..", "tab\there"] {
        problem(
            alice.upload_attachment(b"x", Some(bad)).await,
            400,
            ErrorCode::MalformedRequest,
        )
        .await;
    }
    let usage = alice.session.resource_usage().await.unwrap();
    let stored = [&a, &b, &c].iter().map(|x| x.size).sum::<u64>();
    assert_eq!(usage.used, stored, "refused uploads store nothing");
}

#[tokio::test]
async fn a_foreign_actor_attaches_files_on_the_server_it_posts_to() {
    let (alpha, beta) = fugue_testkit::federated_pair().await;
    let bob = Who::new(&beta, "bob").await;
    let alice = Who::foreign(&beta, alpha.register("alice").await).await;
    let (g, general): (Guild, Channel) = bob.create_guild("across", true).await;
    bob.admit(&alice, g.id, general.id).await;

    // With her session on beta, alice uploads there and names it in her message.
    let a = uploaded(&alice, b"notes from alpha", Some("notes.txt")).await;
    assert!(a.url.starts_with(&beta.url));
    ok::<Message>(alice.send_attached(general.id, "f1", &[&a.url]).await, 201).await;
    let resp = attachment(&bob, &a.id).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"notes from alpha");
    // Foreign actors may not use the RawR routes themselves (core §7.3.1: actors of this
    // server), but their attachments count on beta like anyone's.
    let rawr = alice.call(api::resource_usage::target(), &[], None).await;
    assert_eq!(rawr.status(), 403);
}

#[tokio::test]
async fn avatars_and_icons_are_public_images_of_whoever_sets_them() {
    let server = TestServer::start().await;
    let alice = Who::new(&server, "alice").await;
    let bob = Who::new(&server, "bob").await;
    let public = AccessProperties {
        public: true,
        ..AccessProperties::default()
    };
    let face = png(64, 64, false);
    let rid = |s: &str| s.parse::<ResourceId>().unwrap();
    alice
        .session
        .upload_resource(&rid("face"), &public, face.clone(), face.len() as u64)
        .await
        .unwrap();
    alice
        .session
        .upload_resource(
            &rid("secret"),
            &AccessProperties::default(),
            face.clone(),
            face.len() as u64,
        )
        .await
        .unwrap();
    alice
        .session
        .upload_resource(&rid("words"), &public, b"text".to_vec(), 4)
        .await
        .unwrap();
    let url = |rid: &str| format!("{}{}", server.url, api::get_resource::path(rid));
    async fn set_avatar(who: &Who<'_>, value: String) -> reqwest::Response {
        let body = json!({ "avatar": value });
        who.call(api::update_profile::target(), &[], Some(body))
            .await
    }

    let p: Profile = ok(set_avatar(&alice, url("face")).await, 200).await;
    assert_eq!(p.avatar, Some(url("face")));
    let seen: Profile = ok(
        bob.call(api::get_profile::target(&alice.fid()), &[], None)
            .await,
        200,
    )
    .await;
    assert_eq!(seen.avatar, Some(url("face")));
    // Not public, not an image, not hers, not here: refused, the avatar unchanged.
    for bad in [
        url("secret"),
        url("words"),
        url("nothing"),
        "https://elsewhere.example/.p2/core/v1/resource/face".to_owned(),
    ] {
        problem(
            set_avatar(&alice, bad).await,
            400,
            ErrorCode::MalformedRequest,
        )
        .await;
    }
    problem(
        set_avatar(&bob, url("face")).await,
        400,
        ErrorCode::MalformedRequest,
    )
    .await;
    let own: Profile = ok(
        alice.call(api::get_own_profile::target(), &[], None).await,
        200,
    )
    .await;
    assert_eq!(own.avatar, Some(url("face")));
    // Empty clears it.
    let p: Profile = ok(set_avatar(&alice, String::new()).await, 200).await;
    assert_eq!(p.avatar, None);

    // A guild's icon, the same way; anyone may fetch it without a session.
    let g: Guild = ok(
        alice
            .call(
                api::create_guild::target(),
                &[],
                Some(json!({"name": "pictured", "icon": url("face")})),
            )
            .await,
        201,
    )
    .await;
    assert_eq!(g.icon, Some(url("face")));
    let bytes = server
        .client()
        .raw()
        .get(url("face"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(bytes.as_ref(), face.as_slice());
    problem(
        alice
            .call(
                api::update_guild::target(g.id),
                &[],
                Some(json!({"icon": url("secret")})),
            )
            .await,
        400,
        ErrorCode::MalformedRequest,
    )
    .await;
    let cleared: Value = ok(
        alice
            .call(
                api::update_guild::target(g.id),
                &[],
                Some(json!({"icon": ""})),
            )
            .await,
        200,
    )
    .await;
    assert_eq!(cleared.get("icon"), None);
}
