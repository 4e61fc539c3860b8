//! The loop's housekeeping after each batch: where restoring stands, checkpoints, the ownership
//! gauges and their check against the consumer's assignment, and the ten-second report (lag,
//! the stall check, the progress line).

use super::Detector;
use crate::audit::GroupWatch;
use crate::stats::log_progress;
use crate::{STALLED_AFTER, TIMEOUT};
use anyhow::Result;
use gridwatch_core::events::{labels, Gauge};
use gridwatch_core::kafka::report_lag;
use rdkafka::consumer::Consumer;
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

impl Detector<'_> {
    /// Caught up: every partition at its commit, or (a commit past the last record, as after
    /// transaction markers) at the end of what there is to read.
    pub(super) fn track_restore(&mut self, fetched: bool) {
        let mut left = 0;
        let look = !fetched || self.clocks.last_watermarks.elapsed() >= Duration::from_secs(1);
        if look {
            self.clocks.last_watermarks = Instant::now();
        }
        for (&p, task) in self.tasks.iter_mut() {
            if task.restoring()
                && look
                && self
                    .consumer
                    .fetch_watermarks(self.topic, p, TIMEOUT)
                    .is_ok_and(|(low, high)| task.next.max(low) >= high)
            {
                task.next = task.next.max(task.replay_until);
            }
            left += (task.replay_until - task.next).max(0);
        }
        let counters = self.counters;
        counters.set(Gauge::RestoreRemaining, left as u64);
        let meters: usize = self.tasks.values().map(|t| t.engine.meters()).sum();
        counters.set(Gauge::Meters, meters as u64);
        let held: usize = self.tasks.values().map(|t| t.engine.held()).sum();
        counters.set(Gauge::ReadingsHeld, held as u64);
        let now_restoring = !self.joined || left > 0;
        if now_restoring != self.restoring {
            self.restoring = now_restoring;
            counters.set(Gauge::Restoring, u64::from(now_restoring));
            if !now_restoring {
                tracing::info!(
                    seconds = self.clocks.started.elapsed().as_secs_f64(),
                    meters,
                    partitions = ?self.tasks.keys().collect::<Vec<_>>(),
                    "state rebuilt: live"
                );
            }
        }
    }

    /// Everything consumed so far has its outputs committed: the state may be saved. Also the
    /// checkpoints' total size, and the time of the oldest (once every task has one): what a
    /// restart would replay from.
    /// With the state in Kafka, a task's snapshot is due (for the next transaction) once
    /// `checkpoint_interval_s` has passed or `checkpoint_max_replay` readings came since the
    /// last: a restart, anywhere, replays at most that many, whatever the burst before it.
    pub(super) fn checkpoint_due(&mut self) {
        let interval = Duration::from_secs(self.d.checkpoint_interval_s);
        let most = self.d.checkpoint_max_replay as i64;
        let in_kafka = self.state_partitions > 0;
        for (&p, task) in self.tasks.iter_mut() {
            let timely = task.last_checkpoint.elapsed() >= interval;
            if in_kafka {
                let moved = task.next > task.snapshot_from;
                task.snapshot_due |= moved && (timely || task.next - task.snapshot_from >= most);
            } else if timely {
                task.checkpoint(&self.here, p, false);
            }
        }
        let written: Vec<(u64, u64)> = self.tasks.values().filter_map(|t| t.checkpointed).collect();
        if !written.is_empty() {
            let bytes = written.iter().map(|&(bytes, _)| bytes).sum();
            self.counters.set(Gauge::CheckpointBytes, bytes);
        }
        if !self.tasks.is_empty() && written.len() == self.tasks.len() {
            let oldest = written.iter().map(|&(_, at)| at).min().unwrap_or(0);
            self.counters.set(Gauge::CheckpointTimestamp, oldest);
        }
    }

    /// The partitions this instance owns, as gauges: set on every change of the tasks, so a
    /// scrape never reads a count from before the last rebalance.
    pub(super) fn publish_ownership(&self) {
        self.counters
            .set(Gauge::PartitionsOwned, self.tasks.len() as u64);
        for p in 0..self.partition_count {
            self.counters.set_labelled(
                "gridwatch_partition_owned",
                labels(&[("topic", self.topic), ("partition", &p.to_string())]),
                i64::from(self.tasks.contains_key(&p)),
            );
        }
    }

    /// Every partition the consumer holds has a task judging it, and every task a partition the
    /// consumer holds. Between batches (the group's changes all taken up) the two can only
    /// differ if a change was lost: such partitions are counted (the audit adds them to
    /// `gridwatch_partitions_unowned`), logged at ERROR, and repaired by leaving and rejoining
    /// the group once they have disagreed for `unowned_alert_s`.
    pub(super) fn check_tasks_match(&mut self, watch: &GroupWatch) {
        if self.consumer.context().changed() {
            return;
        }
        let Ok(assignment) = self.consumer.assignment() else {
            return;
        };
        let held: BTreeSet<i32> = assignment
            .elements_for_topic(self.topic)
            .iter()
            .map(|e| e.partition())
            .collect();
        let tasks: BTreeSet<i32> = self.tasks.keys().copied().collect();
        let differ: Vec<i32> = held.symmetric_difference(&tasks).copied().collect();
        watch
            .held_without_task
            .store(differ.len() as u64, Ordering::Release);
        if differ.is_empty() {
            self.clocks.mismatch_since = None;
            return;
        }
        let since = *self.clocks.mismatch_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= Duration::from_secs(self.d.unowned_alert_s) {
            tracing::error!(
                held = ?held,
                tasks = ?tasks,
                "partitions of {} held without a task judging them (or tasks without their \
                 partition): rejoining the group",
                self.topic
            );
            self.clocks.mismatch_since = None;
            watch.rejoin.store(true, Ordering::Release);
        }
    }

    /// Every ten seconds: lag per partition, the stall check, and the progress line.
    pub(super) fn report(&mut self) -> Result<()> {
        let parts: Vec<i32> = self.tasks.keys().copied().collect();
        let tasks = &self.tasks;
        let lags = report_lag(
            &self.consumer,
            self.topic,
            &parts,
            |p| tasks.get(&p).map(|t| t.next).filter(|&o| o > 0),
            self.counters,
        );
        self.publish_ownership();
        // Readings waiting (more than a transaction marker) on a partition that has given none
        // for a long while: the client stopped fetching it.
        let fetched_at = &mut self.clocks.fetched_at;
        fetched_at.retain(|p, _| tasks.contains_key(p));
        for (&p, &lag) in &lags {
            let since = *fetched_at.entry(p).or_insert_with(Instant::now);
            if lag <= 1 {
                fetched_at.insert(p, Instant::now());
            } else if since.elapsed() > STALLED_AFTER {
                anyhow::bail!(
                    "partition {p} of {} has {lag} readings waiting and gave none for {}s: \
                     fetching stalled, starting a new consumer",
                    self.topic,
                    since.elapsed().as_secs()
                );
            }
        }
        log_progress(
            "detector progress",
            self.counters,
            &self.latencies,
            self.meters(),
        );
        Ok(())
    }

    pub(super) fn meters(&self) -> usize {
        self.tasks.values().map(|t| t.engine.meters()).sum()
    }
}
