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
    let rows: Vec<Suspect> = rank(alerts).into_iter().filter(|r| all || r.open).collect();
    let total: f64 = rows.iter().map(|r| r.est_excess_mwh).sum();
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"total_mwh": total, "suspects": rows})
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
}
