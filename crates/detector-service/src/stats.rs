//! What the detector says of its own progress: reading-to-commit latencies and the periodic
//! progress line.

use gridwatch_core::events::Counters;

/// Reading-to-commit latencies in 1 ms buckets up to a minute (the last bucket holds the rest).
#[derive(Debug)]
pub(crate) struct Latencies {
    counts: Vec<u64>,
    total: u64,
}

impl Latencies {
    pub(crate) fn new() -> Self {
        Latencies {
            counts: vec![0; 60_001],
            total: 0,
        }
    }

    pub(crate) fn record(&mut self, ms: i64) {
        let i = ms.clamp(0, 60_000) as usize;
        self.counts[i] += 1;
        self.total += 1;
    }

    pub(crate) fn quantile(&self, q: f64) -> u64 {
        let want = (q * self.total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (ms, n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= want {
                return ms as u64;
            }
        }
        0
    }
}

/// The wall clock in Unix milliseconds (latencies, checkpoint ages, the audit's bounds).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Its counts, and how long after it was produced each live reading's batch committed — the
/// latency from a reading to any alert it raises.
pub(crate) fn log_progress(what: &str, counters: &Counters, latencies: &Latencies, meters: usize) {
    tracing::info!(
        counters = ?counters.snapshot(),
        latency_p50_ms = latencies.quantile(0.5),
        latency_p99_ms = latencies.quantile(0.99),
        meters,
        "{what}"
    );
}

#[cfg(test)]
mod tests {
    use super::Latencies;

    #[test]
    fn latency_quantiles_come_from_the_recorded_distribution() {
        let mut l = Latencies::new();
        for ms in 1..=100 {
            l.record(ms);
        }
        l.record(-5);
        l.record(90_000);
        assert_eq!(l.quantile(0.5), 50);
        // 102 values: 0 (clamped), 1..=100, 60000 (clamped): the 101st is 100.
        assert_eq!(l.quantile(0.99), 100);
        assert_eq!(l.quantile(1.0), 60_000);
        assert_eq!(Latencies::new().quantile(0.99), 0);
    }
}
