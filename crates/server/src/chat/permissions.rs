//! Who may do what in a guild: one function ([`effective`]) over a [`Snapshot`] of the
//! guild's roles, members and overwrites.
//!
//! The rules, in order: the owner may do everything; so may a member whose `@everyone` or
//! role bits include ADMINISTRATOR. Otherwise a member has `@everyone`'s bits and those of
//! its roles; in a channel the overwrites then apply — `@everyone`'s (deny, then allow),
//! those of its roles together (deny, then allow), its own (deny, then allow). Without
//! VIEW_CHANNEL in a channel nothing else there counts. A non-member has nothing.

use std::collections::{BTreeMap, HashMap};

use fugue_proto::chat::Permissions;
use fugue_store::{GuildAccess, OverwriteRow, TargetKind};

use crate::ids::ActorId;

/// A guild's access rules at one `access_version`, shared by every check and every gateway
/// view until the next access change.
#[derive(Debug)]
pub struct Snapshot {
    pub guild_id: i64,
    pub version: i64,
    pub owner: ActorId,
    pub private: bool,
    everyone: Permissions,
    roles: HashMap<i64, Permissions>,
    /// Member → (where its membership began, its roles).
    members: HashMap<ActorId, (i64, Vec<i64>)>,
    /// Channel → its overwrites (channels without any map to an empty list).
    channels: BTreeMap<i64, Vec<OverwriteRow>>,
    /// Encrypted channel → the MLS group that encrypts it.
    encrypted: HashMap<i64, String>,
}

impl Snapshot {
    pub fn new(a: GuildAccess) -> Self {
        let guild_id = a.guild.id;
        let roles: HashMap<i64, Permissions> = a
            .roles
            .iter()
            .map(|r| (r.id, Permissions::from_bits(r.permissions.cast_unsigned())))
            .collect();
        let mut members: HashMap<ActorId, (i64, Vec<i64>)> = a
            .members
            .iter()
            .map(|(actor, since)| (ActorId::from_store(*actor), (*since, Vec::new())))
            .collect();
        for (actor, role) in a.member_roles {
            if let Some(m) = members.get_mut(&ActorId::from_store(actor)) {
                m.1.push(role);
            }
        }
        let mut channels: BTreeMap<i64, Vec<OverwriteRow>> =
            a.channels.iter().map(|c| (c.id, Vec::new())).collect();
        for o in a.overwrites {
            if let Some(list) = channels.get_mut(&o.channel_id) {
                list.push(o);
            }
        }
        Self {
            guild_id,
            version: a.guild.access_version,
            owner: ActorId::from_store(a.guild.owner_id),
            private: a.guild.private,
            everyone: roles.get(&guild_id).copied().unwrap_or(Permissions::NONE),
            roles,
            members,
            channels,
            encrypted: a.encrypted.into_iter().collect(),
        }
    }

    /// The MLS group that encrypts a channel, if it is encrypted.
    pub fn encryption(&self, channel: i64) -> Option<&str> {
        self.encrypted.get(&channel).map(String::as_str)
    }

    pub fn is_member(&self, actor: ActorId) -> bool {
        self.members.contains_key(&actor)
    }

    /// Where the actor's membership began in the guild's stream.
    pub fn since(&self, actor: ActorId) -> Option<i64> {
        self.members.get(&actor).map(|m| m.0)
    }

    pub fn has_channel(&self, channel: i64) -> bool {
        self.channels.contains_key(&channel)
    }

    /// The actor's permissions in the guild (no channel); `None` for a non-member.
    pub fn in_guild(&self, actor: ActorId) -> Option<Permissions> {
        self.of(actor, None)
    }

    /// The actor's permissions in a channel of the guild; `None` for a non-member or a
    /// channel the guild does not have.
    pub fn in_channel(&self, actor: ActorId, channel: i64) -> Option<Permissions> {
        let overwrites = self.channels.get(&channel)?;
        self.of(actor, Some(overwrites))
    }

    fn of(&self, actor: ActorId, overwrites: Option<&[OverwriteRow]>) -> Option<Permissions> {
        let (_, role_ids) = self.members.get(&actor)?;
        let roles: Vec<(i64, Permissions)> = role_ids
            .iter()
            .filter_map(|r| self.roles.get(r).map(|p| (*r, *p)))
            .collect();
        Some(effective(&Inputs {
            owner: actor == self.owner,
            guild_id: self.guild_id,
            actor: actor.to_store(),
            everyone: self.everyone,
            roles: &roles,
            overwrites,
        }))
    }

    /// The channels the actor may view.
    pub fn visible_channels(&self, actor: ActorId) -> impl Iterator<Item = i64> + '_ {
        self.channels.keys().copied().filter(move |c| {
            self.in_channel(actor, *c)
                .is_some_and(|p| p.contains(Permissions::VIEW_CHANNEL))
        })
    }
}

