//! The anomaly detector as a Kafka service: a thin shell around the pure engine
//! (`gridwatch-anomaly-detector`). Register from `gridwatch.registry`, readings from
//! `gridwatch.readings`, alerts to `gridwatch.alerts` and each case's latest state to the
//! compacted `gridwatch.suspects` — exactly once. Each batch of alerts
//! and the consumed offsets are committed in one Kafka transaction.
//!
//! State recovery is by checkpoint and replay: the engine is deterministic, so on start the
//! detector restores its last checkpoint ([`checkpoints`]: the engine's state and the offsets
//! it covers), reads its partitions from those offsets (from the beginning without one),
//! feeding the engine silently up to the committed offsets, and produces only from there on.
//! A crash at any point therefore yields the same alerts, with the same ids, as an
//! uninterrupted run. On any consumer or transaction error the run returns the error; the
//! binary's supervisor starts a new run after a backoff, which restores and replays (crash-only).

pub mod checkpoints;

use anyhow::{anyhow, Context, Result};
use checkpoints::{Header, Restored, Store};
use gridwatch_anomaly_detector::{Engine, EngineConfig, ReadingUse, LATE_REASON};
use gridwatch_core::events::{
    labels, AlertEmitted, Counters, DlqWriteFailed, DlqWritten, Gauge, Histogram, InternalEvent,
    KafkaRetried, ReadingProcessed, ReadingReplayed, RecordRejected, RecordsConsumed,
    RecordsProduced, TransactionCommitted,
};
use gridwatch_core::kafka::{
    consumer_config, describe_group, group_member_config, instance_id, partitions, producer_config,
    queue_full, read_compacted, read_compacted_from, report_lag, retry_while_full, transient,
    Ownership, Quiet, QuietConsumer,
};
use gridwatch_core::{
    partition, Alert, AlertStatus, DlqRecord, Holiday, KafkaConfig, MeterRecord, Reading,
    RegistryUpdate, Validation, WeatherObs,
};
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(30);
/// How long a passing Kafka error (a broker of several lost, a coordinator or leader moving) is
/// retried in place before the run ends and the supervisor starts a new one.
const TRANSIENT_PATIENCE: Duration = Duration::from_secs(60);
/// A partition with readings waiting that has given none for this long has stopped fetching
/// (seen once after a single broker's restart): the run ends and a new consumer starts.
const STALLED_AFTER: Duration = Duration::from_secs(90);

/// The service's own keys of the `[detector]` table (the engine's are
/// [`EngineConfig`]'s).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceConfig {
    /// Consumer group whose committed offsets mark the detector's progress.
    pub group_id: String,
    /// This instance's name in the group (its static membership, `group.instance.id`, and its
    /// transactional id): unique per running instance and stable across its restarts. Empty:
    /// the host's name (a StatefulSet's pod name). Two detectors on one host need their own.
    #[serde(deserialize_with = "gridwatch_core::config::name_or_number")]
    pub instance_id: String,
    /// Transactional id of the detector's producer. Empty: `<group_id>-<instance_id>`.
    pub transactional_id: String,
    /// Readings per transaction, at most.
    pub batch_size: usize,
    /// Address of the service's `/metrics` (Prometheus text), `/healthz` and `/readyz`.
    pub metrics_listen: String,
    /// Folder of the engine checkpoint (created when missing; keep it on a persistent volume).
    /// Empty turns checkpoints off: every start then replays every retained reading.
    pub state_dir: String,
    /// Seconds between engine checkpoints: a restart replays about this much of the stream.
    pub checkpoint_interval_s: u64,
    /// A reading stamped more than this after the time its record was written to the topic is
    /// rejected to the DLQ (as the ingester does against its clock): written straight to the
    /// topic, it would otherwise move its meter's watermark and make genuine readings late.
    /// Judged against the record's own timestamp, so a replay decides the same.
    pub max_future_s: i64,
    /// A partition of the readings topic the group leaves unwatched (held by no detector, or
    /// never committed while it holds readings) for longer than this many seconds counts in
    /// `gridwatch_partitions_unowned`, and makes each detector leave and rejoin the group.
    pub unowned_alert_s: u64,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            group_id: "gridwatch-detector".into(),
            instance_id: String::new(),
            transactional_id: String::new(),
            batch_size: 20_000,
            metrics_listen: "127.0.0.1:9641".into(),
            state_dir: "gridwatch-state".into(),
            checkpoint_interval_s: 60,
            max_future_s: 900,
            unowned_alert_s: 60,
        }
    }
}

/// Reading-to-commit latencies in 1 ms buckets up to a minute (the last bucket holds the rest).
#[derive(Debug)]
struct Latencies {
    counts: Vec<u64>,
    total: u64,
}

impl Latencies {
    fn new() -> Self {
        Latencies {
            counts: vec![0; 60_001],
            total: 0,
        }
    }

    fn record(&mut self, ms: i64) {
        let i = ms.clamp(0, 60_000) as usize;
        self.counts[i] += 1;
        self.total += 1;
    }

