//! ID-CSR rejections at the login route (core §6.1, DIGEST §4.1) and the profile of the
//! ID-Certs the CA issues (DIGEST §4.2–§4.4).
//!
//! Malicious CSRs are built by hand from x509-cert/der parts and signed (or not) with
//! ed25519-dalek, so every field can be wrong on its own. Each rejection is checked for its
//! status and problem code, and for leaving no session or certificate behind.

use der::asn1::{
    Any, BitString, Ia5StringRef, ObjectIdentifier, OctetString, SetOfVec, Utf8StringRef,
};
use der::{Decode, DecodePem, Encode, Tag, Tagged};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use rand_core::OsRng;
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::attr::{Attribute, AttributeTypeAndValue};
use x509_cert::certificate::{Certificate, Version as CertVersion};
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages};
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::request::{CertReq, CertReqInfo, Version};

use fugue_client::Session;
use fugue_proto::api::{get_actor_idcerts, login, post_idcert};
use fugue_proto::certs::{
    ED25519, IdCert, OID_BASIC_CONSTRAINTS, OID_CN, OID_DC, OID_EXTENSION_REQUEST, OID_KEY_USAGE,
    OID_UID, OID_UNIQUE_ID,
};
use fugue_proto::{ErrorCode, FederationId, SessionId};
use fugue_testkit::{PASSWORD, TestServer};

use crate::support::{assert_problem, assert_raw_problem, unix_now as now};

const DAY: u64 = 86_400;
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const OID_ED448: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.113");
const OID_ORGANIZATION: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.10");

// ---- building blocks of hand-made CSRs ----

fn atv(oid: ObjectIdentifier, value: Any) -> AttributeTypeAndValue {
    AttributeTypeAndValue { oid, value }
}

fn ia5(oid: ObjectIdentifier, s: &str) -> AttributeTypeAndValue {
    atv(
        oid,
        Any::encode_from(&Ia5StringRef::new(s).unwrap()).unwrap(),
    )
}

fn utf8(oid: ObjectIdentifier, s: &str) -> AttributeTypeAndValue {
    atv(
        oid,
        Any::encode_from(&Utf8StringRef::new(s).unwrap()).unwrap(),
    )
}

fn dc(label: &str) -> AttributeTypeAndValue {
    ia5(OID_DC, label)
}

fn cn(s: &str) -> AttributeTypeAndValue {
    utf8(OID_CN, s)
}

fn uid(s: &str) -> AttributeTypeAndValue {
    utf8(OID_UID, s)
}

fn sid(s: &str) -> AttributeTypeAndValue {
    ia5(OID_UNIQUE_ID, s)
}

/// DCs of `domain` in certificate order: top-level domain first.
fn dcs(domain: &str) -> Vec<AttributeTypeAndValue> {
    domain.rsplit('.').map(dc).collect()
}

/// One attribute per RDN, in the given order.
fn name(atvs: &[AttributeTypeAndValue]) -> Name {
    RdnSequence(
        atvs.iter()
            .map(|a| RelativeDistinguishedName(SetOfVec::try_from(vec![a.clone()]).unwrap()))
            .collect(),
    )
}

fn alg(oid: ObjectIdentifier) -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid,
        parameters: None,
    }
}

fn ed25519_spki(raw: &[u8]) -> SubjectPublicKeyInfoOwned {
    SubjectPublicKeyInfoOwned {
        algorithm: alg(ED25519),
        subject_public_key: BitString::from_bytes(raw).unwrap(),
    }
}

fn extension(oid: ObjectIdentifier, value: &impl Encode) -> Extension {
    Extension {
        extn_id: oid,
        critical: true,
        extn_value: OctetString::new(value.to_der().unwrap()).unwrap(),
    }
}

fn basic_constraints(ca: bool, path_len: Option<u8>) -> BasicConstraints {
    BasicConstraints {
        ca,
        path_len_constraint: path_len,
    }
}

fn key_usage(usages: impl Into<der::flagset::FlagSet<KeyUsages>>) -> KeyUsage {
    KeyUsage(usages.into())
}

/// PKCS#9 extensionRequest attribute (1.2.840.113549.1.9.14).
fn extension_request(exts: Vec<Extension>) -> Attribute {
    Attribute {
        oid: OID_EXTENSION_REQUEST,
        values: SetOfVec::try_from(vec![Any::encode_from(&exts).unwrap()]).unwrap(),
    }
}

/// The reference SDK's form: the extension value as a bare attribute value.
fn bare_attribute(oid: ObjectIdentifier, value: &impl Encode) -> Attribute {
    let value = Any::from_der(&value.to_der().unwrap()).unwrap();
    Attribute {
        oid,
        values: SetOfVec::try_from(vec![value]).unwrap(),
    }
}

fn pem(label: &'static str, der: &[u8]) -> String {
    der::pem::encode_string(label, der::pem::LineEnding::LF, der).unwrap()
}

fn csr_pem(der: &[u8]) -> String {
    pem("CERTIFICATE REQUEST", der)
}

/// A CSR whose every part can be replaced before it is signed.
#[derive(Clone)]
struct Forge {
    key: SigningKey,
    subject: Vec<AttributeTypeAndValue>,
    spki: SubjectPublicKeyInfoOwned,
    attributes: Vec<Attribute>,
    algorithm: AlgorithmIdentifierOwned,
}

impl Forge {
    /// A well-formed ID-CSR for `fid` in session `session`, asking for what an actor may have.
    fn new(fid: &FederationId, session: &str) -> Self {
        let key = SigningKey::generate(&mut OsRng);
        Self {
            spki: ed25519_spki(key.verifying_key().as_bytes()),
            key,
            subject: Self::subject_of(fid, session),
            attributes: vec![extension_request(vec![
                extension(OID_BASIC_CONSTRAINTS, &basic_constraints(false, None)),
                extension(OID_KEY_USAGE, &key_usage(KeyUsages::DigitalSignature)),
            ])],
            algorithm: alg(ED25519),
        }
    }

    /// The canonical actor pDN: DCs, UID, CN, uniqueIdentifier.
    fn subject_of(fid: &FederationId, session: &str) -> Vec<AttributeTypeAndValue> {
        let mut atvs = dcs(fid.domain().as_str());
        atvs.extend([
            uid(&fid.to_string()),
            cn(fid.local_name().as_str()),
            sid(session),
        ]);
        atvs
    }

