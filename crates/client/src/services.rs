//! Service discovery (core §9): listing one's service providers, choosing the primary one,
//! and discovering the providers of any actor on any server.
//!
//! Changing or removing a primary provider is sensitive: those calls take the second factor
//! for that one request. Discovery needs no session, so it lives on [`Client`].

use fugue_proto::FederationId;
use fugue_proto::api::{
    self, discover_service, discover_services, register_service, set_primary_provider,
    unregister_service,
};
use fugue_proto::services::{NewPrimary, ProviderUrl, Service, ServiceName, delete_query};
use reqwest::{RequestBuilder, StatusCode};

use crate::error::{Error, Result};
use crate::http::{Client, send};
use crate::session::Session;

impl Client {
    /// The providers `fid` made discoverable, as the server behind this client lists them
    /// (its home server, normally), primary ones first; only the primary ones with
    /// `limit = Some(1)`. Empty when there are none.
    pub async fn discover_services(
        &self,
        fid: &FederationId,
        service: Option<&ServiceName>,
        limit: Option<u64>,
    ) -> Result<Vec<Service>> {
        let target = match service {
            Some(name) => discover_service::target(fid, name),
            None => discover_services::target(fid),
        };
        let query = discover_services::Query { limit };
        let request = self.request_with_query(target, &query)?;
        let response = send(request).await?;
        if response.status() == StatusCode::NO_CONTENT {
            return Ok(Vec::new());
        }
        let found: Vec<Service> = self.read_json(response).await?;
        if let Some(name) = service
            && let Some(other) = found.iter().find(|s| s.service != *name)
        {
            return Err(Error::UnexpectedResponse(format!(
                "asked for {name} providers, got one of {}",
                other.service
            )));
        }
        Ok(found)
    }
}

impl Session {
    fn bearer(&self, request: RequestBuilder, solution: Option<&str>) -> RequestBuilder {
        let request = request.bearer_auth(self.token());
        match solution {
            Some(s) => request.header(api::SENSITIVE_HEADER, s),
            None => request,
        }
    }

    /// This actor's providers, as its home server lists them.
    pub async fn services(&self) -> Result<Vec<Service>> {
        self.client()
            .discover_services(self.fid(), None, None)
            .await
    }

    /// Lists `url` as a provider of `name`. It becomes primary if the service has none yet;
    /// with `primary` it replaces the current primary provider, which needs `solution`.
    pub async fn add_service(
        &self,
        name: &ServiceName,
        url: &ProviderUrl,
        primary: bool,
        solution: Option<&str>,
    ) -> Result<Service> {
        let body = register_service::Request {
            service: register_service::NewService {
                service: name.into(),
                url: url.to_string(),
                primary,
            },
        };
        let request = self.client().request(register_service::target())?;
        let stored: Service = self
            .client()
            .send_json(self.bearer(request, solution).json(&body))
            .await?;
        if stored.service != *name || stored.url != *url {
            return Err(Error::UnexpectedResponse(format!(
                "added {name} {url}, the server answered {} {}",
                stored.service, stored.url
            )));
        }
        Ok(stored)
    }

    /// Removes providers, all or none; `solution` is needed when a primary one is among
    /// them. Returns the providers the server made primary in place of removed ones.
    pub async fn remove_services(
        &self,
        providers: &[(ServiceName, ProviderUrl)],
        solution: Option<&str>,
    ) -> Result<Vec<NewPrimary>> {
        let query = delete_query(providers);
        let request = self
            .client()
            .request_with_encoded_query(unregister_service::target(), &query)?;
        self.client()
            .send_json(self.bearer(request, solution))
            .await
    }

    /// Makes `url` the primary provider of `name` (sensitive). Returns the previous primary
    /// provider, if another one was, and the new one.
    pub async fn set_primary_service(
        &self,
        name: &ServiceName,
        url: &ProviderUrl,
        solution: &str,
    ) -> Result<Vec<Service>> {
        let body = set_primary_provider::Request {
            url: url.to_string(),
            name: name.into(),
        };
        let request = self.client().request(set_primary_provider::target())?;
        self.client()
            .send_json(self.bearer(request, Some(solution)).json(&body))
            .await
    }
}
