//! Account management (core §4.2 sensitive actions): a new password, TOTP off, deleting the
//! account; administrators' suspension, deletion and password reset; per-name login limits
//! that a stranger cannot turn against the person.

use std::net::{IpAddr, Ipv4Addr};

use fugue_proto::api::{self, get_actor_idcerts};
use fugue_proto::certs::IdCert;
use fugue_proto::{ErrorCode, FederationId, Serial};
use fugue_testkit::{PASSWORD, TestServer};
use serde_json::json;

use crate::support::{
    assert_problem, assert_raw_problem, enrol_totp, login_with, totp_code_in, unix_now,
};

const NEW_PASSWORD: &str = "a completely new passphrase";

/// The published certificates of `fid`: serial and whether it is revoked.
async fn published(server: &TestServer, fid: &FederationId) -> Vec<(Serial, bool)> {
    server
        .client()
        .actor_certs(fid, get_actor_idcerts::Query::default())
        .await
        .unwrap()
        .into_iter()
        .map(|c| {
            let cert = IdCert::parse(c.id_cert_pem.as_bytes()).unwrap();
            (cert.serial, c.invalidated_at.is_some())
        })
        .collect()
}

/// `request` as `session`, without `X-P2-Sensitive-Solution`: 401 SOLUTION_REQUIRED.
async fn assert_solution_required(
    session: &fugue_client::Session,
    request: reqwest::RequestBuilder,
) {
    let resp = request.bearer_auth(session.token()).send().await.unwrap();
    assert_raw_problem(resp, 401, ErrorCode::SensitiveSolutionRequired).await;
}

fn raw(server: &TestServer, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    server
        .client()
        .raw()
        .request(method, format!("{}{path}", server.url))
}

/// A raw login from `from` (a loopback address the client socket binds to).
async fn raw_login(
    server: &TestServer,
    from: Ipv4Addr,
    local_name: &str,
    password: &str,
) -> reqwest::Response {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(from))
        .build()
        .unwrap()
        .post(format!("{}{}", server.url, api::login::PATH))
        .json(&json!({"localName": local_name, "password": password}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_new_password_replaces_the_old_one_at_once_and_other_sessions_stay() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let phone = server.login("alice", "phone").await.unwrap();

    assert_solution_required(
        &alice,
        raw(
            &server,
            api::change_password::METHOD,
            api::change_password::PATH,
        )
        .json(&json!({"password": NEW_PASSWORD})),
    )
    .await;
    assert_problem(
        alice
            .change_password(NEW_PASSWORD, false, "wrong password")
            .await,
        403,
        ErrorCode::SensitiveSolutionInvalid,
    );
    // Checked like at registration: too short, or with edge spaces the header would strip.
    for weak in [
        "short",
        " leading space password",
        "trailing space password ",
    ] {
        assert_problem(
            alice.change_password(weak, false, PASSWORD).await,
            400,
            ErrorCode::WeakPassword,
        );
    }
    // None of the refusals changed anything.
    login_with(&server, "alice", PASSWORD, None, "still-old")
        .await
        .unwrap();

    alice
        .change_password(NEW_PASSWORD, false, PASSWORD)
        .await
        .unwrap();
    assert_problem(
        login_with(&server, "alice", PASSWORD, None, "old").await,
        401,
        ErrorCode::InvalidCredentials,
    );
    login_with(&server, "alice", NEW_PASSWORD, None, "new")
        .await
        .unwrap();
    // The new password is also the sensitive-action answer now.
    assert_problem(
        alice.totp_enroll(PASSWORD).await,
        403,
        ErrorCode::SensitiveSolutionInvalid,
    );
    alice.totp_enroll(NEW_PASSWORD).await.unwrap();
    // Without endSessions every session goes on.
    phone.sessions().await.unwrap();
    alice.sessions().await.unwrap();
}

#[tokio::test]
async fn end_sessions_ends_every_other_session_and_revokes_its_certificate() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let phone = server.login("alice", "phone").await.unwrap();
    let tablet = server.login("alice", "tablet").await.unwrap();
    let bob = server.register("bob").await;

    alice
        .change_password(NEW_PASSWORD, true, PASSWORD)
        .await
        .unwrap();
    for other in [&phone, &tablet] {
        assert_problem(other.sessions().await, 401, ErrorCode::InvalidToken);
    }
    let left = alice.sessions().await.unwrap();
    assert_eq!(left.len(), 1);
    assert!(left[0].current);
    bob.sessions().await.unwrap();
    // Ended through revocation: their certificates are listed as revoked, this one is not.
    let certs = published(&server, alice.fid()).await;
    for (s, revoked) in [(&phone, true), (&tablet, true), (&alice, false)] {
        let serial = s.current_serial().unwrap();
        assert!(certs.contains(&(serial, revoked)), "{serial}: {certs:?}");
    }
}

