//! Alerts: the contract on `gridwatch.alerts` and in `alerts.jsonl`.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    UnregisteredMeter,
    DisconnectedConsumption,
    CapacityExceeded,
    MiningSignature,
    FeederImbalance,
    StepChange,
    Tamper,
    PeerOutlier,
    UnregisteredGeneration,
}

impl AlertKind {
    pub const ALL: [AlertKind; 9] = [
        AlertKind::UnregisteredMeter,
        AlertKind::DisconnectedConsumption,
        AlertKind::CapacityExceeded,
        AlertKind::MiningSignature,
        AlertKind::FeederImbalance,
        AlertKind::StepChange,
        AlertKind::Tamper,
        AlertKind::PeerOutlier,
        AlertKind::UnregisteredGeneration,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::UnregisteredMeter => "unregistered_meter",
            AlertKind::DisconnectedConsumption => "disconnected_consumption",
            AlertKind::CapacityExceeded => "capacity_exceeded",
            AlertKind::MiningSignature => "mining_signature",
            AlertKind::FeederImbalance => "feeder_imbalance",
            AlertKind::StepChange => "step_change",
            AlertKind::Tamper => "tamper",
            AlertKind::PeerOutlier => "peer_outlier",
            AlertKind::UnregisteredGeneration => "unregistered_generation",
        }
    }
}

impl fmt::Display for AlertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    Open,
    Update,
    Resolved,
    /// An inspector found the unauthorized use: the case is closed.
    Confirmed,
    /// An inspector found a legitimate load: the case is closed and the site not accused again
    /// of the same.
    Cleared,
}

impl AlertStatus {
    /// The case is over: resolved by the data, or closed by an inspector's verdict.
    pub fn is_closed(self) -> bool {
        matches!(
            self,
            AlertStatus::Resolved | AlertStatus::Confirmed | AlertStatus::Cleared
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Open => "open",
            AlertStatus::Update => "update",
            AlertStatus::Resolved => "resolved",
            AlertStatus::Confirmed => "confirmed",
            AlertStatus::Cleared => "cleared",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
}

impl Severity {
    /// Severity from a risk score in 0..=1.
    pub fn from_score(score: f64) -> Self {
        if score >= 0.8 {
            Severity::High
        } else if score >= 0.5 {
            Severity::Medium
        } else {
            Severity::Low
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }
}

/// One alert message. Every message of an episode (`open`, `update`s, `resolved`) carries
/// the same `alert_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub alert_id: String,
    pub kind: AlertKind,
    pub status: AlertStatus,
    pub severity: Severity,
    pub score: f64,
    pub site_id: Option<String>,
    pub meter_id: Option<String>,
    pub feeder_id: Option<String>,
    pub region: Option<String>,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    #[serde(with = "crate::time::serde_rfc3339")]
    pub detected_at: i64,
    #[serde(with = "crate::time::serde_rfc3339")]
    pub window_start: i64,
    #[serde(with = "crate::time::serde_rfc3339")]
    pub window_end: i64,
    pub est_excess_kw: f64,
    pub est_excess_kwh: f64,
    pub evidence: serde_json::Map<String, serde_json::Value>,
    pub summary: String,
}

impl Alert {
    /// The Kafka key of the alert: its target (site, else meter, else feeder).
    pub fn target_id(&self) -> &str {
        self.site_id
            .as_deref()
            .or(self.meter_id.as_deref())
            .or(self.feeder_id.as_deref())
            .unwrap_or("")
    }
}

/// A stable alert id: a function of (target, kind, episode start) only, so replays,
/// restarts and the embedded mode all reproduce it. 128 bits of two FNV-1a passes, in hex.
pub fn alert_id(target: &str, kind: AlertKind, episode_start: i64) -> String {
    fn fnv1a(seed: u64, parts: &[&[u8]]) -> u64 {
        let mut h = seed;
        for p in parts {
            for &b in *p {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
            h ^= 0xff;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h
    }
    let start = episode_start.to_be_bytes();
    let parts: [&[u8]; 3] = [target.as_bytes(), kind.as_str().as_bytes(), &start];
    let a = fnv1a(0xcbf2_9ce4_8422_2325, &parts);
    let b = fnv1a(0x6c62_272e_07bb_0142, &parts);
    format!("{a:016x}{b:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_id_is_stable_and_discriminating() {
        let a = alert_id("S1", AlertKind::MiningSignature, 1_700_000_000);
        assert_eq!(a, alert_id("S1", AlertKind::MiningSignature, 1_700_000_000));
        assert_eq!(a.len(), 32);
        assert_ne!(
            a,
            alert_id("S1", AlertKind::CapacityExceeded, 1_700_000_000)
        );
        assert_ne!(a, alert_id("S1", AlertKind::MiningSignature, 1_700_000_900));
        assert_ne!(a, alert_id("S2", AlertKind::MiningSignature, 1_700_000_000));
        // Pinned: ids must not change between versions, or replays would open new episodes.
        assert_eq!(
            alert_id("S00021", AlertKind::MiningSignature, 0),
            "ebb2c1a01f7405e73ed9dfb5e470a466"
        );
    }
}
