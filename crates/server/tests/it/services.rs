//! Service discovery (core §9, DIGEST §8, OP-35): listing providers, the primary provider of
//! each service, sensitive changes, discovery by anyone and the reference SDK's JSON shapes.

use fugue_client::Session;
use fugue_proto::api::{self, discover_service, discover_services, set_primary_provider};
use fugue_proto::services::{NewPrimary, ProviderUrl, Service, ServiceName};
use fugue_proto::{ErrorCode, FederationId};
use fugue_testkit::{PASSWORD, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{assert_problem, assert_raw_problem, federated_pair, url};

fn name(s: &str) -> ServiceName {
    s.parse().unwrap()
}

fn provider(s: &str) -> ProviderUrl {
    s.parse().unwrap()
}

fn service(n: &str, u: &str, primary: bool) -> Service {
    Service {
        service: name(n),
        url: provider(u),
        primary,
    }
}

async fn add(session: &Session, n: &str, u: &str) -> Service {
    session
        .add_service(&name(n), &provider(u), false, None)
        .await
        .unwrap()
}

fn discover_path(fid: &FederationId, n: Option<&str>) -> String {
    match n {
        Some(n) => discover_service::path(fid, &name(n)),
        None => discover_services::path(fid),
    }
}

/// A body that must be RFC 8785 canonical JSON; returns it parsed.
async fn canonical(resp: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(resp.status(), status);
    let bytes = resp.bytes().await.unwrap();
    let value: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        bytes.as_ref(),
        fugue_proto::wire::to_canonical_vec(&value)
            .unwrap()
            .as_slice(),
        "not canonical: {}",
        String::from_utf8_lossy(&bytes)
    );
    value
}

#[tokio::test]
async fn the_first_provider_of_a_service_becomes_primary_and_anyone_discovers_them() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    assert_eq!(
        add(&alice, "chat", "https://a.example").await,
        service("chat", "https://a.example", true)
    );
    assert_eq!(
        add(&alice, "chat", "https://b.example").await,
        service("chat", "https://b.example", false)
    );
    assert_eq!(
        add(&alice, "mls", "https://m.example").await,
        service("mls", "https://m.example", true)
    );

    // Without a token: primary providers first, canonical JSON.
    let fid = server.fid("alice");
    let resp = server.get(&discover_path(&fid, None)).await;
    let body = canonical(resp, StatusCode::OK).await;
    assert_eq!(
        body,
        json!([
            {"service": "chat", "url": "https://a.example", "primary": true},
            {"service": "mls", "url": "https://m.example", "primary": true},
            {"service": "chat", "url": "https://b.example", "primary": false},
        ])
    );
    let resp = server.get(&discover_path(&fid, Some("chat"))).await;
    let body = canonical(resp, StatusCode::OK).await;
    assert_eq!(
        body,
        json!([
            {"service": "chat", "url": "https://a.example", "primary": true},
            {"service": "chat", "url": "https://b.example", "primary": false},
        ])
    );

    // limit=1: the primary provider of each service; a larger limit caps the list.
    let client = server.client();
    let primaries = client.discover_services(&fid, None, Some(1)).await.unwrap();
    assert_eq!(
        primaries,
        vec![
            service("chat", "https://a.example", true),
            service("mls", "https://m.example", true)
        ]
    );
    let one = client
        .discover_services(&fid, Some(&name("chat")), Some(1))
        .await
        .unwrap();
    assert_eq!(one, vec![service("chat", "https://a.example", true)]);
    assert_eq!(
        client.discover_services(&fid, None, Some(2)).await.unwrap(),
        primaries
    );
    assert_eq!(
        client
            .discover_services(&fid, None, Some(50))
            .await
            .unwrap()
            .len(),
        3
    );
    let resp = server
        .get(&format!("{}?limit=1", discover_path(&fid, Some("mls"))))
        .await;
    let body = canonical(resp, StatusCode::OK).await;
    assert_eq!(
        body,
        json!([{"service": "mls", "url": "https://m.example", "primary": true}])
    );

    // The session's own view, and another actor's list is separate.
    assert_eq!(alice.services().await.unwrap().len(), 3);
    let bob = server.register("bob").await;
    assert_eq!(
        add(&bob, "chat", "https://b.example").await,
        service("chat", "https://b.example", true)
    );
    assert_eq!(bob.services().await.unwrap().len(), 1);
}

