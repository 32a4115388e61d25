//! TOTP codes as an authenticator app computes them (RFC 6238: SHA-1, 6 digits, 30 s steps),
//! for tests of the second factor.

pub use fugue_server::clock::unix_now;

/// The TOTP code for the base32 `secret` at Unix time `at` (SHA-1, 6 digits, 30 s steps).
pub fn totp_code_at(secret: &str, at: u64) -> String {
    totp_rs::Builder::new()
        .with_secret(totp_rs::Secret::try_from_base32(secret).unwrap())
        .with_account_name("test")
        .build()
        .unwrap()
        .generate(at)
        .to_string()
}

/// A six-digit code that is none of the codes the server accepts around `at` (±1 step and a
/// margin), so it is wrong however the clock ticks during the test.
pub fn wrong_totp_code(secret: &str, at: u64) -> String {
    let near: Vec<String> = (0..=8)
        .map(|i| totp_code_at(secret, (at + 120).saturating_sub(i * 30)))
        .collect();
    (0..1_000_000u32)
        .map(|n| format!("{n:06}"))
        .find(|c| !near.contains(c))
        .unwrap()
}

/// Waits (at most 3 s) until at least 3 s remain in the current 30 s TOTP step, so a test
/// that spends the codes of steps t-1, t and t+1 in order does not straddle a boundary.
pub async fn wait_for_fresh_totp_step() {
    let into_step = unix_now() % 30;
    if into_step >= 27 {
        tokio::time::sleep(std::time::Duration::from_secs(30 - into_step)).await;
    }
}

/// The code of the step `steps` away from now (-1, 0 or +1 are accepted by the server).
pub fn totp_code_in(secret: &str, steps: i64) -> String {
    totp_code_at(secret, unix_now().saturating_add_signed(steps * 30))
}

/// Enrols and confirms TOTP for `session` (spending the code of the previous step); returns
/// the base32 secret.
pub async fn enrol_totp(session: &fugue_client::Session) -> String {
    let enrolment = session.totp_enroll(crate::PASSWORD).await.unwrap();
    wait_for_fresh_totp_step().await;
    session
        .totp_confirm(&totp_code_in(&enrolment.secret, -1))
        .await
        .unwrap();
    enrolment.secret
}
