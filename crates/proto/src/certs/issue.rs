//! Building ID-Certs and ID-CSRs (core §6.1, DIGEST §4.2–§4.4).
//!
//! Functions here produce the to-be-signed structure; the holder of the private key signs its
//! DER through a closure and [`finish_cert`] / [`finish_csr`] assemble the result. The issuer
//! never copies extensions or names from a CSR: it writes the ones the profile demands.

use std::time::Duration;

use der::Encode;
use der::asn1::{BitString, GeneralizedTime, OctetString, SetOfVec, UtcTime};
use ed25519_dalek::VerifyingKey;
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::attr::Attribute;
use x509_cert::certificate::{Certificate, TbsCertificate, Version};
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages};
use x509_cert::request::{CertReq, CertReqInfo};
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};

use super::{CertError, ED25519, OID_BASIC_CONSTRAINTS, OID_KEY_USAGE, pdn};
use crate::{DomainName, FederationId, Serial, SessionId};

/// A certificate's validity window in UNIX seconds (inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub not_before: u64,
    pub not_after: u64,
}

/// Most DER/PEM consumers expect UTCTime before 2050 (RFC 5280 §4.1.2.5).
pub fn x509_time(unix: u64) -> Result<Time, CertError> {
    let d = Duration::from_secs(unix);
    const Y2050: u64 = 2_524_608_000;
    Ok(if unix < Y2050 {
        Time::UtcTime(UtcTime::from_unix_duration(d)?)
    } else {
        Time::GeneralTime(GeneralizedTime::from_unix_duration(d)?)
    })
}

fn ed25519_alg() -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid: ED25519,
        parameters: None,
    }
}

fn spki_of(key: &VerifyingKey) -> Result<SubjectPublicKeyInfoOwned, CertError> {
    Ok(SubjectPublicKeyInfoOwned {
        algorithm: ed25519_alg(),
        subject_public_key: BitString::from_bytes(key.as_bytes())?,
    })
}

fn extension(
    oid: der::asn1::ObjectIdentifier,
    value: &impl Encode,
) -> Result<Extension, CertError> {
    Ok(Extension {
        extn_id: oid,
        critical: true,
        extn_value: OctetString::new(value.to_der()?)?,
    })
}

fn tbs(
    serial: Serial,
    issuer: &DomainName,
    subject: x509_cert::name::Name,
    key: &VerifyingKey,
    window: Window,
    ca: bool,
) -> Result<TbsCertificate, CertError> {
    let (constraints, usage) = if ca {
        (
            BasicConstraints {
                ca: true,
                path_len_constraint: Some(0),
            },
            KeyUsages::KeyCertSign,
        )
    } else {
        (
            BasicConstraints {
                ca: false,
                path_len_constraint: None,
            },
            KeyUsages::DigitalSignature,
        )
    };
    Ok(TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::from(serial.0),
        signature: ed25519_alg(),
        issuer: pdn::server_name(issuer)?,
        validity: Validity {
            not_before: x509_time(window.not_before)?,
            not_after: x509_time(window.not_after)?,
        },
        subject,
        subject_public_key_info: spki_of(key)?,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(vec![
            extension(OID_BASIC_CONSTRAINTS, &constraints)?,
            extension(OID_KEY_USAGE, &KeyUsage(usage.into()))?,
        ]),
    })
}

/// The self-signed root ID-Cert of a home server: DCs only, CA=true pathLen=0, keyCertSign.
pub fn server_tbs(
    serial: Serial,
    domain: &DomainName,
    key: &VerifyingKey,
    window: Window,
) -> Result<TbsCertificate, CertError> {
    tbs(serial, domain, pdn::server_name(domain)?, key, window, true)
}

/// An actor ID-Cert issued by the home server of `fid`.
pub fn actor_tbs(
    serial: Serial,
    fid: &FederationId,
    session: &SessionId,
    key: &VerifyingKey,
    window: Window,
) -> Result<TbsCertificate, CertError> {
    tbs(
        serial,
        fid.domain(),
        pdn::actor_name(fid, session)?,
        key,
        window,
        false,
    )
}

/// Signs `tbs` with `sign` (Ed25519 over the TBS DER) and returns the certificate DER.
pub fn finish_cert(
    tbs: TbsCertificate,
    sign: impl FnOnce(&[u8]) -> [u8; 64],
) -> Result<Vec<u8>, CertError> {
    let signature = sign(&tbs.to_der()?);
    let cert = Certificate {
        tbs_certificate: tbs,
        signature_algorithm: ed25519_alg(),
        signature: BitString::from_bytes(&signature)?,
    };
    Ok(cert.to_der()?)
}

/// The request info of an actor ID-CSR asking for a digitalSignature, non-CA certificate.
///
/// Capabilities go in as bare attributes carrying the extension values (keyUsage,
/// basicConstraints), the form the reference SDK writes and re-encodes when it checks a CSR
/// signature: a polyproto home server built on it then accepts our CSRs. Fugue itself reads
/// this form and the standard PKCS#9 extensionRequest (OP-17).
pub fn csr_info(
    fid: &FederationId,
    session: &SessionId,
    key: &VerifyingKey,
) -> Result<CertReqInfo, CertError> {
    let bare = |oid, value: der::Any| -> Result<Attribute, CertError> {
        Ok(Attribute {
            oid,
            values: SetOfVec::try_from(vec![value])?,
        })
    };
    let attributes = vec![
        bare(
            OID_BASIC_CONSTRAINTS,
            der::Any::encode_from(&BasicConstraints {
                ca: false,
                path_len_constraint: None,
            })?,
        )?,
        bare(
            OID_KEY_USAGE,
            der::Any::encode_from(&KeyUsage(KeyUsages::DigitalSignature.into()))?,
        )?,
    ];
    Ok(CertReqInfo {
        version: x509_cert::request::Version::V1,
        subject: pdn::actor_name(fid, session)?,
        public_key: spki_of(key)?,
        attributes: SetOfVec::try_from(attributes)?,
    })
}

/// Signs a CSR info with `sign` and returns the CSR DER.
pub fn finish_csr(
    info: CertReqInfo,
    sign: impl FnOnce(&[u8]) -> [u8; 64],
) -> Result<Vec<u8>, CertError> {
    let signature = sign(&info.to_der()?);
    let req = CertReq {
        info,
        algorithm: ed25519_alg(),
        signature: BitString::from_bytes(&signature)?,
    };
    Ok(req.to_der()?)
}

/// PEM text for DER bytes with the given label (LF line endings).
pub fn to_pem(label: &'static str, der: &[u8]) -> Result<String, CertError> {
    der::pem::encode_string(label, der::pem::LineEnding::LF, der)
        .map_err(|e| CertError::Malformed(e.to_string()))
}

/// PEM of a certificate's DER.
pub fn cert_pem(der: &[u8]) -> Result<String, CertError> {
    to_pem("CERTIFICATE", der)
}
