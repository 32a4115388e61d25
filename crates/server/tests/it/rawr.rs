//! Resources (RawR, core §7.3.1): uploads with their limits and problems, reading by the
//! access properties, information, lists, usage, access changes and deletion — over HTTP,
//! through the SDK and raw requests.

use fugue_client::Session;
use fugue_proto::rawr::{AccessProperties, ResourceId, ResourceSort};
use fugue_proto::{ErrorCode, api};
use fugue_testkit::TestServer;

use crate::support::{assert_raw_problem, federated_pair, url};

fn rid(s: &str) -> ResourceId {
    s.parse().unwrap()
}

const PNG: &[u8] = &[
    0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, b'I', b'H', b'D', b'R', 0, 0, 0,
    1, 0, 0, 0, 1, 8, 6, 0, 0, 0,
];

async fn upload(s: &Session, id: &str, access: &AccessProperties, bytes: &[u8]) {
    s.upload_resource(&rid(id), access, bytes.to_vec(), bytes.len() as u64)
        .await
        .unwrap();
}

/// A raw upload request for `path_and_query`, as `token`.
fn raw_upload(server: &TestServer, token: &str, path_and_query: &str) -> reqwest::RequestBuilder {
    server
        .client()
        .raw()
        .post(url(server, path_and_query))
        .bearer_auth(token)
}

async fn read(server: &TestServer, token: Option<&str>, id: &str) -> reqwest::Response {
    let mut request = server
        .client()
        .raw()
        .get(url(server, &api::get_resource::path(id)));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn an_upload_reads_back_with_its_type_from_the_bytes_and_safe_headers() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    upload(&alice, "pic", &AccessProperties::default(), PNG).await;

    // Any session of this server reads a resource that is neither private nor public.
    let resp = read(&server, Some(bob.token()), "pic").await;
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert_eq!(h["content-type"], "image/png");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(
        h["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("sandbox")
    );
    assert_eq!(h["content-length"], PNG.len().to_string().as_str());
    let etag = h["etag"].to_str().unwrap().to_owned();
    assert_eq!(resp.bytes().await.unwrap().as_ref(), PNG);

    // Conditional requests answer 304 without the bytes.
    let again = server
        .client()
        .raw()
        .get(url(&server, &api::get_resource::path("pic")))
        .bearer_auth(bob.token())
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);

    // Without a session it is not readable: 401, as for what does not exist at all.
    assert_raw_problem(
        read(&server, None, "pic").await,
        401,
        ErrorCode::Unauthenticated,
    )
    .await;
    assert_raw_problem(
        read(&server, None, "nothing").await,
        401,
        ErrorCode::Unauthenticated,
    )
    .await;
    assert_raw_problem(
        read(&server, Some(bob.token()), "nothing").await,
        404,
        ErrorCode::ResourceNotFound,
    )
    .await;

    // The prose's path without `v1` (OP-28), and the info path with its trailing slash.
    let prose = server
        .client()
        .raw()
        .get(url(&server, &format!("{}pic", api::UNVERSIONED_RESOURCES)))
        .bearer_auth(bob.token())
        .send()
        .await
        .unwrap();
    assert_eq!(prose.status(), 200);
    assert_eq!(prose.bytes().await.unwrap().as_ref(), PNG);
    let info = server
        .client()
        .raw()
        .get(url(
            &server,
            &format!("{}/", api::resource_info::path("pic")),
        ))
        .bearer_auth(bob.token())
        .send()
        .await
        .unwrap();
    assert_eq!(info.status(), 200);
    let body: serde_json::Value = info.json().await.unwrap();
    assert_eq!(body[0]["resourceId"], "pic");
    assert_eq!(
        body[0]["size"],
        PNG.len().to_string(),
        "size is a string (OP-49)"
    );
    assert_eq!(body[0]["contentType"], "image/png");
    assert_eq!(body[0]["access"]["public"], false);

    // The extension of its type may follow the ID (core §7.3.2's example); another may not.
    assert_eq!(
        read(&server, Some(bob.token()), "pic.png").await.status(),
        200
    );
    assert_eq!(
        read(&server, Some(bob.token()), "pic.gif").await.status(),
        404
    );
}

