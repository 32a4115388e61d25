//! Resources and attachments in an S3-compatible bucket — a real Garage the test starts:
//! small and multipart uploads read back whole, equal content stored once, thumbnails as
//! objects of their own, deletions that free their objects, an upload cut short that leaves
//! no object, and two nodes that share the bucket.

use fugue_proto::api;
use fugue_proto::chat::Attachment;
use fugue_proto::rawr::{AccessProperties, ResourceId};
use fugue_server::config;
use fugue_server::media::Objects;
use fugue_testkit::TestServer;
use fugue_testkit::garage::Garage;

use crate::chat_support::{Who, ok, png};

fn rid(s: &str) -> ResourceId {
    s.parse().unwrap()
}

/// The keys of every object in the bucket.
async fn objects(garage: &Garage) -> Vec<String> {
    let mut media = config::Media::default();
    garage.configure(&mut media);
    let bucket = Objects::open(&media).await.unwrap().unwrap();
    let mut keys = bucket.older_than(std::time::Duration::ZERO).await.unwrap();
    keys.sort();
    keys
}

/// Varied bytes, so that a part sent twice or out of order shows.
fn bytes(n: usize, seed: u32) -> Vec<u8> {
    (0..n as u32)
        .map(|i| (i.wrapping_mul(31).wrapping_add(seed) % 251) as u8)
        .collect()
}

#[tokio::test]
async fn resources_and_attachments_live_in_the_bucket() {
    let garage = Garage::start().await;
    let server = TestServer::start_with(|c| garage.configure(&mut c.media)).await;
    let alice = server.register("alice").await;
    let anyone = AccessProperties::default();

    // One PUT, and a multipart upload of three parts (8 + 8 + 4 MiB and a few bytes).
    let small = bytes(1000, 1);
    let large = bytes(20 * 1024 * 1024 + 123, 2);
    for (name, content) in [("small", &small), ("large", &large)] {
        alice
            .upload_resource(&rid(name), &anyone, content.clone(), content.len() as u64)
            .await
            .unwrap();
        let mut back = Vec::new();
        let got = alice.download_resource(name, &mut back).await.unwrap();
        assert_eq!(got.bytes, content.len() as u64, "{name}");
        assert!(back == *content, "{name} came back changed");
    }
    assert_eq!(objects(&garage).await.len(), 2);
    // Nothing is written to the media directory.
    assert!(!server.media_dir().join("objects").exists());

    // The same content again is stored once.
    alice
        .upload_resource(&rid("again"), &anyone, large.clone(), large.len() as u64)
        .await
        .unwrap();
    assert_eq!(objects(&garage).await.len(), 2);

    // An image attachment: the image and its thumbnail, described from the bucket.
    let who = Who::of(&server, alice.clone());
    let a: Attachment = ok(
        who.upload_attachment(&png(800, 600, false), Some("wide.png"))
            .await,
        201,
    )
    .await;
    assert_eq!((a.width, a.height), (Some(800), Some(600)));
    assert!(a.thumbnail.is_some());
    assert_eq!(objects(&garage).await.len(), 4);
    let thumb = server
        .client()
        .raw()
        .get(format!(
            "{}{}",
            server.url,
            api::attachment_thumbnail::path(&a.id)
        ))
        .bearer_auth(alice.token())
        .send()
        .await
        .unwrap();
    assert_eq!(thumb.status(), 200);
    let small_image = image::load_from_memory(&thumb.bytes().await.unwrap()).unwrap();
    assert_eq!((small_image.width(), small_image.height()), (400, 300));

    // Deleting frees the objects no resource uses any more.
    alice.delete_resource(&rid("large")).await.unwrap();
    assert_eq!(objects(&garage).await.len(), 4, "\"again\" still uses it");
    alice.delete_resource(&rid("again")).await.unwrap();
    alice.delete_resource(&rid(&a.id)).await.unwrap();
    assert_eq!(objects(&garage).await.len(), 1);
    alice.delete_resource(&rid("small")).await.unwrap();
    assert!(objects(&garage).await.is_empty());
}

#[tokio::test]
async fn an_upload_cut_short_leaves_no_object() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let garage = Garage::start().await;
    let server = TestServer::start_with(|c| garage.configure(&mut c.media)).await;
    let alice = server.register("alice").await;
    // Announced 20 MiB, cut off after 12: one part went up, the upload is never completed.
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-length: {}\r\n\r\n",
        api::upload_resource::path(&rid("cut")),
        alice.token(),
        20 * 1024 * 1024
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(&bytes(12 * 1024 * 1024, 3)).await.unwrap();
    tcp.shutdown().await.unwrap();
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer).await;
    assert!(objects(&garage).await.is_empty());
    assert!(alice.resource_info("cut").await.is_err());
    assert_eq!(alice.resource_usage().await.unwrap().used, 0);
}

#[tokio::test]
async fn nodes_share_one_bucket() {
    let garage = Garage::start().await;
    let nodes = TestServer::start_cluster(2, |c| garage.configure(&mut c.media)).await;
    let alice = nodes[0].register("alice").await;
    let content = bytes(300_000, 4);
    alice
        .upload_resource(
            &rid("shared"),
            &AccessProperties::default(),
            content.clone(),
            content.len() as u64,
        )
        .await
        .unwrap();
    // Read on the other node, which has no disk in common with the first.
    let mut back = Vec::new();
    nodes[1]
        .client()
        .download_resource(Some(alice.token()), "shared", &mut back)
        .await
        .unwrap();
    assert!(back == content);
}
