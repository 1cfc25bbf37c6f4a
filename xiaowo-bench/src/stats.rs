//! Latency percentiles from a sorted vector: exact, and cheap enough for the few million
//! samples one run collects.

/// Percentiles of a set of latencies, in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    /// How many samples.
    pub count: usize,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

/// Summarises latencies given in microseconds.
pub fn summarize(mut micros: Vec<u64>) -> Summary {
    if micros.is_empty() {
        return Summary::default();
    }
    micros.sort_unstable();
    // The sample at rank `permille` / 1000 of the way through, rounded to the nearest.
    let at = |permille: usize| micros[((micros.len() - 1) * permille + 500) / 1000] as f64 / 1000.0;
    Summary { count: micros.len(), p50_ms: at(500), p99_ms: at(990), max_ms: at(1000) }
}

/// Microseconds since the Unix epoch: the generator stamps events with it and receivers in the
/// same machine subtract it, so publish → receive needs no clock agreement.
pub fn wall_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| i64::try_from(since.as_micros()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_ranked_samples() {
        let summary = summarize((1..=1000).map(|ms| ms * 1000).collect());
        assert_eq!(summary.count, 1000);
        assert!((summary.p50_ms - 501.0).abs() < 1e-9 || (summary.p50_ms - 500.0).abs() < 1e-9);
        assert!((summary.p99_ms - 990.0).abs() < 1.01);
        assert!((summary.max_ms - 1000.0).abs() < 1e-9);
    }

    #[test]
    fn no_samples_give_zeros() {
        assert_eq!(summarize(Vec::new()).count, 0);
    }
}