#[tokio::test]
async fn active_content_is_never_served_inline() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let public = AccessProperties {
        public: true,
        ..Default::default()
    };
    let html = b"<!doctype html><script>alert(document.cookie)</script>";
    let svg = br#"<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>"#;
    upload(&alice, "page", &public, html).await;
    upload(&alice, "drawing", &public, svg).await;
    upload(&alice, "note", &public, "plain words".as_bytes()).await;
    for (id, bytes, kind) in [
        ("page", &html[..], "text/html"),
        ("drawing", &svg[..], "image/svg+xml"),
    ] {
        let resp = read(&server, None, id).await;
        assert_eq!(resp.status(), 200, "{id}");
        let h = resp.headers().clone();
        assert_eq!(h["content-type"], "application/octet-stream", "{id}");
        let disposition = h["content-disposition"].to_str().unwrap();
        assert!(disposition.starts_with("attachment"), "{id}: {disposition}");
        assert_eq!(resp.bytes().await.unwrap().as_ref(), bytes);
        let info = alice.resource_info(id).await.unwrap();
        assert_eq!(
            info.content_type.as_deref(),
            Some(kind),
            "the type names what it is"
        );
    }
    // Whatever the client claims.
    let lying = raw_upload(
        &server,
        alice.token(),
        &api::upload_resource::path(&rid("claims-png")),
    )
    .header("content-type", "image/png")
    .body(html.to_vec())
    .send()
    .await
    .unwrap();
    assert_eq!(lying.status(), 204);
    let resp = read(&server, Some(alice.token()), "claims-png").await;
    assert_eq!(resp.headers()["content-type"], "application/octet-stream");
    let text = read(&server, None, "note").await;
    assert_eq!(text.headers()["content-type"], "text/plain; charset=utf-8");
}

