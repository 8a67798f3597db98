//! Operational metrics in the Prometheus / OpenMetrics text format (issue
//! 7): requests by route and status with their latency, sign-ins by
//! outcome, throttled attempts, outbox depth and age, background job runs.
//!
//! One process-wide registry: the counters are bumped from the HTTP layer,
//! the connection log and the job loops, which would otherwise all need a
//! handle threaded through them. They are served only on `metrics_listen`, a
//! listener of its own, never on the public one.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::clock::Millis;
use crate::store::Store;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    job: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutboxLabels {
    outbox: String,
}

fn latency_histogram() -> Histogram {
    // 1 ms to about 16 s: from a JWKS read to a sign-in queued behind Argon2.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    signins: Family<OutcomeLabels, Counter>,
    throttled: Counter,
    jobs: Family<JobLabels, Counter>,
    outbox_depth: Family<OutboxLabels, Gauge>,
    outbox_oldest: Family<OutboxLabels, Gauge>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("coop_idp");
    let requests = Family::<RequestLabels, Counter>::default();
    registry.register("http_requests", "HTTP requests by matched route, method and status", requests.clone());
    let latency = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
    registry.register("http_request_duration_seconds", "HTTP request latency by matched route", latency.clone());
    let signins = Family::<OutcomeLabels, Counter>::default();
    registry.register("signins", "Sign-ins by outcome (success, failure)", signins.clone());
    let throttled = Counter::default();
    registry.register("throttled_attempts", "Sign-in or reset attempts refused by the throttle", throttled.clone());
    let jobs = Family::<JobLabels, Counter>::default();
    registry.register("job_runs", "Background job runs by job and outcome (ok, error)", jobs.clone());
    let outbox_depth = Family::<OutboxLabels, Gauge>::default();
    registry.register("outbox_depth", "Messages waiting in an outbox (mail, backchannel)", outbox_depth.clone());
    let outbox_oldest = Family::<OutboxLabels, Gauge>::default();
    registry.register(
        "outbox_oldest_age_seconds",
        "Age of the oldest message waiting in an outbox (0 when empty)",
        outbox_oldest.clone(),
    );
    Metrics { registry, requests, latency, signins, throttled, jobs, outbox_depth, outbox_oldest }
});

/// One answered HTTP request; `route` is the matched path (`/token`), never
/// the raw URL, so that the label set stays small.
pub fn request(route: &str, method: &str, status: u16, elapsed: Duration) {
    let m = &*METRICS;
    m.requests
        .get_or_create(&RequestLabels {
            route: route.to_string(),
            method: method.to_string(),
            status: status.to_string(),
        })
        .inc();
    m.latency.get_or_create(&RouteLabels { route: route.to_string() }).observe(elapsed.as_secs_f64());
}

/// A sign-in, by outcome. Called by the connection log for its own
/// kinds, so the counts match what the log says.
pub fn signin(success: bool) {
    let outcome = if success { "success" } else { "failure" };
    METRICS.signins.get_or_create(&OutcomeLabels { outcome: outcome.into() }).inc();
}

/// An attempt refused by the throttle (counted from the connection log).
pub fn throttled() {
    METRICS.throttled.inc();
}

/// One run of a background job, by its result.
pub fn job<T, E>(name: &str, result: &Result<T, E>) {
    job_run(name, result.is_ok());
}

/// One run of a background job.
pub fn job_run(name: &str, ok: bool) {
    let outcome = if ok { "ok" } else { "error" };
    METRICS.jobs.get_or_create(&JobLabels { job: name.to_string(), outcome: outcome.to_string() }).inc();
}

/// The text exposition, with the outbox gauges read from the database now
/// (they describe the shared outboxes, the same on every instance).
pub async fn render(store: &Store, now: Millis) -> String {
    let m = &*METRICS;
    match store.outbox_stats().await {
        Ok(stats) => {
            for (name, depth, oldest) in stats {
                let labels = OutboxLabels { outbox: name.to_string() };
                m.outbox_depth.get_or_create(&labels).set(depth);
                m.outbox_oldest.get_or_create(&labels).set(oldest.map(|t| (now - t).max(0) / 1000).unwrap_or(0));
            }
        }
        Err(e) => tracing::warn!(error = %e, "metrics: reading the outboxes"),
    }
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &m.registry) {
        tracing::error!(error = %e, "metrics: encoding");
    }
    out
}
