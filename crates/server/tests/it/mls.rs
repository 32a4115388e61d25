//! polyproto-mls: KeyPackages checked on upload and handed out once per device (the
//! last-resort one kept, claims throttled, a device's packages gone with its session),
//! groups followed through their commits — one commit per epoch, Welcomes to the one device
//! they are for, every device join an event — and the rules the server enforces.

use std::time::Duration;

use fugue_client::mls::{Mls, Received};
use fugue_client::{Gateway, GatewayEvent, GatewayOptions, Session};
use fugue_proto::ErrorCode;
use fugue_proto::api;
use fugue_proto::mls::{self, DeviceEvent, KeyPackage, WelcomeEvent, op};
use fugue_testkit::{PASSWORD, TestServer};
use reqwest::StatusCode;

use crate::support::{assert_problem, delete_session, url};

/// A device of `name`: a fresh session with its MLS state and its gateway on `mls`.
struct Device {
    session: Session,
    mls: Mls,
    gateway: Gateway,
}

async fn device(session: Session) -> Device {
    let mls = Mls::new(&session).unwrap();
    let gateway = session.gateway(GatewayOptions::default()).await.unwrap();
    gateway.subscribe(mls::MLS).await.unwrap();
    Device {
        session,
        mls,
        gateway,
    }
}

