//! Objects in an S3-compatible bucket (Garage, MinIO, AWS S3, …), under `objects/<key>`:
//! what several nodes share. Requests are signed by `rusty-s3` (SigV4, presigned) and sent
//! with the server's HTTP client.
//!
//! An object of at most [`PART`] bytes goes up in one `PUT`; a larger one as a multipart
//! upload of [`PART`]-sized parts, which the bucket shows only once it is completed — an
//! upload dropped unfinished is aborted, and one a crash cut off never becomes an object.
//! Its length is known in advance (an upload announces it), so each request streams its
//! bytes as they arrive, with its `Content-Length`: a few chunks in flight, no part held.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use rusty_s3::{Credentials, S3Action, UrlStyle};

use crate::config;

/// Bytes sent per part of a multipart upload (S3 wants at least 5 MiB but for the last).
pub const PART: usize = 8 * 1024 * 1024;
/// How long a signed request stays valid: longer than any one request takes.
const SIGNED_FOR: Duration = Duration::from_secs(3600);
/// Where the objects are in the bucket.
const PREFIX: &str = "objects/";
/// Keys listed per request of a sweep.
const LIST_PAGE: usize = 1000;

/// A bucket of objects.
#[derive(Clone)]
pub struct Bucket(Arc<Inner>);

struct Inner {
    http: reqwest::Client,
    bucket: rusty_s3::Bucket,
    credentials: Credentials,
}

/// Chunks queued between an upload and the request that streams them.
const IN_FLIGHT: usize = 8;

/// An object being uploaded.
pub struct S3Writer {
    inner: Arc<Inner>,
    key: String,
    /// Its announced length, and how much of it arrived.
    length: u64,
    written: u64,
    /// The request streaming the current part (or the whole object) and its feed.
    sending: Option<Sending>,
    multipart: Option<Multipart>,
    done: bool,
}

/// A request under way: its body's feed, the bytes it still takes, and its answer (the
/// part's entity tag).
struct Sending {
    feed: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
    left: u64,
    answer: tokio::task::JoinHandle<std::io::Result<String>>,
}

/// A multipart upload under way: its id and the entity tags of the parts sent.
struct Multipart {
    id: String,
    etags: Vec<String>,
}

/// An object being read: the answer to its `GET`.
pub struct S3Reader(reqwest::Response);

fn io(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("object store: {e}"))
}

fn object(key: &str) -> String {
    format!("{PREFIX}{key}")
}

impl Bucket {
    /// The bucket `c` names, once it answers.
    pub async fn open(c: &config::S3) -> std::io::Result<Self> {
        let endpoint = c
            .endpoint
            .parse()
            .map_err(|e| io(format!("media.s3_endpoint {:?}: {e}", c.endpoint)))?;
        let style = if c.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = rusty_s3::Bucket::new(endpoint, style, c.bucket.clone(), c.region.clone())
            .map_err(|e| io(format!("media.s3_endpoint {:?}: {e}", c.endpoint)))?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(io)?;
        let inner = Inner {
            http,
            bucket,
            credentials: Credentials::new(c.access_key.clone(), c.secret_key.clone()),
        };
        let url = inner
            .bucket
            .head_bucket(Some(&inner.credentials))
            .sign(SIGNED_FOR);
        let answer = inner.http.head(url).send().await.map_err(io)?;
        if !answer.status().is_success() {
            return Err(io(format!(
                "bucket {} at {} answers {}",
                c.bucket,
                c.endpoint,
                answer.status()
            )));
        }
        Ok(Self(Arc::new(inner)))
    }

    /// Starts a new object of `length` bytes under a fresh key (nothing is sent before its
    /// first bytes).
    pub fn create(&self, length: u64) -> S3Writer {
        S3Writer {
            inner: self.0.clone(),
            key: super::new_key(),
            length,
            written: 0,
            sending: None,
            multipart: None,
            done: false,
        }
    }

