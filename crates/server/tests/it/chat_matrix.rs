//! The authorization matrix of chat: every chat and fugue-chat route, probed by the owner, an
//! administrator, a member, a member whose role was taken away, a foreign member (signed in
//! through federation), a stranger, a banned actor and an anonymous caller, each on a fresh
//! guild — and the gateway and resume of those who may not see, which must stay silent.
//!
//! A route without an expectation here fails the test: a new route must say who may use it.

use serde_json::{Value, json};

use fugue_proto::api::{self, Endpoint};
use fugue_proto::chat::{
    Attachment, Channel, Guild, Member, Message, OverwriteTarget, Permissions, Role,
};
use fugue_testkit::{TestServer, ws};

use crate::chat::sample_body;
use crate::chat_support::{Who, next_chat, ok, png};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Owner,
    Admin,
    Member,
    /// A member whose moderator role (with every permission below administrator) was removed.
    Demoted,
    /// A member from another server, signed in by key trial.
    Foreign,
    Stranger,
    Banned,
    Anonymous,
}

const CALLERS: [Caller; 8] = [
    Caller::Anonymous,
    Caller::Stranger,
    Caller::Banned,
    Caller::Foreign,
    Caller::Demoted,
    Caller::Member,
    Caller::Admin,
    Caller::Owner,
];

/// Who may use a route.
#[derive(Debug, Clone, Copy)]
enum Need {
    /// Any session of this server.
    Session,
    /// Membership of the guild.
    Member,
    /// Membership and a permission (`@everyone` has VIEW, SEND, CREATE_INVITES, ADD_REACTIONS).
    Permission(Permissions),
    Owner,
    /// The message's author (the member's message is probed).
    Author,
    /// The message's author, or the permission.
    AuthorOr(Permissions),
    /// Joining: only those who are not members yet, with an invite.
    Join,
    /// Leaving: members other than the owner.
    Leave,
    /// Membership of the group conversation (the owner, admin, member, demoted and foreign
    /// callers are its members; the stranger and the banned actor are not).
    GroupMember,
    /// The group's owner.
    GroupOwner,
}

fn need(endpoint: &Endpoint) -> Need {
    use Need::*;
    match endpoint.name {
        "create_guild" | "create_dm" | "list_dms" => Session,
        "get_guild" | "get_guild_by_query" | "list_channels" | "get_messages"
        | "message_history" | "message_versions" | "list_members" | "list_roles" => Member,
        "update_guild" | "list_invites" | "delete_invite" => Permission(Permissions::MANAGE_GUILD),
        "delete_guild" | "transfer_guild" => Owner,
        "create_channel" | "update_channel" | "delete_channel" => {
            Permission(Permissions::MANAGE_CHANNELS)
        }
        "send_message" => Permission(Permissions::SEND_MESSAGES),
        "edit_message" => Author,
        "delete_message" => AuthorOr(Permissions::MANAGE_MESSAGES),
        "join_guild" => Join,
        "leave_guild" => Leave,
        "kick_member" => Permission(Permissions::KICK_MEMBERS),
        "create_invite" => Permission(Permissions::CREATE_INVITES),
        "create_role" | "update_role" | "delete_role" | "add_member_role"
        | "remove_member_role" | "list_overwrites" | "set_overwrite" | "delete_overwrite" => {
            Permission(Permissions::MANAGE_ROLES)
        }
        "list_bans" | "ban_member" | "unban_member" => Permission(Permissions::BAN_MEMBERS),
        "create_group" => Session,
        // About the caller alone, or any actor's profile and presence.
        "read_states" | "set_presence" | "get_presences" | "get_own_profile" | "update_profile"
        | "get_profile" => Session,
        "list_reactions" | "list_pins" | "set_read_state" => Member,
        // Anyone signed in uploads; who reads is who may read a message naming it.
        "upload_attachment" => Session,
        "get_attachment" | "attachment_details" | "attachment_thumbnail" => Member,
        // Taking back one's own reaction: there is none to take back, which changes nothing.
        "add_reaction" | "remove_reaction" => Permission(Permissions::ADD_REACTIONS),
        "pin_message" | "unpin_message" => Permission(Permissions::MANAGE_MESSAGES),
        "get_conversation"
        | "rename_group"
        | "list_conversation_members"
        | "leave_conversation" => GroupMember,
        "add_conversation_member" | "remove_conversation_member" | "transfer_conversation" => {
            GroupOwner
        }
        other => panic!("no expectation for chat route {other}: say who may use it"),
    }
}

