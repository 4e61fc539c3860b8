//! A partition's share of the detector, as a Kafka Streams task: its engine, where its readings
//! stand (replayed silently below the group's commit, judged live above it), and its
//! checkpoint; and the judging of one batch's readings with it.

use crate::assign::Committed;
use crate::checkpoints::{Header, Restored, Store};
use crate::producer::Outgoing;
use crate::state::StateRef;
use crate::stats::now_ms;
use anyhow::Result;
use gridwatch_anomaly_detector::{Engine, EngineConfig, ReadingUse, LATE_REASON};
use gridwatch_core::events::{
    Counters, InternalEvent, ReadingProcessed, ReadingReplayed, RecordRejected,
};
use gridwatch_core::{DlqRecord, Reading, Validation};
use std::collections::BTreeMap;
use std::time::Instant;

/// The offset metadata's mark: what follows is the register offsets said ([`Task::metadata`]).
const SAID_PREFIX: &str = "gw-said:";

/// The register offsets a readings partition's committed offset carries as its metadata
/// (`None`: a commit without them, from a release before, or none at all).
pub(crate) fn said_of(metadata: &str) -> Option<BTreeMap<i32, i64>> {
    let said = metadata.split(';').next().unwrap_or_default();
    let rows = said.strip_prefix(SAID_PREFIX)?;
    rows.split(',')
        .filter(|r| !r.is_empty())
        .map(|r| {
            let (rp, o) = r.split_once(':')?;
            Some((rp.parse().ok()?, o.parse().ok()?))
        })
        .collect()
}

/// A partition's share of the detector, as a Kafka Streams task: its own engine (the meters
/// whose readings the partition carries: a feeder's, with its head meter), where its readings
/// stand, and its checkpoint. A partition moves between instances with its checkpoint; N
/// instances hold the tasks one instance would, and give its alerts.
pub(crate) struct Task {
    pub(crate) engine: Engine,
    /// The next readings offset the engine has not seen (0: none yet).
    pub(crate) next: i64,
    /// The group's committed offset when the partition came to this instance: readings below
    /// it were answered by an earlier owner and are replayed silently.
    pub(crate) replay_until: i64,
    /// The offset this instance last committed for it (`replay_until` until its first commit).
    pub(crate) committed: i64,
    /// Per register partition, the next row the engine has seen.
    pub(crate) registry: BTreeMap<i32, i64>,
    /// Just handed over or rewound, still taking in the side topics: their rows make no
    /// alerts, but for rows past `said` (after a rewind).
    pub(crate) taking_in: bool,
    /// Per register partition, the rows whose alerts were said: as the group's last commit of
    /// this partition carries them in its offset metadata ([`Task::metadata`]), so a
    /// hand-over or a rewind says exactly the rows no committed transaction carried. `None`
    /// where Kafka does not know (a commit from a release before): a hand-over then takes the
    /// register in silently (the instance before may have sent its alerts) and counts what it
    /// took in as said.
    pub(crate) said: Option<BTreeMap<i32, i64>>,
    pub(crate) store: Option<Store>,
    pub(crate) last_checkpoint: Instant,
    /// The size and time (Unix seconds) of the last checkpoint written.
    pub(crate) checkpointed: Option<(u64, u64)>,
    /// The state topic's snapshot the group's last commit of this partition names: every
    /// commit names it again until a newer one is committed.
    pub(crate) state: Option<StateRef>,
    /// Where the engine stood at that snapshot (what a restart replays from).
    pub(crate) snapshot_from: i64,
    /// The next transaction carries a new snapshot.
    pub(crate) snapshot_due: bool,
}

impl Task {
    /// The offset to commit: the position, but never behind the offset the group had
    /// committed when the partition came here. A partition still replaying sits below it, and
    /// committing that would make the next owner treat readings already answered as live, and
    /// send their alerts a second time.
    pub(crate) fn committable(&self) -> i64 {
        self.next.max(self.replay_until)
    }

    pub(crate) fn restoring(&self) -> bool {
        self.next < self.replay_until
    }

