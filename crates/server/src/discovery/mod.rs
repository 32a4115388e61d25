//! Discoverable services (core §9, DIGEST §8, OP-35): the providers an actor lists for each
//! service it uses, and which one is primary.
//!
//! Rules: only actors registered here change their list; the first provider of a service
//! becomes its primary; an actor of this server that lists no `chat` provider has this
//! server as its primary one (chat comes with the account); changing the primary provider is sensitive (core §9.1.1), and so is
//! removing it, after which the oldest remaining provider is promoted. Anyone may discover
//! the list of an actor of this server. HTTP lives in `routes.rs`; second factors are
//! checked by [`Sessions`], never here.

mod error;
pub mod routes;

use fugue_proto::api::{register_service, set_primary_provider};
use fugue_proto::services::{NewPrimary, ProviderUrl, Service, ServiceName};
use fugue_proto::{DomainName, FederationId};
use fugue_store::{ServiceRow, Store};

pub use error::Error;

use crate::ids::to_store;
use crate::sessions::{Authed, Sessions};

/// Most providers one actor may list, over all its services.
pub const MAX_PER_ACTOR: usize = 128;

/// The discovery domain: which providers actors list for their services.
#[derive(Clone)]
pub struct Discovery {
    store: Store,
    sessions: Sessions,
    domain: DomainName,
    /// This server as a `chat` provider, for its actors that list none.
    home_chat: Option<ProviderUrl>,
}

/// A stored row as the wire shows it. Rows were validated on the way in, so a failure here
/// means the database holds something we never wrote.
fn service(row: ServiceRow) -> Result<Service, Error> {
    let corrupt = |what: &str| {
        Error::Store(fugue_store::Error::Decode(format!(
            "stored service {what} does not parse: {} {}",
            row.name, row.url
        )))
    };
    Ok(Service {
        service: row.name.parse().map_err(|_| corrupt("name"))?,
        url: row.url.parse().map_err(|_| corrupt("URL"))?,
        primary: row.primary,
    })
}

impl Discovery {
    pub fn new(store: Store, sessions: Sessions, domain: DomainName, public_url: &str) -> Self {
        Self {
            store,
            sessions,
            domain,
            home_chat: public_url.parse().ok(),
        }
    }

    fn ensure_registered(&self, authed: &Authed) -> Result<(), Error> {
        if authed.actor.is_local() {
            Ok(())
        } else {
            Err(Error::RegistrationRequired(authed.actor.fid.to_string()))
        }
    }

