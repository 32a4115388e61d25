//! Parsing and checking ID-Certs (core §6.1, §6.4; DIGEST §4.2–§4.4, §4.6).
//!
//! [`IdCert::parse`] only decodes. Nothing about a certificate is trusted until
//! [`IdCert::verify_server_root`] or [`IdCert::verify_actor`] returned `Ok`.

use der::{Decode, Encode};
use ed25519_dalek::VerifyingKey;
use x509_cert::certificate::{Certificate, Version};
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages};

use super::pdn::{self, Pdn};
use super::{CertError, OID_BASIC_CONSTRAINTS, OID_KEY_USAGE, RawSigned, pem_or_der};
use crate::{FederationId, Serial, SessionId};

/// Largest certificate we parse; real ID-Certs are ~400 bytes.
pub const MAX_CERT_BYTES: usize = 16 * 1024;

/// A decoded ID-Cert. Decoding checks structure only; see the `verify_*` methods.
#[derive(Debug, Clone)]
pub struct IdCert {
    pub der: Vec<u8>,
    pub serial: Serial,
    pub issuer: Pdn,
    pub subject: Pdn,
    pub not_before: u64,
    pub not_after: u64,
    pub key: VerifyingKey,
    basic_constraints: Option<(bool, BasicConstraints)>,
    key_usage: Option<(bool, KeyUsage)>,
    unknown_critical: bool,
    tbs_der: Vec<u8>,
    signature: Vec<u8>,
}

impl IdCert {
    /// Decodes a PEM or DER certificate.
    pub fn parse(input: &[u8]) -> Result<Self, CertError> {
        if input.len() > MAX_CERT_BYTES {
            return Err(CertError::Malformed("certificate too large".into()));
        }
        let der = pem_or_der(input, "CERTIFICATE")?;
        let raw = RawSigned::from_der(&der)?;
        super::require_ed25519(&raw.algorithm)?;
        let tbs_der = raw.tbs.to_der()?;
        let signature = raw
            .signature
            .as_bytes()
            .ok_or(CertError::SignatureInvalid)?
            .to_vec();
        let cert = Certificate::from_der(&der)?;
        let tbs = &cert.tbs_certificate;
        if tbs.version != Version::V3 {
            return Err(CertError::Profile(
                "only X.509 v3 certificates are ID-Certs".into(),
            ));
        }
        if tbs.signature.oid != super::ED25519 || tbs.signature.parameters.is_some() {
            return Err(CertError::UnsupportedAlgorithm);
        }
        let serial_bytes = tbs.serial_number.as_bytes();
        let serial_bytes = match serial_bytes {
            [0, rest @ ..] => rest,
            other => other,
        };
        if serial_bytes.is_empty() || serial_bytes.len() > 8 {
            return Err(CertError::Profile(
                "serial number must fit in 64 bits".into(),
            ));
        }
        let serial = serial_bytes
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        let spki_der = tbs.subject_public_key_info.to_der()?;
        let key = super::ed25519_key(&spki::SubjectPublicKeyInfoRef::from_der(&spki_der)?)?;

        let mut basic_constraints = None;
        let mut key_usage = None;
        let mut unknown_critical = false;
        for ext in tbs.extensions.iter().flatten() {
            if ext.extn_id == OID_BASIC_CONSTRAINTS {
                basic_constraints = Some((
                    ext.critical,
                    BasicConstraints::from_der(ext.extn_value.as_bytes())?,
                ));
            } else if ext.extn_id == OID_KEY_USAGE {
                key_usage = Some((ext.critical, KeyUsage::from_der(ext.extn_value.as_bytes())?));
            } else if ext.critical {
                unknown_critical = true;
            }
        }
        Ok(Self {
            serial: Serial(serial),
            issuer: pdn::parse(&tbs.issuer)?,
            subject: pdn::parse(&tbs.subject)?,
            not_before: tbs.validity.not_before.to_unix_duration().as_secs(),
            not_after: tbs.validity.not_after.to_unix_duration().as_secs(),
            key,
            basic_constraints,
            key_usage,
            unknown_critical,
            tbs_der,
            signature,
            der,
        })
    }

    /// PEM text of this certificate.
    pub fn to_pem(&self) -> Result<String, CertError> {
        super::issue::cert_pem(&self.der)
    }

    /// The actor's federation ID (UID), if the subject carries a valid one.
    pub fn fid(&self) -> Option<FederationId> {
        self.subject.uid.as_deref()?.parse().ok()
    }

