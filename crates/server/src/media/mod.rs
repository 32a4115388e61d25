//! Uploaded resources (RawR, core §7.3.1): who may upload, store, read, list and delete
//! them, and where their bytes go.
//!
//! Rules: only actors registered here upload; a resource ID is the uploader's choice,
//! unique on this server; an upload says its size first (`Content-Length`) and is refused
//! before a byte is read when it is larger than one upload may be or than the actor's
//! storage left; its bytes stream to an object while they are hashed, and become a resource
//! only when all arrived and are on disk. The media type is the one the bytes show
//! ([`sniff`]). Reading follows the access properties ([`AccessProperties::admits`]); a
//! reader who may not read a resource is told the same as for an absent one. HTTP lives in
//! `routes.rs`; the objects in [`objects`].

mod error;
pub mod images;
pub mod objects;
pub mod routes;
pub mod sniff;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};

use fugue_proto::chat::{self, Attachment};
use fugue_proto::rawr::{
    AccessEntry, AccessProperties, Preview, Reader, ResourceId, ResourceInformation,
    ResourceListEntry, ResourceSort, Usage,
};
use fugue_proto::{DomainName, FederationId, LocalName};
use fugue_store::{
    AttachmentMeta, AttachmentRow, NewResource, ResourceOrder, ResourceRow, Store, Thumbnail,
};

pub use error::Error;
pub use objects::Objects;

use crate::config;
use crate::ids::{from_store, to_store};
use crate::sessions::Authed;
use crate::time::UnixTime;

/// Resources listed at once by default, and at most.
pub const LIST_DEFAULT: u64 = 50;
pub const LIST_MAX: u64 = 1000;
/// Largest resource whose whole content a list shows as its preview.
pub const PREVIEW_MAX: u64 = 64 * 1024;
/// How old an object must be before a sweep may delete it for being unnamed: far longer
/// than any upload takes from finishing its object to storing its row.
const SWEEP_AGE: Duration = Duration::from_secs(3600);

/// The media domain.
#[derive(Clone)]
pub struct Media {
    store: Store,
    domain: DomainName,
    /// Where this server is reached: attachments are named by URLs below it.
    public_url: String,
    config: config::Media,
    /// `None` when the server offers no RawR (no media directory configured).
    objects: Option<Arc<Objects>>,
    /// One image is read and decoded at a time: each may take up to [`images::MAX_ALLOC`]
    /// (and [`images::MAX_READ`] first, from a bucket).
    decoding: Arc<tokio::sync::Semaphore>,
}

/// An upload's bytes, written whole to an object.
struct Received {
    key: String,
    hash: Vec<u8>,
    length: u64,
    content_type: &'static str,
}

/// A resource to send: its bytes and what the response says about them.
pub struct Download {
    pub object: objects::ObjectReader,
    pub rid: ResourceId,
    pub size: u64,
    pub content_type: String,
    /// SHA-256 of the bytes, hex: the entity tag.
    pub hash: String,
    pub public: bool,
}

impl Media {
    /// Opens the object store of `config.dir`, if one is configured.
    pub async fn open(
        store: Store,
        domain: DomainName,
        public_url: &str,
        config: config::Media,
    ) -> std::io::Result<Self> {
        let objects = Objects::open(&config).await?.map(Arc::new);
        Ok(Self {
            store,
            domain,
            public_url: public_url.trim_end_matches('/').to_owned(),
            config,
            objects,
            decoding: Arc::new(tokio::sync::Semaphore::new(1)),
        })
    }

    fn objects(&self) -> Result<&Objects, Error> {
        self.objects.as_deref().ok_or(Error::Disabled)
    }

    /// The objects, shared (`None` when the server stores none).
    pub fn shared_objects(&self) -> Option<Arc<Objects>> {
        self.objects.clone()
    }

