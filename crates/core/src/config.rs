//! Layered configuration: built-in defaults, then a TOML file, then environment variables
//! `GRIDWATCH__SECTION__KEY`. Unknown keys are an error.

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub detector: DetectorConfig,
    pub ingester: IngesterConfig,
    pub sink: SinkConfig,
}

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
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            readings: "gridwatch.readings".into(),
            registry: "gridwatch.registry".into(),
            alerts: "gridwatch.alerts".into(),
            dlq: "gridwatch.readings.dlq".into(),
            suspects: "gridwatch.suspects".into(),
        }
    }
}

/// Detection thresholds. All durations are event time, in seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectorConfig {
    /// How late a reading may arrive (behind the newest reading of its meter) and still count.
    pub allowed_lateness_s: i64,
    /// Demand above `permitted_kw × (1 + capacity_tolerance)` counts as exceedance.
    pub capacity_tolerance: f64,
    /// How long demand must stay above the permit before `capacity_exceeded` opens.
    pub capacity_min_duration_s: i64,
    /// Energy on a disconnected or suspended site before `disconnected_consumption` opens (kWh).
    pub disconnected_min_kwh: f64,
    /// Smallest flat load worth a `mining_signature` at a residence (kW).
    pub mining_min_kw_residential: f64,
    /// Smallest flat load worth a `mining_signature` elsewhere (kW).
    pub mining_min_kw_other: f64,
    /// Share of the 24-hour mean that the 24-hour floor must reach to count as around the clock.
    pub mining_floor_share: f64,
    /// A floor at least this high (kW) for `mining_fast_hours` at a residence is called mining
    /// without waiting for a full day.
    pub mining_fast_kw: f64,
    pub mining_fast_hours: u32,
    /// `step_change` for smaller steps: a daily CUSUM of `ln(floor ÷ learned floor)` beyond
    /// `step_allowance`, reaching `step_cusum_limit` with at least `mining_min_kw_other` added.
    pub step_allowance: f64,
    pub step_cusum_limit: f64,
    /// A residence's night-only (or other fixed-hours) miner: a flat block at least this many
    /// hours long, at the same hours two days running…
    pub mining_block_hours: u32,
    /// …whose hourly demand stays within this max/min ratio.
    pub mining_block_flatness: f64,
    /// A residence's duty-cycled miner: at least this many hours a day at the mining level,
    /// two days running.
    pub mining_duty_hours: u32,
    /// Exported power (kW) at night that counts toward `tamper` (reverse energy).
    pub tamper_export_kw: f64,
    /// A business meter reading zero for a day is `tamper` if it used to draw this much (kW).
    pub tamper_zero_baseline_kw: f64,
    /// Where readings carry `voltage_v` and `current_a`: an interval with at least
    /// `tamper_vi_min_a` that registers less than `tamper_vi_pf_floor × V × I` (or energy with
    /// no voltage), for most of `tamper_vi_hours` hours running, is `tamper`.
    pub tamper_vi_min_a: f64,
    pub tamper_vi_pf_floor: f64,
    pub tamper_vi_hours: u32,
    /// A customer's 24-hour mean below `tamper_drop_share` of what it drew, by at least
    /// `tamper_drop_min_kw`, while its feeder draws about that much unmetered, is named on the
    /// feeder's alert (and, at a business held a day, is a `tamper` case: a bypass).
    pub tamper_drop_share: f64,
    pub tamper_drop_min_kw: f64,
    /// How long a business's drop must hold (after its 24-hour mean fell) before it is a
    /// `tamper` case: longer than a long weekend.
    pub tamper_drop_min_duration_s: i64,
    /// `peer_outlier`: a customer's daily energy is compared (in log units) with the median of
    /// the customers of its class on its feeder that day, when at least `peer_min_peers` have
    /// closed it. After `peer_learn_days` days of its usual standing, a one-sided CUSUM of its
    /// rises above that standing, less `peer_allowance` a day, must reach `peer_cusum_limit`…
    pub peer_min_peers: usize,
    pub peer_learn_days: u16,
    pub peer_allowance: f64,
    pub peer_cusum_limit: f64,
    /// …adding at least `peer_min_kw` above what its peers say it would draw, of which the
    /// site's 24-hour floor carries at least `peer_flat_share` (a load that stays on), for
    /// `peer_min_days` days running: real households hold a flat few kW for up to four days.
    pub peer_min_kw: f64,
    pub peer_flat_share: f64,
    pub peer_min_days: u16,
    /// The most a site's usual standing may be (times its peers' median) and still excuse it.
    pub peer_max_usual: f64,
    /// Unexplained share of a feeder's energy (beyond its learned losses), sustained over 12
    /// balanced hours, that raises `feeder_imbalance`.
    pub feeder_min_share: f64,
    /// A smaller, steady excess: a one-sided CUSUM of the hourly unexplained share beyond
    /// `feeder_cusum_allowance` reaching `feeder_cusum_limit` (share × hours) also raises it.
    pub feeder_cusum_allowance: f64,
    pub feeder_cusum_limit: f64,
    /// An episode resolves after its condition has been absent for this long (counting only
    /// hours with readings).
    pub resolve_after_s: i64,
    /// At most one `update` per episode per this much event time.
    pub update_interval_s: i64,
    /// IANA time zone for sites whose register row has neither `lon` nor `timezone`: night and
    /// day are judged on its standard time. Unset: UTC.
    pub timezone: Option<String>,
    /// Consumer group whose committed offsets mark the detector's progress.
    pub group_id: String,
    /// Transactional id of the detector's producer; unique per running instance.
    pub transactional_id: String,
    /// Readings per transaction, at most.
    pub batch_size: usize,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            allowed_lateness_s: 3600,
            capacity_tolerance: 0.10,
            capacity_min_duration_s: 2 * 3600,
            disconnected_min_kwh: 0.005,
            mining_min_kw_residential: 4.5,
            mining_min_kw_other: 5.0,
            mining_floor_share: 0.75,
            mining_fast_kw: 15.0,
            mining_fast_hours: 5,
            step_allowance: 0.2,
            step_cusum_limit: 0.6,
            mining_block_hours: 7,
            mining_block_flatness: 1.35,
            mining_duty_hours: 14,
            feeder_min_share: 0.03,
            feeder_cusum_allowance: 0.01,
            feeder_cusum_limit: 0.3,
            peer_min_peers: 8,
            peer_learn_days: 2,
            peer_allowance: 0.4,
            peer_cusum_limit: 2.0,
            peer_min_kw: 1.0,
            peer_flat_share: 0.5,
            peer_min_days: 6,
            peer_max_usual: 3.0,
            tamper_export_kw: 0.2,
            tamper_zero_baseline_kw: 2.0,
            tamper_vi_min_a: 1.0,
            tamper_vi_pf_floor: 0.3,
            tamper_vi_hours: 3,
            tamper_drop_share: 0.6,
            tamper_drop_min_kw: 0.5,
            tamper_drop_min_duration_s: 96 * 3600,
            resolve_after_s: 24 * 3600,
            update_interval_s: 6 * 3600,
            timezone: None,
            group_id: "gridwatch-detector".into(),
            transactional_id: "gridwatch-detector-0".into(),
            batch_size: 20_000,
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
}

