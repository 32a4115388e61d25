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
//!
//! Then the same transfers with the objects in an S3-compatible bucket (a single-node
//! Garage on loopback, when the `garage` binary is installed), as a ratio of the files'
//! rates; and what describing an image attachment costs: a 12-megapixel JPEG uploaded as
//! an attachment against the same number of bytes that are no image (the difference is
//! decoding, thumbnail and placeholder), medians of 3.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use rand_core::{OsRng, RngCore};

use fugue_client::{Client, IdentityKey, Session};
use fugue_proto::rawr::{AccessProperties, ResourceId};

use crate::{PASSWORD, cheap_hashing, open_sqlite, rss_kib, serve_child, start_child};

const MIB: u64 = 1024 * 1024;

/// The child: `--serve-media <dir> <port file> [<S3 endpoint of a test Garage>]`.
pub async fn serve(args: &[String]) {
    let dir = PathBuf::from(&args[0]);
    let store = open_sqlite(&dir).await;
    let s3 = args.get(2).cloned();
    serve_child(
        &args[1],
        "localhost",
        store,
        SigningKey::generate(&mut OsRng),
        |c| {
            cheap_hashing(c);
            // The migration benchmark writes a long history first.
            c.rate_limits.chat_messages_per_5s = 0;
            c.media.dir = Some(dir.join("media"));
            if let Some(endpoint) = s3 {
                use fugue_testkit::garage::{ACCESS_KEY, BUCKET, REGION, SECRET_KEY};
                c.media.s3_endpoint = Some(endpoint);
                c.media.s3_bucket = Some(BUCKET.into());
                c.media.s3_region = REGION.into();
                c.media.s3_access_key = Some(ACCESS_KEY.into());
                c.media.s3_secret_key = Some(SECRET_KEY.into());
            }
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

/// A benchmark session on the child at `port`.
/// A new account `name` on the child at `port` (domain `localhost`), signed in.
pub(crate) async fn sign_up(port: u16, name: &str) -> Session {
    let client = Client::new(&format!("http://127.0.0.1:{port}")).unwrap();
    client.register(name, PASSWORD, None, None).await.unwrap();
    client
        .login(
            name,
            PASSWORD,
            None,
            &IdentityKey::generate(),
            &format!("{name}@localhost").parse().unwrap(),
            &"bench".parse().unwrap(),
        )
        .await
        .unwrap()
}

/// Rates (MiB/s) and the largest RSS growths (KiB) of three uploads and downloads of `file`.
struct Transfers {
    ups: Vec<f64>,
    downs: Vec<f64>,
    up_rss: u64,
    down_rss: u64,
}

/// Uploads and downloads `file` (`size` bytes) three times; before each download the
/// objects under `media` (when they are files) are dropped from the page cache.
async fn transfers(
    session: &Session,
    pid: u32,
    file: &Path,
    size: u64,
    media: Option<&Path>,
    mut before_round: impl FnMut(),
) -> Transfers {
    let mut t = Transfers {
        ups: vec![],
        downs: vec![],
        up_rss: 0,
        down_rss: 0,
    };
    for round in 0..3 {
        before_round();
        // The payload comes from the page cache, as a client's file would after reading it.
        let mut warm = Vec::new();
        std::fs::File::open(file)
            .unwrap()
            .read_to_end(&mut warm)
            .unwrap();
        drop(warm);
        let rid: ResourceId = format!("bench-{round}").parse().unwrap();
        let ((), grew) = with_rss(pid, async {
            let start = Instant::now();
            session
                .upload_file(&rid, &AccessProperties::default(), file)
                .await
                .unwrap();
            t.ups
                .push((size / MIB) as f64 / start.elapsed().as_secs_f64());
        })
        .await;
        t.up_rss = t.up_rss.max(grew);
        for object in media.map(objects).unwrap_or_default() {
            drop_cache(&object);
        }
        let ((), grew) = with_rss(pid, async {
            let start = Instant::now();
            let got = session
                .download_resource(rid.as_str(), &mut tokio::io::sink())
                .await
                .unwrap();
            assert_eq!(got.bytes, size);
            t.downs
                .push((size / MIB) as f64 / start.elapsed().as_secs_f64());
        })
        .await;
        t.down_rss = t.down_rss.max(grew);
        session.delete_resource(&rid).await.unwrap();
    }
    t
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
    let session = sign_up(port, "bench").await;
    let file = tmp.path().join("payload.bin");
    let (mut writes, mut reads) = (vec![], vec![]);
    let media = dir.join("media");
    let t = transfers(&session, child.pid(), &file, size, Some(&media), || {
        writes.push(disk_write(&file, size));
        reads.push(disk_read(&file));
    })
    .await;
    let (w, r, u, d) = (
        median(writes),
        median(reads),
        median(t.ups),
        median(t.downs),
    );
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
        t.up_rss as f64 / 1024.0,
        t.down_rss as f64 / 1024.0
    );
    attachments(&session, port).await;
    drop(child);

    if !fugue_testkit::garage::available() {
        println!("(no garage binary: the object-store figures are skipped)");
        return;
    }
    let garage = fugue_testkit::garage::Garage::start().await;
    let s3_dir = tmp.path().join("server-s3");
    let Some((child, port)) = start_child(
        "--serve-media",
        &s3_dir,
        std::slice::from_ref(&garage.endpoint),
        true,
    )
    .await
    else {
        println!("the media child with a bucket did not start");
        return;
    };
    let session = sign_up(port, "bench").await;
    let s3 = transfers(&session, child.pid(), &file, size, None, || {}).await;
    let (su, sd) = (median(s3.ups), median(s3.downs));
    println!(
        "in an S3 bucket (Garage on loopback), median of 3: upload {su:.0} MiB/s = {:.0} % of the files', download {sd:.0} MiB/s = {:.0} % of the files'",
        100.0 * su / u,
        100.0 * sd / d
    );
    println!(
        "server RSS growth with the bucket, largest of 3: upload {:.1} MiB, download {:.1} MiB (target ≤ 16 MiB)",
        s3.up_rss as f64 / 1024.0,
        s3.down_rss as f64 / 1024.0
    );
}

/// What describing an image attachment costs: a 12-megapixel JPEG against as many bytes
/// that are no image, each uploaded as an attachment three times.
async fn attachments(session: &Session, port: u16) {
    let mut jpeg = Vec::new();
    image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(4000, 3000, |x, y| {
        image::Rgb([(x % 251) as u8, (y % 241) as u8, ((x ^ y) % 239) as u8])
    }))
    .write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(
        &mut jpeg, 85,
    ))
    .unwrap();
    let mut noise = vec![0u8; jpeg.len()];
    OsRng.fill_bytes(&mut noise);
    let http = reqwest::Client::new();
    let url = format!(
        "http://127.0.0.1:{port}{}",
        fugue_proto::api::upload_attachment::path()
    );
    let time = |bytes: Vec<u8>| {
        let (http, url, token) = (http.clone(), url.clone(), session.token().to_owned());
        async move {
            let start = Instant::now();
            let resp = http
                .post(url)
                .bearer_auth(token)
                .body(bytes)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 201);
            let a: fugue_proto::chat::Attachment = resp.json().await.unwrap();
            (
                start.elapsed().as_secs_f64() * 1000.0,
                a.thumbnail.is_some(),
            )
        }
    };
    let (mut images, mut plain) = (vec![], vec![]);
    for _ in 0..3 {
        let (ms, thumb) = time(jpeg.clone()).await;
        assert!(thumb, "the JPEG got a thumbnail");
        images.push(ms);
        plain.push(time(noise.clone()).await.0);
    }
    let (i, p) = (median(images), median(plain));
    println!(
        "image attachment (12 MP JPEG, {:.1} MiB), median of 3: {i:.0} ms to upload and describe; the same bytes as no image {p:.0} ms: describing ≈ {:.0} ms",
        jpeg.len() as f64 / MIB as f64,
        i - p
    );
}
