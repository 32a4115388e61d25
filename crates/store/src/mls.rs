//! Persistence for polyproto-mls: the KeyPackages devices uploaded (each handed out once),
//! which device a claimed package belonged to (so a Welcome reaches that device), the
//! throttle on claims, and the groups the server follows — their public state at the
//! current epoch, one row per member device (leaf), the proposals pending in the epoch.
//! A group's changes and their events are one transaction; a commit is stored only while
//! the group is still at the epoch it was made for.

use crate::engine::{Conflict, Result, Row, Stmt};
use crate::events::{Append, NewEvent, taken};
use crate::{Store, params};

/// A KeyPackage of one device (session), as uploaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPackageRow {
    pub actor_id: i64,
    pub session_pk: i64,
    /// The ID-Cert its credential carries.
    pub serial: i64,
    /// The uploader's id for it.
    pub id: String,
    /// Its KeyPackageRef (RFC 9420 §5.2): how a Welcome names it.
    pub hash_ref: Vec<u8>,
    /// The JSON model as answered (`fugue_proto::mls::KeyPackage`).
    pub body: String,
    pub last_resort: bool,
    /// The end of its lifetime or of its certificate, whichever comes first.
    pub expires_at: i64,
    pub created_at: i64,
}

/// A package handed out by a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedRow {
    pub hash_ref: Vec<u8>,
    pub actor_id: i64,
    pub session_pk: i64,
    pub body: String,
}

/// What a claim handed out, and what the devices it took from have left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub packages: Vec<ClaimedRow>,
    /// `(session_pk, ordinary packages left, has a last-resort one)` per device claimed from.
    pub left: Vec<(i64, i64, bool)>,
}

/// A group the server follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MlsGroupRow {
    /// Lowercase hex of the MLS group id.
    pub id: String,
    /// Its stream of events.
    pub stream_id: i64,
    pub epoch: i64,
    /// Its public state at `epoch` (the server's encoding).
    pub state: Vec<u8>,
    pub creator_id: i64,
    /// Its external public key, base64 (empty when unknown).
    pub public_key: String,
    /// The commit that started `epoch` (JSON), none at epoch 0.
    pub latest_commit: Option<String>,
    pub created_at: i64,
}

/// One member device (leaf) of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MlsMemberRow {
    pub leaf: i64,
    pub actor_id: i64,
    /// The actor's FID (as its certificate names it).
    pub fid: String,
    pub serial: i64,
    /// The session ID its certificate names.
    pub session: String,
    /// The KeyPackage it was added with (JSON).
    pub key_package: String,
    /// `Admin` or `Member`.
    pub role: String,
    /// Where in the group's stream the device's membership began; `None` for a device a
    /// commit adds (it begins after that commit's event).
    pub since: Option<i64>,
}

/// A proposal pending in an epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MlsProposalRow {
    pub group_id: String,
    pub epoch: i64,
    pub id: String,
    /// The JSON model.
    pub body: String,
    pub created_at: i64,
}

/// A request of a device to join an encrypted channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRequestRow {
    pub id: i64,
    pub channel_id: i64,
    pub group_id: String,
    pub actor_id: i64,
    pub session_pk: i64,
    /// The KeyPackageRef of its package.
    pub hash_ref: Vec<u8>,
    /// The JSON model as answered (`fugue_proto::mls::JoinRequest`, without its state).
    pub body: String,
    /// `pending`, `accepted` or `denied`.
    pub state: String,
    pub reason: Option<String>,
    pub resolved_by: Option<i64>,
    pub created_at: i64,
    pub resolved_at: Option<i64>,
}

macro_rules! request_columns {
    () => {
        "id, channel_id, group_id, actor_id, session_pk, hash_ref, body, state, reason, resolved_by, created_at, resolved_at"
    };
}

