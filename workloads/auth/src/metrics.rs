//! The auth service's Prometheus metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    /// One of the methods the API uses, or `other`: a client cannot create series at will.
    pub method: &'static str,
    pub status: u16,
}

/// The method label of a request.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LookupLabels {
    /// write_key, access_token, personal_key
    pub kind: &'static str,
    /// found, not_found
    pub outcome: &'static str,
}

pub struct AuthMetrics {
    pub requests: Family<RequestLabels, Counter>,
    pub request_seconds: Histogram,
    /// success, invalid_credentials, rate_limited
    pub logins: Family<OutcomeLabels, Counter>,
    /// rotated, invalid, reuse_detected
    pub refreshes: Family<OutcomeLabels, Counter>,
    pub internal_lookups: Family<LookupLabels, Counter>,
    /// Logins and signups answered 503 because every hashing slot stayed busy.
    pub hashing_busy: Counter,
}

impl AuthMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            requests: Family::default(),
            request_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            logins: Family::default(),
            refreshes: Family::default(),
            internal_lookups: Family::default(),
            hashing_busy: Counter::default(),
        };
        registry.register("cairn_auth_requests", "Auth HTTP requests by route, method and status", m.requests.clone());
        registry.register(
            "cairn_auth_request_duration_seconds",
            "Time from receiving an auth request to answering it",
            m.request_seconds.clone(),
        );
        registry.register("cairn_auth_logins", "Login attempts by outcome", m.logins.clone());
        registry.register("cairn_auth_refreshes", "Refresh-token uses by outcome", m.refreshes.clone());
        registry.register(
            "cairn_auth_internal_lookups",
            "Credentials resolved for other services, by kind and outcome",
            m.internal_lookups.clone(),
        );
        registry.register(
            "cairn_auth_hashing_busy",
            "Logins and signups refused because every password-hashing slot stayed busy",
            m.hashing_busy.clone(),
        );
        m
    }

    pub fn login(&self, outcome: &'static str) {
        self.logins.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    pub fn refresh(&self, outcome: &'static str) {
        self.refreshes.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    pub fn lookup(&self, kind: &'static str, found: bool) {
        let outcome = if found { "found" } else { "not_found" };
        self.internal_lookups.get_or_create(&LookupLabels { kind, outcome }).inc();
    }
}
