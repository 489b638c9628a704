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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// started, joined, cached, done, failed or cancelled
    pub outcome: &'static str,
}

pub struct QueryMetrics {
    /// `cairn_query_requests_total{route,status}`.
    pub requests: Family<RouteLabels, Counter>,
    /// `cairn_query_request_duration_seconds{route}`.
    pub duration: Family<RouteOnly, Histogram>,
    /// `cairn_query_jobs_total{outcome}`: query jobs started, joined (an identical one was
    /// running), answered from the cache, and how they ended.
    pub jobs: Family<OutcomeLabels, Counter>,
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
        let jobs = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "cairn_query_jobs",
            "query jobs started, joined, answered from the cache, and ended, by outcome",
            jobs.clone(),
        );
        Self { requests, duration, jobs }
    }
}
