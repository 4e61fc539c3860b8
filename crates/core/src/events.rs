//! Internal events, Vector's pattern: one struct per thing that happens in a service or a run.
//! Emitting one logs it (through `tracing`, at the level it deserves) and counts it in the
//! component's [`Counters`], named as its Prometheus metric (`gridwatch_<noun>_<unit>_total`,
//! never labelled by meter or site). Components emit events; nothing else counts.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

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
    /// Readings for hours that had closed incomplete, taken after they closed (a backfill after
    /// a comms outage, an actual days after its estimate): not late, but not judged either.
    Backfilled => "gridwatch_readings_backfilled_total",
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
    /// Rejected records the detector could not write to the DLQ (logged with their source).
    DlqWriteFailures => "gridwatch_dlq_write_failures_total",
    /// Times a service failed and restarted in-process (a broker gone, a transaction lost).
    Restarts => "gridwatch_service_restarts_total",
    /// Passing Kafka errors a service rode out without a restart (a broker of several lost, a
    /// leader or coordinator moving).
    KafkaRetried => "gridwatch_kafka_errors_retried_total",
    /// Records read from a topic, by `topic`.
    Consumed => "gridwatch_records_consumed_total",
    /// Records written to a topic in committed transactions (or acknowledged), by `topic`.
    Produced => "gridwatch_records_produced_total",
    /// HTTP requests answered, by `route` and `code`.
    HttpRequests => "gridwatch_http_requests_total",
    /// Inspection outcomes recorded (`POST /v1/outcomes`), by `verdict`.
    Outcomes => "gridwatch_outcomes_total",
    /// Bytes of detector state written to the state topic (committed snapshots).
    StateBytesWritten => "gridwatch_state_bytes_written_total",
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
    /// Readings the engines' order windows hold (`detector.order_window_s`), not yet judged.
    ReadingsHeld,
    /// Partitions of the readings topic this detector holds.
    PartitionsOwned,
    /// Partitions of the readings topic the detector group as a whole has left unwatched
    /// (held by no member, or never committed while holding readings) for longer than
    /// `detector.unowned_alert_s`: readings nobody judges. Alert on anything above 0.
    PartitionsUnowned,
}

impl Gauge {
    pub const ALL: &'static [Gauge] = &[
        Gauge::Restoring,
        Gauge::RestoreRemaining,
        Gauge::CheckpointBytes,
        Gauge::CheckpointTimestamp,
        Gauge::Meters,
        Gauge::ReadingsHeld,
        Gauge::PartitionsOwned,
        Gauge::PartitionsUnowned,
    ];

    /// The Prometheus name.
    pub fn name(self) -> &'static str {
        match self {
            Gauge::Restoring => "gridwatch_restoring",
            Gauge::RestoreRemaining => "gridwatch_restore_remaining_records",
            Gauge::CheckpointBytes => "gridwatch_checkpoint_bytes",
            Gauge::CheckpointTimestamp => "gridwatch_checkpoint_timestamp_seconds",
            Gauge::Meters => "gridwatch_meters",
            Gauge::ReadingsHeld => "gridwatch_readings_held",
            Gauge::PartitionsOwned => "gridwatch_partitions_owned",
            Gauge::PartitionsUnowned => "gridwatch_partitions_unowned",
        }
    }
}

/// Upper bounds (seconds) of the latency histograms' buckets.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Latencies a component measures (Prometheus histograms, in seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Histogram {
    /// A detector transaction: outputs sent, offsets added, committed.
    Transaction,
    /// From a reading's produce time to the commit of the transaction carrying its alerts.
    ReadingToCommit,
    /// A sink batch: files written and fsynced, offsets committed.
    SinkFlush,
    /// A handed-over partition's state read back (from the state topic or its file cache) and
    /// restored, before its replay.
    StateRestore,
}

impl Histogram {
    pub fn name(self) -> &'static str {
        match self {
            Histogram::Transaction => "gridwatch_transaction_duration_seconds",
            Histogram::ReadingToCommit => "gridwatch_reading_to_commit_seconds",
            Histogram::SinkFlush => "gridwatch_sink_flush_duration_seconds",
            Histogram::StateRestore => "gridwatch_state_restore_seconds",
        }
    }
}

#[derive(Debug, Default, Clone)]
struct Buckets {
    counts: [u64; BUCKETS.len() + 1],
    sum: f64,
}

