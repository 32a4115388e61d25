//! Accounts: registration rules (names, passwords, closed/invite/ToS modes), password login
//! without account enumeration, and TOTP as the second factor.

use fugue_proto::ErrorCode;
use fugue_server::Registration;
use fugue_testkit::{PASSWORD, TestServer};

use crate::support::{
    assert_problem, enrol_totp, login_with, totp_code_at, totp_code_in, unix_now,
    wait_for_fresh_totp_step, wrong_totp_code,
};

#[tokio::test]
async fn registration_returns_the_lowercased_fid_and_the_account_can_log_in() {
    let server = TestServer::start().await;
    let fid = server
        .client()
        .register("Alice", PASSWORD, None, None)
        .await
        .unwrap();
    assert_eq!(fid.to_string(), "alice@localhost");
    let session = server.login("alice", "main").await.unwrap();
    assert_eq!(session.fid().to_string(), "alice@localhost");
    // Local names are case-insensitive at login too.
    login_with(&server, "ALICE", PASSWORD, None, "upper")
        .await
        .unwrap();
}

#[tokio::test]
async fn invalid_local_names_are_refused() {
    let server = TestServer::start().await;
    let client = server.client();
    let too_long = "a".repeat(33);
    for bad in ["", "with space", "a/b", "ümlaut", "a@b", too_long.as_str()] {
        assert_problem(
            client.register(bad, PASSWORD, None, None).await,
            400,
            ErrorCode::InvalidLocalName,
        );
    }
    // The limit itself is allowed.
    let longest = "b".repeat(32);
    let fid = client
        .register(&longest, PASSWORD, None, None)
        .await
        .unwrap();
    assert_eq!(fid.local_name().as_str(), longest);
}

#[tokio::test]
async fn the_local_name_limit_follows_the_configuration() {
    let server = TestServer::start_with(|c| c.limits.local_name_max = 4).await;
    let client = server.client();
    assert_problem(
        client.register("abcde", PASSWORD, None, None).await,
        400,
        ErrorCode::InvalidLocalName,
    );
    client.register("abcd", PASSWORD, None, None).await.unwrap();
}

#[tokio::test]
async fn a_taken_local_name_is_refused_in_any_case() {
    let server = TestServer::start().await;
    let client = server.client();
    client.register("bob", PASSWORD, None, None).await.unwrap();
    assert_problem(
        client.register("bob", "another password", None, None).await,
        409,
        ErrorCode::LocalNameTaken,
    );
    assert_problem(
        client.register("BOB", "another password", None, None).await,
        409,
        ErrorCode::LocalNameTaken,
    );
    // The first account keeps its password.
    login_with(&server, "bob", PASSWORD, None, "main")
        .await
        .unwrap();
    assert_problem(
        login_with(&server, "bob", "another password", None, "x").await,
        401,
        ErrorCode::InvalidCredentials,
    );
}

#[tokio::test]
async fn passwords_shorter_than_the_minimum_are_weak() {
    let server = TestServer::start().await;
    let client = server.client();
    assert_problem(
        client.register("alice", "1234567", None, None).await,
        400,
        ErrorCode::WeakPassword,
    );
    assert_problem(
        client.register("alice", "", None, None).await,
        400,
        ErrorCode::WeakPassword,
    );
    // A refused registration leaves the name free.
    client
        .register("alice", "12345678", None, None)
        .await
        .unwrap();
    login_with(&server, "alice", "12345678", None, "main")
        .await
        .unwrap();
}

#[tokio::test]
async fn closed_registration_refuses_everyone() {
    let server = TestServer::start_with(|c| c.registration = Registration::Closed).await;
    let client = server.client();
    assert_problem(
        client.register("alice", PASSWORD, None, None).await,
        403,
        ErrorCode::RegistrationClosed,
    );
    // An invite does not open a closed server.
    let code = fugue_server::sessions::create_invite(&server.store, 1, None, unix_now())
        .await
        .unwrap();
    assert_problem(
        client.register("alice", PASSWORD, Some(&code), None).await,
        403,
        ErrorCode::RegistrationClosed,
    );
}

#[tokio::test]
async fn invite_only_registration_needs_a_valid_unused_code() {
    let server = TestServer::start_with(|c| c.registration = Registration::Invite).await;
    let client = server.client();
    assert_problem(
        client.register("alice", PASSWORD, None, None).await,
        403,
        ErrorCode::InviteRequired,
    );
    assert_problem(
        client
            .register(
                "alice",
                PASSWORD,
                Some("00000000000000000000000000000000"),
                None,
            )
            .await,
        403,
        ErrorCode::InvalidInvite,
    );
    // A refused registration creates no account.
    assert_problem(
        login_with(&server, "alice", PASSWORD, None, "main").await,
        401,
        ErrorCode::InvalidCredentials,
    );

    let code = fugue_server::sessions::create_invite(&server.store, 1, None, unix_now())
        .await
        .unwrap();
    let fid = client
        .register("alice", PASSWORD, Some(&code), None)
        .await
        .unwrap();
    assert_eq!(fid.to_string(), "alice@localhost");
    assert_problem(
        client.register("bob", PASSWORD, Some(&code), None).await,
        403,
        ErrorCode::InvalidInvite,
    );
    assert_problem(
        login_with(&server, "bob", PASSWORD, None, "main").await,
        401,
        ErrorCode::InvalidCredentials,
    );
}

