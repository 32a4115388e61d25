//! End-to-end encryption in the CLI: `fugue channel encrypt`, `fugue join`, `fugue requests`,
//! `fugue devices`, and what `send`, `read`, `dm --encrypted` and `group create --encrypted`
//! do in encrypted conversations.
//!
//! This device's MLS state (groups, keys, the texts it opened — an MLS message opens only
//! once) lives beside the key store in `mls/<fid>-<session>.state` (0600). Every command that
//! touches an encrypted conversation first catches up on the server holding it: Welcomes
//! and commits are applied, device joins and join requests shown on stderr, a further
//! device of a member let in at once (polyproto-chat §6), and KeyPackages uploaded again
//! when they run low.

use std::path::PathBuf;

use clap::Subcommand;

use fugue_client::mls::Mls;
use fugue_client::{Chat, MlsNotice, Session};
use fugue_proto::FederationId;
use fugue_proto::chat::Message;
use fugue_proto::mls::JoinRequest;

use super::{ChatOpts, ClientOpts, chat, e, keystore_path, open_store, restore_session};
use crate::terminal::{note, out};

/// KeyPackages a device keeps on its home server (and uploads again when they run low).
const PACKAGES: usize = 20;

#[derive(Subcommand)]
pub enum RequestsCmd {
    /// The pending join requests of an encrypted CHANNEL (for devices in its group).
    List { channel: u64 },
    /// Let the device of request ID into CHANNEL: its package is checked (a request whose
    /// package does not verify is denied), the device added, the request marked done.
    Accept { channel: u64, id: u64 },
    /// Refuse request ID of CHANNEL, saying why.
    Deny {
        channel: u64,
        id: u64,
        reason: String,
    },
}

/// This device's MLS state file.
fn state_path(opts: &ClientOpts, session: &Session) -> Result<PathBuf, String> {
    let store = keystore_path(opts)?;
    let dir = store
        .parent()
        .map_or_else(|| PathBuf::from("mls"), |d| d.join("mls"));
    Ok(dir.join(format!("{}-{}.state", session.fid(), session.session_id())))
}

/// The current account's session and this device's MLS state; a new device uploads its
/// KeyPackages to its home server first.
pub(super) async fn device(opts: &ClientOpts) -> Result<(Session, Mls), String> {
    let store = open_store(opts)?;
    let (session, _) = restore_session(&store)?;
    let mls = enroll(opts, &session).await?;
    Ok((session, mls))
}

/// This device's MLS state for `session`; a new one uploads its KeyPackages first, so that
/// others can add it to encrypted conversations (done at login).
pub(super) async fn enroll(opts: &ClientOpts, session: &Session) -> Result<Mls, String> {
    let path = state_path(opts, session)?;
    let fresh = !path.exists();
    let mls = Mls::open(session, &path).map_err(e)?;
    if fresh {
        upload_packages(session, &mls).await?;
    }
    Ok(mls)
}

async fn upload_packages(session: &Session, mls: &Mls) -> Result<(), String> {
    let kps = mls.key_packages(PACKAGES, true).map_err(e)?;
    session.upload_key_packages(&kps).await.map_err(e)?;
    note!("uploaded {PACKAGES} KeyPackages of this device");
    Ok(())
}

