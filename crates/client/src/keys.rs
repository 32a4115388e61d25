//! The actor's Ed25519 identity key: generation, PKCS#8 (optionally encrypted) and ID-CSRs.
//!
//! The private key leaves this module only as PKCS#8 PEM that the caller asked for; it is never
//! logged (`Debug` shows the public key) and never sent to the server.

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use fugue_proto::certs::issue::{csr_info, finish_csr, to_pem};
use fugue_proto::{FederationId, SessionId};
use pkcs8::der::zeroize::Zeroizing;
use pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rand_core::OsRng;

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct IdentityKey(SigningKey);

impl IdentityKey {
    pub fn generate() -> Self {
        Self(SigningKey::generate(&mut OsRng))
    }

    pub fn from_signing_key(key: SigningKey) -> Self {
        Self(key)
    }

    pub fn from_pkcs8_pem(pem: &str) -> Result<Self> {
        SigningKey::from_pkcs8_pem(pem)
            .map(Self)
            .map_err(|e| Error::KeyStore(format!("not an Ed25519 PKCS#8 private key: {e}")))
    }

    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>> {
        self.0
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| Error::KeyStore(format!("cannot encode the private key: {e}")))
    }

    /// PKCS#8 `EncryptedPrivateKeyInfo` (scrypt + AES-256-CBC) under `passphrase`.
    pub fn to_encrypted_pem(&self, passphrase: &str) -> Result<Zeroizing<String>> {
        self.0
            .to_pkcs8_encrypted_pem(OsRng, passphrase, LineEnding::LF)
            .map_err(|e| Error::KeyStore(format!("cannot encrypt the private key: {e}")))
    }

    pub fn from_encrypted_pem(pem: &str, passphrase: &str) -> Result<Self> {
        SigningKey::from_pkcs8_encrypted_pem(pem, passphrase)
            .map(Self)
            .map_err(|e| {
                Error::KeyStore(format!(
                    "cannot decrypt the private key (wrong passphrase?): {e}"
                ))
            })
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.0.verifying_key()
    }

    /// An ID-CSR (PEM) asking for a certificate for `fid` in session `session_id`.
    pub fn csr_pem(&self, fid: &FederationId, session_id: &SessionId) -> Result<String> {
        let info = csr_info(fid, session_id, &self.verifying_key())?;
        let der = finish_csr(info, |bytes| self.sign(bytes))?;
        Ok(to_pem("CERTIFICATE REQUEST", &der)?)
    }

    pub fn sign(&self, bytes: &[u8]) -> [u8; 64] {
        self.0.sign(bytes).to_bytes()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use fugue_proto::certs::ActorCsr;

    #[test]
    fn encrypted_pem_round_trips_and_rejects_a_wrong_passphrase() {
        let key = IdentityKey::generate();
        let pem = key.to_encrypted_pem("correct horse").unwrap();
        assert!(pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
        let back = IdentityKey::from_encrypted_pem(&pem, "correct horse").unwrap();
        assert_eq!(back.verifying_key(), key.verifying_key());
        let err = IdentityKey::from_encrypted_pem(&pem, "battery staple").unwrap_err();
        assert!(matches!(err, Error::KeyStore(_)), "{err}");

        let plain = key.to_pkcs8_pem().unwrap();
        let back = IdentityKey::from_pkcs8_pem(&plain).unwrap();
        assert_eq!(back.verifying_key(), key.verifying_key());
    }

    #[test]
    fn csr_parses_and_claims_the_session() {
        let key = IdentityKey::generate();
        let fid: FederationId = "alice@example.com".parse().unwrap();
        let session: SessionId = "laptop".parse().unwrap();
        let pem = key.csr_pem(&fid, &session).unwrap();
        let csr = ActorCsr::parse(pem.as_bytes()).unwrap();
        assert_eq!(csr.key, key.verifying_key());
        assert_eq!(csr.check_claims(&fid).unwrap(), session);
        let bob: FederationId = "bob@example.com".parse().unwrap();
        assert!(csr.check_claims(&bob).is_err());
    }
}
