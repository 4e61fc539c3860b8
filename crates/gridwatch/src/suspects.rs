//! `gridwatch suspects`: the ranked inspection list from alerts (an embedded run's, or the
//! open cases on the compacted `gridwatch.suspects` topic) — targets
//! ordered by likelihood × estimated unauthorized energy, the way an inspection team plans its
//! week.

use anyhow::Result;
use gridwatch_core::{Alert, AlertStatus};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize)]
pub struct Suspect {
    pub rank: usize,
    pub target: String,
    pub site_id: Option<String>,
    pub meter_id: Option<String>,
    pub feeder_id: Option<String>,
    pub region: Option<String>,
    pub score: f64,
    pub est_excess_kw: f64,
    pub est_excess_mwh: f64,
    pub kinds: Vec<String>,
    pub open: bool,
    pub summary: String,
    /// The alert that speaks for the target (its strongest open episode's latest message).
    #[serde(skip)]
    pub alert: Alert,
}

/// What inspectors' verdicts added up to: cases confirmed (and the unauthorized MWh they
/// stood for, per month of the visit), cases cleared, and the share of visited leads that were
/// right.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Inspections {
    pub confirmed: usize,
    pub cleared: usize,
    pub confirmed_mwh: f64,
    /// `YYYY-MM` of the visit → MWh confirmed.
    pub confirmed_mwh_by_month: BTreeMap<String, f64>,
    /// confirmed ÷ (confirmed + cleared); none before the first verdict.
    pub hit_rate: Option<f64>,
}

impl Inspections {
    pub fn of(alerts: &[Alert]) -> Inspections {
        let mut out = Inspections::default();
        for a in alerts {
            match a.status {
                AlertStatus::Confirmed => {
                    out.confirmed += 1;
                    let mwh = a.est_excess_kwh / 1000.0;
                    out.confirmed_mwh += mwh;
                    let month = gridwatch_core::time::format_rfc3339(a.detected_at);
                    *out.confirmed_mwh_by_month
                        .entry(month.get(..7).unwrap_or(&month).to_string())
                        .or_default() += mwh;
                }
                AlertStatus::Cleared => out.cleared += 1,
                _ => {}
            }
        }
        let visited = out.confirmed + out.cleared;
        out.hit_rate = (visited > 0).then(|| out.confirmed as f64 / visited as f64);
        out
    }

    /// One line for a person: "3 confirmed (12.4 MWh), 1 cleared: 75 % of visited leads right".
    pub fn line(&self) -> Option<String> {
        let rate = self.hit_rate?;
        Some(format!(
            "inspections: {} confirmed ({:.1} MWh unauthorized), {} cleared: {:.0} % of visited leads right",
            self.confirmed,
            self.confirmed_mwh,
            self.cleared,
            100.0 * rate
        ))
    }
}