    pub fn session_id(&self) -> Option<SessionId> {
        self.subject.session_id.as_deref()?.parse().ok()
    }

    /// Strict Ed25519 check of the certificate signature with `issuer_key`.
    pub fn verify_signature(&self, issuer_key: &VerifyingKey) -> Result<(), CertError> {
        super::verify_strict(issuer_key, &self.tbs_der, &self.signature)
    }

    /// Checks that `at` lies inside the validity window.
    pub fn valid_at(&self, at: u64) -> Result<(), CertError> {
        if at < self.not_before || at > self.not_after {
            return Err(CertError::OutsideValidity {
                at,
                not_before: self.not_before,
                not_after: self.not_after,
            });
        }
        Ok(())
    }

    fn common_profile(&self) -> Result<(), CertError> {
        if self.unknown_critical {
            return Err(CertError::Profile("unknown critical extension".into()));
        }
        if matches!(self.basic_constraints, Some((false, _)))
            || matches!(self.key_usage, Some((false, _)))
        {
            return Err(CertError::Profile(
                "basicConstraints and keyUsage must be critical".into(),
            ));
        }
        if self.issuer.dcs.is_empty()
            || self.issuer.dcs.len() != self.subject.dcs.len()
            || !self
                .issuer
                .dcs
                .iter()
                .zip(&self.subject.dcs)
                .all(|(a, b)| a.eq_ignore_ascii_case(b))
        {
            return Err(CertError::Profile(
                "issuer and subject domain components differ".into(),
            ));
        }
        if self.not_before > self.not_after {
            return Err(CertError::Profile("validity ends before it starts".into()));
        }
        Ok(())
    }

    /// A home server's self-signed root: DCs only, CA=true with pathLen 0, keyCertSign,
    /// signed by its own key.
    pub fn verify_server_root(&self) -> Result<(), CertError> {
        self.common_profile()?;
        let s = &self.subject;
        if s.cn.is_some() || s.uid.is_some() || s.session_id.is_some() || self.issuer.cn.is_some() {
            return Err(CertError::Profile(
                "a home-server name has domain components only".into(),
            ));
        }
        match self.basic_constraints {
            Some((
                true,
                BasicConstraints {
                    ca: true,
                    path_len_constraint: Some(0),
                },
            )) => {}
            _ => return Err(CertError::Profile("root needs CA=true, pathLen=0".into())),
        }
        match self.key_usage {
            Some((true, ku)) if ku.0.contains(KeyUsages::KeyCertSign) => {}
            _ => return Err(CertError::Profile("root needs keyCertSign".into())),
        }
        self.verify_signature(&self.key)
    }

