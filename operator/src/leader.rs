//! Leader election on a `coordination.k8s.io/v1` Lease, so that two operator replicas are safe:
//! only the holder of the lease reconciles; the other waits and takes over when the lease expires
//! (or at once when the leader releases it on shutdown).
//!
//! Holding the lease is not enough: a leader that was paused (a stopped process, a long GC-like
//! stall of the VM, a partitioned node) wakes up still believing it leads while another replica
//! has taken the expired lease. [`Leadership`] therefore records, on this process's monotonic
//! clock, until when the last successful renewal guarantees exclusivity; every write the
//! reconciler makes checks it first, so a demoted leader stops acting at once, before its renew
//! loop has even noticed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, PostParams};
use kube::Client;
use serde_json::json;

/// Whether this replica may act now. Cheap to clone; shared by the renew loop and the reconciler.
#[derive(Clone, Debug)]
pub struct Leadership {
    inner: Arc<LeadershipState>,
}

#[derive(Debug)]
struct LeadershipState {
    /// Without leader election (one replica by configuration) the replica always acts.
    unconditional: AtomicBool,
    valid_until: Mutex<Option<Instant>>,
}

/// How much earlier than the lease's expiry (as the other replicas compute it) this replica stops
/// acting: covers clock-rate differences between nodes and the time a write takes to land.
pub const SAFETY_MARGIN: Duration = Duration::from_secs(3);

impl Leadership {
    /// A replica that is never demoted (leader election off).
    pub fn unconditional() -> Self {
        Self {
            inner: Arc::new(LeadershipState { unconditional: AtomicBool::new(true), valid_until: Mutex::new(None) }),
        }
    }

    /// A replica that acts only while its lease is fresh.
    pub fn elected() -> Self {
        Self {
            inner: Arc::new(LeadershipState { unconditional: AtomicBool::new(false), valid_until: Mutex::new(None) }),
        }
    }

    /// A renewal that was *sent* at `sent_at` succeeded: the lease is ours until `sent_at +
    /// lease_duration` at the earliest (others measure from the renewTime written, which is no
    /// earlier than `sent_at`), less the safety margin.
    pub fn renewed(&self, sent_at: Instant, lease_duration: Duration) {
        let until = sent_at + lease_duration.saturating_sub(SAFETY_MARGIN);
        if let Ok(mut v) = self.inner.valid_until.lock() {
            *v = Some(until);
        }
    }

    /// Stop acting now (lost the lease, or shutting down).
    pub fn revoke(&self) {
        if let Ok(mut v) = self.inner.valid_until.lock() {
            *v = None;
        }
    }

    /// Whether this replica may write now.
    pub fn is_leader(&self) -> bool {
        if self.inner.unconditional.load(Ordering::Relaxed) {
            return true;
        }
        match self.inner.valid_until.lock() {
            Ok(v) => v.is_some_and(|until| Instant::now() < until),
            Err(_) => false,
        }
    }

    /// How long this replica may still act (zero when it may not).
    pub fn remaining(&self) -> Duration {
        if self.inner.unconditional.load(Ordering::Relaxed) {
            return Duration::MAX;
        }
        match self.inner.valid_until.lock() {
            Ok(v) => v.map(|until| until.saturating_duration_since(Instant::now())).unwrap_or_default(),
            Err(_) => Duration::ZERO,
        }
    }
}

pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    lease_duration: Duration,
}

impl LeaderElector {
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str, lease_duration: Duration) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.to_string(),
            lease_duration,
        }
    }

    fn now() -> MicroTime {
        MicroTime(k8s_openapi::jiff::Timestamp::now())
    }

    /// Acquires or renews the lease; true while this replica holds it. Conflicting writes (another
    /// replica got there first) answer false, never an error.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let secs = self.lease_duration.as_secs() as i32;
        let existing = self.api.get_opt(&self.name).await?;
        let Some(mut lease) = existing else {
            let lease: Lease = serde_json::from_value(json!({
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name},
                "spec": {"holderIdentity": self.identity, "leaseDurationSeconds": secs, "acquireTime": Self::now(), "renewTime": Self::now(), "leaseTransitions": 0}
            }))
            .map_err(kube::Error::SerdeError)?;
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let expired = match (&spec.renew_time, spec.lease_duration_seconds) {
            (Some(renewed), Some(d)) => {
                let age = k8s_openapi::jiff::Timestamp::now().duration_since(renewed.0);
                age.as_secs() >= i64::from(d)
            }
            _ => true,
        };
        if holder == self.identity {
            spec.renew_time = Some(Self::now());
        } else if holder.is_empty() || expired {
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = Some(Self::now());
            spec.renew_time = Some(Self::now());
            spec.lease_duration_seconds = Some(secs);
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        } else {
            return Ok(false);
        }
        // replace carries the resourceVersion: a concurrent writer makes this a 409.
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the lease up (on shutdown) so that another replica takes over at once.
    pub async fn release(&self) {
        if let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await {
            if let Some(spec) = lease.spec.as_mut() {
                if spec.holder_identity.as_deref() == Some(self.identity.as_str()) {
                    spec.holder_identity = None;
                    spec.renew_time = None;
                    let _ = self.api.replace(&self.name, &PostParams::default(), &lease).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leadership_expires_on_the_monotonic_clock() {
        let l = Leadership::elected();
        assert!(!l.is_leader(), "not a leader before the first renewal");
        l.renewed(Instant::now(), Duration::from_secs(15));
        assert!(l.is_leader());
        assert!(l.remaining() > Duration::from_secs(11) && l.remaining() <= Duration::from_secs(12));
        // A renewal sent long ago (the process was stopped since) grants nothing now.
        l.renewed(Instant::now() - Duration::from_secs(13), Duration::from_secs(15));
        assert!(!l.is_leader());
        l.renewed(Instant::now(), Duration::from_secs(15));
        l.revoke();
        assert!(!l.is_leader());
        assert!(Leadership::unconditional().is_leader());
    }
}