    pub async fn open_read(&self, key: &str) -> std::io::Result<S3Reader> {
        let name = object(key);
        let url = self
            .0
            .bucket
            .get_object(Some(&self.0.credentials), &name)
            .sign(SIGNED_FOR);
        let answer = self.0.http.get(url).send().await.map_err(io)?;
        if answer.status() == reqwest::StatusCode::NOT_FOUND {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no object {key}"),
            ));
        }
        Ok(S3Reader(checked(answer, "GET").await?))
    }

    /// Deletes an object (absent is fine: S3 answers 204 either way).
    pub async fn delete(&self, key: &str) -> std::io::Result<()> {
        let name = object(key);
        let url = self
            .0
            .bucket
            .delete_object(Some(&self.0.credentials), &name)
            .sign(SIGNED_FOR);
        let answer = self.0.http.delete(url).send().await.map_err(io)?;
        if answer.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(());
        }
        checked(answer, "DELETE").await.map(drop)
    }

    /// The keys of objects last written before `age` ago.
    pub async fn older_than(&self, age: Duration) -> std::io::Result<Vec<String>> {
        let cutoff = jiff::Timestamp::now()
            .checked_sub(jiff::SignedDuration::try_from(age).map_err(io)?)
            .map_err(io)?;
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut list = self.0.bucket.list_objects_v2(Some(&self.0.credentials));
            list.with_prefix(PREFIX);
            list.with_max_keys(LIST_PAGE);
            if let Some(t) = &token {
                list.with_continuation_token(t.clone());
            }
            let url = list.sign(SIGNED_FOR);
            let answer = self.0.http.get(url).send().await.map_err(io)?;
            let text = checked(answer, "LIST").await?.text().await.map_err(io)?;
            let page = rusty_s3::actions::ListObjectsV2::parse_response(&text).map_err(io)?;
            for o in page.contents {
                let written: jiff::Timestamp = o.last_modified.parse().map_err(io)?;
                if written < cutoff
                    && let Some(key) = o.key.strip_prefix(PREFIX)
                {
                    keys.push(key.to_owned());
                }
            }
            match page.next_continuation_token {
                Some(t) => token = Some(t),
                None => return Ok(keys),
            }
        }
    }
}

/// `answer` when it is a success; otherwise an error naming `what` and the store's words.
async fn checked(answer: reqwest::Response, what: &str) -> std::io::Result<reqwest::Response> {
    if answer.status().is_success() {
        return Ok(answer);
    }
    let status = answer.status();
    let body = answer.text().await.unwrap_or_default();
    let body: String = body.chars().take(300).collect();
    Err(io(format!("{what} answered {status}: {body}")))
}

impl S3Writer {
    pub async fn write(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        if self.written + bytes.len() as u64 > self.length {
            return Err(io("more bytes than the object's length"));
        }
        while !bytes.is_empty() {
            if self.sending.is_none() {
                self.start_request().await?;
            }
            let Some(sending) = self.sending.as_mut() else {
                return Err(io("no request under way"));
            };
            let take = usize::try_from(sending.left)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            let chunk = Bytes::copy_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            sending.left -= take as u64;
            self.written += take as u64;
            if sending.feed.send(Ok(chunk)).await.is_err() {
                // The request ended early: its answer says why.
                return Err(self
                    .end_request()
                    .await
                    .err()
                    .unwrap_or_else(|| io("the request ended early")));
            }
            if self.sending.as_ref().is_some_and(|s| s.left == 0) {
                self.end_request().await?;
            }
        }
        Ok(())
    }

