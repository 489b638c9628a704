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
    pub platform: String,
    pub phase: &'static str,
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
        m
    }

    pub fn observe(&self, took: Duration, ok: bool) {
        self.duration.observe(took.as_secs_f64());
        self.reconciles.get_or_create(&ResultLabels { result: if ok { "ok" } else { "error" } }).inc();
    }

    pub fn count_error(&self, reason: &'static str) {
        self.errors.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// A deleted platform's series go.
    pub fn forget_platform(&self, platform: &str) {
        for p in PHASES {
            self.phase.remove(&PhaseLabels { platform: platform.to_string(), phase: p });
        }
    }

    pub fn set_phase(&self, platform: &str, phase: &str) {
        for p in PHASES {
            self.phase
                .get_or_create(&PhaseLabels { platform: platform.to_string(), phase: p })
                .set(i64::from(p == phase));
        }
    }
}
