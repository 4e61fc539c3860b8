//! Shared types of gridwatch: readings, register rows, alerts, the Arrow schema,
//! configuration and event-time helpers. No I/O beyond reading a config file.

pub mod alert;
pub mod config;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod reading;
pub mod registry;
pub mod schema;
pub mod time;

pub use alert::{alert_id, Alert, AlertKind, AlertStatus, Severity};
pub use config::{Config, DetectorConfig, IngesterConfig, KafkaConfig, SinkConfig};
pub use reading::{DlqRecord, Reading};
pub use registry::{CustomerClass, MeterRecord, RegistryUpdate, Role, SiteStatus};
