//! Data exports and deletion (core §7.3, §7.3.2): the archive of what is tied to the keys an
//! actor proves — messages, resources with their access properties, and on its home server
//! its certificates and key material —, built in the background (204 with `Retry-After`
//! meanwhile), and the deletion of the same data.

use std::collections::BTreeMap;
use std::io::Read;

use fugue_client::Session;
use fugue_client::migration::{Exported, delete_data_on, export_data_on};
use fugue_proto::api::{self, MessageBatch, keymaterial::EncryptedPkm};
use fugue_proto::certs::{IdCert, verify_strict};
use fugue_proto::export::AccessFile;
use fugue_proto::rawr::{AccessEntry, AccessProperties};
use fugue_proto::{ErrorCode, Serial};
use fugue_testkit::TestServer;

use crate::migration::{body, own_channel};
use crate::support::{assert_problem, assert_raw_problem, url};

/// An export asked for until it is there (at most 50 tries).
pub(crate) struct Fetched {
    pub(crate) bytes: Vec<u8>,
    /// The archive's name, from `Content-Disposition`.
    pub(crate) file_name: String,
    /// The first answer was 204 (being built).
    pub(crate) waited: bool,
}

/// Asks the server of `client` (`token` a session there) for the export `proof` ties to,
/// until it is there; checks its type, `Retry-After` and length on the way.
pub(crate) async fn fetch_export(
    client: &fugue_client::Client,
    token: &str,
    proof: &str,
) -> Fetched {
    let mut waited = None;
    for _ in 0..50 {
        let mut bytes = Vec::new();
        match export_data_on(client, token, proof, &mut bytes)
            .await
            .unwrap()
        {
            Exported::Building { retry_after } => {
                assert!((1..=60).contains(&retry_after), "{retry_after}");
                waited.get_or_insert(true);
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Exported::Written {
                download,
                file_name,
            } => {
                assert_eq!(download.content_type.as_deref(), Some("application/gzip"));
                assert_eq!(download.bytes, bytes.len() as u64);
                return Fetched {
                    bytes,
                    file_name: file_name.unwrap(),
                    waited: waited.unwrap_or(false),
                };
            }
        }
    }
    panic!("the export was not built in time");
}

/// `who`'s export on its home server: the archive's entries by path, its name, and whether
/// the first answer was 204.
async fn export(who: &Session, proof: &str) -> (BTreeMap<String, Vec<u8>>, String, bool) {
    let f = fetch_export(who.client(), who.token(), proof).await;
    (unpack(&f.bytes), f.file_name, f.waited)
}

/// The entries of a gzipped tar, by path (folders as empty entries ending in `/`).
pub(crate) fn unpack(gz: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(gz));
    let mut out = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        assert!(out.insert(path.clone(), bytes).is_none(), "{path} twice");
    }
    out
}

fn json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> T {
    serde_json::from_slice(bytes).unwrap()
}

/// Sends `text` in a new private guild of `who`: its channel and id.
async fn say(who: &Session, text: &str) -> (u64, u64) {
    let (chat, channel) = own_channel(who, text).await;
    let sent = chat.send_message(channel, body(text)).await.unwrap();
    (channel, sent.message.id)
}

fn backup(serial: Serial) -> EncryptedPkm {
    EncryptedPkm {
        key_data: format!("-----BEGIN ENCRYPTED PRIVATE KEY-----\n{serial:?}\n"),
        serial,
        encryption_algorithms: vec!["1.2.840.113549.1.5.13".into()],
    }
}

