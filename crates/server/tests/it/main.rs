//! Integration tests of the server: the real server on 127.0.0.1:0 (`fugue-testkit`), driven
//! over HTTP and WebSocket through `fugue-client`, the reference SDK and raw requests, and the
//! architecture invariants of the source tree (`tidy`). The `fugue` binary's own tests are in
//! `crates/cli/tests/it`. Runs on SQLite, and on PostgreSQL when `TEST_DATABASE_URL` is set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod account_management;
mod accounts;
mod attachments;
mod chaos;
mod chat;
mod chat_matrix;
mod chat_support;
mod community;
mod conversations;
mod csr;
mod e2ee;
mod exports;
mod federation;
mod federation_client;
mod floods;
mod fuzz;
mod gateway;
mod gateway_client;
mod hardening;
mod interop;
mod keymaterial;
mod migration;
mod mls;
mod mls_interop;
mod moving;
mod rawr;
mod s3;
mod services;
mod sessions;
mod streams;
mod support;
mod tidy;
mod wire;
