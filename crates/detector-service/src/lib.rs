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
//!
//! The house, by what each part owns (as Kafka Streams separates its stream thread, task
//! manager and state manager):
//! - [`service`]: the loop, top to bottom — the group's changes, the side topics, a batch
//!   gathered, judged on a thread per partition, committed; the housekeeping;
//! - `task`: a partition's task (its engine, offsets, checkpoint) and the judging of its share;
//! - `assign`: the rebalance callback and the group's committed offsets;
//! - `audit`: the group watched as a whole from its own client;
//! - `side`: the register, weather, holidays and outcomes topics;
//! - `producer`: the transactional producer and the rules for its errors;
//! - [`state`]: the state in Kafka (snapshots on the state topic, named by the commits);
//! - `restore`: where a handed-over or rewound partition's state comes from;
//! - [`state_admin`]: `gridwatch state inspect` and `reset`;
//! - [`checkpoints`]: the checkpoint files (the state's local cache);
//! - `stats`: latencies and the progress line.

mod assign;
mod audit;
pub mod checkpoints;
mod producer;
mod restore;
mod service;
mod side;
pub mod state;
pub mod state_admin;
mod stats;
mod task;

pub use audit::{audit, GroupWatch};
pub use service::run;

use serde::{Deserialize, Serialize};
use std::time::Duration;

pub(crate) const TIMEOUT: Duration = Duration::from_secs(30);
/// How long a passing Kafka error (a broker of several lost, a coordinator or leader moving) is
/// retried in place before the run ends and the supervisor starts a new one.
pub(crate) const TRANSIENT_PATIENCE: Duration = Duration::from_secs(60);
/// A partition with readings waiting that has given none for this long has stopped fetching
/// (seen once after a single broker's restart): the run ends and a new consumer starts.
pub(crate) const STALLED_AFTER: Duration = Duration::from_secs(90);

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
    /// Seconds between saves of a partition's state while its readings come (to the state
    /// topic, or to `state_dir` with the topic off): a restart replays at most about this much
    /// of the stream (or `checkpoint_max_replay` readings, whichever is less). Each save writes
    /// the partition's whole state: longer writes less.
    pub checkpoint_interval_s: u64,
    /// Readings of a partition after which its state is saved again whatever the time (with
    /// the state topic on): a restart or a hand-over replays at most about this many per
    /// partition (about 1.7 s per million on a small machine), whatever the burst before it.
    pub checkpoint_max_replay: u64,
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
            checkpoint_interval_s: 300,
            checkpoint_max_replay: 1_000_000,
            max_future_s: 900,
            unowned_alert_s: 60,
        }
    }
}