/// The series with labels: counters broken down (the fixed counter keeps the total), labelled
/// gauges, histograms.
#[derive(Debug, Default)]
struct Labelled {
    counts: BTreeMap<(&'static str, String), u64>,
    gauges: BTreeMap<(&'static str, String), i64>,
    histograms: BTreeMap<Histogram, Buckets>,
}

/// One component's counts, levels and latencies; shared by reference (updates are atomic, or
/// under a lock for the labelled series, which move at most once per batch or request).
#[derive(Debug)]
pub struct Counters {
    counts: [AtomicU64; Counter::ALL.len()],
    levels: [AtomicU64; Gauge::ALL.len()],
    labelled: Mutex<Labelled>,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            levels: std::array::from_fn(|_| AtomicU64::new(0)),
            labelled: Mutex::new(Labelled::default()),
        }
    }
}

/// A label set in the Prometheus text format (`a="x",b="y"`), values escaped.
pub fn labels(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A reject reason's class, for the `reason` label (bounded: never a value from the input).
pub fn reason_class(reason: &str) -> &'static str {
    const FIELDS: [&str; 10] = [
        "meter_id",
        "ts",
        "interval_s",
        "kwh",
        "kvarh",
        "kwh_export",
        "voltage_v",
        "current_a",
        "feeder_id",
        "quality",
    ];
    if reason.starts_with("late") || reason.contains(": late") {
        return "late";
    }
    if reason.contains("in the future") {
        return "future";
    }
    if reason.contains("not an alert") {
        return "not_an_alert";
    }
    if let Some(rest) = reason.split("field ").nth(1) {
        let name = rest.split([':', ' ']).next().unwrap_or("");
        if let Some(f) = FIELDS.iter().find(|f| **f == name) {
            return match *f {
                "meter_id" => "invalid_meter_id",
                "ts" => "invalid_ts",
                "interval_s" => "invalid_interval_s",
                "kwh" => "invalid_kwh",
                "kvarh" => "invalid_kvarh",
                "kwh_export" => "invalid_kwh_export",
                "voltage_v" => "invalid_voltage_v",
                "current_a" => "invalid_current_a",
                "feeder_id" => "invalid_feeder_id",
                _ => "invalid_quality",
            };
        }
    }
    "malformed"
}

impl Counters {
    pub fn get(&self, c: Counter) -> u64 {
        self.counts[c as usize].load(Ordering::Relaxed)
    }