    fn with_subject(mut self, subject: Vec<AttributeTypeAndValue>) -> Self {
        self.subject = subject;
        self
    }

    fn with_attributes(mut self, attributes: Vec<Attribute>) -> Self {
        self.attributes = attributes;
        self
    }

    fn with_spki(mut self, spki: SubjectPublicKeyInfoOwned) -> Self {
        self.spki = spki;
        self
    }

    fn with_algorithm(mut self, algorithm: AlgorithmIdentifierOwned) -> Self {
        self.algorithm = algorithm;
        self
    }

    fn info(&self) -> CertReqInfo {
        CertReqInfo {
            version: Version::V1,
            subject: name(&self.subject),
            public_key: self.spki.clone(),
            attributes: SetOfVec::try_from(self.attributes.clone()).unwrap(),
        }
    }

    fn signature(&self) -> Vec<u8> {
        self.key
            .sign(&self.info().to_der().unwrap())
            .to_bytes()
            .to_vec()
    }

    /// The CSR DER with `signature` in place of a real one.
    fn der_with_signature(&self, signature: &[u8]) -> Vec<u8> {
        CertReq {
            info: self.info(),
            algorithm: self.algorithm.clone(),
            signature: BitString::from_bytes(signature).unwrap(),
        }
        .to_der()
        .unwrap()
    }

    fn der(&self) -> Vec<u8> {
        self.der_with_signature(&self.signature())
    }

    fn pem(&self) -> String {
        csr_pem(&self.der())
    }
}

// ---- a server, an actor and the login route ----

/// A server with the actor `alice`, logged in as session `main`.
struct Fixture {
    server: TestServer,
    alice: Session,
}

impl Fixture {
    async fn start() -> Self {
        Self::on("localhost").await
    }

    async fn on(domain: &str) -> Self {
        let domain = domain.parse().unwrap();
        let server = TestServer::start_with(move |c| c.domain = domain).await;
        let alice = server.register("alice").await;
        Self { server, alice }
    }

    fn fid(&self) -> FederationId {
        self.server.fid("alice")
    }

    fn forge(&self, session: &str) -> Forge {
        Forge::new(&self.fid(), session)
    }

