//! Grid physics: unmetered taps on feeders, sized against the feeder's demand.

use super::*;

impl Builder<'_> {
    /// Unmetered taps on some feeders, sized against the feeder's mean demand.
    pub(crate) fn plant_taps(&mut self) {
        let n_feeders = self.feeders.len();
        // Feeders already unbalanced by a tampered or an unregistered meter get no tap: one case
        // per target.
        let tampered: std::collections::HashSet<String> = self
            .labels
            .iter()
            .filter(|l| l.target_type == TargetType::Feeder)
            .map(|l| l.target_id.clone())
            .collect();
        for f in 0..n_feeders {
            let kind = match f % 8 {
                0 | 4 => Scenario::FeederTapFlat,
                1 | 5 => Scenario::FeederTapDuty,
                2 | 6 => Scenario::FeederTapSmall,
                3 => Scenario::FeederTapNight,
                _ => continue,
            };
            if (n_feeders < 3 && f > 0) || tampered.contains(&self.feeders[f].feeder_id) {
                continue;
            }
            let mean = self.feeder_mean_kw(f, 7);
            let share = match kind {
                Scenario::FeederTapSmall => self.rng.range(0.03, 0.05),
                Scenario::FeederTapNight => self.rng.range(0.03, 0.08),
                _ => self.rng.range(0.06, 0.2),
            };
            let onset = self.onset();
            // A duty-cycled or night-only tap draws more while on, for the same share of energy.
            let (schedule, on_share) = match kind {
                Scenario::FeederTapDuty => (Schedule::Duty { on: 3, off: 2 }, 3.0 / 5.0),
                Scenario::FeederTapNight => (
                    Schedule::Night {
                        from: 22.0,
                        to: 6.0,
                    },
                    8.0 / 24.0,
                ),
                _ => (Schedule::Always, 1.0),
            };
            let kw = mean * share / on_share;
            self.feeders[f].taps.push(Profile::Miner {
                base: Box::new(Profile::Off),
                kw,
                onset,
                schedule,
            });
            let id = self.feeders[f].feeder_id.clone();
            self.label(
                TargetType::Feeder,
                &id,
                kind,
                onset,
                kind != Scenario::FeederTapSmall,
            );
        }
    }

    /// A quick estimate of a feeder's mean demand from a sample of its customers' first `days`.
    pub(crate) fn feeder_mean_kw(&self, f: usize, days: i64) -> f64 {
        let n_feeders = self.feeders.len();
        let mut total = 0.0;
        let mut samples = 0.0;
        for step in (0..days * 96).step_by(7) {
            let utc = self.cfg.start + step * 900;
            let at = At {
                utc,
                local: utc + self.utc_offset,
            };
            total += self
                .meters
                .iter()
                .enumerate()
                .skip(f)
                .step_by(n_feeders)
                .map(|(i, m)| m.profile.kw(at, i as u64))
                .sum::<f64>();
            samples += 1.0;
        }
        total / samples
    }
}
