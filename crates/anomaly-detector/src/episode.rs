//! The alert lifecycle of one (target, kind) episode: one `open`, rate-limited `update`s,
//! one `resolved`.

use crate::evidence::{render, round, Evidence};
use gridwatch_core::{
    alert_id, Alert, AlertKind, AlertStatus, MeterRecord, Outcome, Severity, Verdict,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a detector says about its condition at one point in event time.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Finding {
    pub score: f64,
    pub est_excess_kw: f64,
    /// Energy judged unauthorized during the step that produced this finding.
    pub excess_kwh: f64,
    /// In order of precedence: a later piece wins a clash of keys.
    pub evidence: Vec<Evidence>,
    pub summary: String,
}

impl Finding {
    pub fn new(
        score: f64,
        est_excess_kw: f64,
        excess_kwh: f64,
        evidence: Evidence,
        summary: String,
    ) -> Finding {
        Finding {
            score,
            est_excess_kw,
            excess_kwh,
            evidence: vec![evidence],
            summary,
        }
    }
}

/// The alert lifecycle of one (target, kind): its state is part of the meter's (or feeder's)
/// checkpointed state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Episode {
    pub kind: AlertKind,
    pub id: String,
    pub start: i64,
    pub last_active: i64,
    /// Closed hours with data since the condition was last seen.
    pub quiet_hours: u32,
    pub last_emit: i64,
    /// The estimate and the score smoothed over about a day of findings, and the estimate at
    /// the last message: a load that swings with opening hours is not news every six hours.
    kw_smooth: Option<f64>,
    score_smooth: Option<f64>,
    pub emitted_kw: f64,
    pub emitted_kwh: f64,
    pub emitted_severity: Severity,
    pub excess_kwh: f64,
    pub opened: bool,
    pub last: Option<LastFinding>,
    /// For a site's case: each detector that has contributed, with its latest score.
    pub detectors: Vec<(AlertKind, f64)>,
    emitted_detectors: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct LastFinding {
    pub score: f64,
    pub est_excess_kw: f64,
    pub evidence: Vec<Evidence>,
    pub summary: String,
}

/// Who an alert is about, and where.
pub(crate) struct Target<'a> {
    /// None for a feeder-level alert.
    pub meter_id: Option<&'a str>,
    pub reg: Option<&'a MeterRecord>,
    pub feeder_hint: Option<&'a str>,
}

impl Target<'_> {
    /// The id alerts are keyed by: the site, else the meter, else the feeder.
    pub fn id(&self) -> &str {
        self.reg
            .map(|r| r.site_id.as_str())
            .or(self.meter_id)
            .or(self.feeder_hint)
            .unwrap_or("")
    }
}

impl Episode {
    pub fn new(kind: AlertKind, target_id: &str, start: i64) -> Episode {
        Episode {
            kind,
            id: alert_id(target_id, kind, start),
            start,
            last_active: start,
            quiet_hours: 0,
            last_emit: i64::MIN,
            kw_smooth: None,
            score_smooth: None,
            emitted_kw: 0.0,
            emitted_kwh: 0.0,
            emitted_severity: Severity::Low,
            excess_kwh: 0.0,
            opened: false,
            last: None,
            detectors: Vec::new(),
            emitted_detectors: 0,
        }
    }

    /// Gives a case that has not opened yet the kind of its strongest evidence; the id
    /// follows (target, kind, start) as ever.
    pub fn rekind(&mut self, kind: AlertKind, target_id: &str) {
        debug_assert!(!self.opened);
        self.kind = kind;
        self.id = alert_id(target_id, kind, self.start);
    }

    /// Quiet time (hours with data, without the condition) after which the episode resolves:
    /// `resolve_after_s`, or as long as the condition has lasted, up to three times that. A
    /// condition that has held for days must stay away longer than a weekend to be over; a
    /// shop's capacity case doesn't close each Saturday and reopen each Monday.
    pub fn quiet_needed_h(&self, resolve_after_s: i64) -> i64 {
        (self.last_active - self.start).clamp(resolve_after_s, 3 * resolve_after_s) / 3600
    }

    /// Whether the episode has been quiet long enough to resolve.
    pub fn is_over(&self, resolve_after_s: i64) -> bool {
        i64::from(self.quiet_hours) >= self.quiet_needed_h(resolve_after_s)
    }

    /// Records a detector's latest score on this case.
    pub fn note(&mut self, kind: AlertKind, score: f64) {
        match self.detectors.iter_mut().find(|(k, _)| *k == kind) {
            Some(d) => d.1 = score,
            None => {
                self.detectors.push((kind, score));
                self.detectors.sort_by_key(|d| d.0);
            }
        }
    }

    /// The case's risk: the chance that at least one of its independent lines of evidence is
    /// right (noisy-OR of the detectors' scores).
    pub fn risk(&self) -> f64 {
        1.0 - self
            .detectors
            .iter()
            .map(|(_, s)| 1.0 - s.clamp(0.0, 1.0))
            .product::<f64>()
    }

