//! The memory that requests in flight may use, all together.
//!
//! Each request's own costs are bounded (its body, its decompressed body, the values built from
//! it), but a thousand concurrent requests at their bounds would still take the process past its
//! memory limit. So before each of those allocations a request reserves its size from one budget
//! per process (`CAIRN_CAPTURE_MEMORY_BUDGET_MB`); when the budget is spent, requests wait a
//! moment for others to finish and are then answered 503 with `Retry-After`, instead of the
//! process being killed with every request in it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What building one JSON value costs, about (a `serde_json::Value` and its share of a map or
/// vector), for reserving before values are built.
pub const BYTES_PER_VALUE: usize = 64;

#[derive(Debug)]
pub struct MemoryBudget {
    kib: Arc<Semaphore>,
    total_kib: u32,
    wait: Duration,
}

/// The budget stayed spent for longer than a request may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// A reservation, returned to the budget when dropped.
#[derive(Debug, Default)]
pub struct Reserved(Vec<OwnedSemaphorePermit>);

impl MemoryBudget {
    /// `bytes` for all requests together; a request waits at most `wait` for its share.
    pub fn new(bytes: usize, wait: Duration) -> Self {
        let total_kib = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX >> 4).clamp(1, u32::MAX >> 4);
        Self { kib: Arc::new(Semaphore::new(total_kib as usize)), total_kib, wait }
    }

    /// Reserves `bytes` more for the request holding `reserved` (a request larger than the whole
    /// budget reserves all of it, so it runs alone).
    pub async fn reserve(&self, reserved: &mut Reserved, bytes: usize) -> Result<(), Busy> {
        let kib = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX).clamp(1, self.total_kib);
        let held: u32 = reserved.0.iter().map(|p| p.num_permits() as u32).sum();
        let kib = kib.min(self.total_kib.saturating_sub(held)).max(1);
        match tokio::time::timeout(self.wait, self.kib.clone().acquire_many_owned(kib)).await {
            Ok(Ok(permit)) => {
                reserved.0.push(permit);
                Ok(())
            }
            _ => Err(Busy),
        }
    }

    /// KiB not reserved now.
    pub fn available_kib(&self) -> usize {
        self.kib.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reservations_wait_then_give_up_and_come_back() {
        let budget = MemoryBudget::new(100 * 1024, Duration::from_millis(100));
        let mut a = Reserved::default();
        budget.reserve(&mut a, 60 * 1024).await.unwrap();
        let mut b = Reserved::default();
        assert_eq!(budget.reserve(&mut b, 60 * 1024).await, Err(Busy), "the budget is spent");
        drop(a);
        budget.reserve(&mut b, 60 * 1024).await.unwrap();
        // Larger than the whole budget: takes what is left of it, never more.
        budget.reserve(&mut b, 10 << 20).await.unwrap();
        assert_eq!(budget.available_kib(), 0);
        drop(b);
        assert_eq!(budget.available_kib(), 100);
    }
}
