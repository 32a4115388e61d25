//! A logged-in session: login, and every call that needs its bearer token.
//!
//! Owns the token, the session's ID-Cert and its key. Sensitive calls take the second factor
//! as an argument for that one request; it is never stored. A certificate the server hands
//! back is accepted only if it carries this session's key, actor and session ID.

use std::fmt;

use fugue_proto::api::{
    self, Target, change_password, delete_account, delete_key_material, delete_session,
    get_key_material, keymaterial, list_sessions, login, post_idcert, rotate_server_key,
    totp_confirm, totp_disable, totp_enroll, upload_key_material,
};
use fugue_proto::certs::IdCert;
use fugue_proto::{FederationId, Serial, SessionId};
use keymaterial::EncryptedPkm;
use reqwest::header::CONTENT_TYPE;
use reqwest::{RequestBuilder, StatusCode};

use crate::error::{Error, Result};
use crate::http::{Client, send};
use crate::keys::IdentityKey;

#[derive(Clone)]
pub struct Session {
    client: Client,
    fid: FederationId,
    session_id: SessionId,
    token: String,
    cert_pem: String,
    key: IdentityKey,
}

/// Returns the issued PEM after checking that it certifies `key` for `fid` in `session_id`:
/// a certificate for anything else would leave the session unable to sign.
fn check_issued(
    pem: Option<String>,
    key: &IdentityKey,
    fid: &FederationId,
    session_id: &SessionId,
) -> Result<String> {
    let pem = pem.ok_or_else(|| Error::UnexpectedResponse("no idCert in the response".into()))?;
    let cert = IdCert::parse(pem.as_bytes())?;
    if cert.key != key.verifying_key() {
        return Err(Error::Verification(
            "the issued certificate is for another key".into(),
        ));
    }
    if cert.fid().as_ref() != Some(fid) || cert.session_id().as_ref() != Some(session_id) {
        return Err(Error::Verification(format!(
            "the issued certificate does not name {fid} in session {session_id}"
        )));
    }
    Ok(pem)
}

impl Client {
    /// Logs in with a CSR for `key`; the server issues the session's first certificate.
    pub async fn login(
        &self,
        local_name: &str,
        password: &str,
        totp: Option<&str>,
        key: &IdentityKey,
        fid: &FederationId,
        session_id: &SessionId,
    ) -> Result<Session> {
        let body = login::Request {
            local_name: local_name.to_owned(),
            password: password.to_owned(),
            totp: totp.map(str::to_owned),
            csr: Some(key.csr_pem(fid, session_id)?),
            session_id: Some(session_id.to_string()),
        };
        let request = self.request(login::target())?.json(&body);
        let response: login::Response = self.send_json(request).await?;
        if response.fid != *fid || response.session_id != *session_id {
            return Err(Error::UnexpectedResponse(format!(
                "login answered for {} / {}, not {fid} / {session_id}",
                response.fid, response.session_id
            )));
        }
        let pem = response.id_cert.or(response.id_cert_beta3);
        let cert_pem = check_issued(pem, key, fid, session_id)?;
        let (fid, session_id, key) = (fid.clone(), session_id.clone(), key.clone());
        Ok(Session::restore(
            self.clone(),
            fid,
            session_id,
            response.token,
            cert_pem,
            key,
        ))
    }
}