#[tokio::test]
async fn turning_totp_off_needs_a_code_and_then_login_needs_none() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    // Not enabled: a clear conflict, and no guess at the second factor is spent.
    assert_problem(
        alice.totp_disable(PASSWORD).await,
        409,
        ErrorCode::TotpNotEnabled,
    );
    let secret = enrol_totp(&alice).await;
    assert_problem(
        login_with(&server, "alice", PASSWORD, None, "no-code").await,
        401,
        ErrorCode::TotpRequired,
    );
    assert_solution_required(
        &alice,
        raw(&server, api::totp_disable::METHOD, api::totp_disable::PATH),
    )
    .await;
    // With TOTP on, the password is no longer the answer.
    assert_problem(
        alice.totp_disable(PASSWORD).await,
        403,
        ErrorCode::SensitiveSolutionInvalid,
    );
    alice.totp_disable(&totp_code_in(&secret, 0)).await.unwrap();
    login_with(&server, "alice", PASSWORD, None, "password-only")
        .await
        .unwrap();
    assert_problem(
        alice.totp_disable(PASSWORD).await,
        409,
        ErrorCode::TotpNotEnabled,
    );
    // The password is the sensitive-action answer again.
    alice.totp_enroll(PASSWORD).await.unwrap();
}

#[tokio::test]
async fn a_deleted_account_is_gone_but_its_certificates_stay_published_as_revoked() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let phone = server.login("alice", "phone").await.unwrap();
    let bob = server.register("bob").await;
    let serials = [
        alice.current_serial().unwrap(),
        phone.current_serial().unwrap(),
    ];

    assert_solution_required(
        &alice,
        raw(
            &server,
            api::delete_account::METHOD,
            api::delete_account::PATH,
        ),
    )
    .await;
    assert_problem(
        alice.delete_account("wrong password").await,
        403,
        ErrorCode::SensitiveSolutionInvalid,
    );
    alice.sessions().await.unwrap();

    alice.delete_account(PASSWORD).await.unwrap();
    for s in [&alice, &phone] {
        assert_problem(s.sessions().await, 401, ErrorCode::InvalidToken);
    }
    assert_problem(
        login_with(&server, "alice", PASSWORD, None, "again").await,
        401,
        ErrorCode::InvalidCredentials,
    );
    // Old messages stay verifiable: every certificate is still listed, revoked.
    let certs = published(&server, alice.fid()).await;
    assert_eq!(certs.len(), 2, "{certs:?}");
    for serial in serials {
        assert!(certs.contains(&(serial, true)), "{serial}: {certs:?}");
    }
    // The name is retired for good, in any case.
    for name in ["alice", "ALICE", "Alice"] {
        assert_problem(
            server.client().register(name, PASSWORD, None, None).await,
            409,
            ErrorCode::LocalNameTaken,
        );
    }
    // Nobody else is touched.
    bob.sessions().await.unwrap();
}

#[tokio::test]
async fn account_routes_need_a_session() {
    let server = TestServer::start().await;
    let raw = server.client().raw().clone();
    let url = |p: &str| format!("{}{p}", server.url);
    let requests = [
        raw.put(url(api::change_password::PATH))
            .json(&json!({"password": NEW_PASSWORD})),
        raw.delete(url(api::totp_disable::PATH)),
        raw.delete(url(api::delete_account::PATH)),
    ];
    for req in requests {
        let resp = req
            .header(api::SENSITIVE_HEADER, PASSWORD)
            .send()
            .await
            .unwrap();
        assert_raw_problem(resp, 401, ErrorCode::Unauthenticated).await;
    }
}