#[tokio::test]
async fn an_export_holds_what_the_proven_keys_signed_and_a_deletion_removes_it() {
    // No wait: the first request always finds the archive being built.
    let server = TestServer::start_with(|c| c.limits.export_wait_ms = 0).await;
    let laptop = server.register("alice").await;
    let phone = server.login("alice", "phone").await.unwrap();
    let laptop_serial = laptop.current_serial().unwrap();
    let phone_serial = phone.current_serial().unwrap();
    let first = say(&laptop, "first from the laptop").await;
    let second = say(&laptop, "second from the laptop").await;
    let from_phone = say(&phone, "from the phone").await;
    let (first, second, from_phone) = (first, second, from_phone);
    let access = AccessProperties {
        private: true,
        public: false,
        allowlist: vec![AccessEntry::Actor("bob@example.org".parse().unwrap())],
        denylist: vec![],
    };
    laptop
        .upload_resource(
            &"notes.txt".parse().unwrap(),
            &access,
            b"my notes".to_vec(),
            8,
        )
        .await
        .unwrap();
    laptop
        .upload_key_material(vec![backup(laptop_serial), backup(phone_serial)])
        .await
        .unwrap();

    // Without proofs: refused.
    let bare = laptop
        .client()
        .raw()
        .get(url(&server, &api::export_data::path()))
        .bearer_auth(laptop.token())
        .send()
        .await
        .unwrap();
    assert_raw_problem(bare, 403, ErrorCode::KeyTrialRequired).await;

    // The laptop's key proven: its two messages, every resource, certificate and backup.
    let proof = laptop
        .prove(&[(laptop.key(), laptop_serial)])
        .await
        .unwrap();
    let (entries, name, building) = export(&laptop, &proof).await;
    assert!(
        building,
        "the first answer is 204 while the archive is built"
    );
    let digits = name
        .strip_prefix("export")
        .and_then(|n| n.strip_suffix(&format!("-alice@{}.tar.gz", server.domain)))
        .unwrap_or_else(|| panic!("{name}"));
    assert!(
        digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()),
        "{name}"
    );
    let batches: Vec<MessageBatch> = json(&entries["messages.p2mb"]);
    assert_eq!(batches.len(), 1, "one batch: the laptop's certificate");
    let cert = IdCert::parse(batches[0].id_cert.as_bytes()).unwrap();
    assert_eq!(cert.serial.0, laptop_serial.0);
    let ids: Vec<u64> = batches[0].messages.iter().map(|m| m.id).collect();
    assert_eq!(ids, vec![first.1, second.1]);
    for m in &batches[0].messages {
        // Each message is what its author signed, and the signature verifies over it.
        let signed = fugue_proto::wire::to_canonical_vec(&m.content).unwrap();
        let signature = hex::decode(&m.signature).unwrap();
        verify_strict(&cert.key, &signed, &signature).unwrap();
        assert_eq!(
            m.content["author"],
            "alice@".to_owned() + server.domain.as_str()
        );
    }
    assert_eq!(entries["rawr/notes.txt"], b"my notes");
    let access_file: AccessFile = json(&entries["rawr/access_properties.p2al"]);
    assert_eq!(access_file.len(), 1);
    assert_eq!(access_file[0]["notes.txt"], access);
    let raw_access: serde_json::Value = json(&entries["rawr/access_properties.p2al"]);
    assert_eq!(
        raw_access[0]["notes.txt"]["public"], false,
        "public is always written"
    );
    for serial in [laptop_serial, phone_serial] {
        let pem = &entries[&format!("certs/{}.pem", serial.0)];
        assert_eq!(IdCert::parse(pem).unwrap().serial.0, serial.0);
    }
    let keys: Vec<EncryptedPkm> = json(&entries["crypt_certs.p2epk"]);
    assert_eq!(keys.len(), 2);
    assert!(entries.keys().all(|p| {
        [
            "messages.p2mb",
            "rawr/",
            "rawr/notes.txt",
            "rawr/access_properties.p2al",
            "certs/",
            "crypt_certs.p2epk",
        ]
        .contains(&p.as_str())
            || p.starts_with("certs/")
    }));
    // Never compressed again on the way, whatever the client accepts: its length stays.
    let raw = laptop
        .client()
        .raw()
        .get(url(&server, &api::export_data::path()))
        .bearer_auth(laptop.token())
        .header(api::KEYTRIAL_HEADER, &proof)
        .header("accept-encoding", "gzip, zstd")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 200);
    assert!(raw.headers().get("content-encoding").is_none());
    assert!(raw.headers().get("content-length").is_some());
    // Asked again: the same archive, at once.
    let (again, again_name, building) = export(&laptop, &proof).await;
    assert!(!building);
    assert_eq!((again, again_name), (entries, name));

    // Deleting with the laptop's key: its messages go, the phone's stay; the resource and
    // the laptop certificate's backup go too.
    delete_data_on(laptop.client(), laptop.token(), &proof, false)
        .await
        .unwrap();
    let chat = laptop.chat();
    for ((channel, id), gone) in [(first, true), (second, true), (from_phone, false)] {
        let m = chat.message(channel, id).await.unwrap();
        assert_eq!(m.deleted_timestamp.is_some(), gone, "message {id}");
        assert_eq!(m.content.is_empty(), gone, "message {id}");
    }
    assert_problem(
        laptop.resource_info("notes.txt").await,
        404,
        ErrorCode::ResourceNotFound,
    );
    let left = laptop.key_material(&[]).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].serial, phone_serial);
    // A new export holds no message of the laptop's any more.
    let (after, _, _) = export(&laptop, &proof).await;
    let batches: Vec<MessageBatch> = json(&after["messages.p2mb"]);
    assert!(batches.is_empty(), "{batches:?}");
    assert!(!after.contains_key("rawr/notes.txt"));
}

