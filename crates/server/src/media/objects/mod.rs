//! Where resource bytes live: immutable objects under keys that are never reused — files in
//! the media directory ([`files`]), or an S3-compatible bucket ([`s3`]), which several nodes
//! share. Either way an object is visible only once it is whole (a renamed file, a completed
//! upload), and an interrupted upload leaves nothing that is ever served.

mod files;
pub mod s3;

pub use files::Spool;

use std::io::{BufRead, Seek};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use rand_core::{OsRng, RngCore};

use crate::config;

/// The objects of one server.
pub enum Objects {
    Files(files::Files),
    S3(s3::Bucket),
}

/// An object being written; dropped unfinished, it leaves nothing behind.
pub enum ObjectWriter {
    File(files::FileWriter),
    S3(s3::S3Writer),
}

/// An object opened for reading.
pub enum ObjectReader {
    File(files::FileReader),
    S3(s3::S3Reader),
}

/// A reader for work on a blocking thread (decoding an image).
pub trait BlockingRead: BufRead + Seek + Send {}
impl<T: BufRead + Seek + Send> BlockingRead for T {}

/// A fresh object key: 128 random bits, hex.
fn new_key() -> String {
    let mut raw = [0u8; 16];
    OsRng.fill_bytes(&mut raw);
    hex::encode(raw)
}

impl Objects {
    /// The objects `config` names: its bucket when one is configured, else its directory
    /// (whose `tmp/` is cleared of what interrupted uploads left); `None` without either.
    pub async fn open(config: &config::Media) -> std::io::Result<Option<Self>> {
        if let Some(s3) = config.s3()? {
            return Ok(Some(Self::S3(s3::Bucket::open(&s3).await?)));
        }
        Ok(match &config.dir {
            Some(dir) => Some(Self::Files(files::Files::open(dir).await?)),
            None => None,
        })
    }

    /// Starts a new object of `length` bytes under a fresh key.
    pub async fn create(&self, length: u64) -> std::io::Result<ObjectWriter> {
        Ok(match self {
            Self::Files(f) => ObjectWriter::File(f.create().await?),
            Self::S3(b) => ObjectWriter::S3(b.create(length)),
        })
    }

    /// Makes a written object permanent under its key, which it answers.
    pub async fn finish(&self, w: ObjectWriter) -> std::io::Result<String> {
        match (self, w) {
            (Self::Files(f), ObjectWriter::File(w)) => f.finish(w).await,
            (Self::S3(_), ObjectWriter::S3(w)) => w.finish().await,
            _ => Err(std::io::Error::other("an object finished by another store")),
        }
    }

    /// The object, to read ([`std::io::ErrorKind::NotFound`] when there is none).
    pub async fn open_read(&self, key: &str) -> std::io::Result<ObjectReader> {
        Ok(match self {
            Self::Files(f) => ObjectReader::File(f.open_read(key).await?),
            Self::S3(b) => ObjectReader::S3(b.open_read(key).await?),
        })
    }

    /// Deletes an object (absent is fine).
    pub async fn delete(&self, key: &str) -> std::io::Result<()> {
        match self {
            Self::Files(f) => f.delete(key).await,
            Self::S3(b) => b.delete(key).await,
        }
    }

    /// A scratch file on this node's disk.
    pub fn spool(&self) -> std::io::Result<Spool> {
        match self {
            Self::Files(f) => Spool::create_in(&f.spool_dir()),
            Self::S3(_) => Spool::create_in(&files::system_spool_dir()),
        }
    }

    /// Stores what `spool` holds as a new object; its key.
    pub async fn store_spool(&self, spool: &Spool) -> std::io::Result<String> {
        use futures_util::StreamExt;
        let length = spool.size()?;
        let mut w = self.create(length).await?;
        let mut bytes = std::pin::pin!(spool.reader()?.into_stream());
        while let Some(chunk) = bytes.next().await {
            w.write(&chunk?).await?;
        }
        self.finish(w).await
    }

    /// The keys of objects older than `age`: the candidates of a sweep for objects no blob
    /// names (an upload finishes its object shortly before the database names it).
    pub async fn older_than(&self, age: Duration) -> std::io::Result<Vec<String>> {
        match self {
            Self::Files(f) => f.older_than(age).await,
            Self::S3(b) => b.older_than(age).await,
        }
    }
}

impl ObjectWriter {
    pub async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Self::File(w) => w.write(bytes).await,
            Self::S3(w) => w.write(bytes).await,
        }
    }
}

impl ObjectReader {
    /// The bytes, as they come.
    pub fn into_stream(self) -> impl Stream<Item = std::io::Result<Bytes>> + Send {
        use futures_util::StreamExt;
        match self {
            Self::File(r) => r.into_stream().boxed(),
            Self::S3(r) => r.into_stream().boxed(),
        }
    }

    /// A reader on a blocking thread. An object in a bucket is read into memory first: at
    /// most `max` bytes ([`std::io::ErrorKind::FileTooLarge`] beyond).
    pub async fn into_blocking(self, max: u64) -> std::io::Result<Box<dyn BlockingRead>> {
        Ok(match self {
            Self::File(r) => Box::new(r.into_blocking()),
            Self::S3(r) => Box::new(std::io::Cursor::new(r.read_all(max).await?)),
        })
    }

    /// A reader on a blocking thread that pulls the bytes as they come, never holding the
    /// object (an export copying it into its archive); `rt` runs the pulls.
    pub fn into_pulled(self, rt: tokio::runtime::Handle) -> Box<dyn std::io::Read + Send> {
        match self {
            Self::File(r) => Box::new(r.into_blocking()),
            Self::S3(r) => Box::new(Pulled {
                stream: Box::pin(r.into_stream()),
                chunk: Bytes::new(),
                rt,
            }),
        }
    }

    /// The whole object (small ones: previews, thumbnails).
    pub async fn read_all(self) -> std::io::Result<Vec<u8>> {
        match self {
            Self::File(r) => r.read_all().await,
            Self::S3(r) => r.read_all(u64::MAX).await,
        }
    }
}

/// A stream read from a blocking thread.
struct Pulled {
    stream: std::pin::Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>,
    chunk: Bytes,
    rt: tokio::runtime::Handle,
}

impl std::io::Read for Pulled {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use futures_util::StreamExt;
        while self.chunk.is_empty() {
            match self.rt.block_on(self.stream.next()) {
                Some(chunk) => self.chunk = chunk?,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}
