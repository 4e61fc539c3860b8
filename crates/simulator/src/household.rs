//! Households from real data: 49 households of the Smart Grid Smart City trial (New South
//! Wales), 8 complete weeks each, half-hourly (see scripts/derive_households.py). A simulated
//! household replays one of them, week by week, so its shapes, spikes and load factors are
//! real ones.

const RAW: &[u8] = include_bytes!("../data/households.bin");
const DAYS: usize = 56;
const SLOTS: usize = 48;

/// How many real households the library holds.
pub fn count() -> usize {
    RAW.len() / (DAYS * SLOTS * 2)
}

/// Mean demand (kW) of library household `h` in half-hour `slot` (0–47) of library day `day`
/// (0–55; day 0 is a Monday).
pub fn kw(h: usize, day: usize, slot: usize) -> f64 {
    let i = ((h % count()) * DAYS * SLOTS + (day % DAYS) * SLOTS + slot % SLOTS) * 2;
    let wh = u16::from_le_bytes([RAW[i], RAW[i + 1]]);
    f64::from(wh) / 1000.0 * 2.0
}

/// The highest hourly floor (kW) any 24 consecutive hours of library household `h` reach:
/// high for a household with a large always-on load of its own. Computed once per household.
pub fn day_floor_kw(h: usize) -> f64 {
    static FLOORS: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
    FLOORS.get_or_init(|| {
        (0..count())
            .map(|h| {
                let hours: Vec<f64> = (0..DAYS * 24)
                    .map(|i| (kw(h, i / 24, (i % 24) * 2) + kw(h, i / 24, (i % 24) * 2 + 1)) / 2.0)
                    .collect();
                hours
                    .windows(24)
                    .map(|w| w.iter().copied().fold(f64::INFINITY, f64::min))
                    .fold(0.0, f64::max)
            })
            .collect()
    })[h % count()]
}

/// The library day to replay for local day number `local_day` (days since 1970-01-01, a
/// Thursday), keeping the weekday, starting at week `week_offset` of the household's 8.
pub fn day_for(local_day: i64, week_offset: i64) -> usize {
    let weekday = (local_day + 3).rem_euclid(7); // 0 = Monday
    let week = (local_day.div_euclid(7) + week_offset).rem_euclid(8);
    (week * 7 + weekday) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_library_is_whole_and_household_sized() {
        assert_eq!(count(), 49);
        let mean: f64 = (0..count())
            .flat_map(|h| (0..DAYS).flat_map(move |d| (0..SLOTS).map(move |s| kw(h, d, s))))
            .sum::<f64>()
            / (count() * DAYS * SLOTS) as f64;
        assert!(
            (0.2..1.5).contains(&mean),
            "mean household demand {mean} kW"
        );
        // 2026-01-05 is a Monday.
        assert_eq!(day_for(20_458, 0) % 7, 0);
    }
}
