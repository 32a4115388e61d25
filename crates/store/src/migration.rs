//! Persistence for migrations (core §7): redirects from an actor of this server to its new
//! identity, and the keys an actor signed its messages here with.

use crate::engine::{Conflict, Result, Row, Stmt};
use crate::{Store, params};

/// A redirect of an actor of this server (the source) to another actor (core §7.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectRow {
    pub source_id: i64,
    pub target_fid: String,
    pub source_confirmed_at: Option<i64>,
    pub target_confirmed_at: Option<i64>,
    pub created_at: i64,
}

impl RedirectRow {
    /// Confirmed by both sides: lookups of the source go to the target.
    pub fn confirmed(&self) -> bool {
        self.source_confirmed_at.is_some() && self.target_confirmed_at.is_some()
    }
}

/// A grant of re-signing (core §7.2): `new_fid` may re-sign the messages `old_actor_id`
/// signed here with certificates `serials`, with the keys `allowed_keys` (raw Ed25519 public
/// keys, hex), until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRow {
    pub old_actor_id: i64,
    pub new_fid: String,
    pub serials: Vec<i64>,
    pub allowed_keys: Vec<String>,
    pub expires_at: i64,
    pub created_at: i64,
}

macro_rules! redirect_columns {
    () => {
        "source_id, target_fid, source_confirmed_at, target_confirmed_at, created_at"
    };
}

fn redirect(r: &Row) -> Result<RedirectRow> {
    Ok(RedirectRow {
        source_id: r.i64(0)?,
        target_fid: r.string(1)?,
        source_confirmed_at: r.opt_i64(2)?,
        target_confirmed_at: r.opt_i64(3)?,
        created_at: r.i64(4)?,
    })
}

impl Store {
    /// The redirect of the actor registered as `local_name`, confirmed or not, and when the
    /// actor's account was deleted (if it was): one read, as lookups of any actor make it.
    pub async fn redirect_of_name(
        &self,
        local_name: &str,
    ) -> Result<Option<(RedirectRow, Option<i64>)>> {
        self.query(
            "SELECT r.source_id, r.target_fid, r.source_confirmed_at, r.target_confirmed_at,
                 r.created_at, a.deleted_at
             FROM redirects r JOIN actors a ON a.id = r.source_id WHERE a.local_name = $1",
            params![local_name],
        )
        .await?
        .first()
        .map(|r| Ok((redirect(r)?, r.opt_i64(5)?)))
        .transpose()
    }

    /// The source confirms a redirect to `target_fid`. A redirect to another target is
    /// replaced, and that target's confirmation goes with it (a redirect is for one target).
    pub async fn confirm_redirect_source(
        &self,
        source_id: i64,
        target_fid: &str,
        now: i64,
    ) -> Result<RedirectRow> {
        self.query(
            concat!(
                "INSERT INTO redirects (",
                redirect_columns!(),
                ") VALUES ($1, $2, $3, NULL, $3)
                 ON CONFLICT (source_id) DO UPDATE SET
                   target_confirmed_at = CASE WHEN redirects.target_fid = excluded.target_fid
                     THEN redirects.target_confirmed_at ELSE NULL END,
                   target_fid = excluded.target_fid,
                   source_confirmed_at = excluded.source_confirmed_at
                 RETURNING ",
                redirect_columns!()
            ),
            params![source_id, target_fid, now],
        )
        .await?
        .first()
        .map(redirect)
        .transpose()?
        .ok_or_else(|| crate::Error::Decode("RETURNING gave no row".into()))
    }

    /// The target `target_fid` confirms the redirect of `source_id` to it.
    /// [`Conflict::RedirectElsewhere`] when the source's redirect names another target.
    pub async fn confirm_redirect_target(
        &self,
        source_id: i64,
        target_fid: &str,
        now: i64,
    ) -> Result<RedirectRow> {
        self.query(
            concat!(
                "INSERT INTO redirects (",
                redirect_columns!(),
                ") VALUES ($1, $2, NULL, $3, $3)
                 ON CONFLICT (source_id) DO UPDATE SET target_confirmed_at = excluded.target_confirmed_at
                 WHERE redirects.target_fid = excluded.target_fid
                 RETURNING ",
                redirect_columns!()
            ),
            params![source_id, target_fid, now],
        )
        .await?
        .first()
        .map(redirect)
        .transpose()?
        .ok_or(crate::Error::Conflict(Conflict::RedirectElsewhere))
    }

    /// The source gives up its redirect to `target_fid`; whether there was one.
    pub async fn remove_redirect(&self, source_id: i64, target_fid: &str) -> Result<bool> {
        Ok(self
            .execute(
                "DELETE FROM redirects WHERE source_id = $1 AND target_fid = $2",
                params![source_id, target_fid],
            )
            .await?
            > 0)
    }

