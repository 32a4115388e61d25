//! Persistence for federation: key trials, and actors of other home servers with their
//! sessions here.

use crate::engine::{Result, Row, Stmt};
use crate::{ActorRow, Store, params};

/// A key trial handed out by `GET /session/auth` (DIGEST §5.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTrialRow {
    pub id: String,
    pub fid: String,
    pub trial: String,
    pub expires_at: i64,
    pub created_at: i64,
    pub completed_at: Option<i64>,
    /// The completion as received (JSON), once completed (a sign-in's single answer).
    pub completion: Option<String>,
    /// The signed-in actor a proof trial was issued to (the migration routes); `None` for
    /// a sign-in trial.
    pub actor_id: Option<i64>,
}

/// A completed trial as the public record shows it: the trial and every verified answer,
/// `(serial, signature)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKeyTrial {
    pub trial: KeyTrialRow,
    pub completions: Vec<(i64, String)>,
}

/// Which trial a completion answers. Always named: a completion that named none could spend
/// whichever trial of the actor is open, someone else's included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrialRef<'a> {
    /// By its `id`, and its text too when the completion carries it.
    Id { id: &'a str, trial: Option<&'a str> },
    /// By its text alone.
    Text(&'a str),
}

/// Filters of `GET /keytrial/{fid}`.
#[derive(Debug, Clone, Default)]
pub struct KeyTrialQuery {
    pub id: Option<String>,
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
    /// 0 = no limit.
    pub limit: i64,
}

/// What a foreign actor's session is made of (see [`Store::open_foreign_session`]).
#[derive(Debug, Clone)]
pub struct NewForeignSession {
    pub id: i64,
    pub actor_id: i64,
    pub session_id: String,
    pub token_hash: Vec<u8>,
    /// Serial of the certificate (issued by the actor's home server) the session uses.
    pub serial: i64,
    /// When the session must be checked with the home server again.
    pub expires_at: i64,
    /// Also when an active session with the same session ID ends.
    pub created_at: i64,
}

/// The columns [`key_trial`] decodes, in its order.
macro_rules! key_trial_columns {
    () => {
        "id, fid, trial, expires_at, created_at, completed_at, completion, actor_id"
    };
}

fn key_trial(r: &Row) -> Result<KeyTrialRow> {
    Ok(KeyTrialRow {
        id: r.string(0)?,
        fid: r.string(1)?,
        trial: r.string(2)?,
        expires_at: r.i64(3)?,
        created_at: r.i64(4)?,
        completed_at: r.opt_i64(5)?,
        completion: r.opt_string(6)?,
        actor_id: r.opt_i64(7)?,
    })
}