#[tokio::test]
async fn chat_comes_with_the_account_other_services_are_204_when_empty_and_strangers_404() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let fid = server.fid("alice");
    // A new account chats on its home server until it lists a chat provider of its own.
    let home = service("chat", &server.url, true);
    assert_eq!(alice.services().await.unwrap(), vec![home.clone()]);
    let resp = server.get(&discover_path(&fid, Some("mls"))).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(resp.bytes().await.unwrap().is_empty());
    // Another service's providers are not these.
    add(&alice, "mls", "https://m.example").await;
    let resp = server.get(&discover_path(&fid, Some("chat"))).await;
    assert_eq!(resp.status(), StatusCode::OK);
    // A chat provider listed replaces the home server's.
    add(&alice, "chat", "https://c.example").await;
    let listed: Vec<_> = alice
        .services()
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.service.as_str() == "chat")
        .collect();
    assert_eq!(listed, vec![service("chat", "https://c.example", true)]);

    for who in ["nobody@localhost", "alice@other.example", "not-a-fid"] {
        for path in [
            discover_services::PATH.replace("{fid}", who),
            discover_service::PATH
                .replace("{fid}", who)
                .replace("{service}", "chat"),
        ] {
            assert_raw_problem(server.get(&path).await, 404, ErrorCode::ActorNotFound).await;
        }
    }
    let unknown: FederationId = "nobody@localhost".parse().unwrap();
    assert_problem(
        server
            .client()
            .discover_services(&unknown, None, None)
            .await,
        404,
        ErrorCode::ActorNotFound,
    );

    // Bad service names and limits are bad requests.
    let path = discover_service::PATH
        .replace("{fid}", "alice@localhost")
        .replace("{service}", "Chat");
    assert_raw_problem(server.get(&path).await, 400, ErrorCode::InvalidServiceName).await;
    for limit in ["0", "-1", "x"] {
        let path = format!("{}?limit={limit}", discover_path(&fid, None));
        assert_raw_problem(server.get(&path).await, 400, ErrorCode::MalformedRequest).await;
    }
}

#[tokio::test]
async fn a_provider_is_listed_once_and_names_and_urls_follow_the_rules() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    add(&alice, "chat", "https://chat.example/base").await;
    // The same provider, written another way, is the same provider.
    for same in [
        "https://chat.example/base",
        "https://chat.example/base/",
        "HTTPS://Chat.Example/base",
    ] {
        assert_problem(
            alice
                .add_service(&name("chat"), &provider(same), false, None)
                .await,
            409,
            ErrorCode::ServiceExists,
        );
    }
    // Another service may use the same provider.
    add(&alice, "mls", "https://chat.example/base").await;

    let post = |body: Value| {
        alice
            .client()
            .raw()
            .post(url(&server, api::register_service::PATH))
            .bearer_auth(alice.token())
            .json(&body)
            .send()
    };
    for bad in ["Chat", "c", "chat!", "ch at"] {
        let resp = post(
            json!({"service": {"service": bad, "url": "https://x.example", "primary": false}}),
        )
        .await
        .unwrap();
        assert_raw_problem(resp, 400, ErrorCode::InvalidServiceName).await;
    }
    for bad in [
        "x.example",
        "ftp://x.example",
        "https://user:secret@x.example",
        "https://x.example/?q=1",
        "https://x.example/#top",
    ] {
        let resp = post(json!({"service": {"service": "chat", "url": bad, "primary": false}}))
            .await
            .unwrap();
        assert_raw_problem(resp, 400, ErrorCode::InvalidServiceUrl).await;
    }
    let resp = post(json!({"url": "https://x.example"})).await.unwrap();
    assert_raw_problem(resp, 400, ErrorCode::MalformedRequest).await;
    // Without a token nothing changes.
    let resp = server
        .client()
        .raw()
        .post(url(&server, api::register_service::PATH))
        .json(
            &json!({"service": {"service": "chat", "url": "https://x.example", "primary": false}}),
        )
        .send()
        .await
        .unwrap();
    assert_raw_problem(resp, 401, ErrorCode::Unauthenticated).await;
    assert_eq!(alice.services().await.unwrap().len(), 2);
}