    fn add(&self, c: Counter, n: u64) {
        self.counts[c as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// Counts `n` under `c`'s total and under its series with `labels`.
    pub fn add_labelled(&self, c: Counter, labels: String, n: u64) {
        self.add(c, n);
        let mut l = self.labelled.lock().unwrap_or_else(|e| e.into_inner());
        *l.counts.entry((c.name(), labels)).or_default() += n;
    }

    /// Sets a labelled gauge (`gridwatch_consumer_lag{topic=…,partition=…}`).
    pub fn set_labelled(&self, name: &'static str, labels: String, v: i64) {
        let mut l = self.labelled.lock().unwrap_or_else(|e| e.into_inner());
        l.gauges.insert((name, labels), v);
    }

    /// Records one latency (seconds).
    pub fn observe(&self, h: Histogram, secs: f64) {
        self.observe_each(h, [secs]);
    }

    /// Records latencies (seconds), a batch's under one lock.
    pub fn observe_each(&self, h: Histogram, secs: impl IntoIterator<Item = f64>) {
        let mut l = self.labelled.lock().unwrap_or_else(|e| e.into_inner());
        let b = l.histograms.entry(h).or_default();
        for secs in secs {
            let i = BUCKETS
                .iter()
                .position(|&le| secs <= le)
                .unwrap_or(BUCKETS.len());
            b.counts[i] += 1;
            b.sum += secs;
        }
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
        let l = self.labelled.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        for &c in Counter::ALL {
            let name = c.name();
            out.push_str(&format!("# TYPE {name} counter\n"));
            let mut series = l
                .counts
                .range((name, String::new())..)
                .take_while(|((n, _), _)| *n == name)
                .peekable();
            if series.peek().is_none() {
                out.push_str(&format!("{name} {}\n", self.get(c)));
            }
            for ((_, labels), v) in series {
                out.push_str(&format!("{name}{{{labels}}} {v}\n"));
            }
        }
        let mut last = "";
        for ((name, labels), v) in &l.gauges {
            if *name != last {
                out.push_str(&format!("# TYPE {name} gauge\n"));
                last = name;
            }
            out.push_str(&format!("{name}{{{labels}}} {v}\n"));
        }
        for (h, b) in &l.histograms {
            let name = h.name();
            out.push_str(&format!("# TYPE {name} histogram\n"));
            let mut cumulative = 0;
            for (i, n) in b.counts.iter().enumerate() {
                cumulative += n;
                let le = BUCKETS.get(i).map_or("+Inf".to_string(), |x| x.to_string());
                out.push_str(&format!("{name}_bucket{{le=\"{le}\"}} {cumulative}\n"));
            }
            out.push_str(&format!(
                "{name}_sum {}\n{name}_count {cumulative}\n",
                b.sum
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
    /// For an hour that closed incomplete, arriving after it closed (a backfill after a comms
    /// outage, an actual days after its estimate): taken, not late, but its hour was judged
    /// without it.
    Backfilled,
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
                ReadingUse::Backfilled => Counter::Backfilled,
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
        RecordsRejected {
            class: reason_class(self.reason),
            n: 1,
        }
        .emit(c);
    }
}

/// Rejected records of one reason class (`reason_class`), counted together: a large body's.
pub struct RecordsRejected<'a> {
    pub class: &'a str,
    pub n: u64,
}

impl InternalEvent for RecordsRejected<'_> {
    fn emit(self, c: &Counters) {
        c.add_labelled(Counter::Rejected, labels(&[("reason", self.class)]), self.n);
    }
}

/// A rejected record the producer refused for the DLQ (too large for `message.max.bytes`,
/// the topic gone): logged at ERROR, counted, and skipped — the detector goes on, since it
/// would fail the same way on every replay.
pub struct DlqWriteFailed<'a> {
    pub source: &'a str,
    pub error: &'a str,
}

impl InternalEvent for DlqWriteFailed<'_> {
    fn emit(self, c: &Counters) {
        tracing::error!(
            source = self.source,
            "a rejected record could not be written to the DLQ, skipped: {}",
            self.error
        );
        c.add(Counter::DlqWriteFailures, 1);
    }
}

/// An alert message went out (to `alerts.jsonl`, or in a committed transaction).
pub struct AlertEmitted<'a> {
    pub kind: &'a str,
    pub status: &'a str,
}

impl InternalEvent for AlertEmitted<'_> {
    fn emit(self, c: &Counters) {
        c.add_labelled(
            Counter::Alerts,
            labels(&[("kind", self.kind), ("status", self.status)]),
            1,
        );
    }
}

/// Records were read from a topic.
pub struct RecordsConsumed<'a> {
    pub topic: &'a str,
    pub n: u64,
}

impl InternalEvent for RecordsConsumed<'_> {
    fn emit(self, c: &Counters) {
        if self.n > 0 {
            c.add_labelled(Counter::Consumed, labels(&[("topic", self.topic)]), self.n);
        }
    }
}

/// Records were written to a topic (committed, or acknowledged).
pub struct RecordsProduced<'a> {
    pub topic: &'a str,
    pub n: u64,
}

impl InternalEvent for RecordsProduced<'_> {
    fn emit(self, c: &Counters) {
        if self.n > 0 {
            c.add_labelled(Counter::Produced, labels(&[("topic", self.topic)]), self.n);
        }
    }
}

/// An HTTP request was answered.
pub struct HttpAnswered<'a> {
    pub route: &'a str,
    pub code: u16,
}

impl InternalEvent for HttpAnswered<'_> {
    fn emit(self, c: &Counters) {
        c.add_labelled(
            Counter::HttpRequests,
            labels(&[("route", self.route), ("code", &self.code.to_string())]),
            1,
        );
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
        c.observe(Histogram::Transaction, self.millis as f64 / 1000.0);
    }
}

/// A detector's state snapshot committed to the state topic.
pub struct StateWritten {
    pub partition: i32,
    pub bytes: u64,
}

impl InternalEvent for StateWritten {
    fn emit(self, c: &Counters) {
        tracing::debug!(
            partition = self.partition,
            bytes = self.bytes,
            "state snapshot committed"
        );
        c.add(Counter::StateBytesWritten, self.bytes);
    }
}

/// A partition's state restored (`from`: `kafka` or `file`), before its replay.
pub struct StateRestored<'a> {
    pub partition: i32,
    pub from: &'a str,
    pub bytes: u64,
    pub secs: f64,
}

