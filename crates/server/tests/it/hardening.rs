//! Defences that only show under pressure: parallel guesses at the second factor, TOTP
//! guessing at login, passwords in any script, concurrent root changes and root renewal.

use std::sync::Arc;

use fugue_proto::ErrorCode;
use fugue_proto::api;
use fugue_testkit::{MemoryKeySink, PASSWORD, TestServer};

use crate::support::{assert_problem, enrol_totp, totp_code_in, unix_now, wrong_totp_code};

#[tokio::test]
async fn parallel_wrong_solutions_cannot_exceed_the_lockout_limit() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let url = format!(
        "{}{}?session_id=nope",
        server.url,
        api::delete_session::PATH
    );
    let attempts: Vec<_> = (0..30)
        .map(|i| {
            let (raw, url, token) = (
                server.client().raw().clone(),
                url.clone(),
                alice.token().to_owned(),
            );
            tokio::spawn(async move {
                let resp = raw
                    .delete(url)
                    .bearer_auth(token)
                    .header(api::SENSITIVE_HEADER, format!("wrong guess {i}"))
                    .send()
                    .await
                    .unwrap();
                resp.status().as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for a in attempts {
        statuses.push(a.await.unwrap());
    }
    let checked = statuses.iter().filter(|s| **s == 403).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(
        checked, 10,
        "exactly the limit of guesses is checked: {statuses:?}"
    );
    assert_eq!(refused, 20, "{statuses:?}");
    // Even the right answer is refused now.
    assert_problem(
        alice.revoke_session(alice.session_id(), PASSWORD).await,
        429,
        ErrorCode::TooManyFailedSolutions,
    );
}

#[tokio::test]
async fn guessing_the_totp_code_at_login_is_locked_out_too() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let secret = enrol_totp(&alice).await;
    let client = server.client();
    let key = fugue_client::IdentityKey::generate();
    let fid = server.fid("alice");
    for i in 0..10 {
        let sid = format!("guess{i}").parse().unwrap();
        let wrong = wrong_totp_code(&secret, unix_now());
        assert_problem(
            client
                .login("alice", PASSWORD, Some(&wrong), &key, &fid, &sid)
                .await,
            401,
            ErrorCode::InvalidCredentials,
        );
    }
    let sid = "right".parse().unwrap();
    let right = totp_code_in(&secret, 0);
    assert_problem(
        client
            .login("alice", PASSWORD, Some(&right), &key, &fid, &sid)
            .await,
        429,
        ErrorCode::TooManyFailedSolutions,
    );
}

#[tokio::test]
async fn passwords_in_any_script_work_for_login_and_sensitive_actions() {
    let server = TestServer::start().await;
    let client = server.client();
    let password = "пароль-密码-contraseña";
    client.register("ines", password, None, None).await.unwrap();
    let fid = server.fid("ines");
    let key = fugue_client::IdentityKey::generate();
    let laptop = client
        .login(
            "ines",
            password,
            None,
            &key,
            &fid,
            &"laptop".parse().unwrap(),
        )
        .await
        .unwrap();
    let phone = client
        .login(
            "ines",
            password,
            None,
            &fugue_client::IdentityKey::generate(),
            &fid,
            &"phone".parse().unwrap(),
        )
        .await
        .unwrap();
    laptop
        .revoke_session(phone.session_id(), password)
        .await
        .unwrap();
    // Passwords that an HTTP header cannot carry intact are refused when chosen.
    for bad in [" leading space", "trailing space ", "tab\tinside"] {
        assert_problem(
            client.register("bob", bad, None, None).await,
            400,
            ErrorCode::WeakPassword,
        );
    }
}

#[tokio::test]
async fn concurrent_key_rotations_give_distinct_ordered_roots_that_all_verify() {
    let server = TestServer::start().await;
    let admin = server.register("alice").await;
    server.store.set_admin("alice", true).await.unwrap();
    let rotations: Vec<_> = (0..4)
        .map(|_| {
            let admin = admin.clone();
            tokio::spawn(async move { admin.rotate_server_key(PASSWORD).await.unwrap() })
        })
        .collect();
    let mut roots = Vec::new();
    for r in rotations {
        roots.push(fugue_proto::certs::IdCert::parse(r.await.unwrap().as_bytes()).unwrap());
    }
    let mut starts: Vec<u64> = roots.iter().map(|r| r.not_before).collect();
    starts.sort_unstable();
    starts.dedup();
    assert_eq!(starts.len(), 4, "every root starts in its own second");
    // The newest root is the current one, and the first cert still verifies.
    let current = server.root_cert().await;
    assert_eq!(current.not_before, *starts.last().unwrap());
    let bob = server.register("bob").await;
    let certs = server
        .client()
        .verified_actor_certs(&server.fid("alice"))
        .await
        .unwrap();
    assert_eq!(certs.len(), 1);
    let bobs = server
        .client()
        .verified_actor_certs(bob.fid())
        .await
        .unwrap();
    assert!(bobs[0].cert.verify_signature(&current.key).is_ok());
}

#[tokio::test]
async fn a_root_about_to_cut_certificates_short_is_renewed_with_the_same_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = fugue_testkit::fresh_store(dir.path()).await;
    // Actor certs live 30 days; the root only 31.
    let certs = fugue_server::config::Certs {
        server_validity_days: 31,
        ..Default::default()
    };
    let key = ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng);
    let now = unix_now();
    let identity = fugue_server::Identity::bootstrap(
        store,
        "localhost".parse().unwrap(),
        certs,
        Default::default(),
        key.clone(),
        Arc::new(MemoryKeySink::default()),
        now,
    )
    .await
    .unwrap();
    let first = identity.server_cert();
    assert!(
        !identity.renew_root_if_expiring(now).await.unwrap(),
        "31 days cover a 30-day cert"
    );
    // Two days later a 30-day certificate would outlive the root: renew.
    assert!(
        identity
            .renew_root_if_expiring(now + 2 * 86_400)
            .await
            .unwrap()
    );
    let second = identity.server_cert();
    assert_ne!(first.serial, second.serial);
    assert_eq!(second.key, key.verifying_key(), "renewal keeps the key");
    assert!(second.not_before > first.not_before);
    second.verify_server_root().unwrap();
}

