//! MLS objects as polyproto-mls carries them (feature `mls`): base64 of a TLS-encoded
//! `MLSMessage`, the spec's JSON models derived from them, and the credential as Fugue binds
//! it to an actor — an X.509 credential whose first certificate is the device's ID-Cert,
//! signing with that certificate's key. Shared by the server and the client, so both read
//! the same object the same way. Nothing here talks to anyone.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use openmls::prelude::tls_codec::{
    Deserialize as _, DeserializeBytes as _, Serialize as _, VLBytes,
};
use openmls::prelude::{
    Credential, CredentialType, KeyPackage, MlsMessageBodyIn, MlsMessageIn, MlsMessageOut,
    ProposalType as MlsProposalType, ProtocolVersion,
};

use crate::certs::IdCert;
use crate::mls::{self, ClientCapabilities, ProposalType};

/// Length of an Ed25519 signature: the last bytes of an encoded KeyPackage under 0x0001.
const SIGNATURE_LEN: usize = 64;

/// Bytes of a base64 field no longer than `max` characters.
pub fn bytes(field: &str, text: &str, max: usize) -> Result<Vec<u8>, String> {
    if text.len() > max {
        return Err(format!("{field} is longer than {max} characters"));
    }
    B64.decode(text)
        .map_err(|_| format!("{field} is not base64"))
}

/// Base64, as the spec's fields carry bytes.
pub fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// An `MLSMessage`, base64.
pub fn encode(m: &MlsMessageOut) -> Result<String, String> {
    m.tls_serialize_detached()
        .map(|b| b64(&b))
        .map_err(|e| format!("the MLSMessage does not encode: {e}"))
}

/// The body of an `MLSMessage` (nothing after it).
pub fn message(field: &str, bytes: &[u8]) -> Result<MlsMessageBodyIn, String> {
    let m = MlsMessageIn::tls_deserialize_exact(bytes)
        .map_err(|e| format!("{field} is no MLSMessage: {e}"))?;
    Ok(m.extract())
}

/// An `MLSMessage` field that must be there.
pub fn required<'a>(field: &str, v: Option<&'a String>) -> Result<&'a str, String> {
    v.map(String::as_str)
        .ok_or_else(|| format!("{field} is missing: the MLS object itself, base64"))
}

/// The credential of a device: its ID-Cert (DER) as a one-certificate X.509 chain
/// (RFC 9420 §5.3: `Certificate certificates<V>`, each `opaque cert_data<V>`).
pub fn credential(cert_der: &[u8]) -> Result<Credential, String> {
    let entry = VLBytes::new(cert_der.to_vec())
        .tls_serialize_detached()
        .map_err(|e| format!("the credential does not encode: {e}"))?;
    Ok(Credential::new(CredentialType::X509, entry))
}

/// The ID-Cert a credential carries: an X.509 credential whose first certificate is one.
pub fn credential_cert(c: &Credential) -> Result<IdCert, String> {
    if c.credential_type() != CredentialType::X509 {
        return Err("the credential is not an X.509 credential carrying an ID-Cert".into());
    }
    let (first, _) = VLBytes::tls_deserialize_bytes(c.serialized_content())
        .map_err(|e| format!("the credential's certificate chain does not parse: {e}"))?;
    if first.as_slice().is_empty() {
        return Err("the credential's certificate chain is empty".into());
    }
    IdCert::parse(first.as_slice()).map_err(|e| format!("the credential's ID-Cert: {e}"))
}

/// A two-byte code point (a cipher suite) as its number.
fn two_bytes(v: &impl openmls::prelude::tls_codec::Serialize) -> u16 {
    v.tls_serialize_detached()
        .ok()
        .and_then(|b| <[u8; 2]>::try_from(b.as_slice()).ok())
        .map_or(0, u16::from_be_bytes)
}

/// The JSON model of a checked KeyPackage: the spec's fields derived from it, `id` as its
/// uploader named it, and the package itself in `fugue:mls`.
pub fn key_package_model(kp: &KeyPackage, id: String) -> Result<mls::KeyPackage, String> {
    let encoded = encode(&MlsMessageOut::from(kp.clone()))?;
    let tbs = kp
        .tls_serialize_detached()
        .map_err(|e| format!("the KeyPackage does not encode: {e}"))?;
    let signature = tbs
        .get(tbs.len().saturating_sub(SIGNATURE_LEN)..)
        .unwrap_or_default();
    let caps = kp.leaf_node().capabilities();
    Ok(mls::KeyPackage {
        id,
        public_key: b64(kp.hpke_init_key().as_slice()),
        capabilities: ClientCapabilities {
            versions: caps
                .versions()
                .iter()
                .map(|v| match v {
                    ProtocolVersion::Mls10 => mls::VERSION_1_0.to_owned(),
                    ProtocolVersion::Other(other) => mls::code(*other),
                })
                .collect(),
            ciphersuites: caps
                .ciphersuites()
                .iter()
                .map(|c| mls::code(two_bytes(c)))
                .collect(),
            extensions: caps
                .extensions()
                .iter()
                .map(|e| mls::code(u16::from(*e)))
                .collect(),
        },
        signature: b64(signature),
        last_resort: kp.last_resort(),
        mls: Some(encoded),
    })
}

/// The spec's name of a proposal type.
pub fn proposal_type(t: MlsProposalType) -> ProposalType {
    match t {
        MlsProposalType::Add => ProposalType::Add,
        MlsProposalType::Update => ProposalType::Update,
        MlsProposalType::Remove => ProposalType::Remove,
        MlsProposalType::PreSharedKey => ProposalType::PreSharedKey,
        MlsProposalType::Reinit => ProposalType::ReInit,
        MlsProposalType::ExternalInit => ProposalType::ExternalInit,
        MlsProposalType::GroupContextExtensions => ProposalType::GroupContextExtensions,
        _ => ProposalType::Other,
    }
}