impl Session {
    /// Rebuilds a session from stored parts; nothing is checked until the first call.
    pub fn restore(
        client: Client,
        fid: FederationId,
        session_id: SessionId,
        token: String,
        cert_pem: String,
        key: IdentityKey,
    ) -> Self {
        Self {
            client,
            fid,
            session_id,
            token,
            cert_pem,
            key,
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn fid(&self) -> &FederationId {
        &self.fid
    }

    pub fn session_id(&self) -> &SessionId {
        &self.session_id
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn key(&self) -> &IdentityKey {
        &self.key
    }

    /// Serial of this session's current certificate.
    pub fn current_serial(&self) -> Result<Serial> {
        Ok(IdCert::parse(self.cert_pem.as_bytes())?.serial)
    }

    /// A request for `target` with this session's token.
    pub(crate) fn authed(&self, target: Target) -> Result<RequestBuilder> {
        self.authed_query(target, &())
    }

    pub(crate) fn authed_query(
        &self,
        target: Target,
        query: &impl serde::Serialize,
    ) -> Result<RequestBuilder> {
        debug_assert_ne!(target.endpoint.auth, api::Auth::None, "{target:?}");
        Ok(self
            .client
            .request_with_query(target, query)?
            .bearer_auth(&self.token))
    }

    pub async fn sessions(&self) -> Result<Vec<list_sessions::Session>> {
        self.client
            .send_json(self.authed(list_sessions::target())?)
            .await
    }

    /// Revokes `session_id` (possibly this one) and its certificate.
    pub async fn revoke_session(&self, session_id: &SessionId, solution: &str) -> Result<()> {
        let query = delete_session::Query {
            session_id: Some(session_id.to_string()),
        };
        let request = self.authed_query(delete_session::target(), &query)?;
        send(request.header(api::SENSITIVE_HEADER, solution)).await?;
        Ok(())
    }

    /// Replaces this session's key and certificate with fresh ones. The server also issues a
    /// new token and drops the old one, so the new token is kept even if the certificate then
    /// fails its checks; key and certificate change only together.
    pub async fn renew_cert(&mut self, solution: &str) -> Result<()> {
        let key = IdentityKey::generate();
        let request = self
            .authed(post_idcert::target())?
            .header(api::SENSITIVE_HEADER, solution)
            .header(CONTENT_TYPE, "text/plain")
            .body(key.csr_pem(&self.fid, &self.session_id)?);
        let response: post_idcert::Response = self.client.send_json(request).await?;
        self.token = response.token;
        self.cert_pem = check_issued(Some(response.id_cert), &key, &self.fid, &self.session_id)?;
        self.key = key;
        Ok(())
    }

    /// Uploads this device's KeyPackages (polyproto-mls), all or none.
    pub async fn upload_key_packages(
        &self,
        packages: &[fugue_proto::mls::KeyPackage],
    ) -> Result<()> {
        send(
            self.authed(api::upload_key_packages::target())?
                .json(packages),
        )
        .await?;
        Ok(())
    }

    pub async fn upload_key_material(&self, material: Vec<EncryptedPkm>) -> Result<()> {
        send(self.authed(upload_key_material::target())?.json(&material)).await?;
        Ok(())
    }

    /// The stored key material for `serials` (all of it when `serials` is empty); empty when
    /// the server holds none.
    pub async fn key_material(&self, serials: &[Serial]) -> Result<Vec<EncryptedPkm>> {
        let query = serials_query(serials);
        let response = send(self.authed_query(get_key_material::target(), &query)?).await?;
        if response.status() == StatusCode::NO_CONTENT {
            return Ok(Vec::new());
        }
        self.client.read_json(response).await
    }

    pub async fn delete_key_material(&self, serials: &[Serial], solution: &str) -> Result<()> {
        let query = serials_query(serials);
        let request = self.authed_query(delete_key_material::target(), &query)?;
        send(request.header(api::SENSITIVE_HEADER, solution)).await?;
        Ok(())
    }

    /// Starts TOTP enrolment; it takes effect after [`Session::totp_confirm`].
    pub async fn totp_enroll(&self, solution: &str) -> Result<totp_enroll::Response> {
        let request = self.authed(totp_enroll::target())?;
        self.client
            .send_json(request.header(api::SENSITIVE_HEADER, solution))
            .await
    }

    pub async fn totp_confirm(&self, code: &str) -> Result<()> {
        let body = totp_confirm::Request {
            code: code.to_owned(),
        };
        send(self.authed(totp_confirm::target())?.json(&body)).await?;
        Ok(())
    }

    /// Turns TOTP off; login then needs the password only. `solution` is a current code.
    pub async fn totp_disable(&self, solution: &str) -> Result<()> {
        let request = self.authed(totp_disable::target())?;
        send(request.header(api::SENSITIVE_HEADER, solution)).await?;
        Ok(())
    }

    /// Sets a new password; the old one stops working at once. With `end_sessions`, every
    /// other session of the account ends (this one stays).
    pub async fn change_password(
        &self,
        new_password: &str,
        end_sessions: bool,
        solution: &str,
    ) -> Result<()> {
        let body = change_password::Request {
            password: new_password.to_owned(),
            end_sessions,
        };
        let request = self
            .authed(change_password::target())?
            .header(api::SENSITIVE_HEADER, solution)
            .json(&body);
        send(request).await?;
        Ok(())
    }

    /// Deletes the account for good: every session ends (this one too), every certificate
    /// is revoked (they stay published) and the name can never be registered again.
    pub async fn delete_account(&self, solution: &str) -> Result<()> {
        let request = self.authed(delete_account::target())?;
        send(request.header(api::SENSITIVE_HEADER, solution)).await?;
        Ok(())
    }

    /// Rotates the home server's key (administrators only); returns the new server cert PEM.
    pub async fn rotate_server_key(&self, solution: &str) -> Result<String> {
        let request = self.authed(rotate_server_key::target())?;
        let response = send(request.header(api::SENSITIVE_HEADER, solution)).await?;
        let pem = self.client.read_text(response).await?;
        IdCert::parse(pem.as_bytes()).map_err(|e| {
            Error::UnexpectedResponse(format!("the new server certificate does not parse: {e}"))
        })?;
        Ok(pem)
    }
}

fn serials_query(serials: &[Serial]) -> keymaterial::Query {
    let list: Vec<String> = serials.iter().map(Serial::to_string).collect();
    keymaterial::Query {
        serials: (!list.is_empty()).then(|| list.join(",")),
    }
}

/// Leaves out the token: sessions end up in logs through `{:?}`.
impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("server", &self.client.base_url())
            .field("fid", &self.fid)
            .field("session_id", &self.session_id)
            .finish_non_exhaustive()
    }
}
