//! cairn-consumer: reads the events topic in a consumer group and inserts batches into
//! ClickHouse, committing offsets only after the insert. [`pipeline`] is the loop, [`batch`] what
//! a batch holds, [`writer`] the ClickHouse insert with retries, [`dead_letter`] the poison-event
//! topic, [`lag`] the lag gauge the autoscaler reads.

pub mod batch;
pub mod changes;
pub mod config;
pub mod dead_letter;
pub mod deletions;
pub mod lag;
pub mod metrics;
pub mod persons;
pub mod pipeline;
pub mod writer;

use std::sync::Arc;
use std::time::Duration;

use cairn_common::clickhouse::{apply_event_ttl, client as clickhouse_client, ensure_property_columns, migrate};
use cairn_common::kafka::topics::{DesiredTopic, Replication};
use cairn_common::kafka::{client_config, ensure_topics_in_background, probe_topic};
use cairn_common::telemetry::{admin_router, spawn_probe, Health};
use prometheus_client::registry::Registry;
use rdkafka::consumer::Consumer;
use tokio_util::sync::CancellationToken;

use crate::config::ConsumerConfig;
use crate::dead_letter::DeadLetterProducer;
use crate::metrics::ConsumerMetrics;
use crate::persons::{PersonsMetrics, PersonsPipeline, POSTGRES_CHECK};
use crate::pipeline::{ConsumerHealthContext, EventConsumer, Pipeline, KAFKA_CHECK};
use crate::writer::{Backoff, Writer, CLICKHOUSE_CHECK};

/// Runs the consumer until SIGTERM or SIGINT.
pub async fn run(cfg: ConsumerConfig) -> Result<(), Box<dyn std::error::Error>> {
    let shutdown = cairn_common::shutdown::on_signal();

    let mut registry = Registry::default();
    let metrics = Arc::new(ConsumerMetrics::register(&mut registry));
    let persons_metrics = Arc::new(PersonsMetrics::register(&mut registry));
    let deletion_metrics = Arc::new(deletions::DeletionMetrics::register(&mut registry));
    let health = Health::new();
    health.register(KAFKA_CHECK);
    health.register(CLICKHOUSE_CHECK);
    if cfg.persons {
        health.register(POSTGRES_CHECK);
    }

    // Liveness and metrics are served from the start, readiness follows the dependencies.
    let admin = admin_router(Arc::new(registry), health.clone());
    let listener = tokio::net::TcpListener::bind(cfg.addr).await?;
    let admin_stop = CancellationToken::new();
    let admin_task = {
        let stop = admin_stop.clone();
        tokio::spawn(async move {
            cairn_common::server::serve(listener, admin, cairn_common::server::ServerLimits::default(), stop).await
        })
    };
    tracing::info!(addr = %cfg.addr, "consumer admin endpoints listening");

    if cfg.create_topics {
        let spec = |name: &str| DesiredTopic {
            name: name.to_string(),
            partitions: cfg.topic_partitions,
            replication: Replication::AtMost(3),
            refuse_shrink: false,
        };
        ensure_topics_in_background(
            cfg.kafka.clone(),
            vec![spec(&cfg.kafka.topic), spec(&cfg.kafka.dead_letter_topic)],
            shutdown.clone(),
        );
    }

    let ch = clickhouse_client(&cfg.clickhouse);
    if cfg.migrate && !migrate_until_done(&cfg, &ch, &health, &shutdown).await {
        admin_stop.cancel();
        return Ok(());
    }
    health.set(CLICKHOUSE_CHECK, true, "schema up to date");

    let consumer = events_consumer(&cfg, &cfg.group, &health)?;
    consumer.subscribe(&[&cfg.kafka.topic])?;
    let consumer = Arc::new(consumer);
    tracing::info!(topic = %cfg.kafka.topic, group = %cfg.group, brokers = %cfg.kafka.brokers, "consuming");

    let persons_task = if cfg.persons {
        let group = persons::group_of(&cfg.group);
        let persons_consumer = events_consumer(&cfg, &group, &health)?;
        persons_consumer.subscribe(&[&cfg.kafka.topic])?;
        tracing::info!(group = %group, postgres = %cfg.postgres.redacted_url(), "deciding identity events");
        let pool = cairn_postgres::pool(&cfg.postgres)?;
        // Person deletions run beside it, with the same PostgreSQL.
        let worker = deletions::DeletionWorker {
            pool: pool.clone(),
            clickhouse: ch.clone(),
            topology: cfg.clickhouse.topology(),
            metrics: deletion_metrics,
            heartbeat: health.liveness("person deletions", cfg.liveness_deadline),
            retry: Backoff::new(cfg.retry_initial, cfg.retry_max),
            project_repeat: cfg.project_deletion_repeat,
        };
        tokio::spawn(worker.run(shutdown.clone()));
        let pipeline = PersonsPipeline {
            consumer: Arc::new(persons_consumer),
            pool,
            clickhouse: ch.clone(),
            health: health.clone(),
            metrics: persons_metrics,
            batch_max_records: cfg.batch_max_events,
            batch_max_age: cfg.batch_max_age,
            shutdown_grace: cfg.shutdown_grace,
            retry: Backoff::new(cfg.retry_initial, cfg.retry_max),
            heartbeat: health.liveness("persons loop", cfg.liveness_deadline),
        };
        let stop = shutdown.clone();
        Some(tokio::spawn(async move { pipeline.run(stop).await }))
    } else {
        None
    };

    {
        let c = Arc::clone(&consumer);
        let topic = cfg.kafka.topic.clone();
        spawn_probe(health.clone(), KAFKA_CHECK, shutdown.clone(), move || {
            probe_topic(c.client(), &topic, Duration::from_secs(2)).map(|n| format!("topic {topic} has {n} partitions"))
        });
    }
    lag::spawn_lag_reporter(Arc::clone(&consumer), Arc::clone(&metrics), Duration::from_secs(10), shutdown.clone());

    let heartbeat = health.liveness("consume loop", cfg.liveness_deadline);
    let pipeline = Pipeline {
        consumer: Arc::clone(&consumer),
        writer: Writer {
            client: ch,
            health: health.clone(),
            backoff: Backoff::new(cfg.retry_initial, cfg.retry_max),
            timeout: cfg.insert_timeout,
            heartbeat: heartbeat.clone(),
        },
        dead_letters: DeadLetterProducer::new(&cfg.kafka)?,
        metrics,
        batch_max_events: cfg.batch_max_events,
        batch_max_bytes: cfg.batch_max_bytes,
        batch_max_age: cfg.batch_max_age,
        dead_letter_timeout: cfg.dead_letter_timeout,
        shutdown_grace: cfg.shutdown_grace,
        retry: Backoff::new(cfg.retry_initial, cfg.retry_max),
        heartbeat,
    };
    let result = pipeline.run(shutdown.clone()).await;
    consumer.unsubscribe();
    // The events pipeline returns on shutdown (or on an error, which ends the process: the
    // persons pipeline stops with it).
    shutdown.cancel();
    if let Some(task) = persons_task {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "persons pipeline stopped unfinished"),
            Err(e) => tracing::error!(error = %e, "persons pipeline panicked"),
        }
    }
    admin_stop.cancel();
    let _ = admin_task.await;
    result?;
    tracing::info!("consumer stopped");
    Ok(())
}

