//! Migrations (core §7): proving keys with key trials, redirects from an old identity to a
//! new one, and re-signing the old identity's messages with the new one's keys.
//!
//! A redirect takes both sides: the old actor asks its home server for it and proves every
//! key it signed messages there with ([`Session::set_up_redirect`]); the new actor, signed in
//! on that server (by key trial when it lives elsewhere), confirms ([`confirm_redirect`]).

use fugue_proto::api::{
    self, BatchMessage, MessageBatch, TrialCompletion, abort_resigning, commit_resigned,
    delete_data, export_data, key_trial, messages_to_resign, remove_redirect,
    remove_redirect_extern, request_resigning, set_up_redirect, set_up_redirect_extern,
};
use fugue_proto::certs::{IdCert, verify_strict};
use fugue_proto::{FederationId, Serial};
use reqwest::StatusCode;

use crate::error::{Error, Result};
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
        proof_trial_on(self.client(), self.token(), self.fid()).await
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

/// `GET /session/auth?fid=` on `server` as the holder of `token` there (the actor `fid`): a
/// trial for that actor to prove its keys with on that server (the route needs no session;
/// the token makes the trial the actor's).
pub async fn proof_trial_on(
    server: &Client,
    token: &str,
    fid: &FederationId,
) -> Result<key_trial::KeyTrial> {
    let query = key_trial::Query {
        fid: fid.to_string(),
    };
    let request = server
        .request_with_query(key_trial::target(), &query)?
        .bearer_auth(token);
    server.send_json(request).await
}

/// `POST /messages` on `server` (where the old actor's messages are), as the old actor
/// (`token`): lets `new` re-sign the messages signed with the keys `proof` proves, signing
/// with `allowed` (PEM public keys). Until when.
pub async fn grant_resigning(
    server: &Client,
    token: &str,
    proof: &str,
    new: &FederationId,
    allowed: &[String],
) -> Result<u64> {
    let body = request_resigning::Request {
        new_actor_fid: new.to_string(),
        allowed_resigning_keys: allowed.to_vec(),
    };
    let request = server
        .request(request_resigning::target())?
        .bearer_auth(token)
        .header(api::KEYTRIAL_HEADER, proof)
        .json(&body);
    let answer: request_resigning::Response = server.send_json(request).await?;
    Ok(answer.expires)
}

/// `DELETE /messages?removeActorFid=`: ends the grant to `new`.
pub async fn abort_resigning_on(server: &Client, token: &str, new: &FederationId) -> Result<()> {
    let query = abort_resigning::Query {
        remove_actor_fid: new.to_string(),
    };
    let request = server
        .request_with_query(abort_resigning::target(), &query)?
        .bearer_auth(token);
    send(request).await?;
    Ok(())
}

/// `GET /messages`: the messages the new actor (`token`) may re-sign on `server`.
pub async fn messages_to_resign_on(
    server: &Client,
    token: &str,
    limit: Option<u64>,
    serial: Option<Serial>,
) -> Result<Vec<MessageBatch>> {
    let query = messages_to_resign::Query {
        limit,
        serial_number: serial.map(|s| s.0),
    };
    let request = server
        .request_with_query(messages_to_resign::target(), &query)?
        .bearer_auth(token);
    server.send_json(request).await
}

/// `POST /messages/commit`: sends re-signed batches; answers the next batches to re-sign
/// (none when done) and the seconds to wait before the next commit.
pub async fn commit_resigned_on(
    server: &Client,
    token: &str,
    batches: &[MessageBatch],
) -> Result<(Vec<MessageBatch>, u64)> {
    let request = server
        .request(commit_resigned::target())?
        .bearer_auth(token)
        .json(batches);
    let response = send(request).await?;
    let wait = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let next: serde_json::Value = server.read_json(response).await?;
    let next = match next {
        serde_json::Value::Array(_) => serde_json::from_value(next)
            .map_err(|e| Error::UnexpectedResponse(format!("a message batch: {e}")))?,
        _ => Vec::new(),
    };
    Ok((next, wait))
}

