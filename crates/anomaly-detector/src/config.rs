//! The engine's settings: the `[detector]` table's event-time keys, and one sub-table per
//! detector (`[detector.mining]`, …), each defined and validated in its detector's file.

use crate::detectors::blocks::{BlocksConfig, BlocksDetector};
use crate::detectors::bypass::{BypassConfig, BypassDetector};
use crate::detectors::capacity::{CapacityConfig, CapacityDetector};
use crate::detectors::feeder::{FeederConfig, FeederDetector};
use crate::detectors::generation::{GenerationConfig, GenerationDetector};
use crate::detectors::mining::{MiningConfig, MiningDetector};
use crate::detectors::peer::{PeerConfig, PeerDetector};
use crate::detectors::register::{RegisterChecks, RegisterConfig};
use crate::detectors::split::{SplitConfig, SplitDetector};
use crate::detectors::step::{StepConfig, StepDetector};
use crate::detectors::tamper::{TamperConfig, TamperDetector};
use crate::detectors::{at_least, in_range, ConfigError};
use crate::series::HOUR;

/// The longest lateness horizon: two weeks (a long comms outage's backfill).
pub const MAX_HORIZON_S: i64 = 14 * 24 * HOUR;
use serde::{Deserialize, Serialize};

/// Detection settings. All durations are event time, in seconds. (The detector service's own
/// keys share the `[detector]` table; the CLI's config keeps them apart.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// How far behind the newest reading of its meter a reading may arrive and still count
    /// (a day's batch, a backfill after an outage). Hours are judged once complete, or once
    /// this horizon has passed them; a feeder's hours once all its meters' data are in, or
    /// once its newest reading is this far past them.
    pub lateness_horizon_s: i64,
    /// Readings within this much of the newest reading time are held and judged in event-time
    /// order, so that the alerts do not depend on the order in which meters deliver (any order
    /// in which each reading arrives within the window gives the same alerts). It delays every
    /// judgement by the window and holds the window's readings (56 B each). 0 (the
    /// default): each reading is judged as it arrives, and judgements that read other meters'
    /// hours (the season, peers, split parts, the feeder balance) see them as they stand.
    pub order_window_s: i64,
    /// Demand up to `permitted_kw × (1 + permit_tolerance)` is within a permit: for capacity
    /// cases, and for what a licensed mining site may draw.
    pub permit_tolerance: f64,
    /// An episode resolves after its condition has been absent for this long (counting only
    /// hours with readings).
    pub resolve_after_s: i64,
    /// At most one `update` per episode per this much event time.
    pub update_interval_s: i64,
    /// IANA time zone for sites whose register row has neither `lon` nor `timezone`: night and
    /// day are judged on its standard time. Unset: UTC.
    pub timezone: Option<String>,
    /// Unregistered meters naming one registered feeder that get a case each; more fold into
    /// one case for the feeder, with a count (a flood of invented ids stays bounded).
    pub max_unregistered_per_feeder: u32,
    /// The same per region (a registered feeder's region; readings naming no registered
    /// feeder form a region of their own).
    pub max_unregistered_per_region: u32,
    pub register: RegisterConfig,
    pub capacity: CapacityConfig,
    pub mining: MiningConfig,
    pub blocks: BlocksConfig,
    pub step: StepConfig,
    pub tamper: TamperConfig,
    pub generation: GenerationConfig,
    pub bypass: BypassConfig,
    pub peer: PeerConfig,
    pub split: SplitConfig,
    pub feeder: FeederConfig,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            lateness_horizon_s: 48 * 3600,
            order_window_s: 0,
            permit_tolerance: 0.10,
            resolve_after_s: 24 * 3600,
            update_interval_s: 6 * 3600,
            timezone: None,
            max_unregistered_per_feeder: 100,
            max_unregistered_per_region: 1_000,
            register: RegisterConfig::default(),
            capacity: CapacityConfig::default(),
            mining: MiningConfig::default(),
            blocks: BlocksConfig::default(),
            step: StepConfig::default(),
            tamper: TamperConfig::default(),
            generation: GenerationConfig::default(),
            bypass: BypassConfig::default(),
            peer: PeerConfig::default(),
            split: SplitConfig::default(),
            feeder: FeederConfig::default(),
        }
    }
}

/// The detectors, built from their validated sections.
pub(crate) struct Detectors {
    pub register: RegisterChecks,
    pub capacity: CapacityDetector,
    pub mining: MiningDetector,
    pub blocks: BlocksDetector,
    pub step: StepDetector,
    pub tamper: TamperDetector,
    pub generation: GenerationDetector,
    pub bypass: BypassDetector,
    pub peer: PeerDetector,
    pub split: SplitDetector,
    pub feeder: FeederDetector,
    /// `1 + permit_tolerance`.
    pub tolerance: f64,
    /// Hours from UTC to `timezone`'s standard time, for sites without their own.
    pub default_shift_h: i8,
}

impl EngineConfig {
    /// Validates every section and builds the detectors; the error names the key.
    pub(crate) fn build(&self) -> Result<Detectors, ConfigError> {
        in_range(
            "lateness_horizon_s",
            self.lateness_horizon_s,
            0,
            MAX_HORIZON_S,
        )?;
        in_range("order_window_s", self.order_window_s, 0, MAX_HORIZON_S)?;
        in_range("permit_tolerance", self.permit_tolerance, 0.0, 10.0)?;
        at_least("resolve_after_s", self.resolve_after_s, HOUR)?;
        at_least("update_interval_s", self.update_interval_s, 0)?;
        let default_shift_h = match &self.timezone {
            Some(zone) => {
                gridwatch_core::time::standard_offset_hours(zone).map_err(|e| ConfigError {
                    key: "timezone".into(),
                    problem: e,
                })? as i8
            }
            None => 0,
        };
        Ok(Detectors {
            register: self.register.build()?,
            capacity: self.capacity.build()?,
            mining: self.mining.build()?,
            blocks: self.blocks.build()?,
            step: self.step.build()?,
            tamper: self.tamper.build()?,
            generation: self.generation.build()?,
            bypass: self.bypass.build()?,
            peer: self.peer.build()?,
            split: self.split.build()?,
            feeder: self.feeder.build()?,
            tolerance: 1.0 + self.permit_tolerance,
            default_shift_h,
        })
    }
}
