//! The detector's transactional producer: each batch's alerts (to the alerts topic and the
//! compacted suspects), its DLQ records and the tasks' offsets in one Kafka transaction, and
//! the rules for its errors — retriable ones waited out in place, a refused transaction
//! aborted and judged again, anything else the end of the run.

use crate::state::{records, written_format, Snapshot, StateRef};
use crate::{ServiceConfig, TIMEOUT, TRANSIENT_PATIENCE};
use anyhow::{anyhow, bail, Context, Result};
use gridwatch_core::events::{Counters, DlqWriteFailed, InternalEvent, KafkaRetried};
use gridwatch_core::kafka::{instance_id, producer_config, queue_full, retry_while_full};
use gridwatch_core::{Alert, AlertStatus, KafkaConfig};
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::TopicPartitionList;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// An alert on its way out: to `gridwatch.alerts` keyed by target, and to the compacted
/// `gridwatch.suspects` keyed by `alert_id`.
pub(crate) struct Outgoing {
    target: String,
    alert_id: String,
    pub(crate) kind: &'static str,
    pub(crate) status: AlertStatus,
    json: Vec<u8>,
}

impl Outgoing {
    pub(crate) fn of(a: &Alert) -> Result<Outgoing> {
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
/// Where the broker put a record (partition, offset), or why not.
type Placed = Result<(i32, i64), String>;

#[derive(Default)]
pub(crate) struct Producing {
    /// Delivery reports of the records sent with a non-zero opaque (a snapshot's chunk 0):
    /// where the broker put each, or why not.
    placed: std::sync::Mutex<std::collections::HashMap<usize, Placed>>,
}

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
    type DeliveryOpaque = usize;
    fn delivery(&self, report: &rdkafka::message::DeliveryResult<'_>, opaque: usize) {
        if opaque == 0 {
            return;
        }
        use rdkafka::message::Message;
        let placed = match report {
            Ok(m) => Ok((m.partition(), m.offset())),
            Err((e, _)) => Err(e.to_string()),
        };
        self.placed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(opaque, placed);
    }
}

pub(crate) type TxProducer = BaseProducer<Producing>;

/// Sends in the open transaction, serving delivery reports while the queue is full.
fn send_retrying(producer: &TxProducer, rec: BaseRecord<'_, [u8], [u8], usize>) -> Result<()> {
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

/// What a batch's transaction carries: alerts, DLQ records (their source and JSON), and the
/// snapshots of the tasks whose state is due.
pub(crate) struct Batch<'a> {
    pub(crate) out: &'a [Outgoing],
    pub(crate) dlq: &'a [(String, Vec<u8>)],
    pub(crate) snapshots: &'a [Snapshot],
}

/// Writes a batch in one transaction: each alert to the alerts topic and the compacted
/// suspects, the DLQ records, the snapshots to the state topic, and every task's offset with
/// the group's current metadata — `position` makes them, knowing where each snapshot landed.
/// Returns how many DLQ records the producer refused outright, and the snapshots' places.
pub(crate) fn send_batch<C: rdkafka::consumer::ConsumerContext>(
    producer: &TxProducer,
    consumer: &rdkafka::consumer::BaseConsumer<C>,
    k: &KafkaConfig,
    batch: Batch<'_>,
    position: impl FnOnce(&BTreeMap<i32, StateRef>) -> Result<TopicPartitionList>,
    counters: &Counters,
) -> Result<(usize, BTreeMap<i32, StateRef>)> {
    let Batch {
        out,
        dlq,
        snapshots,
    } = batch;
    txn_retrying("beginning a transaction", counters, || {
        producer.begin_transaction()
    })?;
    for o in out {
        send_retrying(
            producer,
            BaseRecord::with_opaque_to(&k.topics.alerts, 0)
                .key(o.target.as_bytes())
                .payload(&o.json),
        )?;
        // The case's latest word, or its tombstone, on the compacted inspection list.
        let case = BaseRecord::with_opaque_to(&k.topics.suspects, 0).key(o.alert_id.as_bytes());
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
        if let Err(e) = send_retrying(
            producer,
            BaseRecord::with_opaque_to(&k.topics.dlq, 0).payload(value),
        ) {
            DlqWriteFailed {
                source,
                error: &e.to_string(),
            }
            .emit(counters);
            unwritten += 1;
        }
    }
    let placed = send_snapshots(producer, k, snapshots)?;
    let position = position(&placed)?;
    // The group's current generation: a commit from an instance the group has since moved on
    // from is refused (KIP-447), never applied over the new owner's.
    let group = consumer
        .group_metadata()
        .ok_or_else(|| anyhow!("no consumer group metadata"))?;
    txn_retrying("sending the offsets", counters, || {
        producer.send_offsets_to_transaction(&position, &group, TIMEOUT)
    })?;
    wait_for_acks(producer);
    pause_before_commit();
    txn_retrying("committing", counters, || {
        producer.commit_transaction(TIMEOUT)
    })?;
    Ok((unwritten, placed))
}

/// Sends each snapshot's records to the state topic (readings partition `p` to its partition
/// `p` modulo the topic's count) and waits for chunk 0 of each to be placed: its offset is
/// what the commit's metadata names.
fn send_snapshots(
    producer: &TxProducer,
    k: &KafkaConfig,
    snapshots: &[Snapshot],
) -> Result<BTreeMap<i32, StateRef>> {
    static OPAQUE: AtomicUsize = AtomicUsize::new(1);
    let mut asked = Vec::new();
    let format = written_format();
    for s in snapshots {
        let generation = s.header.generation.unwrap_or(0);
        for (i, (key, value)) in records(&s.group, s.partition, &s.header, &s.body, format)
            .into_iter()
            .enumerate()
        {
            let opaque = if i == 0 {
                let o = OPAQUE.fetch_add(1, Ordering::Relaxed).max(1);
                asked.push((s.partition, generation, o));
                o
            } else {
                0
            };
            send_retrying(
                producer,
                BaseRecord::with_opaque_to(&k.topics.state, opaque)
                    .partition(s.state_partition)
                    .key(key.as_bytes())
                    .payload(&value[..]),
            )?;
        }
    }
    let mut placed = BTreeMap::new();
    let until = Instant::now() + TIMEOUT;
    for (partition, generation, opaque) in asked {
        let at = loop {
            let got = producer
                .context()
                .placed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&opaque);
            match got {
                Some(Ok((p, offset))) => {
                    break StateRef {
                        partition: p,
                        offset,
                        generation,
                    }
                }
                Some(Err(e)) => bail!("the snapshot of partition {partition} was not written: {e}"),
                None if Instant::now() > until => {
                    bail!("the snapshot of partition {partition} was not acknowledged in time")
                }
                None => {
                    producer.poll(Duration::ZERO);
                    std::thread::sleep(Duration::from_micros(500));
                }
            }
        };
        placed.insert(partition, at);
    }
    Ok(placed)
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
pub(crate) fn refused(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<KafkaError>(),
        Some(KafkaError::Transaction(t)) if t.txn_requires_abort() && !t.is_fatal()
    )
}