fn request(r: &Row) -> Result<JoinRequestRow> {
    Ok(JoinRequestRow {
        id: r.i64(0)?,
        channel_id: r.i64(1)?,
        group_id: r.string(2)?,
        actor_id: r.i64(3)?,
        session_pk: r.i64(4)?,
        hash_ref: r.bytes(5)?,
        body: r.string(6)?,
        state: r.string(7)?,
        reason: r.opt_string(8)?,
        resolved_by: r.opt_i64(9)?,
        created_at: r.i64(10)?,
        resolved_at: r.opt_i64(11)?,
    })
}

macro_rules! package_columns {
    () => {
        "actor_id, session_pk, serial, id, hash_ref, body, last_resort, expires_at, created_at"
    };
}

macro_rules! group_columns {
    () => {
        "id, stream_id, epoch, state, creator_id, public_key, latest_commit, created_at"
    };
}

macro_rules! member_columns {
    () => {
        "leaf, actor_id, fid, serial, session, key_package, role, since"
    };
}

fn group(r: &Row) -> Result<MlsGroupRow> {
    Ok(MlsGroupRow {
        id: r.string(0)?,
        stream_id: r.i64(1)?,
        epoch: r.i64(2)?,
        state: r.bytes(3)?,
        creator_id: r.i64(4)?,
        public_key: r.string(5)?,
        latest_commit: r.opt_string(6)?,
        created_at: r.i64(7)?,
    })
}

fn member(r: &Row) -> Result<MlsMemberRow> {
    Ok(MlsMemberRow {
        leaf: r.i64(0)?,
        actor_id: r.i64(1)?,
        fid: r.string(2)?,
        serial: r.i64(3)?,
        session: r.string(4)?,
        key_package: r.string(5)?,
        role: r.string(6)?,
        since: r.opt_i64(7)?,
    })
}

fn claimed(r: &Row) -> Result<ClaimedRow> {
    Ok(ClaimedRow {
        hash_ref: r.bytes(0)?,
        actor_id: r.i64(1)?,
        session_pk: r.i64(2)?,
        body: r.string(3)?,
    })
}

/// Deletes the KeyPackages of an actor's ended sessions; part of every transaction that
/// ends sessions.
pub(crate) fn drop_packages_of_ended_sessions(actor_id: i64) -> Stmt {
    Stmt::new(
        "DELETE FROM mls_key_packages WHERE actor_id = $1 AND session_pk IN
           (SELECT id FROM sessions WHERE actor_id = $1 AND revoked_at IS NOT NULL)",
        params![actor_id],
    )
}

/// Deletes a session's KeyPackages whose credential is not certificate `serial`; part of
/// the transaction that gives the session a new certificate.
pub(crate) fn drop_packages_of_other_certs(session_pk: i64, serial: i64) -> Stmt {
    Stmt::new(
        "DELETE FROM mls_key_packages WHERE session_pk = $1 AND serial <> $2",
        params![session_pk, serial],
    )
}

/// A member row of `group` (`$9` its stream: a device without `since` begins right after
/// the position the transaction just took — the commit that adds it, which it cannot read;
/// `$10` its FID).
fn insert_member(group_id: &str, stream_id: i64, m: &MlsMemberRow) -> Stmt {
    Stmt::new(
        concat!(
            "INSERT INTO mls_group_members (group_id, ",
            member_columns!(),
            ") VALUES ($1, $2, $3, $10, $4, $5, $6, $7, COALESCE($8, (SELECT head + 1 FROM streams WHERE id = $9)))"
        ),
        params![
            group_id,
            m.leaf,
            m.actor_id,
            m.serial,
            m.session.clone(),
            m.key_package.clone(),
            m.role.clone(),
            m.since,
            stream_id,
            m.fid.clone()
        ],
    )
}

