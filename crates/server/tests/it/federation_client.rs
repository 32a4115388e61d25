//! The client side of federation, against two real servers — alpha.test, the actors' home
//! server, and beta.test, which reaches alpha through `federation.resolve` — and small fakes:
//! key trial sign-in through `fugue-client` (core §4.1.1), certificates through the
//! conversation server checked against the home server's roots with the home server as
//! fallback (core §6.4).

use axum::http::{Method, StatusCode, Uri};
use axum::response::IntoResponse;
use fugue_client::{CertSource, Client, Error, ForeignSession, IdentityKey, VerifiedCert};
use fugue_proto::cache::{CacheableIdCert, signing_input};
use fugue_proto::certs::issue::{Window, actor_tbs, cert_pem, finish_cert, server_tbs};
use fugue_proto::{ErrorCode, FederationId, Serial, api};
use fugue_testkit::{PASSWORD, TestServer};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

use crate::support::{assert_problem, fakes, federated_pair, unix_now};

/// What identifies a verified certificate, in serial order.
fn summary(certs: &[VerifiedCert]) -> Vec<(Serial, String, Option<u64>)> {
    let mut v: Vec<_> = certs
        .iter()
        .map(|c| {
            let pem = c.cacheable.id_cert_pem.clone();
            (c.cert.serial, pem, c.revoked_at)
        })
        .collect();
    v.sort();
    v
}

/// A server that answers from a fixed list, JSON by path prefix (404 otherwise), and
/// records every request as `METHOD path`.
struct Fake {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
    _server: fakes::Fake,
}

