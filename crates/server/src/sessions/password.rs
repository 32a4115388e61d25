//! Argon2id password hashing on a small pool of dedicated threads, each reusing one memory
//! buffer.
//!
//! Argon2 is memory-hard on purpose (19 MiB per hash by default). Allocating that buffer per
//! hash, as `PasswordHasher::hash_password` does, made the server's resident memory grow by
//! ~19 MiB per login on glibc (measured: 580 MiB after 200 logins). Each thread here keeps
//! its buffer, so memory stays at threads × cost, and a login flood queues instead of taking
//! every core.

use std::sync::{Arc, Mutex, mpsc};
use std::thread;

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand_core::{OsRng, RngCore};
use tokio::sync::oneshot;

use super::Error;
use crate::config::PasswordHashing;

enum Job {
    Hash(String, oneshot::Sender<Result<String, Error>>),
    Verify(String, String, oneshot::Sender<bool>),
}

/// Password checks waiting beyond this many get 503 instead of queueing without end.
const QUEUE: usize = 64;

#[derive(Clone)]
pub struct Hasher {
    jobs: mpsc::SyncSender<Job>,
}

fn params(cost: &PasswordHashing) -> Result<Params, Error> {
    Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None)
        .map_err(|e| Error::Hashing(e.to_string()))
}

fn hashing(e: impl std::fmt::Display) -> Error {
    Error::Hashing(e.to_string())
}

/// One hashing thread's reusable state.
#[derive(Default)]
struct Worker {
    blocks: Vec<Block>,
}

impl Worker {
    fn compute(
        &mut self,
        alg: Algorithm,
        version: Version,
        params: &Params,
        pwd: &[u8],
        salt: &[u8],
        out: &mut [u8],
    ) -> Result<(), Error> {
        let n = params.block_count();
        if self.blocks.len() < n {
            self.blocks = vec![Block::default(); n];
        }
        let argon = Argon2::new(alg, version, params.clone());
        argon
            .hash_password_into_with_memory(pwd, salt, out, &mut self.blocks[..n])
            .map_err(hashing)
    }

    /// A PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`) for `password`.
    fn hash(&mut self, params: &Params, password: &[u8]) -> Result<String, Error> {
        let mut salt = [0u8; 16];
        OsRng.fill_bytes(&mut salt);
        let mut out = [0u8; 32];
        self.compute(
            Algorithm::Argon2id,
            Version::V0x13,
            params,
            password,
            &salt,
            &mut out,
        )?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(params).map_err(hashing)?,
            salt: Some(Salt::new(&salt).map_err(hashing)?),
            hash: Some(Output::new(&out).map_err(hashing)?),
        };
        Ok(phc.to_string())
    }

    /// Verifies with the algorithm and cost the stored hash names (old costs keep working).
    fn verify(&mut self, password: &[u8], stored: &str) -> bool {
        let Ok(phc) = PasswordHash::new(stored) else {
            return false;
        };
        let (Ok(alg), Ok(params)) = (
            Algorithm::try_from(phc.algorithm.as_str()),
            Params::try_from(&phc),
        ) else {
            return false;
        };
        let version = match phc.version.map(Version::try_from).transpose() {
            Ok(v) => v.unwrap_or_default(),
            Err(_) => return false,
        };
        let (Some(salt), Some(expected)) = (phc.salt, phc.hash) else {
            return false;
        };
        let mut out = vec![0u8; expected.len()];
        if self
            .compute(alg, version, &params, password, salt.as_ref(), &mut out)
            .is_err()
        {
            return false;
        }
        // `Output` compares in constant time.
        Output::new(&out).is_ok_and(|o| o == expected)
    }
}