#[tokio::test]
async fn an_invite_is_not_used_up_by_a_registration_that_fails() {
    let server = TestServer::start_with(|c| c.registration = Registration::Invite).await;
    let client = server.client();
    let first = fugue_server::sessions::create_invite(&server.store, 1, None, unix_now())
        .await
        .unwrap();
    client
        .register("alice", PASSWORD, Some(&first), None)
        .await
        .unwrap();

    let code = fugue_server::sessions::create_invite(&server.store, 1, None, unix_now())
        .await
        .unwrap();
    assert_problem(
        client.register("alice", PASSWORD, Some(&code), None).await,
        409,
        ErrorCode::LocalNameTaken,
    );
    assert_problem(
        client.register("bob", "short", Some(&code), None).await,
        400,
        ErrorCode::WeakPassword,
    );
    client
        .register("bob", PASSWORD, Some(&code), None)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_multi_use_invite_works_as_often_as_allowed() {
    let server = TestServer::start_with(|c| c.registration = Registration::Invite).await;
    let client = server.client();
    let code = fugue_server::sessions::create_invite(&server.store, 2, None, unix_now())
        .await
        .unwrap();
    client
        .register("alice", PASSWORD, Some(&code), None)
        .await
        .unwrap();
    client
        .register("bob", PASSWORD, Some(&code), None)
        .await
        .unwrap();
    assert_problem(
        client.register("carol", PASSWORD, Some(&code), None).await,
        403,
        ErrorCode::InvalidInvite,
    );
}

#[tokio::test]
async fn an_expired_invite_is_invalid() {
    let server = TestServer::start_with(|c| c.registration = Registration::Invite).await;
    let now = unix_now();
    let code = fugue_server::sessions::create_invite(&server.store, 5, Some(now - 10), now - 100)
        .await
        .unwrap();
    let client = server.client();
    assert_problem(
        client.register("alice", PASSWORD, Some(&code), None).await,
        403,
        ErrorCode::InvalidInvite,
    );
    // One that expires later still works.
    let later = fugue_server::sessions::create_invite(&server.store, 1, Some(now + 3600), now)
        .await
        .unwrap();
    client
        .register("alice", PASSWORD, Some(&later), None)
        .await
        .unwrap();
}

#[tokio::test]
async fn terms_of_service_need_explicit_consent() {
    let server =
        TestServer::start_with(|c| c.tos_url = Some("https://example.org/terms".into())).await;
    let client = server.client();
    assert_problem(
        client.register("alice", PASSWORD, None, None).await,
        400,
        ErrorCode::TosConsentRequired,
    );
    assert_problem(
        client.register("alice", PASSWORD, None, Some(false)).await,
        400,
        ErrorCode::TosConsentRequired,
    );
    let fid = client
        .register("alice", PASSWORD, None, Some(true))
        .await
        .unwrap();
    assert_eq!(fid.to_string(), "alice@localhost");
}

#[tokio::test]
async fn wrong_passwords_and_unknown_accounts_get_the_same_refusal() {
    let server = TestServer::start().await;
    server.register("alice").await;
    assert_problem(
        login_with(&server, "alice", "not the password", None, "a").await,
        401,
        ErrorCode::InvalidCredentials,
    );
    assert_problem(
        login_with(&server, "nobody", PASSWORD, None, "b").await,
        401,
        ErrorCode::InvalidCredentials,
    );
    // Even a name that could never be registered gets the same answer.
    let raw = server
        .client()
        .raw()
        .post(format!("{}{}", server.url, fugue_proto::api::login::PATH))
        .json(&serde_json::json!({"localName": "no such/name", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    crate::support::assert_raw_problem(raw, 401, ErrorCode::InvalidCredentials).await;
}

#[tokio::test]
async fn totp_enrolment_makes_the_code_required_at_login_and_for_sensitive_actions() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let enrolment = alice.totp_enroll(PASSWORD).await.unwrap();
    assert!(
        enrolment.otpauth_url.starts_with("otpauth://totp/"),
        "{}",
        enrolment.otpauth_url
    );
    assert!(enrolment.otpauth_url.contains(&enrolment.secret));

    // Until confirmed, TOTP is not in force.
    login_with(&server, "alice", PASSWORD, None, "before-confirm")
        .await
        .unwrap();

    let wrong = wrong_totp_code(&enrolment.secret, unix_now());
    assert_problem(
        alice.totp_confirm(&wrong).await,
        403,
        ErrorCode::SensitiveSolutionInvalid,
    );
    // Each code is good once (RFC 6238 §5.2): spend the steps t-1, t, t+1 in order.
    wait_for_fresh_totp_step().await;
    alice
        .totp_confirm(&totp_code_in(&enrolment.secret, -1))
        .await
        .unwrap();

    assert_problem(
        login_with(&server, "alice", PASSWORD, None, "no-code").await,
        401,
        ErrorCode::TotpRequired,
    );
    let wrong = wrong_totp_code(&enrolment.secret, unix_now());
    assert_problem(
        login_with(&server, "alice", PASSWORD, Some(&wrong), "bad-code").await,
        401,
        ErrorCode::InvalidCredentials,
    );
    // A right code does not rescue a wrong password (and is not spent by the attempt).
    let code = totp_code_in(&enrolment.secret, 0);
    assert_problem(
        login_with(&server, "alice", "wrong password", Some(&code), "bad-pw").await,
        401,
        ErrorCode::InvalidCredentials,
    );
    let phone = login_with(&server, "alice", PASSWORD, Some(&code), "phone")
        .await
        .unwrap();
    // The same code again is a replay.
    assert_problem(
        login_with(&server, "alice", PASSWORD, Some(&code), "replayed").await,
        401,
        ErrorCode::InvalidCredentials,
    );

    // The sensitive solution is now the TOTP code, no longer the password.
    assert_problem(
        alice.revoke_session(phone.session_id(), PASSWORD).await,
        403,
        ErrorCode::SensitiveSolutionInvalid,
    );
    let code = totp_code_in(&enrolment.secret, 1);
    alice
        .revoke_session(phone.session_id(), &code)
        .await
        .unwrap();
    assert_problem(phone.sessions().await, 401, ErrorCode::InvalidToken);

    // Enrolling again: the solution is checked first; a spent code does not pass.
    assert_problem(
        alice.totp_enroll(PASSWORD).await,
        403,
        ErrorCode::SensitiveSolutionInvalid,
    );
    assert_problem(
        alice.totp_enroll(&code).await,
        403,
        ErrorCode::SensitiveSolutionInvalid,
    );
}

#[tokio::test]
async fn an_enrolled_account_cannot_enrol_again_or_confirm_twice() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let secret = enrol_totp(&alice).await;
    let code = totp_code_in(&secret, 0);
    assert_problem(
        alice.totp_enroll(&code).await,
        409,
        ErrorCode::TotpAlreadyEnrolled,
    );
    assert_problem(
        alice.totp_confirm(&totp_code_in(&secret, 1)).await,
        409,
        ErrorCode::TotpNotPending,
    );
}

#[tokio::test]
async fn confirming_totp_without_an_enrolment_is_refused() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    assert_problem(
        alice.totp_confirm("123456").await,
        409,
        ErrorCode::TotpNotPending,
    );
    // Nothing changed: login still needs no code.
    login_with(&server, "alice", PASSWORD, None, "again")
        .await
        .unwrap();
}

#[tokio::test]
async fn totp_enrolment_needs_the_password_as_sensitive_solution() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    assert_problem(
        alice.totp_enroll("wrong password").await,
        403,
        ErrorCode::SensitiveSolutionInvalid,
    );
    let raw = alice
        .client()
        .raw()
        .post(format!(
            "{}{}",
            server.url,
            fugue_proto::api::totp_enroll::PATH
        ))
        .bearer_auth(alice.token())
        .send()
        .await
        .unwrap();
    crate::support::assert_raw_problem(raw, 401, ErrorCode::SensitiveSolutionRequired).await;
    // Nothing is pending after the refusals.
    assert_problem(
        alice.totp_confirm("123456").await,
        409,
        ErrorCode::TotpNotPending,
    );
}

#[tokio::test]
async fn a_second_enrolment_before_confirmation_replaces_the_pending_secret() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let first = alice.totp_enroll(PASSWORD).await.unwrap();
    let second = alice.totp_enroll(PASSWORD).await.unwrap();
    assert_ne!(first.secret, second.secret);
    // Only the newest secret confirms (codes of independent secrets collide with p ≈ 3e-6).
    let stale = totp_code_at(&first.secret, unix_now());
    if ![-30i64, 0, 30]
        .iter()
        .any(|d| totp_code_at(&second.secret, unix_now().saturating_add_signed(*d)) == stale)
    {
        assert_problem(
            alice.totp_confirm(&stale).await,
            403,
            ErrorCode::SensitiveSolutionInvalid,
        );
    }
    wait_for_fresh_totp_step().await;
    alice
        .totp_confirm(&totp_code_in(&second.secret, 0))
        .await
        .unwrap();
    let code = totp_code_in(&second.secret, 1);
    login_with(&server, "alice", PASSWORD, Some(&code), "phone")
        .await
        .unwrap();
}