/// What `caller` must get: `Ok(())` for a 2xx, `Err(status)` for a refusal.
fn expect(need: Need, caller: Caller) -> Result<(), u16> {
    use Caller::*;
    let member = matches!(caller, Owner | Admin | Member | Demoted | Foreign);
    let everyone = |p: Permissions| Permissions::DEFAULT_EVERYONE.contains(p);
    match (need, caller) {
        (_, Anonymous) => Err(401),
        (Need::Session, _) => Ok(()),
        // Joining without an invite (the probe sends none): members are told one is needed;
        // strangers and the banned learn nothing.
        (Need::Join, _) if member => Err(403),
        (Need::Join, _) => Err(404),
        (_, Stranger | Banned) => Err(404),
        (Need::GroupMember, _) => Ok(()),
        (Need::GroupOwner, Owner) => Ok(()),
        (Need::GroupOwner, _) => Err(403),
        (Need::Member, _) => Ok(()),
        (Need::Leave, Owner) => Err(409),
        (Need::Leave, _) => Ok(()),
        (Need::Owner, Owner) => Ok(()),
        (Need::Owner, _) => Err(403),
        (Need::Author, Member) => Ok(()),
        (Need::Author, _) => Err(403),
        (Need::AuthorOr(_), Owner | Admin | Member) => Ok(()),
        (Need::AuthorOr(p), _) if everyone(p) => Ok(()),
        (Need::AuthorOr(_), _) => Err(403),
        (Need::Permission(_), Owner | Admin) => Ok(()),
        (Need::Permission(p), _) if everyone(p) => Ok(()),
        (Need::Permission(_), _) => Err(403),
    }
}

/// A guild with one actor per [`Caller`]: the member wrote a message, the demoted member lost
/// its moderator role (and with it a hidden channel), the banned actor was banned, and a
/// victim, a scratch role and an invite stand ready for the routes that need them.
struct Fixture {
    /// A group of the owner with the admin, member, demoted, foreign callers and the victim.
    group: u64,
    guild: Guild,
    general: Channel,
    hidden: Channel,
    message: Message,
    role: Role,
    code: String,
    /// An image of the owner's, named in a message in `general`.
    attachment: String,
}