    async fn login(
        &self,
        local_name: &str,
        csr: String,
        session_id: Option<&str>,
    ) -> reqwest::Response {
        let body = login::Request {
            local_name: local_name.to_owned(),
            password: PASSWORD.to_owned(),
            totp: None,
            csr: Some(csr),
            session_id: session_id.map(str::to_owned),
        };
        let url = format!("{}{}", self.server.url, login::PATH);
        self.server
            .client()
            .raw()
            .post(url)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Alice's certificates as the server lists them: (PEM, invalidatedAt).
    async fn certs(&self) -> Vec<(String, Option<u64>)> {
        let query = get_actor_idcerts::Query::default();
        let certs = self
            .server
            .client()
            .actor_certs(&self.fid(), query)
            .await
            .unwrap();
        certs
            .into_iter()
            .map(|c| (c.id_cert_pem, c.invalidated_at))
            .collect()
    }

    /// Logs in as alice with `csr` (and `session_id` in the body) and expects a refusal with
    /// `status`/`code` that leaves her sessions and certificates as they were.
    async fn refused_with(
        &self,
        case: &str,
        csr: String,
        session_id: Option<&str>,
        status: u16,
        code: ErrorCode,
    ) {
        eprintln!("case: {case}");
        let sessions_before = self.alice.sessions().await.unwrap();
        let certs_before = self.certs().await;
        let resp = self.login("alice", csr, session_id).await;
        assert_raw_problem(resp, status, code).await;
        assert_eq!(
            self.alice.sessions().await.unwrap(),
            sessions_before,
            "{case}: sessions changed"
        );
        assert_eq!(
            self.certs().await,
            certs_before,
            "{case}: certificates changed"
        );
    }

    async fn refused(&self, case: &str, csr: String, status: u16, code: ErrorCode) {
        self.refused_with(case, csr, None, status, code).await;
    }

    async fn accepted(&self, csr: String) -> login::Response {
        let resp = self.login("alice", csr, None).await;
        assert_eq!(
            resp.status().as_u16(),
            201,
            "login refused: {}",
            resp.text().await.unwrap()
        );
        resp.json().await.unwrap()
    }

    async fn server_cert(&self) -> IdCert {
        let cached = self.server.client().server_cert(None).await.unwrap();
        IdCert::parse(cached.id_cert_pem.as_bytes()).unwrap()
    }
}

/// A 32-byte string that is not the encoding of any curve point.
fn not_a_point() -> [u8; 32] {
    (2u8..=255)
        .map(|y| {
            let mut raw = [0u8; 32];
            raw[0] = y;
            raw
        })
        .find(|raw| VerifyingKey::from_bytes(raw).is_err())
        .unwrap()
}

// ---- (a) signatures ----

#[tokio::test]
async fn a_csr_whose_signature_does_not_verify_is_refused() {
    let f = Fixture::start().await;
    let forge = f.forge("laptop");
    let mut flipped = forge.signature();
    flipped[17] ^= 0x01;
    f.refused(
        "flipped signature byte",
        csr_pem(&forge.der_with_signature(&flipped)),
        400,
        ErrorCode::CsrSignatureInvalid,
    )
    .await;

    let other_info = forge
        .clone()
        .with_subject(Forge::subject_of(&f.fid(), "desktop"));
    let resp = csr_pem(&forge.der_with_signature(&other_info.signature()));
    f.refused(
        "valid signature over other info bytes",
        resp,
        400,
        ErrorCode::CsrSignatureInvalid,
    )
    .await;

    let truncated = &forge.signature()[..63];
    f.refused(
        "63-byte signature",
        csr_pem(&forge.der_with_signature(truncated)),
        400,
        ErrorCode::CsrSignatureInvalid,
    )
    .await;

    f.refused(
        "empty signature",
        csr_pem(&forge.der_with_signature(&[])),
        400,
        ErrorCode::CsrSignatureInvalid,
    )
    .await;
}

#[tokio::test]
async fn a_csr_signed_by_another_key_than_the_one_it_names_is_refused() {
    let f = Fixture::start().await;
    // The victim's public key in the CSR, signed by the attacker: no proof of possession.
    let victim = SigningKey::generate(&mut OsRng);
    let forge = f
        .forge("laptop")
        .with_spki(ed25519_spki(victim.verifying_key().as_bytes()));
    f.refused(
        "foreign key",
        forge.pem(),
        400,
        ErrorCode::CsrSignatureInvalid,
    )
    .await;
}

// ---- (b) algorithms ----

#[tokio::test]
async fn a_csr_with_a_key_other_than_ed25519_is_refused() {
    let f = Fixture::start().await;
    let mut point = [0x42u8; 65];
    point[0] = 0x04;
    let p256 = SubjectPublicKeyInfoOwned {
        algorithm: AlgorithmIdentifierOwned {
            oid: OID_EC_PUBLIC_KEY,
            parameters: Some(Any::encode_from(&OID_P256).unwrap()),
        },
        subject_public_key: BitString::from_bytes(&point).unwrap(),
    };
    let forge = f
        .forge("laptop")
        .with_spki(p256)
        .with_algorithm(alg(OID_ECDSA_SHA256));
    let ecdsa = csr_pem(&forge.der_with_signature(&[0x30; 70]));
    f.refused(
        "P-256 key, ecdsa-with-SHA256",
        ecdsa,
        400,
        ErrorCode::UnsupportedAlgorithm,
    )
    .await;

    let ed448 = SubjectPublicKeyInfoOwned {
        algorithm: alg(OID_ED448),
        subject_public_key: BitString::from_bytes(&[7; 57]).unwrap(),
    };
    let forge = f
        .forge("laptop")
        .with_spki(ed448)
        .with_algorithm(alg(OID_ED448));
    f.refused(
        "Ed448 key",
        csr_pem(&forge.der_with_signature(&[1; 114])),
        400,
        ErrorCode::UnsupportedAlgorithm,
    )
    .await;
}

#[tokio::test]
async fn an_ed25519_csr_with_another_signature_algorithm_is_refused() {
    let f = Fixture::start().await;
    let forge = f.forge("laptop").with_algorithm(alg(OID_ECDSA_SHA256));
    f.refused(
        "signatureAlgorithm ecdsa-with-SHA256",
        forge.pem(),
        400,
        ErrorCode::UnsupportedAlgorithm,
    )
    .await;

    let forge = f.forge("laptop").with_algorithm(alg(OID_ED448));
    f.refused(
        "signatureAlgorithm Ed448",
        forge.pem(),
        400,
        ErrorCode::UnsupportedAlgorithm,
    )
    .await;

    // RFC 8410 §3: the parameters of id-Ed25519 MUST be absent.
    let with_null = AlgorithmIdentifierOwned {
        oid: ED25519,
        parameters: Some(Any::new(Tag::Null, Vec::new()).unwrap()),
    };
    let forge = f.forge("laptop").with_algorithm(with_null.clone());
    f.refused(
        "signatureAlgorithm with NULL parameters",
        forge.pem(),
        400,
        ErrorCode::UnsupportedAlgorithm,
    )
    .await;

    let forge = f.forge("laptop");
    let key = SubjectPublicKeyInfoOwned {
        algorithm: with_null,
        subject_public_key: forge.spki.subject_public_key.clone(),
    };
    f.refused(
        "key algorithm with NULL parameters",
        forge.with_spki(key).pem(),
        400,
        ErrorCode::UnsupportedAlgorithm,
    )
    .await;
}

// ---- (c), (d) keys ----

#[tokio::test]
async fn a_csr_with_a_small_order_key_is_refused_as_weak() {
    let f = Fixture::start().await;
    let identity = {
        let mut raw = [0u8; 32];
        raw[0] = 1;
        raw
    };
    let order_two = {
        // y = -1 (p - 1): the point of order 2.
        let mut raw = [0xffu8; 32];
        raw[0] = 0xec;
        raw[31] = 0x7f;
        raw
    };
    for (case, raw) in [
        ("identity point", identity),
        ("y = 0 (order 4)", [0u8; 32]),
        ("y = -1 (order 2)", order_two),
    ] {
        let forge = f.forge("laptop").with_spki(ed25519_spki(&raw));
        f.refused(case, forge.pem(), 400, ErrorCode::WeakKey).await;
    }
}

#[tokio::test]
async fn a_csr_with_a_malformed_ed25519_key_is_refused_as_weak() {
    let f = Fixture::start().await;
    // The server files every unusable Ed25519 key under WEAK_KEY.
    let forge = f.forge("laptop");
    let raw = forge.key.verifying_key().to_bytes();
    f.refused(
        "31-byte key",
        forge.clone().with_spki(ed25519_spki(&raw[..31])).pem(),
        400,
        ErrorCode::WeakKey,
    )
    .await;

    let mut long = raw.to_vec();
    long.push(0);
    f.refused(
        "33-byte key",
        forge.clone().with_spki(ed25519_spki(&long)).pem(),
        400,
        ErrorCode::WeakKey,
    )
    .await;

    f.refused(
        "not a curve point",
        forge.clone().with_spki(ed25519_spki(&not_a_point())).pem(),
        400,
        ErrorCode::WeakKey,
    )
    .await;

    let unused_bits = SubjectPublicKeyInfoOwned {
        algorithm: alg(ED25519),
        subject_public_key: BitString::new(3, raw.to_vec()).unwrap(),
    };
    f.refused(
        "key BIT STRING with unused bits",
        forge.with_spki(unused_bits).pem(),
        400,
        ErrorCode::WeakKey,
    )
    .await;
}

// ---- (e) subject ----

#[tokio::test]
async fn a_csr_naming_anyone_but_the_actor_is_refused() {
    let f = Fixture::on("chat.fugue.test").await;
    f.server.register("bob").await;
    let fid = f.fid();
    let bob = f.server.fid("bob");
    let alice_uid = fid.to_string();
    let d = || dcs("chat.fugue.test");
    let with = |extra: &[AttributeTypeAndValue]| {
        let mut atvs = d();
        atvs.extend_from_slice(extra);
        atvs
    };
    let cases: Vec<(&str, Vec<AttributeTypeAndValue>)> = vec![
        (
            "CN of another local name",
            with(&[uid(&alice_uid), cn("mallory"), sid("laptop")]),
        ),
        (
            "CN of another actor",
            with(&[uid(&alice_uid), cn("bob"), sid("laptop")]),
        ),
        (
            "UID of another actor",
            with(&[uid(&bob.to_string()), cn("alice"), sid("laptop")]),
        ),
        (
            "UID on another domain",
            with(&[uid("alice@example.com"), cn("alice"), sid("laptop")]),
        ),
        ("CSR entirely for bob", Forge::subject_of(&bob, "laptop")),
        ("DCs of example.com", {
            let mut atvs = dcs("example.com");
            atvs.extend([uid(&alice_uid), cn("alice"), sid("laptop")]);
            atvs
        }),
        ("DCs in written instead of certificate order", {
            let mut atvs = vec![dc("chat"), dc("fugue"), dc("test")];
            atvs.extend([uid(&alice_uid), cn("alice"), sid("laptop")]);
            atvs
        }),
        ("DCs shuffled", {
            let mut atvs = vec![dc("test"), dc("chat"), dc("fugue")];
            atvs.extend([uid(&alice_uid), cn("alice"), sid("laptop")]);
            atvs
        }),
        (
            "an extra DC",
            with(&[dc("evil"), uid(&alice_uid), cn("alice"), sid("laptop")]),
        ),
        ("a DC missing", {
            let mut atvs = vec![dc("test"), dc("fugue")];
            atvs.extend([uid(&alice_uid), cn("alice"), sid("laptop")]);
            atvs
        }),
        ("no DCs", vec![uid(&alice_uid), cn("alice"), sid("laptop")]),
        ("no CN", with(&[uid(&alice_uid), sid("laptop")])),
        ("no UID", with(&[cn("alice"), sid("laptop")])),
        (
            "two CNs",
            with(&[uid(&alice_uid), cn("alice"), cn("bob"), sid("laptop")]),
        ),
        (
            "two UIDs",
            with(&[
                uid(&alice_uid),
                uid(&bob.to_string()),
                cn("alice"),
                sid("laptop"),
            ]),
        ),
        (
            "two identical CNs",
            with(&[uid(&alice_uid), cn("alice"), cn("alice"), sid("laptop")]),
        ),
    ];
    for (case, subject) in cases {
        let forge = f.forge("laptop").with_subject(subject);
        f.refused(case, forge.pem(), 403, ErrorCode::CsrSubjectMismatch)
            .await;
    }
}

#[tokio::test]
async fn a_valid_csr_for_alice_is_refused_when_bob_logs_in() {
    let f = Fixture::start().await;
    let bob = f.server.register("bob").await;
    let sessions_before = bob.sessions().await.unwrap();
    let resp = f.login("bob", f.forge("laptop").pem(), None).await;
    assert_raw_problem(resp, 403, ErrorCode::CsrSubjectMismatch).await;
    assert_eq!(bob.sessions().await.unwrap(), sessions_before);
}

// ---- (f) capabilities ----

#[tokio::test]
async fn a_csr_asking_for_ca_is_refused() {
    let f = Fixture::start().await;
    let ku = || extension(OID_KEY_USAGE, &key_usage(KeyUsages::DigitalSignature));
    let cases: Vec<(&str, Vec<Attribute>)> = vec![
        (
            "extensionRequest CA=true",
            vec![extension_request(vec![
                extension(OID_BASIC_CONSTRAINTS, &basic_constraints(true, None)),
                ku(),
            ])],
        ),
        (
            "extensionRequest CA=true pathLen=0",
            vec![extension_request(vec![
                extension(OID_BASIC_CONSTRAINTS, &basic_constraints(true, Some(0))),
                ku(),
            ])],
        ),
        (
            "extensionRequest with only CA=true",
            vec![extension_request(vec![extension(
                OID_BASIC_CONSTRAINTS,
                &basic_constraints(true, None),
            )])],
        ),
        (
            "bare attribute 2.5.29.19 CA=true",
            vec![bare_attribute(
                OID_BASIC_CONSTRAINTS,
                &basic_constraints(true, Some(0)),
            )],
        ),
        (
            "bare attribute 2.5.29.19 CA=true in an OCTET STRING",
            vec![bare_attribute(
                OID_BASIC_CONSTRAINTS,
                &OctetString::new(basic_constraints(true, None).to_der().unwrap()).unwrap(),
            )],
        ),
    ];
    for (case, attributes) in cases {
        let forge = f.forge("laptop").with_attributes(attributes);
        f.refused(case, forge.pem(), 403, ErrorCode::CsrCapabilitiesForbidden)
            .await;
    }
}

/// A request for a forbidden capability must not be cancelled by a harmless request for the
/// same extension next to it: whichever comes last, the CSR asked for it.
#[tokio::test]
async fn a_csr_that_repeats_a_capability_request_cannot_hide_a_forbidden_one() {
    let f = Fixture::start().await;
    let ca = || extension(OID_BASIC_CONSTRAINTS, &basic_constraints(true, None));
    let not_ca = || extension(OID_BASIC_CONSTRAINTS, &basic_constraints(false, None));
    let usage = |u: KeyUsages| extension(OID_KEY_USAGE, &key_usage(u));
    let cases: Vec<(&str, Vec<Attribute>)> = vec![
        (
            "CA=false, then CA=true in one extensionRequest",
            vec![extension_request(vec![not_ca(), ca()])],
        ),
        (
            "extensionRequest CA=true, bare CA=false",
            vec![
                extension_request(vec![ca()]),
                bare_attribute(OID_BASIC_CONSTRAINTS, &basic_constraints(false, None)),
            ],
        ),
        (
            "CA=true, then CA=false in one extensionRequest",
            vec![extension_request(vec![ca(), not_ca()])],
        ),
        (
            "extensionRequest CA=false, bare CA=true",
            vec![
                extension_request(vec![not_ca()]),
                bare_attribute(OID_BASIC_CONSTRAINTS, &basic_constraints(true, None)),
            ],
        ),
        (
            "keyCertSign, then digitalSignature in one extensionRequest",
            vec![extension_request(vec![
                usage(KeyUsages::KeyCertSign),
                usage(KeyUsages::DigitalSignature),
            ])],
        ),
    ];
    for (case, attributes) in cases {
        let forge = f.forge("laptop").with_attributes(attributes);
        f.refused(case, forge.pem(), 403, ErrorCode::CsrCapabilitiesForbidden)
            .await;
    }
}

#[tokio::test]
async fn a_csr_asking_to_sign_certificates_or_crls_is_refused() {
    let f = Fixture::start().await;
    let ku_request =
        |usages: KeyUsage| vec![extension_request(vec![extension(OID_KEY_USAGE, &usages)])];
    let cases: Vec<(&str, Vec<Attribute>)> = vec![
        ("keyCertSign", ku_request(key_usage(KeyUsages::KeyCertSign))),
        (
            "digitalSignature + keyCertSign",
            ku_request(key_usage(
                KeyUsages::DigitalSignature | KeyUsages::KeyCertSign,
            )),
        ),
        (
            "cRLSign",
            ku_request(key_usage(KeyUsages::DigitalSignature | KeyUsages::CRLSign)),
        ),
        (
            "bare attribute 2.5.29.15 keyCertSign",
            vec![bare_attribute(
                OID_KEY_USAGE,
                &key_usage(KeyUsages::KeyCertSign),
            )],
        ),
        (
            "keyEncipherment without digitalSignature",
            ku_request(key_usage(KeyUsages::KeyEncipherment)),
        ),
    ];
    for (case, attributes) in cases {
        let forge = f.forge("laptop").with_attributes(attributes);
        f.refused(case, forge.pem(), 403, ErrorCode::CsrCapabilitiesForbidden)
            .await;
    }
}

// ---- (g) session IDs ----

#[tokio::test]
async fn a_csr_without_a_usable_session_id_is_refused() {
    let f = Fixture::start().await;
    let fid = f.fid();
    let base = || {
        let mut atvs = dcs("localhost");
        atvs.extend([uid(&fid.to_string()), cn("alice")]);
        atvs
    };
    let with = |extra: AttributeTypeAndValue| {
        let mut atvs = base();
        atvs.push(extra);
        atvs
    };
    let cases: Vec<(&str, Vec<AttributeTypeAndValue>)> = vec![
        ("no uniqueIdentifier", base()),
        ("33 characters", with(sid(&"s".repeat(33)))),
        ("empty", with(sid(""))),
        ("with a space", with(sid("my laptop"))),
        ("not ASCII", with(utf8(OID_UNIQUE_ID, "ümlaut"))),
        (
            "not a string",
            with(atv(OID_UNIQUE_ID, Any::encode_from(&7u32).unwrap())),
        ),
    ];
    for (case, subject) in cases {
        let forge = f.forge("laptop").with_subject(subject);
        f.refused(case, forge.pem(), 400, ErrorCode::InvalidSessionId)
            .await;
    }
}

#[tokio::test]
async fn a_session_id_field_that_is_invalid_or_differs_from_the_csr_is_refused() {
    let f = Fixture::start().await;
    let csr = f.forge("laptop").pem();
    let long = "s".repeat(33);
    for (case, session_id) in [
        ("33 characters", long.as_str()),
        ("empty", ""),
        ("differs from the CSR", "desktop"),
    ] {
        f.refused_with(
            case,
            csr.clone(),
            Some(session_id),
            400,
            ErrorCode::InvalidSessionId,
        )
        .await;
    }
    // The same CSR with a matching (or no) sessionId field is fine: the refusals were about
    // the field alone.
    let resp = f.login("alice", csr, Some("laptop")).await;
    assert_eq!(resp.status().as_u16(), 201);
}

#[tokio::test]
async fn a_session_id_of_an_active_session_is_in_use_until_that_session_is_revoked() {
    let f = Fixture::start().await;
    let laptop = f.server.login("alice", "laptop").await.unwrap();
    f.refused(
        "the session of the first login",
        f.forge("main").pem(),
        409,
        ErrorCode::SessionIdInUse,
    )
    .await;
    f.refused(
        "another active session",
        f.forge("laptop").pem(),
        409,
        ErrorCode::SessionIdInUse,
    )
    .await;
    assert_problem(
        f.server.login("alice", "laptop").await,
        409,
        ErrorCode::SessionIdInUse,
    );

    // A session opened without a CSR holds its ID too.
    let url = format!("{}{}", f.server.url, login::PATH);
    let body = login::Request {
        local_name: "alice".into(),
        password: PASSWORD.into(),
        totp: None,
        csr: None,
        session_id: Some("bare".into()),
    };
    let resp = f
        .server
        .client()
        .raw()
        .post(&url)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    f.refused(
        "session opened without a CSR",
        f.forge("bare").pem(),
        409,
        ErrorCode::SessionIdInUse,
    )
    .await;

    // Other actors have their own session IDs.
    f.server.register("bob").await;
    f.server.login("bob", "laptop").await.unwrap();

    let laptop_sid: SessionId = "laptop".parse().unwrap();
    f.alice.revoke_session(&laptop_sid, PASSWORD).await.unwrap();
    assert_problem(laptop.sessions().await, 401, ErrorCode::InvalidToken);
    let again = f.server.login("alice", "laptop").await.unwrap();
    assert_eq!(again.session_id(), &laptop_sid);
    assert_ne!(
        again.current_serial().unwrap(),
        laptop.current_serial().unwrap()
    );
    let active: Vec<String> = f
        .alice
        .sessions()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.session_id.to_string())
        .collect();
    assert_eq!(
        active.iter().filter(|s| *s == "laptop").count(),
        1,
        "{active:?}"
    );
}

