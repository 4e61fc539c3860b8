//! Shared types of gridwatch: readings, register rows, weather, holidays, alerts, the Arrow schema,
//! shared configuration sections and event-time helpers. No I/O.

pub mod alert;
pub mod calendar;
pub mod config;
pub mod events;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod outcome;
pub mod partition;
pub mod reading;
pub mod registry;
pub mod schema;
pub mod time;
pub mod weather;

pub use alert::{alert_id, Alert, AlertKind, AlertStatus, Severity};
pub use calendar::Holiday;
pub use config::{IngesterConfig, KafkaConfig, OutputFormat, SinkConfig, Topics};
pub use outcome::{Explanation, Outcome, Verdict};
pub use reading::{DlqRecord, Quality, Reading, Validation, MAX_DLQ_RAW};
pub use registry::{CustomerClass, MeterRecord, RegistryUpdate, Role, SiteStatus};
pub use weather::WeatherObs;