#[tokio::test]
async fn administrators_suspend_reinstate_reset_and_delete_accounts() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let phone = server.login("alice", "phone").await.unwrap();
    let bob = server.register("bob").await;
    let admin = &server.sessions;
    let now = unix_now();

    assert_eq!(admin.suspend("ALICE", now).await.unwrap(), 2);
    for s in [&alice, &phone] {
        assert_problem(s.sessions().await, 401, ErrorCode::InvalidToken);
    }
    assert_problem(
        login_with(&server, "alice", PASSWORD, None, "suspended").await,
        403,
        ErrorCode::AccountSuspended,
    );
    // A wrong password does not reveal the suspension.
    assert_problem(
        login_with(&server, "alice", "wrong password", None, "x").await,
        401,
        ErrorCode::InvalidCredentials,
    );
    bob.sessions().await.unwrap();
    // A session that slipped in (opened while the suspension was written) is refused too.
    let actor = server.store.actor_by_name("alice").await.unwrap().unwrap();
    let token = "a-session-opened-during-the-suspension";
    server
        .store
        .open_session(&fugue_store::NewSession {
            id: 42,
            actor_id: actor.id,
            session_id: "slipped".into(),
            token_hash: fugue_server::sessions::hash_secret(token),
            created_at: now as i64,
            cert: None,
            max_live: 100,
        })
        .await
        .unwrap();
    let resp = raw(
        &server,
        api::list_sessions::METHOD,
        api::list_sessions::PATH,
    )
    .bearer_auth(token)
    .send()
    .await
    .unwrap();
    assert_raw_problem(resp, 401, ErrorCode::InvalidToken).await;
    let list = admin.accounts(now).await.unwrap();
    let state = |name: &str| {
        let a = list.iter().find(|a| a.local_name == name).unwrap();
        (a.state, a.sessions)
    };
    use fugue_server::sessions::AccountState;
    assert_eq!(
        state("alice"),
        (AccountState::Suspended, 1),
        "the slipped-in session"
    );
    assert_eq!(state("bob"), (AccountState::Active, 1));

    admin.unsuspend("alice").await.unwrap();
    let back = login_with(&server, "alice", PASSWORD, None, "back")
        .await
        .unwrap();

    // Every session ends: the new one and the one that slipped in.
    assert_eq!(
        admin
            .reset_password("alice", NEW_PASSWORD.into(), now)
            .await
            .unwrap(),
        2
    );
    assert_problem(back.sessions().await, 401, ErrorCode::InvalidToken);
    assert_problem(
        login_with(&server, "alice", PASSWORD, None, "old").await,
        401,
        ErrorCode::InvalidCredentials,
    );
    login_with(&server, "alice", NEW_PASSWORD, None, "reset")
        .await
        .unwrap();
    assert!(
        admin
            .reset_password("alice", "short".into(), now)
            .await
            .is_err(),
        "a weak password is refused"
    );

    admin.delete_account_by_name("alice", now).await.unwrap();
    assert_problem(
        login_with(&server, "alice", NEW_PASSWORD, None, "gone").await,
        401,
        ErrorCode::InvalidCredentials,
    );
    // A deleted account cannot be brought back or changed.
    for result in [
        admin.unsuspend("alice").await.map(|_| 0),
        admin.suspend("alice", now).await,
        admin
            .reset_password("alice", NEW_PASSWORD.into(), now)
            .await,
        admin.suspend("nobody", now).await,
        admin.set_admin("alice", true).await.map(|_| 0),
    ] {
        assert!(
            matches!(result, Err(fugue_server::sessions::Error::ActorNotFound(_))),
            "{result:?}"
        );
    }
    let list = admin.accounts(now).await.unwrap();
    assert_eq!(
        list.iter().find(|a| a.local_name == "alice").unwrap().state,
        AccountState::Deleted
    );
}

#[tokio::test]
async fn a_strangers_failed_logins_do_not_lock_the_person_out() {
    let server = TestServer::start_with(|c| c.rate_limits.failed_logins_per_minute = 10).await;
    server.register("alice").await;
    let stranger = Ipv4Addr::new(127, 0, 0, 1);
    for _ in 0..10 {
        let resp = raw_login(&server, stranger, "alice", "wrong password").await;
        assert_raw_problem(resp, 401, ErrorCode::InvalidCredentials).await;
    }
    // That address has used up its guesses at this name (in any case) ...
    for name in ["alice", "ALICE"] {
        let resp = raw_login(&server, stranger, name, "wrong password").await;
        assert!(resp.headers().contains_key("retry-after"));
        assert_raw_problem(resp, 429, ErrorCode::RateLimited).await;
    }
    // ... but not at another name,
    let resp = raw_login(&server, stranger, "bob", "wrong password").await;
    assert_raw_problem(resp, 401, ErrorCode::InvalidCredentials).await;
    // and alice herself, from her own address, logs in.
    let resp = raw_login(&server, Ipv4Addr::new(127, 0, 0, 2), "alice", PASSWORD).await;
    assert_eq!(resp.status(), 201);
}

#[tokio::test]
async fn correct_logins_do_not_spend_the_per_name_budget() {
    let server = TestServer::start_with(|c| c.rate_limits.failed_logins_per_minute = 3).await;
    server.register("alice").await;
    let from = Ipv4Addr::new(127, 0, 0, 3);
    for _ in 0..6 {
        let resp = raw_login(&server, from, "alice", PASSWORD).await;
        assert_eq!(resp.status(), 201);
    }
}

#[tokio::test]
async fn parallel_wrong_logins_cannot_slip_under_the_per_name_limit() {
    let server = TestServer::start_with(|c| c.rate_limits.failed_logins_per_minute = 5).await;
    server.register("alice").await;
    let from = Ipv4Addr::new(127, 0, 0, 5);
    let attempts = (0..40).map(|_| raw_login(&server, from, "alice", "wrong password"));
    let statuses: Vec<u16> = futures_util::future::join_all(attempts)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    let guesses = statuses.iter().filter(|s| **s == 401).count();
    assert_eq!(guesses, 5, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 35);
}

#[tokio::test]
async fn an_invalid_name_never_becomes_a_limiter_key() {
    let server = TestServer::start_with(|c| c.rate_limits.failed_logins_per_minute = 10).await;
    let huge = "a".repeat(900 * 1024);
    let from = Ipv4Addr::new(127, 0, 0, 4);
    for _ in 0..3 {
        let resp = raw_login(&server, from, &huge, "wrong password").await;
        assert_raw_problem(resp, 401, ErrorCode::InvalidCredentials).await;
    }
    assert_eq!(server.sessions.login_failure_keys(), 0);
    let resp = raw_login(&server, from, "alice", "wrong password").await;
    assert_raw_problem(resp, 401, ErrorCode::InvalidCredentials).await;
    assert_eq!(server.sessions.login_failure_keys(), 1);
}