#[tokio::test]
async fn access_properties_decide_who_reads_and_absent_looks_like_forbidden() {
    // Beta stores; carol is alpha's, signed in on beta.
    let (alpha, beta) = federated_pair().await;
    let alice = beta.register("alice").await;
    let bob = beta.register("bob").await;
    let eve = beta.register("eve").await;
    let carol = alpha.register("carol").await;
    let carol_here = carol.sign_in_on(beta.client(), &beta.domain).await.unwrap();

    // The SDK's form style in the query (OP-29): private, allowlist bob and alpha's domain.
    let private = raw_upload(
        &beta,
        alice.token(),
        &format!(
            "{}?resourceAccessProperties=private,true,public,false,allowlist,{},{},denylist,",
            api::upload_resource::path(&rid("diary")),
            bob.fid(),
            alpha.domain
        ),
    )
    .body(b"dear diary".to_vec())
    .send()
    .await
    .unwrap();
    assert_eq!(private.status(), 204);

    assert_eq!(
        read(&beta, Some(alice.token()), "diary").await.status(),
        200
    );
    assert_eq!(read(&beta, Some(bob.token()), "diary").await.status(), 200);
    assert_eq!(
        read(&beta, Some(carol_here.token()), "diary")
            .await
            .status(),
        200,
        "by server"
    );
    let refused = read(&beta, Some(eve.token()), "diary").await;
    let absent = read(&beta, Some(eve.token()), "no-diary").await;
    assert_eq!(refused.status(), absent.status());
    let (refused, absent) = (
        assert_raw_problem(refused, 404, ErrorCode::ResourceNotFound).await,
        assert_raw_problem(absent, 404, ErrorCode::ResourceNotFound).await,
    );
    assert_eq!(
        refused.detail, absent.detail,
        "forbidden and absent answer alike"
    );
    assert_eq!(
        beta.client()
            .resource_info(Some(eve.token()), "diary")
            .await
            .unwrap_err()
            .code(),
        Some(ErrorCode::ResourceNotFound)
    );

    // The denylist wins over the allowlist; the owner always reads.
    let deny_carol = AccessProperties::from_query(&format!(
        "private,true,allowlist,{},denylist,{}",
        alpha.domain,
        carol.fid()
    ))
    .unwrap();
    alice
        .set_resource_access(&rid("diary"), &deny_carol)
        .await
        .unwrap();
    assert_eq!(
        read(&beta, Some(carol_here.token()), "diary")
            .await
            .status(),
        404
    );
    assert_eq!(
        read(&beta, Some(bob.token()), "diary").await.status(),
        404,
        "bob is off the list"
    );
    assert_eq!(
        read(&beta, Some(alice.token()), "diary").await.status(),
        200
    );

    // Public: anyone, no session, lists ignored.
    let public = AccessProperties {
        public: true,
        denylist: vec![fugue_proto::rawr::AccessEntry::Actor(eve.fid().clone())],
        ..Default::default()
    };
    alice
        .set_resource_access(&rid("diary"), &public)
        .await
        .unwrap();
    assert_eq!(read(&beta, None, "diary").await.status(), 200);
    assert_eq!(read(&beta, Some(eve.token()), "diary").await.status(), 200);
    let mut body = Vec::new();
    let got = beta
        .client()
        .download_resource(None, "diary", &mut body)
        .await
        .unwrap();
    assert_eq!((got.bytes, body.as_slice()), (10, &b"dear diary"[..]));

    // Only the owner changes or deletes it, and both properties at once are refused.
    let bobs = bob
        .set_resource_access(&rid("diary"), &AccessProperties::default())
        .await;
    assert_eq!(bobs.unwrap_err().code(), Some(ErrorCode::ResourceNotFound));
    assert_eq!(
        bob.delete_resource(&rid("diary")).await.unwrap_err().code(),
        Some(ErrorCode::ResourceNotFound)
    );
    let both = server_put_raw(
        &beta,
        alice.token(),
        "diary",
        r#"{"private":true,"public":true}"#,
    )
    .await;
    assert_raw_problem(both, 400, ErrorCode::MalformedRequest).await;
    assert_eq!(
        read(&beta, None, "diary").await.status(),
        200,
        "nothing changed"
    );
}