    /// The target withdraws its confirmation; a redirect nobody confirms any more goes.
    /// Whether the target had confirmed.
    pub async fn withdraw_redirect_target(&self, source_id: i64, target_fid: &str) -> Result<bool> {
        let out = self
            .transaction_rows(vec![
                Stmt::new(
                    "UPDATE redirects SET target_confirmed_at = NULL
                     WHERE source_id = $1 AND target_fid = $2 AND target_confirmed_at IS NOT NULL",
                    params![source_id, target_fid],
                ),
                Stmt::new(
                    "DELETE FROM redirects WHERE source_id = $1
                     AND source_confirmed_at IS NULL AND target_confirmed_at IS NULL",
                    params![source_id],
                ),
            ])
            .await?;
        Ok(out.first().is_some_and(|(n, _)| *n > 0))
    }

    /// The serials of the certificates `actor_id` signed the messages it has here with
    /// (their current versions and earlier ones), ascending.
    pub async fn signing_serials(&self, actor_id: i64) -> Result<Vec<i64>> {
        self.query(
            "SELECT cert_serial FROM messages WHERE author_id = $1 AND deleted_at IS NULL
             UNION SELECT v.cert_serial FROM message_versions v JOIN messages m ON m.id = v.message_id
             WHERE m.author_id = $1 AND m.deleted_at IS NULL
             ORDER BY 1",
            params![actor_id],
        )
        .await?
        .iter()
        .map(|r| r.i64(0))
        .collect()
    }

    /// The certificate (PEM) with `serial` that `actor_id` signed a message here with, as
    /// stored with the message when it was checked.
    pub async fn signing_cert(&self, actor_id: i64, serial: i64) -> Result<Option<String>> {
        self.query(
            "SELECT cert_pem FROM messages WHERE author_id = $1 AND cert_serial = $2 AND cert_pem <> ''
             UNION SELECT v.cert_pem FROM message_versions v JOIN messages m ON m.id = v.message_id
             WHERE m.author_id = $1 AND v.cert_serial = $2
             LIMIT 1",
            params![actor_id, serial],
        )
        .await?
        .first()
        .map(|r| r.string(0))
        .transpose()
    }

    /// Stores a grant of re-signing; one for the same two actors is replaced.
    pub async fn insert_resign_grant(&self, g: &GrantRow) -> Result<()> {
        let mut stmts = vec![
            Stmt::new(
                "DELETE FROM resign_grant_serials WHERE old_actor_id = $1 AND new_fid = $2",
                params![g.old_actor_id, g.new_fid.clone()],
            ),
            Stmt::new(
                "INSERT INTO resign_grants (old_actor_id, new_fid, allowed_keys, expires_at, created_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (old_actor_id, new_fid) DO UPDATE SET allowed_keys = excluded.allowed_keys,
                   expires_at = excluded.expires_at, created_at = excluded.created_at",
                params![
                    g.old_actor_id,
                    g.new_fid.clone(),
                    g.allowed_keys.join(","),
                    g.expires_at,
                    g.created_at
                ],
            ),
        ];
        for serial in &g.serials {
            stmts.push(Stmt::new(
                "INSERT INTO resign_grant_serials (old_actor_id, new_fid, serial) VALUES ($1, $2, $3)",
                params![g.old_actor_id, g.new_fid.clone(), *serial],
            ));
        }
        self.commit(stmts).await
    }

    /// Ends a grant; whether there was one.
    pub async fn delete_resign_grant(&self, old_actor_id: i64, new_fid: &str) -> Result<bool> {
        let out = self
            .transaction_rows(vec![
                Stmt::new(
                    "DELETE FROM resign_grants WHERE old_actor_id = $1 AND new_fid = $2",
                    params![old_actor_id, new_fid],
                ),
                Stmt::new(
                    "DELETE FROM resign_grant_serials WHERE old_actor_id = $1 AND new_fid = $2",
                    params![old_actor_id, new_fid],
                ),
            ])
            .await?;
        Ok(out.first().is_some_and(|(n, _)| *n > 0))
    }

    /// The grants to `new_fid` that have not expired at `now`.
    pub async fn resign_grants_to(&self, new_fid: &str, now: i64) -> Result<Vec<GrantRow>> {
        let grants = self
            .query(
                "SELECT old_actor_id, new_fid, allowed_keys, expires_at, created_at FROM resign_grants
                 WHERE new_fid = $1 AND expires_at > $2 ORDER BY old_actor_id",
                params![new_fid, now],
            )
            .await?;
        let mut out = Vec::with_capacity(grants.len());
        for g in &grants {
            let old_actor_id = g.i64(0)?;
            let serials = self
                .query(
                    "SELECT serial FROM resign_grant_serials
                     WHERE old_actor_id = $1 AND new_fid = $2 ORDER BY serial",
                    params![old_actor_id, new_fid],
                )
                .await?
                .iter()
                .map(|r| r.i64(0))
                .collect::<Result<_>>()?;
            out.push(GrantRow {
                old_actor_id,
                new_fid: g.string(1)?,
                serials,
                allowed_keys: g
                    .string(2)?
                    .split(',')
                    .filter(|k| !k.is_empty())
                    .map(str::to_owned)
                    .collect(),
                expires_at: g.i64(3)?,
                created_at: g.i64(4)?,
            });
        }
        Ok(out)
    }
}
