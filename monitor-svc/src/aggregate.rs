//! From two successive scrapes of one target to the figures that are stored and alerted on:
//! per-second rates that survive counter resets, latency percentiles interpolated from
//! histogram buckets (as Prometheus' `histogram_quantile` does), the error ratio, and gauges.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use prometheus_parse::{Scrape, Value};

use crate::rules::RATE_SUFFIX;

const REQUESTS: &str = "xiaowo_grpc_requests_total";
const LATENCY: &str = "xiaowo_grpc_request_duration_seconds";
const OPEN_CALLS: &str = "xiaowo_grpc_open_calls";
const RESIDENT_MEMORY: &str = "process_resident_memory_bytes";

/// One labelled series: the metric name and its labels in a canonical order.
type SeriesKey = (String, BTreeMap<String, String>);

/// The parsed `/metrics` of one target at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// When it was scraped, Unix milliseconds.
    pub at_ms: i64,
    counters: HashMap<SeriesKey, f64>,
    gauges: HashMap<SeriesKey, f64>,
    /// Cumulative bucket counts by upper bound, ascending.
    histograms: HashMap<SeriesKey, Vec<(f64, f64)>>,
}

/// Why a `/metrics` body could not be read.
#[derive(Debug, thiserror::Error)]
#[error("unreadable metrics text: {0}")]
pub struct ParseError(#[from] std::io::Error);

impl Snapshot {
    /// Parses Prometheus text exposition format.
    ///
    /// # Errors
    /// When the text cannot be parsed.
    pub fn parse(text: &str, at_ms: i64) -> Result<Self, ParseError> {
        let scrape = Scrape::parse(text.lines().map(|line| Ok(line.to_owned())))?;
        let mut snapshot = Self { at_ms, ..Self::default() };
        for sample in scrape.samples {
            let labels: BTreeMap<String, String> =
                sample.labels.iter().map(|(name, value)| (name.clone(), value.clone())).collect();
            let key = (sample.metric, labels);
            match sample.value {
                Value::Counter(value) => {
                    snapshot.counters.insert(key, value);
                }
                Value::Gauge(value) | Value::Untyped(value) => {
                    snapshot.gauges.insert(key, value);
                }
                Value::Histogram(buckets) => {
                    let mut buckets: Vec<(f64, f64)> =
                        buckets.into_iter().map(|bucket| (bucket.less_than, bucket.count)).collect();
                    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
                    snapshot.histograms.insert(key, buckets);
                }
                Value::Summary(_) => {}
            }
        }
        Ok(snapshot)
    }

    /// Whether any series of metric `name` is present.
    #[must_use]
    pub fn has(&self, name: &str) -> bool {
        self.counters.keys().chain(self.gauges.keys()).chain(self.histograms.keys()).any(|(metric, _)| metric == name)
    }

    /// The sum of every series of gauge `name`, if it is exported.
    #[must_use]
    pub fn gauge_sum(&self, name: &str) -> Option<f64> {
        let mut values = self.gauges.iter().filter(|((metric, _), _)| metric == name).map(|(_, value)| *value);
        let first = values.next()?;
        Some(values.fold(first, |sum, value| sum + value))
    }
}

/// How much a counter grew from `previous` to `current`. A smaller current value means the
/// process restarted and counted from zero, so everything it shows is new.
#[must_use]
pub fn increase(previous: f64, current: f64) -> f64 {
    if current >= previous { current - previous } else { current }
}

/// The `quantile` (0..=1) of a histogram given as cumulative counts by ascending upper bound
/// (the last one `+Inf`), linearly interpolated inside the bucket it falls in. `None` when the
/// histogram holds no observations.
#[must_use]
pub fn histogram_quantile(quantile: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 || !(0.0..=1.0).contains(&quantile) {
        return None;
    }
    let rank = quantile * total;
    let mut lower_bound = 0.0;
    let mut count_below = 0.0;
    for (index, &(upper_bound, count)) in buckets.iter().enumerate() {
        if count >= rank {
            if upper_bound.is_infinite() {
                // Above the highest finite bound nothing is known but that bound.
                return Some(if index == 0 { 0.0 } else { lower_bound });
            }
            let in_bucket = count - count_below;
            if in_bucket <= 0.0 {
                return Some(upper_bound);
            }
            return Some(lower_bound + (upper_bound - lower_bound) * (rank - count_below) / in_bucket);
        }
        lower_bound = upper_bound;
        count_below = count;
    }
    Some(lower_bound)
}

/// Bucket counts observed between two scrapes of the same histogram series; a reset (any
/// bucket went down) means the current counts are all new.
fn bucket_increase(previous: Option<&Vec<(f64, f64)>>, current: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let Some(previous) = previous else { return current.to_vec() };
    let same_shape = previous.len() == current.len()
        && previous.iter().zip(current).all(|(before, now)| before.0.total_cmp(&now.0).is_eq());
    let reset = !same_shape || previous.iter().zip(current).any(|(before, now)| now.1 < before.1);
    if reset {
        return current.to_vec();
    }
    previous.iter().zip(current).map(|(before, now)| (now.0, now.1 - before.1)).collect()
}

/// Long-lived streams (`Watch…` methods) last as long as a viewer stays; their durations would
/// swamp the latency of ordinary calls, so percentiles leave them out.
fn is_stream(labels: &BTreeMap<String, String>) -> bool {
    labels.get("method").is_some_and(|method| method.starts_with("Watch"))
}

/// The Xiaowo domain of a gRPC service label: `xiaowo.session.v1.SessionService` → `session`.
/// Health and reflection belong to none.
#[must_use]
pub fn domain_of(grpc_service: &str) -> Option<&str> {
    let mut parts = grpc_service.split('.');
    if parts.next() != Some("xiaowo") {
        return None;
    }
    parts.next().filter(|domain| !domain.is_empty())
}

/// Every Xiaowo domain that has a protobuf package (`xiaowo.<domain>.v1`): the names under
/// which a multi-domain process's figures are also reported.
#[must_use]
pub fn proto_domains() -> BTreeSet<String> {
    use prost::Message;
    let Ok(descriptors) = prost_types::FileDescriptorSet::decode(proto::FILE_DESCRIPTOR_SET) else {
        return BTreeSet::new();
    };
    descriptors.file.iter().filter_map(|file| file.package.as_deref().and_then(domain_of)).map(str::to_owned).collect()
}

fn in_domain(labels: &BTreeMap<String, String>, domain: &str) -> bool {
    labels.get("service").and_then(|service| domain_of(service)) == Some(domain)
}

/// The figures of one scrape: the target's own, and, for a process that serves several
/// domains (`xiaowo up`), the gRPC figures of each domain apart.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetFigures {
    pub total: Vec<(String, f64)>,
    /// By domain name; empty unless the target serves two or more domains.
    pub by_domain: BTreeMap<String, Vec<(String, f64)>>,
}