async fn server_put_raw(
    server: &TestServer,
    token: &str,
    id: &str,
    body: &str,
) -> reqwest::Response {
    server
        .client()
        .raw()
        .put(url(server, &api::set_resource_access::path(&rid(id))))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn bad_uploads_get_the_spec_s_problems_and_store_nothing() {
    let server = TestServer::start_with(|c| {
        c.media.max_upload_bytes = 1000;
        c.media.quota_bytes = 1500;
    })
    .await;
    let alice = server.register("alice").await;
    let path = |id: &str| api::upload_resource::path(&rid(id));

    // 414 with the spec's reason and limit.
    let long = "x".repeat(65);
    let resp = raw_upload(&server, alice.token(), &format!("{}{long}", api::RESOURCES))
        .body("x")
        .send()
        .await
        .unwrap();
    let p = assert_raw_problem(resp, 414, ErrorCode::RidTooLong).await;
    assert_eq!(p.extensions["reason"], "RID_TOO_LONG");
    assert_eq!(p.extensions["charLimit"], 64);
    for bad in ["..hidden", "resources%20x", "a%2Fb"] {
        let resp = raw_upload(&server, alice.token(), &format!("{}{bad}", api::RESOURCES))
            .body("x")
            .send()
            .await
            .unwrap();
        assert!(
            [400, 404, 405].contains(&resp.status().as_u16()),
            "{bad}: {}",
            resp.status()
        );
    }
    let resp = raw_upload(
        &server,
        alice.token(),
        &format!("{}.hidden", api::RESOURCES),
    )
    .body("x")
    .send()
    .await
    .unwrap();
    assert_raw_problem(resp, 400, ErrorCode::InvalidRid).await;

    // 411 without Content-Length (a streamed body is sent chunked).
    let chunks = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(vec![1u8; 10])]);
    let resp = raw_upload(&server, alice.token(), &path("chunked"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_raw_problem(resp, 411, ErrorCode::LengthRequired).await;

    // 413: beyond one upload, and beyond the storage left, before a byte is stored.
    let resp = raw_upload(&server, alice.token(), &path("big"))
        .body(vec![0u8; 1001])
        .send()
        .await
        .unwrap();
    let p = assert_raw_problem(resp, 413, ErrorCode::TooLarge).await;
    assert_eq!(p.extensions["reason"], "TOO_LARGE");
    assert_eq!(p.extensions["remainingStorageBytes"], "1500");
    upload(&alice, "first", &AccessProperties::default(), &[7u8; 900]).await;
    let resp = raw_upload(&server, alice.token(), &path("second"))
        .body(vec![8u8; 700])
        .send()
        .await
        .unwrap();
    let p = assert_raw_problem(resp, 413, ErrorCode::TooLarge).await;
    assert_eq!(p.extensions["remainingStorageBytes"], "600");

    // 409 for a taken ID, whoever holds it; the first stays as it was.
    let bob = server.register("bob").await;
    let resp = raw_upload(&server, bob.token(), &path("first"))
        .body(vec![9u8; 5])
        .send()
        .await
        .unwrap();
    assert_raw_problem(resp, 409, ErrorCode::DuplicateRid).await;

    // Properties that do not parse.
    let resp = raw_upload(
        &server,
        alice.token(),
        &format!(
            "{}?resourceAccessProperties=private,true,public,true",
            path("both")
        ),
    )
    .body("x")
    .send()
    .await
    .unwrap();
    assert_raw_problem(resp, 400, ErrorCode::MalformedRequest).await;

    let usage = alice.resource_usage().await.unwrap();
    assert_eq!((usage.limit, usage.used), (1500, 900));
    let list = alice
        .resources(None, ResourceSort::NewestFirst, false)
        .await
        .unwrap();
    assert_eq!(list.len(), 1, "only the good upload is stored: {list:?}");
    let mut first = Vec::new();
    alice.download_resource("first", &mut first).await.unwrap();
    assert_eq!(first, vec![7u8; 900]);
    assert_eq!(
        std::fs::read_dir(server_media_tmp(&server))
            .unwrap()
            .count(),
        0,
        "no temporary file is left"
    );
}

/// The media directory's `tmp/` of a test server.
fn server_media_tmp(server: &TestServer) -> std::path::PathBuf {
    server.media_dir().join("tmp")
}

#[tokio::test]
async fn a_body_shorter_than_announced_stores_nothing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-length: 100000\r\n\r\n",
        api::upload_resource::path(&rid("cut")),
        alice.token()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(&[1u8; 5000]).await.unwrap();
    tcp.shutdown().await.unwrap();
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer).await;
    // The upload never completed: nothing is stored, no temporary file stays.
    for _ in 0..50 {
        if std::fs::read_dir(server_media_tmp(&server))
            .unwrap()
            .count()
            == 0
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        std::fs::read_dir(server_media_tmp(&server))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(
        alice.resource_info("cut").await.unwrap_err().code(),
        Some(ErrorCode::ResourceNotFound)
    );
    assert_eq!(alice.resource_usage().await.unwrap().used, 0);
}