impl Store {
    /// Stores a device's KeyPackages, all or none: [`Conflict::KeyPackageTaken`] when one's
    /// id or reference is stored already, [`Conflict::KeyPackagesFull`] when the device would
    /// keep more than `max`.
    pub async fn insert_key_packages(&self, rows: &[KeyPackageRow], max: i64) -> Result<()> {
        let Some(first) = rows.first() else {
            return Ok(());
        };
        let mut stmts: Vec<Stmt> = rows
            .iter()
            .map(|k| {
                Stmt::new(
                    concat!(
                        "INSERT INTO mls_key_packages (",
                        package_columns!(),
                        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING"
                    ),
                    params![
                        k.actor_id,
                        k.session_pk,
                        k.serial,
                        k.id.clone(),
                        k.hash_ref.clone(),
                        k.body.clone(),
                        k.last_resort,
                        k.expires_at,
                        k.created_at
                    ],
                )
                .affects(1)
                .or(Conflict::KeyPackageTaken)
            })
            .collect();
        stmts.push(
            Stmt::new(
                "UPDATE sessions SET id = id WHERE id = $1 AND revoked_at IS NULL
                   AND (SELECT COUNT(*) FROM mls_key_packages WHERE session_pk = $1) <= $2",
                params![first.session_pk, max],
            )
            .affects(1)
            .or(Conflict::KeyPackagesFull),
        );
        self.commit(stmts).await
    }

    /// Hands out one package per live device of `target`: its oldest ordinary one, which is
    /// then gone, or its last-resort one when it has no other. Counted against
    /// `(requester, target)`: at most `limit` claims per window of `window_s` seconds, else
    /// [`Conflict::Throttled`] (and nothing handed out).
    pub async fn claim_key_packages(
        &self,
        requester: i64,
        target: i64,
        now: i64,
        window_s: i64,
        limit: i64,
    ) -> Result<Claim> {
        let stmts = vec![
            Stmt::new(
                "INSERT INTO mls_claims (requester_id, target_id, window_start, count) VALUES ($1, $2, $3, 1)
                 ON CONFLICT (requester_id, target_id) DO UPDATE SET
                   count = CASE WHEN mls_claims.window_start <= $4 THEN 1 ELSE mls_claims.count + 1 END,
                   window_start = CASE WHEN mls_claims.window_start <= $4 THEN $3 ELSE mls_claims.window_start END",
                params![requester, target, now, now - window_s],
            ),
            Stmt::new(
                "UPDATE mls_claims SET count = count WHERE requester_id = $1 AND target_id = $2 AND count <= $3",
                params![requester, target, limit],
            )
            .affects(1)
            .or(Conflict::Throttled),
            Stmt::new(
                "INSERT INTO mls_claimed (hash_ref, actor_id, session_pk, body, claimed_at)
                 SELECT k.hash_ref, k.actor_id, k.session_pk, k.body, $2 FROM mls_key_packages k
                   JOIN sessions s ON s.id = k.session_pk AND s.revoked_at IS NULL AND s.cert_serial = k.serial
                 WHERE k.actor_id = $1 AND k.expires_at > $2 AND k.id =
                   (SELECT k2.id FROM mls_key_packages k2 WHERE k2.actor_id = $1 AND k2.session_pk = k.session_pk
                      AND k2.expires_at > $2 ORDER BY k2.last_resort, k2.created_at, k2.id LIMIT 1)
                 ON CONFLICT (hash_ref) DO UPDATE SET claimed_at = excluded.claimed_at
                 RETURNING hash_ref, actor_id, session_pk, body",
                params![target, now],
            ),
            Stmt::new(
                "DELETE FROM mls_key_packages WHERE actor_id = $1 AND last_resort = 0 AND hash_ref IN
                   (SELECT hash_ref FROM mls_claimed WHERE actor_id = $1 AND claimed_at = $2)",
                params![target, now],
            ),
            Stmt::new(
                "SELECT k.session_pk, SUM(CASE WHEN k.last_resort = 0 THEN 1 ELSE 0 END),
                        MAX(CASE WHEN k.last_resort = 0 THEN 0 ELSE 1 END)
                 FROM mls_key_packages k WHERE k.actor_id = $1 AND k.expires_at > $2
                 GROUP BY k.session_pk",
                params![target, now],
            ),
        ];
        let out = self.transaction_rows(stmts).await?;
        let packages = out
            .get(2)
            .map(|(_, rows)| rows.iter().map(claimed).collect::<Result<Vec<_>>>())
            .transpose()?
            .unwrap_or_default();
        let left = out
            .get(4)
            .map(|(_, rows)| {
                rows.iter()
                    .map(|r| Ok((r.i64(0)?, r.i64(1)?, r.bool(2)?)))
                    .collect::<Result<Vec<_>>>()
            })
            .transpose()?
            .unwrap_or_default();
        Ok(Claim { packages, left })
    }