#[tokio::test]
async fn changing_the_primary_provider_is_sensitive_and_answers_the_old_and_the_new_one() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    add(&alice, "chat", "https://a.example").await;
    add(&alice, "chat", "https://b.example").await;
    let body = json!({"url": "https://b.example", "name": "chat"});
    let put = |body: Value, solution: Option<&'static str>| {
        let mut request = alice
            .client()
            .raw()
            .put(url(&server, set_primary_provider::PATH))
            .bearer_auth(alice.token())
            .json(&body);
        if let Some(s) = solution {
            request = request.header(api::SENSITIVE_HEADER, s);
        }
        request.send()
    };

    let resp = put(body.clone(), None).await.unwrap();
    assert_raw_problem(resp, 401, ErrorCode::SensitiveSolutionRequired).await;
    assert_problem(
        alice
            .set_primary_service(&name("chat"), &provider("https://b.example"), "wrong")
            .await,
        403,
        ErrorCode::SensitiveSolutionInvalid,
    );
    // Only listed providers can become primary.
    for missing in [
        json!({"url": "https://c.example", "name": "chat"}),
        json!({"url": "https://b.example", "name": "mls"}),
    ] {
        let resp = put(missing, Some(PASSWORD)).await.unwrap();
        assert_raw_problem(resp, 404, ErrorCode::ServiceNotFound).await;
    }
    let resp = put(
        json!({"url": "https://b.example", "name": "Chat"}),
        Some(PASSWORD),
    )
    .await
    .unwrap();
    assert_raw_problem(resp, 400, ErrorCode::InvalidServiceName).await;
    assert_eq!(
        server
            .client()
            .discover_services(&server.fid("alice"), None, Some(1))
            .await
            .unwrap(),
        vec![service("chat", "https://a.example", true)]
    );

    let resp = put(body.clone(), Some(PASSWORD)).await.unwrap();
    assert_eq!(
        canonical(resp, StatusCode::OK).await,
        json!([
            {"service": "chat", "url": "https://a.example", "primary": false},
            {"service": "chat", "url": "https://b.example", "primary": true},
        ])
    );
    // Choosing the primary one again changes nothing else.
    assert_eq!(
        alice
            .set_primary_service(&name("chat"), &provider("https://b.example/"), PASSWORD)
            .await
            .unwrap(),
        vec![service("chat", "https://b.example", true)]
    );
    assert_eq!(
        alice.services().await.unwrap(),
        vec![
            service("chat", "https://b.example", true),
            service("chat", "https://a.example", false)
        ]
    );
}

#[tokio::test]
async fn asking_for_the_primary_when_adding_replaces_the_current_one_only_with_the_second_factor() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    // The first provider of a service is primary whether it asked or not.
    assert!(
        alice
            .add_service(&name("chat"), &provider("https://a.example"), true, None)
            .await
            .unwrap()
            .primary
    );
    let b = provider("https://b.example");
    assert_problem(
        alice.add_service(&name("chat"), &b, true, None).await,
        401,
        ErrorCode::SensitiveSolutionRequired,
    );
    assert_problem(
        alice
            .add_service(&name("chat"), &b, true, Some("wrong"))
            .await,
        403,
        ErrorCode::SensitiveSolutionInvalid,
    );
    assert_eq!(alice.services().await.unwrap().len(), 1);
    assert_eq!(
        alice
            .add_service(&name("chat"), &b, true, Some(PASSWORD))
            .await
            .unwrap(),
        service("chat", "https://b.example", true)
    );
    assert_eq!(
        alice.services().await.unwrap(),
        vec![
            service("chat", "https://b.example", true),
            service("chat", "https://a.example", false)
        ]
    );
    // A duplicate is a conflict before any second factor is asked for.
    assert_problem(
        alice
            .add_service(&name("chat"), &provider("https://a.example"), true, None)
            .await,
        409,
        ErrorCode::ServiceExists,
    );
}

