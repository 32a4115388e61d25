//! Attachments: files uploaded to the server a conversation lives on, then named in a
//! signed message by their URLs. Reading one needs a session that may read a message naming
//! it (or the uploader's).

use std::path::Path;

use fugue_proto::api::{
    attachment_details, attachment_thumbnail, get_attachment, get_resource, upload_attachment,
};
use fugue_proto::chat::Attachment;
use fugue_proto::rawr::{AccessProperties, ResourceId};

use super::Chat;
use crate::error::Result;
use crate::media::{Downloaded, file_body, receive, with_body};

impl Chat {
    /// Uploads `length` bytes from `body` as an attachment named `filename`.
    pub async fn upload_attachment(
        &self,
        body: impl Into<reqwest::Body>,
        length: u64,
        filename: Option<&str>,
    ) -> Result<Attachment> {
        let query = upload_attachment::Query {
            filename: filename.map(str::to_owned),
        };
        let request = self.authed_query(upload_attachment::target(), &query)?;
        self.json(with_body(request, body, length)).await
    }

    /// Uploads the file at `path`, streaming it, under its file name.
    pub async fn upload_attachment_file(&self, path: &Path) -> Result<Attachment> {
        let (body, length) = file_body(path).await?;
        let name = path.file_name().and_then(|n| n.to_str());
        self.upload_attachment(body, length, name).await
    }

    /// Writes attachment `rid` (or its thumbnail) to `out`.
    pub async fn download_attachment(
        &self,
        rid: &str,
        thumbnail: bool,
        out: &mut (impl tokio::io::AsyncWrite + Unpin),
    ) -> Result<Downloaded> {
        let target = if thumbnail {
            attachment_thumbnail::target(rid)
        } else {
            get_attachment::target(rid)
        };
        receive(self.authed(target)?, rid, out).await
    }

    /// Uploads the image at `path` as a public resource of this actor's home server and
    /// answers its URL: what an avatar or a guild icon there is set to.
    pub async fn upload_picture(&self, path: &Path) -> Result<String> {
        let mut raw = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut raw);
        let rid: ResourceId = format!("{:032x}", u128::from_le_bytes(raw))
            .parse()
            .map_err(|e| crate::Error::UnexpectedResponse(format!("resource ID: {e}")))?;
        let public = AccessProperties {
            public: true,
            ..AccessProperties::default()
        };
        self.signer.upload_file(&rid, &public, path).await?;
        // The server types it by its bytes; what is no raster image is no picture.
        let info = self.signer.resource_info(rid.as_str()).await?;
        let kind = info.content_type.unwrap_or_default();
        if !matches!(
            kind.as_str(),
            "image/png" | "image/jpeg" | "image/gif" | "image/webp"
        ) {
            self.signer.delete_resource(&rid).await?;
            return Err(crate::Error::Invalid(format!(
                "{} is no PNG, JPEG, GIF or WebP image (its bytes say {kind})",
                path.display()
            )));
        }
        Ok(format!(
            "{}{}",
            self.signer.client().base_url().trim_end_matches('/'),
            get_resource::path(rid.as_str())
        ))
    }

    /// What the server knows of attachment `rid`.
    pub async fn attachment(&self, rid: &str) -> Result<Attachment> {
        self.json(self.authed(attachment_details::target(rid))?)
            .await
    }
}