    /// `POST /resource/{rid}`: stores `body` (announced as `length` bytes) as resource
    /// `rid` of the caller.
    pub async fn upload<S, E>(
        &self,
        authed: &Authed,
        rid: &str,
        access: Option<&str>,
        length: Option<u64>,
        body: S,
        now: UnixTime,
    ) -> Result<(), Error>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let rid: ResourceId = rid.parse()?;
        let access = match access {
            Some(raw) => AccessProperties::from_query(raw).map_err(Error::InvalidAccess)?,
            None => AccessProperties::default(),
        };
        self.upload_as(authed, &rid, &access, length, body, now)
            .await
    }

    /// Stores `body` (announced as `length` bytes) as resource `rid` of the caller with
    /// `access`: an upload, or a resource an import brings.
    pub async fn upload_as<S, E>(
        &self,
        authed: &Authed,
        rid: &ResourceId,
        access: &AccessProperties,
        length: Option<u64>,
        body: S,
        now: UnixTime,
    ) -> Result<(), Error>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        self.objects()?;
        if !authed.actor.is_local() {
            return Err(Error::UploadForbidden);
        }
        let access = access.clone().normalized().map_err(Error::InvalidAccess)?;
        let actor = authed.actor.id.to_store();
        let length = self.admit(actor, length).await?;
        if self.store.resource(rid.as_str()).await?.is_some() {
            return Err(Error::DuplicateRid);
        }
        let got = self.receive(length, body).await?;
        let new = NewResource {
            rid: rid.to_string(),
            actor_id: actor,
            hash: got.hash,
            size: to_store(got.length),
            content_type: got.content_type.to_owned(),
            private: access.private,
            public: access.public,
            allowlist: access.allowlist.iter().map(ToString::to_string).collect(),
            denylist: access.denylist.iter().map(ToString::to_string).collect(),
            created_at: now.to_store(),
            object_key: got.key,
            attachment: None,
        };
        self.keep(&new).await
    }

    /// `POST /.p2/chat/v1/attachments`: stores `body` as an attachment of the caller (any
    /// actor with a session here), private to the RawR routes — who else may read it is
    /// the chat's to say — and describes it when it is an image.
    pub async fn upload_attachment<S, E>(
        &self,
        authed: &Authed,
        filename: Option<&str>,
        length: Option<u64>,
        body: S,
        now: UnixTime,
    ) -> Result<Attachment, Error>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        self.objects()?;
        let filename = filename.map(valid_filename).transpose()?;
        let actor = authed.actor.id.to_store();
        let length = self.admit(actor, length).await?;
        let got = self.receive(length, body).await?;
        let mut meta = AttachmentMeta {
            filename: filename.map(str::to_owned),
            ..AttachmentMeta::default()
        };
        if let Some(format) = images::format_of(got.content_type) {
            self.describe(&got.key, format, &mut meta).await?;
        }
        let mut raw = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut raw);
        let new = NewResource {
            rid: hex::encode(raw),
            actor_id: actor,
            hash: got.hash,
            size: to_store(got.length),
            content_type: got.content_type.to_owned(),
            private: true,
            public: false,
            allowlist: Vec::new(),
            denylist: Vec::new(),
            created_at: now.to_store(),
            object_key: got.key,
            attachment: Some(meta),
        };
        let kept = self.keep(&new).await;
        if kept.is_err()
            && let Some(t) = new.attachment.as_ref().and_then(|a| a.thumbnail.as_ref())
        {
            self.drop_object(&t.object_key).await;
        }
        kept?;
        let row = self
            .store
            .attachment(&new.rid)
            .await?
            .ok_or(Error::NotFound)?;
        Ok(self.attachment_view(&row))
    }

    /// Dimensions, placeholder and thumbnail of the image in object `key`; an image that
    /// does not decode within the limits gets what could be found (or nothing).
    async fn describe(
        &self,
        key: &str,
        format: image::ImageFormat,
        meta: &mut AttachmentMeta,
    ) -> Result<(), Error> {
        let objects = self.objects()?;
        // The turn first: an object from a bucket is read into memory before it is decoded.
        let _permit = self
            .decoding
            .acquire()
            .await
            .map_err(|e| Error::Io(std::io::Error::other(e)))?;
        let reader = match objects
            .open_read(key)
            .await?
            .into_blocking(images::MAX_READ)
            .await
        {
            Ok(reader) => reader,
            Err(e) if e.kind() == std::io::ErrorKind::FileTooLarge => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        // A decoder that fails — or panics on hostile bytes — leaves the file undescribed,
        // never the upload failed.
        let d = match tokio::task::spawn_blocking(move || images::describe(reader, format)).await {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, key, "an image attachment is kept undescribed");
                return Ok(());
            }
            Err(e) => {
                tracing::warn!(error = %e, key, "describing an image attachment failed");
                return Ok(());
            }
        };
        meta.width = Some(i64::from(d.width));
        meta.height = Some(i64::from(d.height));
        meta.placeholder = d.placeholder;
        if let Some(t) = d.thumbnail {
            let mut object = objects.create(t.bytes.len() as u64).await?;
            object.write(&t.bytes).await?;
            meta.thumbnail = Some(Thumbnail {
                object_key: objects.finish(object).await?,
                content_type: t.content_type.to_owned(),
                size: to_store(t.bytes.len() as u64),
            });
        }
        Ok(())
    }

    /// The announced length of an upload by `actor`, if it may store that much.
    async fn admit(&self, actor: i64, length: Option<u64>) -> Result<u64, Error> {
        let length = length.ok_or(Error::LengthRequired)?;
        let left = self.left(actor).await?;
        if length > self.config.max_upload_bytes || length > left {
            return Err(self.too_large(left));
        }
        Ok(length)
    }

    /// Streams `body` (announced as `length` bytes) into a new object while hashing it.
    async fn receive<S, E>(&self, length: u64, mut body: S) -> Result<Received, Error>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let objects = self.objects()?;
        let mut object = objects.create(length).await?;
        let mut hasher = Sha256::new();
        let mut head = Vec::with_capacity(sniff::HEAD);
        let mut received = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| Error::BodyFailed(e.to_string()))?;
            received += chunk.len() as u64;
            if received > length {
                return Err(Error::LengthMismatch);
            }
            let room = sniff::HEAD.saturating_sub(head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..room]);
            hasher.update(&chunk);
            object.write(&chunk).await?;
        }
        if received != length {
            return Err(Error::LengthMismatch);
        }
        Ok(Received {
            key: objects.finish(object).await?,
            hash: hasher.finalize().to_vec(),
            length,
            content_type: sniff::sniff(&head),
        })
    }

    /// Stores the resource `new` names; its object goes when it is not needed (refused, or
    /// the same content is stored already).
    async fn keep(&self, new: &NewResource) -> Result<(), Error> {
        let stored = self
            .store
            .insert_resource(new, to_store(self.config.quota_bytes))
            .await;
        if stored
            .as_ref()
            .map_or(true, |s| s.object_key != new.object_key)
        {
            self.drop_object(&new.object_key).await;
        }
        match stored {
            Ok(_) => Ok(()),
            Err(fugue_store::Error::Unique(_)) => Err(Error::DuplicateRid),
            Err(fugue_store::Error::Conflict(fugue_store::Conflict::QuotaExceeded)) => {
                Err(self.too_large(self.left(new.actor_id).await?))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes an object nothing names; the answer stands either way (what is left here
    /// is swept).
    async fn drop_object(&self, key: &str) {
        if let Ok(objects) = self.objects()
            && let Err(e) = objects.delete(key).await
        {
            tracing::warn!(error = %e, key, "deleting an unneeded object failed");
        }
    }

    /// Whether resources of `largest` bytes at most and `total` bytes together fit one
    /// upload's limit and the storage `actor` has left (an import brings several).
    pub async fn admits(&self, actor: i64, largest: u64, total: u64) -> Result<(), Error> {
        let left = self.left(actor).await?;
        if largest > self.config.max_upload_bytes || total > left {
            return Err(self.too_large(left));
        }
        Ok(())
    }

    /// The bytes one actor may store.
    pub fn quota_bytes(&self) -> u64 {
        self.config.quota_bytes
    }

    /// The bytes an actor may still store.
    async fn left(&self, actor: i64) -> Result<u64, Error> {
        let used = from_store(self.store.resource_usage(actor).await?);
        Ok(self.config.quota_bytes.saturating_sub(used))
    }

    fn too_large(&self, left: u64) -> Error {
        Error::TooLarge {
            max_upload: self.config.max_upload_bytes,
            remaining: left,
        }
    }

    /// The resource `rid` if `reader` may read it. Without a session, anything that is not
    /// public answers [`Error::AuthRequired`], whether it exists or not; with one, a resource
    /// the reader may not read answers [`Error::NotFound`], as an absent one does.
    async fn readable(&self, reader: Option<&Authed>, rid: &str) -> Result<ResourceRow, Error> {
        self.objects()?;
        let row = match self.store.resource(rid).await? {
            Some(row) => Some(row),
            // `<rid>.<ext>`, the extension of its type (core §7.3.2's example).
            None => match rid.rsplit_once('.') {
                Some((base, ext)) => self.store.resource(base).await?.filter(|row| {
                    sniff::extension(&row.content_type).is_some_and(|e| e.eq_ignore_ascii_case(ext))
                }),
                None => None,
            },
        };
        let (who, hidden) = match reader {
            Some(authed) => (Reader::Actor(&authed.actor.fid), Error::NotFound),
            None => (Reader::Anonymous, Error::AuthRequired),
        };
        match row {
            Some(row) if access_of(&row)?.admits(&self.owner(&row)?, who) => Ok(row),
            _ => Err(hidden),
        }
    }

    fn owner(&self, row: &ResourceRow) -> Result<FederationId, Error> {
        let local: LocalName = row.owner.parse().map_err(|_| corrupt(row, "owner name"))?;
        Ok(FederationId::new(local, self.domain.clone()))
    }

    /// `GET /resource/{rid}`.
    pub async fn download(&self, reader: Option<&Authed>, rid: &str) -> Result<Download, Error> {
        let row = self.readable(reader, rid).await?;
        let object = self.objects()?.open_read(&row.object_key).await?;
        Ok(Download {
            object,
            rid: rid_of(&row)?,
            size: from_store(row.size),
            content_type: row.content_type,
            hash: hex::encode(&row.hash),
            public: row.public,
        })
    }

    /// `GET /resource/{rid}/info`.
    pub async fn info(
        &self,
        reader: Option<&Authed>,
        rid: &str,
    ) -> Result<ResourceInformation, Error> {
        information(&self.readable(reader, rid).await?)
    }

    /// `GET /resource/resources`: the caller's resources.
    pub async fn list(
        &self,
        authed: &Authed,
        limit: Option<u64>,
        sort: ResourceSort,
        previews: bool,
    ) -> Result<Vec<ResourceListEntry>, Error> {
        self.objects()?;
        let limit = limit.unwrap_or(LIST_DEFAULT);
        if !(1..=LIST_MAX).contains(&limit) {
            return Err(Error::InvalidRequest(format!(
                "limit must be 1 to {LIST_MAX}"
            )));
        }
        let order = match sort {
            ResourceSort::SizeAsc => ResourceOrder::SizeAsc,
            ResourceSort::SizeDesc => ResourceOrder::SizeDesc,
            ResourceSort::NewestFirst => ResourceOrder::NewestFirst,
            ResourceSort::OldestFirst => ResourceOrder::OldestFirst,
        };
        let rows = self
            .store
            .resources_of(authed.actor.id.to_store(), order, to_store(limit))
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let preview = if previews {
                self.preview(&row).await?
            } else {
                None
            };
            out.push(ResourceListEntry {
                resource_information: information(&row)?,
                preview,
            });
        }
        Ok(out)
    }

    /// A small image or text, whole, as its preview.
    async fn preview(&self, row: &ResourceRow) -> Result<Option<Preview>, Error> {
        use base64::Engine;
        let previewable =
            row.content_type.starts_with("image/") || row.content_type == "text/plain";
        if !previewable
            || !sniff::inline_safe(&row.content_type)
            || from_store(row.size) > PREVIEW_MAX
        {
            return Ok(None);
        }
        let bytes = self
            .objects()?
            .open_read(&row.object_key)
            .await?
            .read_all()
            .await?;
        Ok(Some(Preview {
            content_type: Some(row.content_type.clone()),
            filename: Some(row.rid.clone()),
            contents: base64::engine::general_purpose::STANDARD.encode(bytes),
        }))
    }

    /// `GET /resource/usage`.
    pub async fn usage(&self, authed: &Authed) -> Result<Usage, Error> {
        self.objects()?;
        let used = from_store(
            self.store
                .resource_usage(authed.actor.id.to_store())
                .await?,
        );
        Ok(Usage {
            limit: self.config.quota_bytes,
            used,
        })
    }

    /// `PUT /resource/{rid}`: replaces the access properties of a resource of the caller.
    pub async fn set_access(
        &self,
        authed: &Authed,
        rid: &str,
        access: AccessProperties,
    ) -> Result<(), Error> {
        self.objects()?;
        let access = access.normalized().map_err(Error::InvalidAccess)?;
        let names = |list: &[AccessEntry]| list.iter().map(ToString::to_string).collect::<Vec<_>>();
        match self
            .store
            .set_resource_access(
                rid,
                authed.actor.id.to_store(),
                access.private,
                access.public,
                &names(&access.allowlist),
                &names(&access.denylist),
            )
            .await
        {
            Err(fugue_store::Error::Conflict(fugue_store::Conflict::ResourceMissing)) => {
                Err(Error::NotFound)
            }
            other => Ok(other?),
        }
    }

    /// `DELETE /resource/{rid}`: deletes a resource of the caller, and its bytes when no
    /// other resource has the same.
    pub async fn delete(&self, authed: &Authed, rid: &str) -> Result<(), Error> {
        let objects = self.objects()?;
        let unused = match self
            .store
            .delete_resource(rid, authed.actor.id.to_store())
            .await
        {
            Err(fugue_store::Error::Conflict(fugue_store::Conflict::ResourceMissing)) => {
                return Err(Error::NotFound);
            }
            other => other?,
        };
        for key in unused {
            // A failure leaves an unnamed object, which the sweep deletes.
            if let Err(e) = objects.delete(&key).await {
                tracing::warn!(error = %e, key, "deleting an unused object failed");
            }
        }
        Ok(())
    }

    /// The attachment `rid` (who may read it is the chat's to say).
    pub async fn attachment(&self, rid: &str) -> Result<AttachmentRow, Error> {
        self.objects()?;
        self.store.attachment(rid).await?.ok_or(Error::NotFound)
    }

    /// An attachment's bytes, or its thumbnail's ([`Error::NotFound`] when it has none).
    pub async fn open_attachment(
        &self,
        row: &AttachmentRow,
        thumbnail: bool,
    ) -> Result<Download, Error> {
        let r = &row.resource;
        let (key, size, content_type, hash) = match (&row.meta.thumbnail, thumbnail) {
            (_, false) => (
                &r.object_key,
                from_store(r.size),
                r.content_type.clone(),
                hex::encode(&r.hash),
            ),
            (Some(t), true) => (
                &t.object_key,
                from_store(t.size),
                t.content_type.clone(),
                format!("{}-thumbnail", hex::encode(&r.hash)),
            ),
            (None, true) => return Err(Error::NotFound),
        };
        Ok(Download {
            object: self.objects()?.open_read(key).await?,
            rid: rid_of(r)?,
            size,
            content_type,
            hash,
            public: false,
        })
    }

    /// An attachment as uploads and messages describe it.
    pub fn attachment_view(&self, row: &AttachmentRow) -> Attachment {
        let r = &row.resource;
        let url = chat::attachment_url(&self.public_url, &r.rid);
        let dimension = |v: Option<i64>| v.and_then(|v| u32::try_from(v).ok());
        Attachment {
            id: r.rid.clone(),
            size: from_store(r.size),
            content_type: r.content_type.clone(),
            filename: row.meta.filename.clone(),
            width: dimension(row.meta.width),
            height: dimension(row.meta.height),
            placeholder: row.meta.placeholder.clone(),
            thumbnail: row.meta.thumbnail.as_ref().map(|_| {
                format!(
                    "{}{}",
                    self.public_url,
                    fugue_proto::api::attachment_thumbnail::path(&r.rid)
                )
            }),
            url,
        }
    }

    /// The resource ID of `url` when it names an attachment of this server.
    pub fn attachment_rid<'a>(&self, url: &'a str) -> Option<&'a str> {
        chat::attachment_rid(&self.public_url, url)
    }

    /// The resource ID of `url` when it names a public image resource of this server that
    /// `owner` uploaded (what an avatar or a guild icon must be).
    pub async fn public_image_of(&self, owner: i64, url: &str) -> Result<String, Error> {
        let not_one = || {
            Error::InvalidRequest(format!(
                "{url} is no public image of yours on this server: upload one with public access"
            ))
        };
        let rid = url
            .strip_prefix(self.public_url.as_str())
            .and_then(|rest| rest.strip_prefix(fugue_proto::api::RESOURCES))
            .ok_or_else(not_one)?;
        match self.store.resource(rid).await? {
            Some(row)
                if row.actor_id == owner
                    && row.public
                    && images::format_of(&row.content_type).is_some() =>
            {
                Ok(row.rid)
            }
            _ => Err(not_one()),
        }
    }

    /// Deletes objects that no blob names and that are older than an upload can take:
    /// what crashes between writing an object and storing its row, or between deleting a
    /// row and its object, left behind. Returns how many went.
    pub async fn sweep(&self) -> Result<usize, Error> {
        let Some(objects) = self.objects.as_deref() else {
            return Ok(0);
        };
        let mut deleted = 0;
        for key in objects.older_than(SWEEP_AGE).await? {
            if !self.store.object_in_use(&key).await? {
                objects.delete(&key).await?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}

/// A file name as given, if it is one: 1 to [`chat::MAX_FILENAME`] characters, no control
/// characters, no path.
fn valid_filename(name: &str) -> Result<&str, Error> {
    let ok = !name.trim().is_empty()
        && name.chars().count() <= chat::MAX_FILENAME
        && !name
            .chars()
            .any(|c| c.is_control() || c == '/' || c == '\\')
        && name != "."
        && name != "..";
    if ok {
        Ok(name)
    } else {
        Err(Error::InvalidRequest(format!(
            "a file name has 1 to {} characters, none of them control characters or slashes",
            chat::MAX_FILENAME
        )))
    }
}

fn corrupt(row: &ResourceRow, what: &str) -> Error {
    Error::Store(fugue_store::Error::Decode(format!(
        "stored resource {}: {what} does not parse",
        row.rid
    )))
}

fn rid_of(row: &ResourceRow) -> Result<ResourceId, Error> {
    row.rid.parse().map_err(|_| corrupt(row, "ID"))
}

/// The access properties of a stored resource.
pub(crate) fn access_of(row: &ResourceRow) -> Result<AccessProperties, Error> {
    let entries = |list: &[String]| -> Result<Vec<AccessEntry>, Error> {
        list.iter()
            .map(|e| e.parse().map_err(|_| corrupt(row, "access entry")))
            .collect()
    };
    Ok(AccessProperties {
        private: row.private,
        public: row.public,
        allowlist: entries(&row.allowlist)?,
        denylist: entries(&row.denylist)?,
    })
}

fn information(row: &ResourceRow) -> Result<ResourceInformation, Error> {
    Ok(ResourceInformation {
        resource_id: rid_of(row)?,
        size: from_store(row.size),
        access: access_of(row)?,
        content_type: Some(row.content_type.clone()),
        created_at: Some(from_store(row.created_at)),
    })
}
