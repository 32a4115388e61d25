//! ID-Certs and ID-CSRs (core §6, DIGEST §4).
//!
//! - [`csr`]: parse an ID-CSR and verify its signature over the *original* request bytes.
//! - [`issue`]: build the to-be-signed part of actor and home-server certificates. Signing is
//!   the caller's business (a closure), so no private key ever enters this crate.
//! - [`verify`]: parse a certificate and check it against its issuer, the pDN and capability
//!   rules and a point in time.
//!
//! Only Ed25519 is accepted, always with strict verification (DIGEST §4.6).

pub mod csr;
pub mod issue;
pub mod pdn;
pub mod verify;

use der::asn1::{AnyRef, BitStringRef, ObjectIdentifier};
use ed25519_dalek::VerifyingKey;
use spki::AlgorithmIdentifierRef;

pub use csr::ActorCsr;
pub use verify::IdCert;

/// id-Ed25519 (RFC 8410).
pub const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
pub const OID_CN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
pub const OID_DC: ObjectIdentifier = ObjectIdentifier::new_unwrap("0.9.2342.19200300.100.1.25");
pub const OID_UID: ObjectIdentifier = ObjectIdentifier::new_unwrap("0.9.2342.19200300.100.1.1");
pub const OID_UNIQUE_ID: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("0.9.2342.19200300.100.1.44");
pub const OID_EXTENSION_REQUEST: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.14");
pub const OID_BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
pub const OID_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");

/// Why a CSR or certificate was rejected. Each variant is a cause a client can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("not a well-formed DER/PEM structure: {0}")]
    Malformed(String),
    #[error("only Ed25519 keys and signatures are accepted")]
    UnsupportedAlgorithm,
    #[error("the public key is malformed or weak")]
    WeakKey,
    #[error("the signature does not verify")]
    SignatureInvalid,
    #[error("subject mismatch: {0}")]
    SubjectMismatch(String),
    #[error("forbidden capability requested: {0}")]
    CapabilitiesForbidden(String),
    #[error("missing or invalid session ID (uniqueIdentifier): must be 1 to 32 ASCII characters")]
    InvalidSessionId,
    #[error("certificate profile violated: {0}")]
    Profile(String),
    #[error("certificate is not valid at {at}: valid from {not_before} to {not_after}")]
    OutsideValidity {
        at: u64,
        not_before: u64,
        not_after: u64,
    },
}

impl From<der::Error> for CertError {
    fn from(e: der::Error) -> Self {
        CertError::Malformed(e.to_string())
    }
}

/// Any signed X.509 structure (certificate or CSR) with its to-be-signed part kept as the
/// original bytes, so signatures are checked over exactly what was signed.
#[derive(der::Sequence)]
pub(crate) struct RawSigned<'a> {
    pub tbs: AnyRef<'a>,
    pub algorithm: AlgorithmIdentifierRef<'a>,
    pub signature: BitStringRef<'a>,
}

/// Accepts PEM (any label) or DER; returns DER.
pub(crate) fn pem_or_der(input: &[u8], label: &str) -> Result<Vec<u8>, CertError> {
    let trimmed = input.trim_ascii_start();
    if trimmed.starts_with(b"-----BEGIN") {
        let (found, der) = der::pem::decode_vec(trimmed).map_err(der::Error::from)?;
        if found != label {
            return Err(CertError::Malformed(format!(
                "expected PEM label {label}, found {found}"
            )));
        }
        Ok(der)
    } else {
        Ok(input.to_vec())
    }
}

/// Checks that an algorithm identifier is Ed25519 with absent parameters (RFC 8410 §3).
pub(crate) fn require_ed25519(alg: &AlgorithmIdentifierRef<'_>) -> Result<(), CertError> {
    if alg.oid != ED25519 || alg.parameters.is_some() {
        return Err(CertError::UnsupportedAlgorithm);
    }
    Ok(())
}

/// Decodes an Ed25519 SubjectPublicKeyInfo and rejects small-order ("weak") keys.
pub(crate) fn ed25519_key(
    spki: &spki::SubjectPublicKeyInfoRef<'_>,
) -> Result<VerifyingKey, CertError> {
    require_ed25519(&spki.algorithm)?;
    let raw: [u8; 32] = spki
        .subject_public_key
        .as_bytes()
        .and_then(|b| b.try_into().ok())
        .ok_or(CertError::WeakKey)?;
    let key = VerifyingKey::from_bytes(&raw).map_err(|_| CertError::WeakKey)?;
    if key.is_weak() {
        return Err(CertError::WeakKey);
    }
    Ok(key)
}

/// Strict Ed25519 verification of `sig` over `msg`.
pub fn verify_strict(key: &VerifyingKey, msg: &[u8], sig: &[u8]) -> Result<(), CertError> {
    let sig: [u8; 64] = sig.try_into().map_err(|_| CertError::SignatureInvalid)?;
    key.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(&sig))
        .map_err(|_| CertError::SignatureInvalid)
}

/// Verifies the signature of a [`RawSigned`] structure with `key`.
pub(crate) fn verify_raw(raw: &RawSigned<'_>, key: &VerifyingKey) -> Result<(), CertError> {
    use der::Encode;
    require_ed25519(&raw.algorithm)?;
    let tbs = raw.tbs.to_der()?;
    let sig = raw
        .signature
        .as_bytes()
        .ok_or(CertError::SignatureInvalid)?;
    verify_strict(key, &tbs, sig)
}
