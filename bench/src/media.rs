//! Resources (RawR): `cargo run --release -p fugue-bench -- media [--quick]`.
//!
//! Against a child server (`--serve-media`: production defaults, SQLite `synchronous=FULL`,
//! its media directory on the same file system as this benchmark's files), uploads and
//! downloads one 100 MiB file (16 MiB with `--quick`) over loopback, three times each, and
//! compares the median rate with the disk's own in the same run:
//!
//! - sequential write: the file written in 1 MiB blocks and synced (what an upload must do
//!   before it may answer);
//! - sequential read: the file read in 1 MiB blocks after its pages were dropped from the
//!   page cache (`posix_fadvise(DONTNEED)`); before each download the server's object is
//!   dropped the same way, so both read from the disk.
//!
//! Memory: the server's resident set is sampled every 5 ms during each transfer; the
//! figure is the largest growth over its size before the transfer (target ≤ 16 MiB).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use rand_core::{OsRng, RngCore};

use fugue_client::{Client, IdentityKey};
use fugue_proto::rawr::{AccessProperties, ResourceId};

use crate::{PASSWORD, cheap_hashing, open_sqlite, rss_kib, serve_child, start_child};

const MIB: u64 = 1024 * 1024;

/// The child: `--serve-media <dir> <port file>`.
pub async fn serve(args: &[String]) {
    let dir = PathBuf::from(&args[0]);
    let store = open_sqlite(&dir).await;
    serve_child(
        &args[1],
        "localhost",
        store,
        SigningKey::generate(&mut OsRng),
        |c| {
            cheap_hashing(c);
            c.media.dir = Some(dir.join("media"));
        },
        |_| axum::Router::new(),
    )
    .await;
}

/// Drops a file's pages from the page cache, so the next read comes from the disk.
fn drop_cache(path: &Path) {
    let file = std::fs::File::open(path).unwrap();
    let _ = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed);
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Writes `size` bytes of varied content in 1 MiB blocks and syncs; MiB/s.
fn disk_write(path: &Path, size: u64) -> f64 {
    let mut block = vec![0u8; MIB as usize];
    let start = Instant::now();
    let mut file = std::fs::File::create(path).unwrap();
    for _ in 0..size / MIB {
        OsRng.fill_bytes(&mut block[..64]);
        file.write_all(&block).unwrap();
    }
    file.sync_all().unwrap();
    (size / MIB) as f64 / start.elapsed().as_secs_f64()
}

/// Reads the file from the disk in 1 MiB blocks; MiB/s.
fn disk_read(path: &Path) -> f64 {
    drop_cache(path);
    let mut block = vec![0u8; MIB as usize];
    let start = Instant::now();
    let mut file = std::fs::File::open(path).unwrap();
    let mut total = 0u64;
    loop {
        let n = file.read(&mut block).unwrap();
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    (total / MIB) as f64 / start.elapsed().as_secs_f64()
}

/// Samples the child's resident set every 5 ms while `f` runs; (result, largest growth KiB).
async fn with_rss<T>(pid: u32, f: impl std::future::Future<Output = T>) -> (T, u64) {
    let base = rss_kib(pid, "VmRSS:");
    let peak = Arc::new(AtomicU64::new(base));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid, "VmRSS:"), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let out = f.await;
    done.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    (out, peak.load(Ordering::Relaxed).saturating_sub(base))
}

/// The one object file under the child's media directory.
fn objects(media: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for shard in std::fs::read_dir(media.join("objects")).unwrap() {
        for f in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            out.push(f.unwrap().path());
        }
    }
    out
}

pub async fn bench(quick: bool) {
    let size = if quick { 16 * MIB } else { 100 * MIB };
    println!("## resources (media): {} MiB over loopback", size / MIB);
    let tmp = tempfile::tempdir_in(std::env::current_dir().unwrap()).unwrap();
    let dir = tmp.path().join("server");
    let Some((child, port)) = start_child("--serve-media", &dir, &[], true).await else {
        println!("the media child did not start");
        return;
    };
    let pid = child.pid();
    let client = Client::new(&format!("http://127.0.0.1:{port}")).unwrap();
    client
        .register("bench", PASSWORD, None, None)
        .await
        .unwrap();
    let session = client
        .login(
            "bench",
            PASSWORD,
            None,
            &IdentityKey::generate(),
            &"bench@localhost".parse().unwrap(),
            &"bench".parse().unwrap(),
        )
        .await
        .unwrap();

    let file = tmp.path().join("payload.bin");
    let (mut writes, mut reads, mut ups, mut downs) = (vec![], vec![], vec![], vec![]);
    let (mut up_rss, mut down_rss) = (0u64, 0u64);
    for round in 0..3 {
        writes.push(disk_write(&file, size));
        reads.push(disk_read(&file));
        // The payload comes from the page cache, as a client's file would after reading it.
        let mut warm = Vec::new();
        std::fs::File::open(&file)
            .unwrap()
            .read_to_end(&mut warm)
            .unwrap();
        drop(warm);
        let rid: ResourceId = format!("bench-{round}").parse().unwrap();
        let ((), grew) = with_rss(pid, async {
            let start = Instant::now();
            session
                .upload_file(&rid, &AccessProperties::default(), &file)
                .await
                .unwrap();
            ups.push((size / MIB) as f64 / start.elapsed().as_secs_f64());
        })
        .await;
        up_rss = up_rss.max(grew);
        for object in objects(&dir.join("media")) {
            drop_cache(&object);
        }
        let ((), grew) = with_rss(pid, async {
            let start = Instant::now();
            let got = session
                .download_resource(rid.as_str(), &mut tokio::io::sink())
                .await
                .unwrap();
            assert_eq!(got.bytes, size);
            downs.push((size / MIB) as f64 / start.elapsed().as_secs_f64());
        })
        .await;
        down_rss = down_rss.max(grew);
        session.delete_resource(&rid).await.unwrap();
    }
    let (w, r, u, d) = (median(writes), median(reads), median(ups), median(downs));
    println!("disk sequential write (1 MiB blocks, synced), median of 3: {w:.0} MiB/s");
    println!("disk sequential read (page cache dropped), median of 3: {r:.0} MiB/s");
    println!(
        "upload, median of 3: {u:.0} MiB/s = {:.0} % of the disk's write (target ≥ 80 %)",
        100.0 * u / w
    );
    println!(
        "download, median of 3: {d:.0} MiB/s = {:.0} % of the disk's read (target ≥ 80 %)",
        100.0 * d / r
    );
    println!(
        "server RSS growth during a transfer, largest of 3: upload {:.1} MiB, download {:.1} MiB (target ≤ 16 MiB)",
        up_rss as f64 / 1024.0,
        down_rss as f64 / 1024.0
    );
    drop(child);
}
