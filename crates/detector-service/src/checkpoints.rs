//! The detector's checkpoint file: the engine's state and the readings offsets it covers, in
//! `detector.state_dir`. After a restart the detector restores it and replays only the
//! readings since those offsets, instead of every retained reading.
//!
//! File: one JSON header line ([`Header`]: the Kafka cluster, topic, consumer group and
//! per-partition offsets the state covers, and the body's length), then the engine's own
//! versioned bytes ([`Engine::checkpoint`]). Written to a temporary file, fsynced, renamed over
//! the last one and the folder fsynced: a crash leaves the old checkpoint or the new one, never
//! half of one. Any doubt (another cluster, topic or group, offsets the group's commits are
//! behind, another format or settings, a damaged file) means a full replay, with a log line
//! saying why: a checkpoint only ever saves time, never decides an alert.

use gridwatch_anomaly_detector::{Engine, EngineConfig};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

/// What the engine state covers, and where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub cluster_id: String,
    pub topic: String,
    pub group_id: String,
    /// Per readings partition, the next offset the state has not seen.
    pub offsets: BTreeMap<i32, i64>,
    /// Per register partition, the next offset the state has not seen: on a restart the
    /// register is applied from there, so a row the state already holds (or holds waiting for
    /// its `effective_from`) is not applied again over a newer one.
    #[serde(default)]
    pub registry: BTreeMap<i32, i64>,
    /// Length of the engine bytes after the header line.
    pub bytes: u64,
    /// The state topic's snapshot these bytes are (`state::StateRef::generation`): with the
    /// state in Kafka, a file is a cache, used only when it is the snapshot the group's commit
    /// names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
}

/// A restored engine, the offsets to resume its partitions from, and the register's.
pub struct Restored {
    pub engine: Engine,
    pub offsets: BTreeMap<i32, i64>,
    pub registry: BTreeMap<i32, i64>,
    /// The state topic's snapshot it is (`None`: a file from before, or the topic off).
    pub generation: Option<u64>,
    /// Where it came from (`file` or `kafka`), its size, and how long restoring it took.
    pub from: &'static str,
    pub bytes: u64,
    pub took: std::time::Duration,
}

/// Why a checkpoint file is not used (the caller replays instead).
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot read it: {0}")]
    Read(#[from] std::io::Error),
    #[error("damaged: {0}")]
    Damaged(String),
    #[error("made for {0}")]
    Elsewhere(String),
    #[error(
        "partition {partition}: the group's committed offset {committed} is behind the \
         checkpoint's {offset} (offsets reset?)"
    )]
    Ahead {
        partition: i32,
        committed: i64,
        offset: i64,
    },
    #[error("partition {0} is no longer in the topic")]
    Gone(i32),
    #[error("it is not the snapshot the group's commit names")]
    NotNamed,
    #[error(transparent)]
    Engine(#[from] gridwatch_anomaly_detector::RestoreError),
}

/// The checkpoint file of one detector group, and the write in flight.
pub struct Store {
    path: PathBuf,
    writing: Option<JoinHandle<std::io::Result<()>>>,
}

impl Store {
    /// The store in `dir` (created when missing) of readings partition `partition` for
    /// `group_id`; `None` when `dir` is empty (checkpoints off).
    pub fn new(dir: &str, group_id: &str, partition: i32) -> Option<Store> {
        (!dir.is_empty()).then(|| Store {
            path: Path::new(dir).join(format!("detector-{group_id}-{partition}.checkpoint")),
            writing: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The engine and offsets of the checkpoint, if there is one this run may use: the same
    /// cluster, topic and group, offsets no further than the group's commits (`committed`, per
    /// partition; a partition the topic has lost refuses it too), and engine bytes this binary
    /// reads under `cfg`. `Err` says why not (the caller replays everything).
    pub fn load(
        &self,
        expect: &Header,
        committed: &HashMap<i32, i64>,
        generation: Option<u64>,
        cfg: &EngineConfig,
    ) -> Result<Option<Restored>, CheckpointError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let damaged = CheckpointError::Damaged;
        let nl = bytes
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| damaged("no header line".into()))?;
        let header: Header =
            serde_json::from_slice(&bytes[..nl]).map_err(|e| damaged(format!("header: {e}")))?;
        let body = &bytes[nl + 1..];
        if header.bytes != body.len() as u64 {
            return Err(damaged(format!(
                "cut short: {} of {} bytes",
                body.len(),
                header.bytes
            )));
        }
        if header.cluster_id != expect.cluster_id {
            return Err(CheckpointError::Elsewhere(format!(
                "Kafka cluster {}, this is {}",
                header.cluster_id, expect.cluster_id
            )));
        }
        if (&header.topic, &header.group_id) != (&expect.topic, &expect.group_id) {
            return Err(CheckpointError::Elsewhere(format!(
                "topic {} and group {}",
                header.topic, header.group_id
            )));
        }
        if generation.is_some() && header.generation != generation {
            return Err(CheckpointError::NotNamed);
        }
        for (&partition, &offset) in &header.offsets {
            match committed.get(&partition) {
                None => return Err(CheckpointError::Gone(partition)),
                Some(&c) if c < offset => {
                    return Err(CheckpointError::Ahead {
                        partition,
                        committed: c,
                        offset,
                    })
                }
                Some(_) => {}
            }
        }
        let engine = Engine::restore(cfg.clone(), body)?;
        Ok(Some(Restored {
            engine,
            offsets: header.offsets,
            registry: header.registry,
            generation: header.generation,
            from: "file",
            bytes: body.len() as u64,
            took: std::time::Duration::ZERO,
        }))
    }

    /// Whether the last write has finished (its outcome logged); a new one may start.
    pub fn idle(&mut self) -> bool {
        match &self.writing {
            Some(h) if !h.is_finished() => false,
            _ => {
                self.finish();
                true
            }
        }
    }

    /// Waits for the write in flight, logging a failure.
    pub fn finish(&mut self) {
        if let Some(h) = self.writing.take() {
            match h.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(
                    path = %self.path.display(),
                    "checkpoint not written (a restart will replay more): {e}"
                ),
                Err(_) => tracing::warn!("checkpoint writer panicked"),
            }
        }
    }

