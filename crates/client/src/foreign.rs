//! Signing in on other home servers with a key trial (core §4.1.1, DIGEST §5.4).
//!
//! Owns the client half of `GET`/`POST /session/auth` and `PUT /session/idcert/extern`, and
//! the rule about what the identity key signs for a foreign server: only a trial that looks
//! like one and names the server we sign in to. Never talks to the actor's home server — the foreign server checks the
//! certificate there itself — and never stores anything: the caller keeps the token.

use std::fmt;

use fugue_proto::api::{idcert_extern, key_trial, sign_in};
use fugue_proto::certs::IdCert;
use fugue_proto::{DomainName, FederationId};
use reqwest::Url;
use reqwest::header::CONTENT_TYPE;

use crate::error::{Error, Result};
use crate::http::{Client, send};
use crate::session::Session;

/// Shortest and longest trial we sign (challenge strings are 32–256 characters, core §4.3).
const TRIAL_LEN: std::ops::RangeInclusive<usize> = 32..=256;
/// Fewest random characters after the server's name in a trial.
const MIN_RANDOM: usize = 32;

/// A session of this actor on another home server, opened with a key trial.
#[derive(Clone)]
pub struct ForeignSession {
    client: Client,
    fid: FederationId,
    token: String,
}

impl Client {
    /// `GET /session/auth?fid=`: a key trial for `fid`, an actor of another home server.
    pub async fn key_trial(&self, fid: &FederationId) -> Result<key_trial::KeyTrial> {
        let query = key_trial::Query {
            fid: fid.to_string(),
        };
        let request = self.request_with_query(key_trial::target(), &query)?;
        self.send_json(request).await
    }

    /// `POST /session/auth`: the completed trial; answers this server's session token.
    pub async fn complete_key_trial(
        &self,
        completed: &sign_in::KeyTrialCompleted,
    ) -> Result<String> {
        let request = self.request(sign_in::target())?.json(completed);
        let text = self.read_text(send(request).await?).await?;
        let token = text.trim();
        // A token goes into an Authorization header: anything else would break every call.
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::UnexpectedResponse(
                "the key trial answer is not a session token".into(),
            ));
        }
        Ok(token.to_owned())
    }
}

/// Refuses trials that are not random-looking strings. The identity key signs whatever the
/// trial says, so a server handing out, say, a chat message or a CSR as its "trial" would
/// otherwise get that signed in the actor's name. We accept the alphabets random tokens use
/// (alphanumerics, base64 and base64url); our server sends 64 alphanumerics.
fn check_trial(trial: &str) -> Result<()> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-_+/=.".contains(&b);
    if !TRIAL_LEN.contains(&trial.len()) || !trial.bytes().all(allowed) {
        return Err(Error::Verification(format!(
            "refusing to sign a key trial that is not 32–256 characters of [A-Za-z0-9-_+/=.] \
             ({} characters)",
            trial.chars().count()
        )));
    }
    Ok(())
}

/// Refuses trials that do not name `server` (the domain we sign in to) as
/// `<server>.<random>`. A server we sign in to could otherwise hand us another server's
/// trial, post our answer there and get a session in our name on that server (a relay).
/// The random part has no dot, so `a.example` never accepts a trial of `a.example.org`.
fn check_names_server(trial: &str, server: &str) -> Result<()> {
    let named = trial
        .rsplit_once('.')
        .filter(|(name, random)| name.eq_ignore_ascii_case(server) && random.len() >= MIN_RANDOM);
    if named.is_none() {
        return Err(Error::Verification(format!(
            "refusing to sign a key trial that does not name {server}, the server we sign in \
             to: another server's trial may be relayed through it"
        )));
    }
    Ok(())
}