/// The detector's transactional producer, its id `<group_id>-<instance>` unless configured.
/// Creating it fences any earlier producer of the same id (KIP-98: the coordinator bumps the
/// id's epoch and aborts, or completes, the transaction it left open), so a killed
/// predecessor's batch is settled before this run reads the group's committed offsets.
pub(crate) fn transactional_producer(
    k: &KafkaConfig,
    d: &ServiceConfig,
    counters: &Counters,
) -> Result<(TxProducer, String)> {
    let instance = instance_id(&d.instance_id);
    let transactional_id = if d.transactional_id.is_empty() {
        format!("{}-{instance}", d.group_id)
    } else {
        d.transactional_id.clone()
    };
    let mut pcfg = producer_config(k);
    pcfg.set("transactional.id", &transactional_id)
        .set("transaction.timeout.ms", "60000");
    let producer: TxProducer = pcfg.create_with_context(Producing::default())?;
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
    Ok((producer, transactional_id))
}

/// The fault tests' hook between `send_offsets_to_transaction` and `commit_transaction`: with
/// `GRIDWATCH_TEST_PAUSE_COMMIT` naming a file, each commit waits while that file exists, having
/// written `<file>.paused` (so a test can kill the transaction coordinator's broker at exactly
/// this point). Unset, as in every deployment, it costs one environment lookup per batch.
fn pause_before_commit() {
    let Some(file) = std::env::var_os("GRIDWATCH_TEST_PAUSE_COMMIT") else {
        return;
    };
    let file = std::path::PathBuf::from(file);
    if !file.exists() {
        return;
    }
    let paused = file.with_extension("paused");
    if let Err(e) = std::fs::write(&paused, b"paused before commit_transaction\n") {
        tracing::warn!("test hook: {e}");
    }
    tracing::warn!(file = %file.display(), "test hook: commit paused");
    while file.exists() {
        std::thread::sleep(Duration::from_millis(50));
    }
    tracing::warn!("test hook: commit resumed");
}
