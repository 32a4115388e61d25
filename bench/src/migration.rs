//! Moving an actor's data: `cargo run --release -p fugue-bench -- migration [--quick]`.
//!
//! Against a child server (`--serve-media`: SQLite `synchronous=FULL`, a media directory),
//! alice sends 100,000 DM messages to carol (10,000 with `--quick`), signed and sent over
//! loopback by 16 concurrent senders. Then:
//!
//! - export: from alice's first `GET /data` to the whole archive received (the server builds
//!   it in the background; the client asks again every 100 ms) — target ≤ 10 s;
//! - signing anew for the import (client side: every old signature checked, every message
//!   signed again for alice2's DM with carol);
//! - import: from alice2's `POST /migration/data` to the import reported done (the server
//!   checks the archive whole, answers 202, then stores every message as a send) — target
//!   ≤ 10 s;
//! - re-signing in place: alice grants alice2, which fetches batches of 1,000, re-signs and
//!   commits them, for 20,000 messages (5,000 with `--quick`) — messages per second.

use std::time::{Duration, Instant};

use fugue_client::Session;
use fugue_client::migration::{
    Exported, commit_resigned_on, export_data_on, grant_resigning, messages_to_resign_on,
    proof_trial_on, prove_keys, resign_batch,
};
use fugue_proto::chat::MessageBody;

use crate::media::sign_up;
use crate::{PASSWORD, start_child};

/// Concurrent senders while the history is written.
const SENDERS: usize = 16;

pub async fn bench(quick: bool) {
    let messages: usize = if quick { 10_000 } else { 100_000 };
    let resign: usize = if quick { 5_000 } else { 20_000 };
    println!("## migration: export and import of {messages} messages, re-signing");
    let tmp = tempfile::tempdir_in(std::env::current_dir().unwrap()).unwrap();
    let dir = tmp.path().join("server");
    let Some((child, port)) = start_child("--serve-media", &dir, &[], true).await else {
        println!("the child did not start");
        return;
    };
    let alice = sign_up(port, "alice").await;
    let carol = sign_up(port, "carol").await;
    let alice2 = sign_up(port, "alice2").await;
    let dm = alice.chat().open_dm(carol.fid()).await.unwrap();

    let started = Instant::now();
    let mut tasks = Vec::new();
    for sender in 0..SENDERS {
        let chat = alice.chat();
        let count = messages / SENDERS + usize::from(sender < messages % SENDERS);
        tasks.push(tokio::spawn(async move {
            for i in 0..count {
                let body = MessageBody {
                    content: format!("message {i} of sender {sender}: a line of a DM"),
                    reply_to: None,
                    attachments: vec![],
                };
                chat.send_message(dm.id, body).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let seeded = started.elapsed();
    println!(
        "history: {messages} messages sent in {:.1} s ({:.0}/s)",
        seeded.as_secs_f64(),
        messages as f64 / seeded.as_secs_f64()
    );

    // Export.
    let proof = prove(&alice).await;
    let started = Instant::now();
    let mut archive = Vec::new();
    for _ in 0..3000 {
        archive.clear();
        match export_data_on(alice.client(), alice.token(), &proof, &mut archive)
            .await
            .unwrap()
        {
            Exported::Written { .. } => break,
            Exported::Building { .. } => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let export = started.elapsed();
    println!(
        "export: {:.2} s for {messages} messages, {:.1} MiB gzipped (target ≤ 10 s)",
        export.as_secs_f64(),
        archive.len() as f64 / 1024.0 / 1024.0
    );

    // Signing anew, client side.
    let new_dm = alice2.chat().open_dm(carol.fid()).await.unwrap();
    let started = Instant::now();
    let signer = fugue_client::archive::Signer {
        fid: alice2.fid(),
        domain: alice2.fid().domain(),
        key: alice2.key(),
        cert_pem: alice2.cert_pem(),
    };
    let mut signed = Vec::new();
    let rebuilt = fugue_client::archive::rebuild_for_import(
        &archive[..],
        &mut signed,
        alice.fid(),
        &signer,
        &[(carol.fid().clone(), new_dm.id)].into(),
    )
    .unwrap();
    assert_eq!(rebuilt.messages as usize, messages);
    println!(
        "signing anew for the import (client, one thread): {:.2} s",
        started.elapsed().as_secs_f64()
    );

    // Import.
    let file = tmp.path().join("import.tar.gz");
    std::fs::write(&file, &signed).unwrap();
    let started = Instant::now();
    alice2.import_data(&file, PASSWORD).await.unwrap();
    let accepted = started.elapsed();
    let mut report = None;
    for _ in 0..6000 {
        let newest = alice2.data_imports().await.unwrap().remove(0);
        if newest.state != "running" {
            report = Some(newest);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let import = started.elapsed();
    let report = report.expect("the import ended within 5 minutes");
    assert_eq!(report.messages as usize, messages, "{report:?}");
    println!(
        "import: {:.2} s for {messages} messages ({:.2} s until 202: spooled and checked whole) (target ≤ 10 s)",
        import.as_secs_f64(),
        accepted.as_secs_f64()
    );

    // Re-signing in place.
    let new_key = {
        use ed25519_dalek::pkcs8::EncodePublicKey;
        alice2
            .key()
            .verifying_key()
            .to_public_key_pem(Default::default())
            .unwrap()
    };
    grant_resigning(
        alice.client(),
        alice.token(),
        &prove(&alice).await,
        alice2.fid(),
        &[new_key],
    )
    .await
    .unwrap();
    let started = Instant::now();
    let mut done = 0;
    let mut batches = messages_to_resign_on(alice2.client(), alice2.token(), Some(1000), None)
        .await
        .unwrap();
    while done < resign && !batches.is_empty() {
        let resigned: Vec<_> = batches
            .iter()
            .map(|b| resign_batch(b, alice2.fid(), alice2.key(), alice2.cert_pem()).unwrap())
            .collect();
        done += resigned.iter().map(|b| b.messages.len()).sum::<usize>();
        commit_resigned_on(alice2.client(), alice2.token(), &resigned)
            .await
            .unwrap();
        batches = messages_to_resign_on(alice2.client(), alice2.token(), Some(1000), None)
            .await
            .unwrap();
    }
    let took = started.elapsed();
    println!(
        "re-signing: {done} messages in {:.2} s = {:.0} messages/s (fetch 1,000, check, sign, commit)",
        took.as_secs_f64(),
        done as f64 / took.as_secs_f64()
    );
    drop(child);
}

/// A proof of `who`'s key on its home server.
async fn prove(who: &Session) -> String {
    let trial = proof_trial_on(who.client(), who.token(), who.fid())
        .await
        .unwrap();
    prove_keys(&trial, &[(who.key(), who.current_serial().unwrap())])
}
