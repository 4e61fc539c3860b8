//! The group's side of the detector: the rebalance callback, which restores each handed
//! partition's checkpoint before its fetching starts and records every change for the run
//! loop to take up in order, and the group's committed offsets as Kafka gives them.

use crate::checkpoints::{Header, Restored};
use crate::restore::Restorer;
use crate::state::StateRef;
use crate::task::said_of;
use crate::{ServiceConfig, TIMEOUT, TRANSIENT_PATIENCE};
use anyhow::Result;
use gridwatch_anomaly_detector::EngineConfig;
use gridwatch_core::kafka::{transient, Quiet};
use gridwatch_core::KafkaConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A partition handed to this instance by the group, its checkpoint restored in the rebalance
/// callback (which also starts its fetching where the checkpoint left off).
pub(crate) struct Handed {
    pub(crate) partition: i32,
    pub(crate) committed: Committed,
    pub(crate) restored: Option<Restored>,
}

/// A partition's committed offset (0: none), the register offsets whose alerts the
/// transaction that committed it carried (its metadata; `None`: not known), and the state
/// snapshot it names (`None`: none).
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Committed {
    pub(crate) offset: i64,
    pub(crate) said: Option<std::collections::BTreeMap<i32, i64>>,
    pub(crate) state: Option<StateRef>,
}

pub(crate) enum Change {
    Assigned(Vec<Handed>),
    Revoked(Vec<i32>),
}

/// The readings consumer's context: logs as [`Quiet`] does, and takes the group's rebalances.
/// Partitions handed over are restored from their checkpoints right in the callback, before
/// fetching starts, so each starts at its checkpoint's offset; the engines themselves are taken
/// up by the run loop, which sees the changes in the order they happened.
pub(crate) struct Assigner {
    topic: String,
    restorer: Restorer,
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
        let committed = match committed_offsets(consumer, &self.topic, tpl) {
            Ok(c) => c,
            Err(e) => {
                self.fail(format!("committed offsets of the handed partitions: {e}"));
                return Vec::new();
            }
        };
        let here = self.here.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut handed = Vec::new();
        for e in tpl.elements() {
            let partition = e.partition();
            let committed = committed.get(&partition).cloned().unwrap_or_default();
            let restored = here
                .as_ref()
                .and_then(|here| self.restorer.restore(here, partition, &committed));
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

impl Assigner {
    pub(crate) fn new(k: &KafkaConfig, d: &ServiceConfig, engine: &EngineConfig) -> Assigner {
        Assigner {
            topic: k.topics.readings.clone(),
            restorer: Restorer {
                k: k.clone(),
                group_id: d.group_id.clone(),
                state_dir: d.state_dir.clone(),
                engine: engine.clone(),
            },
            here: std::sync::Mutex::new(None),
            changes: std::sync::Mutex::new(Vec::new()),
            changed: AtomicBool::new(false),
            failed: std::sync::Mutex::new(None),
        }
    }

    /// Where checkpoints must come from (set once the cluster id is known).
    pub(crate) fn set_here(&self, here: Header) {
        *self.here.lock().unwrap_or_else(|e| e.into_inner()) = Some(here);
    }

    /// Where a partition's state comes from, for the run loop's rewinds too.
    pub(crate) fn restorer(&self) -> &Restorer {
        &self.restorer
    }

    /// Whether the group changed this instance's partitions since the last [`Assigner::take`].
    pub(crate) fn changed(&self) -> bool {
        self.changed.load(Ordering::Relaxed)
    }

    /// The changes since the last call, in the order they happened (empty: none); `Err` when the
    /// callback could not do its part (the run ends).
    pub(crate) fn take(&self) -> Result<Vec<Change>> {
        if !self.changed.swap(false, Ordering::Acquire) {
            return Ok(Vec::new());
        }
        if let Some(why) = self.failed.lock().unwrap_or_else(|e| e.into_inner()).take() {
            anyhow::bail!(why);
        }
        Ok(std::mem::take(
            &mut *self.changes.lock().unwrap_or_else(|e| e.into_inner()),
        ))
    }
}

/// The group's committed offset of each partition of `tpl` (0 where none) and what its
/// transaction said ([`Committed`]), as Kafka gives them: librdkafka asks with
/// `require_stable` under `read_committed` (KIP-447), so an offset a transaction still open
/// carries is waited for, never read half-decided. A broker of several being down (the group
/// coordinator moving) is waited out, for a bounded time.
pub(crate) fn committed_offsets<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    tpl: &TopicPartitionList,
) -> Result<HashMap<i32, Committed>> {
    let asked = Instant::now();
    let committed = loop {
        // A partition's own error is the answer's too: librdkafka gives up asking again on
        // UNSTABLE_OFFSET_COMMIT (a transaction that carries the partition's offset still open:
        // its producer killed, its coordinator lost) at its timeout and returns the list with
        // the error on the partition and no offset. Read as "never committed", that made a
        // partition's every retained reading live again (issue 29).
        let asked_once = consumer
            .committed_offsets(tpl.clone(), TIMEOUT)
            .and_then(
                |c| match c.elements().iter().find_map(|e| e.error().err()) {
                    Some(e) => Err(e),
                    None => Ok(c),
                },
            );
        match asked_once {
            Ok(c) => break c,
            Err(e) if transient(&e) && asked.elapsed() < TRANSIENT_PATIENCE => {
                tracing::warn!("committed offsets: {e} (retrying)");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => return Err(e.into()),
        }
    };
    Ok(tpl
        .elements()
        .iter()
        .map(|e| {
            let found = committed.find_partition(topic, e.partition());
            let c = match found {
                Some(f) => match f.offset() {
                    Offset::Offset(offset) => Committed {
                        offset,
                        said: said_of(f.metadata()),
                        state: StateRef::of_metadata(f.metadata()),
                    },
                    _ => Committed::default(),
                },
                None => Committed::default(),
            };
            (e.partition(), c)
        })
        .collect())
}