    /// A partition's task from its restored checkpoint (or from nothing): readings up to
    /// `committed` are replayed silently, and the side topics are still to be read into it.
    pub(crate) fn new(
        (partition, committed): (i32, Committed),
        restored: Option<Restored>,
        store: Option<Store>,
        cfg: &EngineConfig,
    ) -> Result<Task> {
        let Committed {
            offset: committed,
            said,
            state,
        } = committed;
        let (engine, next, registry) = match restored {
            Some(r) => {
                tracing::info!(
                    partition,
                    meters = r.engine.meters(),
                    from = ?r.offsets,
                    source = r.from,
                    "state restored"
                );
                let next = r.offsets.get(&partition).copied().unwrap_or(0);
                (r.engine, next, r.registry)
            }
            None => (Engine::new(cfg.clone())?, 0, BTreeMap::new()),
        };
        tracing::info!(
            partition,
            from = next,
            until = committed,
            register_said = ?said,
            "replaying committed readings to rebuild state"
        );
        Ok(Task {
            engine,
            next,
            replay_until: committed,
            committed,
            registry,
            taking_in: true,
            said,
            store,
            last_checkpoint: Instant::now(),
            checkpointed: None,
            state,
            snapshot_from: next,
            snapshot_due: false,
        })
    }

    /// What this task will have said once the transaction being built commits: its register
    /// offsets, as the readings partition's offset metadata (`rp:offset,…`). Committed in the
    /// same transaction as the offset, it tells the next owner, whoever it is, which register
    /// rows' alerts are in Kafka and which it must say.
    /// `fresh`: the snapshot this transaction carries, if any; else the one the last commit
    /// named is named again.
    pub(crate) fn metadata(&self, fresh: Option<StateRef>) -> String {
        let rows: Vec<String> = self
            .registry
            .iter()
            .map(|(rp, o)| format!("{rp}:{o}"))
            .collect();
        let state = fresh.or(self.state).map(|s| s.encode()).unwrap_or_default();
        format!("{SAID_PREFIX}{}{state}", rows.join(","))
    }

    /// The engine's state and what it covers, as the state topic's snapshot `generation`.
    pub(crate) fn snapshot(
        &self,
        here: &Header,
        partition: i32,
        generation: u64,
    ) -> (Header, Vec<u8>) {
        let took = Instant::now();
        let body = self.engine.checkpoint();
        tracing::debug!(
            partition,
            bytes = body.len(),
            millis = took.elapsed().as_millis() as u64,
            "snapshot taken"
        );
        let header = Header {
            offsets: BTreeMap::from([(partition, self.next)]),
            registry: self.registry.clone(),
            bytes: body.len() as u64,
            generation: Some(generation),
            ..here.clone()
        };
        (header, body)
    }

    /// After the transaction carrying snapshot `at` committed: it is the one to restore from,
    /// and its file is written as a cache.
    pub(crate) fn snapshot_committed(&mut self, at: StateRef, header: Header, body: Vec<u8>) {
        self.state = Some(at);
        self.snapshot_due = false;
        self.snapshot_from = header.offsets.values().copied().next().unwrap_or(self.next);
        self.last_checkpoint = Instant::now();
        self.checkpointed = Some((body.len() as u64, (now_ms() / 1000) as u64));
        if let Some(store) = self.store.as_mut() {
            store.finish();
            store.write(header, body);
        }
    }

    /// Whether register row `offset` of register partition `rp`, applied now, sends its
    /// alerts: always when live; while taking in, only the rows a rewind must say again.
    pub(crate) fn speaks(&self, rp: i32, offset: i64) -> bool {
        !self.taking_in
            || self
                .said
                .as_ref()
                .is_some_and(|said| offset >= said.get(&rp).copied().unwrap_or(0))
    }

    /// Back to the state the group's commit names (`restored`, or to nothing), readings up to
    /// `committed` — the group's committed offset as Kafka gives it after the transaction's
    /// end, never what this instance believes it committed — to be replayed silently: after a
    /// refused transaction, what the engine judged since the last commit that landed is judged
    /// again. The caller seeks the consumer to `next` and reads the side topics into it.
    pub(crate) fn rewind(
        &mut self,
        (partition, mut committed): (i32, Committed),
        restored: Option<Restored>,
        cfg: &EngineConfig,
    ) -> Result<()> {
        let mut store = self.store.take();
        if let Some(s) = store.as_mut() {
            s.finish();
        }
        // What Kafka says was said, else (a commit without it) what this instance last
        // committed.
        committed.said = committed.said.or_else(|| std::mem::take(&mut self.said));
        let checkpointed = self.checkpointed;
        *self = Task::new((partition, committed), restored, store, cfg)?;
        self.checkpointed = checkpointed;
        Ok(())
    }

