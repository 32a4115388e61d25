//! Persistence for discoverable services (core §9): which providers an actor lists for each
//! service, and which one is primary.
//!
//! The table guards what it can: a provider is listed once per actor and service (primary
//! key), and a service has at most one primary provider (partial unique index). Writes of one
//! actor are serialised on its row, so choosing a primary, counting slots and promoting a new
//! primary after a removal see a stable list.

use crate::actors::lock_actor;
use crate::engine::{Conflict, Result, Row, Stmt};
use crate::{Store, params};

/// One provider of one service of an actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRow {
    pub actor_id: i64,
    pub name: String,
    pub url: String,
    pub primary: bool,
    pub created_at: i64,
}

/// The columns [`service`] decodes, in its order.
macro_rules! service_columns {
    () => {
        "actor_id, name, url, is_primary, created_at"
    };
}

fn service(r: &Row) -> Result<ServiceRow> {
    Ok(ServiceRow {
        actor_id: r.i64(0)?,
        name: r.string(1)?,
        url: r.string(2)?,
        primary: r.bool(3)?,
        created_at: r.i64(4)?,
    })
}

/// Makes the oldest remaining provider of a service primary if none is; returns it.
fn promote_oldest(actor_id: i64, name: &str) -> Stmt {
    Stmt::new(
        concat!(
"UPDATE discoverable_services SET is_primary = 1
         WHERE actor_id = $1 AND name = $2
           AND url = (SELECT o.url FROM discoverable_services o WHERE o.actor_id = $1 AND o.name = $2
                      ORDER BY o.created_at, o.url LIMIT 1)
           AND NOT EXISTS (SELECT 1 FROM discoverable_services p
                           WHERE p.actor_id = $1 AND p.name = $2 AND p.is_primary = 1)
         RETURNING ",
service_columns!()
),
        params![actor_id, name],
    )
}

impl Store {
    /// Lists a provider. It becomes primary when its service has no primary provider, or,
    /// with `take_primary`, in place of the current one. At most `max_per_actor` providers
    /// per actor. Returns the stored row and the provider that stopped being primary.
    ///
    /// Errors: [`crate::Error::Unique`] if the provider is listed already;
    /// [`Conflict::TooManyServices`] when the actor has `max_per_actor` providers;
    /// [`Conflict::ActorMissing`] for an unknown actor.
    pub async fn insert_service(
        &self,
        s: &ServiceRow,
        take_primary: bool,
        max_per_actor: i64,
    ) -> Result<(ServiceRow, Option<ServiceRow>)> {
        let out = self
            .transaction_rows(vec![
                lock_actor(s.actor_id),
                Stmt::new(
                    concat!(
                        "UPDATE discoverable_services SET is_primary = 0
                     WHERE actor_id = $1 AND name = $2 AND is_primary = 1 AND $3 = 1
                     RETURNING ",
                        service_columns!()
                    ),
                    params![s.actor_id, s.name.clone(), take_primary],
                ),
                Stmt::new(
                    concat!(
"INSERT INTO discoverable_services (actor_id, name, url, is_primary, created_at)
                     SELECT $1, $2, $3,
                       CASE WHEN EXISTS (SELECT 1 FROM discoverable_services p
                                         WHERE p.actor_id = $1 AND p.name = $2 AND p.is_primary = 1)
                            THEN 0 ELSE 1 END,
                       $4
                     WHERE (SELECT COUNT(*) FROM discoverable_services c WHERE c.actor_id = $1) < $5
                     RETURNING ",
service_columns!()
),
                    params![
                        s.actor_id,
                        s.name.clone(),
                        s.url.clone(),
                        s.created_at,
                        max_per_actor
                    ],
                )
                .affects(1)
                .or(Conflict::TooManyServices),
            ])
            .await?;
        let rows = |i: usize| out.get(i).map(|(_, rows)| rows.as_slice()).unwrap_or(&[]);
        let demoted = rows(1).first().map(service).transpose()?;
        let stored = rows(2)
            .first()
            .map(service)
            .transpose()?
            .ok_or_else(|| crate::Error::Decode("RETURNING gave no row".into()))?;
        Ok((stored, demoted))
    }

    /// An actor's providers, of one service or of all, by service, then oldest first.
    pub async fn services_of(&self, actor_id: i64, name: Option<&str>) -> Result<Vec<ServiceRow>> {
        self.query(
            concat!(
                "SELECT ",
                service_columns!(),
                " FROM discoverable_services
                 WHERE actor_id = $1 AND ($2 IS NULL OR name = $2)
                 ORDER BY name, created_at, url"
            ),
            params![actor_id, name.map(str::to_owned)],
        )
        .await?
        .iter()
        .map(service)
        .collect()
    }

    /// Makes a listed provider the primary one of its service. Returns it and the provider
    /// that was primary before (none if it was this one already).
    /// [`Conflict::ServiceNotListed`] when the provider is not listed (nothing changes).
    pub async fn set_primary_service(
        &self,
        actor_id: i64,
        name: &str,
        url: &str,
    ) -> Result<(ServiceRow, Option<ServiceRow>)> {
        let out = self
            .transaction_rows(vec![
                lock_actor(actor_id),
                Stmt::new(
                    concat!(
                        "UPDATE discoverable_services SET is_primary = 0
                     WHERE actor_id = $1 AND name = $2 AND is_primary = 1 AND url <> $3
                     RETURNING ",
                        service_columns!()
                    ),
                    params![actor_id, name, url],
                ),
                Stmt::new(
                    concat!(
                        "UPDATE discoverable_services SET is_primary = 1
                     WHERE actor_id = $1 AND name = $2 AND url = $3
                     RETURNING ",
                        service_columns!()
                    ),
                    params![actor_id, name, url],
                )
                .affects(1)
                .or(Conflict::ServiceNotListed),
            ])
            .await?;
        let rows = |i: usize| out.get(i).map(|(_, rows)| rows.as_slice()).unwrap_or(&[]);
        let old = rows(1).first().map(service).transpose()?;
        let new = rows(2)
            .first()
            .map(service)
            .transpose()?
            .ok_or_else(|| crate::Error::Decode("RETURNING gave no row".into()))?;
        Ok((new, old))
    }

    /// Removes providers, all or none: each (name, url, primary) must still be listed with
    /// that primary flag, else [`Conflict::ServiceNotListed`] ([`Conflict::ActorMissing`] for
    /// an unknown actor). A service that lost its primary provider gets the oldest remaining
    /// one as its new primary; those are returned.
    pub async fn delete_services(
        &self,
        actor_id: i64,
        providers: &[(String, String, bool)],
    ) -> Result<Vec<ServiceRow>> {
        let mut stmts = vec![lock_actor(actor_id)];
        for (name, url, primary) in providers {
            stmts.push(
                Stmt::new(
                    "DELETE FROM discoverable_services
                     WHERE actor_id = $1 AND name = $2 AND url = $3 AND is_primary = $4",
                    params![actor_id, name.clone(), url.clone(), *primary],
                )
                .affects(1)
                .or(Conflict::ServiceNotListed),
            );
        }
        let mut lost_primary: Vec<&str> = providers
            .iter()
            .filter(|(_, _, primary)| *primary)
            .map(|(name, _, _)| name.as_str())
            .collect();
        lost_primary.sort_unstable();
        lost_primary.dedup();
        stmts.extend(
            lost_primary
                .iter()
                .map(|name| promote_oldest(actor_id, name)),
        );
        let out = self.transaction_rows(stmts).await?;
        out.iter()
            .skip(1 + providers.len())
            .flat_map(|(_, rows)| rows.iter().map(service))
            .collect()
    }
}