// ---- (h) not a CSR at all ----

#[tokio::test]
async fn something_that_is_not_a_csr_is_refused_as_invalid() {
    let f = Fixture::start().await;
    let good = f.forge("laptop").der();
    let cert_pem = f.alice.cert_pem().to_owned();
    let cert_der = IdCert::parse(cert_pem.as_bytes()).unwrap().der;
    let mut trailing = good.clone();
    trailing.extend_from_slice(&[0, 0]);
    let mut unterminated = csr_pem(&good);
    unterminated.truncate(unterminated.find("-----END").unwrap());
    let cases: Vec<(&str, String)> = vec![
        ("empty", String::new()),
        ("text", "this is not a certificate request".into()),
        (
            "garbage in a CSR PEM",
            pem("CERTIFICATE REQUEST", b"\x30\x03\x02\x01\x00garbage"),
        ),
        (
            "random bytes in a CSR PEM",
            pem("CERTIFICATE REQUEST", &[0x5a; 200]),
        ),
        (
            "a CSR under the label CERTIFICATE",
            pem("CERTIFICATE", &good),
        ),
        ("a CSR under the label PUBLIC KEY", pem("PUBLIC KEY", &good)),
        ("an ID-Cert", cert_pem),
        ("an ID-Cert relabelled as a CSR", csr_pem(&cert_der)),
        ("a truncated CSR", csr_pem(&good[..good.len() - 10])),
        ("a CSR with trailing bytes", csr_pem(&trailing)),
        ("a PEM without END line", unterminated),
        (
            "broken base64",
            "-----BEGIN CERTIFICATE REQUEST-----\n!!!!\n-----END CERTIFICATE REQUEST-----\n".into(),
        ),
    ];
    for (case, csr) in cases {
        f.refused(case, csr, 400, ErrorCode::InvalidCsr).await;
    }
}

