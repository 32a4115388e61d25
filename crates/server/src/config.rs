//! Server configuration. The `fugue` binary reads files, flags and environment and hands a
//! finished [`Config`] to the library, which reads no file and no environment variable.

use serde::{Deserialize, Serialize};

use fugue_proto::DomainName;

/// Who may create an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    Open,
    Invite,
    Closed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest JSON request body, bytes (413 beyond).
    pub json_body_bytes: usize,
    /// Longest local name a new account may choose.
    pub local_name_max: usize,
    /// Shortest accepted password.
    pub password_min: usize,
    /// Largest encrypted private key element, bytes.
    pub key_material_bytes: usize,
    /// Key material slots per actor.
    pub key_material_slots: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            json_body_bytes: 1024 * 1024,
            local_name_max: 32,
            password_min: 8,
            key_material_bytes: 10_000,
            key_material_slots: 64,
        }
    }
}

/// Requests per minute and client address (429 with `Retry-After` beyond).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimits {
    pub login_per_minute: u32,
    pub register_per_minute: u32,
    pub sensitive_per_minute: u32,
    /// Wrong sensitive-action solutions per actor within `failure_window_s` before 429.
    pub max_failed_solutions: u32,
    pub failure_window_s: u64,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            login_per_minute: 10,
            register_per_minute: 5,
            sensitive_per_minute: 20,
            max_failed_solutions: 10,
            failure_window_s: 600,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Certs {
    /// Lifetime of actor ID-Certs, days (at most 60, OP-44).
    pub actor_validity_days: u64,
    /// Lifetime of a new server root cert, days.
    pub server_validity_days: u64,
    /// Length of the signed cache window, seconds (1–12 h, OP-13).
    pub cache_ttl_s: u64,
}

impl Default for Certs {
    fn default() -> Self {
        Self {
            actor_validity_days: 30,
            server_validity_days: 365,
            cache_ttl_s: 6 * 3600,
        }
    }
}

/// Argon2id cost. The defaults are OWASP's recommendation (19 MiB, 2 passes, 1 lane).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PasswordHashing {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for PasswordHashing {
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// Everything the server library needs to know.
#[derive(Debug, Clone)]
pub struct Config {
    pub domain: DomainName,
    /// Base URL clients are told about (`.well-known`), without trailing slash.
    pub public_url: String,
    pub registration: Registration,
    /// If set, registration requires `tosConsent: true`.
    pub tos_url: Option<String>,
    pub limits: Limits,
    pub rate_limits: RateLimits,
    pub certs: Certs,
    pub password_hashing: PasswordHashing,
    /// Where "now" comes from; the system clock outside tests.
    pub clock: crate::Clock,
}

impl Config {
    /// Defaults for `domain`: invite-only unless the domain is `localhost` (quick start).
    pub fn new(domain: DomainName, public_url: String) -> Self {
        let registration = if domain.as_str() == "localhost" {
            Registration::Open
        } else {
            Registration::Invite
        };
        Self {
            domain,
            public_url: public_url.trim_end_matches('/').to_owned(),
            registration,
            tos_url: None,
            limits: Limits::default(),
            rate_limits: RateLimits::default(),
            certs: Certs::default(),
            password_hashing: PasswordHashing::default(),
            clock: crate::Clock::system(),
        }
    }
}
