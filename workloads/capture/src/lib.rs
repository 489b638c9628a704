//! cairn-capture: validates events and writes them to Kafka; answers 200 only once Kafka has
//! acknowledged them. Layout after PostHog's capture service: [`router`] (HTTP), [`payload`]
//! (body decoding), [`keys`] (API keys → projects), [`limiter`] (per-key rate limits), [`sink`]
//! (Kafka), [`metrics`], [`error`] (what each failure answers).

pub mod budget;
pub mod config;
pub mod error;
pub mod keys;
pub mod limiter;
pub mod metrics;
pub mod payload;
pub mod router;
pub mod sink;

use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use cairn_auth_client::AuthClient;
use cairn_common::config::ExposeSecret;
use cairn_common::kafka::ensure_topics_in_background;
use cairn_common::kafka::topics::{DesiredTopic, Replication};
use cairn_common::telemetry::{admin_router, Health};
use prometheus_client::registry::Registry;
use tower_http::cors::{Any, CorsLayer};

use crate::budget::MemoryBudget;
use crate::config::CaptureConfig;
use crate::keys::{AuthKeys, KeyResolver, LayeredKeys, StaticKeys};
use crate::limiter::{KeyRateLimiter, Replicas, UnknownKeyGate};
use crate::metrics::CaptureMetrics;
use crate::payload::Limits;
use crate::router::{AppState, LIMITER_SWEEP};
use crate::sink::KafkaSink;

/// Runs capture until SIGTERM or SIGINT.
pub async fn run(cfg: CaptureConfig) -> Result<(), Box<dyn std::error::Error>> {
    let shutdown = cairn_common::shutdown::on_signal();

    let mut registry = Registry::default();
    let metrics = Arc::new(CaptureMetrics::register(&mut registry));
    let health = Health::new();

    let fixed = StaticKeys::parse(cfg.api_keys.expose_secret())?
        .with_heartbeat(cfg.heartbeat_key.as_ref().map(|k| k.expose_secret()));
    if !fixed.is_empty() {
        tracing::info!(keys = fixed.len(), "loaded API keys from configuration");
    }
    let auth: Option<Box<dyn KeyResolver>> = match &cfg.auth {
        Some(auth_cfg) => {
            tracing::info!(url = %auth_cfg.url, cache_ttl_secs = auth_cfg.cache_ttl.as_secs(), "resolving write keys through the auth service");
            let client = AuthClient::new(auth_cfg.clone())?;
            // Revoked keys (and deleted projects' keys) leave the cache as soon as they are revoked.
            let (follower, stop) = (client.clone(), shutdown.clone());
            tokio::spawn(async move { follower.follow_revocations(stop).await });
            Some(Box::new(AuthKeys::new(client)))
        }
        None if fixed.is_empty() => {
            tracing::warn!(
                "neither CAIRN_CAPTURE_API_KEYS nor CAIRN_AUTH_URL is set: every request will be refused with 401"
            );
            None
        }
        None => None,
    };
    let keys = LayeredKeys { fixed, auth };

    if cfg.create_topics {
        let topic = DesiredTopic {
            name: cfg.kafka.topic.clone(),
            partitions: cfg.topic_partitions,
            replication: Replication::AtMost(3),
            refuse_shrink: false,
        };
        ensure_topics_in_background(cfg.kafka.clone(), vec![topic], shutdown.clone());
    }

    let sink = Arc::new(KafkaSink::new(
        &cfg.kafka,
        cfg.ack_timeout,
        cfg.linger,
        cfg.record_headers,
        health.clone(),
        metrics.clone(),
    )?);
    sink.spawn_health_probe(shutdown.clone());
    sink.spawn_liveness(cfg.liveness_deadline, shutdown.clone());

    // Each key's rate is the platform's: the replicas share it.
    let replicas = Replicas::fixed(cfg.replicas);
    if let Some(peers) = &cfg.peers {
        replicas.follow_dns(peers.clone(), Duration::from_secs(10), shutdown.clone());
    }
    registry.register(
        "cairn_capture_rate_limit_replicas",
        "Capture replicas sharing each key's rate limit (each charges every event this many times)",
        replicas.gauge(),
    );
    let state = Arc::new(AppState {
        keys: Arc::new(keys),
        sink: sink.clone(),
        limiter: KeyRateLimiter::new(cfg.rate_limit_per_second, cfg.rate_limit_burst, replicas.clone()),
        unknown_keys: UnknownKeyGate::new(
            cfg.unknown_keys_per_minute,
            cfg.unknown_keys_burst,
            Duration::from_secs(60),
            100_000,
        ),
        trusted_proxies: cfg.trusted_proxies.clone(),
        body_timeout: cfg.server.request_timeout,
        budget: MemoryBudget::new(cfg.memory_budget_bytes, Duration::from_secs(2)),
        limits: Limits {
            max_event_bytes: cfg.max_event_bytes,
            max_batch_bytes: cfg.max_batch_bytes,
            max_events: cfg.max_events,
            max_values: cfg.max_values,
        },
        max_future: cfg.max_future,
        metrics,
    });
    {
        let state = state.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! { _ = stop.cancelled() => return, _ = tokio::time::sleep(LIMITER_SWEEP) => {} }
                state.limiter.forget_idle();
                state.unknown_keys.forget_idle();
            }
        });
    }

    // SDKs send from any origin, without credentials: any origin may post, none with cookies.
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers(Any)
        .max_age(Duration::from_secs(86400));
    let app = router::router(state).layer(cors);
    let admin = admin_router(Arc::new(registry), health);
    tracing::info!(addr = %cfg.addr, topic = %cfg.kafka.topic, brokers = %cfg.kafka.brokers, "capture listening");
    cairn_common::server::serve_service(cfg.addr, app, admin, cfg.admin_addr, cfg.server.clone(), shutdown.clone())
        .await?;
    // Requests in flight have been answered; anything still queued is flushed before exit.
    let s = sink.clone();
    tokio::task::spawn_blocking(move || s.flush(Duration::from_secs(10))).await?;
    tracing::info!("capture stopped");
    Ok(())
}