#[tokio::test]
async fn an_oversized_csr_is_refused_even_when_correctly_signed() {
    let f = Fixture::start().await;
    // Correctly signed, but with a 20 KB attribute: the parser's size cap must hold.
    let filler = Attribute {
        oid: OID_ORGANIZATION,
        values: SetOfVec::try_from(vec![
            Any::encode_from(&OctetString::new(vec![0u8; 20_000]).unwrap()).unwrap(),
        ])
        .unwrap(),
    };
    let mut attributes = f.forge("laptop").attributes;
    attributes.push(filler);
    let forge = f.forge("laptop").with_attributes(attributes);
    f.refused("20 KB CSR", forge.pem(), 400, ErrorCode::InvalidCsr)
        .await;
}

// ---- the same rules on renewal ----

#[tokio::test]
async fn a_renewal_csr_faces_the_same_checks_and_changes_nothing_when_refused() {
    let f = Fixture::start().await;
    let url = format!("{}{}", f.server.url, post_idcert::PATH);
    let ca = f
        .forge("main")
        .with_attributes(vec![extension_request(vec![extension(
            OID_BASIC_CONSTRAINTS,
            &basic_constraints(true, None),
        )])]);
    let mut bad_sig = f.forge("main").der();
    let last = bad_sig.len() - 1;
    bad_sig[last] ^= 0x80;
    let cases: Vec<(&str, String, u16, ErrorCode)> = vec![
        (
            "CA=true",
            ca.pem(),
            403,
            ErrorCode::CsrCapabilitiesForbidden,
        ),
        (
            "another session",
            f.forge("laptop").pem(),
            400,
            ErrorCode::InvalidSessionId,
        ),
        (
            "another actor",
            Forge::new(&f.server.fid("bob"), "main").pem(),
            403,
            ErrorCode::CsrSubjectMismatch,
        ),
        (
            "bad signature",
            csr_pem(&bad_sig),
            400,
            ErrorCode::CsrSignatureInvalid,
        ),
        (
            "weak key",
            f.forge("main").with_spki(ed25519_spki(&[0; 32])).pem(),
            400,
            ErrorCode::WeakKey,
        ),
        ("not a CSR", "nonsense".into(), 400, ErrorCode::InvalidCsr),
    ];
    for (case, csr, status, code) in cases {
        eprintln!("case: {case}");
        let certs_before = f.certs().await;
        let resp = f
            .server
            .client()
            .raw()
            .post(&url)
            .bearer_auth(f.alice.token())
            .header(fugue_proto::api::SENSITIVE_HEADER, PASSWORD)
            .header("content-type", "text/plain")
            .body(csr)
            .send()
            .await
            .unwrap();
        assert_raw_problem(resp, status, code).await;
        assert_eq!(f.certs().await, certs_before, "{case}");
        // The token was not rotated.
        f.alice.sessions().await.unwrap();
    }
}