#[tokio::test]
async fn a_session_without_a_certificate_dies_after_ten_minutes_and_frees_its_id() {
    let (server, skew) = TestServer::start_with_clock().await;
    server
        .client()
        .register("alice", PASSWORD, None, None)
        .await
        .unwrap();
    let login = |sid: &'static str| {
        let raw = server.client().raw().clone();
        let url = format!("{}{}", server.url, api::login::PATH);
        async move {
            let body = api::login::Request {
                local_name: "alice".into(),
                password: PASSWORD.into(),
                totp: None,
                csr: None,
                session_id: Some(sid.into()),
            };
            raw.post(url).json(&body).send().await.unwrap()
        }
    };
    let resp = login("sdk").await;
    assert_eq!(resp.status().as_u16(), 201);
    let token = resp.json::<api::login::Response>().await.unwrap().token;
    let sessions = |token: String| {
        let raw = server.client().raw().clone();
        let url = format!("{}{}", server.url, api::list_sessions::PATH);
        async move { raw.get(url).bearer_auth(token).send().await.unwrap() }
    };
    assert_eq!(sessions(token.clone()).await.status().as_u16(), 200);
    skew.set_offset(fugue_store::CERTLESS_SESSION_S + 1);
    crate::support::assert_raw_problem(sessions(token).await, 401, ErrorCode::InvalidToken).await;
    assert_eq!(
        login("sdk").await.status().as_u16(),
        201,
        "the session ID is free again"
    );
}

#[tokio::test]
async fn an_expired_certificate_ends_its_session_without_revoking_it() {
    let (server, skew) = TestServer::start_with_clock().await;
    let alice = server.register("alice").await; // session "main", cert valid 30 days
    let serial = alice.current_serial().unwrap();
    skew.set_offset(31 * 86_400);
    assert_problem(alice.sessions().await, 401, ErrorCode::InvalidToken);
    // Logging in again with the same session ID works: the old session is over.
    let again = server.login("alice", "main").await.unwrap();
    assert_ne!(again.current_serial().unwrap(), serial);
    let certs = server
        .client()
        .actor_certs(&server.fid("alice"), Default::default())
        .await
        .unwrap();
    assert_eq!(certs.len(), 2);
    let old = certs
        .iter()
        .find(|c| {
            fugue_proto::certs::IdCert::parse(c.id_cert_pem.as_bytes())
                .unwrap()
                .serial
                == serial
        })
        .unwrap();
    assert_eq!(
        old.invalidated_at, None,
        "an expired certificate was not revoked early"
    );
}

#[tokio::test]
async fn a_non_administrator_asking_for_a_key_rotation_spends_no_second_factor() {
    let server = TestServer::start().await;
    let mallory = server.register("mallory").await;
    // More wrong answers than the lockout allows: each is refused as forbidden, none checked.
    for _ in 0..12 {
        assert_problem(
            mallory.rotate_server_key("not the password").await,
            403,
            ErrorCode::Forbidden,
        );
    }
    // So the account's own sensitive actions are not locked out.
    mallory
        .revoke_session(mallory.session_id(), PASSWORD)
        .await
        .unwrap();
}
