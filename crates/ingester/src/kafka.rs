//! The producer side of the ingester: readings to `gridwatch.readings`, rejects to the DLQ,
//! register rows to the compacted `gridwatch.registry`. Idempotent, `acks=all`: a record
//! counts as stored only once the broker has acknowledged it.

use crate::parse::Records;
use gridwatch_core::events::{
    Counters, DlqWritten, InternalEvent, ReadingIngested, RecordRejected, SendFailed,
};
use gridwatch_core::kafka::{producer_config, read_compacted};
use gridwatch_core::{DlqRecord, KafkaConfig, MeterRecord, Reading};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use std::borrow::Cow;
use std::collections::HashMap;
use std::io::BufRead;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Sends records and hands back futures that resolve on broker acknowledgement.
#[derive(Clone)]
pub struct Sender {
    producer: FutureProducer,
    cfg: KafkaConfig,
    feeders: Option<FeederIndex>,
}

/// The record header naming a reading's source (the HTTP request and the API key's name).
pub const SOURCE_HEADER: &str = "gridwatch-source";

impl Sender {
    /// The topics it writes to.
    pub fn topics(&self) -> &gridwatch_core::Topics {
        &self.cfg.topics
    }
}

/// Why the register could not be followed.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error(transparent)]
    Kafka(#[from] gridwatch_core::kafka::KafkaOpError),
    #[error("cannot start the register follower: {0}")]
    Thread(std::io::Error),
}

/// Each registered meter's feeder, read from the compacted register topic and kept current by
/// a background thread: readings that don't carry `feeder_id` are keyed by their register
/// feeder, so every reading of a feeder shares a partition with its head meter's — the order
/// the feeder balance, the peers and the drop matching rely on, in Kafka as in a file.
#[derive(Clone, Default)]
pub struct FeederIndex(Arc<RwLock<HashMap<String, String>>>);

impl FeederIndex {
    /// Reads the register topic to its end, then follows it until the last clone is dropped.
    pub fn follow(cfg: &KafkaConfig, group_id: &str) -> Result<FeederIndex, FollowError> {
        let index = FeederIndex::default();
        let consumer = read_compacted(
            cfg,
            group_id,
            &cfg.topics.registry,
            Duration::from_secs(120),
            |key, value| {
                index.apply(key, value);
                Ok(())
            },
        )?;
        let weak = Arc::downgrade(&index.0);
        std::thread::Builder::new()
            .name("register-follower".into())
            .spawn(move || {
                while let Some(map) = weak.upgrade() {
                    if let Some(Ok(msg)) = consumer.poll(Duration::from_millis(500)) {
                        FeederIndex(map).apply(msg.key(), msg.payload());
                    }
                }
            })
            .map_err(FollowError::Thread)?;
        Ok(index)
    }

    fn apply(&self, key: Option<&[u8]>, value: Option<&[u8]>) {
        let Some(meter) = key.map(|k| String::from_utf8_lossy(k).into_owned()) else {
            return;
        };
        let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
        match value.and_then(|v| serde_json::from_slice::<MeterRecord>(v).ok()) {
            Some(row) => {
                map.insert(meter, row.feeder_id);
            }
            None => {
                map.remove(&meter);
            }
        }
    }

    /// The register feeder of a meter.
    pub fn feeder_of(&self, meter_id: &str) -> Option<String> {
        let map = self.0.read().unwrap_or_else(|e| e.into_inner());
        map.get(meter_id).cloned()
    }

    pub fn len(&self) -> usize {
        self.0.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
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

/// The partition key of a reading: its feeder when known (from the reading, else from the
/// register), so a feeder's meters and its head meter share a partition; else its meter.
pub fn reading_key<'a>(r: &'a Reading, feeders: Option<&FeederIndex>) -> Cow<'a, str> {
    gridwatch_core::partition::reading_key(&r.meter_id, r.feeder_id.as_deref(), || {
        feeders
            .and_then(|f| f.feeder_of(&r.meter_id))
            .map(Cow::Owned)
    })
}

