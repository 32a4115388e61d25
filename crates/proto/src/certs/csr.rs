//! ID-CSR parsing and claim checks (core §6.1, DIGEST §4.1, OP-17, OP-18).
//!
//! The signature is verified over the original `CertificationRequestInfo` bytes, never over a
//! re-encoding (which fails for CSRs made by other tools). Capabilities are accepted both in a
//! standard PKCS#9 `extensionRequest` and as the reference SDK's bare attributes; they are only
//! *checked* here — the issuer always decides the final extensions itself.

use der::asn1::OctetStringRef;
use der::{Decode, Encode, Tag, Tagged};
use ed25519_dalek::VerifyingKey;
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages};
use x509_cert::request::CertReqInfo;

use super::pdn::{self, Pdn};
use super::{
    CertError, OID_BASIC_CONSTRAINTS, OID_EXTENSION_REQUEST, OID_KEY_USAGE, RawSigned, pem_or_der,
};
use crate::{FederationId, SessionId};

/// Largest CSR we parse at all; real ID-CSRs are ~300 bytes.
pub const MAX_CSR_BYTES: usize = 16 * 1024;

/// A CSR whose signature has been verified; its claims are not checked yet.
#[derive(Debug, Clone)]
pub struct ActorCsr {
    pub key: VerifyingKey,
    pub subject: Pdn,
    /// `CA` flag asked for, if any.
    pub requested_ca: Option<bool>,
    /// keyUsage asked for, if any.
    pub requested_key_usage: Option<KeyUsage>,
}

impl ActorCsr {
    /// Parses a PEM or DER ID-CSR and verifies its self-signature strictly.
    pub fn parse(input: &[u8]) -> Result<Self, CertError> {
        if input.len() > MAX_CSR_BYTES {
            return Err(CertError::Malformed("CSR too large".into()));
        }
        let der = pem_or_der(input, "CERTIFICATE REQUEST")?;
        let raw = RawSigned::from_der(&der)?;
        let info_der = raw.tbs.to_der()?;
        let info = CertReqInfo::from_der(&info_der)?;
        if info.version != x509_cert::request::Version::V1 {
            return Err(CertError::Malformed("unsupported CSR version".into()));
        }
        let spki_der = info.public_key.to_der()?;
        let spki = spki::SubjectPublicKeyInfoRef::from_der(&spki_der)?;
        let key = super::ed25519_key(&spki)?;
        super::verify_raw(&raw, &key)?;

        let mut csr = ActorCsr {
            key,
            subject: pdn::parse(&info.subject)?,
            requested_ca: None,
            requested_key_usage: None,
        };
        for attr in info.attributes.iter() {
            for value in attr.values.iter() {
                if attr.oid == OID_EXTENSION_REQUEST {
                    let exts: Vec<Extension> = value.decode_as()?;
                    for ext in exts {
                        csr.note_capability(&ext.extn_id, ext.extn_value.as_bytes())?;
                    }
                } else if attr.oid == OID_KEY_USAGE || attr.oid == OID_BASIC_CONSTRAINTS {
                    // SDK form: the extension value as a bare attribute, possibly still
                    // wrapped in the extension's OCTET STRING.
                    let bytes = value.to_der()?;
                    let inner = if value.tag() == Tag::OctetString {
                        OctetStringRef::from_der(&bytes)?.as_bytes().to_vec()
                    } else {
                        bytes
                    };
                    csr.note_capability(&attr.oid, &inner)?;
                }
            }
        }
        Ok(csr)
    }

    /// Records a capability request. Requests accumulate: a CSR that asks for CA or
    /// keyCertSign anywhere is refused, whatever else it asks for later.
    fn note_capability(
        &mut self,
        oid: &der::asn1::ObjectIdentifier,
        der: &[u8],
    ) -> Result<(), CertError> {
        if *oid == OID_BASIC_CONSTRAINTS {
            let ca = BasicConstraints::from_der(der)?.ca;
            self.requested_ca = Some(self.requested_ca == Some(true) || ca);
        } else if *oid == OID_KEY_USAGE {
            let ku = KeyUsage::from_der(der)?;
            self.requested_key_usage = Some(match self.requested_key_usage {
                Some(old) => KeyUsage(old.0 | ku.0),
                None => ku,
            });
        }
        Ok(())
    }

    /// Checks every claim against the authenticated actor `fid` (DIGEST §4.1) and returns
    /// the requested session ID.
    pub fn check_claims(&self, fid: &FederationId) -> Result<SessionId, CertError> {
        if self.requested_ca == Some(true) {
            return Err(CertError::CapabilitiesForbidden("CA=true".into()));
        }
        if let Some(ku) = self.requested_key_usage {
            if ku.0.contains(KeyUsages::KeyCertSign) || ku.0.contains(KeyUsages::CRLSign) {
                return Err(CertError::CapabilitiesForbidden(
                    "keyCertSign/cRLSign".into(),
                ));
            }
            if !(ku.digital_signature() || ku.non_repudiation()) {
                return Err(CertError::CapabilitiesForbidden(
                    "an actor certificate needs digitalSignature or contentCommitment".into(),
                ));
            }
        }
        let s = &self.subject;
        let cn = s.cn.as_deref().ok_or_else(|| mismatch("CN is missing"))?;
        if !cn.eq_ignore_ascii_case(fid.local_name().as_str()) {
            return Err(mismatch(&format!("CN {cn:?} is not your local name")));
        }
        let uid = s.uid.as_deref().ok_or_else(|| mismatch("UID is missing"))?;
        if !uid.eq_ignore_ascii_case(&fid.to_string()) {
            return Err(mismatch(&format!("UID {uid:?} is not your federation ID")));
        }
        if !s.dcs_match(fid.domain()) {
            return Err(mismatch(&format!(
                "domain components {:?} do not name {}",
                s.domain(),
                fid.domain()
            )));
        }
        s.session_id
            .as_deref()
            .ok_or(CertError::InvalidSessionId)?
            .parse()
            .map_err(|_| CertError::InvalidSessionId)
    }
}

fn mismatch(what: &str) -> CertError {
    CertError::SubjectMismatch(what.to_owned())
}
