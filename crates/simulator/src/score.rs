//! Scores alerts against ground truth: which labelled cases were found and how late in event
//! time, the precision of each alert kind, and false alerts per 10,000 site-days — per
//! scenario and per customer class.

use crate::{Label, Scenario, TargetType};
use gridwatch_core::{Alert, AlertKind, AlertStatus};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};

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
    /// Opened alerts, all of them.
    pub opened: Vec<Alert>,
}

fn targets(label: &Label, a: &Alert) -> bool {
    match label.target_type {
        TargetType::Site => a.site_id.as_deref() == Some(&label.target_id),
        TargetType::Meter => a.meter_id.as_deref() == Some(&label.target_id),
        TargetType::Feeder => {
            a.site_id.is_none()
                && a.meter_id.is_none()
                && a.feeder_id.as_deref() == Some(&label.target_id)
        }
    }
}

/// Scores `alerts` (any order; only `open` messages count) against `labels`.
pub fn score(labels: &[Label], alerts: &[Alert]) -> Report {
    let opened: Vec<Alert> = alerts
        .iter()
        .filter(|a| a.status == AlertStatus::Open)
        .cloned()
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
        .iter()
        .filter(|a| !labels.iter().any(|l| targets(l, a)))
        .cloned()
        .collect();
    Report {
        outcomes,
        false_alerts,
        opened,
    }
}