    /// Records an active finding at event time `at` (also the alert's `window_end`); returns
    /// the alert to emit, if any. `open_ready` says whether the condition is strong enough to
    /// open the episode.
    pub fn activate(
        &mut self,
        f: Finding,
        at: i64,
        open_ready: bool,
        update_interval_s: i64,
        t: &Target<'_>,
    ) -> Option<Alert> {
        self.last_active = at;
        self.quiet_hours = 0;
        self.excess_kwh += f.excess_kwh;
        let smooth = |old: Option<f64>, new: f64| old.map_or(new, |old| old + (new - old) / 24.0);
        let kw_smooth = smooth(self.kw_smooth, f.est_excess_kw);
        let score_smooth = smooth(self.score_smooth, f.score);
        (self.kw_smooth, self.score_smooth) = (Some(kw_smooth), Some(score_smooth));
        // Severity as it stands over the day, not as one hour swings it.
        let sev = Severity::from_score(if self.opened { score_smooth } else { f.score });
        let status = if !self.opened {
            if !open_ready {
                self.remember(f);
                return None;
            }
            self.opened = true;
            AlertStatus::Open
        } else {
            let due = at - self.last_emit >= update_interval_s;
            let changed = sev != self.emitted_severity
                || (kw_smooth - self.emitted_kw).abs() > 0.5 * self.emitted_kw.abs().max(1.0)
                || self.excess_kwh > 2.0 * self.emitted_kwh.max(1.0)
                || self.detectors.len() != self.emitted_detectors;
            if !(due && changed) {
                self.remember(f);
                return None;
            }
            AlertStatus::Update
        };
        self.last_emit = at;
        self.emitted_kw = kw_smooth;
        self.emitted_kwh = self.excess_kwh;
        self.emitted_severity = sev;
        self.emitted_detectors = self.detectors.len();
        self.remember(f);
        Some(self.alert(status, at, at, t))
    }

    fn remember(&mut self, f: Finding) {
        self.last = Some(LastFinding {
            score: f.score,
            est_excess_kw: f.est_excess_kw,
            evidence: f.evidence,
            summary: f.summary,
        });
    }

    /// The `resolved` message, if the episode was ever opened.
    pub fn resolve(&mut self, at: i64, reason: &str, t: &Target<'_>) -> Option<Alert> {
        if !self.opened {
            return None;
        }
        let end = self.last_active;
        let mut a = self.alert(AlertStatus::Resolved, at, end, t);
        a.summary = format!("Resolved: {reason}. Was: {}", a.summary);
        a.evidence.insert("resolution".into(), Value::from(reason));
        Some(a)
    }

    /// The message that closes the case on an inspector's verdict (`confirmed` or `cleared`),
    /// if it was ever opened: the energy is the measured load from the case's start to the
    /// visit where the inspector gave one, else the case's estimate.
    pub fn close(&mut self, o: &Outcome, t: &Target<'_>) -> Option<Alert> {
        if !self.opened {
            return None;
        }
        let status = match o.verdict {
            Verdict::Confirmed => AlertStatus::Confirmed,
            _ => AlertStatus::Cleared,
        };
        let mut a = self.alert(status, o.visited_at, self.last_active, t);
        if let Some(kw) = o.kw {
            a.est_excess_kw = round(kw, 2);
            if status == AlertStatus::Confirmed {
                a.est_excess_kwh =
                    round(kw * (o.visited_at - self.start).max(0) as f64 / 3600.0, 1);
            }
        }
        let by = o
            .inspector
            .as_deref()
            .map_or(String::new(), |i| format!(" by {i}"));
        let why = match (status, o.explained_by) {
            (AlertStatus::Cleared, Some(e)) => format!(": {}", e.as_str().replace('_', " ")),
            _ => String::new(),
        };
        let note = o
            .note
            .as_deref()
            .map_or(String::new(), |n| format!(" ({n})"));
        let word = if status == AlertStatus::Confirmed {
            "Confirmed"
        } else {
            "Cleared"
        };
        a.summary = format!("{word} by inspection{by}{why}{note}. Was: {}", a.summary);
        a.evidence
            .insert("verdict".into(), Value::from(o.verdict.as_str()));
        if let Some(e) = o.explained_by {
            a.evidence
                .insert("explained_by".into(), Value::from(e.as_str()));
        }
        if let Some(kw) = o.kw {
            a.evidence.insert("inspected_kw".into(), Value::from(kw));
        }
        Some(a)
    }

    /// An inspector could not get in: the case stays open, ranked higher (its score raised by
    /// 0.1, to at most 0.99), and says so in an `update`.
    pub fn no_access(&mut self, at: i64, t: &Target<'_>) -> Option<Alert> {
        if !self.opened {
            return None;
        }
        let last = self.last.as_mut()?;
        last.score = (last.score + 0.1).min(0.99);
        self.score_smooth = Some(last.score);
        self.last_emit = at;
        let mut a = self.alert(AlertStatus::Update, at, self.last_active, t);
        a.summary = format!("No access at inspection: {}", a.summary);
        a.evidence.insert(
            "no_access_at".into(),
            Value::from(gridwatch_core::time::format_rfc3339(at)),
        );
        Some(a)
    }

    fn alert(&self, status: AlertStatus, at: i64, window_end: i64, t: &Target<'_>) -> Alert {
        let last = self
            .last
            .as_ref()
            .expect("an episode emits only after a finding");
        let reg = t.reg;
        Alert {
            alert_id: self.id.clone(),
            kind: self.kind,
            status,
            severity: Severity::from_score(last.score),
            score: round(last.score, 3),
            site_id: reg.map(|r| r.site_id.clone()),
            meter_id: t.meter_id.map(str::to_string),
            feeder_id: reg
                .map(|r| r.feeder_id.clone())
                .or_else(|| t.feeder_hint.map(str::to_string)),
            region: reg.and_then(|r| r.region.clone()),
            lat: reg.and_then(|r| r.lat),
            lon: reg.and_then(|r| r.lon),
            detected_at: at,
            window_start: self.start,
            window_end,
            est_excess_kw: round(last.est_excess_kw, 2),
            est_excess_kwh: round(self.excess_kwh, 1),
            evidence: render(&last.evidence),
            summary: last.summary.clone(),
        }
    }
}
