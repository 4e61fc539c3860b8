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
use checkpoints::{Header, Store};
use gridwatch_anomaly_detector::{Engine, EngineConfig, ReadingUse, LATE_REASON};
use gridwatch_core::events::{
    AlertEmitted, Counters, DlqWriteFailed, DlqWritten, Gauge, Histogram, InternalEvent,
    ReadingProcessed, ReadingReplayed, RecordRejected, RecordsConsumed, RecordsProduced,
    TransactionCommitted,
};
use gridwatch_core::kafka::{
    consumer_config, partitions, producer_config, queue_full, read_compacted, read_compacted_from,
    report_lag, retry_while_full, transient, Quiet, QuietConsumer,
};
use gridwatch_core::{
    Alert, AlertStatus, DlqRecord, Holiday, KafkaConfig, MeterRecord, Reading, RegistryUpdate,
    Validation, WeatherObs,
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

/// The service's own keys of the `[detector]` table (the engine's are
/// [`EngineConfig`]'s).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceConfig {
    /// Consumer group whose committed offsets mark the detector's progress.
    pub group_id: String,
    /// Transactional id of the detector's producer; unique per running instance.
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
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            group_id: "gridwatch-detector".into(),
            transactional_id: "gridwatch-detector-0".into(),
            batch_size: 20_000,
            metrics_listen: "127.0.0.1:9641".into(),
            state_dir: "gridwatch-state".into(),
            checkpoint_interval_s: 60,
            max_future_s: 900,
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

/// Reads the whole compacted holidays topic into the engine, then leaves the consumer
/// positioned for what comes next.
fn load_holidays(k: &KafkaConfig, group_id: &str, engine: &mut Engine) -> Result<QuietConsumer> {
    let mut days = 0u64;
    let consumer = read_compacted(
        k,
        &format!("{group_id}-holidays"),
        &k.topics.holidays,
        TIMEOUT * 4,
        |_, value| {
            match holiday(value) {
                Ok(Some(h)) => {
                    engine.on_holiday(&h);
                    days += 1;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!("bad holiday record skipped: {e}"),
            }
            Ok(())
        },
    )
    .map_err(|e| anyhow!(e))?;
    tracing::info!(days, "holidays loaded");
    Ok(consumer)
}

/// Reads the whole compacted weather topic into the engine, then leaves the consumer positioned
/// for what comes next.
fn load_weather(k: &KafkaConfig, group_id: &str, engine: &mut Engine) -> Result<QuietConsumer> {
    let mut hours = 0u64;
    let consumer = read_compacted(
        k,
        &format!("{group_id}-weather"),
        &k.topics.weather,
        TIMEOUT * 4,
        |_, value| {
            match weather_obs(value) {
                Ok(Some(w)) => {
                    engine.on_weather(&w);
                    hours += 1;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!("bad weather record skipped: {e}"),
            }
            Ok(())
        },
    )
    .map_err(|e| anyhow!(e))?;
    tracing::info!(hours, "weather loaded");
    Ok(consumer)
}

/// Reads the compacted register into the engine from `from` (per partition, the first row the
/// engine has not seen: after a checkpoint, where it left off; else the beginning), then leaves
/// the consumer positioned for live updates. Returns it and the next offset per partition.
fn load_registry(
    k: &KafkaConfig,
    group_id: &str,
    engine: &mut Engine,
    from: &BTreeMap<i32, i64>,
) -> Result<(QuietConsumer, BTreeMap<i32, i64>)> {
    let mut sink = Vec::new();
    let mut rows = 0u64;
    let (consumer, next) = read_compacted_from(
        k,
        &format!("{group_id}-registry"),
        &k.topics.registry,
        from,
        TIMEOUT * 4,
        |key, value| {
            match registry_update(key, value) {
                Ok(u) => {
                    engine.apply_registry(u, &mut sink);
                    rows += 1;
                }
                Err(e) => tracing::error!("bad register record skipped: {e}"),
            }
            Ok(())
        },
    )
    .map_err(|e| anyhow!(e))?;
    tracing::info!(rows, meters = engine.meters(), "register loaded");
    Ok((consumer, next))
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

/// Sends in the open transaction, serving delivery reports while the queue is full.
fn send_retrying(producer: &BaseProducer, rec: BaseRecord<'_, [u8], [u8]>) -> Result<()> {
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

/// The offsets to commit: each partition's position, but never behind the offset it was
/// committed at when this instance started. A partition still replaying sits below it, and
/// committing that would make the next start treat readings already answered as live, and
/// send their alerts a second time.
fn committable(
    position: &TopicPartitionList,
    topic: &str,
    replay_until: &HashMap<i32, i64>,
) -> Result<TopicPartitionList> {
    let mut out = TopicPartitionList::new();
    for e in position.elements() {
        let floor = replay_until.get(&e.partition()).copied().unwrap_or(0);
        let offset = match e.offset() {
            Offset::Offset(o) => Offset::Offset(o.max(floor)),
            _ if floor > 0 => Offset::Offset(floor),
            other => other,
        };
        out.add_partition_offset(topic, e.partition(), offset)?;
    }
    Ok(out)
}

/// Runs until `stop` is set (then finishes the open batch) or an error occurs, counting in
/// `counters` (which the metrics endpoint serves).
pub fn run(
    k: &KafkaConfig,
    d: &ServiceConfig,
    engine: &EngineConfig,
    counters: &Counters,
    stop: &AtomicBool,
) -> Result<()> {
    let started_at = Instant::now();
    counters.set(Gauge::Restoring, 1);
    // Fence any previous instance first: this aborts a transaction it left open, without
    // which the group's committed offsets stay unstable (unreadable) until it times out.
    let mut pcfg = producer_config(k);
    pcfg.set("transactional.id", &d.transactional_id)
        .set("transaction.timeout.ms", "60000");
    let producer: BaseProducer = pcfg.create()?;
    producer
        .init_transactions(TIMEOUT)
        .context("init_transactions (is another detector running with this transactional_id?)")?;
    let consumer: QuietConsumer = consumer_config(k, &d.group_id).create_with_context(Quiet)?;
    let topic = &k.topics.readings;
    let parts = partitions(&consumer, topic).map_err(|e| anyhow!(e))?;
    let mut all = TopicPartitionList::new();
    for p in &parts {
        all.add_partition(topic, *p);
    }
    let committed = consumer
        .committed_offsets(all, TIMEOUT)
        .context("committed offsets of the detector group")?;
    let mut replay_until: HashMap<i32, i64> = HashMap::new();
    for p in &parts {
        let c = committed.find_partition(topic, *p).map(|e| e.offset());
        replay_until.insert(
            *p,
            match c {
                Some(Offset::Offset(o)) => o,
                _ => 0,
            },
        );
    }
    let mut store = Store::new(&d.state_dir, &d.group_id);
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
    let restored = store.as_ref().and_then(|s| {
        s.load(&here, &replay_until, engine).unwrap_or_else(|why| {
            tracing::warn!(
                path = %s.path().display(),
                "checkpoint not used, rebuilding state from every retained reading: {why}"
            );
            None
        })
    });
    // The next offset the engine has not seen, per partition it has seen any of.
    let (mut engine, mut consumed, registry_from) = match restored {
        Some(r) => {
            tracing::info!(
                meters = r.engine.meters(),
                offsets = ?r.offsets,
                registry = ?r.registry,
                "checkpoint restored"
            );
            (r.engine, r.offsets, r.registry)
        }
        None => (
            Engine::new(engine.clone())?,
            BTreeMap::new(),
            BTreeMap::new(),
        ),
    };
    // The next register offset the engine has not seen, per partition.
    let (registry, mut registry_seen) = load_registry(k, &d.group_id, &mut engine, &registry_from)?;
    let weather = load_weather(k, &d.group_id, &mut engine)?;
    let holidays = load_holidays(k, &d.group_id, &mut engine)?;
    let mut assignment = TopicPartitionList::new();
    for p in &parts {
        let from = consumed
            .get(p)
            .map_or(Offset::Beginning, |&o| Offset::Offset(o));
        assignment.add_partition_offset(topic, *p, from)?;
    }
    consumer.assign(&assignment)?;
    tracing::info!(
        ?replay_until,
        from = ?consumed,
        "replaying committed readings to rebuild state"
    );
    let mut restoring = true;
    let mut last_checkpoint = Instant::now();
    let interval = Duration::from_secs(d.checkpoint_interval_s);

    let group = consumer
        .group_metadata()
        .ok_or_else(|| anyhow!("no consumer group metadata"))?;

    let mut alerts = Vec::new();
    let mut out: Vec<Outgoing> = Vec::new();
    // Rejected records for the DLQ: their source (for a log line if they can't be written)
    // and their JSON.
    let mut dlq: Vec<(String, Vec<u8>)> = Vec::new();
    let mut last_log = Instant::now();
    let mut latencies = Latencies::new();
    let mut produced_at: Vec<i64> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        while let Some(msg) = registry.poll(Duration::ZERO) {
            let msg = match msg {
                Err(KafkaError::PartitionEOF(_)) => continue,
                Err(e) if transient(&e) => {
                    tracing::warn!("reading the register: {e} (retrying)");
                    continue;
                }
                other => other.context("reading the register")?,
            };
            registry_seen.insert(msg.partition(), msg.offset() + 1);
            match registry_update(msg.key(), msg.payload()) {
                Ok(u) => engine.apply_registry(u, &mut alerts),
                Err(e) => {
                    tracing::error!(offset = msg.offset(), "bad register record skipped: {e}")
                }
            }
        }
        while let Some(msg) = weather.poll(Duration::ZERO) {
            let msg = match msg {
                Err(KafkaError::PartitionEOF(_)) => continue,
                Err(e) if transient(&e) => {
                    tracing::warn!("reading the weather: {e} (retrying)");
                    continue;
                }
                other => other.context("reading the weather")?,
            };
            match weather_obs(msg.payload()) {
                Ok(Some(w)) => engine.on_weather(&w),
                Ok(None) => {}
                Err(e) => tracing::warn!(offset = msg.offset(), "bad weather record skipped: {e}"),
            }
        }
        while let Some(msg) = holidays.poll(Duration::ZERO) {
            let msg = match msg {
                Err(KafkaError::PartitionEOF(_)) => continue,
                Err(e) if transient(&e) => {
                    tracing::warn!("reading the holidays: {e} (retrying)");
                    continue;
                }
                other => other.context("reading the holidays")?,
            };
            match holiday(msg.payload()) {
                Ok(Some(h)) => engine.on_holiday(&h),
                Ok(None) => {}
                Err(e) => tracing::warn!(offset = msg.offset(), "bad holiday record skipped: {e}"),
            }
        }
        // Register changes resolve episodes: those messages go out with the next transaction.
        for a in alerts.drain(..) {
            out.push(Outgoing::of(&a)?);
        }
        let mut live = false;
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
            // Any error, transient or not, ends the run: a consumer left to ride out a broker
            // restart was seen to stop fetching for good (CI), while a new run restores the
            // checkpoint and is back within seconds.
            let msg = msg.context("reading readings")?;
            n += 1;
            past_deadline = n % 256 == 0 && Instant::now() >= deadline;
            consumed.insert(msg.partition(), msg.offset() + 1);
            let is_live = msg.offset() >= replay_until.get(&msg.partition()).copied().unwrap_or(0);
            let parsed = msg
                .payload()
                .ok_or_else(|| "empty value".to_string())
                .and_then(|p| serde_json::from_slice::<Reading>(p).map_err(|e| e.to_string()))
                .and_then(|r| {
                    let written = msg.timestamp().to_millis().map(|ms| ms.div_euclid(1000));
                    let v = Validation {
                        max_ts: written.map(|t| t + d.max_future_s),
                    };
                    r.validate(v).map(|()| r)
                });
            match parsed {
                Ok(r) => {
                    let used = engine.on_reading(&r, &mut alerts);
                    if is_live {
                        ReadingProcessed(used).emit(counters);
                        if used == ReadingUse::Late {
                            let rec = DlqRecord::new(
                                LATE_REASON.to_string(),
                                format!("{topic}/{}/{}", msg.partition(), msg.offset()),
                                String::from_utf8_lossy(msg.payload().unwrap_or_default())
                                    .into_owned(),
                            );
                            dlq.push((rec.source.clone(), serde_json::to_vec(&rec)?));
                        }
                    }
                }
                Err(reason) if is_live => {
                    let rec = DlqRecord::new(
                        format!("detector: not a valid reading: {reason}"),
                        format!("{topic}/{}/{}", msg.partition(), msg.offset()),
                        String::from_utf8_lossy(msg.payload().unwrap_or_default()).into_owned(),
                    );
                    RecordRejected {
                        reason: &rec.reason,
                        source: &rec.source,
                    }
                    .emit(counters);
                    dlq.push((rec.source.clone(), serde_json::to_vec(&rec)?));
                }
                Err(_) => {}
            }
            if is_live {
                live = true;
                produced_at.extend(msg.timestamp().to_millis());
                for a in alerts.drain(..) {
                    out.push(Outgoing::of(&a)?);
                }
            } else {
                ReadingReplayed.emit(counters);
                alerts.clear();
            }
        }
        if live || !out.is_empty() {
            let committing = Instant::now();
            producer.begin_transaction()?;
            for o in &out {
                send_retrying(
                    &producer,
                    BaseRecord::to(&k.topics.alerts)
                        .key(o.target.as_bytes())
                        .payload(&o.json),
                )?;
                // The case's latest word, or its tombstone, on the compacted inspection list.
                let case = BaseRecord::to(&k.topics.suspects).key(o.alert_id.as_bytes());
                let case = if o.status == AlertStatus::Resolved {
                    case
                } else {
                    case.payload(&o.json[..])
                };
                send_retrying(&producer, case)?;
            }
            let mut unwritten = 0;
            for (source, value) in &dlq {
                // A record the producer refuses outright would be refused again on every
                // replay: it must not stop the detector. (Failures the broker reports later
                // fail the transaction, which is retried from the checkpoint.)
                if let Err(e) =
                    send_retrying(&producer, BaseRecord::to(&k.topics.dlq).payload(value))
                {
                    DlqWriteFailed {
                        source,
                        error: &e.to_string(),
                    }
                    .emit(counters);
                    unwritten += 1;
                }
            }
            let position = committable(&consumer.position()?, topic, &replay_until)?;
            producer.send_offsets_to_transaction(&position, &group, TIMEOUT)?;
            // Serve the delivery reports ourselves until the batch is acknowledged: left to
            // commit_transaction's own flush, a BaseProducer waits in 100 ms steps, which
            // capped the detector at ten transactions a second.
            let acked_by = Instant::now() + TIMEOUT;
            while producer.in_flight_count() > 0 && Instant::now() < acked_by {
                producer.poll(Duration::from_millis(1));
            }
            producer.commit_transaction(TIMEOUT)?;
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
        counters.set(Gauge::Meters, engine.meters() as u64);
        if restoring {
            let left: i64 = replay_until
                .iter()
                .map(|(p, &until)| (until - consumed.get(p).copied().unwrap_or(0)).max(0))
                .sum();
            counters.set(Gauge::RestoreRemaining, left as u64);
            // Caught up: every partition at its commit, or (a commit past the last record, as
            // after transaction markers) at the end of what there is to read.
            let at_end = || {
                replay_until.keys().all(|&p| {
                    let at = consumed.get(&p).copied().unwrap_or(0);
                    at >= replay_until[&p]
                        || consumer
                            .fetch_watermarks(topic, p, TIMEOUT)
                            .is_ok_and(|(low, high)| at.max(low) >= high)
                })
            };
            if left == 0 || (n == 0 && at_end()) {
                restoring = false;
                counters.set(Gauge::Restoring, 0);
                counters.set(Gauge::RestoreRemaining, 0);
                tracing::info!(
                    seconds = started_at.elapsed().as_secs_f64(),
                    meters = engine.meters(),
                    "state rebuilt: live"
                );
            }
        }
        // Everything consumed so far has its outputs committed: the state may be saved.
        if let Some(s) = store.as_mut() {
            if last_checkpoint.elapsed() >= interval && s.idle() {
                last_checkpoint = Instant::now();
                checkpoint(s, &here, &engine, (&consumed, &registry_seen), counters);
            }
        }
        if last_log.elapsed() > Duration::from_secs(10) {
            last_log = Instant::now();
            report_lag(
                &consumer,
                topic,
                &parts,
                |p| consumed.get(&p).copied(),
                counters,
            );
            log_progress("detector progress", counters, &latencies, engine.meters());
        }
    }
    if let Some(s) = store.as_mut() {
        s.finish();
        checkpoint(s, &here, &engine, (&consumed, &registry_seen), counters);
        s.finish();
    }
    log_progress("detector stopped", counters, &latencies, engine.meters());
    Ok(())
}

/// Saves the engine's state and the offsets it covers (written in the background).
fn checkpoint(
    store: &mut Store,
    here: &Header,
    engine: &Engine,
    (consumed, registry): (&BTreeMap<i32, i64>, &BTreeMap<i32, i64>),
    counters: &Counters,
) {
    let took = Instant::now();
    let body = engine.checkpoint();
    let header = Header {
        offsets: consumed.clone(),
        registry: registry.clone(),
        bytes: body.len() as u64,
        ..here.clone()
    };
    tracing::debug!(
        bytes = body.len(),
        millis = took.elapsed().as_millis() as u64,
        "checkpoint taken"
    );
    counters.set(Gauge::CheckpointBytes, body.len() as u64);
    counters.set(Gauge::CheckpointTimestamp, (now_ms() / 1000) as u64);
    store.write(header, body);
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
    use super::{committable, holiday, registry_update, weather_obs, Latencies};
    use gridwatch_core::RegistryUpdate;
    use rdkafka::{Offset, TopicPartitionList};
    use std::collections::HashMap;

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

    #[test]
    fn a_replaying_partition_never_commits_behind_where_it_started() {
        let mut position = TopicPartitionList::new();
        position
            .add_partition_offset("r", 0, Offset::Offset(40))
            .unwrap();
        position
            .add_partition_offset("r", 1, Offset::Offset(900))
            .unwrap();
        position
            .add_partition_offset("r", 2, Offset::Invalid)
            .unwrap();
        position
            .add_partition_offset("r", 3, Offset::Invalid)
            .unwrap();
        let replay_until = HashMap::from([(0, 500), (1, 800), (2, 70), (3, 0)]);
        let c = committable(&position, "r", &replay_until).unwrap();
        let at = |p| c.find_partition("r", p).unwrap().offset();
        assert_eq!(
            at(0),
            Offset::Offset(500),
            "still replaying: stays at its commit"
        );
        assert_eq!(at(1), Offset::Offset(900), "live: its position");
        assert_eq!(
            at(2),
            Offset::Offset(70),
            "nothing read yet: stays at its commit"
        );
        assert_eq!(at(3), Offset::Invalid, "never committed, nothing read");
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
