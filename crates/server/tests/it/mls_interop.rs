//! Interoperability with a second, independent MLS implementation: bob's device runs
//! mls-rs (AWS Labs), alice's Fugue's client (openmls). bob's KeyPackage — signed with his
//! session key, carrying his ID-Cert as an X.509 credential — is taken by the server;
//! alice's group welcomes him; both read each other's encrypted messages in an encrypted
//! channel through the server.

use std::time::Duration;

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use mls_rs::client_builder::MlsConfig;
use mls_rs::error::IntoAnyError;
use mls_rs::group::ReceivedMessage;
use mls_rs::identity::{Credential, CredentialType, CustomCredential, SigningIdentity};
use mls_rs::time::MlsTime;
use mls_rs::{CipherSuite, Client, ExtensionList, IdentityProvider, MlsMessage};
use mls_rs_crypto_rustcrypto::RustCryptoProvider;

use fugue_client::mls::Mls;
use fugue_client::{Chat, Session};
use fugue_proto::api::get_messages;
use fugue_proto::certs::IdCert;
use fugue_proto::chat::MessageBody;
use fugue_proto::mls::{ENCRYPTED_PREFIX, KeyPackage};
use fugue_proto::mls_wire;
use fugue_testkit::TestServer;

/// RFC 9420's X.509 credential type.
const X509: CredentialType = CredentialType::new(2);

#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

impl IntoAnyError for Refused {
    fn into_dyn_error(self) -> Result<Box<dyn std::error::Error + Send + Sync>, Self> {
        Ok(Box::new(self))
    }
}

/// mls-rs' side of Fugue's authentication service: a member's credential is an X.509 chain
/// whose first certificate is an ID-Cert for the member's signature key.
#[derive(Clone)]
struct IdCerts;

impl IdCerts {
    fn cert(identity: &SigningIdentity) -> Result<IdCert, Refused> {
        let Credential::Custom(c) = &identity.credential else {
            return Err(Refused("not an X.509 credential".into()));
        };
        if c.credential_type != X509 {
            return Err(Refused("not an X.509 credential".into()));
        }
        // The chain's first certificate: a variable-length vector (RFC 9420 §2.1.2).
        let (len, rest) = varint(&c.data).ok_or_else(|| Refused("bad chain".into()))?;
        let der = rest.get(..len).ok_or_else(|| Refused("bad chain".into()))?;
        let cert = IdCert::parse(der).map_err(|e| Refused(e.to_string()))?;
        if cert.key.as_bytes().as_slice() != identity.signature_key.as_ref() {
            return Err(Refused("the ID-Cert is for another key".into()));
        }
        Ok(cert)
    }
}

/// A QUIC-style variable-length integer and what follows it.
fn varint(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let first = *bytes.first()?;
    let n = 1usize << (first >> 6);
    let mut v = u64::from(first & 0x3f);
    for b in bytes.get(1..n)? {
        v = (v << 8) | u64::from(*b);
    }
    Some((usize::try_from(v).ok()?, bytes.get(n..)?))
}

impl IdentityProvider for IdCerts {
    type Error = Refused;

    fn validate_member(
        &self,
        identity: &SigningIdentity,
        _: Option<MlsTime>,
        _: mls_rs_core::identity::MemberValidationContext<'_>,
    ) -> Result<(), Refused> {
        Self::cert(identity).map(|_| ())
    }

    fn validate_external_sender(
        &self,
        _: &SigningIdentity,
        _: Option<MlsTime>,
        _: Option<&ExtensionList>,
    ) -> Result<(), Refused> {
        Err(Refused("no external senders".into()))
    }

    fn identity(&self, identity: &SigningIdentity, _: &ExtensionList) -> Result<Vec<u8>, Refused> {
        let cert = Self::cert(identity)?;
        Ok(format!(
            "{}/{}",
            cert.fid().map(|f| f.to_string()).unwrap_or_default(),
            cert.session_id().map(|s| s.to_string()).unwrap_or_default()
        )
        .into_bytes())
    }

    fn valid_successor(
        &self,
        a: &SigningIdentity,
        b: &SigningIdentity,
        _: &ExtensionList,
    ) -> Result<bool, Refused> {
        Ok(Self::cert(a)?.fid() == Self::cert(b)?.fid())
    }

    fn supported_types(&self) -> Vec<CredentialType> {
        vec![X509]
    }
}

/// bob's device on mls-rs: its session's key signs, its ID-Cert is the credential.
fn mls_rs_client(session: &Session) -> Client<impl MlsConfig> {
    let pem = session.key().to_pkcs8_pem().unwrap();
    let key = SigningKey::from_pkcs8_pem(&pem).unwrap();
    let cert = IdCert::parse(session.cert_pem().as_bytes()).unwrap();
    let mut chain = Vec::new();
    // One certificate, as a variable-length vector entry (2-byte varint: < 16,384 bytes).
    let len = u16::try_from(cert.der.len()).unwrap() | 0x4000;
    chain.extend_from_slice(&len.to_be_bytes());
    chain.extend_from_slice(&cert.der);
    let credential = Credential::Custom(CustomCredential::new(X509, chain));
    let identity = SigningIdentity::new(credential, key.verifying_key().to_bytes().to_vec().into());
    Client::builder()
        .identity_provider(IdCerts)
        .crypto_provider(RustCryptoProvider::default())
        .key_package_lifetime(Duration::from_secs(28 * 24 * 3600))
        .signing_identity(
            identity,
            key.to_keypair_bytes().to_vec().into(),
            CipherSuite::CURVE25519_AES128,
        )
        .build()
}