/// Catches up on `chat`'s server: notices on stderr, further devices of members let in,
/// packages replenished.
pub(super) async fn catch_up(chat: &Chat, session: &Session, mls: &Mls) -> Result<(), String> {
    let notices = chat.mls_sync(mls).await.map_err(e)?;
    // The newest count of a device's packages decides how many to upload, once.
    let low = notices.iter().rev().find_map(|n| match n {
        MlsNotice::PackagesLow { remaining } => Some(*remaining),
        _ => None,
    });
    if let Some(remaining) = low {
        let missing = PACKAGES.saturating_sub(usize::try_from(remaining).unwrap_or(PACKAGES));
        if missing > 0 {
            let kps = mls.key_packages(missing, false).map_err(e)?;
            session.upload_key_packages(&kps).await.map_err(e)?;
            note!("uploaded {missing} KeyPackages of this device");
        }
    }
    for n in notices {
        match n {
            MlsNotice::Joined { group_id } => note!("this device joined group {group_id}"),
            MlsNotice::Commit {
                group_id,
                removed: true,
                ..
            } => note!("this device was removed from group {group_id}"),
            MlsNotice::Commit { .. } => {}
            MlsNotice::DeviceJoined(d) => {
                let more = if d.more_devices {
                    " (another device)"
                } else {
                    ""
                };
                note!(
                    "device {} of {} joined group {}{more}",
                    d.session,
                    d.fid,
                    d.group_id
                );
            }
            MlsNotice::DeviceRemoved(d) => {
                note!(
                    "device {} of {} left group {}",
                    d.session,
                    d.fid,
                    d.group_id
                );
            }
            MlsNotice::DeviceRevoked(d) => {
                // Its keys may be in other hands: take it out of the group now.
                let removed = match d.member_id.parse::<u32>() {
                    Ok(leaf) if mls.has_group(&d.group_id) => chat
                        .remove_devices(mls, &d.group_id, &[leaf])
                        .await
                        .map_err(|err| err.to_string()),
                    _ => Err("this device is not in the group".into()),
                };
                match removed {
                    Ok(()) => note!(
                        "device {} of {} was revoked: removed it from group {}",
                        d.session,
                        d.fid,
                        d.group_id
                    ),
                    Err(why) => note!(
                        "device {} of {} was revoked; not removed from group {}: {why}",
                        d.session,
                        d.fid,
                        d.group_id
                    ),
                }
            }
            MlsNotice::JoinRequest(r) if r.existing_member && mls.has_group(&r.group_id) => {
                match chat.admit(mls, &r).await {
                    Ok(_) => note!(
                        "let in device {} of {} (a further device)",
                        r.session,
                        r.fid
                    ),
                    Err(err) => note!("could not let in {}'s device: {err}", r.fid),
                }
            }
            MlsNotice::JoinRequest(r) => note!("{}", request_line(&r)),
            MlsNotice::JoinResolved(r) => note!(
                "join request {} of {}: {:?}{}",
                r.id,
                r.fid,
                r.state,
                r.reason.map(|w| format!(" ({w})")).unwrap_or_default()
            ),
            MlsNotice::PackagesLow { .. } => {}
            MlsNotice::Failed { what } => note!("could not apply {what}"),
        }
    }
    Ok(())
}

fn request_line(r: &JoinRequest) -> String {
    let more = if r.existing_member {
        " (a further device of a member)"
    } else {
        ""
    };
    format!(
        "join request {} of {} (device {}) for channel {}{more}: `fugue requests accept {} {}`",
        r.id, r.fid, r.session, r.channel_id, r.channel_id, r.id
    )
}

/// `fugue channel encrypt CHANNEL` (also a DM's or group's id).
pub async fn encrypt(opts: ChatOpts, channel: u64) -> Result<(), String> {
    let chat = chat(&opts).await?;
    let (session, mls) = device(&opts.client).await?;
    catch_up(&chat, &session, &mls).await?;
    let group = chat.new_mls_group(&mls).await.map_err(e)?;
    chat.encrypt_channel(channel, &group).await.map_err(e)?;
    out!(
        "channel {channel} is encrypted with group {group}; others join with `fugue join {channel}`"
    );
    Ok(())
}

