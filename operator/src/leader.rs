//! Leader election on a `coordination.k8s.io/v1` Lease, so that two operator replicas are safe:
//! only the holder of the lease reconciles; the other waits and takes over when the lease expires
//! (or at once when the leader releases it on shutdown).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, PostParams};
use kube::Client;
use serde_json::json;

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
