//! Property tests against hostile input: the CSR and certificate parsers never panic, a
//! mutated CSR or certificate is never accepted unless it is still the signed original, and
//! the login and idcert routes answer garbage with problems, never with a server error.
//!
//! Parser properties run 512 cases; server round trips 64, against one server per run.

use std::collections::BTreeSet;
use std::sync::Mutex;

use der::asn1::{AnyRef, BitStringRef, SetOfVec};
use der::{Decode, Encode};
use ed25519_dalek::{Signer, SigningKey};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestRunner;
use serde_json::Value;
use spki::AlgorithmIdentifierRef;
use x509_cert::attr::Attribute;
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages};
use x509_cert::request::CertReq;

use fugue_proto::api::{health, login, post_idcert};
use fugue_proto::certs::issue::{self, Window};
use fugue_proto::certs::{
    ActorCsr, ED25519, IdCert, OID_BASIC_CONSTRAINTS, OID_KEY_USAGE, verify_strict,
};
use fugue_proto::{FederationId, Problem, Serial, SessionId};
use fugue_testkit::{PASSWORD, TestServer};

/// Any signed X.509 structure, with its to-be-signed part as the bytes that were sent.
#[derive(der::Sequence)]
struct Signed<'a> {
    tbs: AnyRef<'a>,
    algorithm: AlgorithmIdentifierRef<'a>,
    signature: BitStringRef<'a>,
}

fn parser_config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        ..ProptestConfig::default()
    }
}

fn server_config() -> ProptestConfig {
    // No regression files from a runner without a source file; the seed is in the panic.
    ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---- the originals that get mutated ----

fn actor_key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

fn alice() -> FederationId {
    "alice@localhost".parse().unwrap()
}

/// A valid ID-CSR for alice in session `session`, as DER: PKCS#9 extensionRequest form, or
/// the reference SDK's bare-attribute form.
fn csr_der(session: &str, sdk_form: bool) -> Vec<u8> {
    let key = actor_key();
    let session: SessionId = session.parse().unwrap();
    let mut info = issue::csr_info(&alice(), &session, &key.verifying_key()).unwrap();
    if sdk_form {
        let bare = |oid, value: Vec<u8>| Attribute {
            oid,
            values: SetOfVec::try_from(vec![der::Any::from_der(&value).unwrap()]).unwrap(),
        };
        let bc = BasicConstraints {
            ca: false,
            path_len_constraint: None,
        };
        let ku = KeyUsage(KeyUsages::DigitalSignature.into());
        info.attributes = SetOfVec::try_from(vec![
            bare(OID_BASIC_CONSTRAINTS, bc.to_der().unwrap()),
            bare(OID_KEY_USAGE, ku.to_der().unwrap()),
        ])
        .unwrap();
    }
    issue::finish_csr(info, |m| key.sign(m).to_bytes()).unwrap()
}

fn info_der(csr: &[u8]) -> Vec<u8> {
    CertReq::from_der(csr).unwrap().info.to_der().unwrap()
}

fn pem(label: &'static str, der: &[u8]) -> String {
    der::pem::encode_string(label, der::pem::LineEnding::LF, der).unwrap()
}

/// A root for `localhost` and an actor cert it issued, with the CA key.
fn cert_pair() -> (IdCert, Vec<u8>) {
    let ca = SigningKey::from_bytes(&[9; 32]);
    let domain = "localhost".parse().unwrap();
    let window = Window {
        not_before: 1_700_000_000,
        not_after: 1_900_000_000,
    };
    let root_tbs = issue::server_tbs(Serial(1), &domain, &ca.verifying_key(), window).unwrap();
    let root =
        IdCert::parse(&issue::finish_cert(root_tbs, |m| ca.sign(m).to_bytes()).unwrap()).unwrap();
    let actor_window = Window {
        not_before: 1_750_000_000,
        not_after: 1_760_000_000,
    };
    let session: SessionId = "main".parse().unwrap();
    let tbs = issue::actor_tbs(
        Serial(2),
        &alice(),
        &session,
        &actor_key().verifying_key(),
        actor_window,
    )
    .unwrap();
    (
        root,
        issue::finish_cert(tbs, |m| ca.sign(m).to_bytes()).unwrap(),
    )
}

// ---- mutations ----

#[derive(Debug, Clone)]
enum Mutation {
    Flip(Index, u8),
    Set(Index, u8),
    Insert(Index, u8),
    Delete(Index),
    Truncate(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, bit)| Mutation::Flip(i, bit)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<Index>().prop_map(Mutation::Delete),
        any::<Index>().prop_map(Mutation::Truncate),
    ]
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 1..5)
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len();
        match m {
            Mutation::Insert(i, b) => bytes.insert(i.index(len + 1), *b),
            _ if len == 0 => {}
            Mutation::Flip(i, bit) => bytes[i.index(len)] ^= 1 << bit,
            Mutation::Set(i, b) => bytes[i.index(len)] = *b,
            Mutation::Delete(i) => {
                bytes.remove(i.index(len));
            }
            Mutation::Truncate(i) => bytes.truncate(i.index(len)),
        }
    }
    bytes
}

