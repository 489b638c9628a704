//! The query service's Prometheus metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteOnly {
    pub route: String,
}

pub struct QueryMetrics {
    /// `cairn_query_requests_total{route,status}`.
    pub requests: Family<RouteLabels, Counter>,
    /// `cairn_query_request_duration_seconds{route}`.
    pub duration: Family<RouteOnly, Histogram>,
}

impl QueryMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let requests = Family::<RouteLabels, Counter>::default();
        let duration = Family::<RouteOnly, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.002, 2.0, 14))
        });
        registry.register("cairn_query_requests", "API requests answered, by route and status", requests.clone());
        registry.register(
            "cairn_query_request_duration_seconds",
            "time to answer an API request, by route",
            duration.clone(),
        );
        Self { requests, duration }
    }
}
