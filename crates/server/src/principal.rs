//! Who a request is: the [`Actor`] and the [`Session`] it authenticated as, built once from
//! the store rows when the token is checked, so no handler, service or gateway connection
//! carries a password hash, a TOTP secret or the shape of a table.
//!
//! The store has no column for an actor's home: an actor of another home server is stored
//! under its whole FID as its local name (a local name never contains `@`, so the two
//! cannot collide). That convention lives only in [`stored_name`] and [`Actor::from_row`].

use fugue_proto::ids::IdError;
use fugue_proto::{DomainName, FederationId, LocalName, Serial};
use fugue_store::{ActorRow, SessionRow};

use crate::ids::{ActorId, SessionPk, from_store};
use crate::time::UnixTime;

/// Where an actor's account lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Home {
    /// Registered on this server.
    Local,
    /// Of another home server, signed in here with a key trial (core §4.1.1).
    Foreign(DomainName),
}

/// An actor as the server's domains see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub id: ActorId,
    pub fid: FederationId,
    pub home: Home,
    /// A server administrator (only ever a local actor).
    pub is_admin: bool,
}

impl Actor {
    /// The actor of a stored row, for the server of `domain`.
    pub fn from_row(row: &ActorRow, domain: &DomainName) -> Result<Self, IdError> {
        let id = ActorId::from_store(row.id);
        // A local name never parses as a FID; a foreign actor's stored name always does.
        if let Ok(fid) = row.local_name.parse::<FederationId>() {
            return Ok(Self {
                id,
                home: Home::Foreign(fid.domain().clone()),
                fid,
                is_admin: false,
            });
        }
        let local: LocalName = row.local_name.parse()?;
        Ok(Self {
            id,
            fid: FederationId::new(local, domain.clone()),
            home: Home::Local,
            is_admin: row.is_admin,
        })
    }

    pub fn is_local(&self) -> bool {
        self.home == Home::Local
    }

    pub fn is_foreign(&self) -> bool {
        !self.is_local()
    }
}

/// The name the actor with `fid` is stored under on the server of `domain`: its local name
/// when it is ours, its whole FID when it is another server's.
pub fn stored_name(fid: &FederationId, domain: &DomainName) -> String {
    if fid.domain() == domain {
        fid.local_name().to_string()
    } else {
        fid.to_string()
    }
}

/// The session a request authenticated with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub pk: SessionPk,
    /// The session ID the protocol shows (it is in the session's certificates).
    pub id: String,
    /// The serial of its current certificate; none until it got its first.
    pub cert_serial: Option<Serial>,
    pub created_at: UnixTime,
    /// When its certificate (a foreign session's verified window) ends.
    pub cert_not_after: Option<UnixTime>,
}

impl Session {
    pub fn from_row(row: &SessionRow) -> Self {
        Self {
            pk: SessionPk::from_store(row.id),
            id: row.session_id.clone(),
            cert_serial: row.cert_serial.map(|s| Serial(from_store(s))),
            created_at: UnixTime::from_store(row.created_at),
            cert_not_after: row.cert_not_after.map(UnixTime::from_store),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, is_admin: bool) -> ActorRow {
        ActorRow {
            id: 7,
            local_name: name.into(),
            password_hash: String::new(),
            totp_secret: None,
            totp_pending: None,
            is_admin,
            created_at: 0,
            suspended_at: None,
            deleted_at: None,
        }
    }

    #[test]
    fn a_stored_fid_is_a_foreign_actor_and_a_bare_name_a_local_one() {
        let here: DomainName = "example.com".parse().unwrap();
        let alice = Actor::from_row(&row("alice", true), &here).unwrap();
        assert_eq!(alice.home, Home::Local);
        assert_eq!(alice.fid.to_string(), "alice@example.com");
        assert!(alice.is_admin);
        assert_eq!(stored_name(&alice.fid, &here), "alice");

        let bob = Actor::from_row(&row("bob@other.example", true), &here).unwrap();
        assert_eq!(bob.home, Home::Foreign("other.example".parse().unwrap()));
        assert_eq!(bob.fid.to_string(), "bob@other.example");
        // Whatever the row says, only a local actor administers this server.
        assert!(!bob.is_admin);
        assert_eq!(stored_name(&bob.fid, &here), "bob@other.example");

        assert!(Actor::from_row(&row("not a name!", false), &here).is_err());
    }
}