/// One row per target: the latest message of each of its episodes, combined.
pub fn rank(alerts: &[Alert]) -> Vec<Suspect> {
    let mut latest: BTreeMap<&str, &Alert> = BTreeMap::new();
    for a in alerts {
        let e = latest.entry(&a.alert_id).or_insert(a);
        if (a.detected_at, a.status != AlertStatus::Open)
            >= (e.detected_at, e.status != AlertStatus::Open)
        {
            *e = a;
        }
    }
    let mut by_target: BTreeMap<&str, Vec<&Alert>> = BTreeMap::new();
    for a in latest.values() {
        by_target.entry(a.target_id()).or_default().push(a);
    }
    let mut rows: Vec<Suspect> = by_target
        .into_iter()
        .map(|(target, eps)| {
            // The strongest episode still open speaks for the target; else the strongest one.
            let best = eps
                .iter()
                .max_by(|a, b| {
                    let key = |x: &Alert| (!x.status.is_closed(), x.score);
                    let (ka, kb) = (key(a), key(b));
                    ka.0.cmp(&kb.0).then(ka.1.total_cmp(&kb.1))
                })
                .expect("one or more");
            let mut kinds: Vec<String> = eps.iter().map(|a| a.kind.to_string()).collect();
            kinds.sort();
            kinds.dedup();
            // Episodes of one target overlap (a farm is over its permit too): take the largest.
            let kwh = eps.iter().map(|a| a.est_excess_kwh).fold(0.0, f64::max);
            let kw = eps.iter().map(|a| a.est_excess_kw).fold(0.0, f64::max);
            Suspect {
                rank: 0,
                target: target.to_string(),
                site_id: best.site_id.clone(),
                meter_id: best.meter_id.clone(),
                feeder_id: best.feeder_id.clone(),
                region: best.region.clone(),
                score: best.score,
                est_excess_kw: kw,
                est_excess_mwh: kwh / 1000.0,
                kinds,
                open: eps.iter().any(|a| !a.status.is_closed()),
                summary: best.summary.clone(),
                alert: (*best).clone(),
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        (b.score * b.est_excess_mwh)
            .total_cmp(&(a.score * a.est_excess_mwh))
            .then_with(|| a.target.cmp(&b.target))
    });
    for (i, r) in rows.iter_mut().enumerate() {
        r.rank = i + 1;
    }
    rows
}

pub fn run(alerts: &[Alert], top: usize, all: bool, as_json: bool) -> Result<()> {
    // A site an inspector cleared is not a suspect, not even in the full list.
    let rows: Vec<Suspect> = rank(alerts)
        .into_iter()
        .filter(|r| r.open || (all && r.alert.status != AlertStatus::Cleared))
        .collect();
    let total: f64 = rows.iter().map(|r| r.est_excess_mwh).sum();
    let inspections = Inspections::of(alerts);
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"total_mwh": total, "suspects": rows, "inspections": inspections})
            )?
        );
        return Ok(());
    }
    println!(
        "{:>4}  {:<10} {:<8} {:<10} {:>5} {:>9} {:>8}  why",
        "rank", "target", "feeder", "region", "score", "kW", "MWh"
    );
    for r in rows.iter().take(top) {
        println!(
            "{:>4}  {:<10} {:<8} {:<10} {:>5.2} {:>9.1} {:>8.2}  {}",
            r.rank,
            r.target,
            r.feeder_id.as_deref().unwrap_or("-"),
            r.region.as_deref().unwrap_or("-"),
            r.score,
            r.est_excess_kw,
            r.est_excess_mwh,
            r.summary
        );
    }
    println!(
        "{} {} suspects, {:.1} MWh estimated unauthorized in total",
        rows.len(),
        if all { "" } else { "open" },
        total
    );
    if let Some(line) = inspections.line() {
        println!("{line}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridwatch_core::{AlertKind, Severity};

    fn alert(
        id: &str,
        site: &str,
        kind: AlertKind,
        status: AlertStatus,
        at: i64,
        score: f64,
        kwh: f64,
    ) -> Alert {
        Alert {
            alert_id: id.into(),
            kind,
            status,
            severity: Severity::from_score(score),
            score,
            site_id: Some(site.into()),
            meter_id: Some(format!("M{site}")),
            feeder_id: Some("F1".into()),
            region: None,
            lat: None,
            lon: None,
            detected_at: at,
            window_start: 0,
            window_end: at,
            est_excess_kw: kwh / 10.0,
            est_excess_kwh: kwh,
            evidence: Default::default(),
            summary: format!("{site} {kind}"),
        }
    }

    #[test]
    fn ranks_by_likelihood_times_energy_with_one_row_per_site() {
        use AlertKind::*;
        use AlertStatus::*;
        let alerts = vec![
            alert("a", "S1", MiningSignature, Open, 10, 0.9, 100.0),
            alert("a", "S1", MiningSignature, Update, 20, 0.95, 2000.0),
            alert("b", "S1", CapacityExceeded, Open, 15, 0.8, 1500.0),
            alert("c", "S2", CapacityExceeded, Open, 10, 0.5, 5000.0),
            alert("d", "S3", MiningSignature, Open, 10, 0.99, 50.0),
            alert("d", "S3", MiningSignature, Resolved, 30, 0.99, 60.0),
        ];
        let r = rank(&alerts);
        assert_eq!(
            r.iter().map(|s| s.target.as_str()).collect::<Vec<_>>(),
            ["S2", "S1", "S3"]
        );
        assert_eq!(r[1].kinds, ["capacity_exceeded", "mining_signature"]);
        assert!(
            (r[1].est_excess_mwh - 2.0).abs() < 1e-12,
            "latest update counts, episodes don't add up"
        );
        assert!(!r[2].open);
        assert_eq!(r[0].rank, 1);
    }

    #[test]
    fn verdicts_close_cases_and_add_up_to_confirmed_energy_and_a_hit_rate() {
        use AlertKind::*;
        use AlertStatus::*;
        let jan = 1_767_571_200; // 2026-01-05
        let feb = jan + 31 * 86_400;
        let alerts = vec![
            alert("a", "S1", MiningSignature, Open, jan, 0.9, 900.0),
            alert(
                "a",
                "S1",
                MiningSignature,
                Confirmed,
                jan + 86_400,
                0.9,
                2000.0,
            ),
            alert("b", "S2", MiningSignature, Open, jan, 0.8, 500.0),
            alert(
                "b",
                "S2",
                MiningSignature,
                Cleared,
                jan + 86_400,
                0.8,
                500.0,
            ),
            alert("c", "S3", Tamper, Open, jan, 0.9, 300.0),
            alert("c", "S3", Tamper, Confirmed, feb, 0.9, 1000.0),
            alert("d", "S4", MiningSignature, Open, jan, 0.7, 100.0),
        ];
        let r = rank(&alerts);
        let open: Vec<&str> = r
            .iter()
            .filter(|s| s.open)
            .map(|s| s.target.as_str())
            .collect();
        assert_eq!(open, ["S4"], "confirmed and cleared cases are closed");
        let i = Inspections::of(&alerts);
        assert_eq!((i.confirmed, i.cleared), (2, 1));
        assert!((i.confirmed_mwh - 3.0).abs() < 1e-9);
        assert_eq!(
            i.confirmed_mwh_by_month.keys().collect::<Vec<_>>(),
            ["2026-01", "2026-02"]
        );
        assert!((i.hit_rate.unwrap() - 2.0 / 3.0).abs() < 1e-9);
        assert!(i.line().unwrap().contains("67 % of visited leads right"));
        assert_eq!(Inspections::of(&alerts[..1]).line(), None);
    }
}
