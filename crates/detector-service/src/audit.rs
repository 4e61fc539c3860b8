//! The group audit: the detector group as a whole watched from its own client, so that a
//! partition no member judges is seen, counted and repaired.

use crate::stats::now_ms;
use crate::ServiceConfig;
use gridwatch_core::events::{Counters, Gauge};
use gridwatch_core::kafka::{consumer_config, group_status, Ownership, Quiet, QuietConsumer};
use gridwatch_core::KafkaConfig;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What the run loop and the audit tell each other: the audit asks the loop to leave and rejoin
/// the group; the loop says how many partitions it holds without a task judging them.
#[derive(Debug, Default)]
pub struct GroupWatch {
    /// Set to make the run loop leave the group and join it again.
    pub rejoin: AtomicBool,
    /// Partitions the consumer holds that no task judges, or tasks for partitions it does not
    /// hold, as the run loop last saw them (0 in a healthy detector).
    pub held_without_task: AtomicU64,
}

/// Watches the detector group as a whole, every few seconds until `stop`: the partitions of
/// the readings topic against the members' assignments (the coordinator's description) and the
/// group's committed offsets. Partitions unwatched longer than `unowned_alert_s` are counted in
/// `gridwatch_partitions_unowned` and logged at ERROR, and `rejoin` asks the run loop to leave
/// and rejoin the group (at most once per bound), which makes the group hand every partition
/// out afresh. Partitions this instance holds without a task judging them (the run loop's
/// count in `watch`) are counted in the gauge too. Its own client, so a slow coordinator never
/// holds up judging.
pub fn audit(
    k: &KafkaConfig,
    d: &ServiceConfig,
    counters: &Counters,
    stop: &AtomicBool,
    watch: &GroupWatch,
) {
    let topic = &k.topics.readings;
    let bound = Duration::from_secs(d.unowned_alert_s);
    let mut ownership = Ownership::new(bound.as_millis() as i64);
    let mut last_rejoin: Option<Instant> = None;
    let mut client: Option<QuietConsumer> = None;
    let mut next_look = Instant::now() + Duration::from_secs(5);
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(200));
        if Instant::now() < next_look {
            continue;
        }
        next_look = Instant::now() + Duration::from_secs(5);
        if client.is_none() {
            match consumer_config(k, &d.group_id).create_with_context(Quiet) {
                Ok(c) => client = Some(c),
                Err(e) => {
                    tracing::warn!("group audit: {e}");
                    continue;
                }
            }
        }
        let Some(c) = &client else { continue };
        let looked = group_status(c, &d.group_id, topic, Duration::from_secs(10)).map(|s| {
            let parts: Vec<i32> = s.partitions.iter().map(|p| p.partition).collect();
            let never: BTreeSet<i32> = s
                .partitions
                .iter()
                .filter(|p| p.committed.is_none() && p.high > p.low)
                .map(|p| p.partition)
                .collect();
            ownership.look(now_ms(), &parts, &s.view, &never)
        });
        match looked {
            Ok(unwatched) => {
                let taskless = watch.held_without_task.load(Ordering::Acquire);
                counters.set(Gauge::PartitionsUnowned, unwatched.len() as u64 + taskless);
                if !unwatched.is_empty() {
                    tracing::error!(
                        partitions = ?unwatched,
                        "partitions of {topic} unwatched by the group {} for over {}s: their \
                         readings are not being judged",
                        d.group_id,
                        bound.as_secs()
                    );
                    if last_rejoin.is_none_or(|t| t.elapsed() > bound) {
                        last_rejoin = Some(Instant::now());
                        watch.rejoin.store(true, Ordering::Release);
                    }
                }
            }
            // Nothing known is nothing claimed: the gauge keeps its last value. A broker lost
            // or an offset a transaction still holds is normal for a moment: a debug line.
            Err(e) if e.passing() => tracing::debug!("group audit: {e} (looking again)"),
            Err(e) => tracing::warn!("group audit: {e}"),
        }
    }
}
