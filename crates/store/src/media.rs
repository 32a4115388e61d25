//! Persistence for RawR resources (core §7.3.1) and the blobs that hold their bytes.
//!
//! A resource row names its owner, size, media type and access properties; its bytes are a
//! blob, stored once per content (by SHA-256) under an object key and counted by the
//! resources that use it. The objects themselves live outside the database (files, an
//! object store): the store only says which key holds which content and which keys are no
//! longer used. A key is never reused: the object of a blob whose last resource went may be
//! deleted at once, since a new upload of the same bytes stores (and then keeps) a new key.

use crate::actors::lock_actor;
use crate::engine::{Conflict, Result, Row, Stmt};
use crate::{Store, params};

/// One stored resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceRow {
    pub rid: String,
    pub actor_id: i64,
    /// The owner's local name (resources belong to actors registered here).
    pub owner: String,
    /// SHA-256 of the bytes.
    pub hash: Vec<u8>,
    pub size: i64,
    pub content_type: String,
    pub private: bool,
    pub public: bool,
    pub allowlist: Vec<String>,
    pub denylist: Vec<String>,
    pub created_at: i64,
    /// The object holding the bytes.
    pub object_key: String,
}

/// A resource to store, and the object its bytes were written to.
#[derive(Debug, Clone)]
pub struct NewResource {
    pub rid: String,
    pub actor_id: i64,
    pub hash: Vec<u8>,
    pub size: i64,
    pub content_type: String,
    pub private: bool,
    pub public: bool,
    pub allowlist: Vec<String>,
    pub denylist: Vec<String>,
    pub created_at: i64,
    /// The object the upload wrote. Unused when the content is stored already: see
    /// [`Stored::object_key`].
    pub object_key: String,
    /// For a chat attachment, what the server found out about it.
    pub attachment: Option<AttachmentMeta>,
}

/// What is known of a chat attachment beyond its resource.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttachmentMeta {
    pub filename: Option<String>,
    pub width: Option<i64>,
    pub height: Option<i64>,
    /// A BlurHash of an image.
    pub placeholder: Option<String>,
    /// The thumbnail of an image, an object of its own.
    pub thumbnail: Option<Thumbnail>,
}

/// A thumbnail's object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thumbnail {
    pub object_key: String,
    pub content_type: String,
    pub size: i64,
}

/// A stored chat attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentRow {
    pub resource: ResourceRow,
    pub meta: AttachmentMeta,
}

/// The outcome of [`Store::insert_resource`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The object that holds the bytes now: the upload's own, or — when the same content
    /// was stored already — the existing one, and the upload's object is not needed.
    pub object_key: String,
}

/// How a list of resources is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceOrder {
    SizeAsc,
    SizeDesc,
    NewestFirst,
    OldestFirst,
}

/// The columns [`resource`] decodes, in its order (`r` = resources, `a` = actors,
/// `b` = media_blobs).
macro_rules! resource_columns {
    () => {
        "r.rid, r.actor_id, a.local_name, r.hash, r.size, r.content_type, r.is_private, r.is_public,
         r.allowlist, r.denylist, r.created_at, b.object_key"
    };
}

/// [`resource_columns`] and the attachment's (`t` = attachments), for [`attachment`].
macro_rules! attachment_columns {
    () => {
        concat!(
            resource_columns!(),
            ", t.filename, t.width, t.height, t.placeholder, t.thumb_key, t.thumb_type, t.thumb_size"
        )
    };
}

/// The joins [`attachment_columns`] reads from.
macro_rules! attachment_from {
    () => {
        concat!(resource_from!(), "JOIN attachments t ON t.rid = r.rid ")
    };
}

/// The joins [`resource_columns`] reads from.
macro_rules! resource_from {
    () => {
        " FROM resources r JOIN actors a ON a.id = r.actor_id JOIN media_blobs b ON b.hash = r.hash "
    };
}

fn resource(r: &Row) -> Result<ResourceRow> {
    Ok(ResourceRow {
        rid: r.string(0)?,
        actor_id: r.i64(1)?,
        owner: r.string(2)?,
        hash: r.bytes(3)?,
        size: r.i64(4)?,
        content_type: r.string(5)?,
        private: r.bool(6)?,
        public: r.bool(7)?,
        allowlist: split_list(&r.string(8)?),
        denylist: split_list(&r.string(9)?),
        created_at: r.i64(10)?,
        object_key: r.string(11)?,
    })
}

fn attachment(r: &Row) -> Result<AttachmentRow> {
    let thumbnail = match r.opt_string(16)? {
        Some(object_key) => Some(Thumbnail {
            object_key,
            content_type: r.string(17)?,
            size: r.i64(18)?,
        }),
        None => None,
    };
    Ok(AttachmentRow {
        resource: resource(r)?,
        meta: AttachmentMeta {
            filename: r.opt_string(12)?,
            width: r.opt_i64(13)?,
            height: r.opt_i64(14)?,
            placeholder: r.opt_string(15)?,
            thumbnail,
        },
    })
}

