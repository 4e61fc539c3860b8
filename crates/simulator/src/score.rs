//! Scores alerts against ground truth: which labelled cases were found, how late in event
//! time, and which alerts point at targets with no case (false alerts).

use crate::Label;
use gridwatch_core::{Alert, AlertKind, AlertStatus};

/// How one labelled case fared.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub label: Label,
    /// The first alert opened on the target at or after onset: its kind and event time.
    pub found: Option<(AlertKind, i64)>,
}

impl Outcome {
    /// Event-time delay from onset to the first alert, in seconds.
    pub fn delay_s(&self) -> Option<i64> {
        self.found.map(|(_, at)| (at - self.label.onset).max(0))
    }
}

#[derive(Debug, Clone)]
pub struct Report {
    pub outcomes: Vec<Outcome>,
    /// Opened alerts whose target carries no label.
    pub false_alerts: Vec<Alert>,
}

fn targets(label: &Label, a: &Alert) -> bool {
    match label.target_type.as_str() {
        "site" => a.site_id.as_deref() == Some(&label.target_id),
        "meter" => a.meter_id.as_deref() == Some(&label.target_id),
        "feeder" => a.site_id.is_none() && a.feeder_id.as_deref() == Some(&label.target_id),
        _ => false,
    }
}

/// Scores `alerts` (any order; only `open` messages count) against `labels`.
pub fn score(labels: &[Label], alerts: &[Alert]) -> Report {
    let opened: Vec<&Alert> = alerts
        .iter()
        .filter(|a| a.status == AlertStatus::Open)
        .collect();
    let outcomes = labels
        .iter()
        .map(|l| {
            let found = opened
                .iter()
                .filter(|a| targets(l, a) && a.detected_at >= l.onset)
                .min_by_key(|a| (a.detected_at, a.kind))
                .map(|a| (a.kind, a.detected_at));
            Outcome {
                label: l.clone(),
                found,
            }
        })
        .collect();
    let false_alerts = opened
        .into_iter()
        .filter(|a| !labels.iter().any(|l| targets(l, a)))
        .cloned()
        .collect();
    Report {
        outcomes,
        false_alerts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridwatch_core::Severity;

    fn alert(site: Option<&str>, meter: &str, at: i64, status: AlertStatus) -> Alert {
        Alert {
            alert_id: format!("{meter}{at}"),
            kind: AlertKind::MiningSignature,
            status,
            severity: Severity::High,
            score: 0.9,
            site_id: site.map(str::to_string),
            meter_id: Some(meter.into()),
            feeder_id: Some("F1".into()),
            region: None,
            lat: None,
            lon: None,
            detected_at: at,
            window_start: at,
            window_end: at,
            est_excess_kw: 1.0,
            est_excess_kwh: 1.0,
            evidence: Default::default(),
            summary: String::new(),
        }
    }

    #[test]
    fn finds_delays_misses_and_false_alerts() {
        let labels = vec![
            Label {
                target_type: "site".into(),
                target_id: "S1".into(),
                scenario: "mining".into(),
                onset: 1000,
                required: true,
            },
            Label {
                target_type: "meter".into(),
                target_id: "MX".into(),
                scenario: "unreg".into(),
                onset: 0,
                required: true,
            },
            Label {
                target_type: "site".into(),
                target_id: "S2".into(),
                scenario: "mining".into(),
                onset: 0,
                required: true,
            },
        ];
        let alerts = vec![
            alert(Some("S1"), "M1", 500, AlertStatus::Open), // before onset: not a detection
            alert(Some("S1"), "M1", 4600, AlertStatus::Open),
            alert(Some("S1"), "M1", 9000, AlertStatus::Update),
            alert(None, "MX", 900, AlertStatus::Open),
            alert(Some("S9"), "M9", 900, AlertStatus::Open),
            alert(Some("S9"), "M9", 990, AlertStatus::Resolved),
        ];
        let r = score(&labels, &alerts);
        assert_eq!(r.outcomes[0].delay_s(), Some(3600));
        assert_eq!(r.outcomes[1].delay_s(), Some(900));
        assert!(r.outcomes[2].found.is_none());
        assert_eq!(r.false_alerts.len(), 1);
        assert_eq!(r.false_alerts[0].site_id.as_deref(), Some("S9"));
    }
}
