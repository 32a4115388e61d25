//! Encrypted private key material (core §6.3): upload for one's own serials, listing and
//! filtering, the size and slot limits, deletion as a sensitive action, and the size route.

use fugue_client::Session;
use fugue_proto::api::{self, keymaterial::EncryptedPkm};
use fugue_proto::{ErrorCode, Serial};
use fugue_testkit::{PASSWORD, TestServer};
use reqwest::StatusCode;

use crate::support::{assert_problem, assert_raw_problem};

const PBES2: &str = "1.2.840.113549.1.5.13";

fn item(serial: Serial, key_data: &str) -> EncryptedPkm {
    EncryptedPkm {
        key_data: key_data.to_owned(),
        serial,
        encryption_algorithms: vec![PBES2.to_owned()],
    }
}

/// A stand-in backup for the session's current serial; the server treats key data as opaque,
/// and real encryption (scrypt) is slow in debug builds.
fn backup_of(session: &Session) -> EncryptedPkm {
    let serial = session.current_serial().unwrap();
    item(
        serial,
        &format!(
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\n{serial:?} {:?}\n",
            session.session_id()
        ),
    )
}

/// The path the key material endpoints share (upload, get, delete), with `query`.
fn url(server: &TestServer, query: &str) -> String {
    format!("{}{}{query}", server.url, api::get_key_material::PATH)
}

#[tokio::test]
async fn key_material_for_the_own_serial_round_trips() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    // A real backup: the key encrypted as PKCS#8, as the CLI makes it.
    let pem = alice
        .key()
        .to_encrypted_pem("passphrase")
        .unwrap()
        .to_string();
    let backup = item(alice.current_serial().unwrap(), &pem);

    let resp = alice
        .client()
        .raw()
        .post(url(&server, ""))
        .bearer_auth(alice.token())
        .json(&vec![backup.clone()])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);

    assert_eq!(alice.key_material(&[]).await.unwrap(), vec![backup.clone()]);
    assert_eq!(
        alice.key_material(&[backup.serial]).await.unwrap(),
        vec![backup.clone()]
    );
    // Another session of the same actor sees it too, and the key decrypts.
    let phone = server.login("alice", "phone").await.unwrap();
    let fetched = phone.key_material(&[]).await.unwrap();
    assert_eq!(fetched, vec![backup.clone()]);
    let key =
        fugue_client::IdentityKey::from_encrypted_pem(&fetched[0].key_data, "passphrase").unwrap();
    assert_eq!(key.verifying_key(), alice.key().verifying_key());

    // Asking for a serial without material is a 404.
    assert_problem(
        alice.key_material(&[Serial(backup.serial.0 ^ 1)]).await,
        404,
        ErrorCode::KeyMaterialNotFound,
    );
}

#[tokio::test]
async fn without_uploads_the_list_is_empty_with_204() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let resp = alice
        .client()
        .raw()
        .get(url(&server, ""))
        .bearer_auth(alice.token())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(resp.bytes().await.unwrap().is_empty());
    assert_eq!(alice.key_material(&[]).await.unwrap(), vec![]);
    assert_problem(
        alice.key_material(&[alice.current_serial().unwrap()]).await,
        404,
        ErrorCode::KeyMaterialNotFound,
    );
}

#[tokio::test]
async fn key_material_is_private_to_its_actor() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    alice
        .upload_key_material(vec![backup_of(&alice)])
        .await
        .unwrap();
    assert_eq!(bob.key_material(&[]).await.unwrap(), vec![]);
    assert_problem(
        bob.key_material(&[alice.current_serial().unwrap()]).await,
        404,
        ErrorCode::KeyMaterialNotFound,
    );
    // Bob cannot delete it either.
    assert_problem(
        bob.delete_key_material(&[alice.current_serial().unwrap()], PASSWORD)
            .await,
        404,
        ErrorCode::KeyMaterialNotFound,
    );
    assert_eq!(alice.key_material(&[]).await.unwrap().len(), 1);
}

