//! The whole move of core §7 across three servers: alice@alpha.test becomes
//! alice2@beta.test — a redirect both confirm; her messages re-signed where they are (a DM
//! on gamma.test, a guild message on alpha); her export from alpha imported on beta (her
//! DM with carol, signed anew, and her file); her data on alpha deleted. Every message that
//! is left still verifies: the re-signed ones under the new certificate, their earlier
//! variants under the old one.

use fugue_client::migration::{
    commit_resigned_on, confirm_redirect, delete_data_on, grant_resigning, messages_to_resign_on,
    proof_trial_on, prove_keys, resign_batch,
};
use fugue_client::{Chat, ForeignSession, Session};
use fugue_proto::api;
use fugue_proto::rawr::AccessProperties;
use fugue_testkit::TestServer;

use crate::exports::{fetch_export, import_outcome, signed_for_import};
use crate::migration::body;
use crate::support::url;

/// Re-signs, as `new` signed in on the server of `there`, the messages granted to it in
/// `channel` (any channel without).
async fn resign_all(new: &Session, there: &ForeignSession, channel: Option<u64>) -> usize {
    let mut batches = messages_to_resign_on(there.client(), there.token(), None, None)
        .await
        .unwrap();
    let mut done = 0;
    for _ in 0..10 {
        if batches.is_empty() {
            break;
        }
        for b in &mut batches {
            b.messages.retain(|m| {
                channel.is_none_or(|c| m.content["conversation"] == c.to_string().as_str())
            });
        }
        batches.retain(|b| !b.messages.is_empty());
        if batches.is_empty() {
            break;
        }
        let resigned: Vec<_> = batches
            .iter()
            .map(|b| resign_batch(b, new.fid(), new.key(), new.cert_pem()).unwrap())
            .collect();
        done += resigned.iter().map(|b| b.messages.len()).sum::<usize>();
        batches = commit_resigned_on(there.client(), there.token(), &resigned)
            .await
            .unwrap()
            .0;
    }
    done
}

/// Lets `new` re-sign what `old` signed on the server of `client`, where `token` is `old`'s
/// session.
async fn grant(old: &Session, client: &fugue_client::Client, token: &str, new: &Session) {
    let new_key = {
        use ed25519_dalek::pkcs8::EncodePublicKey;
        new.key()
            .verifying_key()
            .to_public_key_pem(Default::default())
            .unwrap()
    };
    let trial = proof_trial_on(client, token, old.fid()).await.unwrap();
    let proof = prove_keys(&trial, &[(old.key(), old.current_serial().unwrap())]);
    grant_resigning(client, token, &proof, new.fid(), &[new_key])
        .await
        .unwrap();
}

/// Every message of `channel` verifies, and every version of each (the authors' home
/// servers among `homes`).
async fn all_verify(
    chat: Chat,
    channel: u64,
    homes: &[&TestServer],
) -> Vec<fugue_proto::chat::Message> {
    let chat = homes.iter().fold(chat, |chat, home| {
        chat.with_home_server(home.domain.clone(), home.client())
    });
    let history = chat
        .message_history(channel, &Default::default())
        .await
        .unwrap();
    for (m, verdict) in history
        .iter()
        .zip(chat.verify_messages(channel, &history).await)
    {
        assert!(verdict.is_verified(), "message {}: {verdict:?}", m.id);
        let versions = chat.message_versions(channel, m.id).await.unwrap();
        for v in chat.verify_versions(channel, m, &versions).await {
            assert!(v.is_verified(), "a version of {}: {v:?}", m.id);
        }
    }
    history
}

/// Where a discovery of `who`'s services on `server` ends, redirects followed: its path.
async fn discovered(server: &TestServer, who: &Session) -> String {
    let answer = who
        .client()
        .raw()
        .get(url(server, &api::discover_services::path(who.fid())))
        .bearer_auth(who.token())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    answer.url().path().to_owned()
}