/// Makes a new group of this device with every device of `peers` (claimed where `chat` is)
/// and encrypts `channel` with it.
pub(super) async fn encrypt_with(
    chat: &Chat,
    mls: &Mls,
    channel: u64,
    peers: &[FederationId],
) -> Result<String, String> {
    let group = chat.new_mls_group(mls).await.map_err(e)?;
    for peer in peers {
        let kps = match chat.claim_key_packages(peer).await {
            Ok(kps) => kps,
            // An actor of another server keeps its packages there.
            Err(err) => {
                note!(
                    "no KeyPackages of {peer} here ({err}): they join with `fugue join {channel}`"
                );
                continue;
            }
        };
        if kps.is_empty() {
            note!(
                "{peer} has no device with KeyPackages here: they join with `fugue join {channel}`"
            );
            continue;
        }
        chat.add_devices(mls, &group, &kps).await.map_err(e)?;
    }
    chat.encrypt_channel(channel, &group).await.map_err(e)?;
    Ok(group)
}

/// `fugue join CHANNEL`.
pub async fn join(opts: ChatOpts, channel: u64) -> Result<(), String> {
    let chat = chat(&opts).await?;
    let (session, mls) = device(&opts.client).await?;
    catch_up(&chat, &session, &mls).await?;
    let r = chat.request_join(&mls, channel).await.map_err(e)?;
    out!(
        "asked to join channel {channel} (request {}); a member lets this device in, then `fugue read {channel}`",
        r.id
    );
    Ok(())
}

/// `fugue requests list|accept|deny`.
pub async fn requests(opts: ChatOpts, cmd: RequestsCmd) -> Result<(), String> {
    let chat = chat(&opts).await?;
    let (session, mls) = device(&opts.client).await?;
    catch_up(&chat, &session, &mls).await?;
    match cmd {
        RequestsCmd::List { channel } => {
            let list = chat.join_requests(channel).await.map_err(e)?;
            if list.is_empty() {
                out!("no pending join requests for channel {channel}");
            }
            for r in list {
                out!("{}", request_line(&r));
            }
        }
        RequestsCmd::Accept { channel, id } => {
            let r = find(&chat, channel, id).await?;
            let done = chat.admit(&mls, &r).await.map_err(e)?;
            out!(
                "request {id} of {}: {:?}{}",
                done.fid,
                done.state,
                done.reason.map(|w| format!(" ({w})")).unwrap_or_default()
            );
        }
        RequestsCmd::Deny {
            channel,
            id,
            reason,
        } => {
            find(&chat, channel, id).await?;
            let done = chat.deny_join(id, &reason).await.map_err(e)?;
            out!("request {id} of {}: denied", done.fid);
        }
    }
    Ok(())
}

async fn find(chat: &Chat, channel: u64, id: u64) -> Result<JoinRequest, String> {
    chat.join_requests(channel)
        .await
        .map_err(e)?
        .into_iter()
        .find(|r| r.id == id)
        .ok_or_else(|| format!("no pending join request {id} for channel {channel}"))
}

/// `fugue devices CHANNEL`.
pub async fn devices(opts: ChatOpts, channel: u64) -> Result<(), String> {
    let chat = chat(&opts).await?;
    let group = chat
        .channel_group(channel)
        .await
        .map_err(e)?
        .ok_or_else(|| format!("channel {channel} is not encrypted"))?;
    let devices = chat.devices(&group).await.map_err(e)?;
    for (fid, session, member) in &devices {
        out!("{fid}  device {session}  (member {member})");
    }
    let people: std::collections::BTreeSet<_> = devices.iter().map(|d| &d.0).collect();
    note!(
        "{} devices of {} people in group {group}",
        devices.len(),
        people.len()
    );
    Ok(())
}

/// The texts of `messages` of an encrypted channel, as this device opens them; a message
/// it cannot open says why.
pub(super) fn open(chat: &Chat, mls: &Mls, group: &str, messages: &mut [Message]) {
    for m in messages
        .iter_mut()
        .filter(|m| m.deleted_timestamp.is_none())
    {
        m.content = match chat.decrypt(mls, group, m) {
            Ok(text) => format!("🔒 {text}"),
            Err(err) => format!("🔒 (cannot open: {err})"),
        };
    }
}