// ---- (a), (b) parsers ----

proptest! {
    #![proptest_config(parser_config())]

    #[test]
    fn arbitrary_bytes_are_refused_by_the_parsers_without_panicking(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        prop_assert!(ActorCsr::parse(&bytes).is_err());
        prop_assert!(IdCert::parse(&bytes).is_err());
    }

    #[test]
    fn arbitrary_pem_bodies_are_refused_by_the_parsers_without_panicking(
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
        label in prop::sample::select(vec!["CERTIFICATE REQUEST", "CERTIFICATE", "PUBLIC KEY"]),
    ) {
        let text = pem(label, &bytes);
        prop_assert!(ActorCsr::parse(text.as_bytes()).is_err());
        prop_assert!(IdCert::parse(text.as_bytes()).is_err());
    }

    #[test]
    fn a_mutated_csr_is_accepted_only_if_it_is_still_the_signed_original(
        sdk_form in any::<bool>(),
        mutations in mutations(),
    ) {
        let original = csr_der("fuzz", sdk_form);
        let mutated = mutate(original.clone(), &mutations);
        let parsed = ActorCsr::parse(&mutated);
        // PEM or DER makes no difference to the verdict.
        prop_assert_eq!(ActorCsr::parse(pem("CERTIFICATE REQUEST", &mutated).as_bytes()).is_ok(), parsed.is_ok());
        if let Ok(csr) = parsed
            && csr.check_claims(&alice()).is_ok()
        {
            let signed = Signed::from_der(&mutated).expect("an accepted CSR decodes");
            prop_assert_eq!(signed.tbs.to_der().unwrap(), info_der(&original));
            prop_assert_eq!(signed.algorithm.oid, ED25519);
            let sig = signed.signature.as_bytes().unwrap();
            prop_assert!(verify_strict(&actor_key().verifying_key(), &info_der(&original), sig).is_ok());
            prop_assert_eq!(csr.key, actor_key().verifying_key());
        }
    }

    #[test]
    fn mutated_csr_pem_text_never_panics_the_parser(mutations in mutations()) {
        let original = pem("CERTIFICATE REQUEST", &csr_der("fuzz", false)).into_bytes();
        let mutated = mutate(original.clone(), &mutations);
        if let Ok(csr) = ActorCsr::parse(&mutated) {
            // Base64 whitespace aside, nothing but the original decodes to a signed CSR.
            prop_assert_eq!(csr.key, actor_key().verifying_key());
            prop_assert_eq!(csr.check_claims(&alice()).ok().map(|s| s.to_string()), Some("fuzz".to_owned()));
        }
    }

    #[test]
    fn a_mutated_actor_cert_verifies_only_if_it_is_still_the_signed_original(mutations in mutations()) {
        let (root, original) = cert_pair();
        let mutated = mutate(original.clone(), &mutations);
        if let Ok(cert) = IdCert::parse(&mutated)
            && cert.verify_actor(&root, 1_755_000_000).is_ok()
        {
            let signed = Signed::from_der(&mutated).unwrap();
            let original_tbs = Signed::from_der(&original).unwrap().tbs.to_der().unwrap();
            prop_assert_eq!(signed.tbs.to_der().unwrap(), original_tbs);
        }
    }
}

