//! The configuration file, assembled from each component's section and loaded in layers:
//! built-in defaults, then a TOML file, then environment variables `GRIDWATCH__SECTION__KEY`
//! (`GRIDWATCH__DETECTOR__MINING__MIN_KW_OTHER=8`). Unknown keys are an error naming the key.

use anyhow::{bail, Result};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use gridwatch_anomaly_detector::EngineConfig;
use gridwatch_core::{IngesterConfig, KafkaConfig, SinkConfig};
use gridwatch_detector_service::ServiceConfig;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use std::path::Path;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub detector: DetectorSection,
    pub ingester: IngesterConfig,
    pub sink: SinkConfig,
}

/// The `[detector]` table: the service's keys (group, transactions, batch size) and the engine's
/// (event time, and one sub-table per detector) side by side, as an operator writes them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DetectorSection {
    pub service: ServiceConfig,
    pub engine: EngineConfig,
}

fn object<T: Serialize>(v: &T) -> Map<String, Value> {
    match serde_json::to_value(v) {
        Ok(Value::Object(m)) => m,
        _ => unreachable!("config sections serialize to tables"),
    }
}

impl Serialize for DetectorSection {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut table = object(&self.engine);
        table.append(&mut object(&self.service));
        table.serialize(s)
    }
}

impl<'de> Deserialize<'de> for DetectorSection {
    /// The service's keys go to the service, every other key to the engine, whose sections
    /// refuse keys they don't know.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let table = Map::<String, Value>::deserialize(d)?;
        let service_keys = object(&ServiceConfig::default());
        let (service, engine): (Map<_, _>, Map<_, _>) = table
            .into_iter()
            .partition(|(k, _)| service_keys.contains_key(k));
        let err = serde::de::Error::custom;
        Ok(DetectorSection {
            service: serde_json::from_value(Value::Object(service)).map_err(err)?,
            engine: serde_json::from_value(Value::Object(engine)).map_err(err)?,
        })
    }
}

impl Config {
    /// Defaults, then `file` (if given; it must exist), then `GRIDWATCH__SECTION__KEY` variables.
    /// The detector's settings are validated here too, so a bad value stops every command
    /// before it starts.
    pub fn load(file: Option<&Path>) -> Result<Config> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(f) = file {
            if !f.is_file() {
                bail!("configuration: {}: no such file", f.display());
            }
            fig = fig.merge(Toml::file(f));
        }
        fig = fig.merge(Env::prefixed("GRIDWATCH__").split("__"));
        let mut cfg: Config = fig
            .extract()
            .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
        cfg.kafka
            .resolve_secrets()
            .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
        gridwatch_anomaly_detector::Engine::new(cfg.detector.engine.clone())
            .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
        if cfg.ingester.max_future_s < 0 {
            bail!(
                "configuration: ingester.max_future_s must be at least 0, got {}",
                cfg.ingester.max_future_s
            );
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        writeln!(std::fs::File::create(&p).unwrap(), "{text}").unwrap();
        p
    }

    #[test]
    fn file_overrides_defaults_and_unknown_keys_fail_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let good = file(
            dir.path(),
            "good.toml",
            "[kafka]\nbootstrap_servers = \"10.0.0.1:9092\"\n[kafka.properties]\n\"security.protocol\" = \"ssl\"\n\
             [detector]\nlateness_horizon_s = 86400\ngroup_id = \"g2\"\n[detector.mining]\nmin_kw_other = 8.5",
        );
        let c = Config::load(Some(&good)).unwrap();
        assert_eq!(c.kafka.bootstrap_servers, "10.0.0.1:9092");
        assert_eq!(c.kafka.properties["security.protocol"], "ssl");
        assert_eq!(c.detector.engine.lateness_horizon_s, 86_400);
        assert_eq!(c.detector.engine.mining.min_kw_other, 8.5);
        assert_eq!(c.detector.engine.mining.floor_share, 0.75, "defaults kept");
        assert_eq!(c.detector.service.group_id, "g2");
        assert_eq!(c.sink, SinkConfig::default());

        for (text, key) in [
            ("[detector]\nallowed_latenes_s = 60", "allowed_latenes_s"),
            (
                "[detector.mining]\nmin_kw_residental = 3",
                "min_kw_residental",
            ),
            ("[sink]\nroll_row = 3", "roll_row"),
        ] {
            let bad = file(dir.path(), "bad.toml", text);
            let err = Config::load(Some(&bad)).unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
        let secret = file(dir.path(), "secret", "  s3cret-from-a-mounted-file \n");
        let with_file = file(
            dir.path(),
            "file.toml",
            &format!(
                "[kafka]\nsasl_password_file = {:?}\n[kafka.properties]\nsasl_username = \"gw\"\n\"message.max.bytes\" = 12000\n\"enable.ssl.certificate.verification\" = false",
                secret.display()
            ),
        );
        let c = Config::load(Some(&with_file)).unwrap();
        assert_eq!(
            c.kafka.properties["sasl.password"],
            "s3cret-from-a-mounted-file"
        );
        assert_eq!(
            c.kafka.properties["sasl.username"], "gw",
            "`_` stands for `.`"
        );
        let missing = file(
            dir.path(),
            "missing.toml",
            "[kafka]\nsasl_password_file = \"/nonexistent/pw\"",
        );
        let err = Config::load(Some(&missing)).unwrap_err().to_string();
        assert!(
            err.contains("kafka.sasl_password_file: /nonexistent/pw"),
            "{err}"
        );

        let bad = file(dir.path(), "bad.toml", "[detector.peer]\nmin_peers = 1");
        let err = Config::load(Some(&bad)).unwrap_err().to_string();
        assert!(err.contains("detector.peer.min_peers"), "{err}");
        assert!(Config::load(Some(&dir.path().join("missing.toml"))).is_err());

        // Instance names may be written as numbers (as the environment layer reads `=1`).
        let named = file(
            dir.path(),
            "named.toml",
            "[detector]\ninstance_id = 1\n[sink]\ninstance_id = \"sink-a\"",
        );
        let c = Config::load(Some(&named)).unwrap();
        assert_eq!(c.detector.service.instance_id, "1");
        assert_eq!(c.sink.instance_id, "sink-a");
    }
}