/// What `GET /data` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exported {
    /// The archive, written; its name (core §7.3.2) as the server gave it.
    Written {
        download: crate::media::Downloaded,
        file_name: Option<String>,
    },
    /// Being built: ask again after this many seconds.
    Building { retry_after: u64 },
}

/// `GET /data` on `server` as the holder of `token` there, proving keys with `proof`:
/// writes the archive of the data tied to them to `out` once it is built.
pub async fn export_data_on(
    server: &Client,
    token: &str,
    proof: &str,
    out: &mut (impl tokio::io::AsyncWrite + Unpin),
) -> Result<Exported> {
    let request = server
        .request(export_data::target())?
        .timeout(crate::media::TRANSFER_TIMEOUT)
        .bearer_auth(token)
        .header(api::KEYTRIAL_HEADER, proof);
    let response = send(request).await?;
    if response.status() == StatusCode::NO_CONTENT {
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(1);
        return Ok(Exported::Building { retry_after });
    }
    let file_name = response
        .headers()
        .get(reqwest::header::CONTENT_DISPOSITION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split("filename=\"").nth(1))
        .and_then(|v| v.split('"').next())
        .map(str::to_owned);
    let download = crate::media::write_body(response, "the export", out).await?;
    Ok(Exported::Written {
        download,
        file_name,
    })
}

/// `DELETE /data` on `server` as the holder of `token` there: deletes the data tied to the
/// keys `proof` proves; with `break_redirect`, also the redirect.
pub async fn delete_data_on(
    server: &Client,
    token: &str,
    proof: &str,
    break_redirect: bool,
) -> Result<()> {
    let query = delete_data::Query {
        break_redirect: Some(break_redirect),
    };
    let request = server
        .request_with_query(delete_data::target(), &query)?
        .bearer_auth(token)
        .header(api::KEYTRIAL_HEADER, proof);
    send(request).await?;
    Ok(())
}

/// `batch` re-signed by `new` with `key` and its certificate `cert_pem`: each message's
/// old signature is checked against the batch's certificate first (the server holding them
/// must not have changed them), then its content, with `new` as author, is signed.
pub fn resign_batch(
    batch: &MessageBatch,
    new: &FederationId,
    key: &crate::IdentityKey,
    cert_pem: &str,
) -> Result<MessageBatch> {
    let old = IdCert::parse(batch.id_cert.as_bytes())?;
    let mut messages = Vec::with_capacity(batch.messages.len());
    for m in &batch.messages {
        check_signed(&old, m)?;
        let mut content = m.content.clone();
        match content.get_mut("author") {
            Some(author) => *author = serde_json::Value::String(new.to_string()),
            None => {
                return Err(Error::UnexpectedResponse(format!(
                    "message {}: content names no author",
                    m.id
                )));
            }
        }
        messages.push(BatchMessage {
            id: m.id,
            signature: crate::chat::hex(&key.sign(&canonical(&content)?)),
            content,
            peer: None,
        });
    }
    Ok(MessageBatch {
        id_cert: cert_pem.to_owned(),
        messages,
    })
}

/// The JCS form of a message's content: what its signature covers.
fn canonical(v: &serde_json::Value) -> Result<Vec<u8>> {
    fugue_proto::wire::to_canonical_vec(v).map_err(|e| Error::UnexpectedResponse(e.to_string()))
}

/// Checks that message `m` of a batch was signed with `cert`, as the server holding it
/// claims (it must not have changed it).
pub(crate) fn check_signed(cert: &IdCert, m: &BatchMessage) -> Result<()> {
    let signature = hex::decode(&m.signature)
        .map_err(|_| Error::Verification(format!("message {}: its signature is not hex", m.id)))?;
    verify_strict(&cert.key, &canonical(&m.content)?, &signature).map_err(|_| {
        Error::Verification(format!(
            "message {}: its signature does not verify with certificate {}",
            m.id, cert.serial
        ))
    })
}
