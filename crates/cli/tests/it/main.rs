//! Integration tests of the `fugue` binary: the real binary as a child process (server,
//! admin commands, client commands), often against an in-process server from `fugue-testkit`.
//! The server's own behaviour is tested in `crates/server/tests/it`. Runs on SQLite, and on
//! PostgreSQL when `TEST_DATABASE_URL` is set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod binary;
mod chat;
mod commands;
mod community;
mod conversations;
mod e2ee;
mod media;
mod migrate;
mod support;
