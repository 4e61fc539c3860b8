//! The sink as a Kafka service: `gridwatch.alerts` (read_committed) to Arrow files. Offsets are
//! committed only after the files holding those rows are renamed into place. Files are named
//! by their offsets, and rows at or below the highest offset already on disk are skipped, so
//! a crash between rename and commit neither loses nor duplicates a row.

use crate::writer::{Batches, FlaggedFiles, Row};
use anyhow::{Context, Result};
use gridwatch_core::events::{
    AlertSkipped, Counters, FilesWritten, Gauge, Histogram, InternalEvent, RecordRejected,
    RecordsConsumed,
};
use gridwatch_core::kafka::{group_member_config, instance_id, report_lag, ride_out, GroupEvents};
use gridwatch_core::{Alert, KafkaConfig, SinkConfig};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::Offset;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Runs until `stop` is set; then writes what is pending, commits, and returns. Counts in
/// `counters` (which the metrics endpoint serves).
pub fn run(
    k: &KafkaConfig,
    s: &SinkConfig,
    out: &Path,
    counters: &Counters,
    stop: &AtomicBool,
) -> Result<()> {
    counters.set(Gauge::Restoring, 1);
    let instance = instance_id(&s.instance_id);
    let files = FlaggedFiles::open(out, s.format, &format!("sink-{instance}"))
        .with_context(|| format!("{}: cannot prepare output", out.display()))?;
    let mut written = files.on_disk()?;
    let consumer: BaseConsumer<GroupEvents> = group_member_config(k, &s.group_id, &instance)
        .create_with_context(GroupEvents::default())?;
    let topic = &k.topics.alerts;
    consumer.subscribe(&[topic.as_str()])?;
    tracing::info!(out = %out.display(), instance, written = ?written.last_offsets(), "sink started");
    counters.set(Gauge::Restoring, 0);

    let mut batches = Batches::default();
    let mut oldest: Option<Instant> = None;
    let mut consumed = false;
    // The next offset per partition: where the group committed, then what was read.
    let mut next: std::collections::BTreeMap<i32, i64> = Default::default();
    let mut last_lag = Instant::now();
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        if !stopping {
            let msg = consumer.poll(Duration::from_millis(100));
            // The group moved partitions: rows of those taken away are dropped (their next
            // owner reads them from the group's commit), and what other sinks have written
            // is looked at again, so rows they wrote and did not commit are not written twice.
            if let Some(revoked) = consumer.context().take() {
                batches.forget(&revoked);
                for p in &revoked {
                    next.remove(p);
                }
                written = files.on_disk()?;
                // Where the group left the partitions now held (for the lag, before a read).
                if let Ok(c) = consumer.committed(Duration::from_secs(10)) {
                    for e in c.elements() {
                        if let Offset::Offset(o) = e.offset() {
                            next.entry(e.partition()).or_insert(o);
                        }
                    }
                }
            }
            if let Some(msg) = msg {
                // A passing error (a broker of several lost, a leader moving) is ridden out,
                // as the detector does: a new run would be another rebalance.
                let msg = match msg {
                    Ok(msg) => msg,
                    Err(e) if ride_out(&e, "reading alerts", counters) => continue,
                    Err(e) => return Err(e).context("reading alerts"),
                };
                consumed = true;
                let (p, offset) = (msg.partition(), msg.offset());
                next.insert(p, offset + 1);
                RecordsConsumed { topic, n: 1 }.emit(counters);
                match msg.payload().map(serde_json::from_slice::<Alert>) {
                    Some(Ok(alert)) => {
                        let row = Row { offset, alert };
                        if written.covers(p, &row) {
                            AlertSkipped.emit(counters);
                        } else {
                            batches.push(p, row);
                            oldest.get_or_insert_with(Instant::now);
                        }
                    }
                    other => {
                        let reason = format!("not an alert, skipped: {other:?}");
                        let source = format!("{topic}/{p}/{offset}");
                        tracing::error!("{source}: {reason}");
                        RecordRejected {
                            reason: &reason,
                            source: &source,
                        }
                        .emit(counters);
                    }
                }
            }
        }
        let aged = oldest.is_some_and(|t| t.elapsed() >= Duration::from_secs(s.roll_age_s));
        if last_lag.elapsed() >= Duration::from_secs(10) {
            last_lag = Instant::now();
            let parts: Vec<i32> = consumer
                .assignment()
                .map(|a| a.elements().iter().map(|e| e.partition()).collect())
                .unwrap_or_default();
            // The consumer's position passes the transaction markers that end the detector's
            // batches (no record carries their offsets): a partition read to its end has no lag.
            let position = consumer.position().unwrap_or_default();
            let at = |p: i32| {
                let read = match position.find_partition(topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => Some(o),
                    _ => None,
                };
                next.get(&p).copied().max(read)
            };
            report_lag(&consumer, topic, &parts, at, counters);
        }
        if batches.len() >= s.roll_rows || aged || stopping {
            let flushing = Instant::now();
            let rows = batches.len() as u64;
            let done = batches.flush(&files)?;
            FilesWritten {
                files: done.len() as u64,
                rows,
            }
            .emit(counters);
            oldest = None;
            if consumed {
                // A commit refused while the group rebalances is not an error: the rows are
                // on disk, a later commit covers them, and whoever reads them again skips them.
                match consumer.commit(&consumer.position()?, CommitMode::Sync) {
                    Ok(()) => consumed = false,
                    Err(e) => tracing::warn!("sink offsets not committed (next time): {e}"),
                }
            }
            if rows > 0 {
                counters.observe(Histogram::SinkFlush, flushing.elapsed().as_secs_f64());
            }
        }
        if stopping {
            break;
        }
    }
    tracing::info!(counters = ?counters.snapshot(), "sink stopped");
    Ok(())
}