async fn fixture(actors: &Actors<'_>) -> Fixture {
    let owner = &actors.owner;
    let (guild, general) = owner.create_guild("matrix", true).await;
    let hidden: Channel = owner
        .create_channel(guild.id, json!({"name": "staff"}))
        .await;
    let code = owner.invite(general.id, json!({})).await.code.unwrap();
    for who in [
        &actors.admin,
        &actors.member,
        &actors.demoted,
        &actors.foreign,
        &actors.banned,
        &actors.victim,
    ] {
        ok::<Member>(who.join(guild.id, Some(&code)).await, 201).await;
    }
    let role = |name: &str, p: Permissions| {
        owner.call(
            api::create_role::target(guild.id),
            &[],
            Some(json!({"name": name, "permissions": p.bits().to_string()})),
        )
    };
    let admin_role: Role = ok(role("admin", Permissions::ADMINISTRATOR).await, 201).await;
    let everything = Permissions::ALL.without(Permissions::ADMINISTRATOR);
    let moderator: Role = ok(role("moderator", everything).await, 201).await;
    let scratch: Role = ok(role("scratch", Permissions::NONE).await, 201).await;
    let grant = |who: &Who<'_>, r: &Role| {
        owner.call(
            api::add_member_role::target(guild.id, &who.fid(), r.id),
            &[],
            None,
        )
    };
    assert!(
        grant(&actors.admin, &admin_role)
            .await
            .status()
            .is_success()
    );
    assert!(
        grant(&actors.demoted, &moderator)
            .await
            .status()
            .is_success()
    );
    assert!(grant(&actors.victim, &scratch).await.status().is_success());
    owner
        .set_overwrite(
            general.id,
            &OverwriteTarget::Role(scratch.id),
            json!({"allow": Permissions::SEND_MESSAGES.bits().to_string()}),
        )
        .await;
    // The hidden channel: only moderators see it.
    let everyone_target = OverwriteTarget::Role(guild.id);
    owner
        .set_overwrite(
            hidden.id,
            &everyone_target,
            json!({"deny": Permissions::VIEW_CHANNEL.bits().to_string()}),
        )
        .await;
    owner
        .set_overwrite(
            hidden.id,
            &OverwriteTarget::Role(moderator.id),
            json!({"allow": Permissions::VIEW_CHANNEL.bits().to_string()}),
        )
        .await;
    // The demoted member saw the hidden channel while it was a moderator.
    assert_eq!(
        actors
            .demoted
            .call(api::message_history::target(hidden.id), &[], None)
            .await
            .status()
            .as_u16(),
        200
    );
    assert!(
        owner
            .call(
                api::remove_member_role::target(guild.id, &actors.demoted.fid(), moderator.id),
                &[],
                None,
            )
            .await
            .status()
            .is_success()
    );
    let message: Message = ok(
        actors
            .member
            .send(general.id, "mine", "by the member")
            .await,
        201,
    )
    .await;
    let attachment: Attachment = ok(
        owner
            .upload_attachment(&png(500, 20, false), Some("wide.png"))
            .await,
        201,
    )
    .await;
    ok::<Message>(
        owner
            .send_attached(general.id, "pictured", &[&attachment.url])
            .await,
        201,
    )
    .await;
    ok::<Value>(
        owner
            .call(
                api::ban_member::target(guild.id, &actors.banned.fid()),
                &[],
                None,
            )
            .await,
        200,
    )
    .await;
    let members: Vec<String> = [
        &actors.admin,
        &actors.member,
        &actors.demoted,
        &actors.foreign,
        &actors.victim,
    ]
    .iter()
    .map(|w| w.fid().to_string())
    .collect();
    let group: Value = ok(
        owner
            .call(
                api::create_group::target(),
                &[],
                Some(json!({"name": "matrix group", "members": members})),
            )
            .await,
        201,
    )
    .await;
    Fixture {
        group: group["id"].as_str().unwrap().parse().unwrap(),
        guild,
        general,
        hidden,
        message,
        role: scratch,
        code,
        attachment: attachment.id,
    }
}

struct Actors<'a> {
    server: &'a TestServer,
    owner: Who<'a>,
    admin: Who<'a>,
    member: Who<'a>,
    demoted: Who<'a>,
    foreign: Who<'a>,
    stranger: Who<'a>,
    banned: Who<'a>,
    victim: Who<'a>,
}

impl Actors<'_> {
    fn who(&self, caller: Caller) -> &Who<'_> {
        match caller {
            Caller::Owner => &self.owner,
            Caller::Admin => &self.admin,
            Caller::Member => &self.member,
            Caller::Demoted => &self.demoted,
            Caller::Foreign => &self.foreign,
            Caller::Stranger | Caller::Anonymous => &self.stranger,
            Caller::Banned => &self.banned,
        }
    }
}

