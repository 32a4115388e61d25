//! Resources (RawR, core §7.3.1): uploading files, reading them back, listing and sharing
//! them.
//!
//! Uploads and downloads stream: a file of any size costs a few buffers of memory. A
//! public resource can be read without a session ([`Client::download_resource`] with no
//! token); every other call needs one.

use std::path::Path;
use std::time::Duration;

use fugue_proto::api::{
    delete_resource, get_resource, list_resources, resource_info, resource_usage,
    set_resource_access, upload_resource,
};
use fugue_proto::rawr::{
    AccessProperties, ResourceId, ResourceInformation, ResourceListEntry, ResourceSort, Usage,
};
use reqwest::StatusCode;
use tokio::io::AsyncWriteExt;

use crate::error::{Error, Result, transport};
use crate::http::{Client, send};
use crate::session::Session;

/// How long one upload or download may take: long enough for large files on slow links.
pub(crate) const TRANSFER_TIMEOUT: Duration = Duration::from_secs(3600);

/// What a download wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    pub bytes: u64,
    /// The media type the server sent (`application/octet-stream` for what it serves only
    /// as a download).
    pub content_type: Option<String>,
}

impl Client {
    /// Writes resource `rid` to `out`, as the holder of `token` (none: only a public
    /// resource can be read).
    pub async fn download_resource(
        &self,
        token: Option<&str>,
        rid: &str,
        out: &mut (impl tokio::io::AsyncWrite + Unpin),
    ) -> Result<Downloaded> {
        let mut request = self.request(get_resource::target(rid))?;
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        receive(request, rid, out).await
    }

    /// Information about resource `rid`, as the holder of `token` sees it.
    pub async fn resource_info(
        &self,
        token: Option<&str>,
        rid: &str,
    ) -> Result<ResourceInformation> {
        let mut request = self.request(resource_info::target(rid))?;
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let mut list: Vec<ResourceInformation> = self.send_json(request).await?;
        match (list.pop(), list.is_empty()) {
            (Some(info), true) => Ok(info),
            _ => Err(Error::UnexpectedResponse(
                "resource information is a list of one".into(),
            )),
        }
    }
}

impl Session {
    /// Uploads `length` bytes from `body` as resource `rid`.
    pub async fn upload_resource(
        &self,
        rid: &ResourceId,
        access: &AccessProperties,
        body: impl Into<reqwest::Body>,
        length: u64,
    ) -> Result<()> {
        let query = upload_resource::Query {
            resource_access_properties: Some(access.to_query()),
        };
        let request = self.authed_query(upload_resource::target(rid), &query)?;
        send(with_body(request, body, length)).await?;
        Ok(())
    }

    /// Uploads the file at `path` as resource `rid`, streaming it.
    pub async fn upload_file(
        &self,
        rid: &ResourceId,
        access: &AccessProperties,
        path: &Path,
    ) -> Result<()> {
        let (body, length) = file_body(path).await?;
        self.upload_resource(rid, access, body, length).await
    }

    /// Writes resource `rid` to `out`.
    pub async fn download_resource(
        &self,
        rid: &str,
        out: &mut (impl tokio::io::AsyncWrite + Unpin),
    ) -> Result<Downloaded> {
        self.client()
            .download_resource(Some(self.token()), rid, out)
            .await
    }

    pub async fn resource_info(&self, rid: &str) -> Result<ResourceInformation> {
        self.client().resource_info(Some(self.token()), rid).await
    }

    /// This actor's resources, up to `limit` (the server's default without), in `sort`
    /// order; with `previews`, small images and texts carry their content.
    pub async fn resources(
        &self,
        limit: Option<u64>,
        sort: ResourceSort,
        previews: bool,
    ) -> Result<Vec<ResourceListEntry>> {
        let query = list_resources::Query {
            limit,
            sort: Some(sort),
            previews: Some(previews),
        };
        let response = send(self.authed_query(list_resources::target(), &query)?).await?;
        if response.status() == StatusCode::NO_CONTENT {
            return Ok(Vec::new());
        }
        self.client().read_json(response).await
    }

    /// This actor's storage limit and use.
    pub async fn resource_usage(&self) -> Result<Usage> {
        self.client()
            .send_json(self.authed(resource_usage::target())?)
            .await
    }

    /// Replaces who may read resource `rid`.
    pub async fn set_resource_access(
        &self,
        rid: &ResourceId,
        access: &AccessProperties,
    ) -> Result<()> {
        send(self.authed(set_resource_access::target(rid))?.json(access)).await?;
        Ok(())
    }

    pub async fn delete_resource(&self, rid: &ResourceId) -> Result<()> {
        send(self.authed(delete_resource::target(rid))?).await?;
        Ok(())
    }
}

/// Sends `request` and writes the bytes of its answer (`what`, for errors) to `out`.
pub(crate) async fn receive(
    request: reqwest::RequestBuilder,
    what: &str,
    out: &mut (impl tokio::io::AsyncWrite + Unpin),
) -> Result<Downloaded> {
    let response = send(request.timeout(TRANSFER_TIMEOUT)).await?;
    write_body(response, what, out).await
}

/// Writes the body of `response` (`what`, for errors) to `out`, checking that as many
/// bytes arrived as were announced.
pub(crate) async fn write_body(
    mut response: reqwest::Response,
    what: &str,
    out: &mut (impl tokio::io::AsyncWrite + Unpin),
) -> Result<Downloaded> {
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let announced = response.content_length();
    let mut bytes = 0u64;
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        bytes += chunk.len() as u64;
        out.write_all(&chunk)
            .await
            .map_err(|e| Error::Transport(format!("cannot write the download: {e}")))?;
    }
    out.flush()
        .await
        .map_err(|e| Error::Transport(format!("cannot write the download: {e}")))?;
    if announced.is_some_and(|n| n != bytes) {
        return Err(Error::UnexpectedResponse(format!(
            "the download of {what} ended after {bytes} of {announced:?} bytes"
        )));
    }
    Ok(Downloaded {
        bytes,
        content_type,
    })
}

/// The file at `path`, opened to stream, and its length.
pub(crate) async fn file_body(path: &Path) -> Result<(reqwest::Body, u64)> {
    let io = |e: std::io::Error| Error::Transport(format!("{}: {e}", path.display()));
    let file = tokio::fs::File::open(path).await.map_err(io)?;
    let length = file.metadata().await.map_err(io)?.len();
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024);
    Ok((reqwest::Body::wrap_stream(stream), length))
}

/// An upload's request: `length` bytes from `body`, within [`TRANSFER_TIMEOUT`].
pub(crate) fn with_body(
    request: reqwest::RequestBuilder,
    body: impl Into<reqwest::Body>,
    length: u64,
) -> reqwest::RequestBuilder {
    request
        .timeout(TRANSFER_TIMEOUT)
        .header(reqwest::header::CONTENT_LENGTH, length)
        .body(body)
}