#[tokio::test]
async fn removing_the_primary_provider_is_sensitive_and_promotes_the_oldest_remaining_one() {
    let (server, clock) = TestServer::start_with_clock().await;
    let alice = server.register("alice").await;
    // Ages differ from the alphabetical order: the oldest remaining one is z, not m.
    for u in [
        "https://a.example",
        "https://z.example",
        "https://m.example",
        "https://n.example",
    ] {
        add(&alice, "chat", u).await;
        clock.advance(10);
    }
    add(&alice, "mls", "https://mls.example").await;
    let delete = |query: String, solution: Option<&'static str>| {
        let mut request = alice
            .client()
            .raw()
            .delete(url(
                &server,
                &format!("{}?{query}", api::unregister_service::PATH),
            ))
            .bearer_auth(alice.token());
        if let Some(s) = solution {
            request = request.header(api::SENSITIVE_HEADER, s);
        }
        request.send()
    };

    // A provider that is not primary goes without a second factor, and nobody is promoted.
    let resp = delete("url=https://n.example&name=chat".into(), None)
        .await
        .unwrap();
    assert_eq!(canonical(resp, StatusCode::OK).await, json!([]));

    // The primary one needs it.
    let primary = "url=https%3A%2F%2Fa.example&name=chat".to_owned();
    let resp = delete(primary.clone(), None).await.unwrap();
    assert_raw_problem(resp, 401, ErrorCode::SensitiveSolutionRequired).await;
    let resp = delete(primary.clone(), Some("wrong")).await.unwrap();
    assert_raw_problem(resp, 403, ErrorCode::SensitiveSolutionInvalid).await;
    assert_eq!(alice.services().await.unwrap().len(), 4);

    let resp = delete(primary, Some(PASSWORD)).await.unwrap();
    assert_eq!(
        canonical(resp, StatusCode::OK).await,
        json!([{"service": "chat", "new_primary": "https://z.example", "newPrimary": "https://z.example"}])
    );
    assert_eq!(
        alice.services().await.unwrap(),
        vec![
            service("chat", "https://z.example", true),
            service("mls", "https://mls.example", true),
            service("chat", "https://m.example", false)
        ]
    );

    // The last provider of a service leaves nobody to promote.
    let gone = alice
        .remove_services(
            &[(name("mls"), provider("https://mls.example"))],
            Some(PASSWORD),
        )
        .await
        .unwrap();
    assert_eq!(gone, vec![]);
    assert_eq!(
        alice.services().await.unwrap(),
        vec![
            service("chat", "https://z.example", true),
            service("chat", "https://m.example", false)
        ]
    );
}

