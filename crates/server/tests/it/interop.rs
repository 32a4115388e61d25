//! Interoperability with the reference SDK, `polyproto` 0.21.0, as an oracle: its CSRs are
//! accepted, and our certificates and cacheable-cert responses validate with its code.
//!
//! The SDK's signature traits are implemented here over ed25519-dalek 2.2, the way its own
//! examples do. Response bodies are read raw, so the SDK sees exactly what the server sent.

use ed25519_dalek::{Signature as DalekSig, Signer, SigningKey, VerifyingKey};
use polyproto::api::cacheable_cert::CacheableIdCert;
use polyproto::certs::PublicKeyInfo;
use polyproto::certs::capabilities::{ActorCapabilities, HomeServerCapabilities};
use polyproto::certs::idcert::{IdCertActor, IdCertBehaviors, IdCertHs};
use polyproto::certs::idcsr::{IdCsrActor, IdCsrBehaviors, IdCsrHs};
use polyproto::der::asn1::BitString;
use polyproto::der::pem::LineEnding;
use polyproto::errors::{CertificateConversionError, InvalidInput, PublicKeyError};
use polyproto::key::{PrivateKey, PublicKey};
use polyproto::signature::Signature;
use polyproto::spki::{AlgorithmIdentifierOwned, ObjectIdentifier, SignatureBitStringEncoding};
use polyproto::types::{ActorDN, DomainName, FederationId, HomeServerDN, LocalName, SessionId};
use rand_core::OsRng;

use fugue_client::Session;
use fugue_proto::ErrorCode;
use fugue_proto::api::{get_actor_idcerts, get_server_idcert, login};
use fugue_proto::certs::IdCert;
use fugue_testkit::{PASSWORD, TestServer};

use crate::support::{assert_raw_problem, unix_now as now};

// ---- the SDK's key traits over ed25519-dalek ----

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ed25519Signature(DalekSig);

impl std::fmt::Display for Ed25519Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl SignatureBitStringEncoding for Ed25519Signature {
    fn to_bitstring(&self) -> polyproto::der::Result<BitString> {
        BitString::from_bytes(&self.0.to_bytes())
    }
}

impl Signature for Ed25519Signature {
    type Signature = DalekSig;

    fn as_signature(&self) -> &DalekSig {
        &self.0
    }

    fn algorithm_identifier() -> AlgorithmIdentifierOwned {
        AlgorithmIdentifierOwned {
            oid: ObjectIdentifier::new_unwrap("1.3.101.112"),
            parameters: None,
        }
    }

    fn from_bytes(b: &[u8]) -> Result<Self, InvalidInput> {
        let a: [u8; 64] = b.try_into().map_err(|_| InvalidInput::Length {
            min_length: 64,
            max_length: 64,
            actual_length: b.len().to_string(),
        })?;
        Ok(Self(DalekSig::from_bytes(&a)))
    }

