//! Cases: a site's hourly detectors file findings into one case per site. The case keeps the
//! kind it opened with (so its `alert_id` holds), its risk is the noisy-OR of every detector
//! that has spoken on it, its estimate the largest of the hour's, and its evidence that of the
//! strongest finding plus each detector's score. A second detector joining is an `update`,
//! never a second alert. Other episodes (a meter nobody registered, a disconnected site, a
//! feeder's imbalance) have one kind each.

use crate::episode::{Episode, Finding, Target};
use crate::evidence::Evidence;
use gridwatch_core::{Alert, AlertKind};

/// One detector's word on a site in the hour that closed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Raised {
    pub kind: AlertKind,
    /// The event time the condition dates from (the episode's start, if it opens one).
    pub start: i64,
    pub finding: Finding,
    /// Strong enough to open a case on its own.
    pub ready: bool,
}

impl Raised {
    pub fn new(kind: AlertKind, start: i64, finding: Finding, ready: bool) -> Raised {
        Raised {
            kind,
            start,
            finding,
            ready,
        }
    }
}

/// The site-level kinds whose evidence combines into one case per site.
pub(crate) fn is_case_kind(kind: AlertKind) -> bool {
    matches!(
        kind,
        AlertKind::CapacityExceeded
            | AlertKind::MiningSignature
            | AlertKind::StepChange
            | AlertKind::Tamper
            | AlertKind::PeerOutlier
            | AlertKind::UnregisteredGeneration
    )
}

/// The episode of `kind` among a target's, opened at `start` if there is none yet.
pub(crate) fn episode<'a>(
    episodes: &'a mut Vec<Episode>,
    kind: AlertKind,
    target: &str,
    start: i64,
) -> &'a mut Episode {
    match episodes.iter().position(|e| e.kind == kind) {
        Some(p) => &mut episodes[p],
        None => {
            episodes.push(Episode::new(kind, target, start));
            episodes.last_mut().expect("just pushed")
        }
    }
}

/// Where and when a case is settled.
pub(crate) struct Settle<'a, 'b> {
    /// The case's target id (the site).
    pub target: &'a str,
    pub t: &'a Target<'b>,
    /// Event time: the end of the hour being judged.
    pub at: i64,
    pub update_interval_s: i64,
}

/// Combines this hour's findings on a site into its one case.
pub(crate) fn settle(
    s: Settle<'_, '_>,
    episodes: &mut Vec<Episode>,
    mut found: Vec<Raised>,
    out: &mut Vec<Alert>,
) {
    found.sort_by(|a, b| {
        b.ready
            .cmp(&a.ready)
            .then(b.finding.score.total_cmp(&a.finding.score))
            .then(a.kind.cmp(&b.kind))
    });
    let Some(first) = found.first() else { return };
    let (kind, ready) = (first.kind, first.ready);
    let start = found.iter().map(|r| r.start).min().unwrap_or(first.start);
    let est_kw = found
        .iter()
        .map(|r| r.finding.est_excess_kw)
        .fold(0.0, f64::max);
    let kwh = found
        .iter()
        .map(|r| r.finding.excess_kwh)
        .fold(0.0, f64::max);
    let ep = match episodes.iter().position(|e| is_case_kind(e.kind)) {
        Some(p) => &mut episodes[p],
        None => {
            episodes.push(Episode::new(kind, s.target, start));
            episodes.last_mut().expect("just pushed")
        }
    };
    if !ep.opened && ready && ep.kind != kind {
        ep.rekind(kind, s.target);
    }
    for r in &found {
        ep.note(r.kind, r.finding.score);
    }
    // Every number this hour's detectors looked at; the strongest finding's win a clash.
    let mut evidence: Vec<Evidence> = Vec::new();
    for r in found.iter_mut().skip(1).rev() {
        evidence.append(&mut r.finding.evidence);
    }
    let mut strongest = found.swap_remove(0).finding;
    evidence.append(&mut strongest.evidence);
    if ep.detectors.len() > 1 {
        let others: Vec<String> = ep
            .detectors
            .iter()
            .filter(|(k, _)| *k != kind)
            .map(|(k, s)| format!("{k} {s:.2}"))
            .collect();
        strongest.summary = format!(
            "{}. Corroborated by {}",
            strongest.summary,
            others.join(", ")
        );
    }
    evidence.push(Evidence::Detectors(ep.detectors.clone()));
    let f = Finding {
        score: ep.risk(),
        est_excess_kw: est_kw,
        excess_kwh: kwh,
        evidence,
        summary: strongest.summary,
    };
    out.extend(ep.activate(f, s.at, ready, s.update_interval_s, s.t));
}

/// Withdraws a detector's evidence from a target's episodes (a register change made it
/// moot): a site's case settles once no detector's evidence is left standing; another episode
/// of that kind resolves.
pub(crate) fn withdraw(
    episodes: &mut Vec<Episode>,
    kind: AlertKind,
    reason: &str,
    at: i64,
    t: &Target<'_>,
    out: &mut Vec<Alert>,
) {
    let Some(p) = episodes
        .iter()
        .position(|e| e.kind == kind || (is_case_kind(kind) && is_case_kind(e.kind)))
    else {
        return;
    };
    let ep = &mut episodes[p];
    ep.detectors.retain(|(k, _)| *k != kind);
    if ep.detectors.is_empty() {
        let mut ep = episodes.swap_remove(p);
        out.extend(ep.resolve(at, reason, t));
    }
}

/// Resolves the episodes whose condition has been quiet long enough, after an hour with data
/// ending at `end`: a communication gap neither confirms nor clears a case.
pub(crate) fn resolve_quiet(
    episodes: &mut Vec<Episode>,
    end: i64,
    resolve_after_s: i64,
    t: &Target<'_>,
    out: &mut Vec<Alert>,
) {
    let mut k = 0;
    while k < episodes.len() {
        let ep = &mut episodes[k];
        if ep.last_active > end - crate::series::HOUR {
            ep.quiet_hours = 0;
        } else {
            ep.quiet_hours += 1;
        }
        if ep.is_over(resolve_after_s) {
            let mut ep = episodes.swap_remove(k);
            let reason = format!("no {} for {} h", ep.kind, ep.quiet_hours);
            out.extend(ep.resolve(end, &reason, t));
        } else {
            k += 1;
        }
    }
}