impl Store {
    pub async fn insert_key_trial(&self, t: &KeyTrialRow) -> Result<()> {
        self.execute_unit(
            concat!(
                "INSERT INTO key_trials (",
                key_trial_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, NULL, NULL, $6)"
            ),
            params![
                t.id.clone(),
                t.fid.clone(),
                t.trial.clone(),
                t.expires_at,
                t.created_at,
                t.actor_id
            ],
        )
        .await
    }

    /// Spends the key trial `which` of `fid` if it is usable: unexpired at `now` and never
    /// completed. Exactly one caller can spend a trial.
    pub async fn claim_key_trial(
        &self,
        fid: &str,
        which: TrialRef<'_>,
        now: i64,
    ) -> Result<Option<KeyTrialRow>> {
        // By id through the primary key; by text through the index of open trials, so an
        // actor's history of spent trials costs nothing.
        let rows = match which {
            TrialRef::Id { id, trial } => {
                self.query(
                    concat!(
                        "UPDATE key_trials SET completed_at = $3
                         WHERE id = $1 AND fid = $2 AND completed_at IS NULL AND expires_at >= $3
                           AND ($4 IS NULL OR trial = $4) AND actor_id IS NULL
                         RETURNING ",
                        key_trial_columns!()
                    ),
                    params![id, fid, now, trial.map(str::to_owned)],
                )
                .await?
            }
            TrialRef::Text(trial) => {
                self.query(
                    concat!(
                        "UPDATE key_trials SET completed_at = $3
                         WHERE completed_at IS NULL AND expires_at >= $3 AND id =
                           (SELECT id FROM key_trials
                            WHERE fid = $1 AND completed_at IS NULL AND expires_at >= $3
                              AND trial = $2 AND actor_id IS NULL
                            ORDER BY created_at DESC, id LIMIT 1)
                         RETURNING ",
                        key_trial_columns!()
                    ),
                    params![fid, trial, now],
                )
                .await?
            }
        };
        rows.first().map(key_trial).transpose()
    }

    /// Deletes the key trials that expired before `now` without a verified answer: nobody
    /// can answer them any more, and only verified answers are public record (core §4.3).
    /// Returns how many went.
    pub async fn delete_unanswered_key_trials(&self, now: i64) -> Result<u64> {
        self.execute(
            "DELETE FROM key_trials WHERE completion IS NULL AND expires_at < $1
             AND NOT EXISTS (SELECT 1 FROM key_trial_completions c WHERE c.trial_id = key_trials.id)",
            params![now],
        )
        .await
    }

    /// Records the answer of a spent trial once it verified (only verified answers are public).
    pub async fn record_key_trial_completion(&self, id: &str, completion: &str) -> Result<()> {
        self.execute_unit(
            "UPDATE key_trials SET completion = $2 WHERE id = $1",
            params![id, completion],
        )
        .await
    }

    /// Completed key trials of `fid` whose lifetime is over (they are public then), oldest
    /// first, each with every verified answer.
    pub async fn public_key_trials(
        &self,
        fid: &str,
        q: &KeyTrialQuery,
        now: i64,
    ) -> Result<Vec<PublicKeyTrial>> {
        let limit = if q.limit <= 0 { i64::MAX } else { q.limit };
        let trials: Vec<KeyTrialRow> = self
            .query(
                concat!(
                    "SELECT ",
                    key_trial_columns!(),
                    " FROM key_trials
                 WHERE fid = $1 AND completed_at IS NOT NULL AND expires_at < $2
                   AND (completion IS NOT NULL OR actor_id IS NOT NULL)
                   AND ($3 IS NULL OR id = $3)
                   AND ($4 IS NULL OR completed_at >= $4) AND ($5 IS NULL OR completed_at <= $5)
                 ORDER BY completed_at, id LIMIT $6"
                ),
                params![fid, now, q.id.clone(), q.not_before, q.not_after, limit],
            )
            .await?
            .iter()
            .map(key_trial)
            .collect::<Result<_>>()?;
        let answers = self
            .query(
                "SELECT c.trial_id, c.serial, c.signature FROM key_trial_completions c
                 JOIN key_trials t ON t.id = c.trial_id
                 WHERE t.fid = $1 AND t.expires_at < $2 ORDER BY c.trial_id, c.serial",
                params![fid, now],
            )
            .await?;
        let mut by_trial: std::collections::HashMap<String, Vec<(i64, String)>> =
            std::collections::HashMap::new();
        for r in &answers {
            by_trial
                .entry(r.string(0)?)
                .or_default()
                .push((r.i64(1)?, r.string(2)?));
        }
        Ok(trials
            .into_iter()
            .map(|trial| PublicKeyTrial {
                completions: by_trial.remove(&trial.id).unwrap_or_default(),
                trial,
            })
            .collect())
    }

    /// The open proof trial of `actor_id` (issued to it while signed in): the one named
    /// `id`, or its newest; unexpired at `now`.
    pub async fn proof_trial(
        &self,
        actor_id: i64,
        id: Option<&str>,
        now: i64,
    ) -> Result<Option<KeyTrialRow>> {
        self.query(
            concat!(
                "SELECT ",
                key_trial_columns!(),
                " FROM key_trials WHERE actor_id = $1 AND expires_at >= $2 AND ($3 IS NULL OR id = $3)
                 ORDER BY created_at DESC, id LIMIT 1"
            ),
            params![actor_id, now, id.map(str::to_owned)],
        )
        .await?
        .first()
        .map(key_trial)
        .transpose()
    }

    /// Records verified answers `(serial, signature)` of a proof trial (an answer recorded
    /// before stays as it was).
    pub async fn record_proof_completions(
        &self,
        trial_id: &str,
        completions: &[(i64, String)],
        now: i64,
    ) -> Result<()> {
        let mut stmts = vec![Stmt::new(
            "UPDATE key_trials SET completed_at = COALESCE(completed_at, $2) WHERE id = $1",
            params![trial_id, now],
        )];
        for (serial, signature) in completions {
            stmts.push(Stmt::new(
                "INSERT INTO key_trial_completions (trial_id, serial, signature) VALUES ($1, $2, $3)
                 ON CONFLICT (trial_id, serial) DO NOTHING",
                params![trial_id, *serial, signature.clone()],
            ));
        }
        self.commit(stmts).await
    }

    /// The row standing for an actor of another home server (its local name is the whole
    /// FID, which no local name can be); created on first sight.
    pub async fn foreign_actor(&self, fid: &str, id: i64, now: i64) -> Result<ActorRow> {
        self.execute(
            "INSERT INTO actors (id, local_name, password_hash, totp_secret, totp_pending, is_admin, created_at)
             VALUES ($1, $2, '', NULL, NULL, 0, $3) ON CONFLICT (local_name) DO NOTHING",
            params![id, fid, now],
        )
        .await?;
        self.actor_by_name(fid)
            .await?
            .ok_or_else(|| crate::Error::Decode("foreign actor vanished".into()))
    }

    /// Opens a session for a foreign actor that proved its key: it lives until `expires_at`
    /// (the end of its certificate) and replaces an active session with the same session ID.
    /// Returns the primary keys of the sessions it replaced.
    pub async fn open_foreign_session(&self, s: &NewForeignSession) -> Result<Vec<i64>> {
        let out = self
            .transaction_rows(vec![
                Stmt::new(
                    "UPDATE sessions SET revoked_at = $3 WHERE actor_id = $1 AND session_id = $2 AND revoked_at IS NULL RETURNING id",
                    params![s.actor_id, s.session_id.clone(), s.created_at],
                ),
                Stmt::new(
                    "INSERT INTO sessions (id, actor_id, session_id, token_hash, cert_serial, created_at, revoked_at, expires_at, foreign_serial)
                     VALUES ($1, $2, $3, $4, NULL, $5, NULL, $6, $7)",
                    params![s.id, s.actor_id, s.session_id.clone(), s.token_hash.clone(), s.created_at, s.expires_at, s.serial],
                ),
                Stmt::new(
                    "INSERT INTO stream_positions (session_pk, stream_id, acked_seq)
                     SELECT $1, $2, COALESCE((SELECT head FROM streams WHERE id = $2), 0)",
                    params![s.id, s.actor_id],
                ),
            ])
            .await?;
        out.first().map_or(Ok(Vec::new()), |(_, rows)| {
            rows.iter().map(|r| r.i64(0)).collect()
        })
    }

    /// The certificate serial a foreign session currently uses.
    pub async fn foreign_serial(&self, session_pk: i64) -> Result<Option<i64>> {
        self.query(
            "SELECT foreign_serial FROM sessions WHERE id = $1",
            params![session_pk],
        )
        .await?
        .first()
        .map_or(Ok(None), |r| r.opt_i64(0))
    }

    /// A foreign session moves to a new certificate (`PUT /session/idcert/extern`).
    pub async fn update_foreign_session(
        &self,
        session_pk: i64,
        serial: i64,
        expires_at: i64,
    ) -> Result<bool> {
        Ok(self
            .execute(
                "UPDATE sessions SET foreign_serial = $2, expires_at = $3 WHERE id = $1 AND revoked_at IS NULL",
                params![session_pk, serial, expires_at],
            )
            .await?
            == 1)
    }

    /// Moves a foreign session's end to `expires_at` if it still runs on certificate
    /// `serial`: false when it ended or moved to another certificate meanwhile.
    pub async fn extend_foreign_session(
        &self,
        session_pk: i64,
        serial: i64,
        expires_at: i64,
    ) -> Result<bool> {
        Ok(self
            .execute(
                "UPDATE sessions SET expires_at = $3
                 WHERE id = $1 AND foreign_serial = $2 AND revoked_at IS NULL",
                params![session_pk, serial, expires_at],
            )
            .await?
            == 1)
    }

    /// Ends a session (any kind) at `now`.
    pub async fn end_session(&self, session_pk: i64, now: i64) -> Result<bool> {
        Ok(self
            .execute(
                "UPDATE sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
                params![session_pk, now],
            )
            .await?
            == 1)
    }
}