    /// Saves the engine's state and the offsets it covers (written in the background; `wait`:
    /// before returning).
    pub(crate) fn checkpoint(&mut self, here: &Header, partition: i32, wait: bool) {
        let Some(store) = self.store.as_mut() else {
            return;
        };
        if !wait && !store.idle() {
            return;
        }
        store.finish();
        self.last_checkpoint = Instant::now();
        let took = Instant::now();
        let body = self.engine.checkpoint();
        let header = Header {
            offsets: BTreeMap::from([(partition, self.next)]),
            registry: self.registry.clone(),
            bytes: body.len() as u64,
            ..here.clone()
        };
        tracing::debug!(
            partition,
            bytes = body.len(),
            millis = took.elapsed().as_millis() as u64,
            "checkpoint taken"
        );
        self.checkpointed = Some((body.len() as u64, (now_ms() / 1000) as u64));
        store.write(header, body);
        if wait {
            store.finish();
        }
    }
}

/// A reading taken from the topic, not yet judged: gathered first, judged after, so that a
/// rebalance (which happens inside a poll) never finds half a batch judged and uncommitted.
pub(crate) struct Fetched {
    offset: i64,
    /// When the record was written to the topic (ms).
    written: Option<i64>,
    /// Its value in the batch's bytes (`None`: no value).
    value: Option<std::ops::Range<usize>>,
}

/// A batch's readings as taken from the topic: each partition's in offset order, their values
/// copied into one buffer. Decoding and judging happen after, a thread per partition.
#[derive(Default)]
pub(crate) struct Gathered {
    pub(crate) by_partition: BTreeMap<i32, Vec<Fetched>>,
    pub(crate) bytes: Vec<u8>,
}

impl Gathered {
    pub(crate) fn push(
        &mut self,
        partition: i32,
        offset: i64,
        written: Option<i64>,
        value: Option<&[u8]>,
    ) {
        let value = value.map(|v| {
            let at = self.bytes.len();
            self.bytes.extend_from_slice(v);
            at..self.bytes.len()
        });
        self.by_partition
            .entry(partition)
            .or_default()
            .push(Fetched {
                offset,
                written,
                value,
            });
    }

    pub(crate) fn clear(&mut self) {
        self.by_partition.clear();
        self.bytes.clear();
    }
}

/// What one partition's share of a batch came to.
#[derive(Default)]
pub(crate) struct Verdicts {
    pub(crate) out: Vec<Outgoing>,
    pub(crate) dlq: Vec<(String, Vec<u8>)>,
    /// When each live reading was written to the topic (ms), for the latency figures.
    pub(crate) produced_at: Vec<i64>,
    pub(crate) live: bool,
}

/// Decodes, validates and judges one partition's readings of a batch, in offset order, with
/// its task's engine. Readings below the task's `replay_until` rebuild state silently.
pub(crate) fn judge(
    task: &mut Task,
    partition: i32,
    share: &[Fetched],
    bytes: &[u8],
    topic: &str,
    max_future_s: i64,
    counters: &Counters,
) -> Result<Verdicts> {
    let mut v = Verdicts::default();
    let mut alerts = Vec::new();
    for f in share {
        task.next = f.offset + 1;
        let is_live = f.offset >= task.replay_until;
        let source = || format!("{topic}/{partition}/{}", f.offset);
        let raw = f.value.clone().map(|r| &bytes[r]);
        let reading = raw
            .ok_or_else(|| "empty value".to_string())
            .and_then(|p| serde_json::from_slice::<Reading>(p).map_err(|e| e.to_string()))
            .and_then(|r| {
                let valid = Validation {
                    max_ts: f.written.map(|ms| ms.div_euclid(1000) + max_future_s),
                };
                r.validate(valid).map(|()| r)
            });
        match &reading {
            Ok(r) => {
                // Each reading judged, now or released by the order window (named by its own
                // offset). What judging this offset gives, like its alerts, was committed
                // before if it is below `replay_until`.
                let dlq = &mut v.dlq;
                let mut failed = None;
                task.engine
                    .offer(r, f.offset as u64, &mut alerts, &mut |at, r, used| {
                        if is_live {
                            ReadingProcessed(used).emit(counters);
                            if used == ReadingUse::Late {
                                let source = format!("{topic}/{partition}/{at}");
                                match late_record(source, r) {
                                    Ok(rec) => dlq.push(rec),
                                    Err(e) => failed = Some(e),
                                }
                            }
                        }
                    });
                if let Some(e) = failed {
                    return Err(e);
                }
            }
            Err(reason) if is_live => {
                let rec = DlqRecord::new(
                    format!("detector: not a valid reading: {reason}"),
                    source(),
                    String::from_utf8_lossy(raw.unwrap_or_default()).into_owned(),
                );
                RecordRejected {
                    reason: &rec.reason,
                    source: &rec.source,
                }
                .emit(counters);
                v.dlq.push((rec.source.clone(), serde_json::to_vec(&rec)?));
            }
            Err(_) => {}
        }
        if is_live {
            v.live = true;
            v.produced_at.extend(f.written);
            for a in alerts.drain(..) {
                v.out.push(Outgoing::of(&a)?);
            }
        } else {
            ReadingReplayed.emit(counters);
            alerts.clear();
        }
    }
    Ok(v)
}

