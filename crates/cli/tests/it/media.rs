//! `fugue upload`, `fugue download` and `fugue resources` as child processes against an
//! in-process server: a file goes up, comes back byte for byte, is shared, listed and
//! deleted; a download never overwrites a file and leaves none behind when it fails.

use fugue_testkit::{PASSWORD, TestServer};

use crate::chat::word_after;
use crate::support::{blocking, fugue_as_client};

struct Cli {
    url: String,
    keystore: std::path::PathBuf,
    cwd: std::path::PathBuf,
}

impl Cli {
    /// Runs `fugue ARGS` in the test's directory: (success, stdout, stderr).
    async fn run(&self, args: &[&str]) -> (bool, String, String) {
        let mut cmd = fugue_as_client(&self.url, &self.keystore);
        cmd.args(args).current_dir(&self.cwd);
        let out = blocking(move || cmd.output().unwrap()).await;
        (
            out.status.success(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    }

    async fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args).await;
        assert!(ok, "fugue {args:?} failed: {err}");
        out
    }
}

#[tokio::test]
async fn files_go_up_come_back_and_are_shared_listed_and_deleted() {
    let server = TestServer::start().await;
    for name in ["alice", "bob"] {
        server
            .client()
            .register(name, PASSWORD, None, None)
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let alice = Cli {
        url: server.url.clone(),
        keystore: dir.path().join("alice.json"),
        cwd: dir.path().to_owned(),
    };
    let bob = Cli {
        url: server.url.clone(),
        keystore: dir.path().join("bob.json"),
        cwd: dir.path().to_owned(),
    };
    alice.ok(&["account", "login", "alice"]).await;
    bob.ok(&["account", "login", "bob"]).await;

    // Half a megabyte of varied bytes, streamed up.
    let bytes: Vec<u8> = (0..512 * 1024u32)
        .map(|i| (i * 7 + i / 251) as u8)
        .collect();
    let file = dir.path().join("data.bin");
    std::fs::write(&file, &bytes).unwrap();
    let out = alice
        .ok(&[
            "upload",
            file.to_str().unwrap(),
            "--private",
            "--allow",
            "bob@localhost",
        ])
        .await;
    let rid = out.split('\t').next().unwrap().to_owned();
    assert_eq!(rid.len(), 64, "a derived ID: {out}");
    assert!(out.contains(&format!("{} bytes", bytes.len())), "{out}");
    assert!(out.contains("private, allowed: bob@localhost"), "{out}");

    // Bob may read it; it arrives byte for byte, in a file named after the ID.
    bob.ok(&["download", &rid]).await;
    assert_eq!(std::fs::read(dir.path().join(&rid)).unwrap(), bytes);
    // A second download does not overwrite that file.
    let (ok, _, err) = bob.run(&["download", &rid]).await;
    assert!(!ok && err.contains("exists"), "{err}");
    bob.ok(&["download", &rid, "-o", "copy.bin"]).await;
    assert_eq!(std::fs::read(dir.path().join("copy.bin")).unwrap(), bytes);

    // Shared with nobody: bob's download fails and leaves no file.
    alice.ok(&["resources", "share", &rid, "--private"]).await;
    let (ok, _, err) = bob.run(&["download", &rid, "-o", "denied.bin"]).await;
    assert!(!ok && err.contains("RESOURCE_NOT_FOUND"), "{err}");
    assert!(!dir.path().join("denied.bin").exists());

    // A chosen ID, public: readable without an account, to standard output.
    let note = dir.path().join("note.txt");
    std::fs::write(&note, "hello from alice\n").unwrap();
    let out = alice
        .ok(&[
            "upload",
            note.to_str().unwrap(),
            "--id",
            "hello.txt",
            "--public",
        ])
        .await;
    assert!(
        out.starts_with("hello.txt\t17 bytes\ttext/plain\tpublic"),
        "{out}"
    );
    let anonymous = Cli {
        url: server.url.clone(),
        keystore: dir.path().join("nobody.json"),
        cwd: dir.path().to_owned(),
    };
    let out = anonymous
        .ok(&["download", "hello.txt", "--from", &server.url, "-o", "-"])
        .await;
    assert_eq!(out, "hello from alice\n");

    let out = alice.ok(&["resources", "list", "--sort", "size-asc"]).await;
    let ids: Vec<&str> = out.lines().map(|l| l.split('\t').next().unwrap()).collect();
    assert_eq!(ids, ["hello.txt", rid.as_str()], "{out}");
    let out = alice.ok(&["resources", "usage"]).await;
    assert!(
        out.starts_with(&format!("{} of ", bytes.len() + 17)),
        "{out}"
    );
    alice.ok(&["resources", "delete", &rid]).await;
    let (ok, _, err) = alice.run(&["resources", "info", &rid]).await;
    assert!(!ok && err.contains("RESOURCE_NOT_FOUND"), "{err}");
    let (ok, _, err) = alice
        .run(&["upload", note.to_str().unwrap(), "--id", "../etc"])
        .await;
    assert!(!ok && err.contains("resource ID"), "{err}");
}

/// The first bytes of a PNG (what the server types an upload by).
const PNG: &[u8] = &[
    0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, b'I', b'H', b'D', b'R', 0, 0, 0,
    1, 0, 0, 0, 1, 8, 6, 0, 0, 0,
];

#[tokio::test]
async fn files_are_attached_to_messages_and_pictures_to_profiles_and_guilds() {
    let server = TestServer::start().await;
    server
        .client()
        .register("alice", PASSWORD, None, None)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let downloads = dir.path().join("downloads");
    std::fs::create_dir(&downloads).unwrap();
    let alice = Cli {
        url: server.url.clone(),
        keystore: dir.path().join("alice.json"),
        cwd: dir.path().to_owned(),
    };
    alice.ok(&["account", "login", "alice"]).await;
    std::fs::write(dir.path().join("notes.txt"), b"meeting at noon").unwrap();
    std::fs::write(dir.path().join("face.png"), PNG).unwrap();

    // A guild with an icon; a message with a file.
    let out = alice
        .ok(&["guild", "create", "club", "--icon", "face.png"])
        .await;
    assert!(out.contains(", icon http"), "{out}");
    let channel = word_after(&out, "channel ");
    let (ok, out, err) = alice
        .run(&["send", &channel, "the notes", "--attach", "notes.txt"])
        .await;
    assert!(ok, "{err}");
    assert!(out.starts_with("sent message"), "{out}");
    assert!(err.contains("attached notes.txt (15 bytes)"), "{err}");

    // Reading shows it by name, size and URL; the URL downloads it under its name.
    let read = alice.ok(&["read", &channel]).await;
    let line = read.lines().find(|l| l.contains("the notes")).unwrap();
    assert!(line.contains("[file: notes.txt (15 bytes) http"), "{line}");
    let url = line
        .split_whitespace()
        .find(|w| w.contains("/.p2/chat/v1/attachments/"))
        .unwrap()
        .trim_end_matches(']');
    let fetcher = Cli {
        cwd: downloads.clone(),
        ..alice
    };
    fetcher.ok(&["download", url]).await;
    assert_eq!(
        std::fs::read(downloads.join("notes.txt")).unwrap(),
        b"meeting at noon"
    );
    // Never over an existing file; a text has no thumbnail.
    let (ok, _, err) = fetcher.run(&["download", url]).await;
    assert!(!ok && err.contains("exists"), "{err}");
    let (ok, _, err) = fetcher
        .run(&["download", url, "--thumbnail", "-o", "t.jpg"])
        .await;
    assert!(!ok, "{err}");
    assert!(!downloads.join("t.jpg").exists(), "no half file");

    // An avatar: uploaded public, shown in the profile; an empty value removes it.
    fetcher
        .ok(&["profile", "set", "--avatar", "../face.png"])
        .await;
    let profile = fetcher.ok(&["profile"]).await;
    assert!(profile.contains("avatar: http"), "{profile}");
    fetcher.ok(&["profile", "set", "--avatar", ""]).await;
    let profile = fetcher.ok(&["profile"]).await;
    assert!(!profile.contains("avatar:"), "{profile}");
    // Something that is no image is refused, in words.
    let (ok, _, err) = fetcher
        .run(&["profile", "set", "--avatar", "../notes.txt"])
        .await;
    assert!(
        !ok && err.contains("is no PNG, JPEG, GIF or WebP image"),
        "{err}"
    );
    let resources = fetcher.ok(&["resources", "list"]).await;
    assert!(
        !resources.contains("text/plain\tpublic"),
        "nothing left behind: {resources}"
    );
}