#[tokio::test]
async fn alice_moves_from_alpha_to_beta_and_every_message_left_verifies() {
    let (alpha, beta, gamma) = fugue_testkit::federated_trio().await;
    let alice = alpha.register("alice").await;
    let carol = alpha.register("carol").await;
    let dave = gamma.register("dave").await;

    // Before: a DM with carol (on alpha, carol's server), a DM with dave (on gamma, his),
    // a message in her guild on alpha, and a file.
    let dm_carol = alice.chat().open_dm(carol.fid()).await.unwrap();
    alice
        .chat()
        .send_message(dm_carol.id, body("hi carol"))
        .await
        .unwrap();
    let alice_on_gamma = alice
        .sign_in_on(gamma.client(), &gamma.domain)
        .await
        .unwrap();
    let gamma_chat = alice.chat_on(&alice_on_gamma, gamma.domain.clone());
    let dm_dave = gamma_chat.open_dm(dave.fid()).await.unwrap();
    gamma_chat
        .send_message(dm_dave.id, body("hi dave"))
        .await
        .unwrap();
    let guild = alice
        .chat()
        .create_guild(&api::create_guild::Request {
            name: "home".into(),
            description: None,
            icon: None,
            private: Some(true),
        })
        .await
        .unwrap();
    let general = alice.chat().channels(guild.id).await.unwrap()[0].id;
    alice
        .chat()
        .send_message(general, body("my guild"))
        .await
        .unwrap();
    alice
        .upload_resource(
            &"avatar.txt".parse().unwrap(),
            &AccessProperties::default(),
            b"me".to_vec(),
            2,
        )
        .await
        .unwrap();

    // 1. The redirect: alice asks (proving her key), alice2 confirms on alpha.
    let alice2 = beta.register("alice2").await;
    let proof = alice
        .prove(&[(alice.key(), alice.current_serial().unwrap())])
        .await
        .unwrap();
    assert!(!alice.set_up_redirect(alice2.fid(), &proof).await.unwrap());
    let alice2_on_alpha = alice2
        .sign_in_on(alpha.client(), &alpha.domain)
        .await
        .unwrap();
    assert!(
        confirm_redirect(
            alice2_on_alpha.client(),
            alice2_on_alpha.token(),
            alice.fid()
        )
        .await
        .unwrap()
    );

    // 2. Re-signing where the messages are: her DM on gamma, her guild message on alpha.
    grant(
        &alice,
        alice_on_gamma.client(),
        alice_on_gamma.token(),
        &alice2,
    )
    .await;
    let alice2_on_gamma = alice2
        .sign_in_on(gamma.client(), &gamma.domain)
        .await
        .unwrap();
    assert_eq!(resign_all(&alice2, &alice2_on_gamma, None).await, 1);
    grant(&alice, alice.client(), alice.token(), &alice2).await;
    // Only the guild message: her DM with carol moves with the export.
    assert_eq!(
        resign_all(&alice2, &alice2_on_alpha, Some(general)).await,
        1
    );

    // 3. The export from alpha, 4. imported on beta.
    let proof = alice
        .prove(&[(alice.key(), alice.current_serial().unwrap())])
        .await
        .unwrap();
    let export = fetch_export(alice.client(), alice.token(), &proof)
        .await
        .bytes;
    let new_dm = alice2.chat().open_dm(carol.fid()).await.unwrap();
    let summary = fugue_client::archive::summarize(&export[..]).unwrap();
    assert_eq!(
        summary.messages, 1,
        "only the DM is still alice's: {summary:?}"
    );
    let (archive, rebuilt) = signed_for_import(
        &export,
        &alice,
        &alice2,
        &[(carol.fid().clone(), new_dm.id)],
    );
    assert_eq!((rebuilt.messages, rebuilt.resources), (1, 1));
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &archive).unwrap();
    alice2
        .import_data(file.path(), fugue_testkit::PASSWORD)
        .await
        .unwrap();
    let outcome = import_outcome(&alice2).await;
    assert_eq!(
        (outcome.state.as_str(), outcome.messages, outcome.resources),
        ("done", 1, 1)
    );

    // 5. alice's data on alpha goes: what her key still signed (the DM with carol, now on
    // beta) and her file.
    delete_data_on(alice.client(), alice.token(), &proof, false)
        .await
        .unwrap();

    // After: lookups of alice go to beta; every message left verifies.
    assert_eq!(
        discovered(&alpha, &alice).await,
        api::discover_services::path(alice2.fid()),
        "followed to the same lookup of alice2"
    );
    let homes = [&alpha, &beta, &gamma];
    let on_gamma = all_verify(dave.chat(), dm_dave.id, &homes).await;
    assert_eq!(on_gamma.len(), 1);
    assert_eq!(on_gamma[0].author, *alice2.fid());
    let on_alpha = all_verify(alice.chat(), general, &homes).await;
    assert_eq!(
        (
            on_alpha.len(),
            &on_alpha[0].author,
            on_alpha[0].content.as_str()
        ),
        (1, alice2.fid(), "my guild")
    );
    let on_beta = all_verify(alice2.chat(), new_dm.id, &homes).await;
    assert_eq!(
        (
            on_beta.len(),
            &on_beta[0].author,
            on_beta[0].content.as_str()
        ),
        (1, alice2.fid(), "hi carol")
    );
    let left_on_alpha = carol
        .chat()
        .message_history(dm_carol.id, &Default::default())
        .await
        .unwrap();
    assert!(
        left_on_alpha.iter().all(|m| m.deleted_timestamp.is_some()),
        "{left_on_alpha:?}"
    );
    assert!(alice.resource_info("avatar.txt").await.is_err());
    assert_eq!(alice2.resource_info("avatar.txt").await.unwrap().size, 2);

    // Deleting again, breaking the redirect: lookups of alice stay on alpha.
    delete_data_on(alice.client(), alice.token(), &proof, true)
        .await
        .unwrap();
    assert_eq!(
        discovered(&alpha, &alice).await,
        api::discover_services::path(alice.fid())
    );
}
