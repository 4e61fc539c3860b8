//! Operators' view of the state topic: `gridwatch state inspect` (per readings partition, the
//! snapshot the detector group's commit names: the offset it covers, its size, age and
//! formats) and `gridwatch state reset` (forget a partition's state: its next owner rebuilds it
//! from every retained reading).

use crate::assign::{committed_offsets, Committed};
use crate::state::{key, split, StateRef, RECORD_FORMAT};
use anyhow::{anyhow, bail, Context, Result};
use gridwatch_core::kafka::{
    consumer_config, describe_group, partitions, producer_config, Quiet, QuietConsumer,
};
use gridwatch_core::KafkaConfig;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};

const PATIENCE: Duration = Duration::from_secs(15);

/// One readings partition's saved state, as `gridwatch state inspect` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionState {
    pub partition: i32,
    /// The group's committed offset (0: none).
    pub committed: i64,
    /// The snapshot the commit names, and what its chunk 0 says (`None`: no snapshot).
    pub snapshot: Option<(StateRef, SnapshotInfo)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotInfo {
    /// The readings offset the state covers: a restart replays from here to `committed`.
    pub covers: Option<i64>,
    pub bytes: u64,
    pub chunks: u32,
    /// When it was written (ms since the epoch).
    pub written_ms: Option<i64>,
    pub record_format: u32,
    /// The engine's state format (`None`: not readable).
    pub engine_format: Option<u32>,
    /// Why it could not be read, if it could not.
    pub problem: Option<String>,
}

fn committed_of(k: &KafkaConfig, group: &str) -> Result<(QuietConsumer, Vec<(i32, Committed)>)> {
    let topic = &k.topics.readings;
    let c: QuietConsumer = consumer_config(k, group).create_with_context(Quiet)?;
    let ids = partitions(&c, topic).map_err(|e| anyhow!(e))?;
    let mut tpl = TopicPartitionList::new();
    for &p in &ids {
        tpl.add_partition(topic, p);
    }
    let committed = committed_offsets(&c, topic, &tpl)?;
    let rows = ids
        .into_iter()
        .map(|p| (p, committed.get(&p).cloned().unwrap_or_default()))
        .collect();
    Ok((c, rows))
}

/// The first record of snapshot `at` of readings partition `partition`: its head and bytes.
fn chunk_zero(k: &KafkaConfig, group: &str, partition: i32, at: StateRef) -> SnapshotInfo {
    let mut info = SnapshotInfo {
        covers: None,
        bytes: 0,
        chunks: 0,
        written_ms: None,
        record_format: RECORD_FORMAT,
        engine_format: None,
        problem: None,
    };
    let wanted = key(group, partition, 0);
    let found = (|| -> Result<()> {
        let c: QuietConsumer = consumer_config(k, &format!("{group}-state-reader"))
            .set("enable.partition.eof", "true")
            .create_with_context(Quiet)?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&k.topics.state, at.partition, Offset::Offset(at.offset))?;
        c.assign(&tpl)?;
        let until = Instant::now() + PATIENCE;
        while Instant::now() < until {
            match c.poll(Duration::from_millis(200)) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(_))) => break,
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(m)) if m.key() == Some(wanted.as_bytes()) => {
                    info.written_ms = m.timestamp().to_millis();
                    let value = m.payload().ok_or_else(|| anyhow!("a tombstone (reset)"))?;
                    let (head, body) = split(value)?;
                    if head.generation != at.generation {
                        continue;
                    }
                    info.chunks = head.count;
                    if let Some(h) = head.header {
                        info.covers = h.offsets.get(&partition).copied();
                        info.bytes = h.bytes;
                    }
                    info.engine_format = body
                        .strip_prefix(b"GWENGINE")
                        .and_then(|b| b.get(..4))
                        .map(|v| u32::from_le_bytes([v[0], v[1], v[2], v[3]]));
                    return Ok(());
                }
                Some(Ok(_)) => {}
            }
        }
        bail!("its chunk 0 was not found at offset {}", at.offset)
    })();
    if let Err(e) = found {
        if let Some(crate::state::StateError::Format(f)) = e.downcast_ref() {
            info.record_format = *f;
        }
        info.problem = Some(e.to_string());
    }
    info
}

/// Every readings partition's saved state for detector group `group`.
pub fn inspect(k: &KafkaConfig, group: &str) -> Result<Vec<PartitionState>> {
    if k.topics.state.is_empty() {
        bail!("kafka.topics.state is empty: the state lives only in checkpoint files");
    }
    let (_, rows) = committed_of(k, group)?;
    Ok(rows
        .into_iter()
        .map(|(partition, c)| PartitionState {
            partition,
            committed: c.offset,
            snapshot: c.state.map(|at| (at, chunk_zero(k, group, partition, at))),
        })
        .collect())
}

/// Forgets readings partition `partition`'s saved state: the group's commit keeps its offset
/// and what it said but names no snapshot, and the snapshot's records get tombstones (the
/// cleaner then drops them). Only with no detector of the group running: a running one would
/// name its snapshot again at its next commit. Returns the snapshot forgotten, if there was one.
pub fn reset(k: &KafkaConfig, group: &str, partition: i32) -> Result<Option<StateRef>> {
    if k.topics.state.is_empty() {
        bail!("kafka.topics.state is empty: the state lives only in checkpoint files");
    }
    let (consumer, rows) = committed_of(k, group)?;
    let view = describe_group(consumer.client(), group, &k.topics.readings, PATIENCE)
        .map_err(|e| anyhow!(e))?;
    if view.members > 0 {
        bail!(
            "group {group} has {} member(s): stop every detector of the group first (a running \
             one names its snapshot again at its next commit); a stopped detector stays a \
             member for the group's session timeout (45 s by default), so try again after it",
            view.members
        );
    }
    let Some((_, c)) = rows.iter().find(|(p, _)| *p == partition) else {
        bail!("{} has no partition {partition}", k.topics.readings);
    };
    let Some(at) = c.state else {
        return Ok(None);
    };
    let info = chunk_zero(k, group, partition, at);
    // The commit first: from then on no detector reads the snapshot, whatever the tombstones.
    let said: Vec<String> = c
        .said
        .iter()
        .flatten()
        .map(|(rp, o)| format!("{rp}:{o}"))
        .collect();
    let mut tpl = TopicPartitionList::new();
    let mut e = tpl.add_partition(&k.topics.readings, partition);
    e.set_offset(Offset::Offset(c.offset))?;
    if c.said.is_some() {
        e.set_metadata(format!("gw-said:{}", said.join(",")));
    }
    consumer
        .commit(&tpl, CommitMode::Sync)
        .context("committing the partition's offset without its snapshot")?;
    let producer: BaseProducer = producer_config(k).create()?;
    for i in 0..info.chunks.max(1) {
        let k_i = key(group, partition, i);
        producer
            .send(
                BaseRecord::<[u8], [u8]>::to(&k.topics.state)
                    .partition(at.partition)
                    .key(k_i.as_bytes()),
            )
            .map_err(|(e, _)| e)?;
    }
    producer.flush(PATIENCE)?;
    Ok(Some(at))
}
