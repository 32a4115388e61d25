//! Sessions this node found active lately, so that a write which holds only while its
//! session does (a [`SessionGuard`] checked in the write's own transaction) needs no read of
//! the session before it: a message send is one hand-off to the database, not two.
//!
//! Nothing here decides whether a session is active: the guard does, atomically with the
//! write, on every node and whatever another process changed. What is remembered is only
//! the guess the write is made under; a refused write reads the session again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fugue_store::SessionGuard;

use super::Authed;
use crate::ids::to_store;

/// How long a session found active is presumed so.
const KNOWN_FOR: Duration = Duration::from_secs(60);
/// How many sessions a node remembers; beyond, it forgets them all and starts again.
const MAX_KNOWN: usize = 10_000;

#[derive(Default)]
pub(super) struct Known(Mutex<HashMap<Vec<u8>, (Authed, Instant)>>);

impl Known {
    /// The session holding the token of hash `hash` as found active less than
    /// [`KNOWN_FOR`] ago.
    pub(super) fn get(&self, hash: &[u8]) -> Option<Authed> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(hash)
            .filter(|(_, seen)| seen.elapsed() < KNOWN_FOR)
            .map(|(a, _)| a.clone())
    }

    pub(super) fn remember(&self, hash: Vec<u8>, authed: &Authed) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_KNOWN {
            map.clear();
        }
        map.insert(hash, (authed.clone(), Instant::now()));
    }

    pub(super) fn forget(&self, hash: &[u8]) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(hash);
    }
}

/// What a write made as `authed` must find still true when it commits.
pub fn guard(authed: &Authed, token_hash: Vec<u8>) -> SessionGuard {
    SessionGuard {
        token_hash,
        cert_serial: authed.session.cert_serial.map(|s| to_store(s.0)),
    }
}