impl InternalEvent for StateRestored<'_> {
    fn emit(self, c: &Counters) {
        tracing::info!(
            partition = self.partition,
            from = self.from,
            bytes = self.bytes,
            secs = self.secs,
            "state restored"
        );
        c.observe(Histogram::StateRestore, self.secs);
    }
}

/// A service failed and restarts in-process after a backoff (logged by the supervisor).
pub struct Restarted;

impl InternalEvent for Restarted {
    fn emit(self, c: &Counters) {
        c.add(Counter::Restarts, 1);
    }
}

/// A passing Kafka error ridden out in place (retried, or polled past), not a restart.
pub struct KafkaRetried<'a> {
    pub what: &'a str,
    pub error: &'a str,
}

impl InternalEvent for KafkaRetried<'_> {
    fn emit(self, c: &Counters) {
        tracing::warn!("{}: {} (retrying)", self.what, self.error);
        c.add(Counter::KafkaRetried, 1);
    }
}

/// Inspection outcomes recorded, of one verdict.
pub struct OutcomesRecorded<'a> {
    pub verdict: &'a str,
    pub n: u64,
}

impl InternalEvent for OutcomesRecorded<'_> {
    fn emit(self, c: &Counters) {
        c.add_labelled(
            Counter::Outcomes,
            labels(&[("verdict", self.verdict)]),
            self.n,
        );
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
        assert!(
            text.contains("gridwatch_records_rejected_total{reason=\"invalid_kwh\"} 1\n")
                && !text.contains("gridwatch_records_rejected_total 1"),
            "a broken-down counter shows its series, not the total: {text}"
        );
        assert!(
            text.contains("gridwatch_transaction_duration_seconds_bucket{le=\"0.005\"} 0\n")
                && text.contains("gridwatch_transaction_duration_seconds_bucket{le=\"0.01\"} 1\n")
                && text.contains("gridwatch_transaction_duration_seconds_count 1\n"),
            "{text}"
        );
    }

    /// Every metric the Grafana dashboard queries is one a service serves.
    #[test]
    fn the_dashboard_queries_only_metrics_that_exist() {
        let dashboard = include_str!("../../../deploy/grafana/gridwatch.json");
        let mut known: Vec<String> = Counter::ALL.iter().map(|c| c.name().to_string()).collect();
        known.extend(Gauge::ALL.iter().map(|g| g.name().to_string()));
        known.push("gridwatch_consumer_lag".into());
        known.push("gridwatch_partition_owned".into());
        for h in [
            Histogram::Transaction,
            Histogram::ReadingToCommit,
            Histogram::SinkFlush,
        ] {
            known.push(format!("{}_bucket", h.name()));
        }
        let mut used = 0;
        for (i, _) in dashboard.match_indices("gridwatch_") {
            let name: String = dashboard[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if name == "gridwatch_" {
                continue;
            }
            assert!(
                known.contains(&name),
                "the dashboard queries {name}, which no service serves"
            );
            used += 1;
        }
        assert!(used >= 15, "{used}");
    }

    #[test]
    fn labelled_series_escape_their_values_and_reasons_fall_in_bounded_classes() {
        assert_eq!(labels(&[("topic", "a\"b\\c")]), "topic=\"a\\\"b\\\\c\"");
        assert_eq!(reason_class("field kwh: -2 is negative"), "invalid_kwh");
        assert_eq!(
            reason_class("detector: not a valid reading: field interval_s: 0 is outside"),
            "invalid_interval_s"
        );
        assert_eq!(
            reason_class("field ts: 2030-01-01 is in the future"),
            "future"
        );
        assert_eq!(reason_class("late: more than …"), "late");
        assert_eq!(
            reason_class("unknown field `firmware`, expected one of"),
            "malformed"
        );
        assert_eq!(reason_class("field sneaky_label: x"), "malformed");
        let c = Counters::default();
        c.set_labelled("gridwatch_consumer_lag", labels(&[("partition", "0")]), 42);
        AlertEmitted {
            kind: "mining_signature",
            status: "open",
        }
        .emit(&c);
        let text = c.prometheus_text();
        assert!(
            text.contains(
                "# TYPE gridwatch_consumer_lag gauge\ngridwatch_consumer_lag{partition=\"0\"} 42\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("gridwatch_alerts_total{kind=\"mining_signature\",status=\"open\"} 1\n"),
            "{text}"
        );
        assert_eq!(c.get(Counter::Alerts), 1);
    }
}
