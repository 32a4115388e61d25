//! Cacheable ID-Certs: a certificate plus the cache window its home server signed
//! (core §6.4, DIGEST §5.6, OP-11 to OP-14).
//!
//! We sign `"<serial> <notBefore> <notAfter>[ <invalidatedAt>]"` (decimal, single spaces: the
//! form the reference SDK verifies) and, when verifying, also accept the spec's plain
//! concatenation.

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::certs::{CertError, IdCert, verify_strict};
use crate::wire::u64_string;
use crate::{DomainName, FederationId, Serial};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheableIdCert {
    #[serde(rename = "idCertPem")]
    pub id_cert_pem: String,
    #[serde(
        rename = "cacheNotValidBefore",
        alias = "cacheValidNotBefore",
        with = "u64_string"
    )]
    pub not_valid_before: u64,
    #[serde(
        rename = "cacheNotValidAfter",
        alias = "cacheValidNotAfter",
        with = "u64_string"
    )]
    pub not_valid_after: u64,
    /// Lowercase hex of the home server's Ed25519 signature.
    #[serde(rename = "cacheSignature")]
    pub signature: String,
    #[serde(
        rename = "invalidatedAt",
        with = "u64_string::option",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub invalidated_at: Option<u64>,
}

/// The string the home server signs (space-separated form, OP-12).
pub fn signing_input(
    serial: Serial,
    not_before: u64,
    not_after: u64,
    invalidated_at: Option<u64>,
) -> String {
    match invalidated_at {
        Some(at) => format!("{serial} {not_before} {not_after} {at}"),
        None => format!("{serial} {not_before} {not_after}"),
    }
}

fn concatenated_input(
    serial: Serial,
    not_before: u64,
    not_after: u64,
    invalidated_at: Option<u64>,
) -> String {
    let inv = invalidated_at.map(|v| v.to_string()).unwrap_or_default();
    format!("{serial}{not_before}{not_after}{inv}")
}

/// Longest cache window we accept from anyone: 12 h (OP-13) plus a minute of step slack.
pub const MAX_WINDOW_S: u64 = 12 * 3600 + 60;

impl CacheableIdCert {
    /// Checks the cache signature for the certificate with `serial` against the home server's
    /// key, accepting both input forms of OP-12. Does not check the certificate itself.
    pub fn verify_signature(
        &self,
        serial: Serial,
        server_key: &VerifyingKey,
    ) -> Result<(), CertError> {
        let sig = hex::decode(&self.signature).map_err(|_| CertError::SignatureInvalid)?;
        let (nb, na, inv) = (
            self.not_valid_before,
            self.not_valid_after,
            self.invalidated_at,
        );
        // A bounded window also keeps the concatenated form unambiguous: moving the digits of
        // `invalidatedAt` into `notAfter` would make the window absurdly long.
        if na < nb || na - nb > MAX_WINDOW_S {
            return Err(CertError::SignatureInvalid);
        }
        verify_strict(
            server_key,
            signing_input(serial, nb, na, inv).as_bytes(),
            &sig,
        )
        .or_else(|_| {
            verify_strict(
                server_key,
                concatenated_input(serial, nb, na, inv).as_bytes(),
                &sig,
            )
        })
    }

    /// True when `at` lies inside the signed cache window.
    pub fn window_contains(&self, at: u64) -> bool {
        self.not_valid_before <= at && at <= self.not_valid_after
    }
}

/// Parses and checks a home server's root for `domain`: self-signed root profile, DCs naming
/// `domain`, cache window signed by the root itself or by `current_key` (a server re-signs the
/// windows of historical roots with the key it holds now). Window and time are the caller's.
pub fn check_root(
    cacheable: &CacheableIdCert,
    domain: &DomainName,
    current_key: Option<&VerifyingKey>,
) -> Result<IdCert, String> {
    let root = IdCert::parse(cacheable.id_cert_pem.as_bytes())
        .map_err(|e| format!("does not parse: {e}"))?;
    root.verify_server_root()
        .map_err(|e| format!("is not a valid self-signed root: {e}"))?;
    if !root.subject.dcs_match(domain) {
        return Err(format!("names {}, not {domain}", root.subject.domain()));
    }
    let signed_by = |key: &VerifyingKey| cacheable.verify_signature(root.serial, key).is_ok();
    if !signed_by(&root.key) && !current_key.is_some_and(signed_by) {
        return Err(format!(
            "cache signature for serial {} does not verify",
            root.serial
        ));
    }
    Ok(root)
}

