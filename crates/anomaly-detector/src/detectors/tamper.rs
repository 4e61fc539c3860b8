//! `tamper`: signs of a meter made to under-read — energy exported at night (a meter running
//! backwards while no sun shines), voltage and current that carry far more power than the
//! meter registers (where the head-end sends them), or a business whose meter reads exactly
//! zero for a day while the site is active and used to draw a few kW. (A bypass seen from the
//! feeder is [`super::bypass`].)

use super::{class_name, fmt_kw, in_range, positive, ConfigError, HourCx, SiteDetector};
use crate::case::Raised;
use crate::episode::Finding;
use crate::evidence::{
    round, ClassName, Evidence::Tamper as Piece, Tamper as Evidence, TamperPattern,
};
use crate::series::HOUR;
use gridwatch_core::{AlertKind, SiteStatus};
use serde::{Deserialize, Serialize};

/// `[detector.tamper]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TamperConfig {
    /// Exported power (kW) at night that counts toward reverse energy.
    pub export_kw: f64,
    /// A business meter reading zero for a day is tamper if it used to draw this much (kW).
    pub zero_baseline_kw: f64,
    /// Where readings carry `voltage_v` and `current_a`: an interval with at least `vi_min_a`
    /// that registers less than `vi_pf_floor × V × I` (or energy with no voltage), for most of
    /// `vi_hours` hours running.
    pub vi_min_a: f64,
    pub vi_pf_floor: f64,
    pub vi_hours: u32,
}

impl Default for TamperConfig {
    fn default() -> Self {
        TamperConfig {
            export_kw: 0.2,
            zero_baseline_kw: 2.0,
            vi_min_a: 1.0,
            vi_pf_floor: 0.3,
            vi_hours: 3,
        }
    }
}

impl TamperConfig {
    pub(crate) fn build(&self) -> Result<TamperDetector, ConfigError> {
        positive("tamper.export_kw", self.export_kw)?;
        positive("tamper.zero_baseline_kw", self.zero_baseline_kw)?;
        positive("tamper.vi_min_a", self.vi_min_a)?;
        positive("tamper.vi_pf_floor", self.vi_pf_floor)?;
        in_range("tamper.vi_pf_floor", self.vi_pf_floor, 0.0, 1.0)?;
        in_range("tamper.vi_hours", self.vi_hours, 1, 168)?;
        Ok(TamperDetector { cfg: self.clone() })
    }
}

pub(crate) struct TamperDetector {
    cfg: TamperConfig,
}

impl TamperDetector {
    /// The limits a reading's voltage and current are checked against as it is admitted:
    /// `(vi_min_a, vi_pf_floor)`.
    pub fn vi_limits(&self) -> (f64, f64) {
        (self.cfg.vi_min_a, self.cfg.vi_pf_floor)
    }
}

/// Consecutive closed hours reading exactly zero, night hours exporting, and hours mostly
/// contradicted by voltage and current.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct TamperState {
    pub zero_hours: u32,
    pub night_export_hours: u32,
    pub vi_hours: u32,
}

impl SiteDetector for TamperDetector {
    const KIND: AlertKind = AlertKind::Tamper;
    type State = TamperState;

    fn on_hour(&self, cx: &mut HourCx<'_>, st: &mut TamperState) -> Option<Raised> {
        let (cfg, reg, hour, series) = (&self.cfg, cx.reg, cx.hour, cx.series);
        if !(4..22).contains(&series.local_hour(hour.end - HOUR)) {
            st.night_export_hours = if hour.export_kw >= cfg.export_kw {
                st.night_export_hours + 1
            } else {
                0
            };
        }
        st.zero_hours = if hour.kw == 0.0 { st.zero_hours + 1 } else { 0 };
        st.vi_hours = if hour.vi_bad_share >= 0.5 {
            st.vi_hours + 1
        } else {
            0
        };
        let baseline = series.baseline_kw;
        let pattern = if st.night_export_hours >= 3 {
            TamperPattern::ReverseEnergyAtNight
        } else if st.vi_hours >= cfg.vi_hours {
            TamperPattern::EnergyBelowVoltageCurrent
        } else if st.zero_hours >= 24
            && !cx.residential()
            && reg.status == SiteStatus::Active
            && baseline >= cfg.zero_baseline_kw
        {
            TamperPattern::ZeroReads
        } else {
            return None;
        };
        let (kw, score, summary) = match pattern {
            TamperPattern::ReverseEnergyAtNight => (
                hour.export_kw.max(baseline),
                0.9,
                format!(
                    "Meter exports {} kW at night ({} h running): a meter running backwards",
                    fmt_kw(hour.export_kw),
                    st.night_export_hours
                ),
            ),
            TamperPattern::EnergyBelowVoltageCurrent => (
                hour.vi_missing_kw,
                0.9,
                format!(
                    "Voltage and current show about {} kW more than the meter registers ({} kW), for {} h: a shunted or bypassed measuring element",
                    fmt_kw(hour.vi_missing_kw),
                    fmt_kw(hour.kw),
                    st.vi_hours
                ),
            ),
            TamperPattern::ZeroReads => (
                baseline,
                0.75,
                format!(
                    "Meter reads exactly zero for {} h at an active {} site that drew {} kW: stopped or bypassed",
                    st.zero_hours,
                    class_name(reg),
                    fmt_kw(baseline)
                ),
            ),
        };
        let f = Finding::new(
            score,
            kw,
            kw,
            Piece(Evidence {
                baseline_kw: round(baseline, 2),
                export_kw: round(hour.export_kw, 2),
                zero_hours: f64::from(st.zero_hours),
                night_export_hours: f64::from(st.night_export_hours),
                vi_hours: f64::from(st.vi_hours),
                unregistered_kw: round(hour.vi_missing_kw, 2),
                pattern,
                customer_class: ClassName(reg.customer_class),
            }),
            summary,
        );
        Some(Raised::new(Self::KIND, hour.end - HOUR, f, true))
    }
}