#[tokio::test]
async fn uploading_twice_for_one_serial_conflicts() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let first = backup_of(&alice);
    alice
        .upload_key_material(vec![first.clone()])
        .await
        .unwrap();
    let other = item(alice.current_serial().unwrap(), "something else");
    assert_problem(
        alice.upload_key_material(vec![other]).await,
        409,
        ErrorCode::KeyMaterialExists,
    );
    // Twice in one request as well, and then neither is stored.
    let phone = server.login("alice", "phone").await.unwrap();
    let twice = vec![backup_of(&phone), backup_of(&phone)];
    assert_problem(
        phone.upload_key_material(twice).await,
        409,
        ErrorCode::KeyMaterialExists,
    );
    // The first upload is what stays.
    assert_eq!(alice.key_material(&[]).await.unwrap(), vec![first]);
}

#[tokio::test]
async fn only_serials_of_the_actors_own_certs_are_accepted() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let bobs = item(bob.current_serial().unwrap(), "x");
    assert_problem(
        alice.upload_key_material(vec![bobs]).await,
        404,
        ErrorCode::UnknownSerial,
    );
    let random = item(Serial(424_242_424_242), "x");
    assert_problem(
        alice.upload_key_material(vec![random]).await,
        404,
        ErrorCode::UnknownSerial,
    );
    // All or nothing: a valid element next to a foreign one is not stored either.
    let mixed = vec![backup_of(&alice), item(bob.current_serial().unwrap(), "x")];
    assert_problem(
        alice.upload_key_material(mixed).await,
        404,
        ErrorCode::UnknownSerial,
    );
    assert_eq!(alice.key_material(&[]).await.unwrap(), vec![]);
}

#[tokio::test]
async fn the_key_of_a_replaced_cert_can_still_be_backed_up() {
    let server = TestServer::start().await;
    let mut alice = server.register("alice").await;
    let old = backup_of(&alice);
    alice.renew_cert(PASSWORD).await.unwrap();
    alice
        .upload_key_material(vec![old.clone(), backup_of(&alice)])
        .await
        .unwrap();
    let stored = alice.key_material(&[old.serial]).await.unwrap();
    assert_eq!(stored, vec![old]);
}

#[tokio::test]
async fn elements_larger_than_the_limit_are_refused() {
    let server = TestServer::start_with(|c| c.limits.key_material_bytes = 100).await;
    let alice = server.register("alice").await;
    let serial = alice.current_serial().unwrap();
    let too_big = item(serial, &"k".repeat(101));
    assert_problem(
        alice.upload_key_material(vec![too_big]).await,
        413,
        ErrorCode::KeyMaterialTooLarge,
    );
    let just_fits = item(serial, &"k".repeat(100));
    alice
        .upload_key_material(vec![just_fits.clone()])
        .await
        .unwrap();
    assert_eq!(alice.key_material(&[]).await.unwrap(), vec![just_fits]);
}

#[tokio::test]
async fn the_default_element_limit_is_ten_thousand_bytes() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    assert_eq!(
        alice.client().key_material_size_limit().await.unwrap(),
        10_000
    );
    let serial = alice.current_serial().unwrap();
    assert_problem(
        alice
            .upload_key_material(vec![item(serial, &"k".repeat(10_001))])
            .await,
        413,
        ErrorCode::KeyMaterialTooLarge,
    );
    alice
        .upload_key_material(vec![backup_of(&alice)])
        .await
        .unwrap();
}