    fn quantile(&self, q: f64) -> u64 {
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

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn registry_update(key: Option<&[u8]>, payload: Option<&[u8]>) -> Result<RegistryUpdate, String> {
    match payload {
        None => {
            let key = key.ok_or("a delete (null value) without a key")?;
            Ok(RegistryUpdate::Delete {
                meter_id: String::from_utf8_lossy(key).into_owned(),
            })
        }
        Some(p) => serde_json::from_slice::<MeterRecord>(p)
            .map(RegistryUpdate::Upsert)
            .map_err(|e| e.to_string()),
    }
}

/// A weather record: the region's temperature for an hour. A tombstone (null value) or a bad
/// record is skipped with a log line; the weather only ever explains load, never raises alerts.
fn weather_obs(payload: Option<&[u8]>) -> Result<Option<WeatherObs>, String> {
    let Some(p) = payload else { return Ok(None) };
    let w: WeatherObs = serde_json::from_slice(p).map_err(|e| e.to_string())?;
    w.validate()
        .map_err(|(field, why)| format!("{field}: {why}"))?;
    Ok(Some(w))
}

/// A holiday record; a tombstone or a bad record is skipped with a log line.
fn holiday(payload: Option<&[u8]>) -> Result<Option<Holiday>, String> {
    let Some(p) = payload else { return Ok(None) };
    let h: Holiday = serde_json::from_slice(p).map_err(|e| e.to_string())?;
    h.validate()
        .map_err(|(field, why)| format!("{field}: {why}"))?;
    Ok(Some(h))
}

/// An inspection outcome from the outcomes topic (`None`: a tombstone).
fn outcome(payload: Option<&[u8]>) -> Result<Option<gridwatch_core::Outcome>, String> {
    let Some(p) = payload else { return Ok(None) };
    let o: gridwatch_core::Outcome = serde_json::from_slice(p).map_err(|e| e.to_string())?;
    o.validate()?;
    Ok(Some(o))
}

/// The side topics every engine reads whole: the register (each row to the engine of its meter's
/// partition, a delete to all), the weather, the holidays and the inspection outcomes (to all:
/// an engine without the target ignores it). Each is read to its end when partitions are handed
/// to this instance, then followed by the consumer that read it.
struct SideTopics {
    registry: QuietConsumer,
    weather: QuietConsumer,
    holidays: QuietConsumer,
    outcomes: QuietConsumer,
}

/// Where a register row applies: the partition of its meter's readings (its feeder's); a delete,
/// which names only the meter, everywhere.
fn registry_partition(u: &RegistryUpdate, partitions: i32) -> Option<i32> {
    match u {
        RegistryUpdate::Upsert(r) => {
            let key =
                partition::reading_key(&r.meter_id, None, || Some(r.feeder_id.as_str().into()));
            Some(partition::partition_for(key.as_bytes(), partitions))
        }
        RegistryUpdate::Delete { .. } => None,
    }
}

/// Hands register row `offset` of register partition `rp` to the tasks that have not seen it:
/// to the engine of its meter's partition (all, for a delete). Alerts from tasks that were
/// live go to `alerts`; a task taking in the register it missed makes none (the run that owned
/// it before may have sent them).
fn apply_registry_row(
    tasks: &mut BTreeMap<i32, Task>,
    partitions: i32,
    (rp, offset): (i32, i64),
    u: &RegistryUpdate,
    alerts: &mut Vec<Alert>,
) {
    let target = registry_partition(u, partitions);
    let mut silent = Vec::new();
    for (&p, task) in tasks.iter_mut() {
        if offset < task.registry.get(&rp).copied().unwrap_or(0) {
            continue;
        }
        task.registry.insert(rp, offset + 1);
        if target.is_none_or(|t| t == p) {
            let out = if task.speaks(rp, offset) {
                &mut *alerts
            } else {
                &mut silent
            };
            task.engine.apply_registry(u.clone(), out);
        }
    }
}

impl SideTopics {
    /// Reads the register (from where the tasks left it), the weather and the holidays to their
    /// ends into the tasks.
    fn read(
        k: &KafkaConfig,
        group_id: &str,
        tasks: &mut BTreeMap<i32, Task>,
        partitions: i32,
        alerts: &mut Vec<Alert>,
    ) -> Result<SideTopics> {
        // Per register partition, from the first row some task has not seen.
        let mut from: BTreeMap<i32, i64> = BTreeMap::new();
        let all: std::collections::BTreeSet<i32> = tasks
            .values()
            .flat_map(|t| t.registry.keys().copied())
            .collect();
        for rp in all {
            if tasks.values().all(|t| t.registry.contains_key(&rp)) {
                let min = tasks.values().map(|t| t.registry[&rp]).min().unwrap_or(0);
                from.insert(rp, min);
            }
        }
        let mut rows = 0u64;
        let (registry, next) = read_compacted_from(
            k,
            &format!("{group_id}-registry"),
            &k.topics.registry,
            &from,
            TIMEOUT * 4,
            |rp, offset, key, value| {
                match registry_update(key, value) {
                    Ok(u) => apply_registry_row(tasks, partitions, (rp, offset), &u, alerts),
                    Err(e) => tracing::error!("bad register record skipped: {e}"),
                }
                rows += 1;
                Ok(())
            },
        )
        .map_err(|e| anyhow!(e))?;
        for task in tasks.values_mut() {
            task.registry.extend(next.iter().map(|(&rp, &o)| (rp, o)));
        }
        let meters: usize = tasks.values().map(|t| t.engine.meters()).sum();
        tracing::info!(rows, meters, "register read");
        let (weather, hours) = read_side(
            k,
            group_id,
            ("weather", &k.topics.weather),
            weather_obs,
            |w| tasks.values_mut().for_each(|t| t.engine.on_weather(w)),
        )?;
        let (holidays, days) = read_side(
            k,
            group_id,
            ("holidays", &k.topics.holidays),
            holiday,
            |h| tasks.values_mut().for_each(|t| t.engine.on_holiday(h)),
        )?;
        let (outcomes, visits) = read_side(
            k,
            group_id,
            ("outcomes", &k.topics.outcomes),
            outcome,
            |o| {
                tasks
                    .values_mut()
                    .for_each(|t| t.engine.add_outcome(o.clone()))
            },
        )?;
        tracing::info!(hours, days, visits, "weather, holidays and outcomes read");
        for task in tasks.values_mut() {
            // Handed over: what it took in silently was the previous owner's to say.
            if task.said.is_none() {
                task.said = Some(task.registry.clone());
            }
            task.taking_in = false;
        }
        Ok(SideTopics {
            registry,
            weather,
            holidays,
            outcomes,
        })
    }

    /// Applies what the side topics have had since they were read (without waiting).
    fn follow(
        &self,
        tasks: &mut BTreeMap<i32, Task>,
        partitions: i32,
        alerts: &mut Vec<Alert>,
    ) -> Result<()> {
        drain(&self.registry, "register", |msg| {
            match registry_update(msg.key(), msg.payload()) {
                Ok(u) => {
                    let at = (msg.partition(), msg.offset());
                    apply_registry_row(tasks, partitions, at, &u, alerts)
                }
                Err(e) => {
                    tracing::error!(offset = msg.offset(), "bad register record skipped: {e}")
                }
            }
        })?;
        drain(&self.weather, "weather", |msg| {
            match weather_obs(msg.payload()) {
                Ok(Some(w)) => tasks.values_mut().for_each(|t| t.engine.on_weather(&w)),
                Ok(None) => {}
                Err(e) => tracing::warn!(offset = msg.offset(), "bad weather record skipped: {e}"),
            }
        })?;
        drain(&self.holidays, "holidays", |msg| {
            match holiday(msg.payload()) {
                Ok(Some(h)) => tasks.values_mut().for_each(|t| t.engine.on_holiday(&h)),
                Ok(None) => {}
                Err(e) => tracing::warn!(offset = msg.offset(), "bad holiday record skipped: {e}"),
            }
        })?;
        drain(&self.outcomes, "outcomes", |msg| {
            match outcome(msg.payload()) {
                Ok(Some(o)) => tasks
                    .values_mut()
                    .for_each(|t| t.engine.add_outcome(o.clone())),
                Ok(None) => {}
                Err(e) => tracing::warn!(offset = msg.offset(), "bad outcome record skipped: {e}"),
            }
        })
    }
}

/// What makes a side topic's record (its value; `None` a tombstone) into something to apply.
type Decode<T> = fn(Option<&[u8]>) -> Result<Option<T>, String>;

/// Reads a compacted side topic (the weather, the holidays) to its end, handing each record
/// `decode` makes something of to `apply` (a tombstone is nothing; a bad record is logged and
/// skipped: these only ever explain load, never raise alerts). Returns the consumer,
/// positioned for what comes next, and how many records were applied.
fn read_side<T>(
    k: &KafkaConfig,
    group_id: &str,
    (what, topic): (&str, &str),
    decode: Decode<T>,
    mut apply: impl FnMut(&T),
) -> Result<(QuietConsumer, u64)> {
    let mut n = 0u64;
    let consumer = read_compacted(
        k,
        &format!("{group_id}-{what}"),
        topic,
        TIMEOUT * 4,
        |_, value| {
            match decode(value) {
                Ok(Some(t)) => {
                    apply(&t);
                    n += 1;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!("bad {what} record skipped: {e}"),
            }
            Ok(())
        },
    )
    .map_err(|e| anyhow!(e))?;
    Ok((consumer, n))
}

/// Hands each record a consumer has fetched to `apply`, without waiting; a passing error is
/// logged and polled past.
fn drain(
    consumer: &QuietConsumer,
    what: &str,
    mut apply: impl FnMut(&rdkafka::message::BorrowedMessage<'_>),
) -> Result<()> {
    while let Some(msg) = consumer.poll(Duration::ZERO) {
        match msg {
            Err(KafkaError::PartitionEOF(_)) => {}
            Err(e) if transient(&e) => tracing::warn!("reading the {what}: {e} (retrying)"),
            Err(e) => return Err(e).with_context(|| format!("reading the {what}")),
            Ok(msg) => apply(&msg),
        }
    }
    Ok(())
}

/// An alert on its way out: to `gridwatch.alerts` keyed by target, and to the compacted
/// `gridwatch.suspects` keyed by `alert_id`.
struct Outgoing {
    target: String,
    alert_id: String,
    kind: &'static str,
    status: AlertStatus,
    json: Vec<u8>,
}

impl Outgoing {
    fn of(a: &Alert) -> Result<Outgoing> {
        Ok(Outgoing {
            target: a.target_id().to_string(),
            alert_id: a.alert_id.clone(),
            kind: a.kind.as_str(),
            status: a.status,
            json: serde_json::to_vec(a)?,
        })
    }
}

/// The detector's producer context: librdkafka's log lines as usual, except that a transaction
/// error (TXNERR) is a warning: the call that failed returns the error too, and the detector
/// answers it — a commit refused during a rebalance by judging the batch again (normal when
/// instances come and go, and nothing to page anyone about), anything else by ending the run,
/// which the supervisor logs at ERROR.
struct Producing;

impl rdkafka::ClientContext for Producing {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, line: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error if fac != "TXNERR" => {
                tracing::error!(target: "librdkafka", "librdkafka: {fac} {line}")
            }
            L::Emerg | L::Alert | L::Critical | L::Error | L::Warning => {
                tracing::warn!(target: "librdkafka", "librdkafka: {fac} {line}")
            }
            L::Notice | L::Info => tracing::info!(target: "librdkafka", "librdkafka: {fac} {line}"),
            L::Debug => tracing::debug!(target: "librdkafka", "librdkafka: {fac} {line}"),
        }
    }
}

impl rdkafka::producer::ProducerContext for Producing {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: ()) {}
}

type TxProducer = BaseProducer<Producing>;

/// Sends in the open transaction, serving delivery reports while the queue is full.
fn send_retrying(producer: &TxProducer, rec: BaseRecord<'_, [u8], [u8]>) -> Result<()> {
    let mut rec = Some(rec);
    retry_while_full(
        || {
            let r = rec.take().expect("a record to send");
            producer.send(r).map_err(|(e, r)| {
                rec = Some(r);
                e
            })
        },
        queue_full,
        || {
            producer.poll(Duration::from_millis(10));
        },
    )
    .map_err(Into::into)
}

/// Writes a batch in one transaction: each alert to the alerts topic and the compacted
/// suspects, the DLQ records, and every task's offset with the group's current metadata.
/// Returns how many DLQ records the producer refused outright.
#[allow(clippy::too_many_arguments)]
fn send_batch<C: rdkafka::consumer::ConsumerContext>(
    producer: &TxProducer,
    consumer: &rdkafka::consumer::BaseConsumer<C>,
    k: &KafkaConfig,
    topic: &str,
    tasks: &BTreeMap<i32, Task>,
    out: &[Outgoing],
    dlq: &[(String, Vec<u8>)],
    counters: &Counters,
) -> Result<usize> {
    txn_retrying("beginning a transaction", counters, || {
        producer.begin_transaction()
    })?;
    for o in out {
        send_retrying(
            producer,
            BaseRecord::to(&k.topics.alerts)
                .key(o.target.as_bytes())
                .payload(&o.json),
        )?;
        // The case's latest word, or its tombstone, on the compacted inspection list.
        let case = BaseRecord::to(&k.topics.suspects).key(o.alert_id.as_bytes());
        let case = if o.status.is_closed() {
            case
        } else {
            case.payload(&o.json[..])
        };
        send_retrying(producer, case)?;
    }
    let mut unwritten = 0;
    for (source, value) in dlq {
        // A record the producer refuses outright would be refused again on every replay: it
        // must not stop the detector. (Failures the broker reports later fail the
        // transaction, which is judged again from the checkpoints.)
        if let Err(e) = send_retrying(producer, BaseRecord::to(&k.topics.dlq).payload(value)) {
            DlqWriteFailed {
                source,
                error: &e.to_string(),
            }
            .emit(counters);
            unwritten += 1;
        }
    }
    let mut position = TopicPartitionList::new();
    for (&p, task) in tasks {
        if task.committable() > 0 {
            position.add_partition_offset(topic, p, Offset::Offset(task.committable()))?;
        }
    }
    // The group's current generation: a commit from an instance the group has since moved on
    // from is refused (KIP-447), never applied over the new owner's.
    let group = consumer
        .group_metadata()
        .ok_or_else(|| anyhow!("no consumer group metadata"))?;
    txn_retrying("sending the offsets", counters, || {
        producer.send_offsets_to_transaction(&position, &group, TIMEOUT)
    })?;
    wait_for_acks(producer);
    txn_retrying("committing", counters, || {
        producer.commit_transaction(TIMEOUT)
    })?;
    Ok(unwritten)
}

/// Calls a transaction step again while librdkafka says its error is retriable (the
/// transaction coordinator moving, a broker of several lost), for up to
/// [`TRANSIENT_PATIENCE`]; any other error is returned as it is, for the caller to abort and
/// judge again or to end the run.
fn txn_retrying(
    what: &str,
    counters: &Counters,
    mut step: impl FnMut() -> rdkafka::error::KafkaResult<()>,
) -> Result<()> {
    let started = Instant::now();
    loop {
        match step() {
            Err(KafkaError::Transaction(t))
                if t.is_retriable()
                    && !t.is_fatal()
                    && !t.txn_requires_abort()
                    && started.elapsed() < TRANSIENT_PATIENCE =>
            {
                KafkaRetried {
                    what,
                    error: &t.to_string(),
                }
                .emit(counters);
                std::thread::sleep(Duration::from_millis(200));
            }
            other => return other.map_err(Into::into),
        }
    }
}

/// Serves delivery reports until every record sent is acknowledged (or `TIMEOUT`), so that
/// `commit_transaction` finds nothing to flush: its own flush waits in 100 ms steps, which
/// capped the detector at ten transactions a second. rust-rdkafka's `poll(d)` always lasts `d`
/// and spins through its last millisecond (a fifth of the detector's CPU went to reading the
/// clock there), so each look is a single non-blocking poll, with a short sleep while no
/// report comes.
fn wait_for_acks(producer: &TxProducer) {
    let acked_by = Instant::now() + TIMEOUT;
    let mut left = producer.in_flight_count();
    while left > 0 && Instant::now() < acked_by {
        producer.poll(Duration::ZERO);
        let now = producer.in_flight_count();
        if now == left {
            std::thread::sleep(Duration::from_micros(200));
        }
        left = now;
    }
}

/// Whether a transaction failed in a way that only needs it aborted and the batch judged again
/// (the broker refused it: a rebalance moved the group's generation on), not a new producer.
fn refused(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<KafkaError>(),
        Some(KafkaError::Transaction(t)) if t.txn_requires_abort() && !t.is_fatal()
    )
}

