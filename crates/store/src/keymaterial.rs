//! Persistence of encrypted private key material (key backups, core §6.3): one element per
//! ID-Cert serial, within a number of slots per actor.

use crate::actors::lock_actor;
use crate::engine::{Conflict, Error, Result, Row, Stmt};
use crate::{Store, params};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMaterialRow {
    pub serial: i64,
    pub key_data: String,
    /// OIDs of the encryption algorithms (stored as a JSON array).
    pub algorithms: Vec<String>,
    pub created_at: i64,
}

/// The columns [`key_material`] decodes, in its order.
macro_rules! key_material_columns {
    () => {
        "serial, key_data, algorithms, created_at"
    };
}

fn key_material(r: &Row) -> Result<KeyMaterialRow> {
    let algorithms = r.string(2)?;
    Ok(KeyMaterialRow {
        serial: r.i64(0)?,
        key_data: r.string(1)?,
        algorithms: serde_json::from_str(&algorithms)
            .map_err(|e| Error::Decode(format!("algorithms: {e}")))?,
        created_at: r.i64(3)?,
    })
}

impl Store {
    /// Stores key material; all or nothing. [`Error::Unique`] if a serial already has some;
    /// [`Conflict::KeyMaterialSlotsFull`] if the actor would hold more than `max_slots`
    /// elements; [`Conflict::ActorMissing`] for an unknown actor. Uploads of one actor are
    /// serialised on its row, so parallel uploads cannot exceed the limit.
    pub async fn insert_key_material(
        &self,
        actor_id: i64,
        rows: &[KeyMaterialRow],
        max_slots: i64,
    ) -> Result<()> {
        let mut stmts = vec![lock_actor(actor_id)];
        stmts.extend(rows.iter().map(|k| {
            Stmt::new(
                concat!(
                    "INSERT INTO key_material (actor_id, ",
                    key_material_columns!(),
                    ") SELECT $1, $2, $3, $4, $5 WHERE (SELECT COUNT(*) FROM key_material WHERE actor_id = $1) < $6"
                ),
                params![
                    actor_id,
                    k.serial,
                    k.key_data.clone(),
                    serde_json::Value::from(k.algorithms.clone()).to_string(),
                    k.created_at,
                    max_slots
                ],
            )
            .affects(1)
            .or(Conflict::KeyMaterialSlotsFull)
        }));
        self.commit(stmts).await
    }

    pub async fn key_material(&self, actor_id: i64) -> Result<Vec<KeyMaterialRow>> {
        self.query(
            concat!(
                "SELECT ",
                key_material_columns!(),
                " FROM key_material WHERE actor_id = $1 ORDER BY serial"
            ),
            params![actor_id],
        )
        .await?
        .iter()
        .map(key_material)
        .collect()
    }

    /// Deletes the key material of these serials; returns how many existed.
    pub async fn delete_key_material(&self, actor_id: i64, serials: &[i64]) -> Result<u64> {
        let stmts = serials
            .iter()
            .map(|s| {
                Stmt::new(
                    "DELETE FROM key_material WHERE actor_id = $1 AND serial = $2",
                    params![actor_id, *s],
                )
            })
            .collect();
        Ok(self.transaction(stmts).await?.iter().sum())
    }
}
