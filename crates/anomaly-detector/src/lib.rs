//! The detection core of gridwatch: a pure, I/O-free state machine ([`Engine`]) that takes
//! register changes and readings and returns alerts. No clock, no files, no Kafka: the embedded
//! mode (`gridwatch run`) and the Kafka detector service (`gridwatch-detector-service`) drive the
//! same engine.
//!
//! Layout: [`engine`] routes; `series` holds each meter's event-time demand; `detectors/` has
//! one file per detector (its config section, its state, its judgement); `case` combines a
//! site's findings into one case; `episode` is an alert's lifecycle; `evidence` the typed
//! evidence alerts carry.

mod case;
pub mod checkpoint;
pub mod config;
mod crowd;
mod detectors;
pub mod engine;
mod episode;
mod evidence;
mod meter_index;
mod order;
mod series;

pub use checkpoint::RestoreError;
pub use config::EngineConfig;
pub use detectors::blocks::BlocksConfig;
pub use detectors::bypass::BypassConfig;
pub use detectors::capacity::CapacityConfig;
pub use detectors::feeder::FeederConfig;
pub use detectors::mining::MiningConfig;
pub use detectors::peer::PeerConfig;
pub use detectors::register::RegisterConfig;
pub use detectors::step::StepConfig;
pub use detectors::tamper::TamperConfig;
pub use detectors::ConfigError;
pub use engine::Engine;
pub use gridwatch_core::events::ReadingUse;

/// Why a [`ReadingUse::Late`] reading is rejected (reject file, DLQ).
pub const LATE_REASON: &str =
    "late: more than detector.lateness_horizon_s behind the newest reading of its meter";
