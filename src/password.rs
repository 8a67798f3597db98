//! Argon2id hashing, run off the async runtime on a fixed pool of
//! `argon2_max_concurrent` threads: a flood of sign-ins queues (and past a
//! bound is refused) instead of exhausting memory or starving other requests.
//! Fixed threads also bound the memory the allocator keeps: each hash holds
//! `memory_kib`, and an allocator arena per short-lived blocking thread kept
//! one such buffer each (measured: 477 MiB peak RSS with `spawn_blocking`).

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use std::cell::RefCell;

use argon2::password_hash::PasswordHash;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use tokio::sync::{OnceCell, oneshot};

use crate::config::Argon2Config;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("password hashing failed")]
    Hashing,
    #[error("hashing task failed")]
    Task,
    #[error("too many password checks waiting")]
    Busy,
}

crate::failure_from!(HashError);

type Job = Box<dyn FnOnce() + Send>;

/// Sign-ins waiting for a hashing thread beyond which new ones are refused.
const MAX_QUEUED: usize = 256;

struct HashPool {
    jobs: SyncSender<Job>,
}

impl HashPool {
    fn new(threads: usize) -> Self {
        let (jobs, queue) = sync_channel::<Job>(MAX_QUEUED);
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads.max(1) {
            let queue: Arc<Mutex<Receiver<Job>>> = queue.clone();
            let spawned = std::thread::Builder::new().name(format!("argon2-{i}")).spawn(move || {
                loop {
                    let job = match queue.lock() {
                        Ok(q) => q.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(),
                        // Every hasher was dropped: the pool ends.
                        Err(_) => return,
                    }
                }
            });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a hashing thread");
            }
        }
        HashPool { jobs }
    }

    async fn run<R: Send + 'static>(&self, work: impl FnOnce() -> R + Send + 'static) -> Result<R, HashError> {
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(work());
        });
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(HashError::Busy),
            Err(TrySendError::Disconnected(_)) => return Err(HashError::Task),
        }
        result.await.map_err(|_| HashError::Task)
    }
}

pub struct Verification {
    pub valid: bool,
    /// The stored hash uses other parameters than the configured ones.
    pub needs_rehash: bool,
}

#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    pool: Arc<HashPool>,
    /// Verified against when the account is unknown, so that an unknown
    /// email and a wrong password take the same time.
    dummy: Arc<OnceCell<String>>,
}

impl PasswordHasher {
    pub fn new(config: &Argon2Config) -> Result<Self, HashError> {
        let params = Params::new(config.memory_kib, config.iterations, config.parallelism, None)
            .map_err(|_| HashError::Hashing)?;
        Ok(PasswordHasher {
            params,
            pool: Arc::new(HashPool::new(config.max_concurrent)),
            dummy: Arc::new(OnceCell::new()),
        })
    }