#[tokio::test]
async fn equal_content_is_stored_once_and_goes_with_its_last_resource() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let bytes = b"the same bytes, twice".to_vec();
    upload(&alice, "one", &AccessProperties::default(), &bytes).await;
    upload(&bob, "two", &AccessProperties::default(), &bytes).await;
    upload(
        &bob,
        "other",
        &AccessProperties::default(),
        b"something else",
    )
    .await;
    let objects = || count_objects(&server.media_dir().join("objects"));
    assert_eq!(objects(), 2, "equal bytes are one object");
    // Each owner is charged in full: nobody learns whether someone else stored the same.
    assert_eq!(
        alice.resource_usage().await.unwrap().used,
        bytes.len() as u64
    );
    assert_eq!(
        bob.resource_usage().await.unwrap().used,
        (bytes.len() + 14) as u64
    );
    alice.delete_resource(&rid("one")).await.unwrap();
    assert_eq!(objects(), 2, "bob's resource still uses it");
    let mut two = Vec::new();
    bob.download_resource("two", &mut two).await.unwrap();
    assert_eq!(two, bytes);
    bob.delete_resource(&rid("two")).await.unwrap();
    assert_eq!(objects(), 1, "the last one took the bytes with it");
    assert_eq!(
        bob.delete_resource(&rid("two")).await.unwrap_err().code(),
        Some(ErrorCode::ResourceNotFound)
    );
    // The ID is free again.
    upload(&alice, "two", &AccessProperties::default(), b"new").await;
}

fn count_objects(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|shard| std::fs::read_dir(shard.unwrap().path()).unwrap().count())
        .sum()
}

#[tokio::test]
async fn lists_sort_limit_and_preview() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    assert!(
        alice
            .resources(None, ResourceSort::NewestFirst, false)
            .await
            .unwrap()
            .is_empty()
    );
    let open = AccessProperties::default();
    upload(&alice, "small", &open, b"ab").await;
    upload(&alice, "large", &open, &[0u8; 300]).await;
    upload(&alice, "image", &open, PNG).await;
    let ids = |list: Vec<fugue_proto::rawr::ResourceListEntry>| {
        list.into_iter()
            .map(|e| e.resource_information.resource_id.to_string())
            .collect::<Vec<_>>()
    };
    let by_size = alice
        .resources(None, ResourceSort::SizeAsc, false)
        .await
        .unwrap();
    assert_eq!(ids(by_size), ["small", "image", "large"]);
    let by_size = alice
        .resources(None, ResourceSort::SizeDesc, false)
        .await
        .unwrap();
    assert_eq!(ids(by_size), ["large", "image", "small"]);
    let two = alice
        .resources(Some(2), ResourceSort::SizeDesc, false)
        .await
        .unwrap();
    assert_eq!(ids(two), ["large", "image"]);
    let with = alice
        .resources(None, ResourceSort::SizeAsc, true)
        .await
        .unwrap();
    let image = with
        .iter()
        .find(|e| e.resource_information.resource_id.as_str() == "image")
        .unwrap();
    let preview = image.preview.as_ref().expect("an image has a preview");
    use base64::Engine;
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(&preview.contents)
            .unwrap(),
        PNG
    );
    let large = with
        .iter()
        .find(|e| e.resource_information.resource_id.as_str() == "large")
        .unwrap();
    assert!(large.preview.is_none(), "binary content has no preview");
    let too_many = server
        .client()
        .raw()
        .get(url(
            &server,
            &format!("{}?limit=1001", api::list_resources::PATH),
        ))
        .bearer_auth(alice.token())
        .send()
        .await
        .unwrap();
    assert_raw_problem(too_many, 400, ErrorCode::MalformedRequest).await;
    // Only one's own.
    let bob = server.register("bob").await;
    assert!(
        bob.resources(None, ResourceSort::NewestFirst, false)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn actors_of_other_servers_read_but_do_not_upload() {
    let (alpha, beta) = federated_pair().await;
    let carol = alpha.register("carol").await;
    let carol_here = carol.sign_in_on(beta.client(), &beta.domain).await.unwrap();
    let resp = raw_upload(
        &beta,
        carol_here.token(),
        &api::upload_resource::path(&rid("x")),
    )
    .body("x")
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 403);
}