/// A consumer of the events topic in `group`, committing by hand.
fn events_consumer(
    cfg: &ConsumerConfig,
    group: &str,
    health: &Health,
) -> Result<EventConsumer, rdkafka::error::KafkaError> {
    client_config(&cfg.kafka)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        // Incremental rebalances: a consumer joining or leaving moves only the partitions that
        // change owner; the others keep being consumed (eager rebalancing stops every member).
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("session.timeout.ms", cfg.session_timeout.as_millis().to_string())
        .set("heartbeat.interval.ms", (cfg.session_timeout.as_millis() / 3).max(100).to_string())
        .set("max.poll.interval.ms", cfg.max_poll_interval.as_millis().to_string())
        .set("topic.metadata.refresh.interval.ms", "5000")
        // Fewer, fuller fetches: the broker answers once 256 KB are there or 100 ms have passed,
        // instead of once per few records (which costs the broker a core at 40k events/s).
        .set("fetch.min.bytes", "262144")
        .set("fetch.wait.max.ms", "100")
        .create_with_context(ConsumerHealthContext { health: health.clone() })
}

/// Applies migrations and the TTL, retrying while ClickHouse is unreachable. False if a shutdown
/// came first.
async fn migrate_until_done(
    cfg: &ConsumerConfig,
    ch: &clickhouse::Client,
    health: &Health,
    stop: &CancellationToken,
) -> bool {
    let mut backoff = Backoff::new(cfg.retry_initial, cfg.retry_max);
    let topology = cfg.clickhouse.topology();
    loop {
        let result = match migrate(&cfg.clickhouse).await {
            Ok(status) => apply_event_ttl(ch, &topology, cfg.clickhouse.event_ttl_days).await.map(|()| status),
            Err(e) => Err(e),
        };
        let result = match result {
            Ok(status) => match ensure_property_columns(ch, &topology, &cfg.property_columns).await {
                Ok(report) => {
                    if !report.added.is_empty() {
                        tracing::info!(added = ?report.added, "event properties made columns; older rows backfill in the background");
                    }
                    if !report.refused.is_empty() {
                        tracing::warn!(refused = ?report.refused, "these keys cannot be property columns (letters, digits and $ _ - . : / only)");
                    }
                    Ok(status)
                }
                Err(e) => Err(e.to_string()),
            },
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(status) => {
                tracing::info!(version = status.version, applied = ?status.applied_now, "ClickHouse schema up to date");
                return true;
            }
            Err(e) => {
                health.set(CLICKHOUSE_CHECK, false, e.to_string());
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "cannot migrate ClickHouse yet");
                tokio::select! {
                    _ = stop.cancelled() => return false,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}
