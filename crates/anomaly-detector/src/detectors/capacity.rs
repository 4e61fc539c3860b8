//! `capacity_exceeded`: demand above the site's permitted kW, sustained.

use super::{a_site, fmt_kw, in_range, ConfigError, HourCx, SiteDetector};
use crate::case::Raised;
use crate::episode::Finding;
use crate::evidence::{round, Capacity as Evidence, Evidence::Capacity as Piece};
use crate::series::HOUR;
use gridwatch_core::{AlertKind, MeterRecord};
use serde::{Deserialize, Serialize};

/// `[detector.capacity]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CapacityConfig {
    /// How long demand must stay above the permit (beyond `permit_tolerance`) before a case
    /// opens (event-time seconds).
    pub min_duration_s: i64,
}

impl Default for CapacityConfig {
    fn default() -> Self {
        CapacityConfig {
            min_duration_s: 2 * 3600,
        }
    }
}

impl CapacityConfig {
    pub(crate) fn build(&self) -> Result<CapacityDetector, ConfigError> {
        in_range(
            "capacity.min_duration_s",
            self.min_duration_s,
            0,
            30 * 86_400,
        )?;
        Ok(CapacityDetector { cfg: self.clone() })
    }
}

pub(crate) struct CapacityDetector {
    cfg: CapacityConfig,
}

/// Consecutive closed hours above the permit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct CapacityState {
    pub over_hours: u32,
}

impl SiteDetector for CapacityDetector {
    const KIND: AlertKind = AlertKind::CapacityExceeded;
    type State = CapacityState;

    fn on_hour(&self, cx: &mut HourCx<'_>, st: &mut CapacityState) -> Option<Raised> {
        let (reg, hour) = (cx.reg, cx.hour);
        let permit = reg.permitted_kw.filter(|p| *p > 0.0)?;
        if hour.kw <= permit * cx.tolerance {
            st.over_hours = 0;
            return None;
        }
        st.over_hours += 1;
        let start = hour.end - i64::from(st.over_hours) * HOUR;
        let ratio = hour.kw / permit;
        let excess = hour.kw - permit;
        let f = Finding::new(
            (0.4 + 0.5 * (ratio - 1.0)).clamp(0.4, 1.0),
            excess,
            excess,
            Piece(Evidence {
                mean_kw: round(hour.kw, 2),
                permitted_kw: permit,
                ratio_to_permit: round(ratio, 2),
                hours_over: f64::from(st.over_hours),
            }),
            format!(
                "Demand {} kW, {:.1}× the permitted {} kW, for {} h at {}",
                fmt_kw(hour.kw),
                ratio,
                fmt_kw(permit),
                st.over_hours,
                a_site(reg)
            ),
        );
        let ready = i64::from(st.over_hours) * HOUR >= self.cfg.min_duration_s;
        Some(Raised::new(Self::KIND, start, f, ready))
    }

    /// A permit raised (or lifted) settles the case at once; if the load still exceeds the new
    /// terms, the next hours open a new case against them.
    fn on_register(
        &self,
        old: Option<&MeterRecord>,
        new: Option<&MeterRecord>,
        st: &mut CapacityState,
    ) -> Option<&'static str> {
        let raised = match (
            old.and_then(|r| r.permitted_kw),
            new.and_then(|r| r.permitted_kw),
        ) {
            (Some(a), Some(b)) => b > a,
            (Some(_), None) => true,
            _ => false,
        };
        raised.then(|| {
            st.over_hours = 0;
            "the permit was raised"
        })
    }
}