#[tokio::test]
async fn a_server_without_a_media_directory_answers_404() {
    let server = TestServer::start_with(|c| c.media.dir = None).await;
    let alice = server.register("alice").await;
    let err = alice
        .upload_resource(&rid("x"), &AccessProperties::default(), b"x".to_vec(), 1)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound));
    assert_eq!(
        alice.resource_usage().await.unwrap_err().code(),
        Some(ErrorCode::NotFound)
    );
}

#[tokio::test]
async fn the_reference_sdk_uploads_reads_lists_and_deletes() {
    use polyproto::api::{HttpClient, Session as SdkSession};
    use polyproto::types::{Identifer, Resource, ResourceAccessProperties};
    use polyproto::url::Url;

    use crate::interop::{Ed25519PrivateKey, Ed25519Signature};

    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let http = HttpClient::new().unwrap();
    let host = Url::parse(&server.url).unwrap();
    let sdk = SdkSession::<Ed25519Signature, Ed25519PrivateKey>::new(
        &http,
        alice.token(),
        host.clone(),
        None,
    );
    let bob_fid = Identifer::FederationId(
        polyproto::types::FederationId::new(&bob.fid().to_string()).unwrap(),
    );
    let private = ResourceAccessProperties {
        private: true,
        public: false,
        allowlist: vec![bob_fid.clone()],
        denylist: vec![],
    };
    let resource = |bytes: &[u8]| Resource {
        content_type: None,
        filename: None,
        contents: bytes.to_vec(),
    };
    sdk.upload_rawr_resource(resource(PNG), "sdk-pic", private.clone())
        .await
        .unwrap();
    sdk.upload_rawr_resource(
        resource(b"two"),
        "sdk-note",
        ResourceAccessProperties {
            private: false,
            public: true,
            allowlist: vec![],
            denylist: vec![],
        },
    )
    .await
    .unwrap();
    // Our server read the SDK's form-style properties as it meant them.
    let info = alice.resource_info("sdk-pic").await.unwrap();
    assert!(info.access.private && !info.access.public);
    assert_eq!(info.access.allowlist.len(), 1);
    assert_eq!(info.access.allowlist[0].to_string(), bob.fid().to_string());

    // And the SDK reads our answers: bytes, information (`size` as a string), the list.
    let bytes = http
        .get_rawr_resource_by_id("sdk-pic", Some(bob.token().to_owned()), &host)
        .await
        .unwrap();
    assert_eq!(bytes, PNG);
    let public = http
        .get_rawr_resource_by_id("sdk-note", None, &host)
        .await
        .unwrap();
    assert_eq!(public, b"two");
    assert!(
        http.get_rawr_resource_by_id("sdk-pic", None, &host)
            .await
            .is_err()
    );
    let infos = http
        .get_rawr_resource_info_by_id(&host, "sdk-pic", Some(bob.token().to_owned()))
        .await
        .unwrap();
    assert_eq!(infos.len(), 1);
    assert_eq!(infos[0].resource_id, "sdk-pic");
    assert_eq!(infos[0].size, PNG.len() as u64);
    assert_eq!(infos[0].access, private);
    let listed = sdk
        .list_uploaded_rawr_resources(Some(10), None) // its `Ordering` is not exported
        .await
        .unwrap();
    let mut ids: Vec<_> = listed.iter().map(|i| i.resource_id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["sdk-note", "sdk-pic"]);

    let open = ResourceAccessProperties {
        private: false,
        public: false,
        allowlist: vec![],
        denylist: vec![bob_fid],
    };
    sdk.update_rawr_resource_access("sdk-pic", open)
        .await
        .unwrap();
    assert!(
        http.get_rawr_resource_by_id("sdk-pic", Some(bob.token().to_owned()), &host)
            .await
            .is_err(),
        "bob is denied now"
    );
    sdk.delete_rawr_resource("sdk-pic").await.unwrap();
    assert_eq!(
        alice.resource_info("sdk-pic").await.unwrap_err().code(),
        Some(ErrorCode::ResourceNotFound)
    );
}