/// The next `mls` event of `op` (others skipped), within five seconds.
async fn next(gw: &mut Gateway, op: u16) -> serde_json::Value {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match gw.recv().await {
                Some(GatewayEvent::Service { envelope })
                    if envelope.n == mls::MLS && envelope.op == op =>
                {
                    return envelope.d;
                }
                Some(_) => {}
                None => panic!("gateway ended"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no mls op {op}"))
}

/// Whether an `mls` event of `op` arrives within half a second.
async fn quiet(gw: &mut Gateway, op: u16) -> bool {
    tokio::time::timeout(Duration::from_millis(500), next(gw, op))
        .await
        .is_err()
}

async fn upload(d: &Device, n: usize, last_resort: bool) -> Vec<KeyPackage> {
    let kps = d.mls.key_packages(n, last_resort).unwrap();
    d.session.upload_key_packages(&kps).await.unwrap();
    kps
}

#[tokio::test]
async fn key_packages_are_handed_out_once_per_device_and_the_last_resort_one_stays() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob_1 = device(server.register("bob").await).await;
    let bob_2 = device(server.login("bob", "bob-laptop").await.unwrap()).await;
    let phone = upload(&bob_1, 3, true).await;
    let laptop = upload(&bob_2, 1, false).await;
    let bob = server.fid("bob");
    let chat = alice.chat();

    // One per device: the phone's oldest ordinary package and the laptop's.
    let first = chat.claim_key_packages(&bob).await.unwrap();
    let ids: Vec<_> = first.iter().map(|k| k.id.clone()).collect();
    assert_eq!(first.len(), 2, "{ids:?}");
    assert!(ids.contains(&laptop[0].id));
    let phone_first = ids.iter().find(|i| **i != laptop[0].id).unwrap().clone();
    assert!(phone_first == phone[0].id || phone_first == phone[1].id);
    for k in &first {
        fugue_client::mls::parse_key_package(k).unwrap();
    }
    // Then the phone's second; the laptop has none left.
    let second = chat.claim_key_packages(&bob).await.unwrap();
    assert_eq!(second.len(), 1);
    assert!(second[0].id != phone_first && !second[0].last_resort);
    assert!(second[0].id == phone[0].id || second[0].id == phone[1].id);
    // From now on only the phone's last-resort package, again and again.
    for _ in 0..2 {
        let again = chat.claim_key_packages(&bob).await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].id, phone[2].id);
        assert!(again[0].last_resort);
    }
    // None left for the laptop at all: it was told it runs low.
    let mut laptop_gw = bob_2.gateway;
    let low: mls::KeyPackagesLow =
        serde_json::from_value(next(&mut laptop_gw, op::KEY_PACKAGES_LOW).await).unwrap();
    assert_eq!(low.remaining, 0);

    // An actor without packages: 204, i.e. empty; an unknown one: 404.
    let carol = server.register("carol").await;
    assert!(
        alice
            .chat()
            .claim_key_packages(carol.fid())
            .await
            .unwrap()
            .is_empty()
    );
    assert_problem(
        chat.claim_key_packages(&server.fid("nobody")).await,
        404,
        ErrorCode::ActorNotFound,
    );
    // The filters: another suite only gets nothing; no suite is a 400.
    let target = api::claim_key_packages::path(&bob);
    let resp = alice
        .client()
        .raw()
        .get(url(&server, &format!("{target}?ciphersuites=0xf110")))
        .bearer_auth(alice.token())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = alice
        .client()
        .raw()
        .get(url(&server, &target))
        .bearer_auth(alice.token())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn claims_are_throttled_per_requester_and_actor() {
    let server = TestServer::start().await;
    let bob = device(server.register("bob").await).await;
    upload(&bob, 1, true).await;
    let mallory = server.register("mallory").await;
    let carol = server.register("carol").await;
    let mut throttled = None;
    for i in 0..40 {
        match mallory.chat().claim_key_packages(bob.session.fid()).await {
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e.code(), Some(ErrorCode::ClaimsThrottled), "{e}");
                throttled = Some(i);
                break;
            }
        }
    }
    assert_eq!(
        throttled,
        Some(30),
        "the 31st claim within the hour is refused"
    );
    // Another requester is not held back by mallory's claims.
    assert_eq!(
        carol
            .chat()
            .claim_key_packages(bob.session.fid())
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn uploads_are_checked_and_refused_whole_with_a_reason_per_package() {
    let server = TestServer::start().await;
    let alice = device(server.register("alice").await).await;
    let bob = device(server.register("bob").await).await;
    let good = alice.mls.key_packages(1, false).unwrap().remove(0);
    let bobs = bob.mls.key_packages(1, false).unwrap().remove(0);

    let mut tampered = alice.mls.key_packages(1, false).unwrap().remove(0);
    let mut bytes =
        fugue_proto::mls_wire::bytes("", tampered.mls.as_deref().unwrap(), usize::MAX).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    tampered.mls = Some(fugue_proto::mls_wire::b64(&bytes));
    let mut flag = alice.mls.key_packages(1, false).unwrap().remove(0);
    flag.last_resort = true;
    let mut bare = alice.mls.key_packages(1, false).unwrap().remove(0);
    bare.mls = None;
    let mut short = alice.mls.key_packages(1, false).unwrap().remove(0);
    short.id = "short".into();

    let upload = vec![good.clone(), bobs, tampered, flag, bare, short];
    let err = alice
        .session
        .upload_key_packages(&upload)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::KeyPackageInvalid), "{err}");
    let problem = match &err {
        fugue_client::Error::Api {
            problem: Some(p), ..
        } => p.clone(),
        other => panic!("{other}"),
    };
    let invalid: Vec<mls::KeyPackageRefusal> =
        serde_json::from_value(problem.extensions["invalid"].clone()).unwrap();
    let refused: Vec<_> = invalid.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(refused.len(), 5, "{invalid:?}");
    assert!(!refused.contains(&good.id.as_str()));
    assert!(
        invalid
            .iter()
            .any(|r| r.reason.contains("current certificate"))
    );
    assert!(invalid.iter().any(|r| r.reason.contains("does not verify")));
    assert!(invalid.iter().any(|r| r.reason.contains("lastResort")));
    assert!(
        invalid
            .iter()
            .any(|r| r.reason.contains("fugue:mls is missing"))
    );
    // All or none: not even the good one was stored.
    assert!(
        bob.session
            .chat()
            .claim_key_packages(alice.session.fid())
            .await
            .unwrap()
            .is_empty()
    );
    // The same package twice: refused as stored already.
    alice
        .session
        .upload_key_packages(std::slice::from_ref(&good))
        .await
        .unwrap();
    assert_problem(
        alice
            .session
            .upload_key_packages(std::slice::from_ref(&good))
            .await,
        400,
        ErrorCode::KeyPackageInvalid,
    );
    // A device keeps at most 100.
    let many = alice.mls.key_packages(100, false).unwrap();
    assert_problem(
        alice.session.upload_key_packages(&many).await,
        413,
        ErrorCode::KeyPackagesFull,
    );
}

