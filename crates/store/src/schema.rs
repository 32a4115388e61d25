//! Schema migrations, written once for both engines.
//!
//! Engine differences are confined to [`for_engine`]: PostgreSQL spells `BLOB` as `BYTEA`.
//! Migrations are append-only; a released migration is never edited.

/// (version, SQL). Each runs in one transaction together with its bookkeeping row.
pub const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        r#"
CREATE TABLE actors (
    id BIGINT PRIMARY KEY,
    local_name TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    totp_secret TEXT,
    totp_pending TEXT,
    is_admin BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);
CREATE TABLE invites (
    code_hash BLOB PRIMARY KEY,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    max_uses BIGINT NOT NULL,
    uses BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE server_certs (
    serial BIGINT PRIMARY KEY,
    cert_pem TEXT NOT NULL,
    not_before BIGINT NOT NULL,
    not_after BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    superseded_at BIGINT
);
CREATE TABLE id_certs (
    serial BIGINT PRIMARY KEY,
    actor_id BIGINT NOT NULL REFERENCES actors(id),
    session_id TEXT NOT NULL,
    cert_pem TEXT NOT NULL,
    not_before BIGINT NOT NULL,
    not_after BIGINT NOT NULL,
    issued_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX id_certs_actor ON id_certs (actor_id, not_before);
CREATE UNIQUE INDEX id_certs_active_session ON id_certs (actor_id, session_id) WHERE revoked_at IS NULL;
CREATE TABLE sessions (
    id BIGINT PRIMARY KEY,
    actor_id BIGINT NOT NULL REFERENCES actors(id),
    session_id TEXT NOT NULL,
    token_hash BLOB NOT NULL UNIQUE,
    cert_serial BIGINT REFERENCES id_certs(serial),
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE UNIQUE INDEX sessions_active ON sessions (actor_id, session_id) WHERE revoked_at IS NULL;
CREATE TABLE key_material (
    actor_id BIGINT NOT NULL REFERENCES actors(id),
    serial BIGINT NOT NULL,
    key_data TEXT NOT NULL,
    algorithms TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (actor_id, serial)
);
CREATE TABLE sensitive_failures (
    actor_id BIGINT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX sensitive_failures_actor ON sensitive_failures (actor_id, at);
"#,
    ),
    (
        2,
        r#"
ALTER TABLE actors ADD COLUMN totp_last_step BIGINT;
"#,
    ),
    (
        3,
        r#"
ALTER TABLE sensitive_failures ADD COLUMN attempt BIGINT;
DROP INDEX id_certs_active_session;
"#,
    ),
    (
        4,
        r#"
ALTER TABLE actors ADD COLUMN event_seq BIGINT NOT NULL DEFAULT 0;
CREATE TABLE events (
    actor_id BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    namespace TEXT NOT NULL,
    op BIGINT NOT NULL,
    payload TEXT NOT NULL,
    exclude_session BIGINT,
    collapse_key TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (actor_id, seq)
);
CREATE INDEX events_created ON events (created_at);
CREATE TABLE gateway_positions (
    session_pk BIGINT PRIMARY KEY,
    acked_seq BIGINT NOT NULL,
    node TEXT,
    root_serial BIGINT,
    services TEXT NOT NULL DEFAULT '',
    updated_at BIGINT NOT NULL
);
"#,
    ),
    (
        5,
        r#"
CREATE TABLE discoverable_services (
    actor_id BIGINT NOT NULL REFERENCES actors(id),
    name TEXT NOT NULL,
    url TEXT NOT NULL,
    is_primary BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (actor_id, name, url)
);
CREATE UNIQUE INDEX discoverable_services_one_primary ON discoverable_services (actor_id, name) WHERE is_primary = 1;
"#,
    ),
    (
        6,
        r#"
ALTER TABLE sessions ADD COLUMN expires_at BIGINT;
ALTER TABLE sessions ADD COLUMN foreign_serial BIGINT;
CREATE TABLE key_trials (
    id TEXT PRIMARY KEY,
    fid TEXT NOT NULL,
    trial TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    completed_at BIGINT,
    completion TEXT
);
CREATE INDEX key_trials_fid ON key_trials (fid, completed_at);
CREATE INDEX key_trials_open ON key_trials (fid, created_at) WHERE completed_at IS NULL;
"#,
    ),
    (
        7,
        r#"
ALTER TABLE actors ADD COLUMN suspended_at BIGINT;
ALTER TABLE actors ADD COLUMN deleted_at BIGINT;
"#,
    ),
    (
        8,
        r#"
CREATE INDEX key_trials_unverified ON key_trials (expires_at) WHERE completion IS NULL;
UPDATE sessions SET expires_at = created_at + 43200
 WHERE foreign_serial IS NOT NULL AND revoked_at IS NULL AND expires_at > created_at + 43200;
"#,
    ),
    (
        9,
        r#"
CREATE TABLE streams (
    id BIGINT PRIMARY KEY,
    head BIGINT NOT NULL DEFAULT 0
);
INSERT INTO streams (id, head) SELECT id, event_seq FROM actors;
ALTER TABLE events RENAME COLUMN actor_id TO stream_id;
ALTER TABLE events ADD COLUMN audience TEXT NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN access BIGINT NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN ref_id BIGINT;
CREATE INDEX events_ref ON events (stream_id, ref_id) WHERE ref_id IS NOT NULL;
CREATE TABLE stream_positions (
    session_pk BIGINT NOT NULL,
    stream_id BIGINT NOT NULL,
    acked_seq BIGINT NOT NULL,
    PRIMARY KEY (session_pk, stream_id)
);
INSERT INTO stream_positions (session_pk, stream_id, acked_seq)
 SELECT g.session_pk, s.actor_id, g.acked_seq FROM gateway_positions g JOIN sessions s ON s.id = g.session_pk;
"#,
    ),
    (
        10,
        r#"
CREATE TABLE guilds (
    id BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT,
    icon TEXT,
    owner_id BIGINT NOT NULL REFERENCES actors(id),
    private BIGINT NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    deleted_at BIGINT,
    access_version BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE channels (
    id BIGINT PRIMARY KEY,
    guild_id BIGINT NOT NULL REFERENCES guilds(id),
    name TEXT NOT NULL,
    kind BIGINT NOT NULL,
    topic TEXT,
    parent_id BIGINT,
    position BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX channels_guild ON channels (guild_id, position);
CREATE TABLE guild_members (
    guild_id BIGINT NOT NULL REFERENCES guilds(id),
    actor_id BIGINT NOT NULL REFERENCES actors(id),
    joined_at BIGINT NOT NULL,
    since BIGINT NOT NULL,
    PRIMARY KEY (guild_id, actor_id)
);
CREATE INDEX guild_members_actor ON guild_members (actor_id);
CREATE TABLE roles (
    id BIGINT PRIMARY KEY,
    guild_id BIGINT NOT NULL REFERENCES guilds(id),
    name TEXT NOT NULL,
    permissions BIGINT NOT NULL,
    position BIGINT NOT NULL,
    color BIGINT
);
CREATE INDEX roles_guild ON roles (guild_id);
CREATE TABLE member_roles (
    guild_id BIGINT NOT NULL,
    actor_id BIGINT NOT NULL,
    role_id BIGINT NOT NULL REFERENCES roles(id),
    PRIMARY KEY (guild_id, actor_id, role_id)
);
CREATE INDEX member_roles_role ON member_roles (guild_id, role_id);
CREATE TABLE channel_overwrites (
    channel_id BIGINT NOT NULL REFERENCES channels(id),
    target_kind TEXT NOT NULL,
    target_id BIGINT NOT NULL,
    allow_bits BIGINT NOT NULL,
    deny_bits BIGINT NOT NULL,
    PRIMARY KEY (channel_id, target_kind, target_id)
);
CREATE INDEX channel_overwrites_target ON channel_overwrites (target_kind, target_id);
CREATE TABLE guild_bans (
    guild_id BIGINT NOT NULL REFERENCES guilds(id),
    actor_id BIGINT NOT NULL REFERENCES actors(id),
    reason TEXT,
    banned_by BIGINT NOT NULL REFERENCES actors(id),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (guild_id, actor_id)
);
CREATE TABLE guild_invites (
    code_hash BLOB PRIMARY KEY,
    guild_id BIGINT NOT NULL REFERENCES guilds(id),
    channel_id BIGINT NOT NULL,
    creator_id BIGINT NOT NULL REFERENCES actors(id),
    max_uses BIGINT NOT NULL,
    uses BIGINT NOT NULL DEFAULT 0,
    expires_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX guild_invites_guild ON guild_invites (guild_id);
CREATE TABLE messages (
    id BIGINT PRIMARY KEY,
    guild_id BIGINT NOT NULL,
    channel_id BIGINT NOT NULL,
    author_id BIGINT NOT NULL REFERENCES actors(id),
    nonce TEXT NOT NULL,
    content TEXT NOT NULL,
    signature TEXT NOT NULL,
    cert_pem TEXT NOT NULL,
    cert_serial BIGINT NOT NULL,
    version_nonce TEXT NOT NULL,
    reply_to BIGINT,
    created_at BIGINT NOT NULL,
    edited_at BIGINT,
    deleted_at BIGINT,
    deleted_by BIGINT,
    version BIGINT NOT NULL DEFAULT 1,
    UNIQUE (channel_id, author_id, nonce)
);
CREATE INDEX messages_channel ON messages (channel_id, id);
CREATE INDEX messages_guild ON messages (guild_id);
CREATE TABLE message_versions (
    message_id BIGINT NOT NULL,
    version BIGINT NOT NULL,
    nonce TEXT NOT NULL,
    content TEXT NOT NULL,
    signature TEXT NOT NULL,
    cert_pem TEXT NOT NULL,
    cert_serial BIGINT NOT NULL,
    edit_of BIGINT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (message_id, version),
    UNIQUE (message_id, nonce)
);
"#,
    ),
    (
        11,
        r#"
CREATE TABLE conversations (
    id BIGINT PRIMARY KEY,
    kind BIGINT NOT NULL,
    name TEXT,
    owner_id BIGINT REFERENCES actors(id),
    pair_key TEXT UNIQUE,
    created_at BIGINT NOT NULL,
    closed_at BIGINT,
    access_version BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE conversation_members (
    conversation_id BIGINT NOT NULL REFERENCES conversations(id),
    actor_id BIGINT NOT NULL REFERENCES actors(id),
    joined_at BIGINT NOT NULL,
    since BIGINT NOT NULL,
    rank BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, actor_id)
);
CREATE INDEX conversation_members_actor ON conversation_members (actor_id);
"#,
    ),
    (
        12,
        r#"
CREATE TABLE message_reactions (
    message_id BIGINT NOT NULL,
    emoji TEXT NOT NULL,
    actor_id BIGINT NOT NULL REFERENCES actors(id),
    channel_id BIGINT NOT NULL,
    nonce TEXT NOT NULL,
    signature TEXT NOT NULL,
    cert_pem TEXT NOT NULL,
    cert_serial BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (message_id, emoji, actor_id)
);
CREATE INDEX message_reactions_channel ON message_reactions (channel_id, message_id);
CREATE TABLE channel_pins (
    channel_id BIGINT NOT NULL,
    message_id BIGINT NOT NULL,
    pinned_by BIGINT NOT NULL,
    pinned_at BIGINT NOT NULL,
    PRIMARY KEY (channel_id, message_id)
);
CREATE TABLE read_states (
    actor_id BIGINT NOT NULL REFERENCES actors(id),
    channel_id BIGINT NOT NULL,
    last_read BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (actor_id, channel_id)
);
CREATE TABLE presence_connections (
    actor_id BIGINT NOT NULL REFERENCES actors(id),
    node TEXT NOT NULL,
    seen_at BIGINT NOT NULL,
    PRIMARY KEY (actor_id, node)
);
CREATE INDEX presence_connections_node ON presence_connections (node);
CREATE TABLE actor_profiles (
    actor_id BIGINT PRIMARY KEY REFERENCES actors(id),
    display_name TEXT,
    pronouns TEXT,
    about TEXT,
    timezone TEXT,
    availability BIGINT NOT NULL DEFAULT 1,
    status TEXT,
    updated_at BIGINT NOT NULL
);
"#,
    ),
    (
        13,
        // A message's current version lives in its row only; `message_versions` keeps the
        // versions an edit replaced.
        r#"
DELETE FROM message_versions WHERE EXISTS (SELECT 1 FROM messages m
    WHERE m.id = message_versions.message_id AND m.version = message_versions.version);
"#,
    ),
    (
        14,
        // The nonces of an actor's signed reaction changes to a message (additions and
        // removals): a nonce signs one change, so a replayed one changes nothing.
        r#"
CREATE TABLE reaction_nonces (
    message_id BIGINT NOT NULL,
    actor_id BIGINT NOT NULL,
    nonce TEXT NOT NULL,
    channel_id BIGINT NOT NULL,
    emoji TEXT NOT NULL,
    added BIGINT NOT NULL,
    PRIMARY KEY (message_id, actor_id, nonce)
);
CREATE INDEX reaction_nonces_channel ON reaction_nonces (channel_id);
INSERT INTO reaction_nonces (message_id, actor_id, nonce, channel_id, emoji, added)
    SELECT message_id, actor_id, nonce, channel_id, emoji, 1 FROM message_reactions WHERE true
    ON CONFLICT DO NOTHING;
"#,
    ),
    (
        15,
        r#"
DELETE FROM channel_pins WHERE message_id IN (SELECT id FROM messages WHERE deleted_at IS NOT NULL);
"#,
    ),
    (
        16,
        // RawR resources (core §7.3.1). Their bytes are stored once per content
        // (`media_blobs`, by SHA-256, counted by the resources that use them) under an
        // object key of their own: a key is never used for other bytes, so the object of a
        // blob whose last resource went can be deleted without racing a new upload of the
        // same content, which gets a new key.
        r#"
CREATE TABLE media_blobs (
    hash BLOB PRIMARY KEY,
    object_key TEXT NOT NULL UNIQUE,
    size BIGINT NOT NULL,
    refs BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE resources (
    rid TEXT PRIMARY KEY,
    actor_id BIGINT NOT NULL REFERENCES actors(id),
    hash BLOB NOT NULL REFERENCES media_blobs(hash),
    size BIGINT NOT NULL,
    content_type TEXT NOT NULL,
    is_private BIGINT NOT NULL,
    is_public BIGINT NOT NULL,
    allowlist TEXT NOT NULL,
    denylist TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX resources_actor ON resources (actor_id, created_at);
CREATE INDEX resources_hash ON resources (hash);
"#,
    ),
    (
        17,
        // Chat attachments: resources with a file name and, for images, dimensions, a
        // placeholder and a thumbnail (an object of its own, under a key never shared).
        // `message_attachments` links every version of a message to the attachments it
        // names: who may read such a message may read them.
        r#"
CREATE TABLE attachments (
    rid TEXT PRIMARY KEY REFERENCES resources(rid),
    filename TEXT,
    width BIGINT,
    height BIGINT,
    placeholder TEXT,
    thumb_key TEXT UNIQUE,
    thumb_type TEXT,
    thumb_size BIGINT
);
CREATE TABLE message_attachments (
    rid TEXT NOT NULL,
    message_id BIGINT NOT NULL,
    PRIMARY KEY (rid, message_id)
);
CREATE INDEX message_attachments_message ON message_attachments (message_id);
ALTER TABLE actor_profiles ADD COLUMN avatar TEXT;
"#,
    ),
    (
        18,
        // Key trials a signed-in actor takes to prove its keys on the migration routes
        // (`actor_id` set): answered with one completion per key, usable until they expire;
        // and redirects from an actor of this server to its new identity (core §7.1.1).
        r#"
ALTER TABLE key_trials ADD COLUMN actor_id BIGINT;
CREATE INDEX key_trials_actor ON key_trials (actor_id, created_at);
CREATE TABLE key_trial_completions (
    trial_id TEXT NOT NULL REFERENCES key_trials(id),
    serial BIGINT NOT NULL,
    signature TEXT NOT NULL,
    PRIMARY KEY (trial_id, serial)
);
CREATE TABLE redirects (
    source_id BIGINT PRIMARY KEY REFERENCES actors(id),
    target_fid TEXT NOT NULL,
    source_confirmed_at BIGINT,
    target_confirmed_at BIGINT,
    created_at BIGINT NOT NULL
);
"#,
    ),
    (
        19,
        // Re-signing (core §7.2): an old actor lets a new one re-sign the messages it
        // signed here with the keys it proved, with the keys the grant allows, until it
        // expires. One grant per (old actor, new actor); its proven serials beside it.
        r#"
CREATE TABLE resign_grants (
    old_actor_id BIGINT NOT NULL REFERENCES actors(id),
    new_fid TEXT NOT NULL,
    allowed_keys TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (old_actor_id, new_fid)
);
CREATE INDEX resign_grants_new ON resign_grants (new_fid);
CREATE TABLE resign_grant_serials (
    old_actor_id BIGINT NOT NULL,
    new_fid TEXT NOT NULL,
    serial BIGINT NOT NULL,
    PRIMARY KEY (old_actor_id, new_fid, serial)
);
CREATE INDEX messages_author ON messages (author_id, id);
"#,
    ),
    (
        20,
        // When a message's current version was re-signed (core §7.2): the time its new
        // signature's certificate must have been valid at.
        r#"
ALTER TABLE messages ADD COLUMN resigned_at BIGINT;
"#,
    ),
    (
        21,
        // Data exports (core §7.3.2): archives built in the background for an actor and the
        // keys it proved, kept as objects for a day; and the imports of actors with their
        // outcome.
        r#"
CREATE TABLE data_exports (
    id TEXT PRIMARY KEY,
    actor_id BIGINT NOT NULL REFERENCES actors(id),
    serials TEXT NOT NULL,
    state TEXT NOT NULL,
    object_key TEXT,
    size BIGINT,
    file_name TEXT NOT NULL,
    error TEXT,
    created_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX data_exports_actor ON data_exports (actor_id, serials, created_at);
CREATE TABLE data_imports (
    id TEXT PRIMARY KEY,
    actor_id BIGINT NOT NULL REFERENCES actors(id),
    state TEXT NOT NULL,
    messages BIGINT NOT NULL,
    resources BIGINT NOT NULL,
    report TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX data_imports_actor ON data_imports (actor_id, created_at);
"#,
    ),
    (
        22,
        // polyproto-mls: KeyPackages of devices (each handed out once; the last-resort one
        // kept), which device a handed-out package belonged to (a Welcome's route), claims
        // counted per requester and actor, and the groups the server follows: public state
        // at the current epoch, member devices (leaves), proposals pending in the epoch; the
        // channels and conversations encrypted with a group, and join requests to them.
        r#"
CREATE TABLE mls_key_packages (
    actor_id BIGINT NOT NULL REFERENCES actors(id),
    session_pk BIGINT NOT NULL,
    serial BIGINT NOT NULL,
    id TEXT NOT NULL,
    hash_ref BLOB NOT NULL UNIQUE,
    body TEXT NOT NULL,
    last_resort BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (actor_id, id)
);
CREATE INDEX mls_key_packages_session ON mls_key_packages (session_pk, last_resort, created_at);
CREATE TABLE mls_claimed (
    hash_ref BLOB PRIMARY KEY,
    actor_id BIGINT NOT NULL,
    session_pk BIGINT NOT NULL,
    body TEXT NOT NULL,
    claimed_at BIGINT NOT NULL
);
CREATE INDEX mls_claimed_actor ON mls_claimed (actor_id, claimed_at);
CREATE TABLE mls_claims (
    requester_id BIGINT NOT NULL,
    target_id BIGINT NOT NULL,
    window_start BIGINT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (requester_id, target_id)
);
CREATE TABLE mls_groups (
    id TEXT PRIMARY KEY,
    stream_id BIGINT NOT NULL UNIQUE,
    epoch BIGINT NOT NULL,
    state BLOB NOT NULL,
    creator_id BIGINT NOT NULL REFERENCES actors(id),
    public_key TEXT NOT NULL,
    latest_commit TEXT,
    created_at BIGINT NOT NULL
);
CREATE TABLE mls_group_members (
    group_id TEXT NOT NULL,
    leaf BIGINT NOT NULL,
    actor_id BIGINT NOT NULL,
    fid TEXT NOT NULL,
    serial BIGINT NOT NULL,
    session TEXT NOT NULL,
    key_package TEXT NOT NULL,
    role TEXT NOT NULL,
    since BIGINT NOT NULL,
    PRIMARY KEY (group_id, leaf)
);
CREATE INDEX mls_group_members_actor ON mls_group_members (actor_id, group_id);
CREATE INDEX mls_group_members_serial ON mls_group_members (serial);
CREATE TABLE mls_channels (
    channel_id BIGINT PRIMARY KEY,
    stream_id BIGINT NOT NULL,
    group_id TEXT NOT NULL,
    set_by BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX mls_channels_stream ON mls_channels (stream_id);
CREATE TABLE mls_join_requests (
    id BIGINT PRIMARY KEY,
    channel_id BIGINT NOT NULL,
    group_id TEXT NOT NULL,
    actor_id BIGINT NOT NULL,
    session_pk BIGINT NOT NULL,
    hash_ref BLOB NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    resolved_by BIGINT,
    created_at BIGINT NOT NULL,
    resolved_at BIGINT
);
CREATE INDEX mls_join_requests_channel ON mls_join_requests (channel_id, state, id);
CREATE TABLE mls_proposals (
    group_id TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    id TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (group_id, epoch, id)
);
"#,
    ),
];

/// Creates the bookkeeping table.
pub const BOOTSTRAP: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)";
/// The newest applied migration (0 when none).
pub const CURRENT_VERSION: &str = "SELECT COALESCE(MAX(version), 0) FROM schema_migrations";

/// Adapts shared DDL to an engine.
pub fn for_engine(sql: &str, postgres: bool) -> String {
    if postgres {
        sql.replace("BLOB", "BYTEA")
    } else {
        sql.to_owned()
    }
}