#[test]
fn the_originals_that_get_mutated_are_accepted() {
    // Without this the mutation properties above would hold vacuously.
    for sdk_form in [false, true] {
        let csr = ActorCsr::parse(&csr_der("fuzz", sdk_form)).unwrap();
        assert_eq!(csr.check_claims(&alice()).unwrap().as_str(), "fuzz");
    }
    let (root, cert) = cert_pair();
    root.verify_server_root().unwrap();
    IdCert::parse(&cert)
        .unwrap()
        .verify_actor(&root, 1_755_000_000)
        .unwrap();
}

// ---- (c) the server ----

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
        Just(Value::from(
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
        )),
        Just(Value::from("x".repeat(40))),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map("[a-zA-Z_]{0,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A body for the login route.
#[derive(Debug, Clone)]
enum LoginBody {
    /// Alice's valid credentials with a mutated CSR (DER mutated, then PEM; or PEM text
    /// mutated) and an optional sessionId.
    MutatedCsr {
        sdk_form: bool,
        mutate_text: bool,
        mutations: Vec<Mutation>,
        session_id: Option<String>,
    },
    /// Alice's credentials with arbitrary values for csr and sessionId.
    LoginShaped { csr: Value, session_id: Value },
    /// Any object with login-ish keys.
    Keys(Vec<(String, Value)>),
    /// Any JSON.
    Json(Value),
    /// Any bytes.
    Bytes(Vec<u8>),
}

fn login_body() -> impl Strategy<Value = LoginBody> {
    let keys = prop::sample::select(vec![
        "localName",
        "local_name",
        "password",
        "totp",
        "csr",
        "sessionId",
        "session_id",
    ]);
    prop_oneof![
        4 => (any::<bool>(), any::<bool>(), mutations(), prop::option::of("[ -~]{0,40}")).prop_map(
            |(sdk_form, mutate_text, mutations, session_id)| LoginBody::MutatedCsr { sdk_form, mutate_text, mutations, session_id }
        ),
        2 => (json_value(), json_value()).prop_map(|(csr, session_id)| LoginBody::LoginShaped { csr, session_id }),
        1 => prop::collection::vec((keys.prop_map(str::to_owned), json_value()), 0..8).prop_map(LoginBody::Keys),
        1 => json_value().prop_map(LoginBody::Json),
        1 => prop::collection::vec(any::<u8>(), 0..512).prop_map(LoginBody::Bytes),
    ]
}

fn mutated_csr_pem(
    sdk_form: bool,
    mutate_text: bool,
    mutations: &[Mutation],
    session: &str,
) -> Vec<u8> {
    let der = csr_der(session, sdk_form);
    if mutate_text {
        mutate(pem("CERTIFICATE REQUEST", &der).into_bytes(), mutations)
    } else {
        pem("CERTIFICATE REQUEST", &mutate(der, mutations)).into_bytes()
    }
}

impl LoginBody {
    fn bytes(&self) -> Vec<u8> {
        let value = match self {
            LoginBody::MutatedCsr {
                sdk_form,
                mutate_text,
                mutations,
                session_id,
            } => {
                let csr = String::from_utf8_lossy(&mutated_csr_pem(
                    *sdk_form,
                    *mutate_text,
                    mutations,
                    "fuzz",
                ))
                .into_owned();
                serde_json::to_value(login::Request {
                    local_name: "alice".into(),
                    password: PASSWORD.into(),
                    totp: None,
                    csr: Some(csr),
                    session_id: session_id.clone(),
                })
                .unwrap()
            }
            LoginBody::LoginShaped { csr, session_id } => serde_json::json!({
                "localName": "alice", "password": PASSWORD, "csr": csr, "sessionId": session_id,
            }),
            LoginBody::Keys(pairs) => Value::Object(pairs.iter().cloned().collect()),
            LoginBody::Json(value) => value.clone(),
            LoginBody::Bytes(bytes) => return bytes.clone(),
        };
        serde_json::to_vec(&value).unwrap()
    }
}

/// Checks one answer: never 5xx, and every 4xx a problem document naming its own status.
/// Returns the status and body and records the problem code in `seen`.
async fn check_answer(
    resp: reqwest::Response,
    seen: &Mutex<BTreeSet<String>>,
) -> Result<(u16, Vec<u8>), TestCaseError> {
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or("").to_owned());
    let body = resp.bytes().await.unwrap().to_vec();
    prop_assert!(
        status < 500,
        "server error {}: {}",
        status,
        String::from_utf8_lossy(&body)
    );
    if (400..500).contains(&status) {
        prop_assert_eq!(
            ct.as_deref(),
            Some("application/problem+json"),
            "status {}",
            status
        );
        let problem: Problem = serde_json::from_slice(&body).map_err(|e| {
            TestCaseError::fail(format!(
                "{status} body is no problem ({e}): {}",
                String::from_utf8_lossy(&body)
            ))
        })?;
        prop_assert_eq!(problem.status, status);
        seen.lock().unwrap().insert(problem.error.as_str());
    }
    Ok((status, body))
}

