//! Signing and verifying messages without a server: the checks that need no network, and
//! the home server's list as `check_published` reads it.

#![allow(clippy::unwrap_used)]

use fugue_proto::cache::CacheableIdCert;
use fugue_proto::certs::IdCert;
use fugue_proto::certs::issue::{Window, actor_tbs, cert_pem, finish_cert};
use fugue_proto::chat::{Message, MessageBody};
use fugue_proto::{FederationId, Serial, SessionId};

use super::verify::{check_published, check_signature, decode_hex};
use super::*;
use crate::IdentityKey;
use crate::verify::VerifiedCert;

const NOW: u64 = 1_800_000_000;

/// A session of alice@example.com whose certificate (serial 7) the CA key `ca` issued.
fn alice(ca: &IdentityKey) -> Session {
    let fid: FederationId = "alice@example.com".parse().unwrap();
    let session: SessionId = "laptop".parse().unwrap();
    let key = IdentityKey::generate();
    let window = Window {
        not_before: NOW - 3600,
        not_after: NOW + 3600,
    };
    let tbs = actor_tbs(Serial(7), &fid, &session, &key.verifying_key(), window).unwrap();
    let pem = cert_pem(&finish_cert(tbs, |b| ca.sign(b)).unwrap()).unwrap();
    let client = Client::new("http://127.0.0.1:9").unwrap();
    Session::restore(client, fid, session, "token".into(), pem, key)
}

/// The message a server would store for `prepared`.
fn stored(chat: &Chat, prepared: &PreparedMessage, id: u64) -> Message {
    let r = &prepared.request;
    Message {
        id,
        uid: id.to_string(),
        version: 1,
        channel_id: prepared.channel_id,
        guild_id: 1,
        author: chat.fid().clone(),
        content: r.content.clone(),
        reply_to: r.reply_to,
        timestamp: NOW,
        edited_timestamp: None,
        deleted_timestamp: None,
        resigned_timestamp: None,
        nonce: r.nonce.clone(),
        signature: r.signature.clone(),
        id_cert: r.id_cert.clone().unwrap(),
        serial: Serial(7),
        attachments: r.attachments.clone(),
        attachment_details: Vec::new(),
        embeds: vec![],
        reactions: vec![],
    }
}

fn body(text: &str) -> MessageBody {
    MessageBody {
        content: text.into(),
        reply_to: Some(3),
        attachments: vec![],
    }
}

#[test]
fn a_signed_message_verifies_and_every_tampering_fails() {
    let chat = alice(&IdentityKey::generate()).chat();
    let prepared = chat.prepare_message(42, body("hello"));
    assert_eq!(prepared.request.nonce.len(), 32);
    let m = stored(&chat, &prepared, 100);
    let domain = chat.domain().clone();
    check_signature(&domain, Some(42), &m).unwrap();

    let fails = |m: &Message, channel: Option<u64>, why: &str| {
        let err = check_signature(&domain, channel, m).unwrap_err();
        assert!(err.contains(why), "{err}");
    };
    let mut tampered = m.clone();
    tampered.content = "hell0".into();
    fails(&tampered, Some(42), "does not verify");
    let mut reply = m.clone();
    reply.reply_to = None;
    fails(&reply, Some(42), "does not verify");
    // Moved: served as a message of channel 43, or claimed to be one.
    fails(&m, Some(43), "belongs to channel 42, not 43");
    let mut moved = m.clone();
    moved.channel_id = 43;
    fails(&moved, Some(43), "does not verify");
    // Replayed under another nonce, or claimed to be an edit.
    let mut renonced = m.clone();
    renonced.nonce = "other".into();
    fails(&renonced, None, "does not verify");
    let mut edited = m.clone();
    edited.edited_timestamp = Some(NOW);
    fails(&edited, None, "does not verify");
    // A later version that is no edit (re-signed, core §7.2) still verifies as a first one.
    let mut resigned = m.clone();
    resigned.version = 2;
    check_signature(&domain, Some(42), &resigned).unwrap();
    // Signed for another server.
    let other: DomainName = "example.org".parse().unwrap();
    assert!(check_signature(&other, None, &m).is_err());
    // Someone else's name on it.
    let mut forged = m.clone();
    forged.author = "bob@example.com".parse().unwrap();
    fails(&forged, None, "is not bob@example.com's");
    let mut garbled = m.clone();
    garbled.signature.truncate(10);
    fails(&garbled, None, "not 64 bytes of hex");
    let mut serial = m;
    serial.serial = Serial(8);
    fails(&serial, None, "names certificate 8 but carries 7");
}

