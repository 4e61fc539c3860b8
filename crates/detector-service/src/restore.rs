//! Where a handed-over or rewound partition's state comes from (the state manager): the
//! snapshot the group's commit names — the file in `detector.state_dir` when it is that very
//! snapshot, else the state topic — or, with the state topic off, the checkpoint file alone.
//! Anything that cannot be used is logged with its reason, and the partition is rebuilt by
//! replay.

use crate::assign::Committed;
use crate::checkpoints::{Header, Restored, Store};
use crate::state::{read, StateError, StateRef};
use gridwatch_anomaly_detector::{Engine, EngineConfig};
use gridwatch_core::KafkaConfig;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Where a handed-over or rewound partition's state comes from: the snapshot the group's
/// commit names (the file cache when it holds that snapshot, else the state topic), or, with
/// the state topic off, the checkpoint file alone.
pub(crate) struct Restorer {
    pub(crate) k: KafkaConfig,
    pub(crate) group_id: String,
    pub(crate) state_dir: String,
    pub(crate) engine: EngineConfig,
}

impl Restorer {
    pub(crate) fn in_kafka(&self) -> bool {
        !self.k.topics.state.is_empty()
    }

    /// The partition's state to start from, or `None` (with a log line saying why) to rebuild
    /// it from every retained reading.
    pub(crate) fn restore(
        &self,
        here: &Header,
        partition: i32,
        committed: &Committed,
    ) -> Option<Restored> {
        let started = Instant::now();
        let store = Store::new(&self.state_dir, &self.group_id, partition);
        let until = HashMap::from([(partition, committed.offset)]);
        let found = if !self.in_kafka() {
            store
                .as_ref()
                .map(|s| s.load(here, &until, None, &self.engine))
                .unwrap_or(Ok(None))
                .map_err(|why| why.to_string())
        } else if let Some(at) = committed.state {
            let cached = store
                .as_ref()
                .and_then(|s| s.load(here, &until, Some(at.generation), &self.engine).ok())
                .flatten();
            match cached {
                Some(r) => Ok(Some(r)),
                None => self
                    .read_topic(here, partition, at)
                    .map(Some)
                    .map_err(|e| e.to_string()),
            }
        } else {
            Ok(None)
        };
        match found {
            Ok(Some(mut r)) => {
                r.took = started.elapsed();
                Some(r)
            }
            Ok(None) => {
                tracing::info!(
                    partition,
                    "no state saved for this partition: rebuilding it from every retained reading"
                );
                None
            }
            Err(why) => {
                tracing::warn!(
                    partition,
                    "saved state not used, rebuilding the partition's state from every retained \
                     reading: {why}"
                );
                None
            }
        }
    }

    fn read_topic(
        &self,
        here: &Header,
        partition: i32,
        at: StateRef,
    ) -> Result<Restored, StateError> {
        let (header, body) = read(&self.k, &self.group_id, partition, at, crate::TIMEOUT * 4)?;
        if (&header.cluster_id, &header.topic, &header.group_id)
            != (&here.cluster_id, &here.topic, &here.group_id)
        {
            return Err(StateError::Elsewhere(format!(
                "cluster {}, topic {}, group {}",
                header.cluster_id, header.topic, header.group_id
            )));
        }
        let engine = Engine::restore(self.engine.clone(), &body)?;
        Ok(Restored {
            engine,
            offsets: header.offsets,
            registry: header.registry,
            generation: header.generation,
            from: "kafka",
            bytes: body.len() as u64,
            took: Duration::ZERO,
        })
    }
}