#[tokio::test]
async fn removals_are_all_or_nothing_and_check_their_lists() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    add(&alice, "chat", "https://a.example").await;
    add(&alice, "chat", "https://b.example/x,y").await;
    add(&alice, "mls", "https://m.example").await;

    // One provider that is not listed fails the whole request.
    assert_problem(
        alice
            .remove_services(
                &[
                    (name("chat"), provider("https://b.example/x,y")),
                    (name("chat"), provider("https://nope.example")),
                ],
                Some(PASSWORD),
            )
            .await,
        404,
        ErrorCode::ServiceNotFound,
    );
    assert_eq!(alice.services().await.unwrap().len(), 3);

    let raw = |query: &str| {
        alice
            .client()
            .raw()
            .delete(url(
                &server,
                &format!("{}{query}", api::unregister_service::PATH),
            ))
            .bearer_auth(alice.token())
            .header(api::SENSITIVE_HEADER, PASSWORD)
            .send()
    };
    for bad in [
        "",
        "?url=https://a.example",
        "?name=chat,mls&url=https://a.example",
        "?url=%zz&name=chat",
    ] {
        assert_raw_problem(raw(bad).await.unwrap(), 400, ErrorCode::MalformedRequest).await;
    }
    assert_raw_problem(
        raw("?url=https://a.example&name=Chat").await.unwrap(),
        400,
        ErrorCode::InvalidServiceName,
    )
    .await;
    assert_raw_problem(
        raw("?url=a.example&name=chat").await.unwrap(),
        400,
        ErrorCode::InvalidServiceUrl,
    )
    .await;

    // Several at once, comma-joined as beta.3 writes them; a comma inside a URL is encoded.
    let resp = raw("?url=https%3A%2F%2Fb.example%2Fx%2Cy,https://m.example&name=chat,mls")
        .await
        .unwrap();
    assert_eq!(canonical(resp, StatusCode::OK).await, json!([]));
    assert_eq!(
        alice.services().await.unwrap(),
        vec![service("chat", "https://a.example", true)]
    );
    // Repeated parameters work as well, and a provider named twice is removed once.
    let resp = raw("?url=https://a.example&name=chat&url=https://A.example/&name=chat")
        .await
        .unwrap();
    assert_eq!(canonical(resp, StatusCode::OK).await, json!([]));
    // With no chat provider listed, the home server is the one again.
    assert_eq!(
        alice.services().await.unwrap(),
        vec![service("chat", &server.url, true)]
    );
    let resp = alice
        .client()
        .raw()
        .delete(url(
            &server,
            &format!(
                "{}?url=https://a.example&name=chat",
                api::unregister_service::PATH
            ),
        ))
        .send()
        .await
        .unwrap();
    assert_raw_problem(resp, 401, ErrorCode::Unauthenticated).await;
}

#[tokio::test]
async fn an_actor_lists_at_most_128_providers() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    for i in 0..128 {
        add(&alice, "chat", &format!("https://p{i}.example")).await;
    }
    assert_problem(
        alice
            .add_service(&name("mls"), &provider("https://m.example"), false, None)
            .await,
        409,
        ErrorCode::TooManyServices,
    );
    alice
        .remove_services(&[(name("chat"), provider("https://p5.example"))], None)
        .await
        .unwrap();
    add(&alice, "mls", "https://m.example").await;
}

