//! Wire conventions seen from outside: canonical JSON bodies, u64 values as strings, JSON
//! without Content-Type, problem details for every refusal (size, syntax, route, method),
//! discovery and health, rate limits, and the query spellings the SDKs use.

use fugue_proto::api::{self, keymaterial::EncryptedPkm};
use fugue_proto::{ErrorCode, FederationId};
use fugue_testkit::{PASSWORD, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{assert_problem, assert_raw_problem, url};

/// Reads the body and checks that it is exactly the RFC 8785 form of itself.
async fn canonical_body(resp: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(resp.status(), status);
    let bytes = resp.bytes().await.unwrap();
    let text = std::str::from_utf8(&bytes).unwrap();
    let value: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        fugue_proto::wire::to_canonical_vec(&value).unwrap(),
        bytes.to_vec(),
        "not canonical: {text}"
    );
    assert!(
        polyproto::is_canonicalized_json(text),
        "polyproto disagrees: {text}"
    );
    value
}

/// True for a JSON string of decimal digits: how every u64 goes out.
fn is_u64_string(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<u64>().is_ok()
    })
}

#[tokio::test]
async fn json_bodies_are_canonical_and_u64_values_are_strings() {
    let server = TestServer::start().await;
    let raw = server.client().raw().clone();

    let resp = raw
        .post(url(&server, api::register::PATH))
        .json(&json!({"localName": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let registered = canonical_body(resp, StatusCode::CREATED).await;
    assert_eq!(registered, json!({"fid": "alice@localhost"}));

    let key = fugue_client::IdentityKey::generate();
    let csr = key
        .csr_pem(&server.fid("alice"), &"main".parse().unwrap())
        .unwrap();
    let body = json!({"localName": "alice", "password": PASSWORD, "csr": csr, "sessionId": "main"});
    let resp = raw
        .post(url(&server, api::login::PATH))
        .json(&body)
        .send()
        .await
        .unwrap();
    let login = canonical_body(resp, StatusCode::CREATED).await;
    assert_eq!(login["fid"], "alice@localhost");
    assert_eq!(login["sessionId"], "main");
    assert_eq!(login["idCert"], login["id_cert"]);
    assert!(
        login["idCert"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
    let token = login["token"].as_str().unwrap().to_owned();

    let resp = raw
        .get(url(&server, api::get_server_idcert::PATH))
        .send()
        .await
        .unwrap();
    let server_cert = canonical_body(resp, StatusCode::OK).await;
    for field in ["cacheNotValidBefore", "cacheNotValidAfter"] {
        assert!(
            is_u64_string(&server_cert[field]),
            "{field}: {}",
            server_cert[field]
        );
    }
    assert!(
        server_cert["cacheSignature"]
            .as_str()
            .unwrap()
            .bytes()
            .all(|b| b.is_ascii_hexdigit())
    );

    // Revoke a second session so the list carries an invalidatedAt as well.
    let phone = server.login("alice", "phone").await.unwrap();
    phone
        .revoke_session(phone.session_id(), PASSWORD)
        .await
        .unwrap();
    let resp = raw
        .get(url(&server, "/.p2/core/v1/idcert/actor/alice@localhost"))
        .send()
        .await
        .unwrap();
    let certs = canonical_body(resp, StatusCode::OK).await;
    let certs = certs.as_array().unwrap();
    assert_eq!(certs.len(), 2);
    for c in certs {
        assert!(
            is_u64_string(&c["cacheNotValidBefore"]) && is_u64_string(&c["cacheNotValidAfter"]),
            "{c}"
        );
    }
    assert!(
        certs.iter().any(|c| is_u64_string(&c["invalidatedAt"])),
        "{certs:?}"
    );
    assert!(
        certs.iter().any(|c| c.get("invalidatedAt").is_none()),
        "{certs:?}"
    );

    let resp = raw
        .get(url(&server, api::list_sessions::PATH))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let sessions = canonical_body(resp, StatusCode::OK).await;
    let first = &sessions[0];
    for field in ["serial", "createdAt", "certNotAfter"] {
        assert!(is_u64_string(&first[field]), "{field}: {first}");
    }
    assert_eq!(first["current"], true);

    // Key material serials, too.
    let serial = fugue_proto::certs::IdCert::parse(login["idCert"].as_str().unwrap().as_bytes())
        .unwrap()
        .serial;
    let item = EncryptedPkm {
        key_data: "opaque".into(),
        serial,
        encryption_algorithms: vec!["1.2.840.113549.1.5.13".into()],
    };
    let resp = raw
        .post(url(&server, api::upload_key_material::PATH))
        .bearer_auth(&token)
        .json(&vec![item])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = raw
        .get(url(&server, api::get_key_material::PATH))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let material = canonical_body(resp, StatusCode::OK).await;
    assert_eq!(material[0]["serialNumber"], serial.to_string());

    // Problem bodies are canonical as well.
    let resp = raw
        .get(url(&server, "/.p2/core/v1/idcert/actor/nobody@localhost"))
        .send()
        .await
        .unwrap();
    let problem = canonical_body(resp, StatusCode::NOT_FOUND).await;
    assert_eq!(problem["error"], "ACTOR_NOT_FOUND");
    assert_eq!(problem["status"], 404);
}

#[tokio::test]
async fn u64_query_values_are_accepted_as_decimal_strings_only() {
    let server = TestServer::start().await;
    let raw = server.client().raw().clone();
    let resp = raw
        .get(url(
            &server,
            "/.p2/core/v1/idcert/server?timestamp=99999999999",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    for bad in ["abc", "-1", "1e3"] {
        let resp = raw
            .get(url(
                &server,
                &format!("/.p2/core/v1/idcert/server?timestamp={bad}"),
            ))
            .send()
            .await
            .unwrap();
        assert_raw_problem(resp, 400, ErrorCode::MalformedRequest).await;
    }
    // Before the server had any certificate there is none to name.
    let resp = raw
        .get(url(&server, "/.p2/core/v1/idcert/server?timestamp=1"))
        .send()
        .await
        .unwrap();
    assert_raw_problem(resp, 404, ErrorCode::CertNotFound).await;
}

#[tokio::test]
async fn json_without_content_type_is_accepted() {
    let server = TestServer::start().await;
    let body = serde_json::to_vec(&json!({"localName": "alice", "password": PASSWORD})).unwrap();
    let resp = server
        .client()
        .raw()
        .post(url(&server, api::register::PATH))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let fid: FederationId = resp.json::<api::register::Response>().await.unwrap().fid;
    assert_eq!(fid, server.fid("alice"));
    // The snake_case spellings of the SDK are accepted as well.
    let body = serde_json::to_vec(
        &json!({"local_name": "bob", "password": PASSWORD, "tos_consent": true}),
    )
    .unwrap();
    let resp = server
        .client()
        .raw()
        .post(url(&server, api::register::PATH))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_with_413() {
    let server = TestServer::start_with(|c| c.limits.json_body_bytes = 4096).await;
    let raw = server.client().raw().clone();
    let big = json!({"localName": "alice", "password": "p".repeat(5000)});
    let resp = raw
        .post(url(&server, api::register::PATH))
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_raw_problem(resp, 413, ErrorCode::PayloadTooLarge).await;
    let resp = raw
        .post(url(&server, api::login::PATH))
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_raw_problem(resp, 413, ErrorCode::PayloadTooLarge).await;

    // Just under the limit, the body is read and judged on its content.
    let fits = json!({"localName": "alice", "password": "p".repeat(4000)});
    let resp = raw
        .post(url(&server, api::register::PATH))
        .json(&fits)
        .send()
        .await
        .unwrap();
    assert_raw_problem(resp, 400, ErrorCode::WeakPassword).await;

    // The raw CSR body of POST /idcert has the same limit.
    let alice = server.register("alice").await;
    let resp = raw
        .post(url(&server, api::post_idcert::PATH))
        .bearer_auth(alice.token())
        .body("x".repeat(5000))
        .send()
        .await
        .unwrap();
    assert_raw_problem(resp, 413, ErrorCode::PayloadTooLarge).await;
}

#[tokio::test]
async fn malformed_json_is_a_400_problem() {
    let server = TestServer::start().await;
    let raw = server.client().raw().clone();
    for body in [
        "{",
        "not json",
        "",
        r#"{"localName": "alice"}"#,
        r#"{"localName": 5, "password": "xxxxxxxxxx"}"#,
        "[]",
    ] {
        let resp = raw
            .post(url(&server, api::register::PATH))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_raw_problem(resp, 400, ErrorCode::MalformedRequest).await;
    }
    let resp = raw
        .post(url(&server, api::login::PATH))
        .body("{\"localName\":")
        .send()
        .await
        .unwrap();
    assert_raw_problem(resp, 400, ErrorCode::MalformedRequest).await;
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_are_problems() {
    let server = TestServer::start().await;
    let raw = server.client().raw().clone();
    for path in ["/nope", "/.p2/core/v1/nope", "/.p2/core/v2/idcert/server"] {
        let resp = raw.get(url(&server, path)).send().await.unwrap();
        assert_raw_problem(resp, 404, ErrorCode::NotFound).await;
    }
    let resp = raw
        .put(url(&server, api::login::PATH))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_raw_problem(resp, 405, ErrorCode::MethodNotAllowed).await;
    let resp = raw
        .get(url(&server, api::register::PATH))
        .send()
        .await
        .unwrap();
    assert_raw_problem(resp, 405, ErrorCode::MethodNotAllowed).await;
    let resp = raw
        .delete(url(&server, api::get_server_idcert::PATH))
        .send()
        .await
        .unwrap();
    assert_raw_problem(resp, 405, ErrorCode::MethodNotAllowed).await;
}

/// `endpoint`'s path for an actor that does not exist here.
fn nobodys(endpoint: &'static api::Endpoint) -> api::Target {
    let values: Vec<&str> = endpoint
        .params
        .iter()
        .map(|p| match *p {
            "fid" | "user_id" => "nobody@localhost",
            "service" => "chat",
            "guild_id" | "channel_id" | "conversation_id" | "message_id" | "role_id" | "target" => {
                "1"
            }
            "invite_code" => "nocode",
            "emoji" => "👍",
            "rid" | "resource_id" => "no-such-resource",
            "group_id" => "00112233445566778899aabbccddeeff",
            "member_id" => "0",
            "request_id" => "1",
            other => panic!("no sample value for {{{other}}}"),
        })
        .collect();
    endpoint.fill(&values)
}

#[tokio::test]
async fn every_declared_endpoint_answers_its_method() {
    let server = TestServer::start().await;
    let raw = server.client().raw().clone();
    for endpoint in api::all() {
        let target = nobodys(endpoint);
        let resp = raw
            .request(target.method(), url(&server, &target.path))
            .send()
            .await
            .unwrap();
        if endpoint.params.is_empty() {
            // Without token or body the call fails, but not for want of a route.
            let status = resp.status().as_u16();
            assert!(
                ![404, 405].contains(&status),
                "{} {}: {status}",
                endpoint.method,
                target.path
            );
        } else if endpoint.auth == api::Auth::None {
            assert_raw_problem(resp, 404, ErrorCode::ActorNotFound).await;
        } else {
            // Routed (the fallback would say 404), and the session comes first.
            assert_raw_problem(resp, 401, ErrorCode::Unauthenticated).await;
        }
    }
}

#[tokio::test]
async fn no_method_is_routed_that_is_not_declared() {
    let server = TestServer::start().await;
    let raw = server.client().raw().clone();
    let methods = [
        reqwest::Method::GET,
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::PATCH,
        reqwest::Method::DELETE,
    ];
    for endpoint in api::all() {
        for method in &methods {
            let declared = api::all().any(|e| e.path == endpoint.path && e.method == *method);
            if declared {
                continue;
            }
            let path = nobodys(endpoint).path;
            let resp = raw
                .request(method.clone(), url(&server, &path))
                .send()
                .await
                .unwrap();
            assert_raw_problem(resp, 405, ErrorCode::MethodNotAllowed).await;
        }
    }
}

#[tokio::test]
async fn every_endpoint_asks_for_the_session_it_declares() {
    let server = TestServer::start().await;
    let raw = server.client().raw().clone();
    let alice = server.register("alice").await;
    for endpoint in api::all() {
        let target = nobodys(endpoint);
        let anonymous = raw
            .request(target.method(), url(&server, &target.path))
            .send()
            .await
            .unwrap();
        let status = anonymous.status().as_u16();
        let what = format!("{} {} ({:?})", endpoint.method, target.path, endpoint.auth);
        match endpoint.auth {
            api::Auth::None => assert_ne!(status, 401, "{what} asks for a session"),
            // `Optional`: what is not public, absent included, needs a session (core
            // §7.3.1's 401).
            api::Auth::Optional | api::Auth::Session | api::Auth::AnySession | api::Auth::Admin => {
                let problem = assert_raw_problem(anonymous, 401, ErrorCode::Unauthenticated);
                problem.await;
            }
        }
        if endpoint.auth == api::Auth::Admin {
            // A session that is not an administrator's, with its right second factor.
            let resp = raw
                .request(target.method(), url(&server, &target.path))
                .bearer_auth(alice.token())
                .header(api::SENSITIVE_HEADER, PASSWORD)
                .send()
                .await
                .unwrap();
            assert_raw_problem(resp, 403, ErrorCode::Forbidden).await;
        }
    }
}

#[tokio::test]
async fn the_well_known_document_points_at_the_core_api() {
    let server = TestServer::start().await;
    let resp = server.get(api::well_known::PATH).await;
    let body = canonical_body(resp, StatusCode::OK).await;
    assert_eq!(body, json!({"api": format!("{}/.p2/core/", server.url)}));
    // It follows the configured public URL, not the socket address; a trailing slash is dropped.
    let server = TestServer::start_with(|c| c.public_url = "https://chat.example.org".into()).await;
    assert_eq!(
        server.client().well_known().await.unwrap().api,
        "https://chat.example.org/.p2/core/"
    );
}

#[tokio::test]
async fn health_reports_the_database() {
    let server = TestServer::start().await;
    let resp = server.get(api::health::PATH).await;
    let body = canonical_body(resp, StatusCode::OK).await;
    assert_eq!(body["status"], "ok");
    let expected = if std::env::var("TEST_DATABASE_URL").is_ok_and(|u| !u.is_empty()) {
        "postgres"
    } else {
        "sqlite"
    };
    assert_eq!(body, json!({"database": expected, "status": "ok"}));
}

/// Sends a wrong-password login and returns the response.
async fn failed_login(server: &TestServer, name: &str) -> reqwest::Response {
    let body = json!({"localName": name, "password": "wrong password"});
    server
        .client()
        .raw()
        .post(url(server, api::login::PATH))
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn retry_after(resp: &reqwest::Response) -> u64 {
    resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn logins_are_rate_limited_per_client() {
    let server = TestServer::start_with(|c| c.rate_limits.login_per_minute = 2).await;
    server
        .client()
        .register("alice", PASSWORD, None, None)
        .await
        .unwrap();
    for name in ["alice", "bob"] {
        assert_raw_problem(
            failed_login(&server, name).await,
            401,
            ErrorCode::InvalidCredentials,
        )
        .await;
    }
    // The third attempt, even with the right password, waits.
    let resp = server
        .client()
        .raw()
        .post(url(&server, api::login::PATH))
        .json(&json!({"localName": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let wait = retry_after(&resp);
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    assert_raw_problem(resp, 429, ErrorCode::RateLimited).await;
    // Through the SDK it is the same refusal.
    assert_problem(
        server.login("alice", "main").await,
        429,
        ErrorCode::RateLimited,
    );
    // Other routes have their own budget.
    server
        .client()
        .register("carol", PASSWORD, None, None)
        .await
        .unwrap();
}

#[tokio::test]
async fn registrations_are_rate_limited_per_client() {
    let server = TestServer::start_with(|c| c.rate_limits.register_per_minute = 2).await;
    let client = server.client();
    client
        .register("alice", PASSWORD, None, None)
        .await
        .unwrap();
    // A refused registration counts too.
    assert_problem(
        client.register("bad name", PASSWORD, None, None).await,
        400,
        ErrorCode::InvalidLocalName,
    );
    let resp = client
        .raw()
        .post(url(&server, api::register::PATH))
        .json(&json!({"localName": "bob", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let wait = retry_after(&resp);
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    assert_raw_problem(resp, 429, ErrorCode::RateLimited).await;
    // Login is not affected.
    server.login("alice", "main").await.unwrap();
}

#[tokio::test]
async fn sensitive_actions_are_rate_limited_per_client() {
    let server = TestServer::start_with(|c| c.rate_limits.sensitive_per_minute = 2).await;
    let alice = server.register("alice").await;
    let _a = server.login("alice", "a").await.unwrap();
    let _b = server.login("alice", "b").await.unwrap();
    alice
        .revoke_session(&"a".parse().unwrap(), PASSWORD)
        .await
        .unwrap();
    alice
        .revoke_session(&"b".parse().unwrap(), PASSWORD)
        .await
        .unwrap();
    assert_problem(
        alice
            .revoke_session(&"main".parse().unwrap(), PASSWORD)
            .await,
        429,
        ErrorCode::RateLimited,
    );
    alice.sessions().await.unwrap();
}

#[tokio::test]
async fn certificates_of_unknown_or_foreign_actors_are_not_found() {
    let server = TestServer::start().await;
    server.register("alice").await;
    let raw = server.client().raw().clone();
    for fid in [
        "nobody@localhost",
        "alice@example.org",
        "not-a-fid",
        "alice@",
    ] {
        let resp = raw
            .get(url(&server, &format!("/.p2/core/v1/idcert/actor/{fid}")))
            .send()
            .await
            .unwrap();
        assert_raw_problem(resp, 404, ErrorCode::ActorNotFound).await;
    }
    let foreign: FederationId = "alice@example.org".parse().unwrap();
    assert_problem(
        server
            .client()
            .actor_certs(&foreign, Default::default())
            .await,
        404,
        ErrorCode::ActorNotFound,
    );
    // The FID is case-insensitive.
    let resp = raw
        .get(url(&server, "/.p2/core/v1/idcert/actor/ALICE@LocalHost"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn actor_certs_can_be_filtered_by_session_and_time() {
    let server = TestServer::start().await;
    let main = server.register("alice").await;
    let phone = server.login("alice", "phone").await.unwrap();
    let raw = server.client().raw().clone();
    let path = "/.p2/core/v1/idcert/actor/alice@localhost";
    for (query, expected) in [("?session_id=phone", &phone), ("?sessionId=main", &main)] {
        let resp = raw
            .get(url(&server, &format!("{path}{query}")))
            .send()
            .await
            .unwrap();
        let list: api::get_actor_idcerts::Response = resp.json().await.unwrap();
        assert_eq!(list.len(), 1, "{query}");
        assert_eq!(list[0].id_cert_pem, expected.cert_pem(), "{query}");
    }
    // A window before any cert existed is empty.
    let resp = raw
        .get(url(&server, &format!("{path}?notAfter=1000")))
        .send()
        .await
        .unwrap();
    let list: api::get_actor_idcerts::Response = resp.json().await.unwrap();
    assert!(list.is_empty());
}

#[tokio::test]
async fn the_delete_session_query_accepts_both_spellings() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let _a = server.login("alice", "a").await.unwrap();
    let _b = server.login("alice", "b").await.unwrap();
    for (param, target) in [("session_id", "a"), ("sessionId", "b")] {
        let resp = server
            .client()
            .raw()
            .delete(url(
                &server,
                &format!("{}?{param}={target}", api::delete_session::PATH),
            ))
            .bearer_auth(alice.token())
            .header(api::SENSITIVE_HEADER, PASSWORD)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NO_CONTENT, "{param}");
    }
    let left: Vec<String> = alice
        .sessions()
        .await
        .unwrap()
        .iter()
        .map(|s| s.session_id.to_string())
        .collect();
    assert_eq!(left, ["main"]);
}
