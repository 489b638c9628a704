//! The cairn-operator binary: leader election, then the controller, with metrics and probes.
//!
//! Environment: the operator's settings in `cairn_common::config::catalogue` (`WATCH_NAMESPACE`,
//! `POD_NAMESPACE`, `POD_NAME`, `CAIRN_OPERATOR_*`), listed in docs/OPERATIONS.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_common::config::ProcessEnv;
use cairn_common::telemetry::{admin_router, init_or_exit, Health};
use cairn_operator::controller::{self, OperatorConfig};
use cairn_operator::leader::{LeaderElector, Leadership};
use cairn_operator::metrics::OperatorMetrics;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

const LEASE_NAME: &str = "cairn-operator-leader";
const LEASE_DURATION: Duration = Duration::from_secs(15);
const RENEW_EVERY: Duration = Duration::from_secs(5);
/// How often a replica that does not lead tries to take the lease.
const RETRY_EVERY: Duration = Duration::from_secs(2);

#[tokio::main]
async fn main() {
    let telemetry = init_or_exit("cairn-operator");
    if let Err(e) = run().await {
        tracing::error!(error = %e, "operator failed");
        telemetry.shutdown();
        std::process::exit(1);
    }
    telemetry.shutdown();
}

async fn run() -> anyhow::Result<()> {
    let shutdown = cairn_common::shutdown::on_signal();
    let OperatorConfig { addr, settings, identity, lease_namespace, leader_election: elect } =
        OperatorConfig::from_source(&ProcessEnv)?;
    let client = kube::Client::try_default().await?;
    let mut registry = Registry::default();
    let metrics = Arc::new(OperatorMetrics::register(&mut registry));
    let health = Health::new();
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let admin = admin_router(Arc::new(registry), health.clone());
    let stop_admin = shutdown.clone();
    tokio::spawn(async move {
        cairn_common::server::serve(listener, admin, cairn_common::server::ServerLimits::default(), stop_admin).await
    });
    tracing::info!(%addr, namespace = ?settings.namespace, %identity, "operator starting");

    if !elect {
        metrics.leader.set(1);
        controller::run(client, metrics, settings, identity, Leadership::unconditional(), shutdown).await;
        return Ok(());
    }

    // The election loop: renew (or try to take) the lease every RENEW_EVERY; run the controller
    // while the lease is ours. The controller checks `leadership` before every write, so a replica
    // that was stalled past its lease acts no more even before this loop notices.
    let elector = LeaderElector::new(client.clone(), &lease_namespace, LEASE_NAME, &identity, LEASE_DURATION);
    let leadership = Leadership::elected();
    let mut running: Option<(CancellationToken, tokio::task::JoinHandle<()>)> = None;
    // Liveness: the loop turns at least every RETRY_EVERY; a call to the API server that hangs
    // for four leases means this replica can neither lead nor step down cleanly: restart it.
    let heartbeat = health.liveness("leader election", LEASE_DURATION * 4);
    while !shutdown.is_cancelled() {
        heartbeat.beat();
        let sent = Instant::now();
        match elector.try_acquire_or_renew().await {
            Ok(true) => {
                leadership.renewed(sent, LEASE_DURATION);
                if running.is_none() {
                    tracing::info!(%identity, "became the leader");
                    metrics.leader.set(1);
                    let stop = CancellationToken::new();
                    let work = {
                        let (client, metrics, settings, identity, leadership, stop) = (
                            client.clone(),
                            metrics.clone(),
                            settings.clone(),
                            identity.clone(),
                            leadership.clone(),
                            stop.clone(),
                        );
                        tokio::spawn(async move {
                            controller::run(client, metrics, settings, identity, leadership, stop).await
                        })
                    };
                    running = Some((stop, work));
                }
            }
            Ok(false) => {
                if running.is_some() {
                    tracing::warn!("lost the lease to another replica");
                }
                leadership.revoke();
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot renew or take the lease; retrying");
                if running.is_some() && !leadership.is_leader() {
                    tracing::warn!("stepping down: the lease could not be renewed in time");
                }
            }
        }
        if running.is_some() && !leadership.is_leader() {
            stop_controller(&mut running, &metrics).await;
        }
        // Wake for the next renewal, or when the lease would lapse, whichever comes first.
        let wait = if running.is_some() { RENEW_EVERY.min(leadership.remaining()) } else { RETRY_EVERY };
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
    if running.is_some() {
        leadership.revoke();
        stop_controller(&mut running, &metrics).await;
        elector.release().await;
    }
    tracing::info!("operator stopped");
    Ok(())
}

/// Stops the controller (in-flight reconciles stop at their next write: leadership is revoked).
async fn stop_controller(
    running: &mut Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
    metrics: &OperatorMetrics,
) {
    if let Some((stop, work)) = running.take() {
        stop.cancel();
        let _ = work.await;
        metrics.leader.set(0);
        tracing::info!("stopped reconciling");
    }
}