/// Access lists are stored comma-separated: their entries are FIDs and domains, which have
/// no commas.
fn join_list(list: &[String]) -> String {
    list.join(",")
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Store {
    /// Stores a resource whose bytes the upload wrote to `r.object_key`, if the actor's
    /// resources stay within `quota` bytes. When the same content is stored already, the
    /// resource uses that blob, and the answer names its object instead of the upload's.
    ///
    /// Errors: [`crate::Error::Unique`] when the resource ID is taken;
    /// [`Conflict::QuotaExceeded`]; [`Conflict::ActorMissing`].
    pub async fn insert_resource(&self, r: &NewResource, quota: i64) -> Result<Stored> {
        let out = self
            .transaction_rows(
                [
                lock_actor(r.actor_id),
                Stmt::new(
                    "INSERT INTO media_blobs (hash, object_key, size, refs, created_at)
                     VALUES ($1, $2, $3, 1, $4)
                     ON CONFLICT (hash) DO UPDATE SET refs = media_blobs.refs + 1
                     RETURNING object_key",
                    params![r.hash.clone(), r.object_key.clone(), r.size, r.created_at],
                ),
                Stmt::new(
                    "INSERT INTO resources (rid, actor_id, hash, size, content_type, is_private,
                         is_public, allowlist, denylist, created_at)
                     SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10
                     WHERE (SELECT CAST(COALESCE(SUM(u.size), 0) AS BIGINT) FROM resources u WHERE u.actor_id = $2) + $4 <= $11",
                    params![
                        r.rid.clone(),
                        r.actor_id,
                        r.hash.clone(),
                        r.size,
                        r.content_type.clone(),
                        r.private,
                        r.public,
                        join_list(&r.allowlist),
                        join_list(&r.denylist),
                        r.created_at,
                        quota
                    ],
                )
                .affects(1)
                .or(Conflict::QuotaExceeded),
            ]
            .into_iter()
            .chain(r.attachment.as_ref().map(|a| {
                let thumb = a.thumbnail.as_ref();
                Stmt::new(
                    "INSERT INTO attachments (rid, filename, width, height, placeholder, thumb_key,
                         thumb_type, thumb_size)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    params![
                        r.rid.clone(),
                        a.filename.clone(),
                        a.width,
                        a.height,
                        a.placeholder.clone(),
                        thumb.map(|t| t.object_key.clone()),
                        thumb.map(|t| t.content_type.clone()),
                        thumb.map(|t| t.size)
                    ],
                )
            }))
            .collect())
            .await?;
        let object_key = out
            .get(1)
            .and_then(|(_, rows)| rows.first())
            .map(|row| row.string(0))
            .transpose()?
            .ok_or_else(|| crate::Error::Decode("RETURNING gave no row".into()))?;
        Ok(Stored { object_key })
    }

    /// The resource `rid`, with its owner's name and its object.
    pub async fn resource(&self, rid: &str) -> Result<Option<ResourceRow>> {
        let rows = self
            .query(
                concat!(
                    "SELECT ",
                    resource_columns!(),
                    resource_from!(),
                    "WHERE r.rid = $1"
                ),
                params![rid],
            )
            .await?;
        rows.first().map(resource).transpose()
    }

    /// Up to `limit` resources of an actor, in `order` (ties by resource ID).
    pub async fn resources_of(
        &self,
        actor_id: i64,
        order: ResourceOrder,
        limit: i64,
    ) -> Result<Vec<ResourceRow>> {
        macro_rules! list {
            ($order:literal) => {
                concat!(
                    "SELECT ",
                    resource_columns!(),
                    resource_from!(),
                    "WHERE r.actor_id = $1 ORDER BY ",
                    $order,
                    " LIMIT $2"
                )
            };
        }
        let sql = match order {
            ResourceOrder::SizeAsc => list!("r.size ASC, r.rid ASC"),
            ResourceOrder::SizeDesc => list!("r.size DESC, r.rid ASC"),
            ResourceOrder::NewestFirst => list!("r.created_at DESC, r.rid ASC"),
            ResourceOrder::OldestFirst => list!("r.created_at ASC, r.rid ASC"),
        };
        let rows = self.query(sql, params![actor_id, limit]).await?;
        rows.iter().map(resource).collect()
    }

    /// The bytes an actor's resources take.
    pub async fn resource_usage(&self, actor_id: i64) -> Result<i64> {
        let rows = self
            .query(
                "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM resources WHERE actor_id = $1",
                params![actor_id],
            )
            .await?;
        rows.first()
            .map(|r| r.i64(0))
            .transpose()
            .map(Option::unwrap_or_default)
    }

    /// Replaces the access properties of an actor's resource.
    ///
    /// Errors: [`Conflict::ResourceMissing`] when the actor has no resource `rid`.
    pub async fn set_resource_access(
        &self,
        rid: &str,
        actor_id: i64,
        private: bool,
        public: bool,
        allowlist: &[String],
        denylist: &[String],
    ) -> Result<()> {
        self.commit(vec![
            Stmt::new(
                "UPDATE resources SET is_private = $3, is_public = $4, allowlist = $5, denylist = $6
                 WHERE rid = $1 AND actor_id = $2",
                params![
                    rid,
                    actor_id,
                    private,
                    public,
                    join_list(allowlist),
                    join_list(denylist)
                ],
            )
            .affects(1)
            .or(Conflict::ResourceMissing),
        ])
        .await
    }

    /// Deletes an actor's resource (with what makes it an attachment). Answers the objects
    /// no resource uses any more, which the caller deletes.
    ///
    /// Errors: [`Conflict::ResourceMissing`] when the actor has no resource `rid`.
    pub async fn delete_resource(&self, rid: &str, actor_id: i64) -> Result<Vec<String>> {
        let out = self
            .transaction_rows(vec![
                Stmt::new(
                    "DELETE FROM attachments
                     WHERE rid = (SELECT rid FROM resources WHERE rid = $1 AND actor_id = $2)
                     RETURNING thumb_key",
                    params![rid, actor_id],
                ),
                Stmt::new(
                    "DELETE FROM message_attachments
                     WHERE rid = (SELECT rid FROM resources WHERE rid = $1 AND actor_id = $2)",
                    params![rid, actor_id],
                ),
                Stmt::new(
                    "UPDATE media_blobs SET refs = refs - 1
                     WHERE hash = (SELECT hash FROM resources WHERE rid = $1 AND actor_id = $2)",
                    params![rid, actor_id],
                ),
                Stmt::new(
                    "DELETE FROM resources WHERE rid = $1 AND actor_id = $2",
                    params![rid, actor_id],
                )
                .affects(1)
                .or(Conflict::ResourceMissing),
                // No blob is ever left at zero outside this transaction.
                Stmt::new(
                    "DELETE FROM media_blobs WHERE refs <= 0 RETURNING object_key",
                    params![],
                ),
            ])
            .await?;
        // The attachment's thumbnail, then the blobs that went.
        [0, 4]
            .iter()
            .filter_map(|&i| out.get(i))
            .flat_map(|(_, rows)| rows.iter().map(|r| r.opt_string(0)))
            .filter_map(Result::transpose)
            .collect()
    }

    /// Every object key a blob or a thumbnail names (a backup checks that it holds them
    /// all).
    pub async fn object_keys(&self) -> Result<Vec<String>> {
        let rows = self
            .query(
                "SELECT object_key FROM media_blobs
                 UNION SELECT thumb_key FROM attachments WHERE thumb_key IS NOT NULL
                 ORDER BY 1",
                params![],
            )
            .await?;
        rows.iter().map(|r| r.string(0)).collect()
    }

    /// Whether some blob, thumbnail or data export is stored under `object_key` (objects that none is
    /// are left over from interrupted uploads or deletions).
    pub async fn object_in_use(&self, object_key: &str) -> Result<bool> {
        let rows = self
            .query(
                "SELECT 1 FROM media_blobs WHERE object_key = $1
                 UNION ALL SELECT 1 FROM attachments WHERE thumb_key = $1
                 UNION ALL SELECT 1 FROM data_exports WHERE object_key = $1",
                params![object_key],
            )
            .await?;
        Ok(!rows.is_empty())
    }

    /// The attachment `rid`.
    pub async fn attachment(&self, rid: &str) -> Result<Option<AttachmentRow>> {
        let rows = self
            .query(
                concat!(
                    "SELECT ",
                    attachment_columns!(),
                    attachment_from!(),
                    "WHERE r.rid = $1"
                ),
                params![rid],
            )
            .await?;
        rows.first().map(attachment).transpose()
    }

    /// The attachments messages of a channel with ids from `first` to `last` name, with the
    /// message naming each (one per pair).
    pub async fn attachments_of_messages(
        &self,
        channel_id: i64,
        first: i64,
        last: i64,
    ) -> Result<Vec<(i64, AttachmentRow)>> {
        let rows = self
            .query(
                concat!(
                    "SELECT ",
                    attachment_columns!(),
                    ", m.id",
                    attachment_from!(),
                    "JOIN message_attachments ma ON ma.rid = r.rid
                     JOIN messages m ON m.id = ma.message_id
                     WHERE m.channel_id = $1 AND m.id BETWEEN $2 AND $3"
                ),
                params![channel_id, first, last],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((r.i64(19)?, attachment(r)?)))
            .collect()
    }

    /// The channels of up to `limit` messages, not deleted, that name attachment `rid`
    /// (whoever may read one of them may read it).
    pub async fn attachment_channels(&self, rid: &str, limit: i64) -> Result<Vec<i64>> {
        let rows = self
            .query(
                "SELECT DISTINCT m.channel_id FROM message_attachments ma
                 JOIN messages m ON m.id = ma.message_id
                 WHERE ma.rid = $1 AND m.deleted_at IS NULL
                 LIMIT $2",
                params![rid, limit],
            )
            .await?;
        rows.iter().map(|r| r.i64(0)).collect()
    }
}
