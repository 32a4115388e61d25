//! Integration tests: the real server on 127.0.0.1:0 (or the real binary), driven over HTTP
//! through `fugue-client`, the reference SDK and raw requests. Runs on SQLite, and on
//! PostgreSQL when `TEST_DATABASE_URL` is set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod account_management;
mod accounts;
mod binary;
mod chaos;
mod csr;
mod federation;
mod federation_client;
mod floods;
mod fuzz;
mod gateway;
mod gateway_client;
mod hardening;
mod interop;
mod keymaterial;
mod services;
mod sessions;
mod support;
mod tidy;
mod wire;