/// A partition's share of the detector, as a Kafka Streams task: its own engine (the meters
/// whose readings the partition carries: a feeder's, with its head meter), where its readings
/// stand, and its checkpoint. A partition moves between instances with its checkpoint; N
/// instances hold the tasks one instance would, and give its alerts.
struct Task {
    engine: Engine,
    /// The next readings offset the engine has not seen (0: none yet).
    next: i64,
    /// The group's committed offset when the partition came to this instance: readings below
    /// it were answered by an earlier owner and are replayed silently.
    replay_until: i64,
    /// The offset this instance last committed for it (`replay_until` until its first commit).
    committed: i64,
    /// Per register partition, the next row the engine has seen.
    registry: BTreeMap<i32, i64>,
    /// Just handed over or rewound, still taking in the side topics: their rows make no
    /// alerts, but for rows past `said` (after a rewind).
    taking_in: bool,
    /// Per register partition, the rows whose alerts were said: the register offsets at this
    /// instance's last commit, or where a hand-over's taking in ended. `None` while a hand-over
    /// takes the register in (the instance that had the partition may have sent its alerts);
    /// after a rewind, rows from here on were in no committed transaction and speak again.
    said: Option<BTreeMap<i32, i64>>,
    store: Option<Store>,
    last_checkpoint: Instant,
    /// The size and time (Unix seconds) of the last checkpoint written.
    checkpointed: Option<(u64, u64)>,
}