/// Checks an actor's cache entry against its home server: the certificate chains to `root`
/// (checked at issuance, so an expired cert still proves its chain), names `fid`, and the
/// cache signature verifies with `current_key`. Window, expiry and revocation are the
/// caller's to judge.
pub fn check_actor_entry(
    cacheable: &CacheableIdCert,
    fid: &FederationId,
    root: &IdCert,
    current_key: &VerifyingKey,
) -> Result<IdCert, String> {
    let cert = IdCert::parse(cacheable.id_cert_pem.as_bytes())
        .map_err(|e| format!("an actor certificate of {fid} does not parse: {e}"))?;
    let serial = cert.serial;
    cert.verify_actor(root, cert.not_before)
        .map_err(|e| format!("certificate {serial}: chain check failed: {e}"))?;
    if cert.fid().as_ref() != Some(fid) {
        let named = cert.subject.uid.as_deref().unwrap_or("no UID");
        return Err(format!("certificate {serial} names {named}, not {fid}"));
    }
    cacheable
        .verify_signature(serial, current_key)
        .map_err(|_| {
            format!(
                "certificate {serial}: cache signature does not verify with the current server key"
            )
        })?;
    Ok(cert)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn signed(key: &SigningKey, input: &str) -> CacheableIdCert {
        CacheableIdCert {
            id_cert_pem: String::new(),
            not_valid_before: 100,
            not_valid_after: 200,
            signature: hex::encode(key.sign(input.as_bytes()).to_bytes()),
            invalidated_at: None,
        }
    }

    #[test]
    fn both_signature_input_forms_verify_and_tampering_is_caught() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let vk = key.verifying_key();
        let spaced = signed(&key, "66051 100 200");
        spaced.verify_signature(Serial(66051), &vk).unwrap();
        signed(&key, "66051100200")
            .verify_signature(Serial(66051), &vk)
            .unwrap();
        assert!(spaced.verify_signature(Serial(66052), &vk).is_err());
        let mut widened = spaced.clone();
        widened.not_valid_after = 300;
        assert!(widened.verify_signature(Serial(66051), &vk).is_err());
        let mut revoked_hidden = signed(&key, "66051 100 200 150");
        revoked_hidden.invalidated_at = None;
        assert!(revoked_hidden.verify_signature(Serial(66051), &vk).is_err());
        // Concatenated form: "1 100 200" + "150" re-read as notAfter 200150 with no revocation.
        let concat = signed(&key, "1100200150");
        let shifted = CacheableIdCert {
            not_valid_after: 200_150,
            invalidated_at: None,
            ..concat.clone()
        };
        assert!(
            shifted.verify_signature(Serial(1), &vk).is_err(),
            "digits moved between fields"
        );
        let honest = CacheableIdCert {
            invalidated_at: Some(150),
            ..concat
        };
        honest.verify_signature(Serial(1), &vk).unwrap();
    }

    #[test]
    fn wire_form_uses_strings_and_accepts_both_names() {
        let c = CacheableIdCert {
            id_cert_pem: "x".into(),
            not_valid_before: 1,
            not_valid_after: 2,
            signature: "ab".into(),
            invalidated_at: Some(3),
        };
        let json = String::from_utf8(crate::wire::to_canonical_vec(&c).unwrap()).unwrap();
        assert_eq!(
            json,
            r#"{"cacheNotValidAfter":"2","cacheNotValidBefore":"1","cacheSignature":"ab","idCertPem":"x","invalidatedAt":"3"}"#
        );
        let prose: CacheableIdCert = serde_json::from_str(
            r#"{"cacheValidNotAfter":2,"cacheValidNotBefore":"1","cacheSignature":"ab","idCertPem":"x"}"#,
        )
        .unwrap();
        assert_eq!(prose.invalidated_at, None);
        assert_eq!(prose.not_valid_after, 2);
    }
}