    /// Which device a handed-out package belonged to.
    pub async fn claimed_package(&self, hash_ref: &[u8]) -> Result<Option<ClaimedRow>> {
        self.query(
            "SELECT hash_ref, actor_id, session_pk, body FROM mls_claimed WHERE hash_ref = $1",
            params![hash_ref],
        )
        .await?
        .first()
        .map(claimed)
        .transpose()
    }

    /// Forgets handed-out packages older than `before` (a Welcome naming one is late).
    pub async fn sweep_claimed_packages(&self, before: i64) -> Result<u64> {
        self.execute(
            "DELETE FROM mls_claimed WHERE claimed_at < $1",
            params![before],
        )
        .await
    }

    /// Deletes packages whose lifetime or certificate ended, and those of ended sessions.
    pub async fn sweep_key_packages(&self, now: i64) -> Result<u64> {
        self.execute(
            "DELETE FROM mls_key_packages WHERE expires_at <= $1 OR session_pk IN
               (SELECT id FROM sessions WHERE revoked_at IS NOT NULL)",
            params![now],
        )
        .await
    }

    /// A new group with its creator's device (session `creator_session`, whose position in
    /// the group's stream starts there), and its first event `created`. Returns the event's
    /// position. [`Conflict::GroupTaken`] when the id is in use.
    pub async fn create_mls_group(
        &self,
        g: &MlsGroupRow,
        creator: &MlsMemberRow,
        creator_session: i64,
        created: &NewEvent,
    ) -> Result<i64> {
        let Append { take, write } = Append::new(created);
        let stmts = vec![
            Stmt::new(
                concat!(
                    "INSERT INTO mls_groups (",
                    group_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING"
                ),
                params![
                    g.id.clone(),
                    g.stream_id,
                    g.epoch,
                    g.state.clone(),
                    g.creator_id,
                    g.public_key.clone(),
                    g.latest_commit.clone(),
                    g.created_at
                ],
            )
            .affects(1)
            .or(Conflict::GroupTaken),
            take,
            insert_member(&g.id, g.stream_id, creator),
            // The creating device has seen the group's stream from its start.
            Stmt::new(
                "INSERT INTO stream_positions (session_pk, stream_id, acked_seq)
                 SELECT $1, $2, head FROM streams WHERE id = $2
                 ON CONFLICT (session_pk, stream_id) DO NOTHING",
                params![creator_session, g.stream_id],
            ),
            write,
        ];
        taken(&self.transaction_rows(stmts).await?, 1)
    }

    pub async fn mls_group(&self, id: &str) -> Result<Option<MlsGroupRow>> {
        self.query(
            concat!(
                "SELECT ",
                group_columns!(),
                " FROM mls_groups WHERE id = $1"
            ),
            params![id],
        )
        .await?
        .first()
        .map(group)
        .transpose()
    }

    /// A group's member devices by leaf index.
    pub async fn mls_members(&self, group_id: &str) -> Result<Vec<MlsMemberRow>> {
        self.query(
            concat!(
                "SELECT ",
                member_columns!(),
                " FROM mls_group_members WHERE group_id = $1 ORDER BY leaf"
            ),
            params![group_id],
        )
        .await?
        .iter()
        .map(member)
        .collect()
    }

