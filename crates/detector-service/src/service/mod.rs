//! The detector's stream thread, as Kafka Streams has one: a loop that takes up the group's
//! changes, follows the side topics, gathers a batch of readings, judges each partition's share
//! on its own thread, commits the outputs and offsets in one transaction, and checkpoints.
//! Every piece of state it touches has one owner: the tasks ([`Task`]) their engines and
//! offsets, the [`Assigner`] the group's changes until taken, [`SideTopics`] the side
//! consumers, the producer its transaction.

use crate::assign::{Assigner, Change};
use crate::audit::GroupWatch;
use crate::checkpoints::{Header, Store};
use crate::producer::{transactional_producer, Outgoing, TxProducer};
use crate::side::SideTopics;
use crate::stats::{log_progress, Latencies};
use crate::task::{judge, Fetched, Gathered, Task, Verdicts};
use crate::{ServiceConfig, TIMEOUT};
use anyhow::{anyhow, Context, Result};
use gridwatch_anomaly_detector::EngineConfig;
use gridwatch_core::events::{Counters, Gauge, InternalEvent, RecordsConsumed, StateRestored};
use gridwatch_core::kafka::{group_member_config, instance_id, partitions, ride_out};
use gridwatch_core::{Alert, KafkaConfig};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod commit;
mod housekeeping;

/// Runs until `stop` is set (then finishes the open batch) or an error occurs, counting in
/// `counters` (which the metrics endpoint serves).
pub fn run(
    k: &KafkaConfig,
    d: &ServiceConfig,
    engine: &EngineConfig,
    counters: &Counters,
    stop: &AtomicBool,
    watch: &GroupWatch,
) -> Result<()> {
    let mut detector = Detector::start(k, d, engine, counters)?;
    while !stop.load(Ordering::Relaxed) {
        detector.step(watch)?;
    }
    detector.finish();
    Ok(())
}

/// What one batch has to say, in its transaction: alerts, DLQ records (their source, for a log
/// line if they can't be written, and their JSON), and when each live reading was written.
#[derive(Default)]
struct Pending {
    out: Vec<Outgoing>,
    dlq: Vec<(String, Vec<u8>)>,
    produced_at: Vec<i64>,
    /// Whether any reading of the batch was live (past the group's commit): then its offsets
    /// are committed even without an alert.
    live: bool,
}

impl Pending {
    fn clear(&mut self) {
        self.out.clear();
        self.dlq.clear();
        self.produced_at.clear();
        self.live = false;
    }
}

/// When each partition last gave readings (or was found caught up), and the other clocks of the
/// loop's housekeeping.
struct Clocks {
    started: Instant,
    last_watermarks: Instant,
    last_log: Instant,
    fetched_at: BTreeMap<i32, Instant>,
    /// Since when the consumer's assignment and the tasks have disagreed.
    mismatch_since: Option<Instant>,
}

struct Detector<'a> {
    k: &'a KafkaConfig,
    d: &'a ServiceConfig,
    engine: &'a EngineConfig,
    counters: &'a Counters,
    topic: &'a str,
    consumer: BaseConsumer<Assigner>,
    producer: TxProducer,
    here: Header,
    partition_count: i32,
    /// Partitions of the state topic (0: the state topic is off, checkpoint files only).
    state_partitions: i32,
    tasks: BTreeMap<i32, Task>,
    side: Option<SideTopics>,
    joined: bool,
    restoring: bool,
    pending: Pending,
    gathered: Gathered,
    latencies: Latencies,
    clocks: Clocks,
}

