//! Internal events, Vector's pattern: one struct per thing that happens in a service or a run.
//! Emitting one logs it (through `tracing`, at the level it deserves) and counts it in the
//! component's [`Counters`], named as its Prometheus metric (`gridwatch_<noun>_<unit>_total`,
//! never labelled by meter or site). Components emit events; nothing else counts.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[$doc:meta])* $v:ident => $name:literal),+ $(,)?) => {
        /// What a component counts.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Counter { $($(#[$doc])* $v),+ }

        impl Counter {
            pub const ALL: &'static [Counter] = &[$(Counter::$v),+];

            /// The Prometheus name.
            pub fn name(self) -> &'static str {
                match self { $(Counter::$v => $name),+ }
            }
        }
    };
}

counters! {
    /// Readings the ingester validated and sent to the readings topic.
    Ingested => "gridwatch_readings_ingested_total",
    /// Readings the detection engine counted (not duplicates, not late).
    Readings => "gridwatch_readings_total",
    /// Readings whose (meter, ts) was already counted.
    Duplicates => "gridwatch_readings_duplicate_total",
    /// Readings more than the lateness horizon behind the newest reading of their meter.
    Late => "gridwatch_readings_late_total",
    /// Readings that replaced an estimate of the same meter and interval (an `actual` after
    /// an `estimated`, or a newer estimate).
    Corrected => "gridwatch_readings_corrected_total",
    /// Readings fed again to rebuild state after a start, producing nothing.
    Replayed => "gridwatch_readings_replayed_total",
    /// Records that could not become a reading (or an alert, at the sink), with a reason.
    Rejected => "gridwatch_records_rejected_total",
    /// Records written to the dead-letter queue (or the reject file).
    Dlq => "gridwatch_dlq_records_total",
    /// Alert messages produced.
    Alerts => "gridwatch_alerts_total",
    /// Kafka transactions committed, and the wall time they took.
    Transactions => "gridwatch_transactions_total",
    CommitMillis => "gridwatch_commit_milliseconds_total",
    /// Flagged-site files (Arrow or Parquet) moved into place, and the alert rows they hold.
    FlaggedFiles => "gridwatch_flagged_files_total",
    FlaggedRows => "gridwatch_flagged_rows_total",
    /// Alert rows already on disk (a restart re-read them), not written twice.
    AlertsSkipped => "gridwatch_alerts_skipped_total",
    /// Records the broker did not acknowledge.
    SendFailures => "gridwatch_send_failures_total",
    /// Times a service failed and restarted in-process (a broker gone, a transaction lost).
    Restarts => "gridwatch_service_restarts_total",
}

/// Levels a component reports (Prometheus gauges): set, not counted up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gauge {
    /// 1 while a service is not ready: the detector rebuilding its state (restoring a
    /// checkpoint, replaying to its committed offsets), or any service restarting after a
    /// failure until it is connected again; its `/readyz` answers 503 meanwhile.
    Restoring,
    /// Readings still to replay before the detector is live.
    RestoreRemaining,
    /// Size of the last engine checkpoint written.
    CheckpointBytes,
    /// When the last engine checkpoint was written (Unix seconds; its age is `time() - this`).
    CheckpointTimestamp,
    /// Engines' meters tracked.
    Meters,
}

impl Gauge {
    pub const ALL: &'static [Gauge] = &[
        Gauge::Restoring,
        Gauge::RestoreRemaining,
        Gauge::CheckpointBytes,
        Gauge::CheckpointTimestamp,
        Gauge::Meters,
    ];

    /// The Prometheus name.
    pub fn name(self) -> &'static str {
        match self {
            Gauge::Restoring => "gridwatch_restoring",
            Gauge::RestoreRemaining => "gridwatch_restore_remaining_records",
            Gauge::CheckpointBytes => "gridwatch_checkpoint_bytes",
            Gauge::CheckpointTimestamp => "gridwatch_checkpoint_timestamp_seconds",
            Gauge::Meters => "gridwatch_meters",
        }
    }
}

