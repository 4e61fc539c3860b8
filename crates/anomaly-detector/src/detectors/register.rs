//! The register checks, judged on every reading (they must answer within an hour of event
//! time): `unregistered_meter`, readings from a meter the register doesn't hold, and
//! `disconnected_consumption`, energy on a site the register says is disconnected or suspended.

use super::{fmt_kw, positive, ConfigError};
use crate::case::episode;
use crate::episode::{Episode, Finding, Target};
use crate::evidence::{round, Disconnected, Evidence, Unregistered};
use gridwatch_core::time::format_rfc3339;
use gridwatch_core::{Alert, AlertKind, MeterRecord, Reading, SiteStatus};
use serde::{Deserialize, Serialize};

/// `[detector.register]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegisterConfig {
    /// Energy on a disconnected or suspended site before a case opens (kWh).
    pub disconnected_min_kwh: f64,
}

impl Default for RegisterConfig {
    fn default() -> Self {
        RegisterConfig {
            disconnected_min_kwh: 0.005,
        }
    }
}

impl RegisterConfig {
    pub(crate) fn build(&self) -> Result<RegisterChecks, ConfigError> {
        positive("register.disconnected_min_kwh", self.disconnected_min_kwh)?;
        Ok(RegisterChecks { cfg: self.clone() })
    }
}

pub(crate) struct RegisterChecks {
    cfg: RegisterConfig,
}

impl RegisterChecks {
    /// Judges one counted reading; returns the alert it raises, if any.
    pub fn on_reading(
        &self,
        episodes: &mut Vec<Episode>,
        r: &Reading,
        t: &Target<'_>,
        update_interval_s: i64,
    ) -> Option<Alert> {
        let kw = r.mean_kw();
        let target = t.id();
        match t.reg {
            None => {
                let ep = episode(episodes, AlertKind::UnregisteredMeter, target, r.start());
                let kwh_so_far = ep.excess_kwh + r.kwh;
                // The mean since the case began: steady, so updates come with news, not noise.
                let mean_kw = kwh_so_far * 3600.0 / ((r.ts - ep.start) as f64).max(1.0);
                let f = Finding::new(
                    (0.6 + 0.4 * (mean_kw / 20.0).min(1.0)).min(1.0),
                    mean_kw,
                    r.kwh,
                    Evidence::Unregistered(Unregistered {
                        mean_kw: round(kw, 2),
                        kwh_since_first_seen: round(kwh_so_far, 2),
                    }),
                    format!(
                        "Meter {} is not in the register; {:.1} kWh since {}",
                        r.meter_id,
                        kwh_so_far,
                        format_rfc3339(ep.start)
                    ),
                );
                ep.activate(f, r.ts, true, update_interval_s, t)
            }
            Some(reg) if reg.status != SiteStatus::Active && r.kwh > 0.0 => {
                let ep = episode(
                    episodes,
                    AlertKind::DisconnectedConsumption,
                    target,
                    r.start(),
                );
                let total = ep.excess_kwh + r.kwh;
                let mean_kw = total * 3600.0 / ((r.ts - ep.start) as f64).max(1.0);
                let f = Finding::new(
                    (0.7 + 0.3 * (total / 10.0).min(1.0)).min(1.0),
                    mean_kw,
                    r.kwh,
                    Evidence::Disconnected(Disconnected {
                        mean_kw: round(kw, 2),
                        kwh_since_first: round(total, 2),
                        register_status: reg.status,
                    }),
                    format!(
                        "{:.1} kWh consumed since {} on a {} site ({} kW now)",
                        total,
                        format_rfc3339(ep.start),
                        reg.status,
                        fmt_kw(kw)
                    ),
                );
                let ready = total >= self.cfg.disconnected_min_kwh;
                ep.activate(f, r.ts, ready, update_interval_s, t)
            }
            Some(_) => None,
        }
    }

    /// The register checks' episodes a new row settles: a meter added to the register, a site
    /// made active.
    pub fn on_register(new: Option<&MeterRecord>) -> Vec<(AlertKind, &'static str)> {
        let mut settled = Vec::new();
        if let Some(reg) = new {
            settled.push((
                AlertKind::UnregisteredMeter,
                "the meter was added to the register",
            ));
            if reg.status == SiteStatus::Active {
                settled.push((
                    AlertKind::DisconnectedConsumption,
                    "the site is active in the register",
                ));
            }
        }
        settled
    }
}
