//! The detector's state in Kafka: each readings partition's engine state as a snapshot on the
//! compacted state topic, written in the same transaction as the alerts and the committed
//! offsets, and named by the offset metadata of that commit. Whoever holds the partition next,
//! on any host, reads the snapshot the group's commit names and replays only the readings
//! since it. Checkpoint files become a cache: used only when they are that snapshot.
//!
//! Layout (ARCHITECTURE "State in Kafka"): a snapshot is `count` records keyed
//! `<group>/<partition>/<index>`, each value a JSON [`ChunkHead`] line and then up to
//! [`CHUNK_BYTES`] of the engine's bytes; chunk 0's head also carries the checkpoint
//! [`Header`] (the offsets it covers). The committed offset's metadata names the snapshot as
//! `;gw-state:<state partition>@<offset of chunk 0>#<generation>`. Compaction keeps the last
//! record of each key, so the topic holds about one snapshot per readings partition.

use crate::checkpoints::Header;
use gridwatch_anomaly_detector::RestoreError;
use gridwatch_core::kafka::{consumer_config, Quiet, QuietConsumer};
use gridwatch_core::KafkaConfig;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// The version of a state record's layout ([`ChunkHead`]); the engine's bytes carry their own.
pub const RECORD_FORMAT: u32 = 1;
/// Engine bytes per record: well under the broker's default 1 MiB message limit.
pub const CHUNK_BYTES: usize = 512 * 1024;
/// The offset metadata's mark of the snapshot the commit stands on.
const MARK: &str = ";gw-state:";

/// Where a committed snapshot is: the state topic's partition, the offset of its chunk 0, and
/// its generation (which tells its records from an earlier snapshot's under the same keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateRef {
    pub partition: i32,
    pub offset: i64,
    pub generation: u64,
}

impl StateRef {
    /// Its form in the offset metadata, after what was said.
    pub fn encode(&self) -> String {
        format!(
            "{MARK}{}@{}#{}",
            self.partition, self.offset, self.generation
        )
    }

    /// The snapshot a commit's metadata names (`None`: none, or not readable).
    pub fn of_metadata(metadata: &str) -> Option<StateRef> {
        let (_, rest) = metadata.split_once(MARK)?;
        let (partition, rest) = rest.split_once('@')?;
        let (offset, generation) = rest.split_once('#')?;
        Some(StateRef {
            partition: partition.parse().ok()?,
            offset: offset.parse().ok()?,
            generation: generation.parse().ok()?,
        })
    }
}

/// The head of every state record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkHead {
    pub format: u32,
    pub generation: u64,
    pub index: u32,
    pub count: u32,
    /// Chunk 0 only: what the snapshot covers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<Header>,
}

/// Why a snapshot could not be used: the partition's state is rebuilt by replay instead.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("reading the state topic: {0}")]
    Kafka(#[from] KafkaError),
    #[error("the snapshot at offset {offset} has {found} of its {count} chunks")]
    Incomplete {
        offset: i64,
        found: usize,
        count: usize,
    },
    #[error("state record format {0}; this binary reads format {RECORD_FORMAT}")]
    Format(u32),
    #[error("damaged state record: {0}")]
    Damaged(String),
    #[error("reset by an operator (gridwatch state reset)")]
    Reset,
    #[error("made for {0}")]
    Elsewhere(String),
    #[error(transparent)]
    Engine(#[from] RestoreError),
}

/// A task's state on its way to the state topic, in the transaction that commits the offsets
/// it covers.
pub struct Snapshot {
    pub group: String,
    /// The readings partition, and the state topic's partition it goes to.
    pub partition: i32,
    pub state_partition: i32,
    pub header: Header,
    pub body: Vec<u8>,
}

/// A snapshot's generation: unique per snapshot taken (the time, and a counter within it).
pub fn new_generation() -> u64 {
    static TAKEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = TAKEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 1000;
    crate::stats::now_ms() as u64 * 1000 + n
}

/// The key of chunk `index` of readings partition `partition`'s snapshot.
pub fn key(group: &str, partition: i32, index: u32) -> String {
    format!("{group}/{partition}/{index}")
}

/// The record format this detector writes: [`RECORD_FORMAT`], or for the upgrade tests the one
/// `GRIDWATCH_TEST_STATE_FORMAT` names (standing in for a release with another layout).
pub fn written_format() -> u32 {
    std::env::var("GRIDWATCH_TEST_STATE_FORMAT")
        .ok()
        .and_then(|f| f.parse().ok())
        .unwrap_or(RECORD_FORMAT)
}

/// A snapshot's records in record format `format`: key and value, chunk 0 first.
pub fn records(
    group: &str,
    partition: i32,
    header: &Header,
    body: &[u8],
    format: u32,
) -> Vec<(String, Vec<u8>)> {
    let generation = header.generation.unwrap_or(0);
    let chunks: Vec<&[u8]> = if body.is_empty() {
        vec![body]
    } else {
        body.chunks(CHUNK_BYTES).collect()
    };
    let count = chunks.len() as u32;
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, bytes)| {
            let head = ChunkHead {
                format,
                generation,
                index: i as u32,
                count,
                header: (i == 0).then(|| header.clone()),
            };
            let mut value = serde_json::to_vec(&head).expect("a chunk head serializes");
            value.push(b'\n');
            value.extend_from_slice(bytes);
            (key(group, partition, i as u32), value)
        })
        .collect()
}