// ---- what the CA issues ----

/// Name attributes in order as (OID, ASN.1 tag, text); asserts one attribute per RDN.
fn attributes_of(name: &Name) -> Vec<(ObjectIdentifier, Tag, String)> {
    name.0
        .iter()
        .map(|rdn| {
            assert_eq!(rdn.0.len(), 1, "multi-valued RDN in {name}");
            let a = rdn.0.iter().next().unwrap();
            (
                a.oid,
                a.value.tag(),
                String::from_utf8(a.value.value().to_vec()).unwrap(),
            )
        })
        .collect()
}

fn dc_values(attrs: &[(ObjectIdentifier, Tag, String)]) -> Vec<String> {
    attrs
        .iter()
        .filter(|a| a.0 == OID_DC)
        .map(|a| a.2.clone())
        .collect()
}

fn extension_of(cert: &Certificate, oid: ObjectIdentifier) -> &Extension {
    let exts = cert
        .tbs_certificate
        .extensions
        .as_ref()
        .expect("extensions present");
    let found: Vec<_> = exts.iter().filter(|e| e.extn_id == oid).collect();
    assert_eq!(found.len(), 1, "extension {oid} must appear exactly once");
    found[0]
}

fn serial_of(cert: &Certificate) -> u128 {
    let bytes = cert.tbs_certificate.serial_number.as_bytes();
    assert!(bytes[0] & 0x80 == 0, "negative serial {bytes:02x?}");
    assert!(bytes.len() <= 9, "serial too long: {bytes:02x?}");
    bytes
        .iter()
        .fold(0u128, |acc, b| (acc << 8) | u128::from(*b))
}

fn window_of(cert: &Certificate) -> (u64, u64) {
    let v = &cert.tbs_certificate.validity;
    (
        v.not_before.to_unix_duration().as_secs(),
        v.not_after.to_unix_duration().as_secs(),
    )
}

