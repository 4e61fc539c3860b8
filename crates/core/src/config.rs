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
    /// `min.insync.replicas` of topics gridwatch creates: how many replicas must have a write
    /// before `acks=all` acknowledges it. Unset: 2 where the replication factor allows (one
    /// broker may be lost without losing or refusing a write), else 1.
    pub min_insync_replicas: Option<i32>,
    /// `retention.ms` of the readings, alerts and DLQ topics gridwatch creates, in seconds
    /// (compacted topics keep every key's latest record instead). 7 days by default: the
    /// detector's checkpoints bound restart time, not retention.
    pub retention_s: i64,
    /// librdkafka properties passed through (e.g. `security.protocol`). In a key, `_` stands
    /// for `.`, so the environment can set any of them:
    /// `GRIDWATCH__KAFKA__PROPERTIES__SASL_PASSWORD` is `sasl.password`. Put secrets here
    /// through the environment (or `sasl_password_file`), never in a committed file. Values
    /// may be written as numbers or booleans too (`12000`, `true`): librdkafka takes text.
    #[serde(deserialize_with = "text_values")]
    pub properties: BTreeMap<String, String>,
    /// A file holding the SASL password (a mounted secret; surrounding whitespace ignored),
    /// read at start: `sasl.password` without the secret in the environment or the config.
    pub sasl_password_file: Option<String>,
}

/// A table of librdkafka properties, each value as text whatever TOML or the environment made
/// of it.
fn text_values<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        S(String),
        I(i64),
        U(u64),
        F(f64),
        B(bool),
    }
    let table = BTreeMap::<String, Text>::deserialize(d)?;
    Ok(table
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Text::S(s) => s,
                Text::I(i) => i.to_string(),
                Text::U(u) => u.to_string(),
                Text::F(f) => f.to_string(),
                Text::B(b) => b.to_string(),
            };
            (k, v)
        })
        .collect())
}

impl KafkaConfig {
    /// Spells every property key as librdkafka does (`_` as `.`) and reads
    /// `sasl_password_file` into `sasl.password`; the error names the key or the file.
    pub fn resolve_secrets(&mut self) -> Result<(), String> {
        let props = std::mem::take(&mut self.properties);
        for (key, value) in props {
            let key = key.replace('_', ".");
            if self.properties.insert(key.clone(), value).is_some() {
                return Err(format!(
                    "kafka.properties: {key} is set twice (once with `_` for `.`)"
                ));
            }
        }
        if let Some(file) = &self.sasl_password_file {
            if self.properties.contains_key("sasl.password") {
                return Err(
                    "kafka.sasl_password_file and kafka.properties.sasl.password are both set"
                        .into(),
                );
            }
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("kafka.sasl_password_file: {file}: {e}"))?;
            let password = text.trim();
            if password.is_empty() {
                return Err(format!("kafka.sasl_password_file: {file} is empty"));
            }
            self.properties
                .insert("sasl.password".into(), password.to_string());
        }
        Ok(())
    }

    /// The `min.insync.replicas` topics are created with.
    pub fn min_insync(&self) -> i32 {
        self.min_insync_replicas
            .unwrap_or(if self.replication_factor >= 3 { 2 } else { 1 })
    }

    /// Refuses settings the broker would refuse later, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.partitions < 1 {
            return Err("kafka.partitions: at least 1".into());
        }
        if self.replication_factor < 1 {
            return Err("kafka.replication_factor: at least 1".into());
        }
        let isr = self.min_insync();
        if !(1..=self.replication_factor).contains(&isr) {
            return Err(format!(
                "kafka.min_insync_replicas: {isr} is not within 1..={} (the replication factor)",
                self.replication_factor
            ));
        }
        if self.retention_s < 3600 {
            return Err(format!(
                "kafka.retention_s: {} s is under an hour",
                self.retention_s
            ));
        }
        Ok(())
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            bootstrap_servers: "127.0.0.1:9092".into(),
            topics: Topics::default(),
            partitions: 3,
            replication_factor: 1,
            min_insync_replicas: None,
            retention_s: 7 * 86_400,
            properties: BTreeMap::new(),
            sasl_password_file: None,
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
    /// Compacted: inspection outcomes, keyed by `target_id` (`gridwatch outcome record`,
    /// `POST /v1/outcomes`).
    pub outcomes: String,
    /// Compacted: the detector's state, per readings partition, written in the same
    /// transaction as its alerts and offsets (chunked; the layout is in ARCHITECTURE "State in
    /// Kafka"), so a partition restores on any instance. Empty: state only in
    /// `detector.state_dir` files, tied to the host.
    pub state: String,
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
            outcomes: "gridwatch.outcomes".into(),
            state: "gridwatch.detector.state".into(),
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
    /// Request bodies held at once, over all senders (bytes). A body waits (unread, on the
    /// network) until it fits, up to `ack_timeout_ms`, then 503: memory stays bounded under
    /// a crowd of large posts. At least `max_body_bytes` in effect.
    pub max_inflight_body_bytes: usize,
    /// How long a request waits for the broker to acknowledge its records before 503.
    pub ack_timeout_ms: u64,
    /// A reading stamped more than this ahead of the server's clock is rejected (a meter's
    /// clock gone wrong, or a reading meant to make genuine ones look late).
    pub max_future_s: i64,
    /// File of ingest API keys, one `name key` per line (a mounted secret); reloaded when it
    /// changes and on SIGHUP. Empty: no keys, `POST /v1/readings` is open to anyone who can
    /// reach the listener (logged at start as a warning).
    pub api_keys_file: String,
    /// Requests per second each key may make (0: no limit); over it, 429 with `Retry-After`.
    pub max_requests_per_s: f64,
    /// Requests each key may have in flight (0: no limit); over it, 429.
    pub max_concurrent_requests: usize,
    /// PEM certificate chain for HTTPS on the listener (with `tls_key`). Empty: plain HTTP
    /// (put a TLS-terminating proxy in front, or keep the listener on a private network).
    pub tls_cert: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `tls_cert`.
    pub tls_key: String,
}