#[tokio::test]
async fn a_device_s_packages_end_with_its_session_and_with_its_certificate() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let mut bob = device(server.register("bob").await).await;
    let laptop = device(server.login("bob", "bob-laptop").await.unwrap()).await;
    let phone = upload(&bob, 3, true).await;
    upload(&laptop, 3, true).await;
    // The laptop's session ends: its packages go.
    let resp = delete_session(&server, bob.session.token(), "bob-laptop", Some(PASSWORD)).await;
    assert!(resp.status().is_success(), "{}", resp.status());
    let claimed = alice
        .chat()
        .claim_key_packages(bob.session.fid())
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert!(phone.iter().any(|k| k.id == claimed[0].id));
    // The phone gets a new certificate: the packages of the old one go.
    bob.session.renew_cert(PASSWORD).await.unwrap();
    assert!(
        alice
            .chat()
            .claim_key_packages(bob.session.fid())
            .await
            .unwrap()
            .is_empty()
    );
    // Packages of the new certificate are taken again.
    bob.mls = Mls::new(&bob.session).unwrap();
    upload(&bob, 1, false).await;
    assert_eq!(
        alice
            .chat()
            .claim_key_packages(bob.session.fid())
            .await
            .unwrap()
            .len(),
        1
    );
}

/// A group of `owner` registered on `server`; its id.
async fn group_of(owner: &Device) -> String {
    let body = owner.mls.create_group().unwrap();
    let id = Mls::group_id_of(&body).unwrap();
    let g = owner.session.chat().mls_create_group(&body).await.unwrap();
    assert_eq!(
        (g.id.as_str(), g.epoch, g.members.len()),
        (id.as_str(), 0, 1)
    );
    id
}

/// `adder` claims every device of `to` and adds them; each joins from the Welcome its own
/// gateway brought.
async fn add(adder: &Device, id: &str, to: &mut [&mut Device]) -> mls::Commit {
    let chat = adder.session.chat();
    let kps = chat.claim_key_packages(to[0].session.fid()).await.unwrap();
    assert_eq!(kps.len(), to.len());
    let pending = adder.mls.add(id, &kps).unwrap();
    chat.mls_commit(id, &pending.commit).await.unwrap().unwrap();
    adder.mls.confirm(id).unwrap();
    for d in to.iter_mut() {
        let w: WelcomeEvent =
            serde_json::from_value(next(&mut d.gateway, op::WELCOME).await).unwrap();
        assert_eq!(d.mls.join(&w.welcome).unwrap(), id);
    }
    pending.commit
}

/// The next commit of the group on `d`'s gateway, applied.
async fn apply_next_commit(d: &mut Device, id: &str) -> Received {
    let e: mls::CommitEvent =
        serde_json::from_value(next(&mut d.gateway, op::COMMIT).await).unwrap();
    d.mls.receive(id, e.commit.mls.as_deref().unwrap()).unwrap()
}

