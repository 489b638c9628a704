//! Capture's Prometheus metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// accepted, invalid, unauthorized, rate_limited, too_large, unavailable
    pub outcome: &'static str,
}

pub struct CaptureMetrics {
    pub requests: Family<RequestLabels, Counter>,
    pub events: Family<OutcomeLabels, Counter>,
    pub request_seconds: Histogram,
    pub kafka_ack_seconds: Histogram,
}

impl CaptureMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            requests: Family::default(),
            events: Family::default(),
            request_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            kafka_ack_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
        };
        registry.register("cairn_capture_requests", "Capture HTTP requests by route and status", m.requests.clone());
        registry.register("cairn_capture_events", "Events by outcome", m.events.clone());
        registry.register(
            "cairn_capture_request_duration_seconds",
            "Time from receiving a capture request to answering it",
            m.request_seconds.clone(),
        );
        registry.register(
            "cairn_capture_kafka_ack_duration_seconds",
            "Time from producing a request's events to Kafka acknowledging all of them",
            m.kafka_ack_seconds.clone(),
        );
        m
    }

    pub fn count_events(&self, outcome: &'static str, n: usize) {
        self.events.get_or_create(&OutcomeLabels { outcome }).inc_by(n as u64);
    }
}