#[tokio::test]
async fn the_reference_sdk_shapes_are_accepted_and_its_delete_answer_parses() {
    use polyproto::api::core::ServiceDeleteResponse;
    use polyproto::api::{HttpClient, Session as SdkSession};
    use polyproto::types::{Service as SdkService, ServiceName as SdkName};
    use polyproto::url::Url;

    use crate::interop::{Ed25519PrivateKey, Ed25519Signature};

    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let raw = alice.client().raw().clone();

    // What `add_discoverable_service` sends, byte for byte: no Content-Type, the name as
    // {"inner": …}, the URL as `url::Url` writes it (with a trailing slash).
    let body = r#"{"service":{"service":{"inner":"chat"},"url":"https://chat.example.com/","primary":true}}"#;
    let resp = raw
        .post(url(&server, api::register_service::PATH))
        .bearer_auth(alice.token())
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        canonical(resp, StatusCode::CREATED).await,
        json!({"service": "chat", "url": "https://chat.example.com", "primary": true})
    );

    // The SDK itself: its requests are understood. (It cannot read our answers to these,
    // because it expects names as {"inner": …}: SDK-COMPAT §2.2, a crate bug.)
    let sdk = SdkSession::<Ed25519Signature, Ed25519PrivateKey>::new(
        &HttpClient::new().unwrap(),
        alice.token(),
        Url::parse(&server.url).unwrap(),
        None,
    );
    let second =
        SdkService::new("chat", Url::parse("https://two.example").unwrap(), false).unwrap();
    assert!(sdk.add_discoverable_service(&second).await.is_err());
    let chat = SdkName::new("chat").unwrap();
    assert!(
        sdk.set_primary_service_provider(
            &Url::parse("https://two.example").unwrap(),
            &chat,
            PASSWORD
        )
        .await
        .is_err()
    );
    assert_eq!(
        alice.services().await.unwrap(),
        vec![
            service("chat", "https://two.example", true),
            service("chat", "https://chat.example.com", false)
        ]
    );
    // The PUT body it sends, by hand: {"url", "name": {"inner": …}}.
    let resp = raw
        .put(url(&server, set_primary_provider::PATH))
        .bearer_auth(alice.token())
        .header(api::SENSITIVE_HEADER, PASSWORD)
        .body(r#"{"url":"https://chat.example.com/","name":{"inner":"chat"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(
        canonical(resp, StatusCode::OK).await,
        json!([
            {"service": "chat", "url": "https://two.example", "primary": false},
            {"service": "chat", "url": "https://chat.example.com", "primary": true},
        ])
    );

    // Its delete reads `newPrimary` from our answer.
    let deleted = sdk
        .delete_discoverable_service(
            &Url::parse("https://chat.example.com").unwrap(),
            &chat,
            Some(PASSWORD),
        )
        .await
        .unwrap();
    assert_eq!(
        deleted,
        vec![ServiceDeleteResponse {
            service: "chat".into(),
            new_primary: Url::parse("https://two.example").unwrap(),
        }]
    );
    // And both spellings parse as ours.
    let ours: Vec<NewPrimary> = serde_json::from_value(json!([
        {"service": "chat", "new_primary": "https://two.example", "newPrimary": "https://two.example"}
    ]))
    .unwrap();
    assert_eq!(ours[0].new_primary, provider("https://two.example"));
}

#[tokio::test]
async fn actors_of_other_home_servers_can_neither_list_services_here_nor_be_discovered_here() {
    use fugue_proto::api::{key_trial, sign_in};

    let (alpha, beta) = federated_pair().await;
    let alice = alpha.register("alice").await;
    add(&alice, "chat", "https://chat.alpha.test").await;

    // Alice signs in at beta with a key trial: a session of beta, for an actor of alpha.
    let raw = beta.client().raw().clone();
    let trial: key_trial::KeyTrial = raw
        .get(url(
            &beta,
            &format!("{}?fid=alice@alpha.test", key_trial::PATH),
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let body = json!({
        "signature": hex::encode(alice.key().sign(trial.trial.as_bytes())),
        "serialNumber": alice.current_serial().unwrap().0.to_string(),
        "fid": "alice@alpha.test",
        "id": trial.id,
    });
    let resp = raw
        .post(url(&beta, sign_in::PATH))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let token = resp.text().await.unwrap();

    let new = json!({"service": {"service": "chat", "url": "https://x.example", "primary": true}});
    let requests = [
        raw.post(url(&beta, api::register_service::PATH)).json(&new),
        raw.delete(url(
            &beta,
            &format!(
                "{}?url=https://x.example&name=chat",
                api::unregister_service::PATH
            ),
        )),
        raw.put(url(&beta, set_primary_provider::PATH))
            .json(&json!({"url": "https://x.example", "name": "chat"})),
    ];
    for request in requests {
        let resp = request
            .bearer_auth(&token)
            .header(api::SENSITIVE_HEADER, PASSWORD)
            .send()
            .await
            .unwrap();
        assert_raw_problem(resp, 403, ErrorCode::Forbidden).await;
    }
    // Beta knows alice now, but she is not its actor: her services are found at alpha only.
    let fid: FederationId = "alice@alpha.test".parse().unwrap();
    assert_problem(
        beta.client().discover_services(&fid, None, None).await,
        404,
        ErrorCode::ActorNotFound,
    );
    assert_eq!(
        alpha
            .client()
            .discover_services(&fid, None, None)
            .await
            .unwrap(),
        vec![service("chat", "https://chat.alpha.test", true)]
    );
}