impl Fake {
    async fn start(routes: Vec<(String, Value)>) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let app = axum::Router::new().fallback(move |method: Method, uri: Uri| {
            let (routes, log) = (routes.clone(), log.clone());
            async move {
                log.lock().unwrap().push(format!("{method} {}", uri.path()));
                match routes.iter().find(|(p, _)| uri.path().starts_with(p)) {
                    Some((_, body)) => axum::Json(body.clone()).into_response(),
                    None => StatusCode::NOT_FOUND.into_response(),
                }
            }
        });
        let server = fakes::serve(app).await;
        Self {
            url: server.url.clone(),
            seen,
            _server: server,
        }
    }

    fn client(&self) -> Client {
        Client::new(&self.url).unwrap()
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn a_session_signs_in_elsewhere_and_keeps_its_certificate_current_there() {
    let (alpha, beta) = federated_pair().await;
    let mut alice = alpha.register("alice").await;
    let foreign = alice.sign_in_on(beta.client(), &beta.domain).await.unwrap();
    assert_eq!(foreign.client().base_url(), beta.url);
    assert_eq!(foreign.fid(), alice.fid());
    assert!(!format!("{foreign:?}").contains(foreign.token()));

    // The token is beta's: `update_cert` needs it, and a made-up one is refused.
    foreign.update_cert(&alice).await.unwrap();
    let bogus = ForeignSession::restore(beta.client(), alice.fid().clone(), "bogus".into());
    let err = bogus.update_cert(&alice).await.unwrap_err();
    assert_eq!(err.status(), Some(401), "{err}");

    // A renewed certificate on alpha is taken over by beta.
    alice.renew_cert(PASSWORD).await.unwrap();
    foreign.update_cert(&alice).await.unwrap();
    let bob = alpha.register("bob").await;
    assert!(matches!(
        foreign.update_cert(&bob).await,
        Err(Error::Verification(_))
    ));

    // A second sign-in of the same session replaces the first one's token there.
    let again = alice.sign_in_on(beta.client(), &beta.domain).await.unwrap();
    assert_ne!(again.token(), foreign.token());
    again.update_cert(&alice).await.unwrap();
    assert_eq!(
        foreign.update_cert(&alice).await.unwrap_err().status(),
        Some(401)
    );
}

#[tokio::test]
async fn refusals_of_the_foreign_server_keep_their_codes() {
    let (alpha, beta) = federated_pair().await;
    let alice = alpha.register("alice").await;
    // Key trials are for other servers' actors.
    assert_problem(
        alice.sign_in_on(alpha.client(), &alpha.domain).await,
        400,
        ErrorCode::LocalActor,
    );

    // A revoked certificate cannot sign in (beta has not cached it: it asks alpha)...
    let tablet = alpha.login("alice", "tablet").await.unwrap();
    alice
        .revoke_session(tablet.session_id(), PASSWORD)
        .await
        .unwrap();
    assert_problem(
        tablet.sign_in_on(beta.client(), &beta.domain).await,
        403,
        ErrorCode::CertRevoked,
    );
    // ...and a session signed in before ends at its next certificate update, for which
    // beta always asks alpha.
    let phone = alpha.login("alice", "phone").await.unwrap();
    let foreign = phone.sign_in_on(beta.client(), &beta.domain).await.unwrap();
    alice
        .revoke_session(phone.session_id(), PASSWORD)
        .await
        .unwrap();
    foreign.update_cert(&phone).await.unwrap();
    assert_eq!(
        foreign.update_cert(&phone).await.unwrap_err().status(),
        Some(401)
    );

    // A server that cannot reach the actor's home server says so as that server's failure.
    let gamma = TestServer::start_with(|c| {
        c.domain = "gamma.test".parse().unwrap();
        let closed_port = "http://127.0.0.1:9".to_owned();
        c.federation.resolve.insert("beta.test".into(), closed_port);
    })
    .await;
    let carol = beta.register("carol").await;
    assert_problem(
        carol.sign_in_on(gamma.client(), &gamma.domain).await,
        424,
        ErrorCode::HomeServerUnavailable,
    );
}

#[tokio::test]
async fn a_trial_that_is_not_a_random_string_is_never_signed() {
    let (alpha, _beta) = federated_pair().await;
    let alice = alpha.register("alice").await;
    let trial = json!({
        "trial": "{\"channel\":\"7\",\"content\":\"alice owes eve 1000 euros\"}",
        "expires": (unix_now() + 300).to_string(),
        "id": "x",
    });
    let fake = Fake::start(vec![(api::key_trial::PATH.into(), trial)]).await;
    let err = alice.sign_in_elsewhere(&fake.url).await.unwrap_err();
    assert!(matches!(err, Error::Verification(_)), "{err}");
    assert_eq!(fake.seen(), [format!("GET {}", api::key_trial::PATH)]);
}

/// mallory.test: a relay that hands out beta's key trials as its own and posts the answers
/// to beta, keeping the session beta opens. Records beta's answers to the posts.
async fn mallory(beta: &TestServer) -> (fakes::Fake, Arc<Mutex<Vec<u16>>>) {
    let (beta_url, posted) = (beta.url.clone(), Arc::new(Mutex::new(Vec::new())));
    let log = posted.clone();
    let app =
        axum::Router::new().fallback(move |method: Method, uri: Uri, body: axum::body::Bytes| {
            let (beta_url, log) = (beta_url.clone(), log.clone());
            async move {
                let url = format!("{beta_url}{uri}");
                let http = reqwest::Client::new();
                let resp = if method == Method::POST {
                    let resp = http
                        .post(url)
                        .header("content-type", "application/json")
                        .body(body.to_vec())
                        .send()
                        .await
                        .unwrap();
                    log.lock().unwrap().push(resp.status().as_u16());
                    resp
                } else {
                    http.get(url).send().await.unwrap()
                };
                let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
                (status, resp.bytes().await.unwrap()).into_response()
            }
        });
    (fakes::serve(app).await, posted)
}

#[tokio::test]
async fn a_trial_relayed_from_another_server_is_never_signed() {
    let (alpha, beta) = federated_pair().await;
    let alice = alpha.register("alice").await;
    let (relay, posted) = mallory(&beta).await;
    let mallory_domain = "mallory.test".parse().unwrap();
    let err = alice
        .sign_in_on(Client::new(&relay.url).unwrap(), &mallory_domain)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Verification(_)), "{err}");
    assert!(err.to_string().contains("mallory.test"), "{err}");
    // Nothing was signed, so nothing reached beta and alice has no session there.
    assert!(posted.lock().unwrap().is_empty());
    assert!(
        beta.store
            .actor_by_name(&alice.fid().to_string())
            .await
            .unwrap()
            .is_none()
    );
    // Signing in on beta itself works.
    alice.sign_in_on(beta.client(), &beta.domain).await.unwrap();
}

#[tokio::test]
async fn certificates_through_the_conversation_server_are_the_home_servers() {
    let (alpha, beta) = federated_pair().await;
    let alice = alpha.register("alice").await;
    alpha.login("alice", "phone").await.unwrap();
    // Beta knows alice (and caches her certificates) once she signed in there.
    alice.sign_in_on(beta.client(), &beta.domain).await.unwrap();
    let home = alpha.client();
    let fid = alice.fid().clone();
    let direct = home.verified_actor_certs(&fid).await.unwrap();
    assert_eq!(direct.len(), 2);

    let via = home
        .verified_actor_certs_via(&beta.client(), &fid)
        .await
        .unwrap();
    assert!(matches!(via.source, CertSource::Conversation), "{via:?}");
    assert_eq!(summary(&via.certs), summary(&direct));

    // Beta does not know bob: alpha answers.
    let bob = alpha.register("bob").await;
    let via = home
        .verified_actor_certs_via(&beta.client(), bob.fid())
        .await
        .unwrap();
    let CertSource::HomeFallback(why) = &via.source else {
        panic!("{via:?}");
    };
    assert_eq!(why.status(), Some(404), "{why}");
    assert_eq!(
        summary(&via.certs),
        summary(&home.verified_actor_certs(bob.fid()).await.unwrap())
    );

    // Nor does a conversation server that is down.
    let down = Client::new("http://127.0.0.1:9").unwrap();
    let via = home.verified_actor_certs_via(&down, &fid).await.unwrap();
    assert!(
        matches!(via.source, CertSource::HomeFallback(Error::Transport(_))),
        "{via:?}"
    );
    assert_eq!(summary(&via.certs), summary(&direct));
}