    /// An actor cert: issued by `server` (whose root must already be verified), pDN rules,
    /// no CA capabilities, inside the server cert's validity and valid at `at`.
    pub fn verify_actor(&self, server: &IdCert, at: u64) -> Result<(), CertError> {
        self.common_profile()?;
        let s = &self.subject;
        let fid = self
            .fid()
            .ok_or_else(|| CertError::Profile("UID is not a federation ID".into()))?;
        if s.cn.as_deref().map(str::to_ascii_lowercase).as_deref()
            != Some(fid.local_name().as_str())
        {
            return Err(CertError::Profile(
                "CN must be the local name of the UID".into(),
            ));
        }
        if !s.dcs_match(fid.domain()) {
            return Err(CertError::Profile(
                "UID domain differs from the domain components".into(),
            ));
        }
        self.session_id().ok_or(CertError::InvalidSessionId)?;
        if matches!(
            self.basic_constraints,
            Some((_, BasicConstraints { ca: true, .. }))
        ) {
            return Err(CertError::Profile(
                "an actor certificate must not be a CA".into(),
            ));
        }
        match self.key_usage {
            Some((_, ku)) if ku.0.contains(KeyUsages::KeyCertSign) => {
                return Err(CertError::Profile(
                    "an actor certificate must not sign certificates".into(),
                ));
            }
            Some((_, ku)) if !(ku.digital_signature() || ku.non_repudiation()) => {
                return Err(CertError::Profile(
                    "actor keyUsage lacks digitalSignature".into(),
                ));
            }
            None => return Err(CertError::Profile("actor keyUsage missing".into())),
            Some(_) => {}
        }
        if self.issuer.domain() != server.subject.domain() {
            return Err(CertError::Profile("issuer is not this home server".into()));
        }
        if self.not_before < server.not_before || self.not_after > server.not_after {
            return Err(CertError::Profile(
                "validity exceeds the home server's".into(),
            ));
        }
        self.verify_signature(&server.key)?;
        self.valid_at(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::ActorCsr;
    use crate::certs::issue::{self, Window};
    use ed25519_dalek::{Signer, SigningKey};

    fn root(key: &SigningKey, window: Window) -> IdCert {
        let tbs = issue::server_tbs(
            Serial(1),
            &"example.com".parse().unwrap(),
            &key.verifying_key(),
            window,
        )
        .unwrap();
        IdCert::parse(&issue::finish_cert(tbs, |m| key.sign(m).to_bytes()).unwrap()).unwrap()
    }

    fn actor(ca: &SigningKey, subject: &SigningKey, window: Window) -> IdCert {
        let fid: FederationId = "alice@example.com".parse().unwrap();
        let sid: SessionId = "s1".parse().unwrap();
        let tbs =
            issue::actor_tbs(Serial(42), &fid, &sid, &subject.verifying_key(), window).unwrap();
        IdCert::parse(&issue::finish_cert(tbs, |m| ca.sign(m).to_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn issued_certificates_verify_against_their_root_only() {
        let ca = SigningKey::from_bytes(&[1; 32]);
        let other = SigningKey::from_bytes(&[2; 32]);
        let user = SigningKey::from_bytes(&[3; 32]);
        let server = root(
            &ca,
            Window {
                not_before: 100,
                not_after: 10_000,
            },
        );
        server.verify_server_root().unwrap();
        let cert = actor(
            &ca,
            &user,
            Window {
                not_before: 200,
                not_after: 300,
            },
        );
        cert.verify_actor(&server, 250).unwrap();
        assert_eq!(cert.fid().unwrap().to_string(), "alice@example.com");
        assert_eq!(cert.serial, Serial(42));
        assert!(matches!(
            cert.verify_actor(&server, 301),
            Err(CertError::OutsideValidity { .. })
        ));
        let forged = actor(
            &other,
            &user,
            Window {
                not_before: 200,
                not_after: 300,
            },
        );
        assert_eq!(
            forged.verify_actor(&server, 250),
            Err(CertError::SignatureInvalid)
        );
        // An actor certificate is no root, and a root is no actor certificate.
        assert!(cert.verify_server_root().is_err());
        assert!(server.verify_actor(&server, 250).is_err());
        // Validity beyond the root's is refused.
        let long = actor(
            &ca,
            &user,
            Window {
                not_before: 200,
                not_after: 20_000,
            },
        );
        assert!(matches!(
            long.verify_actor(&server, 250),
            Err(CertError::Profile(_))
        ));
    }

    #[test]
    fn a_flipped_bit_anywhere_in_the_signed_part_breaks_verification() {
        let ca = SigningKey::from_bytes(&[1; 32]);
        let server = root(
            &ca,
            Window {
                not_before: 100,
                not_after: 10_000,
            },
        );
        let cert = actor(
            &ca,
            &SigningKey::from_bytes(&[3; 32]),
            Window {
                not_before: 200,
                not_after: 300,
            },
        );
        for i in (4..cert.der.len() - 70).step_by(7) {
            let mut der = cert.der.clone();
            der[i] ^= 0x01;
            if let Ok(bad) = IdCert::parse(&der) {
                assert!(
                    bad.verify_actor(&server, 250).is_err(),
                    "byte {i} flipped still verifies"
                );
            }
        }
    }

    #[test]
    fn our_csrs_round_trip_through_the_parser() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let fid: FederationId = "bob@example.com".parse().unwrap();
        let sid: SessionId = "phone".parse().unwrap();
        let info = issue::csr_info(&fid, &sid, &key.verifying_key()).unwrap();
        let der = issue::finish_csr(info, |m| key.sign(m).to_bytes()).unwrap();
        let pem = issue::to_pem("CERTIFICATE REQUEST", &der).unwrap();
        let csr = ActorCsr::parse(pem.as_bytes()).unwrap();
        assert_eq!(csr.key, key.verifying_key());
        assert_eq!(csr.check_claims(&fid).unwrap(), sid);
        let mallory: FederationId = "mallory@example.com".parse().unwrap();
        assert!(matches!(
            csr.check_claims(&mallory),
            Err(CertError::SubjectMismatch(_))
        ));
        let mut tampered = der.clone();
        let at = tampered.len() - 10;
        tampered[at] ^= 1;
        assert_eq!(
            ActorCsr::parse(&tampered).unwrap_err(),
            CertError::SignatureInvalid
        );
    }
}