    fn argon2(params: Params) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
    }

    /// Argon2id into `out`, in this hashing thread's own memory: allocated
    /// once per thread and reused, so a hash neither allocates 19 MiB nor
    /// page-faults it in (measured: 23 ms of CPU per sign-in with reuse,
    /// 31–37 ms with a fresh buffer each time).
    fn compute(params: Params, password: &[u8], salt: &[u8], out: &mut [u8]) -> Result<(), HashError> {
        thread_local! {
            static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
        }
        MEMORY.with(|memory| {
            let mut memory = memory.borrow_mut();
            let blocks = params.block_count();
            if memory.len() < blocks {
                memory.resize(blocks, Block::default());
            }
            Self::argon2(params)
                .hash_password_into_with_memory(password, salt, out, &mut memory[..blocks])
                .map_err(|_| HashError::Hashing)
        })
    }

    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        let params = self.params.clone();
        self.pool
            .run(move || {
                let mut salt = [0u8; 16];
                aws_lc_rs::rand::fill(&mut salt).map_err(|_| HashError::Hashing)?;
                let mut out = [0u8; 32];
                Self::compute(params.clone(), password.as_bytes(), &salt, &mut out)?;
                // The PHC string format (what `password_hash` writes and parses).
                Ok(format!(
                    "$argon2id$v=19$m={},t={},p={}${}${}",
                    params.m_cost(),
                    params.t_cost(),
                    params.p_cost(),
                    STANDARD_NO_PAD.encode(salt),
                    STANDARD_NO_PAD.encode(out)
                ))
            })
            .await?
    }

    pub async fn verify(&self, password: String, stored: String) -> Result<Verification, HashError> {
        let configured = self.params.clone();
        self.pool
            .run(move || {
                let Ok(parsed) = PasswordHash::new(&stored) else {
                    return Verification { valid: false, needs_rehash: false };
                };
                let valid = Self::check(&parsed, password.as_bytes());
                let needs_rehash = parsed.algorithm.as_str() != "argon2id"
                    || Params::try_from(&parsed).map(|p| {
                        p.m_cost() != configured.m_cost()
                            || p.t_cost() != configured.t_cost()
                            || p.p_cost() != configured.p_cost()
                    }) != Ok(false);
                Verification { valid, needs_rehash }
            })
            .await
    }

    /// Recomputes a stored hash with its own parameters and salt; compares in
    /// constant time.
    fn check(parsed: &PasswordHash, password: &[u8]) -> bool {
        if parsed.algorithm.as_str() != "argon2id" || parsed.version.is_some_and(|v| v != 0x13) {
            return false;
        }
        let (Ok(params), Some(salt), Some(expected)) = (Params::try_from(parsed), parsed.salt, parsed.hash) else {
            return false;
        };
        let mut salt_buf = [0u8; 64];
        let Ok(salt) = salt.decode_b64(&mut salt_buf) else { return false };
        let expected = expected.as_bytes();
        let mut out = vec![0u8; expected.len()];
        Self::compute(params, password, salt, &mut out).is_ok() && crate::crypto::constant_time_eq(&out, expected)
    }

    /// Spends one verification's time and always fails.
    pub async fn verify_dummy(&self, password: String) -> Result<(), HashError> {
        let stored = self.dummy.get_or_try_init(|| self.dummy_hash()).await?.clone();
        self.verify(password, stored).await.map(|_| ())
    }

    /// The dummy hash is made once, outside the hashing pool, so that an idle
    /// server keeps no 19 MiB per hashing thread (the buffer is freed here).
    async fn dummy_hash(&self) -> Result<String, HashError> {
        use argon2::password_hash::{PasswordHasher as _, SaltString};
        let params = self.params.clone();
        tokio::task::spawn_blocking(move || {
            let salt = SaltString::encode_b64(
                crate::crypto::random_token().as_bytes().get(..16).unwrap_or(b"0123456789abcdef"),
            )
            .map_err(|_| HashError::Hashing)?;
            Self::argon2(params)
                .hash_password(crate::crypto::random_token().as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|_| HashError::Hashing)
        })
        .await
        .map_err(|_| HashError::Task)?
    }

    /// Warms the dummy hash so the first unknown-account attempt is not faster.
    pub async fn warm_up(&self) {
        let _ = self.dummy.get_or_try_init(|| self.dummy_hash()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(memory_kib: u32) -> Argon2Config {
        Argon2Config { memory_kib, iterations: 2, parallelism: 1, max_concurrent: 2 }
    }

    #[tokio::test]
    async fn verifies_right_password_and_refuses_wrong_one() {
        let h = PasswordHasher::new(&config(19_456)).expect("hasher");
        let stored = h.hash("Correct-horse-9".into()).await.expect("hash");
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(h.verify("Correct-horse-9".into(), stored.clone()).await.expect("verify").valid);
        assert!(!h.verify("Correct-horse-8".into(), stored).await.expect("verify").valid);
    }

    #[tokio::test]
    async fn changed_parameters_ask_for_a_rehash() {
        let old = PasswordHasher::new(&config(19_456)).expect("hasher");
        let new = PasswordHasher::new(&config(32_768)).expect("hasher");
        let stored = old.hash("Pw-123456".into()).await.expect("hash");
        let same = old.verify("Pw-123456".into(), stored.clone()).await.expect("verify");
        assert!(same.valid && !same.needs_rehash);
        let changed = new.verify("Pw-123456".into(), stored).await.expect("verify");
        assert!(changed.valid && changed.needs_rehash);
    }

    #[tokio::test]
    async fn hashes_are_standard_phc_both_ways() {
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _, SaltString};
        let h = PasswordHasher::new(&config(19_456)).expect("hasher");
        // Ours verifies with the reference implementation…
        let ours = h.hash("Tuile-Verte-7".into()).await.expect("hash");
        let parsed = PasswordHash::new(&ours).expect("PHC");
        assert!(Argon2::default().verify_password(b"Tuile-Verte-7", &parsed).is_ok());
        // …and a reference hash (other parameters) verifies with ours.
        let params = Params::new(32_768, 3, 1, None).expect("params");
        let salt = SaltString::encode_b64(b"0123456789abcdef").expect("salt");
        let theirs = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(b"Basalte-2-Ocre", &salt)
            .expect("hash")
            .to_string();
        let v = h.verify("Basalte-2-Ocre".into(), theirs.clone()).await.expect("verify");
        assert!(v.valid && v.needs_rehash);
        assert!(!h.verify("Basalte-2-Ocrf".into(), theirs).await.expect("verify").valid);
    }

    #[tokio::test]
    async fn garbage_hash_is_a_failure_not_a_panic() {
        let h = PasswordHasher::new(&config(19_456)).expect("hasher");
        assert!(!h.verify("x".into(), "not a hash".into()).await.expect("verify").valid);
    }
}
