//! Files as files in the media directory: an upload is written to `tmp/<key>`, synced, and renamed
//! to `objects/<key[..2]>/<key>` (the directory synced too) before the database names it,
//! so no half-written object is ever served and an interrupted upload leaves at most a
//! file in `tmp/` (cleared at start) or an object no blob names (swept). Files are never
//! changed after the rename.
//!
//! Transfers are pipelined: a blocking thread writes (and syncs every few MiB) while the
//! request's next bytes arrive, or reads ahead while the previous ones are sent, with at
//! most [`IN_FLIGHT`] chunks between the two — so a transfer costs a few MiB of memory and
//! takes about as long as the slower of disk and network, not their sum.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::fs;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The object files of one server (or node).
#[derive(Debug)]
pub struct Files {
    dir: PathBuf,
}

/// Bytes written to (and read from) the file at once.
pub const IO_CHUNK: usize = 512 * 1024;
/// Chunks queued between a transfer and its file thread.
const IN_FLIGHT: usize = 6;
/// An upload's data is synced every this many bytes, so that the sync before its rename
/// waits for little more than the last of them.
const SYNC_EVERY: u64 = 8 * 1024 * 1024;

/// An object being written; dropped unfinished, its temporary file is removed.
pub struct FileWriter {
    key: String,
    tmp: PathBuf,
    buf: Vec<u8>,
    chunks: Option<mpsc::Sender<Vec<u8>>>,
    thread: Option<JoinHandle<std::io::Result<()>>>,
    done: bool,
}

/// An object opened for reading.
pub struct FileReader(std::fs::File);

impl Files {
    /// Opens (creating) the store in `dir` and clears what interrupted uploads left in
    /// `tmp/`.
    pub async fn open(dir: &Path) -> std::io::Result<Self> {
        let objects = Self {
            dir: dir.to_owned(),
        };
        fs::create_dir_all(objects.dir.join("objects")).await?;
        let tmp = objects.dir.join("tmp");
        if fs::try_exists(&tmp).await? {
            fs::remove_dir_all(&tmp).await?;
        }
        fs::create_dir_all(&tmp).await?;
        Ok(objects)
    }

    fn path(&self, key: &str) -> PathBuf {
        let shard = key.get(..2).unwrap_or("__");
        self.dir.join("objects").join(shard).join(key)
    }

    /// Starts a new object under a fresh key.
    pub async fn create(&self) -> std::io::Result<FileWriter> {
        let key = super::new_key();
        let tmp = self.dir.join("tmp").join(&key);
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .await?
            .into_std()
            .await;
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(IN_FLIGHT);
        let thread = tokio::task::spawn_blocking(move || {
            let mut unsynced = 0u64;
            while let Some(chunk) = rx.blocking_recv() {
                file.write_all(&chunk)?;
                unsynced += chunk.len() as u64;
                if unsynced >= SYNC_EVERY {
                    file.sync_data()?;
                    unsynced = 0;
                }
            }
            file.sync_all()
        });
        Ok(FileWriter {
            key,
            tmp,
            buf: Vec::with_capacity(IO_CHUNK),
            chunks: Some(tx),
            thread: Some(thread),
            done: false,
        })
    }

    /// Makes a written object permanent under its key: synced, renamed into place, the
    /// directory synced. Returns the key.
    pub async fn finish(&self, mut w: FileWriter) -> std::io::Result<String> {
        let rest = std::mem::take(&mut w.buf);
        if !rest.is_empty() {
            w.send(rest).await?;
        }
        w.chunks = None;
        w.join().await?;
        let path = self.path(&w.key);
        let parent = path.parent().map(Path::to_owned).unwrap_or_default();
        fs::create_dir_all(&parent).await?;
        fs::rename(&w.tmp, &path).await?;
        w.done = true;
        sync_dir(&parent).await?;
        Ok(std::mem::take(&mut w.key))
    }

