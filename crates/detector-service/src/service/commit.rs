//! The loop's transaction: a batch's alerts, DLQ records and due snapshots committed with the
//! tasks' offsets (and what they said, and which snapshot they stand on), or refused and every
//! task rewound to what Kafka says the group committed.

use super::Detector;
use crate::assign::committed_offsets;
use crate::producer::{refused, send_batch, Batch};
use crate::state::{new_generation, Snapshot, StateRef};
use crate::stats::now_ms;
use crate::task::Task;
use crate::TIMEOUT;
use anyhow::Result;
use gridwatch_core::events::{
    AlertEmitted, DlqWritten, Histogram, InternalEvent, RecordsProduced, StateWritten,
    TransactionCommitted,
};
use rdkafka::consumer::Consumer;
use rdkafka::producer::Producer;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::Instant;

/// Where each task's readings stand, to commit with the batch, and (in the metadata) what it
/// said and the snapshot it stands on — `placed` where this transaction carries a new one.
fn position(
    tasks: &BTreeMap<i32, Task>,
    topic: &str,
    placed: &BTreeMap<i32, StateRef>,
) -> Result<TopicPartitionList> {
    let mut position = TopicPartitionList::new();
    for (&p, task) in tasks {
        if task.committable() > 0 {
            let mut e = position.add_partition(topic, p);
            e.set_offset(Offset::Offset(task.committable()))?;
            e.set_metadata(task.metadata(placed.get(&p).copied()));
        }
    }
    Ok(position)
}

impl Detector<'_> {
    /// The snapshots this transaction carries: of each live task whose state is due.
    fn snapshots(&self) -> Vec<Snapshot> {
        if self.state_partitions == 0 {
            return Vec::new();
        }
        self.tasks
            .iter()
            .filter(|(_, t)| t.snapshot_due && !t.restoring())
            .map(|(&p, t)| {
                let (header, body) = t.snapshot(&self.here, p, new_generation());
                Snapshot {
                    group: self.d.group_id.clone(),
                    partition: p,
                    state_partition: p % self.state_partitions,
                    header,
                    body,
                }
            })
            .collect()
    }

    /// Whether a task's snapshot is due: a transaction is then committed even with nothing
    /// else to say.
    pub(super) fn snapshot_waiting(&self) -> bool {
        self.state_partitions > 0
            && self
                .tasks
                .values()
                .any(|t| t.snapshot_due && !t.restoring())
    }

    fn snapshots_committed(&mut self, snapshots: Vec<Snapshot>, placed: BTreeMap<i32, StateRef>) {
        for s in snapshots {
            let (Some(task), Some(&at)) =
                (self.tasks.get_mut(&s.partition), placed.get(&s.partition))
            else {
                continue;
            };
            StateWritten {
                partition: s.partition,
                bytes: s.body.len() as u64,
            }
            .emit(self.counters);
            task.snapshot_committed(at, s.header, s.body);
        }
    }

    /// Commits the batch in one transaction. `Ok(false)`: the transaction was refused, and the
    /// tasks were rewound to what Kafka says the group committed, to judge again.
    pub(super) fn commit(&mut self) -> Result<bool> {
        let landed = self.commit_or_abort()?;
        if !landed {
            self.rewind_all()?;
        }
        Ok(landed)
    }

    /// Sends the batch and commits it; a refused transaction is aborted and the batch dropped
    /// (`Ok(false)`: the caller rewinds). Any other error ends the run.
    pub(super) fn commit_or_abort(&mut self) -> Result<bool> {
        let committing = Instant::now();
        let snapshots = self.snapshots();
        let p = &self.pending;
        let batch = Batch {
            out: &p.out,
            dlq: &p.dlq,
            snapshots: &snapshots,
        };
        let (tasks, topic) = (&self.tasks, self.topic);
        let sent = send_batch(
            &self.producer,
            &self.consumer,
            self.k,
            batch,
            |placed| position(tasks, topic, placed),
            self.counters,
        );
        match sent {
            Ok((unwritten, placed)) => {
                self.committed(unwritten, committing);
                self.snapshots_committed(snapshots, placed);
                Ok(true)
            }
            Err(e) if refused(&e) => {
                tracing::warn!("transaction refused, judging again from the checkpoints: {e}");
                self.producer.abort_transaction(TIMEOUT)?;
                self.gathered.clear();
                self.pending.clear();
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// After a commit: what each task committed and said, and the figures.
    fn committed(&mut self, unwritten: usize, committing: Instant) {
        for task in self.tasks.values_mut() {
            task.committed = task.committable();
            task.said = Some(task.registry.clone());
        }
        let counters = self.counters;
        TransactionCommitted {
            millis: committing.elapsed().as_millis() as u64,
        }
        .emit(counters);
        let at = now_ms();
        for &t in &self.pending.produced_at {
            self.latencies.record(at - t);
        }
        counters.observe_each(
            Histogram::ReadingToCommit,
            self.pending
                .produced_at
                .iter()
                .map(|&t| (at - t) as f64 / 1000.0),
        );
        for o in &self.pending.out {
            AlertEmitted {
                kind: o.kind,
                status: o.status.as_str(),
            }
            .emit(counters);
        }
        let (out, dlq) = (self.pending.out.len(), self.pending.dlq.len() - unwritten);
        let k = self.k;
        for (t, n) in [
            (&k.topics.alerts, out),
            (&k.topics.suspects, out),
            (&k.topics.dlq, dlq),
        ] {
            RecordsProduced {
                topic: t,
                n: n as u64,
            }
            .emit(counters);
        }
        DlqWritten(dlq as u64).emit(counters);
        self.pending.clear();
    }

    /// After a transaction refused (a rebalance moved the group's generation on, KIP-447, or the
    /// transaction failed before its end) and aborted: every task goes back to its checkpoint
    /// and replays silently up to the offset the group has committed — asked of Kafka after the
    /// abort, never taken from this instance's own belief, so a transaction that landed after
    /// all is neither said twice nor one that did not land lost — and says the register rows
    /// past those the commit's metadata names.
    pub(super) fn rewind_all(&mut self) -> Result<()> {
        if self.tasks.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for &p in self.tasks.keys() {
            tpl.add_partition(self.topic, p);
        }
        let committed = committed_offsets(&self.consumer, self.topic, &tpl)?;
        let restorer = self.consumer.context().restorer();
        for (&p, task) in self.tasks.iter_mut() {
            let c = committed.get(&p).cloned().unwrap_or_default();
            let restored = restorer.restore(&self.here, p, &c);
            task.rewind((p, c), restored, self.engine)?;
            let from = match task.next {
                0 => Offset::Beginning,
                o => Offset::Offset(o),
            };
            self.consumer.seek(self.topic, p, from, TIMEOUT)?;
        }
        // Register rows applied since the last commit were in the refused transaction: their
        // alerts are said again.
        self.read_side()
    }
}