/// The JSON model of a KeyPackage made elsewhere: the spec's fields derived from it.
fn model(bytes: &[u8], id: &str) -> KeyPackage {
    let openmls::prelude::MlsMessageBodyIn::KeyPackage(kp) =
        mls_wire::message("kp", bytes).unwrap()
    else {
        panic!("no KeyPackage")
    };
    let kp = kp
        .validate(
            &openmls_rust_crypto::RustCrypto::default(),
            openmls::prelude::ProtocolVersion::Mls10,
        )
        .unwrap();
    mls_wire::key_package_model(&kp, id.to_owned()).unwrap()
}

fn send_body(ciphertext: &[u8]) -> MessageBody {
    MessageBody {
        content: format!("{ENCRYPTED_PREFIX}{}", mls_wire::b64(ciphertext)),
        reply_to: None,
        attachments: Vec::new(),
    }
}

#[tokio::test]
async fn an_mls_rs_device_is_welcomed_into_an_openmls_group_and_both_read_each_other() {
    let server = TestServer::start().await;
    let alice_s = server.register("alice").await;
    let bob_s = server.register("bob").await;
    let (alice, alice_mls): (Chat, Mls) = (alice_s.chat(), Mls::new(&alice_s).unwrap());
    let bob = bob_s.chat();
    let bob_rs = mls_rs_client(&bob_s);

    // mls-rs' KeyPackage, uploaded like any: the server checks it with openmls.
    let kp = bob_rs
        .generate_key_package_message(ExtensionList::default(), ExtensionList::default(), None)
        .unwrap()
        .to_bytes()
        .unwrap();
    let uploaded = model(&kp, "bob-mls-rs-1");
    bob_s
        .upload_key_packages(std::slice::from_ref(&uploaded))
        .await
        .unwrap();

    // alice's encrypted channel; she claims bob's package and adds him.
    let (guild, channel) = crate::e2ee::guild_with_channel(&alice, "interop").await;
    bob.join_guild(guild, None).await.unwrap();
    let group = alice.new_mls_group(&alice_mls).await.unwrap();
    alice.encrypt_channel(channel, &group).await.unwrap();
    let claimed = alice.claim_key_packages(bob_s.fid()).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, uploaded.id);
    let pending = alice_mls.add(&group, &claimed).unwrap();
    let welcome = alice
        .mls_commit(&group, &pending.commit)
        .await
        .unwrap()
        .unwrap();
    alice_mls.confirm(&group).unwrap();

    // bob (mls-rs) joins from the Welcome the server passed on.
    let welcome_bytes =
        mls_wire::bytes("welcome", &welcome.encrypted_group_state, usize::MAX).unwrap();
    let (mut bob_group, _) = bob_rs
        .join_group(None, &MlsMessage::from_bytes(&welcome_bytes).unwrap(), None)
        .unwrap();
    assert_eq!(hex_of(bob_group.group_id()), group);

    // alice → bob through the server.
    alice
        .send_encrypted(&alice_mls, channel, &group, "hello from openmls")
        .await
        .unwrap();
    let page = bob
        .messages(channel, &get_messages::Query::default())
        .await
        .unwrap();
    let ct = page[0].content.strip_prefix(ENCRYPTED_PREFIX).unwrap();
    let bytes = mls_wire::bytes("ct", ct, usize::MAX).unwrap();
    match bob_group
        .process_incoming_message(MlsMessage::from_bytes(&bytes).unwrap())
        .unwrap()
    {
        ReceivedMessage::ApplicationMessage(m) => {
            assert_eq!(m.data(), b"hello from openmls");
        }
        other => panic!("{other:?}"),
    }

    // bob → alice: mls-rs' ciphertext, signed and posted as bob's message, opened by
    // alice's client, which checks that the MLS sender is the message's author.
    let out = bob_group
        .encrypt_application_message(b"hello from mls-rs", Vec::new())
        .unwrap()
        .to_bytes()
        .unwrap();
    let sent = bob.send_message(channel, send_body(&out)).await.unwrap();
    assert_eq!(
        alice.decrypt(&alice_mls, &group, &sent.message).unwrap(),
        "hello from mls-rs"
    );
    // The server saw ciphertext only.
    for m in alice
        .messages(channel, &get_messages::Query::default())
        .await
        .unwrap()
    {
        assert!(m.content.starts_with(ENCRYPTED_PREFIX));
        assert!(!m.content.contains("hello"));
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
