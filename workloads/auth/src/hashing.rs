//! Password hashing on a fixed pool of worker threads, each with its own argon2 working memory.
//!
//! argon2id with OWASP's parameters needs 19 MiB of memory and tens of milliseconds of a core per
//! hash. Run anywhere (`spawn_blocking`), a login storm would allocate 19 MiB per concurrent
//! attempt, and the allocator would keep each thread's share after it is freed. Here at most
//! `CAIRN_AUTH_HASH_CONCURRENCY` hashes run at once, on as many threads that each allocate their
//! working memory once; a request that finds every worker busy waits up to a second, then is
//! answered 503 with Retry-After.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use argon2::Block;
use tokio::sync::{oneshot, Semaphore};

use crate::password;

type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

#[derive(Debug, thiserror::Error)]
pub enum HashingError {
    #[error("every password-hashing worker stayed busy")]
    Busy,
    #[error("the hashing worker stopped")]
    Stopped,
}

pub struct HashPool {
    jobs: Mutex<mpsc::Sender<Job>>,
    slots: Arc<Semaphore>,
    wait: Duration,
}

impl HashPool {
    /// `workers` threads; a job waits at most `wait` for one.
    pub fn new(workers: usize, wait: Duration) -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..workers.max(1) {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new().name(format!("hash-{i}")).spawn(move || {
                let mut memory: Vec<Block> = Vec::new();
                loop {
                    let job = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(&mut memory),
                        Err(_) => return,
                    }
                }
            });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password-hashing thread");
            }
        }
        Self { jobs: Mutex::new(tx), slots: Arc::new(Semaphore::new(workers.max(1))), wait }
    }

    /// Runs `f` on a worker with its working memory (sized for the default parameters).
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut [Block]) -> T + Send + 'static,
    ) -> Result<T, HashingError> {
        let permit = tokio::time::timeout(self.wait, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| HashingError::Busy)?
            .map_err(|_| HashingError::Stopped)?;
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |memory: &mut Vec<Block>| {
            if memory.is_empty() {
                *memory = password::working_memory();
            }
            let _ = tx.send(f(memory));
        });
        self.jobs.lock().map_err(|_| HashingError::Stopped)?.send(job).map_err(|_| HashingError::Stopped)?;
        let out = rx.await.map_err(|_| HashingError::Stopped);
        drop(permit);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn at_most_the_workers_hash_at_once_and_the_rest_are_refused() {
        let pool = Arc::new(HashPool::new(1, Duration::from_millis(50)));
        let slow = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.run(|_| std::thread::sleep(Duration::from_millis(300))).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(matches!(pool.run(|_| ()).await, Err(HashingError::Busy)));
        slow.await.unwrap().unwrap();
        let phc = pool.run(|m| password::hash_with("correct horse battery", m)).await.unwrap().unwrap();
        assert!(pool.run(move |m| password::verify_with("correct horse battery", &phc, m)).await.unwrap());
    }
}