#[tokio::test]
async fn the_slots_per_actor_are_limited() {
    let server = TestServer::start_with(|c| c.limits.key_material_slots = 2).await;
    let s1 = server.register("alice").await;
    let s2 = server.login("alice", "two").await.unwrap();
    let s3 = server.login("alice", "three").await.unwrap();

    // Three at once do not fit ...
    let all = vec![backup_of(&s1), backup_of(&s2), backup_of(&s3)];
    assert_problem(
        s1.upload_key_material(all).await,
        409,
        ErrorCode::KeyMaterialSlotsExhausted,
    );
    assert_eq!(s1.key_material(&[]).await.unwrap(), vec![]);
    // ... two do, and then a third does not.
    s1.upload_key_material(vec![backup_of(&s1), backup_of(&s2)])
        .await
        .unwrap();
    assert_problem(
        s3.upload_key_material(vec![backup_of(&s3)]).await,
        409,
        ErrorCode::KeyMaterialSlotsExhausted,
    );
    // Freeing a slot makes room again.
    s1.delete_key_material(&[s1.current_serial().unwrap()], PASSWORD)
        .await
        .unwrap();
    s3.upload_key_material(vec![backup_of(&s3)]).await.unwrap();
    let serials: Vec<Serial> = s1
        .key_material(&[])
        .await
        .unwrap()
        .iter()
        .map(|m| m.serial)
        .collect();
    assert_eq!(serials.len(), 2);
    assert!(
        serials.contains(&s2.current_serial().unwrap())
            && serials.contains(&s3.current_serial().unwrap())
    );
}

#[tokio::test]
async fn deleting_key_material_is_a_sensitive_action() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let backup = backup_of(&alice);
    alice
        .upload_key_material(vec![backup.clone()])
        .await
        .unwrap();
    let query = format!("?serials={}", backup.serial);

    let resp = alice
        .client()
        .raw()
        .delete(url(&server, &query))
        .bearer_auth(alice.token())
        .send()
        .await
        .unwrap();
    assert_raw_problem(resp, 401, ErrorCode::SensitiveSolutionRequired).await;
    assert_problem(
        alice.delete_key_material(&[backup.serial], "wrong").await,
        403,
        ErrorCode::SensitiveSolutionInvalid,
    );
    assert_eq!(alice.key_material(&[]).await.unwrap(), vec![backup.clone()]);

    let resp = alice
        .client()
        .raw()
        .delete(url(&server, &query))
        .bearer_auth(alice.token())
        .header(api::SENSITIVE_HEADER, PASSWORD)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = alice
        .client()
        .raw()
        .get(url(&server, ""))
        .bearer_auth(alice.token())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);

    // Deleting what is gone, or without naming serials, is refused.
    assert_problem(
        alice.delete_key_material(&[backup.serial], PASSWORD).await,
        404,
        ErrorCode::KeyMaterialNotFound,
    );
    assert_problem(
        alice.delete_key_material(&[], PASSWORD).await,
        400,
        ErrorCode::MalformedRequest,
    );
}

#[tokio::test]
async fn malformed_uploads_and_queries_are_bad_requests() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    assert_problem(
        alice.upload_key_material(vec![]).await,
        400,
        ErrorCode::MalformedRequest,
    );
    let mut no_algorithm = backup_of(&alice);
    no_algorithm.encryption_algorithms.clear();
    assert_problem(
        alice.upload_key_material(vec![no_algorithm]).await,
        400,
        ErrorCode::MalformedRequest,
    );
    let resp = alice
        .client()
        .raw()
        .get(url(&server, "?serials=abc"))
        .bearer_auth(alice.token())
        .send()
        .await
        .unwrap();
    assert_raw_problem(resp, 400, ErrorCode::MalformedRequest).await;
    // Without a token nothing is served.
    let resp = alice
        .client()
        .raw()
        .get(url(&server, ""))
        .send()
        .await
        .unwrap();
    assert_raw_problem(resp, 401, ErrorCode::Unauthenticated).await;
}

#[tokio::test]
async fn the_size_route_announces_the_configured_limit_without_a_token() {
    let server = TestServer::start_with(|c| c.limits.key_material_bytes = 12_345).await;
    let resp = server
        .client()
        .raw()
        .get(format!("{}{}", server.url, api::key_material_size::PATH))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()[api::MAX_PAYLOAD_HEADER].to_str().unwrap(),
        "12345"
    );
    assert_eq!(
        server.client().key_material_size_limit().await.unwrap(),
        12_345
    );
}