#[tokio::test]
async fn an_actor_of_another_server_exports_its_messages_there_without_certificates() {
    let (alpha, beta) = fugue_testkit::federated_pair().await;
    // bob of alpha signs in on beta and writes there.
    let bob = alpha.register("bob").await;
    let on_beta = bob.sign_in_on(beta.client(), &beta.domain).await.unwrap();
    let carol = beta.register("carol").await;
    let chat = bob.chat_on(&on_beta, beta.domain.clone());
    let dm = chat.open_dm(carol.fid()).await.unwrap();
    let sent = chat.send_message(dm.id, body("hello carol")).await.unwrap();
    let trial =
        fugue_client::migration::proof_trial_on(on_beta.client(), on_beta.token(), bob.fid())
            .await
            .unwrap();
    let proof =
        fugue_client::migration::prove_keys(&trial, &[(bob.key(), bob.current_serial().unwrap())]);
    let entries = unpack(
        &fetch_export(on_beta.client(), on_beta.token(), &proof)
            .await
            .bytes,
    );
    let batches: Vec<MessageBatch> = json(&entries["messages.p2mb"]);
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].messages[0].id, sent.message.id);
    assert!(
        !entries
            .keys()
            .any(|p| p.starts_with("certs") || p == "crypt_certs.p2epk"),
        "only the home server exports certificates and key material: {:?}",
        entries.keys()
    );
}

