//! Fugue client SDK: typed calls to a Fugue home server, its real-time gateway, the actor's
//! identity key, sign-in on other home servers, certificate verification, chat (signed
//! messages, verified on receipt; [`Chat`]) and a local key store.
//!
//! Every request is built from [`fugue_proto::api`], so paths and bodies are the ones the server
//! routes. The SDK trusts no certificate it has not checked itself ([`Client::verified_actor_certs`])
//! and writes secrets to disk only through [`KeyStore`], which keeps its file private.

pub mod archive;
mod chat;
mod error;
mod foreign;
mod gateway;
mod http;
mod keys;
mod keystore;
mod media;
pub mod migration;
pub mod mls;
mod services;
mod session;
mod verify;

pub use chat::{
    CHAT_SERVICE, Chat, ChatEvent, DmMessage, DmServers, MlsNotice, PreparedMessage,
    PreparedReaction, Sent, SentDm, Verdict, new_nonce, server_domain,
};
pub use error::{Error, Result};
pub use foreign::ForeignSession;
pub use fugue_proto as proto;
pub use gateway::{Gateway, GatewayEvent, GatewayOptions, gateway_url};
pub use http::{Client, ClientBuilder, DEFAULT_MAX_BODY_BYTES};
pub use keys::IdentityKey;
pub use keystore::{Account, KeyStore, OldKey};
pub use media::Downloaded;
pub use session::Session;
pub use verify::{ActorCerts, CertSource, VerifiedCert};
