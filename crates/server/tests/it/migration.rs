//! Migrations (core §7) between two servers: key trials taken while signed in and answered
//! for several keys (old ones too), and a redirect both sides confirm in either order, which
//! lookups of the old identity then follow (307, 308 once its account is deleted) while its
//! certificates stay where they were.

use fugue_client::migration::{confirm_redirect, prove_keys, withdraw_redirect};
use fugue_client::{ForeignSession, Session};
use fugue_proto::chat::MessageBody;
use fugue_proto::{ErrorCode, FederationId, api};
use fugue_testkit::{PASSWORD, TestServer, assert_problem};

use crate::support::url;

/// A private guild of `who`'s own: its chat and the guild's first channel.
pub(crate) async fn own_channel(who: &Session, name: &str) -> (fugue_client::Chat, u64) {
    let chat = who.chat();
    let guild = chat
        .create_guild(&api::create_guild::Request {
            name: name.into(),
            description: None,
            icon: None,
            private: Some(true),
        })
        .await
        .unwrap();
    let channel = chat.channels(guild.id).await.unwrap()[0].id;
    (chat, channel)
}

pub(crate) fn body(text: &str) -> MessageBody {
    MessageBody {
        content: text.into(),
        reply_to: None,
        attachments: vec![],
    }
}

/// Sends one signed chat message as `who` in a guild of its own.
async fn say(who: &Session, text: &str) {
    let (chat, channel) = own_channel(who, text).await;
    chat.send_message(channel, body(text)).await.unwrap();
}