/// What [`effective`] decides on.
pub struct Inputs<'a> {
    pub owner: bool,
    pub guild_id: i64,
    /// The member's actor id (for its own overwrite).
    pub actor: i64,
    pub everyone: Permissions,
    /// The member's roles (besides `@everyone`) and their bits.
    pub roles: &'a [(i64, Permissions)],
    /// The channel's overwrites; `None` for guild-wide permissions.
    pub overwrites: Option<&'a [OverwriteRow]>,
}

/// The one function that decides a member's permissions.
pub fn effective(i: &Inputs<'_>) -> Permissions {
    if i.owner {
        return Permissions::ALL;
    }
    let mut p = i
        .roles
        .iter()
        .fold(i.everyone, |acc, (_, bits)| acc.union(*bits));
    if p.contains(Permissions::ADMINISTRATOR) {
        return Permissions::ALL;
    }
    let Some(overwrites) = i.overwrites else {
        return p;
    };
    let apply =
        |p: Permissions, allow: Permissions, deny: Permissions| p.without(deny).union(allow);
    let bits = |o: &OverwriteRow| {
        (
            Permissions::from_bits(o.allow.cast_unsigned()),
            Permissions::from_bits(o.deny.cast_unsigned()),
        )
    };
    if let Some(o) = overwrites
        .iter()
        .find(|o| o.kind == TargetKind::Role && o.target_id == i.guild_id)
    {
        let (allow, deny) = bits(o);
        p = apply(p, allow, deny);
    }
    let (mut allow, mut deny) = (Permissions::NONE, Permissions::NONE);
    for o in overwrites
        .iter()
        .filter(|o| o.kind == TargetKind::Role && i.roles.iter().any(|(id, _)| *id == o.target_id))
    {
        let (a, d) = bits(o);
        allow = allow.union(a);
        deny = deny.union(d);
    }
    p = apply(p, allow, deny);
    if let Some(o) = overwrites
        .iter()
        .find(|o| o.kind == TargetKind::Member && o.target_id == i.actor)
    {
        let (allow, deny) = bits(o);
        p = apply(p, allow, deny);
    }
    if !p.contains(Permissions::VIEW_CHANNEL) {
        return Permissions::NONE;
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use Permissions as P;

    const GUILD: i64 = 100;
    const MEMBER: i64 = 7;
    const MODS: i64 = 200;

    fn ow(kind: TargetKind, target_id: i64, allow: P, deny: P) -> OverwriteRow {
        OverwriteRow {
            channel_id: 1,
            kind,
            target_id,
            allow: allow.bits().cast_signed(),
            deny: deny.bits().cast_signed(),
        }
    }

    fn eval(owner: bool, roles: &[(i64, P)], overwrites: Option<&[OverwriteRow]>) -> P {
        effective(&Inputs {
            owner,
            guild_id: GUILD,
            actor: MEMBER,
            everyone: P::DEFAULT_EVERYONE,
            roles,
            overwrites,
        })
    }

    #[test]
    fn owners_and_administrators_may_do_everything_even_against_overwrites() {
        let deny_all = [ow(TargetKind::Member, MEMBER, P::NONE, P::ALL)];
        assert_eq!(eval(true, &[], Some(&deny_all)), P::ALL);
        assert_eq!(
            eval(false, &[(MODS, P::ADMINISTRATOR)], Some(&deny_all)),
            P::ALL
        );
        assert_eq!(eval(false, &[], Some(&deny_all)), P::NONE);
    }

    #[test]
    fn overwrites_apply_everyone_then_roles_then_the_member() {
        let base = eval(false, &[], None);
        assert!(base.contains(P::SEND_MESSAGES) && !base.contains(P::MANAGE_MESSAGES));
        // @everyone may not send here, the mods role may, this member may not.
        let list = [
            ow(TargetKind::Role, GUILD, P::NONE, P::SEND_MESSAGES),
            ow(TargetKind::Role, MODS, P::SEND_MESSAGES, P::NONE),
        ];
        assert!(!eval(false, &[], Some(&list)).contains(P::SEND_MESSAGES));
        let mods = [(MODS, P::MANAGE_MESSAGES)];
        let p = eval(false, &mods, Some(&list));
        assert!(p.contains(P::SEND_MESSAGES) && p.contains(P::MANAGE_MESSAGES));
        let mut with_member = list.to_vec();
        with_member.push(ow(TargetKind::Member, MEMBER, P::NONE, P::SEND_MESSAGES));
        assert!(!eval(false, &mods, Some(&with_member)).contains(P::SEND_MESSAGES));
        // A role the member does not have changes nothing.
        let other = [ow(TargetKind::Role, 999, P::NONE, P::VIEW_CHANNEL)];
        assert_eq!(eval(false, &[], Some(&other)), base);
    }

    #[test]
    fn without_view_channel_nothing_else_counts_in_that_channel() {
        let hidden = [ow(
            TargetKind::Role,
            GUILD,
            P::MANAGE_MESSAGES,
            P::VIEW_CHANNEL,
        )];
        assert_eq!(eval(false, &[], Some(&hidden)), P::NONE);
        assert!(eval(false, &[], None).contains(P::VIEW_CHANNEL));
    }
}