    /// The groups an actor has a device in: `(stream, where its first device's membership
    /// began)`.
    pub async fn mls_groups_of(&self, actor_id: i64) -> Result<Vec<(i64, i64)>> {
        self.query(
            "SELECT g.stream_id, MIN(m.since) FROM mls_group_members m JOIN mls_groups g ON g.id = m.group_id
             WHERE m.actor_id = $1 GROUP BY g.stream_id",
            params![actor_id],
        )
        .await?
        .iter()
        .map(|r| Ok((r.i64(0)?, r.i64(1)?)))
        .collect()
    }

    /// Where an actor's membership of the group with stream `stream_id` began, if it has a
    /// device there.
    pub async fn mls_member_since(&self, stream_id: i64, actor_id: i64) -> Result<Option<i64>> {
        self.query(
            "SELECT MIN(m.since) FROM mls_group_members m JOIN mls_groups g ON g.id = m.group_id
             WHERE g.stream_id = $1 AND m.actor_id = $2",
            params![stream_id, actor_id],
        )
        .await?
        .first()
        .map(|r| r.opt_i64(0))
        .transpose()
        .map(Option::flatten)
    }

    /// Stores a proposal for the group's current epoch `epoch` with its event. Returns the
    /// event's position. [`Conflict::StaleEpoch`] when the group moved on,
    /// [`Conflict::ProposalTaken`] when the id is in use in the epoch.
    pub async fn insert_mls_proposal(&self, p: &MlsProposalRow, e: &NewEvent) -> Result<i64> {
        let Append { take, write } = Append::new(e);
        let stmts = vec![
            Stmt::new(
                "UPDATE mls_groups SET epoch = epoch WHERE id = $1 AND epoch = $2",
                params![p.group_id.clone(), p.epoch],
            )
            .affects(1)
            .or(Conflict::StaleEpoch),
            Stmt::new(
                "INSERT INTO mls_proposals (group_id, epoch, id, body, created_at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                params![
                    p.group_id.clone(),
                    p.epoch,
                    p.id.clone(),
                    p.body.clone(),
                    p.created_at
                ],
            )
            .affects(1)
            .or(Conflict::ProposalTaken),
            take,
            write,
        ];
        taken(&self.transaction_rows(stmts).await?, 2)
    }

    /// The proposals pending in a group's epoch, oldest first.
    pub async fn mls_proposals(&self, group_id: &str, epoch: i64) -> Result<Vec<MlsProposalRow>> {
        self.query(
            "SELECT group_id, epoch, id, body, created_at FROM mls_proposals
             WHERE group_id = $1 AND epoch = $2 ORDER BY created_at, id",
            params![group_id, epoch],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(MlsProposalRow {
                group_id: r.string(0)?,
                epoch: r.i64(1)?,
                id: r.string(2)?,
                body: r.string(3)?,
                created_at: r.i64(4)?,
            })
        })
        .collect()
    }

    /// Moves a group from epoch `from` to `g.epoch`: its new state, latest commit and
    /// members (all of them, as they are after the commit), the epoch's proposals gone, the
    /// `welcomed` sessions' positions in the group's stream set to the commit, and
    /// `events` appended in order (the first to the group's stream: new devices begin
    /// there). Returns the events' positions. [`Conflict::StaleEpoch`] when another commit
    /// won the epoch.
    pub async fn commit_mls_group(
        &self,
        g: &MlsGroupRow,
        from: i64,
        members: &[MlsMemberRow],
        welcomed: &[i64],
        events: &[NewEvent],
    ) -> Result<Vec<i64>> {
        let mut stmts = vec![
            Stmt::new(
                "UPDATE mls_groups SET epoch = $3, state = $4, public_key = $5, latest_commit = $6
                 WHERE id = $1 AND epoch = $2",
                params![
                    g.id.clone(),
                    from,
                    g.epoch,
                    g.state.clone(),
                    g.public_key.clone(),
                    g.latest_commit.clone()
                ],
            )
            .affects(1)
            .or(Conflict::StaleEpoch),
            Stmt::new(
                "DELETE FROM mls_proposals WHERE group_id = $1 AND epoch <= $2",
                params![g.id.clone(), from],
            ),
        ];
        let mut at = Vec::new();
        for (i, e) in events.iter().enumerate() {
            let Append { take, write } = Append::new(e);
            at.push(stmts.len());
            stmts.push(take);
            if i == 0 {
                stmts.push(Stmt::new(
                    "DELETE FROM mls_group_members WHERE group_id = $1",
                    params![g.id.clone()],
                ));
                stmts.extend(members.iter().map(|m| insert_member(&g.id, g.stream_id, m)));
                // A welcomed device has seen the group's stream up to the commit that adds
                // it: what it polls later starts right after.
                stmts.extend(welcomed.iter().map(|session_pk| {
                    Stmt::new(
                        "INSERT INTO stream_positions (session_pk, stream_id, acked_seq)
                         SELECT $1, $2, head FROM streams WHERE id = $2
                         ON CONFLICT (session_pk, stream_id) DO NOTHING",
                        params![*session_pk, g.stream_id],
                    )
                }));
            }
            stmts.push(write);
        }
        let out = self.transaction_rows(stmts).await?;
        at.into_iter().map(|i| taken(&out, i)).collect()
    }

    /// Encrypts channel `channel_id` of stream `stream_id` (a guild's, or a conversation's
    /// when `conversation`) with group `group_id`, for good, with its event. Returns the
    /// event's position. [`Conflict::AlreadyEncrypted`] when it is encrypted already.
    #[allow(clippy::too_many_arguments)]
    pub async fn bind_mls_group(
        &self,
        stream_id: i64,
        conversation: bool,
        channel_id: i64,
        group_id: &str,
        set_by: i64,
        now: i64,
        e: &NewEvent,
    ) -> Result<i64> {
        let Append { take, write } = Append::new(e);
        let stmts = vec![
            if conversation {
                crate::chat::touch_conversation(stream_id)
            } else {
                crate::chat::touch_guild(stream_id)
            },
            Stmt::new(
                "INSERT INTO mls_channels (channel_id, stream_id, group_id, set_by, created_at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                params![channel_id, stream_id, group_id, set_by, now],
            )
            .affects(1)
            .or(Conflict::AlreadyEncrypted),
            take,
            write,
        ];
        taken(&self.transaction_rows(stmts).await?, 2)
    }

    /// The channel a group encrypts, if any.
    pub async fn channel_of_mls_group(&self, group_id: &str) -> Result<Option<i64>> {
        self.query(
            "SELECT channel_id FROM mls_channels WHERE group_id = $1 ORDER BY channel_id LIMIT 1",
            params![group_id],
        )
        .await?
        .first()
        .map(|r| r.i64(0))
        .transpose()
    }

    /// The group encrypting a channel, if any.
    pub async fn mls_group_of_channel(&self, channel_id: i64) -> Result<Option<String>> {
        self.query(
            "SELECT group_id FROM mls_channels WHERE channel_id = $1",
            params![channel_id],
        )
        .await?
        .first()
        .map(|r| r.string(0))
        .transpose()
    }

    /// A group's epoch and whether `actor_id` has a device in it (a post to a channel it
    /// encrypts); `None` when there is no such group.
    pub async fn mls_posting(&self, group_id: &str, actor_id: i64) -> Result<Option<(i64, bool)>> {
        self.query(
            "SELECT g.epoch, (SELECT COUNT(*) FROM mls_group_members m WHERE m.group_id = g.id AND m.actor_id = $2)
             FROM mls_groups g WHERE g.id = $1",
            params![group_id, actor_id],
        )
        .await?
        .first()
        .map(|r| Ok((r.i64(0)?, r.i64(1)? > 0)))
        .transpose()
    }

    /// Stores a join request with its event; its package's reference is recorded as handed
    /// out to the requesting device (so the Welcome finds it). Returns the event's position.
    pub async fn insert_join_request(&self, j: &JoinRequestRow, e: &NewEvent) -> Result<i64> {
        let Append { take, write } = Append::new(e);
        let stmts = vec![
            Stmt::new(
                concat!(
                    "INSERT INTO mls_join_requests (",
                    request_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
                ),
                params![
                    j.id,
                    j.channel_id,
                    j.group_id.clone(),
                    j.actor_id,
                    j.session_pk,
                    j.hash_ref.clone(),
                    j.body.clone(),
                    j.state.clone(),
                    j.reason.clone(),
                    j.resolved_by,
                    j.created_at,
                    j.resolved_at
                ],
            ),
            Stmt::new(
                "INSERT INTO mls_claimed (hash_ref, actor_id, session_pk, body, claimed_at)
                 VALUES ($1, $2, $3, '', $4) ON CONFLICT (hash_ref) DO NOTHING",
                params![j.hash_ref.clone(), j.actor_id, j.session_pk, j.created_at],
            ),
            take,
            write,
        ];
        taken(&self.transaction_rows(stmts).await?, 2)
    }

    pub async fn join_request(&self, id: i64) -> Result<Option<JoinRequestRow>> {
        self.query(
            concat!(
                "SELECT ",
                request_columns!(),
                " FROM mls_join_requests WHERE id = $1"
            ),
            params![id],
        )
        .await?
        .first()
        .map(request)
        .transpose()
    }

    /// A channel's pending join requests, oldest first (at most 100).
    pub async fn pending_join_requests(&self, channel_id: i64) -> Result<Vec<JoinRequestRow>> {
        self.query(
            concat!(
                "SELECT ",
                request_columns!(),
                " FROM mls_join_requests WHERE channel_id = $1 AND state = 'pending' ORDER BY id LIMIT 100"
            ),
            params![channel_id],
        )
        .await?
        .iter()
        .map(request)
        .collect()
    }

    /// Resolves a pending join request (`accepted` or `denied`) with its events. Returns
    /// their positions. [`Conflict::Unchanged`] when it was resolved already.
    pub async fn resolve_join_request(
        &self,
        id: i64,
        state: &str,
        reason: Option<&str>,
        by: i64,
        now: i64,
        events: &[NewEvent],
    ) -> Result<Vec<i64>> {
        let mut stmts = vec![
            Stmt::new(
                "UPDATE mls_join_requests SET state = $2, reason = $3, resolved_by = $4, resolved_at = $5
                 WHERE id = $1 AND state = 'pending'",
                params![id, state, reason.map(str::to_owned), by, now],
            )
            .affects(1)
            .or(Conflict::Unchanged),
        ];
        let mut at = Vec::new();
        for e in events {
            let Append { take, write } = Append::new(e);
            at.push(stmts.len());
            stmts.push(take);
            stmts.push(write);
        }
        let out = self.transaction_rows(stmts).await?;
        at.into_iter().map(|i| taken(&out, i)).collect()
    }

    /// The groups where a device with certificate `serial` is a member: `(group, stream,
    /// epoch, leaf)`.
    pub async fn mls_leaves_of_cert(&self, serial: i64) -> Result<Vec<(String, i64, i64, i64)>> {
        self.query(
            "SELECT g.id, g.stream_id, g.epoch, m.leaf FROM mls_group_members m
             JOIN mls_groups g ON g.id = m.group_id WHERE m.serial = $1 ORDER BY g.id",
            params![serial],
        )
        .await?
        .iter()
        .map(|r| Ok((r.string(0)?, r.i64(1)?, r.i64(2)?, r.i64(3)?)))
        .collect()
    }
}
