//! Persistence verbs of actor ID-Certs beyond sessions.

use crate::engine::Result;
use crate::{Store, params};

impl Store {
    /// `(certificates, revoked ones)` of an actor. Certificates are never deleted and are
    /// revoked at most once, so the pair changes whenever the actor's list changes: a cheap
    /// version of the list for caches.
    pub async fn cert_counts(&self, actor_id: i64) -> Result<(i64, i64)> {
        let rows = self
            .query(
                "SELECT COUNT(*), COUNT(revoked_at) FROM id_certs WHERE actor_id = $1",
                params![actor_id],
            )
            .await?;
        match rows.first() {
            Some(r) => Ok((r.i64(0)?, r.i64(1)?)),
            None => Ok((0, 0)),
        }
    }
}