/// The names of the figures a target's scrape yields, besides `up`.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// Counters whose per-second rate is kept as `<name>:rate`.
    pub counters: Vec<String>,
    /// Gauges kept under their own name.
    pub gauges: Vec<String>,
    /// Histograms whose p50 and p99 over the interval are kept as `<name>:p50` and `<name>:p99`.
    pub histograms: Vec<String>,
}

/// The bucket counts of every series of histogram `name` observed since `previous`, merged.
fn merged_increase(
    previous: &Snapshot,
    current: &Snapshot,
    keep: &dyn Fn(&String, &BTreeMap<String, String>) -> bool,
) -> Vec<(f64, f64)> {
    let mut merged: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
    for (key, buckets) in current.histograms.iter().filter(|((metric, labels), _)| keep(metric, labels)) {
        for (upper_bound, count) in bucket_increase(previous.histograms.get(key), buckets) {
            let slot = merged.entry(upper_bound.to_bits()).or_insert((upper_bound, 0.0));
            slot.1 += count;
        }
    }
    let mut merged: Vec<(f64, f64)> = merged.into_values().collect();
    merged.sort_by(|a, b| a.0.total_cmp(&b.0));
    merged
}

/// Seconds between two snapshots, when the second is later.
fn interval_seconds<'a>(previous: Option<&'a Snapshot>, current: &Snapshot) -> Option<(f64, &'a Snapshot)> {
    let previous = previous?;
    #[expect(clippy::cast_precision_loss, reason = "milliseconds between two scrapes: far inside 2^52")]
    let seconds = (current.at_ms - previous.at_ms) as f64 / 1000.0;
    (seconds > 0.0).then_some((seconds, previous))
}

