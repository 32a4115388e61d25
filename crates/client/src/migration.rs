//! Migrations (core §7): proving keys with key trials, and redirects from an old identity to
//! a new one.
//!
//! A redirect takes both sides: the old actor asks its home server for it and proves every
//! key it signed messages there with ([`Session::set_up_redirect`]); the new actor, signed in
//! on that server (by key trial when it lives elsewhere), confirms ([`confirm_redirect`]).

use fugue_proto::api::{
    self, TrialCompletion, key_trial, remove_redirect, remove_redirect_extern, set_up_redirect,
    set_up_redirect_extern,
};
use fugue_proto::{FederationId, Serial};
use reqwest::StatusCode;

use crate::error::Result;
use crate::http::{Client, send};
use crate::keys::IdentityKey;
use crate::session::Session;

/// The `X-P2-core-keytrial` value proving `keys` (each with its certificate's serial): the
/// trial text signed with each key.
pub fn prove_keys(trial: &key_trial::KeyTrial, keys: &[(&IdentityKey, Serial)]) -> String {
    let completions: Vec<TrialCompletion> = keys
        .iter()
        .map(|(key, serial)| TrialCompletion {
            signature: crate::chat::hex(&key.sign(trial.trial.as_bytes())),
            serial_number: serial.0,
            id: trial.id.clone(),
        })
        .collect();
    serde_json::to_string(&completions).unwrap_or_default()
}

/// 200: both sides confirmed; 202: the other side has not yet.
fn both_confirmed(status: StatusCode) -> bool {
    status == StatusCode::OK
}

impl Session {
    /// `GET /session/auth?fid=` with this session: a trial for this actor to prove its keys.
    pub async fn proof_trial(&self) -> Result<key_trial::KeyTrial> {
        let query = key_trial::Query {
            fid: self.fid().to_string(),
        };
        // The route needs no session; this one's token makes the trial this actor's.
        let request = self
            .client()
            .request_with_query(key_trial::target(), &query)?
            .bearer_auth(self.token());
        self.client().send_json(request).await
    }

    /// A fresh proof of `keys` for this actor (a trial, signed with each).
    pub async fn prove(&self, keys: &[(&IdentityKey, Serial)]) -> Result<String> {
        Ok(prove_keys(&self.proof_trial().await?, keys))
    }

    /// `POST /migration/redirect`: asks for a redirect to `target`, with `proof` of every key
    /// this actor signed messages here with. Whether both sides have confirmed it now.
    pub async fn set_up_redirect(&self, target: &FederationId, proof: &str) -> Result<bool> {
        let request = self
            .authed(set_up_redirect::target())?
            .header(api::KEYTRIAL_HEADER, proof)
            .header(reqwest::header::CONTENT_TYPE, "text/plain")
            .body(target.to_string());
        Ok(both_confirmed(send(request).await?.status()))
    }

    /// `DELETE /migration/redirect?removeActorFid=`.
    pub async fn remove_redirect(&self, target: &FederationId) -> Result<()> {
        let query = remove_redirect::Query {
            remove_actor_fid: target.to_string(),
        };
        send(self.authed_query(remove_redirect::target(), &query)?).await?;
        Ok(())
    }
}

/// `POST /redirect/extern?redirectSourceFid=` on `server` (the old actor's home server), as
/// the holder of `token` there: confirms being the target of `source`'s redirect. Whether
/// both sides have confirmed it now.
pub async fn confirm_redirect(server: &Client, token: &str, source: &FederationId) -> Result<bool> {
    let query = set_up_redirect_extern::Query {
        redirect_source_fid: source.to_string(),
    };
    let request = server
        .request_with_query(set_up_redirect_extern::target(), &query)?
        .bearer_auth(token);
    Ok(both_confirmed(send(request).await?.status()))
}

/// `DELETE /redirect/extern?redirectSourceFid=`: withdraws the confirmation.
pub async fn withdraw_redirect(server: &Client, token: &str, source: &FederationId) -> Result<()> {
    let query = set_up_redirect_extern::Query {
        redirect_source_fid: source.to_string(),
    };
    let request = server
        .request_with_query(remove_redirect_extern::target(), &query)?
        .bearer_auth(token);
    send(request).await?;
    Ok(())
}
