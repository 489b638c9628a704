//! The cairn-operator binary: leader election, then the controller, with metrics and probes.
//!
//! Environment: `WATCH_NAMESPACE` (empty: all namespaces), `POD_NAMESPACE` (where the leader
//! Lease lives), `POD_NAME` (the replica's identity), `CAIRN_OPERATOR_ADDR` (metrics and probes,
//! default 0.0.0.0:8080), `CAIRN_OPERATOR_RESYNC_SECS` (300), `CAIRN_OPERATOR_RETRY_SECS` (10),
//! `CAIRN_OPERATOR_DEPENDENCY_TIMEOUT_SECS` (30), `CAIRN_OPERATOR_LEADER_ELECTION` (true).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cairn_common::config::{env_bool, env_opt, env_parse, env_string};
use cairn_common::telemetry::{admin_router, init_tracing, Health};
use cairn_operator::controller::{self, Settings};
use cairn_operator::leader::LeaderElector;
use cairn_operator::metrics::OperatorMetrics;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

const LEASE_NAME: &str = "cairn-operator-leader";
const LEASE_DURATION: Duration = Duration::from_secs(15);
const RENEW_EVERY: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() {
    init_tracing("cairn-operator");
    if let Err(e) = run().await {
        tracing::error!(error = %e, "operator failed");
        std::process::exit(1);
    }
}

async fn run() -> anyhow::Result<()> {
    let shutdown = cairn_common::shutdown::on_signal();
    let addr: SocketAddr = env_string("CAIRN_OPERATOR_ADDR", "0.0.0.0:8080").parse()?;
    let settings = Settings {
        resync: Duration::from_secs(env_parse("CAIRN_OPERATOR_RESYNC_SECS", 300u64)?),
        retry: Duration::from_secs(env_parse("CAIRN_OPERATOR_RETRY_SECS", 10u64)?),
        namespace: env_opt("WATCH_NAMESPACE"),
        dependency_timeout: Duration::from_secs(env_parse("CAIRN_OPERATOR_DEPENDENCY_TIMEOUT_SECS", 30u64)?),
    };
    let identity = env_opt("POD_NAME").unwrap_or_else(|| format!("cairn-operator-{}", std::process::id()));
    let lease_namespace =
        env_opt("POD_NAMESPACE").or_else(|| settings.namespace.clone()).unwrap_or_else(|| "default".into());
    let elect = env_bool("CAIRN_OPERATOR_LEADER_ELECTION", true)?;

    let client = kube::Client::try_default().await?;
    let mut registry = Registry::default();
    let metrics = Arc::new(OperatorMetrics::register(&mut registry));
    let health = Health::new();
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let admin = admin_router(Arc::new(registry), health.clone());
    let stop_admin = shutdown.clone();
    tokio::spawn(async move {
        axum::serve(listener, admin).with_graceful_shutdown(async move { stop_admin.cancelled().await }).await
    });
    tracing::info!(%addr, namespace = ?settings.namespace, %identity, "operator starting");

    if !elect {
        metrics.leader.set(1);
        controller::run(client, metrics, settings, identity, shutdown).await;
        return Ok(());
    }

    let elector = LeaderElector::new(client.clone(), &lease_namespace, LEASE_NAME, &identity, LEASE_DURATION);
    while !shutdown.is_cancelled() {
        match elector.try_acquire_or_renew().await {
            Ok(true) => {
                tracing::info!(%identity, "became the leader");
                metrics.leader.set(1);
                let lost = CancellationToken::new();
                let work = {
                    let (client, metrics, settings, identity, stop) =
                        (client.clone(), metrics.clone(), settings.clone(), identity.clone(), lost.clone());
                    tokio::spawn(async move { controller::run(client, metrics, settings, identity, stop).await })
                };
                let mut renewed = std::time::Instant::now();
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(RENEW_EVERY) => {}
                    }
                    match elector.try_acquire_or_renew().await {
                        Ok(true) => renewed = std::time::Instant::now(),
                        Ok(false) => {
                            tracing::warn!("lost the lease to another replica");
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot renew the lease; retrying");
                            // Step down before another replica may take the expired lease.
                            if renewed.elapsed() + RENEW_EVERY >= LEASE_DURATION {
                                tracing::warn!("stepping down: the lease could not be renewed in time");
                                break;
                            }
                        }
                    }
                }
                lost.cancel();
                let _ = work.await;
                metrics.leader.set(0);
                if shutdown.is_cancelled() {
                    elector.release().await;
                }
            }
            Ok(false) => {
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "leader election failed; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
    tracing::info!("operator stopped");
    Ok(())
}
