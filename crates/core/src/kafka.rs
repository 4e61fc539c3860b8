//! rdkafka client settings shared by the three services.

use crate::config::KafkaConfig;
use rdkafka::ClientConfig;

/// A client config with the bootstrap servers and the passthrough properties applied.
pub fn client_config(k: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.bootstrap_servers);
    for (key, value) in &k.properties {
        c.set(key, value);
    }
    c
}

/// An idempotent, `acks=all` producer config: nothing acknowledged is lost or duplicated
/// by retries.
pub fn producer_config(k: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.bootstrap_servers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "zstd")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000");
    for (key, value) in &k.properties {
        c.set(key, value);
    }
    c
}