impl Session {
    /// Signs in on the home server at `server_url` (not this actor's own) with a key trial
    /// signed by this session's key and certificate. The server fetches that certificate
    /// from our home server and checks it before it answers. Its trials must name the host
    /// of `server_url`; see [`Session::sign_in_on`] when the domain is another.
    pub async fn sign_in_elsewhere(&self, server_url: &str) -> Result<ForeignSession> {
        let host = Url::parse(server_url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .ok_or_else(|| Error::Transport(format!("invalid server URL {server_url:?}")))?;
        self.sign_in_as(Client::new(server_url)?, &host).await
    }

    /// [`Session::sign_in_elsewhere`] through an existing client (and its connections) to
    /// the server of `domain`: the trial it hands out must name `domain`.
    pub async fn sign_in_on(&self, server: Client, domain: &DomainName) -> Result<ForeignSession> {
        self.sign_in_as(server, domain.as_str()).await
    }

    async fn sign_in_as(&self, server: Client, domain: &str) -> Result<ForeignSession> {
        let serial = self.current_serial()?;
        let trial = server.key_trial(self.fid()).await?;
        check_trial(&trial.trial)?;
        check_names_server(&trial.trial, domain)?;
        let completed = sign_in::KeyTrialCompleted {
            signature: crate::chat::hex(&self.key().sign(trial.trial.as_bytes())),
            serial_number: serial.0,
            fid: self.fid().to_string(),
            trial: Some(trial.trial),
            id: trial.id,
        };
        let token = server.complete_key_trial(&completed).await?;
        Ok(ForeignSession {
            client: server,
            fid: self.fid().clone(),
            token,
        })
    }
}

impl ForeignSession {
    /// Rebuilds a foreign session from a stored token; nothing is checked until the first
    /// call.
    pub fn restore(client: Client, fid: FederationId, token: String) -> Self {
        Self { client, fid, token }
    }

    /// The foreign server.
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn fid(&self) -> &FederationId {
        &self.fid
    }

    /// The foreign server's session token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// `PUT /session/idcert/extern`: tells the foreign server that `home`'s certificate
    /// changed (after [`Session::renew_cert`]) or was revoked. The server asks our home server
    /// about it; when the home server says it is revoked, the foreign session ends.
    pub async fn update_cert(&self, home: &Session) -> Result<()> {
        if home.fid() != &self.fid {
            return Err(Error::Verification(format!(
                "this foreign session is {}'s, not {}'s",
                self.fid,
                home.fid()
            )));
        }
        // Catches a broken stored certificate before the server does, with a clearer error.
        IdCert::parse(home.cert_pem().as_bytes())?;
        let request = self
            .client
            .request(idcert_extern::target())?
            .bearer_auth(&self.token)
            .header(CONTENT_TYPE, "text/plain")
            .body(home.cert_pem().to_owned());
        send(request).await?;
        Ok(())
    }
}

/// Leaves out the token: sessions end up in logs through `{:?}`.
impl fmt::Debug for ForeignSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForeignSession")
            .field("server", &self.client.base_url())
            .field("fid", &self.fid)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::{check_names_server, check_trial};

    #[test]
    fn only_trials_naming_the_server_are_signed() {
        let random = "aB3".repeat(22);
        assert!(check_names_server(&format!("beta.example.{random}"), "beta.example").is_ok());
        assert!(check_names_server(&format!("BETA.example.{random}"), "beta.example").is_ok());
        // Another server's trial, relayed.
        assert!(check_names_server(&format!("victim.example.{random}"), "beta.example").is_err());
        // A longer name that starts like ours.
        let longer = format!("beta.example.org.{random}");
        assert!(check_names_server(&longer, "beta.example").is_err());
        // No name, or too little randomness after it.
        assert!(check_names_server(&random, "beta.example").is_err());
        assert!(check_names_server("beta.example.abc", "beta.example").is_err());
    }

    #[test]
    fn only_random_looking_trials_are_signed() {
        assert!(check_trial(&"aB3".repeat(22)).is_ok());
        assert!(check_trial(&"x".repeat(256)).is_ok());
        assert!(check_trial("dGhpcyBpcyBiYXNlNjQgZW5jb2RlZCB0ZXh0Lg==").is_ok());
        assert!(check_trial(&"x".repeat(31)).is_err());
        assert!(check_trial(&"x".repeat(257)).is_err());
        assert!(check_trial(r#"{"content":"I owe Eve 1000 euros","channel":"7"}"#).is_err());
        assert!(check_trial(&format!("{} {}", "a".repeat(20), "b".repeat(20))).is_err());
        assert!(check_trial("-----BEGIN CERTIFICATE REQUEST-----MIIB").is_err());
    }
}