async fn assert_healthy(server: &TestServer) {
    let resp = server
        .client()
        .raw()
        .get(format!("{}{}", server.url, health::PATH))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

#[test]
fn hostile_login_bodies_never_cause_a_server_error() {
    let rt = runtime();
    let (server, alice) = rt.block_on(async {
        let server = TestServer::start().await;
        let alice = server.register("alice").await;
        (server, alice)
    });
    let url = format!("{}{}", server.url, login::PATH);
    let http = server.client().raw().clone();
    let seen = Mutex::new(BTreeSet::new());
    let mut runner = TestRunner::new(server_config());
    runner
        .run(&login_body(), |body| {
            rt.block_on(async {
                let resp = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.bytes())
                    .send()
                    .await
                    .unwrap();
                let (status, answer) = check_answer(resp, &seen).await?;
                if status == 201 {
                    // Only an unchanged CSR may get a certificate, and then only for its key.
                    let issued: login::Response = serde_json::from_slice(&answer).unwrap();
                    if let Some(pem) = issued.id_cert {
                        let cert = IdCert::parse(pem.as_bytes()).unwrap();
                        prop_assert_eq!(cert.key, actor_key().verifying_key());
                        prop_assert_eq!(
                            cert.session_id().map(|s| s.to_string()),
                            Some("fuzz".to_owned())
                        );
                    }
                }
                Ok(())
            })
        })
        .unwrap();
    // The run reached past JSON decoding into the CSR checks.
    let seen = seen.into_inner().unwrap();
    for code in ["MALFORMED_REQUEST", "INVALID_CSR"] {
        assert!(seen.contains(code), "{code} never seen: {seen:?}");
    }
    rt.block_on(async {
        assert_healthy(&server).await;
        alice.sessions().await.unwrap();
    });
}

/// A body for `POST /.p2/core/v1/idcert`.
#[derive(Debug, Clone)]
enum IdCertBody {
    MutatedCsr {
        sdk_form: bool,
        mutate_text: bool,
        mutations: Vec<Mutation>,
    },
    /// The mutated PEM as a JSON string literal (the SDK's habit).
    QuotedCsr {
        mutations: Vec<Mutation>,
    },
    MutatedDer {
        mutations: Vec<Mutation>,
    },
    Json(Value),
    Bytes(Vec<u8>),
}