#[tokio::test]
async fn the_issued_actor_cert_follows_the_profile() {
    let f = Fixture::on("chat.fugue.test").await;
    let started = now();
    let forge = f.forge("laptop");
    let issued = f.accepted(forge.pem()).await;
    assert_eq!(
        issued.id_cert, issued.id_cert_beta3,
        "both spellings carry the same cert"
    );
    let pem = issued.id_cert.unwrap();
    let cert = Certificate::from_pem(pem.as_bytes()).unwrap();
    let tbs = &cert.tbs_certificate;

    assert_eq!(tbs.version, CertVersion::V3);
    let serial = serial_of(&cert);
    assert!(serial > 0 && serial < 1 << 63, "serial {serial}");
    assert_eq!(cert.signature_algorithm, alg(ED25519));
    assert_eq!(tbs.signature, alg(ED25519));
    assert!(tbs.issuer_unique_id.is_none() && tbs.subject_unique_id.is_none());
    assert_eq!(tbs.subject_public_key_info.algorithm, alg(ED25519));
    assert_eq!(
        tbs.subject_public_key_info.subject_public_key.raw_bytes(),
        forge.key.verifying_key().as_bytes()
    );

    // Names: DCs top-level first, then UID, CN, uniqueIdentifier, with the string types
    // the reference SDK re-encodes to (its signature check depends on them).
    let issuer = attributes_of(&tbs.issuer);
    let subject = attributes_of(&tbs.subject);
    let want_dcs = vec!["test".to_owned(), "fugue".into(), "chat".into()];
    assert_eq!(dc_values(&issuer), want_dcs);
    assert_eq!(issuer.len(), 3, "issuer has DCs only: {}", tbs.issuer);
    assert!(issuer.iter().all(|a| a.1 == Tag::Ia5String));
    let expected_subject = vec![
        (OID_DC, Tag::Ia5String, "test".to_owned()),
        (OID_DC, Tag::Ia5String, "fugue".to_owned()),
        (OID_DC, Tag::Ia5String, "chat".to_owned()),
        (OID_UID, Tag::Utf8String, "alice@chat.fugue.test".to_owned()),
        (OID_CN, Tag::Utf8String, "alice".to_owned()),
        (OID_UNIQUE_ID, Tag::Ia5String, "laptop".to_owned()),
    ];
    assert_eq!(subject, expected_subject);

    // Exactly basicConstraints and keyUsage, both critical (DIGEST §4.2; the SDK expects this
    // pair and nothing else).
    let exts = tbs.extensions.as_ref().unwrap();
    let oids: Vec<_> = exts.iter().map(|e| e.extn_id).collect();
    assert_eq!(oids, vec![OID_BASIC_CONSTRAINTS, OID_KEY_USAGE]);
    let bc = extension_of(&cert, OID_BASIC_CONSTRAINTS);
    assert!(bc.critical);
    assert_eq!(
        BasicConstraints::from_der(bc.extn_value.as_bytes()).unwrap(),
        basic_constraints(false, None)
    );
    let ku = extension_of(&cert, OID_KEY_USAGE);
    assert!(ku.critical);
    assert_eq!(
        KeyUsage::from_der(ku.extn_value.as_bytes()).unwrap(),
        key_usage(KeyUsages::DigitalSignature)
    );

    // Validity: starts now, at most the default 30 days, inside the root's window.
    let (nb, na) = window_of(&cert);
    let root = f.server_cert().await;
    assert!(
        nb >= started.saturating_sub(5) && nb <= now() + 5,
        "notBefore {nb}, now {started}"
    );
    assert!(na > nb && na - nb <= 30 * DAY, "{nb}..{na}");
    assert!(
        na - nb >= 30 * DAY - 60,
        "the default is 30 days: {nb}..{na}"
    );
    assert!(root.not_before <= nb && na <= root.not_after);

    // And it is a valid ID-Cert under the root, signed over exactly these bytes.
    let parsed = IdCert::parse(pem.as_bytes()).unwrap();
    parsed.verify_actor(&root, now()).unwrap();
    assert_eq!(parsed.key, forge.key.verifying_key());
    assert_eq!(parsed.serial.0 as u128, serial);
    let tbs_der = tbs.to_der().unwrap();
    root.key
        .verify_strict(
            &tbs_der,
            &ed25519_dalek::Signature::from_slice(cert.signature.raw_bytes()).unwrap(),
        )
        .unwrap();
}

#[tokio::test]
async fn the_ca_writes_its_own_extensions_and_names_never_the_requested_ones() {
    let f = Fixture::start().await;
    let fid = f.fid();
    // Allowed requests beyond the profile: extra usages, an O= attribute, an upper-case CN,
    // an unknown attribute, attributes in an unusual order and a multi-valued RDN.
    let mut subject = vec![
        cn("ALICE"),
        atv(
            OID_ORGANIZATION,
            Any::encode_from(&Utf8StringRef::new("Evil Corp").unwrap()).unwrap(),
        ),
    ];
    subject.extend(dcs("localhost"));
    subject.push(sid("phone"));
    let mut forge = f.forge("phone").with_subject(subject);
    forge.attributes = vec![
        extension_request(vec![
            extension(
                OID_KEY_USAGE,
                &key_usage(
                    KeyUsages::DigitalSignature
                        | KeyUsages::KeyEncipherment
                        | KeyUsages::NonRepudiation,
                ),
            ),
            extension(
                ObjectIdentifier::new_unwrap("2.5.29.17"),
                &OctetString::new(b"evil".to_vec()).unwrap(),
            ),
        ]),
        bare_attribute(
            ObjectIdentifier::new_unwrap("1.2.3.4"),
            &Utf8StringRef::new("whatever").unwrap(),
        ),
    ];
    // The UID goes into a multi-valued RDN together with the uniqueIdentifier-less DC.
    let mut info = forge.info();
    let uid_rdn = RelativeDistinguishedName(
        SetOfVec::try_from(vec![
            uid(&fid.to_string()),
            ia5(ObjectIdentifier::new_unwrap("2.5.4.7"), "Somewhere"),
        ])
        .unwrap(),
    );
    info.subject.0.push(uid_rdn);
    let signature = forge.key.sign(&info.to_der().unwrap()).to_bytes();
    let der = CertReq {
        info,
        algorithm: alg(ED25519),
        signature: BitString::from_bytes(&signature).unwrap(),
    }
    .to_der()
    .unwrap();

    let issued = f.accepted(csr_pem(&der)).await;
    let cert = Certificate::from_pem(issued.id_cert.unwrap().as_bytes()).unwrap();
    let subject = attributes_of(&cert.tbs_certificate.subject);
    let texts: Vec<(ObjectIdentifier, String)> = subject.into_iter().map(|a| (a.0, a.2)).collect();
    assert_eq!(
        texts,
        vec![
            (OID_DC, "localhost".to_owned()),
            (OID_UID, "alice@localhost".to_owned()),
            (OID_CN, "alice".to_owned()),
            (OID_UNIQUE_ID, "phone".to_owned()),
        ]
    );
    let oids: Vec<_> = cert
        .tbs_certificate
        .extensions
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| e.extn_id)
        .collect();
    assert_eq!(oids, vec![OID_BASIC_CONSTRAINTS, OID_KEY_USAGE]);
    let ku = extension_of(&cert, OID_KEY_USAGE);
    assert_eq!(
        KeyUsage::from_der(ku.extn_value.as_bytes()).unwrap(),
        key_usage(KeyUsages::DigitalSignature)
    );
}