/// A root for `alpha.test` and a certificate for alice in session `main` under it, with a
/// cache entry its key signed: what a lying server would need to make up to impersonate her.
fn impostor_entries(fid: &FederationId, now: u64) -> (CacheableIdCert, CacheableIdCert) {
    let impostor = IdentityKey::generate();
    // Not before alpha's root: alpha then names its current root as the one of that time.
    let window = Window {
        not_before: now,
        not_after: now + 86_400,
    };
    let sign = |b: &[u8]| impostor.sign(b);
    let entry = |serial: u64, pem: String| {
        let input = signing_input(Serial(serial), now - 60, now + 3600, None);
        CacheableIdCert {
            id_cert_pem: pem,
            not_valid_before: now - 60,
            not_valid_after: now + 3600,
            signature: hex::encode(impostor.sign(input.as_bytes())),
            invalidated_at: None,
        }
    };
    let tbs = server_tbs(Serial(7), fid.domain(), &impostor.verifying_key(), window).unwrap();
    let root = entry(7, cert_pem(&finish_cert(tbs, sign).unwrap()).unwrap());
    let attacker = IdentityKey::generate().verifying_key();
    let session = "main".parse().unwrap();
    let tbs = actor_tbs(Serial(8), fid, &session, &attacker, window).unwrap();
    let actor = entry(8, cert_pem(&finish_cert(tbs, sign).unwrap()).unwrap());
    (root, actor)
}

#[tokio::test]
async fn a_conversation_server_that_tampers_is_caught_and_the_home_server_answers() {
    let (alpha, _beta) = federated_pair().await;
    let alice = alpha.register("alice").await;
    let phone = alpha.login("alice", "phone").await.unwrap();
    alice
        .revoke_session(phone.session_id(), PASSWORD)
        .await
        .unwrap();
    let home = alpha.client();
    let fid = alice.fid().clone();
    let truth = home.verified_actor_certs(&fid).await.unwrap();
    let revoked = truth.iter().filter(|c| c.revoked_at.is_some()).count();
    assert_eq!((truth.len(), revoked), (2, 1));
    let listed: Vec<Value> = alpha
        .get(&api::get_actor_idcerts::path(&fid))
        .await
        .json()
        .await
        .unwrap();

    let hidden_revocation: Vec<Value> = listed
        .iter()
        .cloned()
        .map(|mut e| {
            e.as_object_mut().unwrap().remove("invalidatedAt");
            e
        })
        .collect();
    let stretched_window: Vec<Value> = listed
        .iter()
        .cloned()
        .map(|mut e| {
            let end: u64 = e["cacheNotValidAfter"].as_str().unwrap().parse().unwrap();
            e["cacheNotValidAfter"] = json!((end + 3600).to_string());
            e
        })
        .collect();
    let (root, actor) = impostor_entries(&fid, unix_now());
    let cases = [
        ("a hidden revocation", json!(hidden_revocation), None),
        ("a stretched cache window", json!(stretched_window), None),
        (
            "a certificate under an impostor root",
            json!([actor]),
            Some(json!(root)),
        ),
    ];
    for (case, actor_list, own_root) in cases {
        let mut routes = vec![(api::get_actor_idcerts::path(&fid), actor_list)];
        routes.extend(own_root.map(|r| (api::get_server_idcert::PATH.into(), r)));
        let fake = Fake::start(routes).await;
        let via = home
            .verified_actor_certs_via(&fake.client(), &fid)
            .await
            .unwrap();
        let CertSource::HomeFallback(why) = &via.source else {
            panic!("{case}: the tampered answer was accepted: {via:?}");
        };
        assert!(matches!(why, Error::Verification(_)), "{case}: {why}");
        assert_eq!(summary(&via.certs), summary(&truth), "{case}");
        // Roots come from the home server only: the fake is asked for the list, nothing else.
        let asked = format!("GET {}", api::get_actor_idcerts::path(&fid));
        assert_eq!(fake.seen(), [asked], "{case}");
    }
}
