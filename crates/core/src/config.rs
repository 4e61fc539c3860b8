//! The configuration sections shared by several crates: Kafka, the ingester, the sink. (The
//! CLI assembles the whole file, `[detector]` included, and loads it in layers.)

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    pub bootstrap_servers: String,
    pub topics: Topics,
    /// Partitions of topics gridwatch creates (readings, alerts, DLQ, registry).
    pub partitions: i32,
    /// Replication factor of topics gridwatch creates.
    pub replication_factor: i32,
    /// librdkafka properties passed through as they are (e.g. `security.protocol`).
    /// Put secrets here through the environment, never in a committed file.
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            bootstrap_servers: "127.0.0.1:9092".into(),
            topics: Topics::default(),
            partitions: 3,
            replication_factor: 1,
            properties: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Topics {
    pub readings: String,
    pub registry: String,
    pub alerts: String,
    pub dlq: String,
    /// Compacted: the latest alert of every open case, keyed by `alert_id`; a resolved case
    /// is a tombstone. Read to its end, it is the current inspection list.
    pub suspects: String,
    /// Compacted: hourly outdoor temperature per region, keyed `region|ts`
    /// (`gridwatch weather load`).
    pub weather: String,
    /// Compacted: public holidays per region, keyed `region|date` (`gridwatch holidays load`).
    pub holidays: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            readings: "gridwatch.readings".into(),
            registry: "gridwatch.registry".into(),
            alerts: "gridwatch.alerts".into(),
            dlq: "gridwatch.readings.dlq".into(),
            suspects: "gridwatch.suspects".into(),
            weather: "gridwatch.weather".into(),
            holidays: "gridwatch.holidays".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngesterConfig {
    /// Address of the HTTP API.
    pub listen: String,
    /// Largest accepted request body; larger ones get 413.
    pub max_body_bytes: usize,
    /// How long a request waits for the broker to acknowledge its records before 503.
    pub ack_timeout_ms: u64,
    /// A reading stamped more than this ahead of the server's clock is rejected (a meter's
    /// clock gone wrong, or a reading meant to make genuine ones look late).
    pub max_future_s: i64,
}

impl Default for IngesterConfig {
    fn default() -> Self {
        IngesterConfig {
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 16 * 1024 * 1024,
            ack_timeout_ms: 10_000,
            max_future_s: 900,
        }
    }
}

/// The file format of the flagged-site files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// Arrow IPC files (`.arrow`, zstd): pyarrow, polars.
    #[default]
    Arrow,
    /// Parquet files (`.parquet`, zstd): DuckDB, Spark and every warehouse, natively.
    Parquet,
}

impl OutputFormat {
    /// The file name extension.
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Arrow => "arrow",
            OutputFormat::Parquet => "parquet",
        }
    }
}

impl std::str::FromStr for OutputFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "arrow" => Ok(OutputFormat::Arrow),
            "parquet" => Ok(OutputFormat::Parquet),
            other => Err(format!(
                "{other:?} is not an output format (arrow or parquet)"
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SinkConfig {
    /// Output folder; files go to `<out>/flagged/date=…/`.
    pub out: String,
    /// `arrow` (IPC files) or `parquet`.
    pub format: OutputFormat,
    /// Address of the sink's `/metrics` (Prometheus text) and `/healthz`.
    pub metrics_listen: String,
    pub group_id: String,
    /// Roll a file after this many rows…
    pub roll_rows: usize,
    /// …or after this many seconds of wall time with rows pending.
    pub roll_age_s: u64,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            out: "gridwatch-out".into(),
            format: OutputFormat::Arrow,
            metrics_listen: "127.0.0.1:9642".into(),
            group_id: "gridwatch-sink".into(),
            roll_rows: 100_000,
            roll_age_s: 30,
        }
    }
}
