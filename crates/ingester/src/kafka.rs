//! The producer side of the ingester: readings to `gridwatch.readings`, rejects to the DLQ,
//! register rows to the compacted `gridwatch.registry`. Idempotent, `acks=all`: a record
//! counts as stored only once the broker has acknowledged it.

use crate::parse::{Format, Records, Validation};
use gridwatch_core::kafka::producer_config;
use gridwatch_core::{DlqRecord, KafkaConfig, MeterRecord, Reading};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use std::io::BufRead;
use std::time::Duration;

/// Sends records and hands back futures that resolve on broker acknowledgement.
#[derive(Clone)]
pub struct Sender {
    producer: FutureProducer,
    cfg: KafkaConfig,
}

/// Why a record was not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The local queue is full: the broker is slower than the input (back off and retry).
    #[error("the producer queue is full")]
    QueueFull,
    #[error("kafka: {0}")]
    Kafka(String),
}

/// The partition key of a reading: its feeder when known, so a feeder's meters and its head
/// meter share a partition; else its meter.
pub fn reading_key(r: &Reading) -> &str {
    r.feeder_id.as_deref().unwrap_or(&r.meter_id)
}

impl Sender {
    pub fn new(cfg: &KafkaConfig) -> Result<Sender, KafkaError> {
        let producer: FutureProducer = producer_config(cfg).create()?;
        Ok(Sender {
            producer,
            cfg: cfg.clone(),
        })
    }

    fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> Result<DeliveryFuture, SendError> {
        let mut rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic);
        if let Some(k) = key {
            rec = rec.key(k);
        }
        if let Some(v) = value {
            rec = rec.payload(v);
        }
        self.producer.send_result(rec).map_err(|(e, _)| match e {
            KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => SendError::QueueFull,
            other => SendError::Kafka(other.to_string()),
        })
    }

    pub fn send_reading(&self, r: &Reading) -> Result<Ack, SendError> {
        let value = serde_json::to_vec(r).expect("a reading serializes");
        self.send(
            &self.cfg.topics.readings,
            Some(reading_key(r).as_bytes()),
            Some(&value),
        )
        .map(Ack)
    }

    pub fn send_dlq(&self, rec: &DlqRecord) -> Result<Ack, SendError> {
        let value = serde_json::to_vec(rec).expect("a DLQ record serializes");
        self.send(&self.cfg.topics.dlq, None, Some(&value)).map(Ack)
    }

    pub fn send_registry(&self, r: &MeterRecord) -> Result<Ack, SendError> {
        let value = serde_json::to_vec(r).expect("a register row serializes");
        self.send(
            &self.cfg.topics.registry,
            Some(r.meter_id.as_bytes()),
            Some(&value),
        )
        .map(Ack)
    }

    /// A null value on the compacted register topic: the meter is removed.
    pub fn send_registry_delete(&self, meter_id: &str) -> Result<Ack, SendError> {
        self.send(&self.cfg.topics.registry, Some(meter_id.as_bytes()), None)
            .map(Ack)
    }

    /// Whether the broker answers a metadata request for the readings topic.
    pub fn ready(&self, timeout: Duration) -> bool {
        self.producer
            .client()
            .fetch_metadata(Some(&self.cfg.topics.readings), timeout)
            .is_ok()
    }

    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer.flush(timeout)
    }

    /// Sends, retrying while the local queue is full (the caller is a batch job that may wait).
    pub async fn send_patiently(
        &self,
        mut send: impl FnMut(&Sender) -> Result<Ack, SendError>,
    ) -> Result<Ack, SendError> {
        loop {
            match send(self) {
                Err(SendError::QueueFull) => tokio::time::sleep(Duration::from_millis(5)).await,
                other => return other,
            }
        }
    }
}

/// A pending broker acknowledgement.
pub struct Ack(DeliveryFuture);

impl Ack {
    pub async fn wait(self) -> Result<(), SendError> {
        match self.0.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((e, _))) => Err(SendError::Kafka(e.to_string())),
            Err(_) => Err(SendError::Kafka("the producer was dropped".into())),
        }
    }
}

/// Counts of a file ingest.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IngestCounts {
    pub readings: u64,
    pub rejects: u64,
    pub failed: u64,
    pub first_failure: Option<String>,
}

/// Streams a readings file to Kafka: readings to the readings topic, rejects to the DLQ with
/// `source` = `<name>:<line>`. Waits for every acknowledgement; `failed` counts records the
/// broker did not take.
pub async fn ingest(
    sender: &Sender,
    input: impl BufRead,
    name: &str,
    format: Format,
    validation: Validation,
    mut progress: impl FnMut(u64),
) -> anyhow::Result<IngestCounts> {
    use futures::stream::{FuturesUnordered, StreamExt};
    let mut counts = IngestCounts::default();
    let mut inflight = FuturesUnordered::new();
    let mut records = Records::new(input, format, validation);
    let note = |counts: &mut IngestCounts, r: Result<(), SendError>| {
        if let Err(e) = r {
            counts.failed += 1;
            counts.first_failure.get_or_insert_with(|| e.to_string());
        }
    };
    while let Some(item) = records.next() {
        let ack = match item.map_err(|e| anyhow::anyhow!("{name}: {e}"))? {
            Ok(r) => {
                counts.readings += 1;
                sender.send_patiently(|s| s.send_reading(&r)).await
            }
            Err(rej) => {
                counts.rejects += 1;
                let rec = DlqRecord {
                    reason: rej.reason,
                    source: format!("{name}:{}", rej.line),
                    raw: rej.raw,
                };
                sender.send_patiently(|s| s.send_dlq(&rec)).await
            }
        };
        match ack {
            Ok(a) => inflight.push(a.wait()),
            Err(e) => note(&mut counts, Err(e)),
        }
        while inflight.len() >= 50_000 {
            if let Some(r) = inflight.next().await {
                note(&mut counts, r);
            }
        }
        if records.line() % 10_000 == 0 {
            progress(records.line());
        }
    }
    while let Some(r) = inflight.next().await {
        note(&mut counts, r);
    }
    progress(records.line());
    Ok(counts)
}