impl Hasher {
    /// Starts `threads` hashing threads with the given cost.
    pub fn start(cost: &PasswordHashing, threads: usize) -> Result<Self, Error> {
        let params = params(cost)?;
        let (tx, rx) = mpsc::sync_channel::<Job>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let (rx, params) = (rx.clone(), params.clone());
            thread::Builder::new()
                .name(format!("fugue-argon2-{i}"))
                .spawn(move || {
                    let mut worker = Worker::default();
                    loop {
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        match job {
                            // The request was dropped (client gone): skip the work.
                            Ok(Job::Hash(_, reply)) if reply.is_closed() => {}
                            Ok(Job::Verify(_, _, reply)) if reply.is_closed() => {}
                            Ok(Job::Hash(pw, reply)) => {
                                let _ = reply.send(worker.hash(&params, pw.as_bytes()));
                            }
                            Ok(Job::Verify(pw, hash, reply)) => {
                                let _ = reply.send(worker.verify(pw.as_bytes(), &hash));
                            }
                            Err(_) => return,
                        }
                    }
                })
                .map_err(hashing)?;
        }
        Ok(Self { jobs: tx })
    }

    pub async fn hash(&self, password: String) -> Result<String, Error> {
        let (reply, rx) = oneshot::channel();
        self.enqueue(Job::Hash(password, reply))?;
        rx.await.map_err(|_| hashing("hasher stopped"))?
    }

    pub async fn verify(&self, password: String, hash: String) -> Result<bool, Error> {
        let (reply, rx) = oneshot::channel();
        self.enqueue(Job::Verify(password, hash, reply))?;
        rx.await.map_err(|_| hashing("hasher stopped"))
    }

    /// Queues a job or refuses at once: a blocking `send` on a full queue would park the
    /// runtime thread that called it, and with every worker parked nothing else runs.
    fn enqueue(&self, job: Job) -> Result<(), Error> {
        self.jobs.try_send(job).map_err(|e| match e {
            mpsc::TrySendError::Full(_) => Error::Overloaded,
            mpsc::TrySendError::Disconnected(_) => hashing("hasher stopped"),
        })
    }
}

/// Hashes on the calling thread with a buffer freed afterwards (start-up only).
pub fn hash_blocking(cost: &PasswordHashing, password: &str) -> Result<String, Error> {
    Worker::default().hash(&params(cost)?, password.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::PasswordVerifier;

    fn cheap() -> PasswordHashing {
        PasswordHashing {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        }
    }

    #[test]
    fn hashes_are_standard_phc_strings_that_verify_both_ways() {
        let mut w = Worker::default();
        let params = params(&cheap()).unwrap();
        let phc = w.hash(&params, b"hunter22").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{phc}");
        // The reference implementation accepts ours, and we accept its hashes.
        Argon2::default()
            .verify_password(b"hunter22", phc.as_str())
            .unwrap();
        assert!(w.verify(b"hunter22", &phc));
        assert!(!w.verify(b"hunter23", &phc));
        assert!(!w.verify(b"hunter22", "not a hash"));
        let theirs = {
            use argon2::PasswordHasher;
            Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
                .hash_password(b"pw")
                .unwrap()
                .to_string()
        };
        assert!(w.verify(b"pw", &theirs));
        assert_ne!(
            w.hash(&params, b"pw").unwrap(),
            w.hash(&params, b"pw").unwrap(),
            "salts differ"
        );
    }

    /// A full queue answers at once with `Overloaded`, on a runtime whose only thread would
    /// otherwise be parked in the queue's `send`.
    #[test]
    fn a_full_queue_refuses_at_once_without_blocking_the_runtime() {
        let slow = PasswordHashing {
            memory_kib: 32 * 1024,
            iterations: 8,
            parallelism: 1,
        };
        let hasher = Hasher::start(&slow, 1).unwrap();
        let (done, finished) = mpsc::channel();
        thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                // One job runs and QUEUE wait: the queue is full from here on (the
                // surplus is refused too, or, before the fix, parks this thread).
                let mut waiting = Vec::new();
                for _ in 0..QUEUE + 8 {
                    let h = hasher.clone();
                    waiting.push(tokio::spawn(async move { h.hash("pw".into()).await }));
                    tokio::task::yield_now().await;
                }
                let outcome = hasher.hash("one more".into()).await;
                let _ = done.send(matches!(outcome, Err(Error::Overloaded)));
                for w in waiting {
                    w.abort();
                }
            });
        });
        let refused = finished
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("the runtime thread was blocked by a full hashing queue");
        assert!(refused, "a full queue must answer Overloaded");
    }
}