/// One probe of `endpoint` by `caller` on fixture `f`: the status and body.
async fn probe(
    actors: &Actors<'_>,
    f: &Fixture,
    endpoint: &'static Endpoint,
    caller: Caller,
) -> (u16, String) {
    let who = actors.who(caller);
    let victim = actors.victim.fid().to_string();
    let values: Vec<String> = endpoint
        .params
        .iter()
        .map(|p| match *p {
            "guild_id" => f.guild.id.to_string(),
            "channel_id" => f.general.id.to_string(),
            "message_id" => f.message.id.to_string(),
            "role_id" => f.role.id.to_string(),
            "target" => OverwriteTarget::Role(f.role.id).to_string(),
            "conversation_id" => f.group.to_string(),
            // Lifting a ban needs a banned actor, adding to the group an outsider;
            // everything else acts on the victim.
            "fid" if endpoint.name == "unban_member" => actors.banned.fid().to_string(),
            "fid" if endpoint.name == "add_conversation_member" => {
                actors.stranger.fid().to_string()
            }
            "user_id" | "fid" => victim.clone(),
            "invite_code" => f.code.clone(),
            "emoji" => "👍".to_owned(),
            "resource_id" => f.attachment.clone(),
            other => panic!("no value for {other}"),
        })
        .collect();
    let refs: Vec<&str> = values.iter().map(String::as_str).collect();
    let target = endpoint.fill(&refs);
    let query = match endpoint.name {
        "get_guild_by_query" => vec![("guild_id", f.guild.id.to_string())],
        "get_presences" => vec![("fids", victim.clone())],
        _ => vec![],
    };
    let body = match endpoint.name {
        "transfer_guild" | "transfer_conversation" => Some(json!({"owner_id": victim})),
        "create_dm" => Some(json!({"recipient_id": victim})),
        "create_group" => Some(json!({"members": [victim]})),
        "rename_group" => Some(json!({"name": "renamed"})),
        "edit_message" => {
            // A real edit of the probed message, signed by the caller.
            let b = fugue_proto::chat::MessageBody {
                content: "edited".into(),
                reply_to: None,
                attachments: vec![],
            };
            Some(json!({
                "content": "edited",
                "nonce": "probe-edit",
                "signature": who.signed(f.general.id, "probe-edit", &b, Some(f.message.id)),
                "id_cert": who.session.cert_pem(),
            }))
        }
        name => sample_body(name, who, f.general.id, f.message.id),
    };
    let resp = if caller == Caller::Anonymous {
        let method = reqwest::Method::from_bytes(target.method().as_str().as_bytes()).unwrap();
        let mut req = actors
            .server
            .client()
            .raw()
            .request(method, format!("{}{}", actors.server.url, target.path))
            .query(&query);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.unwrap()
    } else {
        let solution = (endpoint.name == "delete_guild").then_some(fugue_testkit::PASSWORD);
        who.call_with(target, &query, body, solution).await
    };
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

#[tokio::test]
async fn every_chat_route_answers_each_kind_of_caller_as_its_rules_say() {
    let (home, server) = fugue_testkit::federated_pair().await;
    let actors = Actors {
        server: &server,
        owner: Who::new(&server, "owner").await,
        admin: Who::new(&server, "admin").await,
        member: Who::new(&server, "member").await,
        demoted: Who::new(&server, "demoted").await,
        foreign: Who::foreign(&server, home.register("visitor").await).await,
        stranger: Who::new(&server, "stranger").await,
        banned: Who::new(&server, "banned").await,
        victim: Who::new(&server, "victim").await,
    };
    let mut failures = Vec::new();
    for endpoint in api::CHAT_ENDPOINTS.iter().chain(api::FUGUE_CHAT_ENDPOINTS) {
        let need = need(endpoint);
        for caller in CALLERS {
            // A fresh guild per probe: what one caller changes never decides another's answer.
            let f = fixture(&actors).await;
            let (got, text) = probe(&actors, &f, endpoint, caller).await;
            let ok = match expect(need, caller) {
                Ok(()) => (200..300).contains(&got),
                Err(want) => got == want,
            };
            if !ok {
                failures.push(format!(
                    "{} {} by {caller:?}: want {:?}, got {got} {text:.200}",
                    endpoint.method,
                    endpoint.path,
                    expect(need, caller)
                ));
            }
            // Nobody who may not read learns the message through any answer.
            if matches!(
                caller,
                Caller::Stranger | Caller::Banned | Caller::Anonymous
            ) {
                assert!(
                    !text.contains("by the member"),
                    "{endpoint:?} by {caller:?}: {text}"
                );
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn those_who_may_not_see_hear_nothing_live_or_on_resume() {
    let server = TestServer::start_with(|c| c.rate_limits.chat_messages_per_5s = 0).await;
    let actors = Actors {
        server: &server,
        owner: Who::new(&server, "owner").await,
        admin: Who::new(&server, "admin").await,
        member: Who::new(&server, "member").await,
        demoted: Who::new(&server, "demoted").await,
        foreign: Who::new(&server, "visitor").await,
        stranger: Who::new(&server, "stranger").await,
        banned: Who::new(&server, "banned").await,
        victim: Who::new(&server, "victim").await,
    };
    let f = fixture(&actors).await;
    let subscribe = json!({"n": "core", "op": 8, "d": {"action": "subscribe", "service": "chat"}});
    let mut listeners = Vec::new();
    for who in [
        &actors.stranger,
        &actors.banned,
        &actors.demoted,
        &actors.member,
    ] {
        let mut w = ws::identified(&server, who.token()).await;
        ws::send(&mut w, subscribe.clone()).await;
        ws::next_with_op(&mut w, 9).await;
        listeners.push(w);
    }
    // The owner talks in both channels and changes things.
    let secret: Message = ok(
        actors.owner.send(f.hidden.id, "s1", "secret words").await,
        201,
    )
    .await;
    let open: Message = ok(
        actors.owner.send(f.general.id, "o1", "open words").await,
        201,
    )
    .await;
    ok::<Value>(
        actors
            .owner
            .call(
                api::update_channel::target(f.hidden.id),
                &[],
                Some(json!({"name": "staff-only"})),
            )
            .await,
        200,
    )
    .await;

    // The member hears the open message; the others nothing of the hidden channel.
    let mut member_ws = listeners.pop().unwrap();
    let heard = next_chat(&mut member_ws).await;
    assert_eq!(heard["d"]["id"], open.id.to_string(), "{heard}");
    let mut demoted_ws = listeners.pop().unwrap();
    let demoted_heard = next_chat(&mut demoted_ws).await;
    assert_eq!(
        demoted_heard["d"]["id"],
        open.id.to_string(),
        "{demoted_heard}"
    );
    for mut w in listeners {
        assert!(
            ws::try_receive(&mut w, std::time::Duration::from_millis(300))
                .await
                .is_err(),
            "a stranger or banned actor heard something"
        );
    }
    assert!(
        ws::try_receive(&mut demoted_ws, std::time::Duration::from_millis(300))
            .await
            .is_err(),
        "the demoted member heard the hidden channel"
    );
    let s = demoted_heard["s"].as_u64().unwrap();
    drop(demoted_ws);

    // While the demoted member is away: more secrets. Its resume replays none of them.
    ok::<Message>(
        actors
            .owner
            .send(f.hidden.id, "s2", "more secret words")
            .await,
        201,
    )
    .await;
    let later: Message = ok(
        actors
            .owner
            .send(f.general.id, "o2", "more open words")
            .await,
        201,
    )
    .await;
    let (mut w, _) = ws::connect(&server).await;
    ws::send(
        &mut w,
        json!({"n": "core", "op": 5, "d": {"s": s, "token": actors.demoted.token()}}),
    )
    .await;
    let resumed = ws::next_with_op(&mut w, 10).await;
    let text = resumed.to_string();
    assert!(!text.contains("secret"), "{text}");
    assert!(text.contains(&later.id.to_string()), "{text}");
    assert!(!text.contains(&secret.id.to_string()), "{text}");
}
