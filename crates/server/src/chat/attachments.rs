//! Attachments in messages (docs/decisions.md, "Chat attachments").
//!
//! An attachment is a resource of its uploader, private to the RawR routes. A message may
//! name only attachments of this server that its author uploaded; sending (or editing) it
//! links the message to them in the same transaction. Whoever may read a message that names
//! an attachment may read the attachment — its uploader always; anyone else gets the same
//! 404 as for an absent one, so guessing IDs tells nothing. A deleted message links to none.
//! Avatars and guild icons are public image resources of whoever sets them.

use std::collections::HashMap;

use fugue_proto::chat::{Attachment, Message};
use fugue_store::AttachmentRow;

use super::{Chat, Error};
use crate::ids::{from_store, to_store};
use crate::media;
use crate::principal::Actor;

/// How many channels with messages naming one attachment a read looks at.
const CHANNELS_CHECKED: i64 = 100;

impl Chat {
    /// The attachments `urls` of a message by `author`: their resource IDs and details, in
    /// order. Each must be an attachment of this server that the author uploaded.
    pub(super) async fn attached(
        &self,
        author: &Actor,
        urls: &[String],
    ) -> Result<(Vec<String>, Vec<Attachment>), Error> {
        let mut rids = Vec::with_capacity(urls.len());
        let mut details = Vec::with_capacity(urls.len());
        for url in urls {
            let not_yours = || {
                Error::Invalid(format!(
                    "attachment {url} is not one you uploaded to this server (upload it as an attachment first)"
                ))
            };
            let rid = self.media.attachment_rid(url).ok_or_else(not_yours)?;
            let row = match self.media.attachment(rid).await {
                Ok(row) if row.resource.actor_id == author.id.to_store() => row,
                Ok(_) | Err(media::Error::NotFound) => return Err(not_yours()),
                Err(e) => return Err(e.into()),
            };
            if !rids.contains(&row.resource.rid) {
                details.push(self.media.attachment_view(&row));
                rids.push(row.resource.rid);
            }
        }
        Ok((rids, details))
    }

    /// Attachment `rid` if `actor` may read it: its uploader, or a reader of a message (not
    /// deleted) that names it. [`media::Error::NotFound`] otherwise, as for an absent one.
    pub async fn readable_attachment(
        &self,
        actor: &Actor,
        rid: &str,
    ) -> Result<AttachmentRow, Error> {
        let row = self.media.attachment(rid).await?;
        if row.resource.actor_id == actor.id.to_store() {
            return Ok(row);
        }
        for channel in self
            .store
            .attachment_channels(&row.resource.rid, CHANNELS_CHECKED)
            .await?
        {
            match self.channel_access(actor, from_store(channel)).await {
                Ok(_) => return Ok(row),
                Err(Error::ChannelNotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Err(media::Error::NotFound.into())
    }

    /// `page` (messages of channel `channel`) with the details of their attachments, read
    /// at once.
    pub(super) async fn with_attachments(
        &self,
        channel: i64,
        mut page: Vec<Message>,
    ) -> Result<Vec<Message>, Error> {
        let ids = page
            .iter()
            .filter(|m| !m.attachments.is_empty())
            .map(|m| m.id);
        let (Some(first), Some(last)) = (ids.clone().min(), ids.max()) else {
            return Ok(page);
        };
        let rows = self
            .store
            .attachments_of_messages(channel, to_store(first), to_store(last))
            .await?;
        let mut by_message: HashMap<i64, HashMap<String, Attachment>> = HashMap::new();
        for (message, row) in rows {
            by_message
                .entry(message)
                .or_default()
                .insert(row.resource.rid.clone(), self.media.attachment_view(&row));
        }
        for m in &mut page {
            let Some(known) = by_message.get(&to_store(m.id)) else {
                continue;
            };
            m.attachment_details = m
                .attachments
                .iter()
                .filter_map(|url| self.media.attachment_rid(url))
                .filter_map(|rid| known.get(rid).cloned())
                .collect();
        }
        Ok(page)
    }

    /// An avatar or a guild icon as set by `actor`: empty clears it; otherwise the URL of a
    /// public image resource of `actor`'s on this server.
    pub(super) async fn picture(
        &self,
        actor: &Actor,
        url: Option<String>,
    ) -> Result<Option<Option<String>>, Error> {
        match url {
            None => Ok(None),
            Some(url) if url.trim().is_empty() => Ok(Some(None)),
            Some(url) => {
                self.media
                    .public_image_of(actor.id.to_store(), &url)
                    .await?;
                Ok(Some(Some(url)))
            }
        }
    }
}