impl Default for IngesterConfig {
    fn default() -> Self {
        IngesterConfig {
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 16 * 1024 * 1024,
            max_inflight_body_bytes: 64 * 1024 * 1024,
            ack_timeout_ms: 10_000,
            max_future_s: 900,
            api_keys_file: String::new(),
            max_requests_per_s: 20.0,
            max_concurrent_requests: 8,
            tls_cert: String::new(),
            tls_key: String::new(),
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
    /// This instance's name in the sink group (static membership: a restarted sink takes its
    /// partitions back at once). Empty: the host's name. Two sinks on one host need their own.
    #[serde(deserialize_with = "name_or_number")]
    pub instance_id: String,
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
            instance_id: String::new(),
            roll_rows: 100_000,
            roll_age_s: 30,
        }
    }
}

/// A name that may be written as a number (`GRIDWATCH__SINK__INSTANCE_ID=1`: the environment
/// layer reads it as one).
pub fn name_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Name {
        Text(String),
        Whole(i64),
        Number(f64),
    }
    Ok(match Name::deserialize(d)? {
        Name::Text(s) => s,
        Name::Whole(n) => n.to_string(),
        Name::Number(n) => n.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::KafkaConfig;

    #[test]
    fn topic_durability_defaults_follow_the_replication_factor_and_bad_values_name_their_key() {
        let one = KafkaConfig::default();
        assert_eq!(one.min_insync(), 1);
        assert!(one.validate().is_ok());
        let three = KafkaConfig {
            replication_factor: 3,
            ..KafkaConfig::default()
        };
        assert_eq!(three.min_insync(), 2, "one broker may be lost");
        let too_many = KafkaConfig {
            min_insync_replicas: Some(2),
            ..KafkaConfig::default()
        };
        let e = too_many.validate().unwrap_err();
        assert!(e.starts_with("kafka.min_insync_replicas"), "{e}");
        let short = KafkaConfig {
            retention_s: 60,
            ..KafkaConfig::default()
        };
        assert!(short
            .validate()
            .unwrap_err()
            .starts_with("kafka.retention_s"));
    }
}