    /// `POST /services`: lists a provider. Asking for `primary` while another provider is
    /// primary replaces that one, which needs the second factor.
    pub async fn add(
        &self,
        authed: &Authed,
        new: register_service::NewService,
        solution: Option<&str>,
        now: u64,
    ) -> Result<Service, Error> {
        self.ensure_registered(authed)?;
        let name: ServiceName = new.service.0.parse()?;
        let url: ProviderUrl = new.url.parse()?;
        let exists = || Error::ServiceExists {
            name: name.clone(),
            url: url.clone(),
        };
        let listed = self
            .store
            .services_of(authed.actor.id.to_store(), Some(name.as_str()))
            .await?;
        if listed.iter().any(|s| s.url == url.as_str()) {
            return Err(exists());
        }
        // Checked before the write so that no second factor is spent on a duplicate; the
        // write itself decides atomically.
        let take_primary = new.primary && listed.iter().any(|s| s.primary);
        if take_primary {
            self.sessions
                .check_sensitive(&authed.actor, solution, now)
                .await?;
        }
        let row = ServiceRow {
            actor_id: authed.actor.id.to_store(),
            name: name.to_string(),
            url: url.to_string(),
            primary: false,
            created_at: to_store(now),
        };
        match self
            .store
            .insert_service(&row, take_primary, MAX_PER_ACTOR as i64)
            .await
        {
            Ok((stored, _)) => service(stored),
            Err(fugue_store::Error::Unique(_)) => Err(exists()),
            Err(fugue_store::Error::Conflict(fugue_store::Conflict::TooManyServices)) => {
                Err(Error::TooManyServices(MAX_PER_ACTOR))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// `DELETE /services`: removes providers, all or none. Sensitive when a primary one is
    /// among them; for each service that lost its primary provider the oldest remaining one
    /// is promoted and reported.
    pub async fn remove(
        &self,
        authed: &Authed,
        pairs: Vec<(String, String)>,
        solution: Option<&str>,
        now: u64,
    ) -> Result<Vec<NewPrimary>, Error> {
        self.ensure_registered(authed)?;
        let mut wanted = Vec::with_capacity(pairs.len());
        for (name, url) in pairs {
            wanted.push((name.parse::<ServiceName>()?, url.parse::<ProviderUrl>()?));
        }
        // The same provider twice (after normalisation) is one removal.
        wanted.sort();
        wanted.dedup();
        let listed = self
            .store
            .services_of(authed.actor.id.to_store(), None)
            .await?;
        let mut doomed = Vec::with_capacity(wanted.len());
        for (name, url) in wanted {
            let row = listed
                .iter()
                .find(|s| s.name == name.as_str() && s.url == url.as_str())
                .ok_or_else(|| Error::ServiceNotFound {
                    name: name.clone(),
                    url: url.clone(),
                })?;
            doomed.push((name.to_string(), url.to_string(), row.primary));
        }
        if doomed.iter().any(|(_, _, primary)| *primary) {
            self.sessions
                .check_sensitive(&authed.actor, solution, now)
                .await?;
        }
        let promoted = match self
            .store
            .delete_services(authed.actor.id.to_store(), &doomed)
            .await
        {
            Ok(promoted) => promoted,
            // A provider was removed or its primary flag changed since we looked: what we
            // checked (and whether a second factor was needed) is stale.
            Err(fugue_store::Error::Conflict(
                fugue_store::Conflict::ServiceNotListed | fugue_store::Conflict::ActorMissing,
            )) => return Err(Error::ConcurrentChange),
            Err(e) => return Err(e.into()),
        };
        promoted
            .into_iter()
            .map(|row| {
                let s = service(row)?;
                Ok(NewPrimary {
                    service: s.service,
                    new_primary: s.url,
                })
            })
            .collect()
    }

    /// `PUT /services/primary` (sensitive): makes a listed provider primary. Returns the
    /// previous primary provider (now not primary), if another one was, then the new one.
    pub async fn set_primary(
        &self,
        authed: &Authed,
        req: set_primary_provider::Request,
        solution: Option<&str>,
        now: u64,
    ) -> Result<Vec<Service>, Error> {
        self.ensure_registered(authed)?;
        let name: ServiceName = req.name.0.parse()?;
        let url: ProviderUrl = req.url.parse()?;
        let not_found = || Error::ServiceNotFound {
            name: name.clone(),
            url: url.clone(),
        };
        // Existence first: a TOTP code is spent when accepted, so it must not be spent on a
        // request that cannot succeed.
        let listed = self
            .store
            .services_of(authed.actor.id.to_store(), Some(name.as_str()))
            .await?;
        if !listed.iter().any(|s| s.url == url.as_str()) {
            return Err(not_found());
        }
        self.sessions
            .check_sensitive(&authed.actor, solution, now)
            .await?;
        let (new, old) = match self
            .store
            .set_primary_service(authed.actor.id.to_store(), name.as_str(), url.as_str())
            .await
        {
            Ok(changed) => changed,
            Err(fugue_store::Error::Conflict(fugue_store::Conflict::ServiceNotListed)) => {
                return Err(not_found());
            }
            Err(e) => return Err(e.into()),
        };
        old.into_iter().chain([new]).map(service).collect()
    }

    /// `GET /services/discover/{fid}[/{service}]`: an actor's providers, primary ones first.
    /// `limit = 1` keeps only the primary providers (one per service); a larger limit caps
    /// the number of entries.
    pub async fn discover(
        &self,
        fid: &str,
        name: Option<&str>,
        limit: Option<u64>,
    ) -> Result<Vec<Service>, Error> {
        let not_found = || Error::ActorNotFound(fid.to_owned());
        let parsed: FederationId = fid.parse().map_err(|_| not_found())?;
        if parsed.domain() != &self.domain {
            return Err(not_found());
        }
        let actor = self
            .store
            .actor_by_name(parsed.local_name().as_str())
            .await?
            .ok_or_else(not_found)?;
        let name = name.map(str::parse::<ServiceName>).transpose()?;
        if limit == Some(0) {
            return Err(Error::InvalidRequest("limit must be at least 1".into()));
        }
        let rows = self
            .store
            .services_of(actor.id, name.as_ref().map(ServiceName::as_str))
            .await?;
        let mut found = rows
            .into_iter()
            .map(service)
            .collect::<Result<Vec<_>, _>>()?;
        let chat: ServiceName = fugue_proto::chat::CHAT
            .parse()
            .map_err(|_| Error::InvalidRequest("the chat service name".into()))?;
        if name.as_ref().is_none_or(|n| *n == chat)
            && !found.iter().any(|s| s.service == chat)
            && let Some(url) = &self.home_chat
        {
            found.push(Service {
                service: chat,
                url: url.clone(),
                primary: true,
            });
        }
        // Stable: by service, then oldest first, within each group.
        found.sort_by_key(|s| !s.primary);
        match limit {
            Some(1) => found.retain(|s| s.primary),
            Some(n) => found.truncate(usize::try_from(n).unwrap_or(usize::MAX)),
            None => {}
        }
        Ok(found)
    }
}