/// The status and `Location` of a lookup on `server`.
async fn lookup(server: &TestServer, token: &str, path: &str) -> (u16, Option<String>) {
    // Redirects are seen, not followed.
    let resp = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(url(server, path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let location = resp
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned());
    (resp.status().as_u16(), location)
}

#[tokio::test]
async fn a_redirect_needs_both_sides_and_every_signing_key_and_lookups_follow_it() {
    // The old identity lives on beta, the new one on alpha (beta resolves alpha).
    let (alpha, beta) = fugue_testkit::federated_pair().await;
    let (old_server, new_server) = (&beta, &alpha);
    // The old identity signed messages on its server with two certificates (two sessions).
    let laptop = old_server.register("alice").await;
    let phone = old_server.login("alice", "phone").await.unwrap();
    say(&laptop, "from the laptop").await;
    say(&phone, "from the phone").await;
    let old = laptop.fid().clone();
    let new_home = new_server.register("alice2").await;
    let new: FederationId = new_home.fid().clone();
    let laptop_key = (laptop.key(), laptop.current_serial().unwrap());
    let phone_key = (phone.key(), phone.current_serial().unwrap());

    // Without proofs, with one key of two, or with a wrong signature: refused.
    let no_proof = laptop
        .client()
        .raw()
        .post(url(old_server, &api::set_up_redirect::path()))
        .bearer_auth(laptop.token())
        .body(new.to_string())
        .send()
        .await
        .unwrap();
    crate::support::assert_raw_problem(no_proof, 403, ErrorCode::KeyTrialRequired).await;
    let one = laptop.prove(&[laptop_key]).await.unwrap();
    let missing = laptop.set_up_redirect(&new, &one).await;
    assert_problem(missing, 403, ErrorCode::KeyTrialRequired);
    let trial = laptop.proof_trial().await.unwrap();
    let forged = prove_keys(&trial, &[(laptop.key(), phone_key.1)]);
    assert_problem(
        laptop.set_up_redirect(&new, &forged).await,
        403,
        ErrorCode::SignatureInvalid,
    );
    // A trial is for the signed-in actor itself.
    let bob = old_server.register("bob").await;
    let query = api::key_trial::Query {
        fid: old.to_string(),
    };
    let for_other = bob
        .client()
        .raw()
        .get(url(old_server, &api::key_trial::path()))
        .query(&query)
        .bearer_auth(bob.token())
        .send()
        .await
        .unwrap();
    crate::support::assert_raw_problem(for_other, 400, ErrorCode::KeyTrialInvalid).await;
    // A target that is no actor, or the source itself: refused.
    // The phone's session ends (its certificate revoked): its key still proves itself.
    laptop
        .revoke_session(phone.session_id(), PASSWORD)
        .await
        .unwrap();
    let both = laptop.prove(&[laptop_key, phone_key]).await.unwrap();
    let nobody: FederationId = "nobody@beta.test".parse().unwrap();
    assert_problem(
        laptop.set_up_redirect(&nobody, &both).await,
        400,
        ErrorCode::RedirectTargetInvalid,
    );
    assert_problem(
        laptop.set_up_redirect(&old, &both).await,
        400,
        ErrorCode::MalformedRequest,
    );

    // Every signing key proven (one trial answered for both, used twice): pending (202)
    // until the new actor confirms on the old server, signed in there by key trial.
    assert!(!laptop.set_up_redirect(&new, &both).await.unwrap());
    assert!(!laptop.set_up_redirect(&new, &both).await.unwrap());
    let discover = api::discover_services::path(&old);
    assert_eq!(lookup(old_server, bob.token(), &discover).await.0, 200);
    let signed_in: ForeignSession = new_home
        .sign_in_on(old_server.client(), &old_server.domain)
        .await
        .unwrap();
    assert!(
        confirm_redirect(&old_server.client(), signed_in.token(), &old)
            .await
            .unwrap()
    );

    // Lookups of the old identity go to the new one's home server; its certificates and
    // key trials stay.
    let (status, location) = lookup(old_server, bob.token(), &discover).await;
    assert_eq!(status, 307);
    assert_eq!(
        location.as_deref(),
        Some(format!("{}{}", new_server.url, api::discover_services::path(&new)).as_str())
    );
    let profile = api::get_profile::path(&old);
    let (status, location) = lookup(old_server, bob.token(), &profile).await;
    assert_eq!(status, 307);
    assert_eq!(
        location,
        Some(format!(
            "{}{}",
            new_server.url,
            api::get_profile::path(&new)
        ))
    );
    let certs = api::get_actor_idcerts::path(&old);
    assert_eq!(lookup(old_server, bob.token(), &certs).await.0, 200);

    // Another actor cannot take the target's place; the target withdraws and confirms
    // again; the source gives it up.
    let carol = old_server.register("carol").await;
    assert_problem(
        confirm_redirect(&old_server.client(), carol.token(), &old).await,
        409,
        ErrorCode::RedirectElsewhere,
    );
    withdraw_redirect(&old_server.client(), signed_in.token(), &old)
        .await
        .unwrap();
    assert_eq!(lookup(old_server, bob.token(), &discover).await.0, 200);
    assert!(
        confirm_redirect(&old_server.client(), signed_in.token(), &old)
            .await
            .unwrap()
    );
    laptop.remove_redirect(&new).await.unwrap();
    assert_problem(
        laptop.remove_redirect(&new).await,
        400,
        ErrorCode::MalformedRequest,
    );
    assert_eq!(lookup(old_server, bob.token(), &discover).await.0, 200);

    // Target first this time, then the source: confirmed; once the old account is deleted
    // the redirect is permanent (308).
    assert!(
        !confirm_redirect(&old_server.client(), signed_in.token(), &old)
            .await
            .unwrap()
    );
    let again = laptop.prove(&[laptop_key, phone_key]).await.unwrap();
    assert!(laptop.set_up_redirect(&new, &again).await.unwrap());
    assert_eq!(lookup(old_server, bob.token(), &discover).await.0, 307);
    laptop.delete_account(PASSWORD).await.unwrap();
    let (status, location) = lookup(old_server, bob.token(), &discover).await;
    assert_eq!(status, 308);
    assert!(location.unwrap().starts_with(&new_server.url));
}

#[tokio::test]
async fn the_reference_sdk_sets_up_and_removes_a_redirect() {
    use polyproto::api::{HttpClient, Session as SdkSession};
    use polyproto::types::KeyTrialResponse;
    use polyproto::url::Url;

    use crate::interop::{Ed25519PrivateKey, Ed25519Signature};

    // A move within one server: both sides are its actors.
    let (server, clock) = TestServer::start_with_clock().await;
    let old = server.register("old").await;
    let new = server.register("new").await;
    say(&old, "hello").await;
    let http = HttpClient::new().unwrap();
    let host = Url::parse(&server.url).unwrap();
    let sdk = |token: &str| {
        SdkSession::<Ed25519Signature, Ed25519PrivateKey>::new(&http, token, host.clone(), None)
    };
    let trial = old.proof_trial().await.unwrap();
    let answer = KeyTrialResponse {
        signature: hex::encode(old.key().sign(trial.trial.as_bytes())),
        serial_number: old.current_serial().unwrap().0.into(),
    };
    let new_fid = polyproto::types::FederationId::new(&new.fid().to_string()).unwrap();
    let old_fid = polyproto::types::FederationId::new(&old.fid().to_string()).unwrap();
    // The SDK sends the FID as a JSON string and the trial without naming it.
    sdk(old.token())
        .set_up_redirect(&[answer], &new_fid)
        .await
        .unwrap();
    sdk(new.token())
        .set_up_redirect_extern(&old_fid)
        .await
        .unwrap();
    let discover = api::discover_services::path(old.fid());
    let (status, location) = lookup(&server, new.token(), &discover).await;
    assert_eq!(status, 307);
    assert_eq!(
        location,
        Some(format!(
            "{}{}",
            server.url,
            api::discover_services::path(new.fid())
        ))
    );
    sdk(new.token())
        .remove_redirect_extern(&old_fid)
        .await
        .unwrap();
    assert_eq!(lookup(&server, new.token(), &discover).await.0, 200);
    sdk(old.token()).remove_redirect(&new_fid).await.unwrap();
    assert!(
        sdk(old.token()).remove_redirect(&new_fid).await.is_err(),
        "nothing left to remove"
    );

    // Once the trial expired, its verified answer is public record.
    let path = url(&server, &api::keytrials::path(&old.fid().to_string()));
    let record = || async {
        let resp = reqwest::get(path.as_str()).await.unwrap();
        if resp.status() == 204 {
            return Vec::new();
        }
        resp.json::<Vec<api::keytrials::Entry>>().await.unwrap()
    };
    assert!(record().await.is_empty());
    clock.advance(3600);
    let public = record().await;
    assert_eq!(public.len(), 1);
    assert_eq!(public[0].key_trial.trial, trial.trial);
    assert_eq!(public[0].key_trial_completion.len(), 1);
    assert_eq!(
        public[0].key_trial_completion[0].serial_number,
        old.current_serial().unwrap().0
    );
}

/// Signs in `who` on `server` by key trial: its token there.
async fn signed_in(who: &Session, server: &TestServer) -> String {
    who.sign_in_on(server.client(), &server.domain)
        .await
        .unwrap()
        .token()
        .to_owned()
}

#[tokio::test]
async fn messages_are_re_signed_to_a_new_identity_with_every_check_and_the_old_variant_kept() {
    use fugue_client::migration::{
        abort_resigning_on, commit_resigned_on, grant_resigning, messages_to_resign_on,
        proof_trial_on, resign_batch,
    };
    use fugue_proto::api::MessageBatch;

    // The messages are on beta, signed by its actor `old`; the new identity lives on alpha.
    let (alpha, beta) = fugue_testkit::federated_pair().await;
    let laptop = beta.register("old").await;
    let phone = beta.login("old", "phone").await.unwrap();
    let (chat, channel) = own_channel(&laptop, "history").await;
    let first = chat
        .send_message(channel, body("one"))
        .await
        .unwrap()
        .message;
    let second = chat
        .send_message(channel, body("two"))
        .await
        .unwrap()
        .message;
    chat.edit_message(channel, second.id, "two, edited".into(), vec![])
        .await
        .unwrap();
    let by_phone = phone
        .chat()
        .send_message(channel, body("from the phone"))
        .await
        .unwrap()
        .message;
    let new = alpha.register("new").await;
    let new_fid = new.fid().clone();
    let new_key_pem = {
        use ed25519_dalek::pkcs8::EncodePublicKey;
        new.key()
            .verifying_key()
            .to_public_key_pem(Default::default())
            .unwrap()
    };

    // The old identity proves only the laptop's key and grants re-signing to `new`.
    let trial = proof_trial_on(&beta.client(), laptop.token(), laptop.fid())
        .await
        .unwrap();
    let proof = prove_keys(&trial, &[(laptop.key(), laptop.current_serial().unwrap())]);
    let expires = grant_resigning(
        &beta.client(),
        laptop.token(),
        &proof,
        &new_fid,
        std::slice::from_ref(&new_key_pem),
    )
    .await
    .unwrap();
    assert!(expires > crate::support::unix_now());

    // The new identity, signed in on beta, gets exactly the laptop's messages.
    let token = signed_in(&new, &beta).await;
    let batches = messages_to_resign_on(&beta.client(), &token, None, None)
        .await
        .unwrap();
    assert_eq!(batches.len(), 1);
    let mut ids: Vec<u64> = batches[0].messages.iter().map(|m| m.id).collect();
    ids.sort_unstable();
    assert_eq!(ids, [first.id.min(second.id), first.id.max(second.id)]);
    assert!(!ids.contains(&by_phone.id));
    assert_eq!(batches[0].id_cert, laptop.cert_pem());
    // The limit and the size header.
    let raw = beta
        .client()
        .raw()
        .get(url(&beta, &api::messages_to_resign::path()))
        .query(&[("limit", "1")])
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(raw.headers()[api::RETURN_BODY_SIZE_LIMIT_HEADER], "1048576");
    let one: Vec<MessageBatch> = raw.json().await.unwrap();
    assert_eq!(one[0].messages.len(), 1);

    // Each of the four checks refuses on its own, storing nothing.
    let resigned = resign_batch(&batches[0], &new_fid, new.key(), new.cert_pem()).unwrap();
    let mut changed = resigned.clone();
    // The last message changed: the first, valid one is not stored either.
    changed.messages[1].content["body"]["content"] = "not what was said".into();
    assert_problem(
        commit_resigned_on(&beta.client(), &token, &[changed]).await,
        403,
        ErrorCode::Forbidden,
    );
    let other_key = alpha.login("new", "tablet").await.unwrap();
    let unallowed =
        resign_batch(&batches[0], &new_fid, other_key.key(), other_key.cert_pem()).unwrap();
    assert_problem(
        commit_resigned_on(&beta.client(), &token, &[unallowed]).await,
        403,
        ErrorCode::Forbidden,
    );
    let stranger = alpha.register("stranger").await;
    let not_theirs =
        resign_batch(&batches[0], &new_fid, stranger.key(), stranger.cert_pem()).unwrap();
    assert_problem(
        commit_resigned_on(&beta.client(), &token, &[not_theirs]).await,
        403,
        ErrorCode::Forbidden,
    );
    let mut phone_batch = resigned.clone();
    phone_batch.messages[0].id = by_phone.id;
    assert_problem(
        commit_resigned_on(&beta.client(), &token, &[phone_batch]).await,
        403,
        ErrorCode::Forbidden,
    );
    assert_eq!(
        messages_to_resign_on(&beta.client(), &token, None, None)
            .await
            .unwrap()[0]
            .messages
            .len(),
        2,
        "nothing was stored"
    );

    // Committed: nothing left, no wait; again, it changes nothing.
    let (next, wait) = commit_resigned_on(&beta.client(), &token, std::slice::from_ref(&resigned))
        .await
        .unwrap();
    assert!(next.is_empty());
    assert_eq!(wait, 0);
    let (next, _) = commit_resigned_on(&beta.client(), &token, &[resigned])
        .await
        .unwrap();
    assert!(next.is_empty());

    // The messages are the new identity's now, and verify as its; the first variant keeps
    // the old signature and verifies as the old identity's.
    let reader = laptop
        .chat()
        .with_home_server(alpha.domain.clone(), alpha.client());
    let page = reader
        .message_history(channel, &api::message_history::Query::default())
        .await
        .unwrap();
    for m in &page {
        let expected = if m.id == by_phone.id {
            laptop.fid()
        } else {
            &new_fid
        };
        assert_eq!(&m.author, expected, "{}", m.content);
        // A re-signed message says when: its new certificate was valid then, not
        // necessarily when it was first sent.
        assert_eq!(m.resigned_timestamp.is_some(), m.id != by_phone.id);
        assert!(m.resigned_timestamp.is_none_or(|t| t >= m.timestamp));
    }
    let verdicts = reader.verify_messages(channel, &page).await;
    assert!(
        verdicts
            .iter()
            .all(|v| *v == fugue_client::Verdict::Verified),
        "{verdicts:?}"
    );
    let edited = page.iter().find(|m| m.id == second.id).unwrap();
    let versions = reader.message_versions(channel, second.id).await.unwrap();
    assert_eq!(
        versions.len(),
        3,
        "the first version, the edit, its re-signed variant"
    );
    assert_eq!(versions[1].author.as_ref(), Some(laptop.fid()));
    assert_eq!(versions[2].author.as_ref(), Some(&new_fid));
    let verdicts = reader.verify_versions(channel, edited, &versions).await;
    assert!(
        verdicts
            .iter()
            .all(|v| *v == fugue_client::Verdict::Verified),
        "{verdicts:?}"
    );

    // Ended, the grant opens nothing.
    abort_resigning_on(&beta.client(), laptop.token(), &new_fid)
        .await
        .unwrap();
    assert_problem(
        messages_to_resign_on(&beta.client(), &token, None, None).await,
        403,
        ErrorCode::Forbidden,
    );
    assert_problem(
        abort_resigning_on(&beta.client(), laptop.token(), &new_fid).await,
        403,
        ErrorCode::Forbidden,
    );
}

#[tokio::test]
async fn a_grant_expires() {
    use fugue_client::migration::{
        commit_resigned_on, grant_resigning, messages_to_resign_on, resign_batch,
    };
    let (server, clock) = TestServer::start_with_clock().await;
    let old = server.register("old").await;
    let new = server.register("new").await;
    say(&old, "before the move").await;
    let proof = old
        .prove(&[(old.key(), old.current_serial().unwrap())])
        .await
        .unwrap();
    let key = {
        use ed25519_dalek::pkcs8::EncodePublicKey;
        new.key()
            .verifying_key()
            .to_public_key_pem(Default::default())
            .unwrap()
    };
    grant_resigning(&server.client(), old.token(), &proof, new.fid(), &[key])
        .await
        .unwrap();
    let batches = messages_to_resign_on(&server.client(), new.token(), None, None)
        .await
        .unwrap();
    let resigned = resign_batch(&batches[0], new.fid(), new.key(), new.cert_pem()).unwrap();
    clock.advance(25 * 3600);
    assert_problem(
        commit_resigned_on(&server.client(), new.token(), &[resigned]).await,
        403,
        ErrorCode::Forbidden,
    );
}