#[test]
fn an_edit_signs_its_message_id() {
    let chat = alice(&IdentityKey::generate()).chat();
    let prepared = chat.prepare_message(42, body("first"));
    let mut m = stored(&chat, &prepared, 100);
    let nonce = new_nonce();
    let edited = body("second");
    m.signature = chat.sign(42, &nonce, Some(100), &edited);
    m.nonce = nonce;
    m.content = edited.content;
    m.version = 2;
    m.edited_timestamp = Some(NOW);
    check_signature(chat.domain(), Some(42), &m).unwrap();
    m.edited_timestamp = None;
    assert!(check_signature(chat.domain(), Some(42), &m).is_err());
}

#[test]
fn the_home_server_must_publish_the_certificate_unrevoked() {
    let ca = IdentityKey::generate();
    let chat = alice(&ca).chat();
    let m = stored(&chat, &chat.prepare_message(42, body("hi")), 100);
    let cert = check_signature(chat.domain(), Some(42), &m).unwrap();
    let published = |pem: &str, revoked_at: Option<u64>| VerifiedCert {
        cert: IdCert::parse(pem.as_bytes()).unwrap(),
        cacheable: CacheableIdCert {
            id_cert_pem: pem.to_owned(),
            not_valid_before: NOW - 60,
            not_valid_after: NOW + 60,
            signature: String::new(),
            invalidated_at: revoked_at,
        },
        revoked_at,
        expired: false,
    };
    check_published(&cert, &m, &[published(&m.id_cert, None)]).unwrap();
    // Revoked after the message: still good; before it: not.
    check_published(&cert, &m, &[published(&m.id_cert, Some(NOW + 1))]).unwrap();
    let err = check_published(&cert, &m, &[published(&m.id_cert, Some(NOW - 1))]).unwrap_err();
    assert!(err.contains("revoked before"), "{err}");
    // Not listed at all, or another certificate under its serial.
    let err = check_published(&cert, &m, &[]).unwrap_err();
    assert!(err.contains("does not list certificate 7"), "{err}");
    let impostor = alice(&ca);
    let err = check_published(&cert, &m, &[published(impostor.cert_pem(), None)]).unwrap_err();
    assert!(err.contains("differs"), "{err}");
    // Sent outside the certificate's validity.
    let mut late = m.clone();
    late.timestamp = NOW + 7200;
    let err = check_published(&cert, &late, &[published(&m.id_cert, None)]).unwrap_err();
    assert!(err.contains("not valid when"), "{err}");
}

/// A reaction is signed over its own payload (kind `chat.reaction`, the channel, message,
/// emoji and whether it adds), the same bytes the server rebuilds from the request's path.
#[test]
fn a_reaction_signs_its_message_emoji_and_direction() {
    use fugue_proto::community::ReactionBody;
    let session = alice(&IdentityKey::generate());
    let chat = session.chat();
    let prepared = chat.prepare_reaction(42, 100, "👍", true);
    assert_eq!(
        prepared.request.id_cert.as_deref(),
        Some(session.cert_pem())
    );
    let signature: [u8; 64] = decode_hex(&prepared.request.signature)
        .unwrap()
        .try_into()
        .unwrap();
    let signature = ed25519_dalek::Signature::from_bytes(&signature);
    let verifies = |channel: u64, message: u64, emoji: &str, add: bool| {
        let body = ReactionBody {
            message,
            emoji: emoji.into(),
            add,
        };
        let payload = SignedPayload::reaction(
            chat.domain(),
            channel,
            chat.fid(),
            &prepared.request.nonce,
            &body,
        );
        session
            .key()
            .verifying_key()
            .verify_strict(&payload.signed_bytes(), &signature)
            .is_ok()
    };
    assert!(verifies(42, 100, "👍", true));
    assert!(
        !verifies(42, 100, "👍", false),
        "an addition is not a removal"
    );
    assert!(!verifies(42, 100, "🎉", true));
    assert!(!verifies(42, 101, "👍", true));
    assert!(!verifies(43, 100, "👍", true));
    // A fresh nonce each time: a signed removal cannot be replayed as another.
    let again = chat.prepare_reaction(42, 100, "👍", true);
    assert_ne!(again.request.nonce, prepared.request.nonce);
}