/// How much counter series `key` grew since `previous`. A series that first appears counts
/// from zero: a labelled counter is only exported once it was incremented, and that first
/// burst is exactly what the rules look for.
fn grown(previous: &Snapshot, key: &SeriesKey, value: f64) -> f64 {
    increase(previous.counters.get(key).copied().unwrap_or(0.0), value)
}

/// Status codes that mean the server failed the call (a fault of ours or of something we
/// depend on), as opposed to outcomes of what the client asked: a first visit without a session
/// (`UNAUTHENTICATED`), a wrong password or role (`PERMISSION_DENIED`), a stream the client
/// closed (`CANCELLED`), a lost version race (`ABORTED`), bad input (`INVALID_ARGUMENT`), an
/// unknown room (`NOT_FOUND`). Only these make up `error_ratio`.
const SERVER_FAULTS: [&str; 5] = ["INTERNAL", "UNKNOWN", "UNAVAILABLE", "DATA_LOSS", "DEADLINE_EXCEEDED"];
/// Status codes of calls refused to the caller: normal one at a time, a brute force or a flood
/// when they come in bulk. Counted per second as `refused_per_second`.
const REFUSALS: [&str; 3] = ["UNAUTHENTICATED", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED"];

/// Requests/s, error ratio (server faults only), refusals/s, latency percentiles and open
/// calls over the series `keep` selects.
fn grpc_figures(
    previous: Option<&Snapshot>,
    current: &Snapshot,
    keep: &dyn Fn(&BTreeMap<String, String>) -> bool,
) -> Vec<(String, f64)> {
    let mut figures = Vec::new();
    let open_calls: Vec<f64> = current
        .gauges
        .iter()
        .filter(|((metric, labels), _)| metric == OPEN_CALLS && keep(labels))
        .map(|(_, value)| *value)
        .collect();
    if !open_calls.is_empty() {
        figures.push(("open_calls".to_owned(), open_calls.iter().sum()));
    }
    let Some((seconds, previous)) = interval_seconds(previous, current) else { return figures };

    let mut seen = false;
    let mut requests = 0.0;
    let mut failed = 0.0;
    let mut refused = 0.0;
    for (key, value) in current.counters.iter().filter(|((metric, labels), _)| metric == REQUESTS && keep(labels)) {
        seen = true;
        let calls = grown(previous, key, *value);
        requests += calls;
        let code = key.1.get("code").map_or("", String::as_str);
        if SERVER_FAULTS.contains(&code) {
            failed += calls;
        } else if REFUSALS.contains(&code) {
            refused += calls;
        }
    }
    if seen {
        figures.push(("requests_per_second".to_owned(), requests / seconds));
        figures.push(("error_ratio".to_owned(), if requests > 0.0 { failed / requests } else { 0.0 }));
        figures.push(("refused_per_second".to_owned(), refused / seconds));
    }

    let merged =
        merged_increase(previous, current, &|metric, labels| metric == LATENCY && !is_stream(labels) && keep(labels));
    for (name, quantile) in [("latency_p50_seconds", 0.5), ("latency_p95_seconds", 0.95), ("latency_p99_seconds", 0.99)]
    {
        if let Some(value) = histogram_quantile(quantile, &merged) {
            figures.push((name.to_owned(), value));
        }
    }
    figures
}

impl Figures {
    /// The figures of `current`, with rates over the time since `previous` when there is one.
    #[must_use]
    pub fn compute(&self, previous: Option<&Snapshot>, current: &Snapshot) -> TargetFigures {
        let mut total = grpc_figures(previous, current, &|_| true);
        if let Some(memory) = current.gauge_sum(RESIDENT_MEMORY) {
            total.push(("resident_memory_bytes".to_owned(), memory));
        }
        for gauge in &self.gauges {
            if let Some(value) = current.gauge_sum(gauge) {
                total.push((gauge.clone(), value));
            }
        }
        if let Some((seconds, previous)) = interval_seconds(previous, current) {
            for counter in self.counters.iter().filter(|counter| current.has(counter)) {
                let increase: f64 = current
                    .counters
                    .iter()
                    .filter(|((metric, _), _)| metric == counter)
                    .map(|(key, value)| grown(previous, key, *value))
                    .sum();
                total.push((format!("{counter}{RATE_SUFFIX}"), increase / seconds));
            }
            for histogram in &self.histograms {
                let merged = merged_increase(previous, current, &|metric, _| metric == histogram);
                for (suffix, quantile) in [("p50", 0.5), ("p99", 0.99)] {
                    if let Some(value) = histogram_quantile(quantile, &merged) {
                        total.push((format!("{histogram}:{suffix}"), value));
                    }
                }
            }
        }

        let domains: BTreeSet<&str> = current
            .counters
            .keys()
            .chain(current.gauges.keys())
            .filter(|(metric, _)| metric == REQUESTS || metric == OPEN_CALLS)
            .filter_map(|(_, labels)| labels.get("service").and_then(|service| domain_of(service)))
            .collect();
        let by_domain = if domains.len() > 1 {
            domains
                .into_iter()
                .map(|domain| (domain.to_owned(), grpc_figures(previous, current, &|labels| in_domain(labels, domain))))
                .collect()
        } else {
            BTreeMap::new()
        };
        TargetFigures { total, by_domain }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: f64, expected: f64) {
        assert!((actual - expected).abs() < 1e-9, "{actual} != {expected}");
    }

    fn figure(figures: &[(String, f64)], name: &str) -> Option<f64> {
        figures.iter().find(|(metric, _)| metric == name).map(|(_, value)| *value)
    }

    #[test]
    fn domains_come_from_the_proto_packages() {
        let domains = proto_domains();
        assert!(domains.contains("session") && domains.contains("monitor"), "{domains:?}");
    }

    #[test]
    fn counters_increase_across_resets() {
        close(increase(10.0, 25.0), 15.0);
        close(increase(25.0, 4.0), 4.0);
        close(increase(7.0, 7.0), 0.0);
    }

    #[test]
    fn quantiles_interpolate_inside_buckets() {
        // 10 observations ≤ 0.1, 10 more in (0.1, 0.2], 0 beyond.
        let buckets = [(0.1, 10.0), (0.2, 20.0), (0.5, 20.0), (f64::INFINITY, 20.0)];
        close(histogram_quantile(0.5, &buckets).unwrap(), 0.1);
        close(histogram_quantile(0.25, &buckets).unwrap(), 0.05);
        close(histogram_quantile(0.75, &buckets).unwrap(), 0.15);
        close(histogram_quantile(0.99, &buckets).unwrap(), 0.198);
        // Everything above the highest finite bound: that bound is the answer.
        close(histogram_quantile(0.99, &[(0.1, 0.0), (1.0, 0.0), (f64::INFINITY, 5.0)]).unwrap(), 1.0);
        assert_eq!(histogram_quantile(0.5, &[(0.1, 0.0), (f64::INFINITY, 0.0)]), None);
    }

    const BEFORE: &str = r#"# TYPE xiaowo_grpc_requests_total counter
xiaowo_grpc_requests_total{service="s",method="Get",code="OK"} 100
xiaowo_grpc_requests_total{service="s",method="Get",code="NOT_FOUND"} 10
# TYPE xiaowo_grpc_request_duration_seconds histogram
xiaowo_grpc_request_duration_seconds_bucket{service="s",method="Get",le="0.1"} 50
xiaowo_grpc_request_duration_seconds_bucket{service="s",method="Get",le="1"} 110
xiaowo_grpc_request_duration_seconds_bucket{service="s",method="Get",le="+Inf"} 110
xiaowo_grpc_request_duration_seconds_sum{service="s",method="Get"} 20
xiaowo_grpc_request_duration_seconds_count{service="s",method="Get"} 110
# TYPE xiaowo_auth_failures_total counter
xiaowo_auth_failures_total{service="session"} 1000
# TYPE xiaowo_sync_drift_seconds histogram
xiaowo_sync_drift_seconds_bucket{le="0.01"} 10
xiaowo_sync_drift_seconds_bucket{le="0.1"} 10
xiaowo_sync_drift_seconds_bucket{le="+Inf"} 10
xiaowo_sync_drift_seconds_sum 0.05
xiaowo_sync_drift_seconds_count 10
"#;

    const AFTER: &str = r#"# TYPE xiaowo_grpc_requests_total counter
xiaowo_grpc_requests_total{service="s",method="Get",code="OK"} 160
xiaowo_grpc_requests_total{service="s",method="Get",code="NOT_FOUND"} 30
xiaowo_grpc_requests_total{service="s",method="Put",code="INTERNAL"} 20
# TYPE xiaowo_grpc_request_duration_seconds histogram
xiaowo_grpc_request_duration_seconds_bucket{service="s",method="Get",le="0.1"} 100
xiaowo_grpc_request_duration_seconds_bucket{service="s",method="Get",le="1"} 210
xiaowo_grpc_request_duration_seconds_bucket{service="s",method="Get",le="+Inf"} 210
xiaowo_grpc_request_duration_seconds_bucket{service="s",method="WatchThings",le="0.1"} 0
xiaowo_grpc_request_duration_seconds_bucket{service="s",method="WatchThings",le="1"} 0
xiaowo_grpc_request_duration_seconds_bucket{service="s",method="WatchThings",le="+Inf"} 500
# TYPE xiaowo_grpc_open_calls gauge
xiaowo_grpc_open_calls{service="s",method="Get"} 2
xiaowo_grpc_open_calls{service="s",method="WatchThings"} 5
# TYPE xiaowo_auth_failures_total counter
xiaowo_auth_failures_total{service="session"} 30
# TYPE xiaowo_rooms_active gauge
xiaowo_rooms_active 4
# TYPE xiaowo_sync_drift_seconds histogram
xiaowo_sync_drift_seconds_bucket{le="0.01"} 20
xiaowo_sync_drift_seconds_bucket{le="0.1"} 30
xiaowo_sync_drift_seconds_bucket{le="+Inf"} 30
xiaowo_sync_drift_seconds_sum 0.5
xiaowo_sync_drift_seconds_count 30
"#;

    #[test]
    fn a_process_serving_several_domains_gets_figures_per_domain() {
        let before = Snapshot::parse(
            r#"# TYPE xiaowo_grpc_requests_total counter
xiaowo_grpc_requests_total{service="xiaowo.session.v1.SessionService",method="Get",code="OK"} 10
xiaowo_grpc_requests_total{service="xiaowo.room.v1.RoomService",method="Join",code="OK"} 10
"#,
            0,
        )
        .unwrap();
        let after = Snapshot::parse(
            r#"# TYPE xiaowo_grpc_requests_total counter
xiaowo_grpc_requests_total{service="xiaowo.session.v1.SessionService",method="Get",code="OK"} 30
xiaowo_grpc_requests_total{service="xiaowo.room.v1.RoomService",method="Join",code="OK"} 12
xiaowo_grpc_requests_total{service="xiaowo.room.v1.RoomService",method="Join",code="PERMISSION_DENIED"} 2
xiaowo_grpc_requests_total{service="grpc.health.v1.Health",method="Check",code="OK"} 100
"#,
            2_000,
        )
        .unwrap();
        let figures = Figures::default().compute(Some(&before), &after);
        close(figure(&figures.total, "requests_per_second").unwrap(), 62.0);
        let domains: Vec<&str> = figures.by_domain.keys().map(String::as_str).collect();
        assert_eq!(domains, ["room", "session"], "health belongs to no domain");
        close(figure(&figures.by_domain["session"], "requests_per_second").unwrap(), 10.0);
        close(figure(&figures.by_domain["room"], "requests_per_second").unwrap(), 2.0);
        // Two permission denials are refusals of the caller, not errors of the server.
        close(figure(&figures.by_domain["room"], "error_ratio").unwrap(), 0.0);
        close(figure(&figures.by_domain["room"], "refused_per_second").unwrap(), 1.0);

        let single = Snapshot::parse(&after_text_of_one_domain(), 2_000).unwrap();
        assert!(Figures::default().compute(Some(&before), &single).by_domain.is_empty());
    }

    fn after_text_of_one_domain() -> String {
        "# TYPE xiaowo_grpc_requests_total counter\n\
         xiaowo_grpc_requests_total{service=\"xiaowo.session.v1.SessionService\",method=\"Get\",code=\"OK\"} 30\n"
            .to_owned()
    }

    #[test]
    fn figures_over_an_interval() {
        let figures = Figures {
            counters: vec!["xiaowo_auth_failures_total".to_owned(), "xiaowo_flood_limited_total".to_owned()],
            gauges: vec!["xiaowo_rooms_active".to_owned()],
            histograms: vec!["xiaowo_sync_drift_seconds".to_owned()],
        };
        let before = Snapshot::parse(BEFORE, 1_000_000).unwrap();
        let after = Snapshot::parse(AFTER, 1_010_000).unwrap();
        let first = figures.compute(None, &before).total;
        assert_eq!(figure(&first, "requests_per_second"), None, "no rate from a single scrape");

        let figures = figures.compute(Some(&before), &after).total;
        // 60 OK + 20 NOT_FOUND + 20 INTERNAL (a new series counts from zero) in 10 s: only
        // INTERNAL is the server's fault.
        close(figure(&figures, "requests_per_second").unwrap(), 10.0);
        close(figure(&figures, "error_ratio").unwrap(), 0.2);
        close(figure(&figures, "refused_per_second").unwrap(), 0.0);
        // The counter went from 1000 to 30: a restart, so 30 new failures.
        close(figure(&figures, "xiaowo_auth_failures_total:rate").unwrap(), 3.0);
        assert_eq!(figure(&figures, "xiaowo_flood_limited_total:rate"), None, "not exported");
        close(figure(&figures, "open_calls").unwrap(), 7.0);
        close(figure(&figures, "xiaowo_rooms_active").unwrap(), 4.0);
        // Unary Get: 50 new ≤ 0.1 and 50 new in (0.1, 1]; the stream's 500 are left out.
        close(figure(&figures, "latency_p50_seconds").unwrap(), 0.1);
        close(figure(&figures, "latency_p99_seconds").unwrap(), 0.1 + 0.9 * 49.0 / 50.0);
        // Drift reports in the interval: 10 ≤ 10 ms, 10 in (10 ms, 100 ms].
        close(figure(&figures, "xiaowo_sync_drift_seconds:p50").unwrap(), 0.01);
        close(figure(&figures, "xiaowo_sync_drift_seconds:p99").unwrap(), 0.01 + 0.09 * 9.8 / 10.0);
    }
}