    /// The object, to read.
    pub async fn open_read(&self, key: &str) -> std::io::Result<FileReader> {
        Ok(FileReader(
            fs::File::open(self.path(key)).await?.into_std().await,
        ))
    }

    /// Deletes an object (absent is fine).
    pub async fn delete(&self, key: &str) -> std::io::Result<()> {
        match fs::remove_file(self.path(key)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// The keys of objects older than `age`: the candidates of a sweep for objects no blob
    /// names (an upload renames its object shortly before the database names it).
    pub async fn older_than(&self, age: Duration) -> std::io::Result<Vec<String>> {
        let cutoff = SystemTime::now()
            .checked_sub(age)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut keys = Vec::new();
        let mut shards = fs::read_dir(self.dir.join("objects")).await?;
        while let Some(shard) = shards.next_entry().await? {
            if !shard.file_type().await?.is_dir() {
                continue;
            }
            let mut entries = fs::read_dir(shard.path()).await?;
            while let Some(entry) = entries.next_entry().await? {
                let modified = entry.metadata().await?.modified()?;
                if modified < cutoff
                    && let Some(name) = entry.file_name().to_str()
                {
                    keys.push(name.to_owned());
                }
            }
        }
        Ok(keys)
    }
}

impl FileWriter {
    pub async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= IO_CHUNK {
            let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(IO_CHUNK));
            self.send(chunk).await?;
        }
        Ok(())
    }