impl Default for IngesterConfig {
    fn default() -> Self {
        IngesterConfig {
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 16 * 1024 * 1024,
            ack_timeout_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SinkConfig {
    /// Output folder; files go to `<out>/flagged/date=…/`.
    pub out: String,
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
            group_id: "gridwatch-sink".into(),
            roll_rows: 100_000,
            roll_age_s: 30,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

impl Config {
    /// Defaults, then `file` (if given; it must exist), then `GRIDWATCH__SECTION__KEY` variables.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(f) = file {
            if !f.is_file() {
                return Err(ConfigError(format!("{}: no such file", f.display())));
            }
            fig = fig.merge(Toml::file(f));
        }
        fig = fig.merge(Env::prefixed("GRIDWATCH__").split("__"));
        fig.extract().map_err(|e| ConfigError(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn file_overrides_defaults_and_unknown_keys_fail() {
        let dir = std::env::temp_dir().join(format!("gw-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.toml");
        writeln!(
            std::fs::File::create(&good).unwrap(),
            "[kafka]\nbootstrap_servers = \"10.0.0.1:9092\"\n[kafka.properties]\n\"security.protocol\" = \"ssl\"\n[detector]\nallowed_lateness_s = 60"
        )
        .unwrap();
        let c = Config::load(Some(&good)).unwrap();
        assert_eq!(c.kafka.bootstrap_servers, "10.0.0.1:9092");
        assert_eq!(c.kafka.properties["security.protocol"], "ssl");
        assert_eq!(c.detector.allowed_lateness_s, 60);
        assert_eq!(c.sink, SinkConfig::default());

        let bad = dir.join("bad.toml");
        writeln!(
            std::fs::File::create(&bad).unwrap(),
            "[detector]\nallowed_latenes_s = 60"
        )
        .unwrap();
        let err = Config::load(Some(&bad)).unwrap_err().to_string();
        assert!(err.contains("allowed_latenes_s"), "{err}");
        assert!(Config::load(Some(&dir.join("missing.toml"))).is_err());
    }
}