    fn as_bytes(&self) -> Vec<u8> {
        self.0.to_vec()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ed25519PublicKey(VerifyingKey);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ed25519PrivateKey {
    key: SigningKey,
    public: Ed25519PublicKey,
}

impl Ed25519PrivateKey {
    fn generate() -> Self {
        let key = SigningKey::generate(&mut OsRng);
        Self {
            public: Ed25519PublicKey(key.verifying_key()),
            key,
        }
    }
}

impl PrivateKey<Ed25519Signature> for Ed25519PrivateKey {
    type PublicKey = Ed25519PublicKey;

    fn pubkey(&self) -> Ed25519PublicKey {
        self.public.clone()
    }

    fn sign(&self, data: &[u8]) -> Ed25519Signature {
        Ed25519Signature(self.key.sign(data))
    }
}

impl PublicKey<Ed25519Signature> for Ed25519PublicKey {
    fn verify_signature(&self, s: &Ed25519Signature, data: &[u8]) -> Result<(), PublicKeyError> {
        self.0
            .verify_strict(data, &s.0)
            .map_err(|_| PublicKeyError::BadSignature)
    }

    fn public_key_info(&self) -> Result<PublicKeyInfo, PublicKeyError> {
        Ok(PublicKeyInfo {
            algorithm: Ed25519Signature::algorithm_identifier(),
            public_key_bitstring: BitString::from_bytes(&self.0.to_bytes())
                .map_err(|_| PublicKeyError::BadPublicKeyInfo)?,
        })
    }

    fn try_from_public_key_info(p: PublicKeyInfo) -> Result<Self, CertificateConversionError> {
        let a: [u8; 32] = p
            .public_key_bitstring
            .raw_bytes()
            .try_into()
            .map_err(|_| InvalidInput::Malformed("need 32 bytes".into()))?;
        VerifyingKey::from_bytes(&a)
            .map(Self)
            .map_err(|e| InvalidInput::Malformed(e.to_string()).into())
    }
}

type SdkActorCert = IdCertActor<Ed25519Signature, Ed25519PublicKey>;
type SdkServerCert = IdCertHs<Ed25519Signature, Ed25519PublicKey>;

// ---- helpers ----

/// An actor ID-CSR made by the SDK for `local@domain` in `session`.
fn sdk_csr(
    key: &Ed25519PrivateKey,
    local: &str,
    domain: &str,
    session: &str,
    line_ending: LineEnding,
) -> String {
    let dn = ActorDN::new_validated(
        FederationId::new(&format!("{local}@{domain}")).unwrap(),
        LocalName::new(local).unwrap(),
        DomainName::new(domain).unwrap(),
        SessionId::new_validated(session).unwrap(),
        None,
    )
    .unwrap();
    let csr = IdCsrActor::new(dn, key, ActorCapabilities::default()).unwrap();
    csr.to_pem(line_ending).unwrap()
}

async fn login_raw(server: &TestServer, local: &str, csr: String) -> reqwest::Response {
    let body = login::Request {
        local_name: local.to_owned(),
        password: PASSWORD.to_owned(),
        totp: None,
        csr: Some(csr),
        session_id: None,
    };
    let url = format!("{}{}", server.url, login::PATH);
    server
        .client()
        .raw()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// The server's key, taken from its root certificate (as a client would).
async fn server_key(server: &TestServer) -> Ed25519PublicKey {
    let cached = server.client().server_cert(None).await.unwrap();
    Ed25519PublicKey(IdCert::parse(cached.id_cert_pem.as_bytes()).unwrap().key)
}

/// GETs `path_and_query` and returns the body after checking status 200 and JSON.
async fn get_body(server: &TestServer, path_and_query: &str) -> String {
    let resp = server
        .client()
        .raw()
        .get(format!("{}{path_and_query}", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200, "GET {path_and_query}");
    let ct = resp
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(ct.starts_with("application/json"), "{ct}");
    resp.text().await.unwrap()
}

/// GETs an actor's certs, checks the body is canonical JSON and parses it with the SDK.
async fn sdk_actor_certs(server: &TestServer, local: &str, query: &str) -> Vec<CacheableIdCert> {
    let path = get_actor_idcerts::path(&server.fid(local));
    let body = get_body(server, &format!("{path}{query}")).await;
    assert!(
        polyproto::is_canonicalized_json(&body),
        "not canonical JSON: {body}"
    );
    serde_json::from_str(&body).unwrap()
}

fn session_of(cert: &CacheableIdCert) -> String {
    SdkActorCert::from_pem_unchecked(&cert.cert)
        .unwrap()
        .id_cert_tbs
        .subject
        .session_id
        .to_string()
}

// ---- (a) SDK CSRs ----

#[tokio::test]
async fn an_actor_csr_built_by_the_sdk_is_accepted_and_its_key_certified() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    for (session, line_ending) in [("sdk-lf", LineEnding::LF), ("sdk-crlf", LineEnding::CRLF)] {
        let key = Ed25519PrivateKey::generate();
        let resp = login_raw(
            &server,
            "alice",
            sdk_csr(&key, "alice", "localhost", session, line_ending),
        )
        .await;
        assert_eq!(resp.status().as_u16(), 201, "{session}");
        let issued: login::Response = resp.json().await.unwrap();
        assert_eq!(issued.session_id.as_str(), session);
        let pem = issued.id_cert.unwrap();
        let cert = IdCert::parse(pem.as_bytes()).unwrap();
        assert_eq!(
            cert.key, key.public.0,
            "{session}: the cert binds the CSR's key"
        );
        assert_eq!(cert.session_id().unwrap().as_str(), session);
        assert_eq!(cert.fid().unwrap(), server.fid("alice"));

        // The SDK agrees.
        let sdk = SdkActorCert::try_from_pem(&pem, now(), &server_key(&server).await).unwrap();
        assert_eq!(sdk.id_cert_tbs.subject_public_key, key.public);
    }
    let mut sessions: Vec<String> = alice
        .sessions()
        .await
        .unwrap()
        .iter()
        .map(|s| s.session_id.to_string())
        .collect();
    sessions.sort();
    assert_eq!(sessions, ["main", "sdk-crlf", "sdk-lf"]);
}

#[tokio::test]
async fn sdk_csrs_that_claim_too_much_are_refused() {
    let server = TestServer::start().await;
    server.register("alice").await;
    server.register("bob").await;

    // A home-server CSR: CA=true, keyCertSign, DCs only.
    let key = Ed25519PrivateKey::generate();
    let dn = HomeServerDN::new_validated(DomainName::new("localhost").unwrap(), None).unwrap();
    let hs = IdCsrHs::new(dn, &key, HomeServerCapabilities::default()).unwrap();
    let resp = login_raw(&server, "alice", hs.to_pem(LineEnding::LF).unwrap()).await;
    assert_raw_problem(resp, 403, ErrorCode::CsrCapabilitiesForbidden).await;

    // A valid actor CSR, but for bob.
    let csr = sdk_csr(&key, "bob", "localhost", "laptop", LineEnding::LF);
    assert_raw_problem(
        login_raw(&server, "alice", csr).await,
        403,
        ErrorCode::CsrSubjectMismatch,
    )
    .await;

    // For alice, on another server.
    let csr = sdk_csr(&key, "alice", "example.com", "laptop", LineEnding::LF);
    assert_raw_problem(
        login_raw(&server, "alice", csr).await,
        403,
        ErrorCode::CsrSubjectMismatch,
    )
    .await;
}

// ---- (b) our certificates, validated by the SDK ----

#[tokio::test]
async fn our_actor_and_server_certs_validate_with_the_sdk() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let server_pem = server.client().server_cert(None).await.unwrap().id_cert_pem;
    let server_key = server_key(&server).await;
    let at = now();

    let root = SdkServerCert::from_pem_unchecked(&server_pem).unwrap();
    root.full_verify_home_server(at).unwrap();
    assert_eq!(root.id_cert_tbs.subject_public_key, server_key);
    assert_eq!(
        root.id_cert_tbs.subject.domain_name.to_string(),
        "localhost"
    );

    let cert = SdkActorCert::try_from_pem(alice.cert_pem(), at, &server_key).unwrap();
    let subject = &cert.id_cert_tbs.subject;
    assert_eq!(subject.federation_id.to_string(), "alice@localhost");
    assert_eq!(subject.local_name.to_string(), "alice");
    assert_eq!(subject.session_id.to_string(), "main");
    assert_eq!(cert.id_cert_tbs.issuer.domain_name.to_string(), "localhost");
    assert_eq!(
        cert.id_cert_tbs.subject_public_key.0,
        alice.key().verifying_key()
    );
    assert_eq!(
        cert.id_cert_tbs.serial_number.try_as_u128().unwrap(),
        u128::from(alice.current_serial().unwrap().0)
    );

    // The SDK really checks: another key, or a time outside the validity, fails.
    let stranger = Ed25519PrivateKey::generate().public;
    assert!(SdkActorCert::try_from_pem(alice.cert_pem(), at, &stranger).is_err());
    assert!(SdkActorCert::try_from_pem(alice.cert_pem(), at + 400 * 86_400, &server_key).is_err());

    // A renewed cert validates as well.
    let mut alice = alice;
    alice.renew_cert(PASSWORD).await.unwrap();
    SdkActorCert::try_from_pem(alice.cert_pem(), now(), &server_key).unwrap();
}

// ---- (c), (d) cacheable certificates ----

#[tokio::test]
async fn actor_cert_lists_are_canonical_and_their_cache_signatures_verify_with_the_sdk() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let laptop_sid = "laptop".parse().unwrap();
    server.login("alice", "laptop").await.unwrap();
    alice.revoke_session(&laptop_sid, PASSWORD).await.unwrap();
    let server_key = server_key(&server).await;

    let certs = sdk_actor_certs(&server, "alice", "").await;
    assert_eq!(certs.len(), 2, "{certs:?}");
    let (revoked, live): (Vec<_>, Vec<_>) =
        certs.into_iter().partition(|c| c.invalidated_at.is_some());
    assert_eq!((revoked.len(), live.len()), (1, 1));
    let (revoked, live) = (&revoked[0], &live[0]);
    assert_eq!(session_of(revoked), "laptop");
    assert_eq!(session_of(live), "main");
    let invalidated_at = revoked.invalidated_at.unwrap();
    assert!(
        invalidated_at <= now() && invalidated_at + 120 > now(),
        "{invalidated_at}"
    );

    for c in [revoked, live] {
        c.verify(&server_key).unwrap();
        assert!(
            c.cache_not_valid_before <= now() && now() <= c.cache_not_valid_after,
            "{c:?}"
        );
        c.try_to_actor_idcert::<Ed25519Signature, Ed25519PublicKey>(now(), &server_key)
            .unwrap();

        let mut widened = c.clone();
        widened.cache_not_valid_after += 1;
        assert!(
            widened.verify(&server_key).is_err(),
            "a widened cache window must not verify"
        );
        let mut earlier = c.clone();
        earlier.cache_not_valid_before -= 1;
        assert!(earlier.verify(&server_key).is_err());
        assert!(c.verify(&Ed25519PrivateKey::generate().public).is_err());
    }
    let mut hidden = revoked.clone();
    hidden.invalidated_at = None;
    assert!(
        hidden.verify(&server_key).is_err(),
        "dropping invalidatedAt must break the signature"
    );
    let mut moved = revoked.clone();
    moved.invalidated_at = Some(invalidated_at + 1);
    assert!(moved.verify(&server_key).is_err());
    let mut claimed = live.clone();
    claimed.invalidated_at = Some(now());
    assert!(claimed.verify(&server_key).is_err());
}

#[tokio::test]
async fn the_server_cert_response_is_canonical_and_verifies_with_the_sdk() {
    let server = TestServer::start().await;
    let server_key = server_key(&server).await;
    for query in [String::new(), format!("?timestamp={}", now())] {
        let body = get_body(&server, &format!("{}{query}", get_server_idcert::PATH)).await;
        assert!(
            polyproto::is_canonicalized_json(&body),
            "not canonical JSON: {body}"
        );
        let cached: CacheableIdCert = serde_json::from_str(&body).unwrap();
        assert_eq!(cached.invalidated_at, None);
        cached.verify(&server_key).unwrap();
        let root = cached
            .try_to_homeserver_idcert::<Ed25519Signature, Ed25519PublicKey>(now(), &server_key)
            .unwrap();
        root.full_verify_home_server(now()).unwrap();

        let mut widened = cached.clone();
        widened.cache_not_valid_after += 3600;
        assert!(widened.verify(&server_key).is_err());
        let mut revoked = cached.clone();
        revoked.invalidated_at = Some(now());
        assert!(revoked.verify(&server_key).is_err());
        let mut bad_sig = cached.clone();
        bad_sig.cache_signature = "00".repeat(64);
        assert!(bad_sig.verify(&server_key).is_err());
    }
}

// ---- (e) query spellings ----

#[tokio::test]
async fn both_spellings_of_the_session_id_query_parameter_filter_actor_certs() {
    let server = TestServer::start().await;
    let _alice: Session = server.register("alice").await;
    server.login("alice", "laptop").await.unwrap();
    server.login("alice", "phone").await.unwrap();

    let all = sdk_actor_certs(&server, "alice", "").await;
    let mut sessions: Vec<String> = all.iter().map(session_of).collect();
    sessions.sort();
    assert_eq!(sessions, ["laptop", "main", "phone"]);

    for query in ["?sessionId=laptop", "?session_id=laptop"] {
        let certs = sdk_actor_certs(&server, "alice", query).await;
        let sessions: Vec<String> = certs.iter().map(session_of).collect();
        assert_eq!(sessions, ["laptop"], "{query}");
    }
    for query in ["?sessionId=tablet", "?session_id=tablet"] {
        assert!(
            sdk_actor_certs(&server, "alice", query).await.is_empty(),
            "{query}"
        );
    }
}

#[test]
fn csrs_of_our_client_verify_under_the_sdk_rules() {
    use polyproto::certs::idcsr::IdCsr;
    let key = fugue_client::IdentityKey::generate();
    let fid: fugue_proto::FederationId = "alice@example.com".parse().unwrap();
    let session: fugue_proto::SessionId = "laptop".parse().unwrap();
    let pem = key.csr_pem(&fid, &session).unwrap();
    let csr = IdCsr::<Ed25519Signature, Ed25519PublicKey>::from_pem_unchecked(&pem).unwrap();
    // The SDK checks the signature over its own re-encoding of the request: it only passes
    // when our encoding is the canonical one it produces itself.
    csr.inner_csr
        .subject_public_key
        .verify_signature(&csr.signature, &csr.signature_data().unwrap())
        .unwrap();
    csr.inner_csr.capabilities.validate_for_actor().unwrap();
    assert_eq!(csr.inner_csr.subject_public_key.0, key.verifying_key());
    // And an SDK-made CSR for the same subject carries the same attributes as ours.
    let sdk_key = Ed25519PrivateKey::generate();
    let sdk_pem = sdk_csr(&sdk_key, "alice", "example.com", "laptop", LineEnding::LF);
    let ours = x509_cert::request::CertReq::try_from(der_of(&pem).as_slice()).unwrap();
    let theirs = x509_cert::request::CertReq::try_from(der_of(&sdk_pem).as_slice()).unwrap();
    assert_eq!(ours.info.attributes, theirs.info.attributes);
    assert_eq!(ours.info.subject, theirs.info.subject);
}

fn der_of(pem: &str) -> Vec<u8> {
    polyproto::der::pem::decode_vec(pem.as_bytes()).unwrap().1
}