impl Sender {
    pub fn new(cfg: &KafkaConfig) -> Result<Sender, KafkaError> {
        Sender::with_config(cfg, producer_config(cfg))
    }

    /// A sender for a one-shot load that is run again whole when it fails (`gridwatch ingest`,
    /// the register, weather and holiday loads): it keeps each partition's records in the
    /// file's order through a broker's loss. A record that times out may or may not have been
    /// written, and librdkafka then goes on with the partition's later records: a gap, which
    /// the run again fills after their successors — another order than the file's, judged
    /// otherwise (issue 29, seed 74151). So a record waits up to five minutes for its acks
    /// (`message.timeout.ms`, librdkafka's own advice for idempotent producers;
    /// `kafka.properties` wins), long past the 30 s in which a lost broker leaves the in-sync
    /// replicas: a broker's loss delays the load instead of failing it.
    pub fn in_order(cfg: &KafkaConfig) -> Result<Sender, KafkaError> {
        let mut c = producer_config(cfg);
        if !cfg.properties.contains_key("message.timeout.ms") {
            c.set("message.timeout.ms", "300000");
        }
        Sender::with_config(cfg, c)
    }

    fn with_config(cfg: &KafkaConfig, c: rdkafka::ClientConfig) -> Result<Sender, KafkaError> {
        let producer: FutureProducer = c.create()?;
        Ok(Sender {
            producer,
            cfg: cfg.clone(),
            feeders: None,
        })
    }

    /// Keys readings without `feeder_id` by their register feeder.
    pub fn with_feeders(mut self, feeders: FeederIndex) -> Sender {
        self.feeders = Some(feeders);
        self
    }

    fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> Result<DeliveryFuture, SendError> {
        self.send_with(topic, key, value, None)
    }