#[tokio::test]
async fn serials_of_issued_certs_are_all_distinct() {
    let f = Fixture::start().await;
    let root = f.server_cert().await;
    let mut serials = vec![root.serial.0, f.alice.current_serial().unwrap().0];
    for i in 0..24 {
        let session = f.server.login("alice", &format!("s{i}")).await.unwrap();
        serials.push(session.current_serial().unwrap().0);
    }
    let mut renewing = f.server.login("alice", "renewing").await.unwrap();
    for _ in 0..4 {
        renewing.renew_cert(PASSWORD).await.unwrap();
        serials.push(renewing.current_serial().unwrap().0);
    }
    assert!(
        serials.iter().all(|s| *s > 0 && *s < 1 << 63),
        "{serials:?}"
    );
    let mut unique = serials.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), serials.len(), "{serials:?}");
    // Not a counter: random 63-bit serials spread over the high bits.
    assert!(serials.iter().any(|s| *s > 1 << 40), "{serials:?}");
}

#[tokio::test]
async fn a_configured_validity_is_used_and_capped_at_sixty_days() {
    let server = TestServer::start_with(|c| c.certs.actor_validity_days = 2).await;
    let alice = server.register("alice").await;
    let cert = IdCert::parse(alice.cert_pem().as_bytes()).unwrap();
    let days = cert.not_after - cert.not_before;
    assert!(days <= 2 * DAY && days > 2 * DAY - 60, "{days}");

    let server = TestServer::start_with(|c| {
        c.certs.actor_validity_days = 365;
        c.certs.server_validity_days = 1000;
    })
    .await;
    let alice = server.register("alice").await;
    let cert = IdCert::parse(alice.cert_pem().as_bytes()).unwrap();
    let span = cert.not_after - cert.not_before;
    assert!(span <= 60 * DAY && span > 60 * DAY - 60, "{span}");

    // Never beyond the root's own validity.
    let server = TestServer::start_with(|c| c.certs.server_validity_days = 10).await;
    let alice = server.register("alice").await;
    let cert = IdCert::parse(alice.cert_pem().as_bytes()).unwrap();
    let root = server.root_cert().await;
    assert!(
        cert.not_after <= root.not_after,
        "{} > {}",
        cert.not_after,
        root.not_after
    );
}

#[tokio::test]
async fn the_server_root_is_a_self_signed_ca_for_its_domain_only() {
    let f = Fixture::on("chat.fugue.test").await;
    let cached = f.server.client().server_cert(None).await.unwrap();
    let root = IdCert::parse(cached.id_cert_pem.as_bytes()).unwrap();
    root.verify_server_root().unwrap();
    let cert = Certificate::from_pem(cached.id_cert_pem.as_bytes()).unwrap();
    let tbs = &cert.tbs_certificate;

    assert_eq!(tbs.version, CertVersion::V3);
    let serial = serial_of(&cert);
    assert!(serial > 0 && serial < 1 << 63);
    assert_eq!(cert.signature_algorithm, alg(ED25519));
    assert_eq!(tbs.issuer, tbs.subject, "self-issued");
    let subject = attributes_of(&tbs.subject);
    assert_eq!(
        subject,
        vec![
            (OID_DC, Tag::Ia5String, "test".to_owned()),
            (OID_DC, Tag::Ia5String, "fugue".to_owned()),
            (OID_DC, Tag::Ia5String, "chat".to_owned()),
        ],
        "a home-server name has DCs only"
    );

    let oids: Vec<_> = tbs
        .extensions
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| e.extn_id)
        .collect();
    assert_eq!(oids, vec![OID_BASIC_CONSTRAINTS, OID_KEY_USAGE]);
    let bc = extension_of(&cert, OID_BASIC_CONSTRAINTS);
    assert!(bc.critical);
    assert_eq!(
        BasicConstraints::from_der(bc.extn_value.as_bytes()).unwrap(),
        basic_constraints(true, Some(0))
    );
    let ku = extension_of(&cert, OID_KEY_USAGE);
    assert!(ku.critical);
    assert_eq!(
        KeyUsage::from_der(ku.extn_value.as_bytes()).unwrap(),
        key_usage(KeyUsages::KeyCertSign)
    );

    // Self-signed: its own key verifies the signature over the TBS bytes.
    let key =
        VerifyingKey::try_from(tbs.subject_public_key_info.subject_public_key.raw_bytes()).unwrap();
    let signature = ed25519_dalek::Signature::from_slice(cert.signature.raw_bytes()).unwrap();
    key.verify_strict(&tbs.to_der().unwrap(), &signature)
        .unwrap();
    let (nb, na) = window_of(&cert);
    assert!(nb <= now() && now() < na);

    // The actor certs it issues chain to it.
    let actor = IdCert::parse(f.alice.cert_pem().as_bytes()).unwrap();
    actor.verify_actor(&root, now()).unwrap();
    assert_eq!(actor.issuer, root.subject);
}