/// The DLQ record of a reading rejected as late: its key (the source) and value.
fn late_record(source: String, r: &Reading) -> Result<(String, Vec<u8>)> {
    let rec = DlqRecord::new(LATE_REASON.to_string(), source, serde_json::to_string(r)?);
    Ok((rec.source.clone(), serde_json::to_vec(&rec)?))
}

#[cfg(test)]
impl Task {
    /// A live task with an empty engine at `next`, its group commit at `replay_until`.
    pub(crate) fn for_tests(engine: &EngineConfig, next: i64, replay_until: i64) -> Task {
        Task {
            engine: Engine::new(engine.clone()).unwrap(),
            next,
            replay_until,
            committed: replay_until,
            registry: BTreeMap::new(),
            taking_in: false,
            said: None,
            store: None,
            last_checkpoint: Instant::now(),
            checkpointed: None,
            state: None,
            snapshot_from: 0,
            snapshot_due: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{said_of, Task};
    use gridwatch_anomaly_detector::EngineConfig;
    use std::collections::BTreeMap;

    #[test]
    fn a_replaying_partition_never_commits_behind_where_it_started() {
        let cfg = EngineConfig::default();
        assert_eq!(
            Task::for_tests(&cfg, 40, 500).committable(),
            500,
            "replaying: its commit"
        );
        assert!(Task::for_tests(&cfg, 40, 500).restoring());
        assert_eq!(
            Task::for_tests(&cfg, 900, 800).committable(),
            900,
            "live: its position"
        );
        assert!(!Task::for_tests(&cfg, 900, 800).restoring());
        assert_eq!(
            Task::for_tests(&cfg, 0, 0).committable(),
            0,
            "nothing read, nothing committed"
        );
    }

    #[test]
    fn after_a_rewind_only_the_register_rows_no_commit_carried_send_alerts_again() {
        let cfg = EngineConfig::default();
        let mut t = Task::for_tests(&cfg, 0, 0);
        assert!(t.speaks(0, 7), "live: every row");
        // Handed over: the instance before may have sent them all.
        t.taking_in = true;
        assert!(!t.speaks(0, 7));
        // Rewound: rows 0..5 of register partition 0 were in a committed transaction, the
        // rest, and every row of partition 1, were not.
        t.said = Some(BTreeMap::from([(0, 5)]));
        assert!(!t.speaks(0, 4));
        assert!(t.speaks(0, 5));
        assert!(t.speaks(1, 0));
    }

    #[test]
    fn the_register_offsets_said_travel_in_the_offset_metadata_and_nothing_else_is_read_as_them() {
        let cfg = EngineConfig::default();
        let mut t = Task::for_tests(&cfg, 0, 0);
        t.registry = BTreeMap::from([(0, 12), (3, 7)]);
        let m = t.metadata(None);
        assert_eq!(said_of(&m), Some(BTreeMap::from([(0, 12), (3, 7)])));
        t.registry.clear();
        assert_eq!(said_of(&t.metadata(None)), Some(BTreeMap::new()));
        assert_eq!(said_of(""), None, "a commit without it");
        assert_eq!(said_of("some tool's note"), None);
        assert_eq!(said_of("gw-said:0:x"), None, "damaged: not trusted");
    }
}