    /// Starts the request for the next bytes: the whole object in one `PUT`, or its next
    /// part (starting the multipart upload with the first).
    async fn start_request(&mut self) -> std::io::Result<()> {
        let inner = self.inner.clone();
        let name = object(&self.key);
        let left_total = self.length - self.written;
        let (url, size) = if self.length <= PART as u64 {
            let url = inner
                .bucket
                .put_object(Some(&inner.credentials), &name)
                .sign(SIGNED_FOR);
            (url, left_total)
        } else {
            if self.multipart.is_none() {
                let url = inner
                    .bucket
                    .create_multipart_upload(Some(&inner.credentials), &name)
                    .sign(SIGNED_FOR);
                let answer = inner.http.post(url).send().await.map_err(io)?;
                let text = checked(answer, "multipart start")
                    .await?
                    .text()
                    .await
                    .map_err(io)?;
                let started =
                    rusty_s3::actions::CreateMultipartUpload::parse_response(&text).map_err(io)?;
                self.multipart = Some(Multipart {
                    id: started.upload_id().to_owned(),
                    etags: Vec::new(),
                });
            }
            let Some(m) = self.multipart.as_ref() else {
                return Err(io("no multipart upload"));
            };
            let number = u16::try_from(m.etags.len() + 1).map_err(io)?;
            let url = inner
                .bucket
                .upload_part(Some(&inner.credentials), &name, number, &m.id)
                .sign(SIGNED_FOR);
            (url, left_total.min(PART as u64))
        };
        let (feed, rx) = tokio::sync::mpsc::channel(IN_FLIGHT);
        let body =
            reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|item| (item, rx))
            }));
        let answer = tokio::spawn(async move {
            let answer = inner
                .http
                .put(url)
                .header(reqwest::header::CONTENT_LENGTH, size)
                .body(body)
                .send()
                .await
                .map_err(io)?;
            let answer = checked(answer, "PUT").await?;
            Ok(answer
                .headers()
                .get(reqwest::header::ETAG)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned())
        });
        self.sending = Some(Sending {
            feed,
            left: size,
            answer,
        });
        Ok(())
    }

    /// Waits for the current request's answer; a part's entity tag is kept for the end.
    async fn end_request(&mut self) -> std::io::Result<()> {
        let Some(sending) = self.sending.take() else {
            return Ok(());
        };
        drop(sending.feed);
        let etag = sending.answer.await.map_err(io)??;
        if let Some(m) = self.multipart.as_mut() {
            if etag.is_empty() {
                return Err(io("a part upload answered no ETag"));
            }
            m.etags.push(etag);
        }
        Ok(())
    }

    /// Makes the object visible under its key, which it answers.
    pub async fn finish(mut self) -> std::io::Result<String> {
        if self.written != self.length {
            return Err(io("the object ended before its length"));
        }
        if self.length == 0 {
            // Nothing was written, so no request began: an empty object.
            self.start_request().await?;
        }
        self.end_request().await?;
        if let Some(m) = self.multipart.as_ref() {
            let inner = self.inner.clone();
            let name = object(&self.key);
            let complete = inner.bucket.complete_multipart_upload(
                Some(&inner.credentials),
                &name,
                &m.id,
                m.etags.iter().map(String::as_str),
            );
            let url = complete.sign(SIGNED_FOR);
            let body = complete.body();
            let answer = inner.http.post(url).body(body).send().await.map_err(io)?;
            // A completion may fail after its 200 has begun: the body then holds an error.
            let text = checked(answer, "multipart completion")
                .await?
                .text()
                .await
                .map_err(io)?;
            if text.contains("<Error>") {
                return Err(io(format!("multipart completion failed: {text}")));
            }
        }
        self.done = true;
        Ok(std::mem::take(&mut self.key))
    }
}

impl Drop for S3Writer {
    /// An unfinished multipart upload is aborted, so that its parts do not linger (a single
    /// `PUT` cut short never completes).
    fn drop(&mut self) {
        if let Some(sending) = self.sending.take() {
            sending.answer.abort();
        }
        let (Some(m), false) = (self.multipart.take(), self.done) else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let inner = self.inner.clone();
        let name = object(&self.key);
        runtime.spawn(async move {
            let url = inner
                .bucket
                .abort_multipart_upload(Some(&inner.credentials), &name, &m.id)
                .sign(SIGNED_FOR);
            if let Err(e) = inner.http.delete(url).send().await {
                tracing::warn!(error = %e, object = name, "aborting an unfinished upload failed");
            }
        });
    }
}

impl S3Reader {
    /// The bytes as they arrive from the store.
    pub fn into_stream(self) -> impl Stream<Item = std::io::Result<Bytes>> + Send {
        self.0.bytes_stream().map(|chunk| chunk.map_err(io))
    }

    /// The whole object, if it has at most `max` bytes.
    pub async fn read_all(self, max: u64) -> std::io::Result<Vec<u8>> {
        let too_large = || {
            std::io::Error::new(
                std::io::ErrorKind::FileTooLarge,
                format!("an object of more than {max} bytes"),
            )
        };
        if self.0.content_length().is_some_and(|n| n > max) {
            return Err(too_large());
        }
        let mut out = Vec::new();
        let mut stream = self.0.bytes_stream();
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk.map_err(io)?);
            if out.len() as u64 > max {
                return Err(too_large());
            }
        }
        Ok(out)
    }
}