    /// Sends, with a `gridwatch-source` header naming where the record came from.
    fn send_with(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        source: Option<&str>,
    ) -> Result<DeliveryFuture, SendError> {
        let mut rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic);
        if let Some(s) = source {
            rec = rec.headers(rdkafka::message::OwnedHeaders::new().insert(
                rdkafka::message::Header {
                    key: SOURCE_HEADER,
                    value: Some(s),
                },
            ));
        }
        if let Some(k) = key {
            rec = rec.key(k);
        }
        if let Some(v) = value {
            rec = rec.payload(v);
        }
        self.producer.send_result(rec).map_err(|(e, _)| {
            if gridwatch_core::kafka::queue_full(&e) {
                SendError::QueueFull
            } else {
                SendError::Kafka(e.to_string())
            }
        })
    }

    pub fn send_reading(&self, r: &Reading) -> Result<Ack, SendError> {
        self.send_reading_from(r, None)
    }

    /// Sends a reading with its source (`http:<key name>/<request>`) in the record's
    /// `gridwatch-source` header.
    pub fn send_reading_from(&self, r: &Reading, source: Option<&str>) -> Result<Ack, SendError> {
        let value = serde_json::to_vec(r).expect("a reading serializes");
        self.send_with(
            &self.cfg.topics.readings,
            Some(reading_key(r, self.feeders.as_ref()).as_bytes()),
            Some(&value),
            source,
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

    /// An hour of a region's weather, keyed `region|ts` on the compacted weather topic.
    pub fn send_weather(&self, w: &gridwatch_core::WeatherObs) -> Result<Ack, SendError> {
        let value = serde_json::to_vec(w).expect("a weather row serializes");
        self.send(
            &self.cfg.topics.weather,
            Some(w.key().as_bytes()),
            Some(&value),
        )
        .map(Ack)
    }

    /// A region's public holiday, keyed `region|date` on the compacted holidays topic.
    pub fn send_holiday(&self, h: &gridwatch_core::Holiday) -> Result<Ack, SendError> {
        let value = serde_json::to_vec(h).expect("a holiday serializes");
        self.send(
            &self.cfg.topics.holidays,
            Some(h.key().as_bytes()),
            Some(&value),
        )
        .map(Ack)
    }

    /// An inspection outcome, keyed by its target on the compacted outcomes topic.
    pub fn send_outcome(&self, o: &gridwatch_core::Outcome) -> Result<Ack, SendError> {
        let value = serde_json::to_vec(o).expect("an outcome serializes");
        self.send(
            &self.cfg.topics.outcomes,
            Some(o.target_id.as_bytes()),
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

    /// Sends, retrying while the local queue is full (the caller is a batch job that may
    /// wait: the queue drains on librdkafka's own threads).
    pub fn send_patiently(
        &self,
        mut send: impl FnMut(&Sender) -> Result<Ack, SendError>,
    ) -> Result<Ack, SendError> {
        gridwatch_core::kafka::retry_while_full(
            || send(self),
            |e| *e == SendError::QueueFull,
            || std::thread::sleep(Duration::from_millis(1)),
        )
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

/// Streams a readings file (`records`, read from `name`) to Kafka: readings to the readings
/// topic, rejects to the DLQ with `source` = `<name>:<line>`. Waits for every acknowledgement; counts in `counters`
/// (`gridwatch_send_failures_total`: records the broker did not take); returns the first
/// failure, if any.
pub async fn ingest(
    sender: &Sender,
    mut records: Records<impl BufRead>,
    name: &str,
    counters: &Counters,
    mut progress: impl FnMut(u64),
) -> anyhow::Result<Option<String>> {
    use futures::stream::{FuturesUnordered, StreamExt};
    let mut first_failure = None;
    let mut inflight = FuturesUnordered::new();
    let mut note = |r: Result<(), SendError>| {
        if let Err(e) = r {
            let error = e.to_string();
            SendFailed { error: &error }.emit(counters);
            first_failure.get_or_insert(error);
        }
    };
    while let Some(item) = records.next() {
        let ack = match item.map_err(|e| anyhow::anyhow!("{name}: {e}"))? {
            Ok(r) => {
                ReadingIngested.emit(counters);
                sender.send_patiently(|s| s.send_reading(&r))
            }
            Err(rej) => {
                let rec = DlqRecord::new(rej.reason, format!("{name}:{}", rej.line), rej.raw);
                RecordRejected {
                    reason: &rec.reason,
                    source: &rec.source,
                }
                .emit(counters);
                DlqWritten(1).emit(counters);
                sender.send_patiently(|s| s.send_dlq(&rec))
            }
        };
        match ack {
            Ok(a) => inflight.push(a.wait()),
            Err(e) => note(Err(e)),
        }
        while inflight.len() >= 50_000 {
            if let Some(r) = inflight.next().await {
                note(r);
            }
        }
        if records.line() % 10_000 == 0 {
            progress(records.line());
        }
    }
    while let Some(r) = inflight.next().await {
        note(r);
    }
    progress(records.line());
    Ok(first_failure)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridwatch_core::CustomerClass;

    fn reading(meter: &str, feeder: Option<&str>) -> Reading {
        Reading {
            feeder_id: feeder.map(Into::into),
            ..Reading::new(meter, 1_767_571_200, 900, 0.1)
        }
    }

    #[test]
    fn readings_without_a_feeder_are_keyed_by_their_register_feeder() {
        let index = FeederIndex::default();
        let row = MeterRecord::customer("S1", "M1", "F7", CustomerClass::Residential, Some(12.0));
        index.apply(Some(b"M1"), Some(&serde_json::to_vec(&row).unwrap()));
        assert_eq!(reading_key(&reading("M1", None), Some(&index)), "F7");
        // The reading's own feeder wins; an unknown meter keys by itself.
        assert_eq!(reading_key(&reading("M1", Some("F1")), Some(&index)), "F1");
        assert_eq!(reading_key(&reading("M9", None), Some(&index)), "M9");
        assert_eq!(reading_key(&reading("M1", None), None), "M1");
        // A meter deleted from the register (a tombstone) is keyed by itself again.
        index.apply(Some(b"M1"), None);
        assert_eq!(reading_key(&reading("M1", None), Some(&index)), "M1");
        assert!(index.is_empty());
    }
}