/// A record's head and bytes.
pub fn split(value: &[u8]) -> Result<(ChunkHead, &[u8]), StateError> {
    let nl = value
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| StateError::Damaged("no head line".into()))?;
    let probe: serde_json::Value = serde_json::from_slice(&value[..nl])
        .map_err(|e| StateError::Damaged(format!("head: {e}")))?;
    let format = probe.get("format").and_then(|f| f.as_u64()).unwrap_or(0) as u32;
    if format != RECORD_FORMAT {
        return Err(StateError::Format(format));
    }
    let head: ChunkHead =
        serde_json::from_value(probe).map_err(|e| StateError::Damaged(format!("head: {e}")))?;
    Ok((head, &value[nl + 1..]))
}

/// A snapshot put together from the state topic's records, read from its chunk 0 on.
pub struct Assembly {
    prefix: String,
    at: StateRef,
    header: Option<Header>,
    parts: Vec<Option<Vec<u8>>>,
    found: usize,
}

impl Assembly {
    pub fn new(group: &str, partition: i32, at: StateRef) -> Assembly {
        Assembly {
            prefix: format!("{group}/{partition}/"),
            at,
            header: None,
            parts: Vec::new(),
            found: 0,
        }
    }

    /// Takes one record (others' keys, and other generations under this key, are passed
    /// over); a tombstone of this snapshot's keys means an operator reset it.
    pub fn offer(&mut self, key: Option<&[u8]>, value: Option<&[u8]>) -> Result<(), StateError> {
        let Some(index) = key
            .and_then(|k| std::str::from_utf8(k).ok())
            .and_then(|k| k.strip_prefix(&self.prefix))
            .and_then(|i| i.parse::<usize>().ok())
        else {
            return Ok(());
        };
        let Some(value) = value else {
            return Err(StateError::Reset);
        };
        let (head, bytes) = split(value)?;
        if head.generation != self.at.generation {
            return Ok(());
        }
        if head.count == 0 || head.index as usize != index || index >= head.count as usize {
            return Err(StateError::Damaged(format!(
                "chunk {index} says it is {} of {}",
                head.index, head.count
            )));
        }
        if self.parts.is_empty() {
            self.parts = vec![None; head.count as usize];
        } else if self.parts.len() != head.count as usize {
            return Err(StateError::Damaged("chunks disagree on their count".into()));
        }
        if head.index == 0 {
            self.header = head.header;
        }
        if self.parts[index].is_none() {
            self.found += 1;
        }
        self.parts[index] = Some(bytes.to_vec());
        Ok(())
    }

    pub fn done(&self) -> bool {
        !self.parts.is_empty() && self.found == self.parts.len()
    }

    /// The snapshot's header and engine bytes, once every chunk is in.
    pub fn finish(self) -> Result<(Header, Vec<u8>), StateError> {
        let incomplete = || StateError::Incomplete {
            offset: self.at.offset,
            found: self.found,
            count: self.parts.len(),
        };
        if !self.done() {
            return Err(incomplete());
        }
        let header = self
            .header
            .clone()
            .ok_or_else(|| StateError::Damaged("chunk 0 has no header".into()))?;
        let body: Vec<u8> = self.parts.into_iter().flatten().flatten().collect();
        if body.len() as u64 != header.bytes {
            return Err(StateError::Damaged(format!(
                "{} bytes, the header says {}",
                body.len(),
                header.bytes
            )));
        }
        Ok((header, body))
    }
}

/// A consumer of the state topic at `at` (no group membership: it only reads).
fn reader(
    k: &KafkaConfig,
    group: &str,
    topic: &str,
    at: Offset,
    partition: i32,
) -> Result<QuietConsumer, StateError> {
    let consumer: QuietConsumer = consumer_config(k, &format!("{group}-state-reader"))
        .set("enable.partition.eof", "true")
        .set("max.partition.fetch.bytes", "16777216")
        .create_with_context(Quiet)?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, at)?;
    consumer.assign(&tpl)?;
    Ok(consumer)
}