/// What the scorer knows of the utility beyond the labels.
#[derive(Debug, Clone, Default)]
pub struct Fleet {
    /// Customer class of each site and meter id (feeders: "feeder").
    pub class_of: HashMap<String, String>,
    /// Customer sites per class.
    pub sites_by_class: BTreeMap<String, usize>,
    /// Days of data.
    pub days: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScenarioRow {
    pub scenario: Scenario,
    pub cases: usize,
    pub required: bool,
    pub found: usize,
    pub recall: f64,
    pub median_delay_h: Option<f64>,
    pub p90_delay_h: Option<f64>,
    pub found_as: BTreeMap<String, usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct KindRow {
    pub kind: String,
    pub opened: usize,
    pub on_cases: usize,
    pub precision: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClassRow {
    pub class: String,
    pub sites: usize,
    pub cases: usize,
    pub found: usize,
    pub recall: Option<f64>,
    pub false_alerts: usize,
    pub false_per_10k_site_days: f64,
}

/// One labelled case and how it fared.
#[derive(Debug, Clone, Serialize)]
pub struct CaseRow {
    pub target_type: TargetType,
    pub target_id: String,
    pub scenario: Scenario,
    pub required: bool,
    pub onset: String,
    pub found_as: Option<String>,
    pub delay_h: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Miss {
    pub target_type: TargetType,
    pub target_id: String,
    pub scenario: Scenario,
    pub onset: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FalseAlert {
    pub alert_id: String,
    pub kind: String,
    pub target: String,
    pub class: String,
    pub detected_at: String,
    pub summary: String,
}

/// The whole evaluation, as printed by `gridwatch eval` and stored by the quality benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub scenarios: Vec<ScenarioRow>,
    pub kinds: Vec<KindRow>,
    pub classes: Vec<ClassRow>,
    pub site_days: f64,
    pub false_alerts: usize,
    pub false_per_10k_site_days: f64,
    pub misses: Vec<Miss>,
    pub false_alert_list: Vec<FalseAlert>,
    pub cases: Vec<CaseRow>,
}

fn quantile_h(sorted: &[i64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    Some((sorted[i] as f64 / 3600.0 * 10.0).round() / 10.0)
}

fn per_10k(n: usize, site_days: f64) -> f64 {
    if site_days <= 0.0 {
        0.0
    } else {
        (n as f64 * 10_000.0 / site_days * 100.0).round() / 100.0
    }
}

impl Report {
    /// Aggregates the outcomes per scenario, alert kind and customer class.
    pub fn evaluate(&self, fleet: &Fleet) -> Evaluation {
        let class_of = |a: &Alert| -> String {
            a.site_id
                .as_ref()
                .or(a.meter_id.as_ref())
                .and_then(|id| fleet.class_of.get(id))
                .cloned()
                .unwrap_or_else(|| {
                    if a.site_id.is_none() && a.meter_id.is_none() {
                        "feeder"
                    } else {
                        "unregistered"
                    }
                    .into()
                })
        };
        // By name, so the tables read alphabetically.
        let mut by_scenario: BTreeMap<&str, (Scenario, Vec<&Outcome>)> = BTreeMap::new();
        for o in &self.outcomes {
            let s = o.label.scenario;
            by_scenario
                .entry(s.as_str())
                .or_insert((s, Vec::new()))
                .1
                .push(o);
        }
        let scenarios = by_scenario
            .into_iter()
            .map(|(_, (s, os))| {
                let mut delays: Vec<i64> = os.iter().filter_map(|o| o.delay_s()).collect();
                delays.sort_unstable();
                let mut found_as = BTreeMap::new();
                for o in &os {
                    if let Some((k, _)) = o.found {
                        *found_as.entry(k.to_string()).or_default() += 1;
                    }
                }
                ScenarioRow {
                    scenario: s,
                    cases: os.len(),
                    required: os.iter().any(|o| o.label.required),
                    found: delays.len(),
                    recall: delays.len() as f64 / os.len() as f64,
                    median_delay_h: quantile_h(&delays, 0.5),
                    p90_delay_h: quantile_h(&delays, 0.9),
                    found_as,
                }
            })
            .collect();
        let false_ids: BTreeSet<&str> = self
            .false_alerts
            .iter()
            .map(|a| a.alert_id.as_str())
            .collect();
        let mut kinds: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for a in &self.opened {
            let e = kinds.entry(a.kind.to_string()).or_default();
            e.0 += 1;
            if !false_ids.contains(a.alert_id.as_str()) {
                e.1 += 1;
            }
        }
        let kinds = kinds
            .into_iter()
            .map(|(kind, (opened, on_cases))| KindRow {
                kind,
                opened,
                on_cases,
                precision: on_cases as f64 / opened as f64,
            })
            .collect();
        let label_class = |l: &Label| {
            fleet
                .class_of
                .get(&l.target_id)
                .cloned()
                .unwrap_or_else(|| l.target_type.to_string())
        };
        let mut classes: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
        for o in &self.outcomes {
            let e = classes.entry(label_class(&o.label)).or_default();
            e.0 += 1;
            e.1 += usize::from(o.found.is_some());
        }
        for a in &self.false_alerts {
            classes.entry(class_of(a)).or_default().2 += 1;
        }
        for c in fleet.sites_by_class.keys() {
            classes.entry(c.clone()).or_default();
        }
        let classes = classes
            .into_iter()
            .map(|(class, (cases, found, fa))| {
                let sites = fleet.sites_by_class.get(&class).copied().unwrap_or(0);
                ClassRow {
                    recall: (cases > 0).then(|| found as f64 / cases as f64),
                    false_per_10k_site_days: per_10k(fa, sites as f64 * fleet.days),
                    class,
                    sites,
                    cases,
                    found,
                    false_alerts: fa,
                }
            })
            .collect();
        let site_days = fleet.sites_by_class.values().sum::<usize>() as f64 * fleet.days;
        let fmt = gridwatch_core::time::format_rfc3339;
        Evaluation {
            scenarios,
            kinds,
            classes,
            site_days,
            false_alerts: self.false_alerts.len(),
            false_per_10k_site_days: per_10k(self.false_alerts.len(), site_days),
            misses: self
                .outcomes
                .iter()
                .filter(|o| o.found.is_none())
                .map(|o| Miss {
                    target_type: o.label.target_type,
                    target_id: o.label.target_id.clone(),
                    scenario: o.label.scenario,
                    onset: fmt(o.label.onset),
                })
                .collect(),
            cases: self
                .outcomes
                .iter()
                .map(|o| CaseRow {
                    target_type: o.label.target_type,
                    target_id: o.label.target_id.clone(),
                    scenario: o.label.scenario,
                    required: o.label.required,
                    onset: fmt(o.label.onset),
                    found_as: o.found.map(|(k, _)| k.to_string()),
                    delay_h: o.delay_s().map(|d| d as f64 / 3600.0),
                })
                .collect(),
            false_alert_list: self
                .false_alerts
                .iter()
                .map(|a| FalseAlert {
                    alert_id: a.alert_id.clone(),
                    kind: a.kind.to_string(),
                    target: a.target_id().to_string(),
                    class: class_of(a),
                    detected_at: fmt(a.detected_at),
                    summary: a.summary.clone(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridwatch_core::Severity;

    fn alert(
        kind: AlertKind,
        site: Option<&str>,
        meter: &str,
        at: i64,
        status: AlertStatus,
    ) -> Alert {
        Alert {
            alert_id: format!("{meter}{at}{kind}"),
            kind,
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

    fn label(t: TargetType, id: &str, scenario: Scenario, onset: i64) -> Label {
        Label {
            target_type: t,
            target_id: id.into(),
            scenario,
            onset,
            required: true,
        }
    }

    #[test]
    fn a_hand_made_alert_file_scores_exactly() {
        let labels = vec![
            label(
                TargetType::Site,
                "S1",
                Scenario::MiningFarmResidential,
                1000,
            ),
            label(TargetType::Site, "S2", Scenario::MiningFarmResidential, 0),
            label(TargetType::Site, "S3", Scenario::MiningFarmResidential, 0),
            label(TargetType::Meter, "MX", Scenario::UnregisteredMeter, 0),
            label(TargetType::Feeder, "F1", Scenario::FeederTapFlat, 0),
        ];
        use AlertKind::*;
        use AlertStatus::*;
        let alerts = vec![
            alert(MiningSignature, Some("S1"), "M1", 500, Open), // before onset: not a detection
            alert(MiningSignature, Some("S1"), "M1", 4600, Open),
            alert(MiningSignature, Some("S1"), "M1", 9000, Update),
            alert(MiningSignature, Some("S2"), "M2", 36_000, Open),
            alert(UnregisteredMeter, None, "MX", 900, Open),
            alert(MiningSignature, Some("S9"), "M9", 900, Open), // false
            alert(CapacityExceeded, Some("S8"), "M8", 900, Open), // false
            alert(MiningSignature, Some("S9"), "M9", 990, Resolved),
        ];
        let r = score(&labels, &alerts);
        assert_eq!(r.outcomes[0].delay_s(), Some(3600));
        assert_eq!(r.outcomes[1].delay_s(), Some(36_000));
        assert!(r.outcomes[2].found.is_none());
        assert_eq!(r.outcomes[3].delay_s(), Some(900));
        assert!(r.outcomes[4].found.is_none());
        let fleet = Fleet {
            class_of: [
                ("S1", "residential"),
                ("S2", "residential"),
                ("S3", "commercial"),
                ("S8", "commercial"),
                ("S9", "residential"),
            ]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
            sites_by_class: [
                ("residential".to_string(), 90),
                ("commercial".to_string(), 10),
            ]
            .into_iter()
            .collect(),
            days: 10.0,
        };
        let e = r.evaluate(&fleet);
        let mining = e
            .scenarios
            .iter()
            .find(|s| s.scenario == Scenario::MiningFarmResidential)
            .unwrap();
        assert_eq!((mining.cases, mining.found), (3, 2));
        assert!((mining.recall - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(mining.median_delay_h, Some(10.0));
        assert_eq!(mining.p90_delay_h, Some(10.0));
        let kind = e
            .kinds
            .iter()
            .find(|k| k.kind == "mining_signature")
            .unwrap();
        assert_eq!(
            (kind.opened, kind.on_cases),
            (4, 3),
            "the alert before onset is on a case, the S9 one is not"
        );
        assert_eq!(e.false_alerts, 2);
        assert_eq!(e.site_days, 1000.0);
        assert_eq!(e.false_per_10k_site_days, 20.0);
        let res = e.classes.iter().find(|c| c.class == "residential").unwrap();
        assert_eq!((res.cases, res.found, res.false_alerts), (2, 2, 1));
        assert!((res.false_per_10k_site_days - 10_000.0 / 900.0).abs() < 0.01);
        assert_eq!(e.misses.len(), 2);
        assert_eq!(e.false_alert_list[0].target, "S9");
    }
}