/// One component's counts and levels; shared by reference (all updates are atomic).
#[derive(Debug)]
pub struct Counters {
    counts: [AtomicU64; Counter::ALL.len()],
    levels: [AtomicU64; Gauge::ALL.len()],
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            levels: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Counters {
    pub fn get(&self, c: Counter) -> u64 {
        self.counts[c as usize].load(Ordering::Relaxed)
    }

    fn add(&self, c: Counter, n: u64) {
        self.counts[c as usize].fetch_add(n, Ordering::Relaxed);
    }

    pub fn level(&self, g: Gauge) -> u64 {
        self.levels[g as usize].load(Ordering::Relaxed)
    }

    pub fn set(&self, g: Gauge, v: u64) {
        self.levels[g as usize].store(v, Ordering::Relaxed);
    }

    /// Every counter in the Prometheus text format (a `# TYPE` line and its value), for a
    /// `/metrics` endpoint.
    pub fn prometheus_text(&self) -> String {
        let mut out = String::new();
        for &c in Counter::ALL {
            out.push_str(&format!(
                "# TYPE {name} counter\n{name} {}\n",
                self.get(c),
                name = c.name()
            ));
        }
        for &g in Gauge::ALL {
            out.push_str(&format!(
                "# TYPE {name} gauge\n{name} {}\n",
                self.level(g),
                name = g.name()
            ));
        }
        out
    }

    /// Every counter that moved, by name: for progress logs.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        Counter::ALL
            .iter()
            .map(|&c| (c.name(), self.get(c)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

/// Something that happened: emitting it logs and counts it.
pub trait InternalEvent {
    fn emit(self, counters: &Counters);
}

/// What the detection engine made of a reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadingUse {
    /// Added to its hour.
    Counted,
    /// Its interval was already counted (or, for an estimate, already measured).
    Duplicate,
    /// Beyond the lateness horizon: rejected with a reason.
    Late,
    /// Replaced an estimate of the same interval.
    Corrected,
}

/// A valid reading was sent to the readings topic.
pub struct ReadingIngested;

impl InternalEvent for ReadingIngested {
    fn emit(self, c: &Counters) {
        c.add(Counter::Ingested, 1);
    }
}

/// A reading reached the detection engine.
pub struct ReadingProcessed(pub ReadingUse);

impl InternalEvent for ReadingProcessed {
    fn emit(self, c: &Counters) {
        c.add(
            match self.0 {
                ReadingUse::Counted => Counter::Readings,
                ReadingUse::Duplicate => Counter::Duplicates,
                ReadingUse::Late => Counter::Late,
                ReadingUse::Corrected => Counter::Corrected,
            },
            1,
        );
    }
}

/// A retained reading was fed again to rebuild state (nothing is produced for it).
pub struct ReadingReplayed;

impl InternalEvent for ReadingReplayed {
    fn emit(self, c: &Counters) {
        c.add(Counter::Replayed, 1);
    }
}

/// A record could not be used; it goes to the DLQ (or reject file) with this reason.
pub struct RecordRejected<'a> {
    pub reason: &'a str,
    /// `file:line`, `http:<request>#<n>` or `topic/partition/offset`.
    pub source: &'a str,
}

impl InternalEvent for RecordRejected<'_> {
    fn emit(self, c: &Counters) {
        tracing::debug!(
            source = self.source,
            reason = self.reason,
            "record rejected"
        );
        c.add(Counter::Rejected, 1);
    }
}

/// Alert messages went out (to `alerts.jsonl`, or in a committed transaction).
pub struct AlertsEmitted(pub u64);

impl InternalEvent for AlertsEmitted {
    fn emit(self, c: &Counters) {
        c.add(Counter::Alerts, self.0);
    }
}

/// Records were written to the dead-letter queue or the reject file.
pub struct DlqWritten(pub u64);

impl InternalEvent for DlqWritten {
    fn emit(self, c: &Counters) {
        c.add(Counter::Dlq, self.0);
    }
}

/// A Kafka transaction (outputs and the offsets they cover) committed.
pub struct TransactionCommitted {
    pub millis: u64,
}

impl InternalEvent for TransactionCommitted {
    fn emit(self, c: &Counters) {
        tracing::trace!(millis = self.millis, "transaction committed");
        c.add(Counter::Transactions, 1);
        c.add(Counter::CommitMillis, self.millis);
    }
}

/// A service failed and restarts in-process after a backoff (logged by the supervisor).
pub struct Restarted;

impl InternalEvent for Restarted {
    fn emit(self, c: &Counters) {
        c.add(Counter::Restarts, 1);
    }
}

/// Flagged-site files moved into place.
pub struct FilesWritten {
    pub files: u64,
    pub rows: u64,
}

impl InternalEvent for FilesWritten {
    fn emit(self, c: &Counters) {
        if self.rows > 0 {
            tracing::info!(rows = self.rows, files = self.files, "alerts written");
        }
        c.add(Counter::FlaggedFiles, self.files);
        c.add(Counter::FlaggedRows, self.rows);
    }
}

/// An alert row already on disk was read again and not written twice.
pub struct AlertSkipped;

impl InternalEvent for AlertSkipped {
    fn emit(self, c: &Counters) {
        c.add(Counter::AlertsSkipped, 1);
    }
}

/// The broker did not acknowledge a record (the caller reports the first of them: a broker
/// that is down fails every record).
pub struct SendFailed<'a> {
    pub error: &'a str,
}

impl InternalEvent for SendFailed<'_> {
    fn emit(self, c: &Counters) {
        tracing::debug!(error = self.error, "record not acknowledged by Kafka");
        c.add(Counter::SendFailures, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_count_under_their_metric_names() {
        let c = Counters::default();
        ReadingProcessed(ReadingUse::Counted).emit(&c);
        ReadingProcessed(ReadingUse::Counted).emit(&c);
        ReadingProcessed(ReadingUse::Late).emit(&c);
        TransactionCommitted { millis: 7 }.emit(&c);
        RecordRejected {
            reason: "field kwh: missing",
            source: "x.csv:3",
        }
        .emit(&c);
        assert_eq!(c.get(Counter::Readings), 2);
        assert_eq!(c.get(Counter::Late), 1);
        assert_eq!(c.get(Counter::Duplicates), 0);
        assert_eq!(
            c.snapshot(),
            vec![
                ("gridwatch_readings_total", 2),
                ("gridwatch_readings_late_total", 1),
                ("gridwatch_records_rejected_total", 1),
                ("gridwatch_transactions_total", 1),
                ("gridwatch_commit_milliseconds_total", 7),
            ]
        );
        for k in Counter::ALL {
            let n = k.name();
            assert!(n.starts_with("gridwatch_") && n.ends_with("_total"), "{n}");
        }
        let text = c.prometheus_text();
        assert!(
            text.contains("# TYPE gridwatch_readings_total counter\ngridwatch_readings_total 2\n"),
            "{text}"
        );
        assert!(text.contains("gridwatch_alerts_total 0\n"), "{text}");
    }
}