/// Reads the snapshot `at` of readings partition `partition` from the state topic: from its
/// chunk 0 to its last (read committed: an aborted snapshot's records are never seen).
pub fn read(
    k: &KafkaConfig,
    group: &str,
    partition: i32,
    at: StateRef,
    patience: Duration,
) -> Result<(Header, Vec<u8>), StateError> {
    let consumer = reader(
        k,
        group,
        &k.topics.state,
        Offset::Offset(at.offset),
        at.partition,
    )?;
    let mut assembly = Assembly::new(group, partition, at);
    let until = Instant::now() + patience;
    while !assembly.done() && Instant::now() < until {
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            Some(Err(e)) if gridwatch_core::kafka::transient(&e) => {
                tracing::warn!("reading the state topic: {e} (retrying)")
            }
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(m)) => assembly.offer(m.key(), m.payload())?,
        }
    }
    assembly.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn header(bytes: u64, generation: u64) -> Header {
        Header {
            cluster_id: "c".into(),
            topic: "r".into(),
            group_id: "g".into(),
            offsets: BTreeMap::from([(2, 900)]),
            registry: BTreeMap::from([(0, 7)]),
            bytes,
            generation: Some(generation),
        }
    }

    #[test]
    fn the_snapshot_a_commit_names_travels_in_its_metadata() {
        let at = StateRef {
            partition: 1,
            offset: 4711,
            generation: 99,
        };
        let md = format!("gw-said:0:12{}", at.encode());
        assert_eq!(StateRef::of_metadata(&md), Some(at));
        assert_eq!(crate::task::said_of(&md), Some(BTreeMap::from([(0, 12)])));
        assert_eq!(StateRef::of_metadata("gw-said:0:12"), None);
        assert_eq!(StateRef::of_metadata("gw-said:;gw-state:1@x#2"), None);
    }

    #[test]
    fn a_snapshot_is_chunked_and_put_together_again_from_its_chunk_zero_on() {
        let body: Vec<u8> = (0..(2 * CHUNK_BYTES + 10))
            .map(|i| (i % 251) as u8)
            .collect();
        let recs = records("g", 2, &header(body.len() as u64, 99), &body, RECORD_FORMAT);
        assert_eq!(recs.len(), 3);
        assert!(recs.iter().all(|(_, v)| v.len() < CHUNK_BYTES + 1024));
        let older = records("g", 2, &header(5, 98), b"stale", RECORD_FORMAT);
        let other = records("g", 3, &header(3, 99), b"abc", RECORD_FORMAT);
        let at = StateRef {
            partition: 0,
            offset: 10,
            generation: 99,
        };
        let mut a = Assembly::new("g", 2, at);
        // Another partition's chunks and an older generation's are passed over.
        for (k, v) in other.iter().chain(&older).chain(&recs) {
            a.offer(Some(k.as_bytes()), Some(v)).unwrap();
        }
        assert!(a.done());
        let (h, back) = a.finish().unwrap();
        assert_eq!(h.offsets, BTreeMap::from([(2, 900)]));
        assert_eq!(back, body);
    }

    #[test]
    fn a_missing_chunk_a_newer_format_or_a_reset_is_an_error_never_a_panic() {
        let body = vec![7u8; CHUNK_BYTES + 1];
        let recs = records("g", 0, &header(body.len() as u64, 5), &body, RECORD_FORMAT);
        let at = StateRef {
            partition: 0,
            offset: 0,
            generation: 5,
        };
        let mut a = Assembly::new("g", 0, at);
        a.offer(Some(recs[0].0.as_bytes()), Some(&recs[0].1))
            .unwrap();
        assert!(matches!(
            a.finish(),
            Err(StateError::Incomplete {
                found: 1,
                count: 2,
                ..
            })
        ));
        let newer = br#"{"format":2,"generation":5,"index":0,"count":1,"zstd":true}
xx"#;
        let mut a = Assembly::new("g", 0, at);
        assert!(matches!(
            a.offer(Some(b"g/0/0"), Some(newer)),
            Err(StateError::Format(2))
        ));
        let mut a = Assembly::new("g", 0, at);
        assert!(matches!(
            a.offer(Some(b"g/0/0"), None),
            Err(StateError::Reset)
        ));
        let mut a = Assembly::new("g", 0, at);
        assert!(matches!(
            a.offer(Some(b"g/0/0"), Some(b"no head")),
            Err(StateError::Damaged(_))
        ));
        // A body cut short is refused by its length.
        let mut cut = recs[1].1.clone();
        cut.truncate(cut.len() - 1);
        let mut a = Assembly::new("g", 0, at);
        a.offer(Some(recs[0].0.as_bytes()), Some(&recs[0].1))
            .unwrap();
        a.offer(Some(recs[1].0.as_bytes()), Some(&cut)).unwrap();
        assert!(matches!(a.finish(), Err(StateError::Damaged(_))));
    }
}