impl Task {
    /// The offset to commit: the position, but never behind the offset the group had
    /// committed when the partition came here. A partition still replaying sits below it, and
    /// committing that would make the next owner treat readings already answered as live, and
    /// send their alerts a second time.
    fn committable(&self) -> i64 {
        self.next.max(self.replay_until)
    }

    fn restoring(&self) -> bool {
        self.next < self.replay_until
    }

    /// A partition's task from its restored checkpoint (or from nothing): readings up to
    /// `committed` are replayed silently, and the side topics are still to be read into it.
    fn new(
        partition: i32,
        committed: i64,
        restored: Option<Restored>,
        store: Option<Store>,
        cfg: &EngineConfig,
    ) -> Result<Task> {
        let (engine, next, registry) = match restored {
            Some(r) => {
                tracing::info!(
                    partition,
                    meters = r.engine.meters(),
                    from = ?r.offsets,
                    "checkpoint restored"
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
            "replaying committed readings to rebuild state"
        );
        Ok(Task {
            engine,
            next,
            replay_until: committed,
            committed,
            registry,
            taking_in: true,
            said: None,
            store,
            last_checkpoint: Instant::now(),
            checkpointed: None,
        })
    }

    /// Whether register row `offset` of register partition `rp`, applied now, sends its
    /// alerts: always when live; while taking in, only the rows a rewind must say again.
    fn speaks(&self, rp: i32, offset: i64) -> bool {
        !self.taking_in
            || self
                .said
                .as_ref()
                .is_some_and(|said| offset >= said.get(&rp).copied().unwrap_or(0))
    }

    /// Back to the last checkpoint (or to nothing), readings up to the last commit to be
    /// replayed silently: after a refused transaction, what the engine judged since its last
    /// commit is judged again. The caller seeks the consumer to `next` and reads the side
    /// topics into it.
    fn rewind(&mut self, here: &Header, partition: i32, cfg: &EngineConfig) -> Result<()> {
        let mut store = self.store.take();
        if let Some(s) = store.as_mut() {
            s.finish();
        }
        let until = HashMap::from([(partition, self.committed)]);
        let restored = store
            .as_ref()
            .and_then(|s| s.load(here, &until, cfg).ok().flatten());
        let (checkpointed, said) = (self.checkpointed, std::mem::take(&mut self.said));
        *self = Task::new(partition, self.committed, restored, store, cfg)?;
        self.checkpointed = checkpointed;
        self.said = said;
        Ok(())
    }

    /// Saves the engine's state and the offsets it covers (written in the background; `wait`:
    /// before returning).
    fn checkpoint(&mut self, here: &Header, partition: i32, wait: bool) {
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

/// A partition handed to this instance by the group, its checkpoint restored in the rebalance
/// callback (which also starts its fetching where the checkpoint left off).
struct Handed {
    partition: i32,
    committed: i64,
    restored: Option<Restored>,
}

enum Change {
    Assigned(Vec<Handed>),
    Revoked(Vec<i32>),
}

/// The readings consumer's context: logs as [`Quiet`] does, and takes the group's rebalances.
/// Partitions handed over are restored from their checkpoints right in the callback, before
/// fetching starts, so each starts at its checkpoint's offset; the engines themselves are taken
/// up by the run loop, which sees the changes in the order they happened.
struct Assigner {
    topic: String,
    group_id: String,
    state_dir: String,
    engine: EngineConfig,
    here: std::sync::Mutex<Option<Header>>,
    changes: std::sync::Mutex<Vec<Change>>,
    changed: AtomicBool,
    /// Set when the callback could not learn the group's committed offsets: the run ends (and
    /// the supervisor starts a new one) rather than guess where replay stops.
    failed: std::sync::Mutex<Option<String>>,
}

impl rdkafka::ClientContext for Assigner {
    fn error(&self, error: KafkaError, reason: &str) {
        Quiet.error(error, reason)
    }
}

impl rdkafka::consumer::ConsumerContext for Assigner {
    fn rebalance(
        &self,
        consumer: &rdkafka::consumer::BaseConsumer<Self>,
        err: rdkafka::types::RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        use rdkafka::consumer::RebalanceProtocol;
        use rdkafka::types::RDKafkaRespErr as E;
        let ps: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        if err == E::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS {
            let handed = self.hand(consumer, tpl);
            self.push(Change::Assigned(handed));
            let taken = if cooperative {
                consumer.incremental_assign(tpl)
            } else {
                consumer.assign(tpl)
            };
            if let Err(e) = taken {
                self.fail(format!("cannot take partitions {ps:?}: {e}"));
            }
            tracing::info!(partitions = ?ps, "partitions assigned");
        } else {
            if err != E::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS {
                tracing::warn!("rebalance error {err:?}: giving up partitions {ps:?}");
            }
            self.push(Change::Revoked(ps.clone()));
            let given = if cooperative {
                consumer.incremental_unassign(tpl)
            } else {
                consumer.unassign()
            };
            if let Err(e) = given {
                self.fail(format!("cannot give up partitions {ps:?}: {e}"));
            }
            tracing::info!(partitions = ?ps, "partitions revoked");
        }
    }
}

impl Assigner {
    fn push(&self, c: Change) {
        self.changes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(c);
        self.changed.store(true, Ordering::Release);
    }

    fn fail(&self, why: String) {
        tracing::warn!("{why}");
        *self.failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
        self.changed.store(true, Ordering::Release);
    }

    /// Restores each handed partition's checkpoint and sets where its fetching starts.
    fn hand(
        &self,
        consumer: &rdkafka::consumer::BaseConsumer<Self>,
        tpl: &mut TopicPartitionList,
    ) -> Vec<Handed> {
        // A broker of several being down (the group coordinator moving) is waited out here,
        // for a bounded time, rather than ending the run: each new run is another rebalance.
        let asked = Instant::now();
        let committed = loop {
            match consumer.committed_offsets(tpl.clone(), TIMEOUT) {
                Ok(c) => break c,
                Err(e) if transient(&e) && asked.elapsed() < TRANSIENT_PATIENCE => {
                    tracing::warn!("committed offsets of the handed partitions: {e} (retrying)");
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => {
                    self.fail(format!("committed offsets of the handed partitions: {e}"));
                    return Vec::new();
                }
            }
        };
        let here = self.here.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut handed = Vec::new();
        for e in tpl.elements() {
            let partition = e.partition();
            let committed = match committed
                .find_partition(&self.topic, partition)
                .map(|c| c.offset())
            {
                Some(Offset::Offset(o)) => o,
                _ => 0,
            };
            let store = Store::new(&self.state_dir, &self.group_id, partition);
            let restored = match (&store, &here) {
                (Some(s), Some(here)) => {
                    let until = HashMap::from([(partition, committed)]);
                    s.load(here, &until, &self.engine).unwrap_or_else(|why| {
                        tracing::warn!(
                            partition,
                            path = %s.path().display(),
                            "checkpoint not used, rebuilding the partition's state from every \
                             retained reading: {why}"
                        );
                        None
                    })
                }
                _ => None,
            };
            handed.push(Handed {
                partition,
                committed,
                restored,
            });
        }
        for h in &handed {
            let from = h
                .restored
                .as_ref()
                .and_then(|r| r.offsets.get(&h.partition))
                .map_or(Offset::Beginning, |&o| Offset::Offset(o));
            if let Err(e) = tpl.set_partition_offset(&self.topic, h.partition, from) {
                self.fail(format!("partition {}: {e}", h.partition));
            }
        }
        handed
    }
}

/// A reading taken from the topic, not yet judged: gathered first, judged after, so that a
/// rebalance (which happens inside a poll) never finds half a batch judged and uncommitted.
struct Fetched {
    offset: i64,
    /// When the record was written to the topic (ms).
    written: Option<i64>,
    /// Its value in the batch's bytes (`None`: no value).
    value: Option<std::ops::Range<usize>>,
}

/// A batch's readings as taken from the topic: each partition's in offset order, their values
/// copied into one buffer. Decoding and judging happen after, a thread per partition.
#[derive(Default)]
struct Gathered {
    by_partition: BTreeMap<i32, Vec<Fetched>>,
    bytes: Vec<u8>,
}

impl Gathered {
    fn push(&mut self, partition: i32, offset: i64, written: Option<i64>, value: Option<&[u8]>) {
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

    fn clear(&mut self) {
        self.by_partition.clear();
        self.bytes.clear();
    }
}

/// What one partition's share of a batch came to.
#[derive(Default)]
struct Verdicts {
    out: Vec<Outgoing>,
    dlq: Vec<(String, Vec<u8>)>,
    /// When each live reading was written to the topic (ms), for the latency figures.
    produced_at: Vec<i64>,
    live: bool,
}

/// Decodes, validates and judges one partition's readings of a batch, in offset order, with
/// its task's engine. Readings below the task's `replay_until` rebuild state silently.
fn judge(
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

/// Runs until `stop` is set (then finishes the open batch) or an error occurs, counting in
/// `counters` (which the metrics endpoint serves).
pub fn run(
    k: &KafkaConfig,
    d: &ServiceConfig,
    engine: &EngineConfig,
    counters: &Counters,
    stop: &AtomicBool,
    rejoin: &AtomicBool,
) -> Result<()> {
    let started_at = Instant::now();
    counters.set(Gauge::Restoring, 1);
    let instance = instance_id(&d.instance_id);
    let transactional_id = if d.transactional_id.is_empty() {
        format!("{}-{instance}", d.group_id)
    } else {
        d.transactional_id.clone()
    };
    // Fence any previous instance first: this aborts a transaction it left open, without
    // which the group's committed offsets stay unstable (unreadable) until it times out.
    let mut pcfg = producer_config(k);
    pcfg.set("transactional.id", &transactional_id)
        .set("transaction.timeout.ms", "60000");
    let producer: TxProducer = pcfg.create_with_context(Producing)?;
    // A transaction its killed predecessor left open is being aborted: while a broker of
    // several is down that takes the coordinator longer than one call waits.
    let asked = Instant::now();
    let mut init = producer.init_transactions(TIMEOUT);
    while let Err(KafkaError::Transaction(t)) = &init {
        if t.is_fatal() || asked.elapsed() > 2 * TRANSIENT_PATIENCE {
            break;
        }
        KafkaRetried {
            what: "init_transactions",
            error: &t.to_string(),
        }
        .emit(counters);
        std::thread::sleep(Duration::from_secs(1));
        init = producer.init_transactions(TIMEOUT);
    }
    init.with_context(|| {
        format!(
            "init_transactions of {transactional_id} (is another detector running as instance \
             {instance}? give each its own detector.instance_id)"
        )
    })?;
    let topic = &k.topics.readings;
    let mut ccfg = group_member_config(k, &d.group_id, &instance);
    // A backlog (a replay, a catch-up after an outage, a head-end's backfill) was read at the
    // pace of librdkafka's fetches, not judged at the engines': with fetches of 4 MiB a partition
    // instead of its default 1 MiB, 2.9 M readings on three partitions went from 16-18 s to
    // 6.6-7.6 s (256 KiB: 22 s; 16 MiB: 7.1-7.3 s). A setting in `kafka.properties` wins.
    if !k.properties.contains_key("max.partition.fetch.bytes") {
        ccfg.set("max.partition.fetch.bytes", "4194304");
    }
    let consumer: rdkafka::consumer::BaseConsumer<Assigner> =
        ccfg.create_with_context(Assigner {
            topic: topic.clone(),
            group_id: d.group_id.clone(),
            state_dir: d.state_dir.clone(),
            engine: engine.clone(),
            here: std::sync::Mutex::new(None),
            changes: std::sync::Mutex::new(Vec::new()),
            changed: AtomicBool::new(false),
            failed: std::sync::Mutex::new(None),
        })?;
    let here = Header {
        cluster_id: consumer
            .client()
            .fetch_cluster_id(TIMEOUT)
            .unwrap_or_default(),
        topic: topic.clone(),
        group_id: d.group_id.clone(),
        offsets: BTreeMap::new(),
        registry: BTreeMap::new(),
        bytes: 0,
    };
    *consumer
        .context()
        .here
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = Some(here.clone());
    // The number of partitions decides which engine a register row belongs to.
    let partition_count = partitions(&consumer, topic).map_err(|e| anyhow!(e))?.len() as i32;
    consumer.subscribe(&[topic.as_str()])?;
    tracing::info!(instance, transactional_id, "joining the detector group");

    let mut tasks: BTreeMap<i32, Task> = BTreeMap::new();
    let mut side: Option<SideTopics> = None;
    let mut joined = false;
    let mut restoring = true;
    let mut last_watermarks = Instant::now();
    let mut alerts = Vec::new();
    let mut out: Vec<Outgoing> = Vec::new();
    // Rejected records for the DLQ: their source (for a log line if they can't be written)
    // and their JSON.
    let mut dlq: Vec<(String, Vec<u8>)> = Vec::new();
    let mut last_log = Instant::now();
    let mut latencies = Latencies::new();
    let mut produced_at: Vec<i64> = Vec::new();
    let mut gathered = Gathered::default();
    let interval = Duration::from_secs(d.checkpoint_interval_s);
    // Takes up what the rebalance callback recorded, in order: a revoked partition's task is
    // checkpointed and dropped with its gathered readings (its next owner reads them), a handed
    // one's engine set up and the side topics read into it.
    let take_changes = |tasks: &mut BTreeMap<i32, Task>,
                        side: &mut Option<SideTopics>,
                        joined: &mut bool,
                        gathered: &mut Gathered,
                        out: &mut Vec<Outgoing>|
     -> Result<()> {
        let ctx = consumer.context();
        if !ctx.changed.swap(false, Ordering::Acquire) {
            return Ok(());
        }
        if let Some(why) = ctx.failed.lock().unwrap_or_else(|e| e.into_inner()).take() {
            anyhow::bail!(why);
        }
        let changes = std::mem::take(&mut *ctx.changes.lock().unwrap_or_else(|e| e.into_inner()));
        for change in changes {
            match change {
                Change::Revoked(ps) => {
                    gathered.by_partition.retain(|p, _| !ps.contains(p));
                    for p in ps {
                        // Its state is what the last transaction committed — unless register
                        // rows it took since wait in `out`: then the next owner starts from the
                        // previous checkpoint, which has not seen them.
                        if let Some(mut task) = tasks.remove(&p) {
                            if out.is_empty() {
                                task.checkpoint(&here, p, true);
                            }
                        }
                    }
                }
                Change::Assigned(handed) => {
                    *joined = true;
                    let mut fresh = 0;
                    for h in handed {
                        let store = Store::new(&d.state_dir, &d.group_id, h.partition);
                        let task = Task::new(h.partition, h.committed, h.restored, store, engine)?;
                        tasks.insert(h.partition, task);
                        fresh += 1;
                    }
                    if fresh > 0 {
                        let mut alerts = Vec::new();
                        *side = Some(SideTopics::read(
                            k,
                            &d.group_id,
                            tasks,
                            partition_count,
                            &mut alerts,
                        )?);
                        for a in &alerts {
                            out.push(Outgoing::of(a)?);
                        }
                    }
                }
            }
        }
        Ok(())
    };

    let group_changed = || consumer.context().changed.load(Ordering::Relaxed);
    // When each partition last gave readings (or was found caught up): the stall check.
    let mut fetched_at: BTreeMap<i32, Instant> = BTreeMap::new();
    while !stop.load(Ordering::Relaxed) {
        if rejoin.swap(false, Ordering::AcqRel) {
            // The group leaves partitions unwatched (see `audit`): leaving (a static member
            // leaves only when asked to) and joining again makes the group hand out every
            // partition afresh.
            tracing::warn!("partitions of {topic} are unwatched: leaving and rejoining the group");
            consumer.unsubscribe();
            consumer.subscribe(&[topic.as_str()])?;
        }
        take_changes(&mut tasks, &mut side, &mut joined, &mut gathered, &mut out)?;
        if let Some(side) = &side {
            side.follow(&mut tasks, partition_count, &mut alerts)?;
        }
        // Register changes resolve episodes: those messages go out with the next transaction.
        for a in alerts.drain(..) {
            out.push(Outgoing::of(&a)?);
        }
        let deadline = Instant::now() + Duration::from_millis(100);
        let mut n = 0;
        let mut past_deadline = false;
        while n < d.batch_size && !past_deadline {
            // What the client has fetched is taken without waiting (and without reading the
            // clock, which cost a tenth of the detector's time per record); it waits for more
            // only when it has none, and checks the batch's deadline every 256 records.
            let msg = match consumer.poll(Duration::ZERO) {
                Some(msg) => msg,
                None => {
                    if group_changed() {
                        break;
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    match consumer.poll(left) {
                        Some(msg) => msg,
                        None => break,
                    }
                }
            };
            if group_changed() {
                take_changes(&mut tasks, &mut side, &mut joined, &mut gathered, &mut out)?;
            }
            // A passing error (a broker of several lost, a leader moving) is ridden out: the
            // client fetches from the new leader by itself, and a new run would be another
            // rebalance. A consumer that stops fetching for good is caught by the stall check.
            let msg = match msg {
                Ok(msg) => msg,
                Err(e) if transient(&e) => {
                    KafkaRetried {
                        what: "reading readings",
                        error: &e.to_string(),
                    }
                    .emit(counters);
                    break;
                }
                Err(e) => return Err(e).context("reading readings"),
            };
            n += 1;
            past_deadline = n % 256 == 0 && Instant::now() >= deadline;
            gathered.push(
                msg.partition(),
                msg.offset(),
                msg.timestamp().to_millis(),
                msg.payload(),
            );
        }
        take_changes(&mut tasks, &mut side, &mut joined, &mut gathered, &mut out)?;
        for (&p, share) in &gathered.by_partition {
            if !share.is_empty() {
                fetched_at.insert(p, Instant::now());
            }
        }
        // Each partition's share on its own thread (its own engine): the cores a detector has
        // judge in parallel, and the outputs join in partition order.
        let shares: Vec<(i32, &mut Task, &[Fetched])> = tasks
            .iter_mut()
            .filter_map(|(&p, task)| {
                let share = gathered.by_partition.get(&p).filter(|s| !s.is_empty())?;
                Some((p, task, share.as_slice()))
            })
            .collect();
        let bytes = &gathered.bytes;
        let judged: Vec<Result<Verdicts>> = std::thread::scope(|scope| {
            let work = |(p, task, share): (i32, &mut Task, &[Fetched])| {
                judge(task, p, share, bytes, topic, d.max_future_s, counters)
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
        gathered.clear();
        let mut live = false;
        for v in judged {
            let v = v?;
            live |= v.live;
            out.extend(v.out);
            dlq.extend(v.dlq);
            produced_at.extend(v.produced_at);
        }
        if live || !out.is_empty() {
            let committing = Instant::now();
            let sent = send_batch(&producer, &consumer, k, topic, &tasks, &out, &dlq, counters);
            let unwritten = match sent {
                Ok(unwritten) => unwritten,
                Err(e) if refused(&e) => {
                    // A commit racing a rebalance is refused by the group's generation
                    // (KIP-447): nothing of the batch was written, so every engine goes back
                    // to its checkpoint and the consumer with it, and judges the rest again.
                    tracing::warn!("transaction refused, judging again from the checkpoints: {e}");
                    producer.abort_transaction(TIMEOUT)?;
                    gathered.clear();
                    produced_at.clear();
                    out.clear();
                    dlq.clear();
                    for (&p, task) in tasks.iter_mut() {
                        task.rewind(&here, p, engine)?;
                        let from = match task.next {
                            0 => Offset::Beginning,
                            o => Offset::Offset(o),
                        };
                        consumer.seek(topic, p, from, TIMEOUT)?;
                    }
                    // Register rows applied since the last commit were in the refused
                    // transaction: their alerts are said again.
                    side = Some(SideTopics::read(
                        k,
                        &d.group_id,
                        &mut tasks,
                        partition_count,
                        &mut alerts,
                    )?);
                    continue;
                }
                Err(e) => return Err(e),
            };
            for task in tasks.values_mut() {
                task.committed = task.committable();
                task.said = Some(task.registry.clone());
            }
            TransactionCommitted {
                millis: committing.elapsed().as_millis() as u64,
            }
            .emit(counters);
            let committed = now_ms();
            for &t in &produced_at {
                latencies.record(committed - t);
            }
            counters.observe_each(
                Histogram::ReadingToCommit,
                produced_at
                    .drain(..)
                    .map(|t| (committed - t) as f64 / 1000.0),
            );
            for o in &out {
                AlertEmitted {
                    kind: o.kind,
                    status: o.status.as_str(),
                }
                .emit(counters);
            }
            for (t, n) in [
                (&k.topics.alerts, out.len()),
                (&k.topics.suspects, out.len()),
                (&k.topics.dlq, dlq.len() - unwritten),
            ] {
                RecordsProduced {
                    topic: t,
                    n: n as u64,
                }
                .emit(counters);
            }
            DlqWritten((dlq.len() - unwritten) as u64).emit(counters);
            out.clear();
            dlq.clear();
        }
        producer.poll(Duration::ZERO);
        RecordsConsumed { topic, n: n as u64 }.emit(counters);
        let meters: usize = tasks.values().map(|t| t.engine.meters()).sum();
        counters.set(Gauge::Meters, meters as u64);
        let held: usize = tasks.values().map(|t| t.engine.held()).sum();
        counters.set(Gauge::ReadingsHeld, held as u64);
        // Caught up: every partition at its commit, or (a commit past the last record, as
        // after transaction markers) at the end of what there is to read.
        let mut left = 0;
        let look = n == 0 || last_watermarks.elapsed() >= Duration::from_secs(1);
        if look {
            last_watermarks = Instant::now();
        }
        for (&p, task) in tasks.iter_mut() {
            if task.restoring()
                && look
                && consumer
                    .fetch_watermarks(topic, p, TIMEOUT)
                    .is_ok_and(|(low, high)| task.next.max(low) >= high)
            {
                task.next = task.next.max(task.replay_until);
            }
            left += (task.replay_until - task.next).max(0);
        }
        counters.set(Gauge::RestoreRemaining, left as u64);
        let now_restoring = !joined || left > 0;
        if now_restoring != restoring {
            restoring = now_restoring;
            counters.set(Gauge::Restoring, u64::from(restoring));
            if !restoring {
                tracing::info!(
                    seconds = started_at.elapsed().as_secs_f64(),
                    meters,
                    partitions = ?tasks.keys().collect::<Vec<_>>(),
                    "state rebuilt: live"
                );
            }
        }
        // Everything consumed so far has its outputs committed: the state may be saved.
        for (&p, task) in tasks.iter_mut() {
            if task.last_checkpoint.elapsed() >= interval {
                task.checkpoint(&here, p, false);
            }
        }
        // The checkpoints' total size, and the time of the oldest (once every task has one):
        // what a restart would replay from.
        let written: Vec<(u64, u64)> = tasks.values().filter_map(|t| t.checkpointed).collect();
        if !written.is_empty() {
            counters.set(
                Gauge::CheckpointBytes,
                written.iter().map(|&(bytes, _)| bytes).sum(),
            );
        }
        if !tasks.is_empty() && written.len() == tasks.len() {
            let oldest = written.iter().map(|&(_, at)| at).min().unwrap_or(0);
            counters.set(Gauge::CheckpointTimestamp, oldest);
        }
        if last_log.elapsed() > Duration::from_secs(10) {
            last_log = Instant::now();
            let parts: Vec<i32> = tasks.keys().copied().collect();
            let lags = report_lag(
                &consumer,
                topic,
                &parts,
                |p| tasks.get(&p).map(|t| t.next).filter(|&o| o > 0),
                counters,
            );
            counters.set(Gauge::PartitionsOwned, parts.len() as u64);
            for p in 0..partition_count {
                counters.set_labelled(
                    "gridwatch_partition_owned",
                    labels(&[("topic", topic), ("partition", &p.to_string())]),
                    i64::from(tasks.contains_key(&p)),
                );
            }
            // Readings waiting (more than a transaction marker) on a partition that has given
            // none for a long while: the client stopped fetching it.
            fetched_at.retain(|p, _| tasks.contains_key(p));
            for (&p, &lag) in &lags {
                let since = *fetched_at.entry(p).or_insert_with(Instant::now);
                if lag <= 1 {
                    fetched_at.insert(p, Instant::now());
                } else if since.elapsed() > STALLED_AFTER {
                    anyhow::bail!(
                        "partition {p} of {topic} has {lag} readings waiting and gave none for \
                         {}s: fetching stalled, starting a new consumer",
                        since.elapsed().as_secs()
                    );
                }
            }
            log_progress("detector progress", counters, &latencies, meters);
        }
    }
    for (&p, task) in tasks.iter_mut() {
        task.checkpoint(&here, p, true);
    }
    let meters: usize = tasks.values().map(|t| t.engine.meters()).sum();
    log_progress("detector stopped", counters, &latencies, meters);
    Ok(())
}

/// Watches the detector group as a whole, every few seconds until `stop`: the partitions of
/// the readings topic against the members' assignments (the coordinator's description) and the
/// group's committed offsets. Partitions unwatched longer than `unowned_alert_s` are counted in
/// `gridwatch_partitions_unowned` and logged at ERROR, and `rejoin` asks the run loop to leave
/// and rejoin the group (at most once per bound), which makes the group hand every partition
/// out afresh. Its own client, so a slow coordinator never holds up judging.
pub fn audit(
    k: &KafkaConfig,
    d: &ServiceConfig,
    counters: &Counters,
    stop: &AtomicBool,
    rejoin: &AtomicBool,
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
        let looked = (|| -> Result<Vec<i32>> {
            let parts = partitions(c, topic).map_err(|e| anyhow!(e))?;
            let group = describe_group(c.client(), &d.group_id, topic, Duration::from_secs(10))
                .map_err(|e| anyhow!(e))?;
            let mut tpl = TopicPartitionList::new();
            for &p in &parts {
                tpl.add_partition(topic, p);
            }
            let committed = c.committed_offsets(tpl, Duration::from_secs(10))?;
            let mut never = std::collections::BTreeSet::new();
            for &p in &parts {
                let at = committed.find_partition(topic, p).map(|e| e.offset());
                if !matches!(at, Some(Offset::Offset(_))) {
                    let (low, high) = c.fetch_watermarks(topic, p, Duration::from_secs(10))?;
                    if high > low {
                        never.insert(p);
                    }
                }
            }
            Ok(ownership.look(now_ms(), &parts, &group, &never))
        })();
        match looked {
            Ok(unwatched) => {
                counters.set(Gauge::PartitionsUnowned, unwatched.len() as u64);
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
                        rejoin.store(true, Ordering::Release);
                    }
                }
            }
            // Nothing known is nothing claimed: the gauge keeps its last value.
            Err(e) => tracing::warn!("group audit: {e:#}"),
        }
    }
}

/// Its counts, and how long after it was produced each live reading's batch committed — the
/// latency from a reading to any alert it raises.
fn log_progress(what: &str, counters: &Counters, latencies: &Latencies, meters: usize) {
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
    use super::{
        apply_registry_row, holiday, registry_update, weather_obs, Engine, EngineConfig, Latencies,
        Task,
    };
    use gridwatch_core::{partition, RegistryUpdate};
    use std::collections::BTreeMap;
    use std::time::Instant;

    #[test]
    fn topic_records_with_fields_this_binary_does_not_know_still_decode() {
        let row = br#"{"site_id":"S1","meter_id":"M1","feeder_id":"F1","role":"customer",
            "customer_class":"residential","permitted_kw":12.0,"status":"active",
            "licensed_mining":false,"lat":null,"lon":null,"region":"North","timezone":null,
            "tariff_zone":"T2"}"#;
        match registry_update(Some(b"M1"), Some(row)) {
            Ok(RegistryUpdate::Upsert(r)) => assert_eq!(r.meter_id, "M1"),
            other => panic!("{other:?}"),
        }
        let w = br#"{"region":"North","ts":"2026-01-05T01:00:00Z","temp_c":-21.5,"station":"X"}"#;
        assert_eq!(weather_obs(Some(w)).unwrap().unwrap().temp_c, -21.5);
        let h = br#"{"region":"North","date":"2026-01-07","name":"Christmas","source":"gov"}"#;
        assert_eq!(holiday(Some(h)).unwrap().unwrap().name, "Christmas");
    }

    fn task(engine: &EngineConfig, next: i64, replay_until: i64) -> Task {
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
        }
    }

    #[test]
    fn a_replaying_partition_never_commits_behind_where_it_started() {
        let cfg = EngineConfig::default();
        assert_eq!(
            task(&cfg, 40, 500).committable(),
            500,
            "replaying: its commit"
        );
        assert!(task(&cfg, 40, 500).restoring());
        assert_eq!(
            task(&cfg, 900, 800).committable(),
            900,
            "live: its position"
        );
        assert!(!task(&cfg, 900, 800).restoring());
        assert_eq!(
            task(&cfg, 0, 0).committable(),
            0,
            "nothing read, nothing committed"
        );
    }

    #[test]
    fn a_register_row_goes_to_its_feeders_partition_once_and_a_delete_to_all() {
        let cfg = EngineConfig::default();
        let n = 3;
        let mut tasks: BTreeMap<i32, Task> = (0..n).map(|p| (p, task(&cfg, 0, 0))).collect();
        let row = |meter: &str, feeder: &str| {
            let json = format!(
                r#"{{"site_id":"S{meter}","meter_id":"{meter}","feeder_id":"{feeder}","role":"customer",
                "customer_class":"residential","permitted_kw":12.0,"status":"active",
                "licensed_mining":false,"lat":null,"lon":null,"region":"North"}}"#
            );
            registry_update(Some(meter.as_bytes()), Some(json.as_bytes())).unwrap()
        };
        let mut alerts = Vec::new();
        // F01 hashes to partition 2 of 3 (Kafka's partitioner), as its readings do.
        let f01 = partition::partition_for(b"F01", n);
        assert_eq!(f01, 2);
        apply_registry_row(&mut tasks, n, (0, 0), &row("M1", "F01"), &mut alerts);
        apply_registry_row(&mut tasks, n, (0, 1), &row("M2", "F01"), &mut alerts);
        let meters = |tasks: &BTreeMap<i32, Task>| {
            tasks
                .iter()
                .map(|(&p, t)| (p, t.engine.meters()))
                .collect::<Vec<_>>()
        };
        assert_eq!(meters(&tasks), vec![(0, 0), (1, 0), (2, 2)]);
        // Read again (a second read of the register after a rebalance): already seen, skipped.
        tasks.get_mut(&2).unwrap().engine = Engine::new(cfg.clone()).unwrap();
        apply_registry_row(&mut tasks, n, (0, 1), &row("M2", "F01"), &mut alerts);
        assert_eq!(meters(&tasks), vec![(0, 0), (1, 0), (2, 0)]);
        // A task handed over later (nothing seen) takes it.
        tasks.insert(1, task(&cfg, 0, 0));
        apply_registry_row(&mut tasks, n, (0, 0), &row("M3", "F01"), &mut alerts);
        assert_eq!(meters(&tasks), vec![(0, 0), (1, 0), (2, 0)]);
        apply_registry_row(&mut tasks, n, (0, 2), &row("M3", "F01"), &mut alerts);
        assert_eq!(meters(&tasks), vec![(0, 0), (1, 0), (2, 1)]);
        let delete = RegistryUpdate::Delete {
            meter_id: "M3".into(),
        };
        apply_registry_row(&mut tasks, n, (0, 3), &delete, &mut alerts);
        // Every engine hears of it; none that never had the meter makes a slot for it.
        assert_eq!(meters(&tasks), vec![(0, 0), (1, 0), (2, 1)]);
        assert!(tasks.values().all(|t| t.registry[&0] == 4));
        assert!(alerts.is_empty());
    }

    #[test]
    fn after_a_rewind_only_the_register_rows_no_commit_carried_send_alerts_again() {
        let cfg = EngineConfig::default();
        let mut t = task(&cfg, 0, 0);
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
