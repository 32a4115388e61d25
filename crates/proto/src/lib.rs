//! The polyproto vocabulary shared by the Fugue server and client.
//!
//! Identifiers, certificate rules (ID-CSR → ID-Cert), cache signatures, problem details and
//! the typed HTTP API. This crate does no I/O and has no async runtime: everything here is a
//! pure function of its inputs, so the server and the client apply the same rules.

pub mod api;
pub mod cache;
pub mod certs;
pub mod chat;
pub mod community;
pub mod conversation;
pub mod export;
pub mod gateway;
pub mod ids;
pub mod mls;
#[cfg(feature = "mls")]
pub mod mls_wire;
pub mod problem;
pub mod rawr;
pub mod services;
pub mod wire;

pub use ids::{DomainName, FederationId, LocalName, Serial, SessionId};
pub use problem::{ErrorCode, Problem};
