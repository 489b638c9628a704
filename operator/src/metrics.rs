//! The operator's Prometheus metrics.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub namespace: String,
    pub platform: String,
    pub phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PlatformLabels {
    pub namespace: String,
    pub platform: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DiskLabels {
    pub namespace: String,
    pub platform: String,
    pub disk: String,
}

/// What the operator read of one platform's data path, for its gauges.
#[derive(Debug, Clone, Default)]
pub struct DataPathFigures {
    pub lag_records: Option<i64>,
    pub oldest_age_seconds: Option<i64>,
    pub freshness_seconds: Option<i64>,
    pub events_at_risk: Option<bool>,
    pub retention_hours: Option<i64>,
    /// (disk, free bytes, total bytes)
    pub disks: Vec<(String, u64, u64)>,
}

pub const PHASES: [&str; 5] = ["Pending", "Progressing", "Ready", "Degraded", "Paused"];

pub struct OperatorMetrics {
    pub reconciles: Family<ResultLabels, Counter>,
    pub errors: Family<ReasonLabels, Counter>,
    pub duration: Histogram,
    pub phase: Family<PhaseLabels, Gauge>,
    pub leader: Gauge,
    /// Backfills this replica started (a copy is never sent while it runs).
    pub backfills_started: Counter,
    pub lag_records: Family<PlatformLabels, Gauge>,
    pub lag_oldest_age: Family<PlatformLabels, Gauge>,
    pub freshness: Family<PlatformLabels, Gauge>,
    pub events_at_risk: Family<PlatformLabels, Gauge>,
    pub retention_hours: Family<PlatformLabels, Gauge>,
    pub disk_free: Family<DiskLabels, Gauge>,
    pub disk_total: Family<DiskLabels, Gauge>,
    pub heartbeats: Family<ResultLabels, Counter>,
}

impl OperatorMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            reconciles: Family::default(),
            errors: Family::default(),
            duration: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            phase: Family::default(),
            leader: Gauge::default(),
            backfills_started: Counter::default(),
            lag_records: Family::default(),
            lag_oldest_age: Family::default(),
            freshness: Family::default(),
            events_at_risk: Family::default(),
            retention_hours: Family::default(),
            disk_free: Family::default(),
            disk_total: Family::default(),
            heartbeats: Family::default(),
        };
        registry.register("cairn_operator_reconciles", "Reconciles by result", m.reconciles.clone());
        registry.register("cairn_operator_reconcile_errors", "Reconcile errors by reason", m.errors.clone());
        registry.register("cairn_operator_reconcile_duration_seconds", "Time of one reconcile", m.duration.clone());
        registry.register("cairn_operator_platform_phase", "1 for each platform's current phase", m.phase.clone());
        registry.register("cairn_operator_leader", "1 while this replica leads", m.leader.clone());
        registry.register(
            "cairn_operator_backfills_started",
            "Backfills (copies of stored data that migrations ask for) started by this replica",
            m.backfills_started.clone(),
        );
        registry.register(
            "cairn_operator_consumer_lag_records",
            "Records of the events topic the platform's consumer group has not consumed yet",
            m.lag_records.clone(),
        );
        registry.register(
            "cairn_operator_consumer_lag_oldest_age_seconds",
            "Age of the oldest record the platform's consumer group has not consumed yet",
            m.lag_oldest_age.clone(),
        );
        registry.register(
            "cairn_operator_data_path_freshness_seconds",
            "Seconds since the newest heartbeat that reached ClickHouse was sent through capture",
            m.freshness.clone(),
        );
        registry.register(
            "cairn_operator_events_at_risk",
            "1 while the oldest unconsumed record is older than half the topic's retention",
            m.events_at_risk.clone(),
        );
        registry.register(
            "cairn_operator_topic_retention_hours",
            "The retention the operator keeps on the events topic (more than the spec's while a backlog needs it)",
            m.retention_hours.clone(),
        );
        registry.register(
            "cairn_operator_clickhouse_disk_free_bytes",
            "Free bytes of a ClickHouse disk",
            m.disk_free.clone(),
        );
        registry.register(
            "cairn_operator_clickhouse_disk_total_bytes",
            "Size of a ClickHouse disk",
            m.disk_total.clone(),
        );
        registry.register(
            "cairn_operator_heartbeats",
            "Heartbeat events sent through capture, by result (ok, error)",
            m.heartbeats.clone(),
        );
        m
    }

    /// Sets a platform's data-path gauges (an unknown figure removes its series).
    pub fn set_data_path(&self, namespace: &str, platform: &str, f: &DataPathFigures) {
        let l = PlatformLabels { namespace: namespace.to_string(), platform: platform.to_string() };
        let set = |family: &Family<PlatformLabels, Gauge>, v: Option<i64>| match v {
            Some(v) => {
                family.get_or_create(&l).set(v);
            }
            None => {
                family.remove(&l);
            }
        };
        set(&self.lag_records, f.lag_records);
        set(&self.lag_oldest_age, f.oldest_age_seconds);
        set(&self.freshness, f.freshness_seconds);
        set(&self.events_at_risk, f.events_at_risk.map(i64::from));
        set(&self.retention_hours, f.retention_hours);
        for (disk, free, total) in &f.disks {
            let d = DiskLabels { namespace: namespace.to_string(), platform: platform.to_string(), disk: disk.clone() };
            self.disk_free.get_or_create(&d).set(i64::try_from(*free).unwrap_or(i64::MAX));
            self.disk_total.get_or_create(&d).set(i64::try_from(*total).unwrap_or(i64::MAX));
        }
    }

    pub fn observe(&self, took: Duration, ok: bool) {
        self.duration.observe(took.as_secs_f64());
        self.reconciles.get_or_create(&ResultLabels { result: if ok { "ok" } else { "error" } }).inc();
    }

    pub fn count_error(&self, reason: &'static str) {
        self.errors.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// A deleted platform's series go.
    pub fn forget_platform(&self, namespace: &str, platform: &str, disks: &[String]) {
        for p in PHASES {
            self.phase.remove(&PhaseLabels {
                namespace: namespace.to_string(),
                platform: platform.to_string(),
                phase: p,
            });
        }
        self.set_data_path(namespace, platform, &DataPathFigures::default());
        for disk in disks {
            let d = DiskLabels { namespace: namespace.to_string(), platform: platform.to_string(), disk: disk.clone() };
            self.disk_free.remove(&d);
            self.disk_total.remove(&d);
        }
    }

    pub fn set_phase(&self, namespace: &str, platform: &str, phase: &str) {
        for p in PHASES {
            self.phase
                .get_or_create(&PhaseLabels {
                    namespace: namespace.to_string(),
                    platform: platform.to_string(),
                    phase: p,
                })
                .set(i64::from(p == phase));
        }
    }
}