impl<'a> Detector<'a> {
    /// The producer first (fencing any previous instance of this id, which settles the
    /// transaction it left open: without that the group's committed offsets stay unstable
    /// until it times out), then the consumer joins the group.
    fn start(
        k: &'a KafkaConfig,
        d: &'a ServiceConfig,
        engine: &'a EngineConfig,
        counters: &'a Counters,
    ) -> Result<Detector<'a>> {
        let started = Instant::now();
        counters.set(Gauge::Restoring, 1);
        let (producer, transactional_id) = transactional_producer(k, d, counters)?;
        let topic = k.topics.readings.as_str();
        let instance = instance_id(&d.instance_id);
        let mut ccfg = group_member_config(k, &d.group_id, &instance);
        // A backlog (a replay, a catch-up after an outage, a head-end's backfill) was read at
        // the pace of librdkafka's fetches, not judged at the engines': with fetches of 4 MiB a
        // partition instead of its default 1 MiB, 2.9 M readings on three partitions went from
        // 16-18 s to 6.6-7.6 s (256 KiB: 22 s; 16 MiB: 7.1-7.3 s). `kafka.properties` wins.
        if !k.properties.contains_key("max.partition.fetch.bytes") {
            ccfg.set("max.partition.fetch.bytes", "4194304");
        }
        let consumer: BaseConsumer<Assigner> =
            ccfg.create_with_context(Assigner::new(k, d, engine))?;
        let here = Header {
            cluster_id: consumer
                .client()
                .fetch_cluster_id(TIMEOUT)
                .unwrap_or_default(),
            topic: topic.to_string(),
            group_id: d.group_id.clone(),
            offsets: BTreeMap::new(),
            registry: BTreeMap::new(),
            bytes: 0,
            generation: None,
        };
        consumer.context().set_here(here.clone());
        // The number of partitions decides which engine a register row belongs to.
        let partition_count = partitions(&consumer, topic).map_err(|e| anyhow!(e))?.len() as i32;
        let state_partitions = match k.topics.state.as_str() {
            "" => 0,
            state => partitions(&consumer, state).map_err(|e| anyhow!(e))?.len() as i32,
        };
        consumer.subscribe(&[topic])?;
        tracing::info!(instance, transactional_id, "joining the detector group");
        let now = Instant::now();
        let detector = Detector {
            k,
            d,
            engine,
            counters,
            topic,
            consumer,
            producer,
            here,
            partition_count,
            state_partitions,
            tasks: BTreeMap::new(),
            side: None,
            joined: false,
            restoring: true,
            pending: Pending::default(),
            gathered: Gathered::default(),
            latencies: Latencies::new(),
            clocks: Clocks {
                started,
                last_watermarks: now,
                last_log: now,
                fetched_at: BTreeMap::new(),
                mismatch_since: None,
            },
        };
        detector.publish_ownership();
        Ok(detector)
    }

    /// One turn of the loop: the group's changes, the side topics, a batch gathered, judged and
    /// committed, then the housekeeping.
    fn step(&mut self, watch: &GroupWatch) -> Result<()> {
        if watch.rejoin.swap(false, Ordering::AcqRel) {
            self.rejoin()?;
        }
        self.take_changes()?;
        self.follow_side()?;
        let n = self.gather()?;
        self.take_changes()?;
        self.judge_gathered()?;
        let saying = self.pending.live || !self.pending.out.is_empty();
        if (saying || self.snapshot_waiting()) && !self.commit()? {
            // Refused and rewound: the batch is judged again from the checkpoints.
            return Ok(());
        }
        self.producer.poll(Duration::ZERO);
        RecordsConsumed {
            topic: self.topic,
            n: n as u64,
        }
        .emit(self.counters);
        self.track_restore(n > 0);
        self.checkpoint_due();
        self.check_tasks_match(watch);
        if self.clocks.last_log.elapsed() > Duration::from_secs(10) {
            self.clocks.last_log = Instant::now();
            self.report()?;
        }
        Ok(())
    }

    /// The group leaves partitions unwatched (see `audit`), or this instance holds one without a
    /// task: leaving (a static member leaves only when asked to) and joining again makes the
    /// group hand out every partition afresh.
    fn rejoin(&mut self) -> Result<()> {
        tracing::warn!(
            "partitions of {} are unwatched: leaving and rejoining the group",
            self.topic
        );
        self.consumer.unsubscribe();
        self.consumer.subscribe(&[self.topic])?;
        Ok(())
    }

    /// Takes up what the rebalance callback recorded, in order: a revoked partition's task is
    /// checkpointed and dropped with its gathered readings (its next owner reads them), a handed
    /// one's engine set up and the side topics read into it. The ownership gauges are set at
    /// once, so they are true at the moment anyone asks.
    fn take_changes(&mut self) -> Result<()> {
        let changes = self.consumer.context().take()?;
        if changes.is_empty() {
            return Ok(());
        }
        for change in changes {
            match change {
                Change::Revoked(ps) => self.revoke(&ps)?,
                Change::Assigned(handed) => {
                    self.joined = true;
                    let fresh = !handed.is_empty();
                    for h in handed {
                        if let Some(r) = &h.restored {
                            StateRestored {
                                partition: h.partition,
                                from: r.from,
                                bytes: r.bytes,
                                secs: r.took.as_secs_f64(),
                            }
                            .emit(self.counters);
                        }
                        let store = Store::new(&self.d.state_dir, &self.d.group_id, h.partition);
                        let at = (h.partition, h.committed);
                        let task = Task::new(at, h.restored, store, self.engine)?;
                        self.tasks.insert(h.partition, task);
                    }
                    if fresh {
                        self.read_side()?;
                    }
                }
            }
        }
        self.publish_ownership();
        Ok(())
    }

    /// Partitions taken away. Register rows applied since the last commit may have alerts
    /// waiting: they are committed first, with the revoked partitions' offsets and what they
    /// said, while this member's generation may still commit (KIP-447 refuses it once the group
    /// has moved on, and then the next owner, reading the metadata of the commit before, says
    /// them itself). Each revoked task is checkpointed as committed and dropped with its
    /// gathered readings (its next owner reads them).
    fn revoke(&mut self, ps: &[i32]) -> Result<()> {
        self.gathered.by_partition.retain(|p, _| !ps.contains(p));
        // With the state in Kafka, the partitions leave with a snapshot in that commit: their
        // next owner, on any host, replays nothing.
        let in_kafka = self.state_partitions > 0;
        if in_kafka {
            for &p in ps {
                if let Some(task) = self.tasks.get_mut(&p) {
                    task.snapshot_due = task.next > task.snapshot_from;
                }
            }
        }
        let mut refused = false;
        if !self.pending.out.is_empty() || self.snapshot_waiting() {
            refused = !self.commit_or_abort()?;
        }
        for &p in ps {
            self.clocks.fetched_at.remove(&p);
            if let Some(mut task) = self.tasks.remove(&p) {
                // Refused: its engine holds register rows no transaction carried, and its next
                // owner starts from the previous checkpoint, which has not seen them.
                if !refused && !in_kafka {
                    task.checkpoint(&self.here, p, true);
                }
            }
        }
        if refused {
            self.rewind_all()?;
        }
        Ok(())
    }

    /// Reads the side topics to their ends into the tasks (the register from where each left
    /// it); the alerts that makes go out with the next transaction.
    fn read_side(&mut self) -> Result<()> {
        let mut alerts = Vec::new();
        self.side = Some(SideTopics::read(
            self.k,
            &self.d.group_id,
            &mut self.tasks,
            self.partition_count,
            &mut alerts,
        )?);
        self.queue(&alerts)
    }

    /// What the side topics have had since they were read. Register changes resolve episodes:
    /// those messages go out with the next transaction.
    fn follow_side(&mut self) -> Result<()> {
        let Some(side) = &self.side else {
            return Ok(());
        };
        let mut alerts = Vec::new();
        side.follow(&mut self.tasks, self.partition_count, &mut alerts)?;
        self.queue(&alerts)
    }

    fn queue(&mut self, alerts: &[Alert]) -> Result<()> {
        for a in alerts {
            self.pending.out.push(Outgoing::of(a)?);
        }
        Ok(())
    }

    /// Takes up to `batch_size` readings the consumer has fetched, waiting at most 100 ms for
    /// more when it has none; returns how many.
    fn gather(&mut self) -> Result<usize> {
        let deadline = Instant::now() + Duration::from_millis(100);
        let mut n = 0;
        let mut past_deadline = false;
        while n < self.d.batch_size && !past_deadline {
            // What the client has fetched is taken without waiting (and without reading the
            // clock, which cost a tenth of the detector's time per record); it waits for more
            // only when it has none, and checks the batch's deadline every 256 records.
            let msg = match self.consumer.poll(Duration::ZERO) {
                Some(msg) => msg,
                None => {
                    if self.consumer.context().changed() {
                        break;
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    match self.consumer.poll(left) {
                        Some(msg) => msg,
                        None => break,
                    }
                }
            };
            // A passing error (a broker of several lost, a leader moving) is ridden out: the
            // client fetches from the new leader by itself, and a new run would be another
            // rebalance. A consumer that stops fetching for good is caught by the stall check.
            let msg = match msg {
                Ok(msg) => msg,
                Err(e) if ride_out(&e, "reading readings", self.counters) => break,
                Err(e) => return Err(e).context("reading readings"),
            };
            n += 1;
            past_deadline = n % 256 == 0 && Instant::now() >= deadline;
            let (partition, offset) = (msg.partition(), msg.offset());
            let written = msg.timestamp().to_millis();
            if !self.consumer.context().changed() {
                self.gathered
                    .push(partition, offset, written, msg.payload());
                continue;
            }
            // The poll that gave this record also changed the assignment: the change is taken
            // up first (a revoked partition's gathered readings dropped, a handed one's task
            // made), then the record — fetched under the new assignment — joins its new task.
            let payload = msg.payload().map(<[u8]>::to_vec);
            drop(msg);
            self.take_changes()?;
            self.gathered
                .push(partition, offset, written, payload.as_deref());
        }
        Ok(n)
    }

    /// Each partition's share on its own thread (its own engine): the cores a detector has
    /// judge in parallel, and the outputs join in partition order.
    fn judge_gathered(&mut self) -> Result<()> {
        let now = Instant::now();
        for (&p, share) in &self.gathered.by_partition {
            if !share.is_empty() {
                self.clocks.fetched_at.insert(p, now);
            }
        }
        let shares: Vec<(i32, &mut Task, &[Fetched])> = self
            .tasks
            .iter_mut()
            .filter_map(|(&p, task)| {
                let share = self
                    .gathered
                    .by_partition
                    .get(&p)
                    .filter(|s| !s.is_empty())?;
                Some((p, task, share.as_slice()))
            })
            .collect();
        let (bytes, topic) = (&self.gathered.bytes, self.topic);
        let (max_future_s, counters) = (self.d.max_future_s, self.counters);
        let judged: Vec<Result<Verdicts>> = std::thread::scope(|scope| {
            let work = |(p, task, share): (i32, &mut Task, &[Fetched])| {
                judge(task, p, share, bytes, topic, max_future_s, counters)
            };
            let mut shares = shares.into_iter();
            let first = shares.next();
            let others: Vec<_> = shares.map(|s| scope.spawn(move || work(s))).collect();
            first
                .map(work)
                .into_iter()
                .chain(others.into_iter().map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow!("judging a partition panicked")))
                }))
                .collect()
        });
        self.gathered.clear();
        for v in judged {
            let v = v?;
            self.pending.live |= v.live;
            self.pending.out.extend(v.out);
            self.pending.dlq.extend(v.dlq);
            self.pending.produced_at.extend(v.produced_at);
        }
        Ok(())
    }

    /// Stopping: every task's state saved (in a last transaction with the state in Kafka, so
    /// a rolling restart replays nothing), and the last word.
    fn finish(mut self) {
        if self.state_partitions > 0 {
            for task in self.tasks.values_mut() {
                task.snapshot_due = task.next > task.snapshot_from;
            }
            if self.snapshot_waiting() {
                if let Err(e) = self.commit_or_abort() {
                    tracing::warn!("the last snapshots were not committed: {e}");
                }
            }
            // Their files too (the cache a restart on this host reads).
            for task in self.tasks.values_mut() {
                if let Some(store) = task.store.as_mut() {
                    store.finish();
                }
            }
        } else {
            for (&p, task) in self.tasks.iter_mut() {
                task.checkpoint(&self.here, p, true);
            }
        }
        log_progress(
            "detector stopped",
            self.counters,
            &self.latencies,
            self.meters(),
        );
    }
}