fn text_of(r: Received) -> (String, String) {
    match r {
        Received::Message { from, text } => {
            (from.fid.to_string(), String::from_utf8(text).unwrap())
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_group_grows_by_commits_and_each_welcome_reaches_its_one_device() {
    let server = TestServer::start().await;
    let mut alice = device(server.register("alice").await).await;
    let mut phone = device(server.register("bob").await).await;
    let mut laptop = device(server.login("bob", "bob-laptop").await.unwrap()).await;
    let carol = server.register("carol").await;
    upload(&phone, 1, true).await;
    upload(&laptop, 1, true).await;
    let chat = alice.session.chat();
    let body = alice.mls.create_group().unwrap();
    let id = Mls::group_id_of(&body).unwrap();
    let g = chat.mls_create_group(&body).await.unwrap();
    assert_eq!(g.members[0].fid, *alice.session.fid());
    assert_eq!(g.members[0].role, mls::MemberRole::Admin);
    assert_problem(
        chat.mls_create_group(&body).await,
        409,
        ErrorCode::GroupExists,
    );
    assert_problem(
        carol.chat().mls_group(&id).await,
        404,
        ErrorCode::GroupNotFound,
    );
    assert_problem(
        carol.chat().mls_members(&id).await,
        404,
        ErrorCode::GroupNotFound,
    );

    // Both of bob's devices at once; each Welcome goes to its own session only.
    let kps = chat.claim_key_packages(phone.session.fid()).await.unwrap();
    let pending = alice.mls.add(&id, &kps).unwrap();
    let answered = chat
        .mls_commit(&id, &pending.commit)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answered.epoch, 1);
    alice.mls.confirm(&id).unwrap();
    let w_phone: WelcomeEvent =
        serde_json::from_value(next(&mut phone.gateway, op::WELCOME).await).unwrap();
    let w_laptop: WelcomeEvent =
        serde_json::from_value(next(&mut laptop.gateway, op::WELCOME).await).unwrap();
    assert_ne!(
        w_phone.welcome.key_package.id,
        w_laptop.welcome.key_package.id
    );
    assert!(
        quiet(&mut phone.gateway, op::WELCOME).await,
        "one Welcome per device"
    );
    phone.mls.join(&w_phone.welcome).unwrap();
    laptop.mls.join(&w_laptop.welcome).unwrap();

    // Every device join is an event of its own; the second of bob's says so.
    let mut joins = Vec::new();
    while joins.len() < 2 {
        let d: DeviceEvent =
            serde_json::from_value(next(&mut alice.gateway, op::DEVICE_JOINED).await).unwrap();
        if d.fid == *phone.session.fid() {
            joins.push(d);
        }
    }
    assert_eq!(
        joins.iter().filter(|d| d.more_devices).count(),
        1,
        "{joins:?}"
    );
    assert_ne!(joins[0].session, joins[1].session);

    // The server's member list: three devices, bob's two sessions.
    let members = chat.mls_members(&id).await.unwrap();
    assert_eq!(members.len(), 3);
    let bobs: Vec<_> = members
        .iter()
        .filter(|m| m.fid == *phone.session.fid())
        .map(|m| m.session.clone())
        .collect();
    assert!(bobs.contains(&phone.session.session_id().to_string()));
    assert!(bobs.contains(&laptop.session.session_id().to_string()));
    let one = chat.mls_member(&id, &members[1].id).await.unwrap();
    assert_eq!(one, members[1]);
    let latest = phone.session.chat().mls_latest_commit(&id).await.unwrap();
    assert_eq!(latest.epoch, 1);
    assert_eq!(
        latest
            .proposals
            .iter()
            .filter(|p| p.kind == mls::ProposalType::Add)
            .count(),
        2
    );

    // Everyone reads everyone; the sender is who the credential says.
    let ct = alice.mls.encrypt(&id, b"hello bob").unwrap();
    for d in [&phone, &laptop] {
        assert_eq!(
            text_of(d.mls.receive(&id, &ct).unwrap()),
            (alice.session.fid().to_string(), "hello bob".to_owned())
        );
    }
    let ct = laptop.mls.encrypt(&id, b"hi from the laptop").unwrap();
    assert_eq!(
        text_of(alice.mls.receive(&id, &ct).unwrap()).1,
        "hi from the laptop"
    );
}

#[tokio::test]
async fn one_commit_wins_each_epoch_and_replayed_foreign_or_forged_commits_are_refused() {
    let server = TestServer::start().await;
    let alice = device(server.register("alice").await).await;
    let mut bob = device(server.register("bob").await).await;
    let carol = server.register("carol").await;
    upload(&bob, 1, true).await;
    let id = group_of(&alice).await;
    let adding = add(&alice, &id, &mut [&mut bob]).await;
    let (a_chat, b_chat) = (alice.session.chat(), bob.session.chat());
    // A Welcome replayed on a commit that adds no one: refused, nothing moved.
    let mut replayed = alice.mls.commit_pending(&id).unwrap();
    replayed.commit.welcome.clone_from(&adding.welcome);
    assert_problem(
        a_chat.mls_commit(&id, &replayed.commit).await,
        400,
        ErrorCode::MlsMessageInvalid,
    );
    alice.mls.discard(&id).unwrap();

    // Both commit for epoch 1 → 2: the first wins, the second is told the epoch.
    let a = alice.mls.commit_pending(&id).unwrap();
    let b = bob.mls.commit_pending(&id).unwrap();
    assert!(a_chat.mls_commit(&id, &a.commit).await.unwrap().is_none());
    let lost = b_chat.mls_commit(&id, &b.commit).await.unwrap_err();
    assert_eq!(lost.code(), Some(ErrorCode::StaleEpoch), "{lost}");
    match &lost {
        fugue_client::Error::Api {
            status: 409,
            problem: Some(p),
        } => assert_eq!(p.extensions["epoch"], 2),
        other => panic!("{other}"),
    }
    alice.mls.confirm(&id).unwrap();
    bob.mls.discard(&id).unwrap();
    assert_eq!(
        apply_next_commit(&mut bob, &id).await,
        Received::Commit {
            epoch: 2,
            removed_self: false
        }
    );
    // The winner again: the epoch has passed.
    assert_problem(
        a_chat.mls_commit(&id, &a.commit).await,
        409,
        ErrorCode::StaleEpoch,
    );

    // A commit for epoch 3 by bob: not carol's to submit (she sees no such group), nor
    // alice's (it is bob's device), and not with a forged signature.
    let b = bob.mls.commit_pending(&id).unwrap();
    assert_problem(
        carol.chat().mls_commit(&id, &b.commit).await,
        404,
        ErrorCode::GroupNotFound,
    );
    assert_problem(
        a_chat.mls_commit(&id, &b.commit).await,
        403,
        ErrorCode::MlsForbidden,
    );
    let mut forged = b.commit.clone();
    let mut bytes =
        fugue_proto::mls_wire::bytes("", forged.mls.as_deref().unwrap(), usize::MAX).unwrap();
    // membership tag (33) and confirmation tag (33) end the message; the signature before.
    let at = bytes.len() - 33 - 33 - 10;
    bytes[at] ^= 0x55;
    forged.mls = Some(fugue_proto::mls_wire::b64(&bytes));
    assert_problem(
        b_chat.mls_commit(&id, &forged).await,
        400,
        ErrorCode::MlsMessageInvalid,
    );
    let mut wrong_epoch = b.commit.clone();
    wrong_epoch.epoch = 7;
    assert_problem(
        b_chat.mls_commit(&id, &wrong_epoch).await,
        409,
        ErrorCode::StaleEpoch,
    );
    // Nothing of that moved the group; bob's own commit still wins epoch 3.
    assert!(b_chat.mls_commit(&id, &b.commit).await.unwrap().is_none());
    bob.mls.confirm(&id).unwrap();
    assert_eq!(a_chat.mls_group(&id).await.unwrap().epoch, 3);
}

#[tokio::test]
async fn a_removed_device_reads_nothing_sent_afterwards_and_only_admins_remove_others() {
    let server = TestServer::start().await;
    let mut alice = device(server.register("alice").await).await;
    let mut bob = device(server.register("bob").await).await;
    let mut carol = device(server.register("carol").await).await;
    upload(&bob, 1, true).await;
    upload(&carol, 1, true).await;
    let id = group_of(&alice).await;
    add(&alice, &id, &mut [&mut bob]).await;
    add(&alice, &id, &mut [&mut carol]).await;
    apply_next_commit(&mut bob, &id).await;

    // bob may not remove alice: only the group's admins remove other actors' devices.
    let alice_leaf = alice.mls.own_leaf(&id).unwrap();
    let attempt = bob.mls.remove(&id, &[alice_leaf]).unwrap();
    assert_problem(
        bob.session.chat().mls_commit(&id, &attempt.commit).await,
        403,
        ErrorCode::MlsForbidden,
    );
    bob.mls.discard(&id).unwrap();

    // alice removes carol; bob and carol both get the commit.
    let carol_leaf = carol.mls.own_leaf(&id).unwrap();
    let removal = alice.mls.remove(&id, &[carol_leaf]).unwrap();
    assert!(
        alice
            .session
            .chat()
            .mls_commit(&id, &removal.commit)
            .await
            .unwrap()
            .is_none()
    );
    alice.mls.confirm(&id).unwrap();
    apply_next_commit(&mut bob, &id).await;
    assert_eq!(
        apply_next_commit(&mut carol, &id).await,
        Received::Commit {
            epoch: 3,
            removed_self: true
        }
    );
    let gone: DeviceEvent = loop {
        let d: DeviceEvent =
            serde_json::from_value(next(&mut alice.gateway, op::DEVICE_REMOVED).await).unwrap();
        if d.fid == *carol.session.fid() {
            break d;
        }
    };
    assert_eq!(gone.member_id, carol_leaf.to_string());

    // What alice sends now, bob reads and carol cannot; the server shows carol nothing.
    let ct = alice.mls.encrypt(&id, b"after carol left").unwrap();
    assert_eq!(
        text_of(bob.mls.receive(&id, &ct).unwrap()).1,
        "after carol left"
    );
    assert!(carol.mls.receive(&id, &ct).is_err());
    assert_problem(
        carol.session.chat().mls_group(&id).await,
        404,
        ErrorCode::GroupNotFound,
    );
    assert_eq!(
        alice.session.chat().mls_members(&id).await.unwrap().len(),
        2
    );
}

#[tokio::test]
async fn a_proposal_is_passed_on_and_committed_by_reference_by_another_member() {
    let server = TestServer::start().await;
    let alice = device(server.register("alice").await).await;
    let mut bob = device(server.register("bob").await).await;
    let mut carol = device(server.register("carol").await).await;
    upload(&bob, 1, true).await;
    upload(&carol, 1, true).await;
    let id = group_of(&alice).await;
    add(&alice, &id, &mut [&mut bob]).await;
    add(&alice, &id, &mut [&mut carol]).await;
    apply_next_commit(&mut bob, &id).await;

    // alice, the admin, proposes carol's removal; every member is told.
    let carol_leaf = carol.mls.own_leaf(&id).unwrap();
    let proposal = alice.mls.propose_remove(&id, carol_leaf).unwrap();
    alice
        .session
        .chat()
        .mls_propose(&id, &proposal)
        .await
        .unwrap();
    let seen: mls::ProposalEvent =
        serde_json::from_value(next(&mut bob.gateway, op::PROPOSAL).await).unwrap();
    assert_eq!(seen.proposal.kind, mls::ProposalType::Remove);
    assert_eq!(seen.proposal.target, Some(carol_leaf.to_string()));
    assert_eq!(
        bob.mls
            .receive(&id, seen.proposal.mls.as_deref().unwrap())
            .unwrap(),
        Received::Proposal
    );
    let pending = bob.session.chat().mls_proposals(&id).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, proposal.id);
    // The same again: pending already; and bob may not pass off alice's as his.
    assert_problem(
        alice.session.chat().mls_propose(&id, &proposal).await,
        409,
        ErrorCode::ProposalExists,
    );
    assert_problem(
        bob.session.chat().mls_propose(&id, &proposal).await,
        403,
        ErrorCode::MlsForbidden,
    );

    // bob, no admin, commits it: judged as alice's, it goes through.
    let commit = bob.mls.commit_pending(&id).unwrap();
    assert!(
        bob.session
            .chat()
            .mls_commit(&id, &commit.commit)
            .await
            .unwrap()
            .is_none()
    );
    bob.mls.confirm(&id).unwrap();
    let members = alice.session.chat().mls_members(&id).await.unwrap();
    assert_eq!(members.len(), 2);
    assert!(members.iter().all(|m| m.fid != *carol.session.fid()));
    assert!(
        bob.session
            .chat()
            .mls_proposals(&id)
            .await
            .unwrap()
            .is_empty()
    );

    // A proposal of bob's own to remove alice is judged as his: refused.
    let alice_leaf = alice.mls.own_leaf(&id).unwrap();
    let own = bob.mls.propose_remove(&id, alice_leaf).unwrap();
    assert_problem(
        bob.session.chat().mls_propose(&id, &own).await,
        403,
        ErrorCode::MlsForbidden,
    );
}