fn idcert_body() -> impl Strategy<Value = IdCertBody> {
    prop_oneof![
        4 => (any::<bool>(), any::<bool>(), mutations())
            .prop_map(|(sdk_form, mutate_text, mutations)| IdCertBody::MutatedCsr { sdk_form, mutate_text, mutations }),
        1 => mutations().prop_map(|mutations| IdCertBody::QuotedCsr { mutations }),
        2 => mutations().prop_map(|mutations| IdCertBody::MutatedDer { mutations }),
        1 => json_value().prop_map(IdCertBody::Json),
        1 => prop::collection::vec(any::<u8>(), 0..2048).prop_map(IdCertBody::Bytes),
    ]
}

impl IdCertBody {
    /// Every CSR names session `elsewhere`, not the caller's: even the unchanged original is
    /// refused after all checks, so the session's token never rotates during the run.
    fn bytes(&self) -> Vec<u8> {
        match self {
            IdCertBody::MutatedCsr {
                sdk_form,
                mutate_text,
                mutations,
            } => mutated_csr_pem(*sdk_form, *mutate_text, mutations, "elsewhere"),
            IdCertBody::QuotedCsr { mutations } => {
                let text =
                    String::from_utf8_lossy(&mutated_csr_pem(false, true, mutations, "elsewhere"))
                        .into_owned();
                serde_json::to_vec(&text).unwrap()
            }
            IdCertBody::MutatedDer { mutations } => mutate(csr_der("elsewhere", false), mutations),
            IdCertBody::Json(value) => serde_json::to_vec(value).unwrap(),
            IdCertBody::Bytes(bytes) => bytes.clone(),
        }
    }
}

#[test]
fn hostile_idcert_bodies_never_cause_a_server_error() {
    let rt = runtime();
    let (server, alice) = rt.block_on(async {
        let server = TestServer::start().await;
        let alice = server.register("alice").await;
        (server, alice)
    });
    let url = format!("{}{}", server.url, post_idcert::PATH);
    let http = server.client().raw().clone();
    let serial_before = alice.current_serial().unwrap();
    let seen = Mutex::new(BTreeSet::new());
    let mut runner = TestRunner::new(server_config());
    runner
        .run(&idcert_body(), |body| {
            rt.block_on(async {
                let resp = http
                    .post(&url)
                    .bearer_auth(alice.token())
                    .header(fugue_proto::api::SENSITIVE_HEADER, PASSWORD)
                    .header("content-type", "text/plain")
                    .body(body.bytes())
                    .send()
                    .await
                    .unwrap();
                let (status, _) = check_answer(resp, &seen).await?;
                // The token and solution are good, so every refusal is about the body.
                prop_assert!(status != 401 && status != 201, "status {}", status);
                Ok(())
            })
        })
        .unwrap();
    let seen = seen.into_inner().unwrap();
    assert!(
        seen.contains("INVALID_CSR"),
        "the CSR parser was never reached: {seen:?}"
    );
    rt.block_on(async {
        assert_healthy(&server).await;
        let sessions = alice.sessions().await.unwrap();
        assert_eq!(sessions.len(), 1);
        assert_eq!(
            sessions[0].serial,
            Some(serial_before),
            "the session's cert was not replaced"
        );
    });
}

#[test]
fn the_unchanged_idcert_body_reaches_the_claim_checks() {
    // The idcert property above relies on a well-formed body being refused for its session
    // ID alone; prove that once.
    let rt = runtime();
    rt.block_on(async {
        let server = TestServer::start().await;
        let alice = server.register("alice").await;
        let resp = server
            .client()
            .raw()
            .post(format!("{}{}", server.url, post_idcert::PATH))
            .bearer_auth(alice.token())
            .header(fugue_proto::api::SENSITIVE_HEADER, PASSWORD)
            .body(pem("CERTIFICATE REQUEST", &csr_der("elsewhere", true)))
            .send()
            .await
            .unwrap();
        crate::support::assert_raw_problem(resp, 400, fugue_proto::ErrorCode::InvalidSessionId)
            .await;
    });
}