/// A gzipped tar of `entries`: (path as raw bytes, entry type, data).
fn craft(entries: &[(&[u8], tar::EntryType, &[u8])]) -> Vec<u8> {
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for (path, kind, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.as_old_mut().name[..path.len()].copy_from_slice(path);
        header.set_entry_type(*kind);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        if *kind == tar::EntryType::Symlink {
            header.set_link_name("/etc/passwd").unwrap();
        }
        header.set_cksum();
        tar.append(&header, *data).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

/// Posts `archive` as an import of `who` with `solution`.
async fn post_import(
    server: &TestServer,
    who: &Session,
    archive: Vec<u8>,
    solution: Option<&str>,
) -> reqwest::Response {
    let mut request = who
        .client()
        .raw()
        .post(url(server, &api::import_data::path()))
        .bearer_auth(who.token())
        .body(archive);
    if let Some(s) = solution {
        request = request.header(api::SENSITIVE_HEADER, s);
    }
    request.send().await.unwrap()
}

/// `export` of `old` signed anew by `new` (on its home server) for its DMs `dms` (peer,
/// DM id there): the archive to import, and what went in.
pub(crate) fn signed_for_import(
    export: &[u8],
    old: &Session,
    new: &Session,
    dms: &[(fugue_proto::FederationId, u64)],
) -> (Vec<u8>, fugue_client::archive::Rebuilt) {
    let signer = fugue_client::archive::Signer {
        fid: new.fid(),
        domain: new.fid().domain(),
        key: new.key(),
        cert_pem: new.cert_pem(),
    };
    let mut archive = Vec::new();
    let rebuilt = fugue_client::archive::rebuild_for_import(
        export,
        &mut archive,
        old.fid(),
        &signer,
        &dms.iter().cloned().collect(),
    )
    .unwrap();
    (archive, rebuilt)
}

/// Waits for `who`'s newest import to end.
pub(crate) async fn import_outcome(who: &Session) -> fugue_proto::export::ImportReport {
    for _ in 0..100 {
        let newest = who.data_imports().await.unwrap().remove(0);
        if newest.state != "running" {
            return newest;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the import did not end in time");
}

#[tokio::test]
async fn a_new_identity_imports_its_dms_and_resources_and_bad_archives_store_nothing() {
    let (alpha, beta) = fugue_testkit::federated_pair().await;
    // alice of alpha: a DM with carol (on alpha), a guild message, a resource.
    let alice = alpha.register("alice").await;
    let carol = alpha.register("carol").await;
    let dm = alice.chat().open_dm(carol.fid()).await.unwrap();
    let mut sent = Vec::new();
    for text in ["hi carol", "shall we move?"] {
        let m = alice.chat().send_message(dm.id, body(text)).await.unwrap();
        sent.push(m.message);
    }
    say(&alice, "in my guild").await;
    let public = AccessProperties {
        private: false,
        public: true,
        allowlist: vec![],
        denylist: vec![],
    };
    alice
        .upload_resource(
            &"photo.txt".parse().unwrap(),
            &public,
            b"a photo".to_vec(),
            7,
        )
        .await
        .unwrap();
    let proof = alice
        .prove(&[(alice.key(), alice.current_serial().unwrap())])
        .await
        .unwrap();
    let export = fetch_export(alice.client(), alice.token(), &proof)
        .await
        .bytes;
    let summary = fugue_client::archive::summarize(&export[..]).unwrap();
    assert_eq!(summary.peers, [carol.fid().clone()].into());
    assert_eq!(summary.owner.as_ref(), Some(alice.fid()));
    assert_eq!(
        (summary.messages, summary.resources, summary.certs),
        (3, 1, 1)
    );

    // alice2 of beta opens her DM with carol there and signs the DMs anew for it.
    let alice2 = beta.register("alice2").await;
    let new_dm = alice2.chat().open_dm(carol.fid()).await.unwrap();
    let (archive, rebuilt) = signed_for_import(
        &export,
        &alice,
        &alice2,
        &[(carol.fid().clone(), new_dm.id)],
    );
    assert_eq!(
        (rebuilt.messages, rebuilt.bound, rebuilt.resources),
        (2, 1, 1)
    );

    // Refused, each with a problem, and nothing stored: ...
    let nothing_stored = || async {
        let history = alice2
            .chat()
            .message_history(new_dm.id, &Default::default())
            .await
            .unwrap();
        assert!(history.is_empty(), "{history:?}");
        assert_problem(
            alice2.resource_info("photo.txt").await,
            404,
            ErrorCode::ResourceNotFound,
        );
        assert!(alice2.data_imports().await.unwrap().is_empty());
    };
    // ... without the second factor, or a session (the reference SDK's multipart form),
    let no_factor = post_import(&beta, &alice2, archive.clone(), None).await;
    assert_raw_problem(no_factor, 401, ErrorCode::SensitiveSolutionRequired).await;
    let form = reqwest::multipart::Form::new().text("name", "export");
    let no_session = reqwest::Client::new()
        .post(format!("{}{}/", beta.url, api::import_data::path()))
        .header(api::SENSITIVE_HEADER, fugue_testkit::PASSWORD)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_raw_problem(no_session, 401, ErrorCode::Unauthenticated).await;
    // ... the export as it is (messages signed by someone else: alice of alpha),
    let solution = Some(fugue_testkit::PASSWORD);
    let foreign = post_import(&beta, &alice2, export.clone(), solution).await;
    assert_raw_problem(foreign, 400, ErrorCode::ArchiveInvalid).await;
    // ... a signature or a text changed on the way (in the last message: the first, valid
    // one is not stored either),
    let signed: Vec<MessageBatch> = json(&unpack(&archive)["messages.p2mb"]);
    let mut forged = signed.clone();
    forged[0].messages[1].signature = "00".repeat(64);
    let mut changed = signed.clone();
    changed[0].messages[1].content["body"]["content"] = "not what was said".into();
    for batches in [forged, changed] {
        let bytes = serde_json::to_vec(&batches).unwrap();
        let entries = [(&b"messages.p2mb"[..], tar::EntryType::Regular, &bytes[..])];
        let resp = post_import(&beta, &alice2, craft(&entries), solution).await;
        assert_raw_problem(resp, 400, ErrorCode::ArchiveInvalid).await;
    }
    // ... truncated, or not an archive at all,
    let cut = archive[..archive.len() / 2].to_vec();
    for bad in [cut, b"not a tarball".to_vec()] {
        let resp = post_import(&beta, &alice2, bad, solution).await;
        assert_raw_problem(resp, 400, ErrorCode::ArchiveInvalid).await;
    }
    // ... with a path leaving the archive, a link, a duplicate or an unknown entry,
    let file = tar::EntryType::Regular;
    for entries in [
        vec![(&b"../messages.p2mb"[..], file, &b"[]"[..])],
        vec![(&b"rawr/../../etc/x"[..], file, &b"x"[..])],
        vec![(&b"rawr/link"[..], tar::EntryType::Symlink, &b""[..])],
        vec![
            (&b"rawr/a.txt"[..], file, &b"one"[..]),
            (&b"rawr/a.txt"[..], file, &b"two"[..]),
        ],
        vec![(&b"notes.txt"[..], file, &b"?"[..])],
        // Long-name and extension entries are refused, not read into memory.
        vec![(
            &b"././@LongLink"[..],
            tar::EntryType::GNULongName,
            &b"rawr/x"[..],
        )],
        vec![(
            &b"rawr/a.txt"[..],
            tar::EntryType::XHeader,
            &b"30 size=999999999999\n"[..],
        )],
        vec![(
            &b"rawr/access_properties.p2al"[..],
            file,
            &br#"[{"ghost":{}}]"#[..],
        )],
    ] {
        let resp = post_import(&beta, &alice2, craft(&entries), solution).await;
        assert_raw_problem(resp, 400, ErrorCode::ArchiveInvalid).await;
    }
    nothing_stored().await;
    // ... or with a resource ID taken on this server.
    let bob = beta.register("bob").await;
    bob.upload_resource(&"photo.txt".parse().unwrap(), &public, b"bob's".to_vec(), 5)
        .await
        .unwrap();
    let taken = post_import(&beta, &alice2, archive.clone(), solution).await;
    assert_raw_problem(taken, 400, ErrorCode::ArchiveInvalid).await;
    bob.delete_resource(&"photo.txt".parse().unwrap())
        .await
        .unwrap();
    nothing_stored().await;

    // The archive itself: 202, then stored in the background.
    let accepted = post_import(&beta, &alice2, archive.clone(), solution).await;
    assert_eq!(accepted.status(), 202);
    assert_eq!(accepted.headers()["content-length"], "0");
    let outcome = import_outcome(&alice2).await;
    assert_eq!(
        (outcome.state.as_str(), outcome.messages, outcome.resources),
        ("done", 2, 1),
        "{outcome:?}"
    );
    let history = alice2
        .chat()
        .message_history(new_dm.id, &Default::default())
        .await
        .unwrap();
    let texts: Vec<&str> = history.iter().rev().map(|m| m.content.as_str()).collect();
    assert_eq!(texts, ["hi carol", "shall we move?"]);
    assert!(history.iter().all(|m| m.author == *alice2.fid()));
    let verdicts = alice2.chat().verify_messages(new_dm.id, &history).await;
    assert!(verdicts.iter().all(|v| v.is_verified()), "{verdicts:?}");
    let mut photo = Vec::new();
    beta.client()
        .download_resource(None, "photo.txt", &mut photo)
        .await
        .unwrap();
    assert_eq!(photo, b"a photo", "public, as it was");

    // Imported again: nothing twice.
    let again = post_import(&beta, &alice2, archive, solution).await;
    assert_eq!(again.status(), 202);
    let outcome = import_outcome(&alice2).await;
    assert_eq!(outcome.state, "done", "{outcome:?}");
    let history = alice2
        .chat()
        .message_history(new_dm.id, &Default::default())
        .await
        .unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(alice2.data_imports().await.unwrap().len(), 2);
}

#[tokio::test]
async fn the_reference_sdk_exports_and_deletes_data() {
    use polyproto::api::{HttpClient, Session as SdkSession};
    use polyproto::types::KeyTrialResponse;
    use polyproto::url::Url;

    use crate::interop::{Ed25519PrivateKey, Ed25519Signature};

    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let (channel, id) = say(&alice, "exported by the SDK").await;
    let http = HttpClient::new().unwrap();
    let sdk = SdkSession::<Ed25519Signature, Ed25519PrivateKey>::new(
        &http,
        alice.token(),
        Url::parse(&server.url).unwrap(),
        None,
    );
    // The SDK names no trial: the newest open one is meant.
    let trial = alice.proof_trial().await.unwrap();
    let answer = || KeyTrialResponse {
        signature: hex::encode(alice.key().sign(trial.trial.as_bytes())),
        serial_number: alice.current_serial().unwrap().0.into(),
    };
    let mut bytes = None;
    for _ in 0..50 {
        bytes = sdk.export_all_data(&[answer()]).await.unwrap();
        if bytes.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let entries = unpack(&bytes.expect("the archive, once built"));
    let batches: Vec<MessageBatch> = json(&entries["messages.p2mb"]);
    assert_eq!(batches[0].messages[0].id, id);
    // `breakRedirect` as the SDK spells it.
    sdk.delete_data_from_server(false, &[answer()])
        .await
        .unwrap();
    let gone = alice.chat().message(channel, id).await.unwrap();
    assert!(gone.deleted_timestamp.is_some());
}

#[tokio::test]
async fn an_archive_beyond_the_importers_storage_is_refused_before_anything_is_stored() {
    let server = TestServer::start_with(|c| c.media.quota_bytes = 1000).await;
    let alice = server.register("alice").await;
    let big = vec![7u8; 2000];
    let small = b"fits".to_vec();
    let file = tar::EntryType::Regular;
    let archive = craft(&[
        (&b"rawr/small.bin"[..], file, &small[..]),
        (&b"rawr/big.bin"[..], file, &big[..]),
    ]);
    let resp = post_import(&server, &alice, archive, Some(fugue_testkit::PASSWORD)).await;
    assert_raw_problem(resp, 413, ErrorCode::TooLarge).await;
    assert_problem(
        alice.resource_info("small.bin").await,
        404,
        ErrorCode::ResourceNotFound,
    );
    assert!(alice.data_imports().await.unwrap().is_empty());
}