    async fn send(&mut self, chunk: Vec<u8>) -> std::io::Result<()> {
        let sent = match &self.chunks {
            Some(tx) => tx.send(chunk).await.is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The file thread stopped: its error says why.
        self.chunks = None;
        self.join().await?;
        Err(std::io::Error::other("object already finished"))
    }

    async fn join(&mut self) -> std::io::Result<()> {
        match self.thread.take() {
            Some(thread) => thread.await.map_err(std::io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        if !self.done {
            // Ends the file thread; the file goes with its name. Best effort: a leftover is
            // cleared at the next start.
            self.chunks = None;
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

impl FileReader {
    /// The bytes, read ahead on a blocking thread while earlier ones are sent.
    pub fn into_stream(self) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> {
        let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(IN_FLIGHT);
        let mut file = self.0;
        tokio::task::spawn_blocking(move || {
            loop {
                let mut chunk = vec![0u8; IO_CHUNK];
                let n = match read_full(&mut file, &mut chunk) {
                    Ok(n) => n,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                };
                if n == 0 {
                    return;
                }
                chunk.truncate(n);
                // The receiver went (the client left): stop reading.
                if tx.blocking_send(Ok(Bytes::from(chunk))).is_err() {
                    return;
                }
            }
        });
        // Fused: a body may be polled again after its end.
        futures_util::StreamExt::fuse(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }))
    }

    /// A buffered blocking reader of the object, for work on a blocking thread (decoding an
    /// image).
    pub fn into_blocking(self) -> std::io::BufReader<std::fs::File> {
        std::io::BufReader::with_capacity(64 * 1024, self.0)
    }

    /// The whole object (small ones: previews, thumbnails).
    pub async fn read_all(mut self) -> std::io::Result<Vec<u8>> {
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            self.0.read_to_end(&mut out)?;
            Ok(out)
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

/// A scratch file for work too large for memory (building or reading a data export):
/// written and read on a blocking thread, removed when dropped.
pub struct Spool {
    file: std::fs::File,
    path: PathBuf,
}

impl Spool {
    /// A new empty scratch file in `dir` (the media directory's `tmp/`, or the system's).
    pub fn create_in(dir: &Path) -> std::io::Result<Self> {
        let path = dir.join(format!("spool-{}", super::new_key()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(Self { file, path })
    }

    /// Its length now.
    pub fn size(&self) -> std::io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// Appends `bytes` without blocking the runtime (a request body arriving).
    pub async fn append(&mut self, bytes: Bytes) -> std::io::Result<()> {
        let mut file = self.file.try_clone()?;
        tokio::task::spawn_blocking(move || file.write_all(&bytes))
            .await
            .map_err(std::io::Error::other)?
    }

    /// Back to its start, to be read.
    pub fn rewind(&mut self) -> std::io::Result<()> {
        use std::io::Seek;
        self.file.seek(std::io::SeekFrom::Start(0)).map(|_| ())
    }

    /// A reader of a copy of its handle, from its start: the bytes, as an object's are read.
    /// The file is removed when the spool is dropped; the handle keeps its bytes until read.
    pub fn reader(&self) -> std::io::Result<FileReader> {
        use std::io::Seek;
        let mut file = self.file.try_clone()?;
        file.seek(std::io::SeekFrom::Start(0))?;
        Ok(FileReader(file))
    }
}

impl Read for Spool {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.file.read(buf)
    }
}

impl Write for Spool {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl std::io::Seek for Spool {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        self.file.seek(pos)
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        // Best effort: a leftover in `tmp/` is cleared at the next start.
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Files {
    /// Where scratch files of this store go.
    pub fn spool_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }
}

/// The system's directory for scratch files (a bucket has no local directory).
pub fn system_spool_dir() -> PathBuf {
    std::env::temp_dir()
}

/// Reads until `buf` is full or the file ends; the bytes read.
fn read_full(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

async fn sync_dir(dir: &Path) -> std::io::Result<()> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.sync_all())
        .await
        .map_err(std::io::Error::other)?
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_object_appears_only_when_finished_and_an_abandoned_one_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let objects = Files::open(dir.path()).await.unwrap();
        let mut w = objects.create().await.unwrap();
        w.write(b"hello ").await.unwrap();
        w.write(b"world").await.unwrap();
        let key = w.key.clone();
        assert!(
            objects.open_read(&key).await.is_err(),
            "visible before finished"
        );
        let key2 = objects.finish(w).await.unwrap();
        assert_eq!(key, key2);
        let read = objects
            .open_read(&key)
            .await
            .unwrap()
            .read_all()
            .await
            .unwrap();
        assert_eq!(read, b"hello world");
        // Large ones arrive whole through the stream, chunk by chunk.
        let big: Vec<u8> = (0..3 * IO_CHUNK + 17).map(|i| (i % 251) as u8).collect();
        let mut w = objects.create().await.unwrap();
        for part in big.chunks(10_000) {
            w.write(part).await.unwrap();
        }
        let big_key = objects.finish(w).await.unwrap();
        let stream = objects.open_read(&big_key).await.unwrap().into_stream();
        let chunks: Vec<Bytes> = futures_util::StreamExt::collect::<Vec<_>>(stream)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(chunks.len(), 4);
        assert_eq!(chunks.concat(), big);
        objects.delete(&big_key).await.unwrap();

        let mut abandoned = objects.create().await.unwrap();
        abandoned.write(b"half").await.unwrap();
        drop(abandoned);
        let tmp: Vec<_> = std::fs::read_dir(dir.path().join("tmp")).unwrap().collect();
        assert!(tmp.is_empty(), "an abandoned upload left {tmp:?}");

        assert_eq!(
            objects.older_than(Duration::ZERO).await.unwrap(),
            vec![key.clone()]
        );
        assert!(
            objects
                .older_than(Duration::from_secs(3600))
                .await
                .unwrap()
                .is_empty()
        );
        objects.delete(&key).await.unwrap();
        objects.delete(&key).await.unwrap();
        assert!(objects.open_read(&key).await.is_err());
    }

    #[tokio::test]
    async fn opening_clears_what_interrupted_uploads_left() {
        let dir = tempfile::tempdir().unwrap();
        Files::open(dir.path()).await.unwrap();
        // What a crash in the middle of an upload leaves.
        std::fs::write(dir.path().join("tmp").join("0123abcd"), b"half").unwrap();
        Files::open(dir.path()).await.unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }
}