    /// Writes a checkpoint in the background; call only when [`Store::idle`].
    pub fn write(&mut self, header: Header, body: Vec<u8>) {
        let path = self.path.clone();
        self.writing = Some(std::thread::spawn(move || {
            write_atomically(&path, &header, &body)
        }));
    }
}

fn write_atomically(path: &Path, header: &Header, body: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    // Its own temporary file per writer: two detectors sharing a state folder (one host, or a
    // partition moving between instances while a write is in flight) each rename a whole file
    // of their own, never one the other is still writing.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("checkpoint.{}-{n}.tmp", std::process::id()));
    let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    serde_json::to_writer(&mut f, header)?;
    f.write_all(b"\n")?;
    f.write_all(body)?;
    let f = f.into_inner().map_err(|e| e.into_error())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(offsets: &[(i32, i64)], bytes: u64) -> Header {
        Header {
            cluster_id: "c1".into(),
            topic: "r".into(),
            group_id: "g".into(),
            offsets: offsets.iter().copied().collect(),
            registry: BTreeMap::from([(0, 7)]),
            bytes,
            generation: None,
        }
    }

    #[test]
    fn a_checkpoint_is_used_only_where_it_belongs() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("state");
        let mut store = Store::new(d.to_str().unwrap(), "g", 0).unwrap();
        let cfg = EngineConfig::default();
        let committed = HashMap::from([(0, 50), (1, 70)]);
        let expect = header(&[], 0);
        assert!(store
            .load(&expect, &committed, None, &cfg)
            .unwrap()
            .is_none());

        let body = Engine::new(cfg.clone()).unwrap().checkpoint();
        let mut written = header(&[(0, 40), (1, 70)], body.len() as u64);
        written.generation = Some(12);
        store.write(written, body.clone());
        store.finish();
        let r = store
            .load(&expect, &committed, None, &cfg)
            .unwrap()
            .unwrap();
        assert_eq!(r.offsets, BTreeMap::from([(0, 40), (1, 70)]));
        assert_eq!(r.registry, BTreeMap::from([(0, 7)]));
        assert_eq!((r.generation, r.from), (Some(12), "file"));
        let r = store.load(&expect, &committed, Some(12), &cfg).unwrap();
        assert!(r.is_some(), "the snapshot the commit names");
        let e = store
            .load(&expect, &committed, Some(13), &cfg)
            .err()
            .unwrap();
        assert!(matches!(e, CheckpointError::NotNamed), "{e}");

        let other = Header {
            cluster_id: "c2".into(),
            ..expect.clone()
        };
        let e = store.load(&other, &committed, None, &cfg).err().unwrap();
        assert!(e.to_string().contains("cluster c1"), "{e}");
        let behind = HashMap::from([(0, 30), (1, 70)]);
        let e = store.load(&expect, &behind, None, &cfg).err().unwrap();
        assert!(
            matches!(
                e,
                CheckpointError::Ahead {
                    partition: 0,
                    committed: 30,
                    offset: 40
                }
            ),
            "{e}"
        );
        let lost = HashMap::from([(0, 50)]);
        let e = store.load(&expect, &lost, None, &cfg).err().unwrap();
        assert!(matches!(e, CheckpointError::Gone(1)), "{e}");
        let mut strict = cfg.clone();
        strict.lateness_horizon_s *= 2;
        let e = store
            .load(&expect, &committed, None, &strict)
            .err()
            .unwrap();
        assert!(matches!(e, CheckpointError::Engine(_)), "{e}");
        assert!(e.to_string().contains("settings"), "{e}");

        // A file cut short (a crash mid-write of a store without the atomic rename).
        let full = std::fs::read(store.path()).unwrap();
        std::fs::write(store.path(), &full[..full.len() - 3]).unwrap();
        let e = store.load(&expect, &committed, None, &cfg).err().unwrap();
        assert!(e.to_string().contains("cut short"), "{e}");
        assert!(
            Store::new("", "g", 0).is_none(),
            "an empty state_dir turns them off"
        );
    }
}
