//! Properties of the engine over random deliveries of one simulated utility: duplicates
//! anywhere inside the horizon, and a checkpoint and restore anywhere, change no alert. With the
//! order window as wide as the horizon, no arrival order within it changes any alert either.
//! Without it (the default), judgements that read other meters' hours see them as they stand,
//! so interleaving the meters differently moves some (the last test; see docs/ARCHITECTURE.md,
//! "Arrival order").

mod common;

use common::{started_with, utility};
use gridwatch_anomaly_detector::{Engine, EngineConfig, ReadingUse};
use gridwatch_core::{Alert, MeterRecord, Reading, WeatherObs};
use gridwatch_simulator::SimConfig;
use proptest::prelude::*;
use std::sync::OnceLock;

/// A small utility with every case kind, a winter and some meters delivered in daily batches.
fn inputs() -> &'static (Vec<MeterRecord>, Vec<WeatherObs>, Vec<Reading>) {
    static INPUTS: OnceLock<(Vec<MeterRecord>, Vec<WeatherObs>, Vec<Reading>)> = OnceLock::new();
    INPUTS.get_or_init(|| {
        utility(SimConfig {
            sites: 120,
            days: 7,
            seed: 9,
            winter: true,
            batched_share: 0.3,
            duplicate_rate: 0.0,
            out_of_order_rate: 0.0,
            late_rate: 0.0,
            ..SimConfig::default()
        })
    })
}

/// The settings of the runs: by default, or with the order window as wide as the horizon.
fn settings(in_order: bool) -> EngineConfig {
    let cfg = EngineConfig::default();
    EngineConfig {
        order_window_s: if in_order { cfg.lateness_horizon_s } else { 0 },
        ..cfg
    }
}

/// The alerts (sorted JSON) of the readings in this order, and whether any was late; with
/// `restore_at`, the engine is checkpointed and restored before each of those readings.
fn alerts_of<'a>(
    in_order: bool,
    readings: impl Iterator<Item = &'a Reading>,
    restore_at: &[usize],
) -> (Vec<String>, bool) {
    let (records, weather, _) = inputs();
    let mut e = started_with(settings(in_order), records, weather);
    let mut out: Vec<Alert> = Vec::new();
    let mut late = false;
    let mut seen = |_: u64, _: &Reading, used: ReadingUse| late |= used == ReadingUse::Late;
    for (i, r) in readings.enumerate() {
        if restore_at.contains(&i) {
            e = Engine::restore(settings(in_order), &e.checkpoint()).unwrap();
        }
        e.offer(r, i as u64, &mut out, &mut seen);
    }
    e.release_held(&mut out, &mut seen);
    let mut json: Vec<String> = out
        .iter()
        .map(|a| serde_json::to_string(a).unwrap())
        .collect();
    json.sort();
    (json, late)
}

/// The alerts of the stream as simulated (daily batches included), by default or in order.
fn stream_alerts(in_order: bool) -> &'static Vec<String> {
    static WANT: [OnceLock<Vec<String>>; 2] = [OnceLock::new(), OnceLock::new()];
    WANT[usize::from(in_order)].get_or_init(|| {
        let (json, late) = alerts_of(in_order, inputs().2.iter(), &[]);
        assert!(!late && json.len() >= 10, "{} alerts", json.len());
        json
    })
}

/// Splits a seed into per-reading numbers (splitmix64).
fn mix(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add(i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Compares alerts with the stream's, naming (shortened) what is missing and what is new.
fn same_as_stream(in_order: bool, got: &[String]) -> Result<(), TestCaseError> {
    let want = stream_alerts(in_order);
    let short = |a: &String| a.chars().take(200).collect::<String>();
    let missing: Vec<String> = want
        .iter()
        .filter(|a| !got.contains(a))
        .map(short)
        .collect();
    let extra: Vec<String> = got
        .iter()
        .filter(|a| !want.contains(a))
        .map(short)
        .collect();
    prop_assert!(
        missing.is_empty() && extra.is_empty(),
        "{} alerts of the stream missing, {} new:\nmissing {:#?}\nnew {:#?}",
        missing.len(),
        extra.len(),
        missing,
        extra
    );
    Ok(())
}

/// Each meter's readings in the stream's order, delayed by a meter's own number of seconds
/// under `max_delay_h` hours: (arrival time, place in the stream, reading), in arrival order.
fn delayed(readings: &[Reading], seed: u64, max_delay_h: u64) -> Vec<(i64, usize, &Reading)> {
    let meter = |r: &Reading| {
        r.meter_id
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
    };
    let mut arrivals: Vec<(i64, usize, &Reading)> = readings
        .iter()
        .enumerate()
        .map(|(i, r)| {
            (
                r.ts + (mix(seed, meter(r)) % (max_delay_h * 3600)) as i64,
                i,
                r,
            )
        })
        .collect();
    arrivals.sort_by_key(|&(at, i, _)| (at, i));
    arrivals
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Head-ends resend: some readings arrive again, up to a day later. Each counts once.
    #[test]
    fn duplicates_anywhere_inside_the_horizon_change_no_alert(
        seed in any::<u64>(),
        duplicate_per_mille in 1u64..200,
    ) {
        let readings = &inputs().2;
        // Up to half a day of the stream later (7 days simulated): a batched meter's copy is
        // then at most ~41 h behind its interval, inside the 48-hour horizon.
        let half_day = (readings.len() / 14) as u64;
        let mut arrivals: Vec<(usize, u64, &Reading)> = Vec::with_capacity(readings.len() * 2);
        for (i, r) in readings.iter().enumerate() {
            arrivals.push((i, 0, r));
            if mix(seed, i as u64) % 1000 < duplicate_per_mille {
                let later = i + (mix(seed ^ 0x5eed, i as u64) % half_day) as usize;
                arrivals.push((later, 1, r));
            }
        }
        arrivals.sort_by_key(|&(at, again, _)| (at, again));
        let (got, late) = alerts_of(false, arrivals.iter().map(|(_, _, r)| *r), &[]);
        prop_assert!(!late, "no reading inside the horizon is late");
        same_as_stream(false, &got)?;
    }

    /// A detector restarts from its checkpoint at any points of the stream, by default and
    /// with the order window (whose held readings the checkpoint carries).
    #[test]
    fn a_checkpoint_and_restore_anywhere_change_no_alert(
        cuts in proptest::collection::vec(0usize..60_000, 1..4),
        in_order in any::<bool>(),
    ) {
        let n = inputs().2.len();
        let cuts: Vec<usize> = cuts.into_iter().map(|c| c % n).collect();
        let (got, _) = alerts_of(in_order, inputs().2.iter(), &cuts);
        same_as_stream(in_order, &got)?;
    }

    /// With the order window as wide as the horizon: each meter's readings arrive up to
    /// `max_delay_h` hours after the stream's (a head-end per meter, on top of the daily
    /// batches), some twice, and the engine restarts from its checkpoint at some points: the
    /// alerts are the stream's, id for id and word for word.
    #[test]
    fn in_event_order_any_interleaving_of_meters_within_the_window_gives_the_same_alerts(
        seed in any::<u64>(),
        max_delay_h in 1u64..20,
        cuts in proptest::collection::vec(0usize..60_000, 0..3),
    ) {
        let readings = &inputs().2;
        let mut arrivals = delayed(readings, seed, max_delay_h);
        // Some copies, a few hours after the first.
        let copies: Vec<(i64, usize, &Reading)> = arrivals
            .iter()
            .filter(|&&(_, i, _)| mix(seed ^ 0xc0b1e5, i as u64) % 50 == 0)
            .map(|&(at, i, r)| (at + (mix(seed, i as u64) % (6 * 3600)) as i64, i, r))
            .collect();
        arrivals.extend(copies);
        arrivals.sort_by_key(|&(at, i, _)| (at, i));
        // The property's condition, checked: every reading arrives within the window of the
        // newest reading time before it.
        let window = settings(true).order_window_s;
        let mut clock = i64::MIN;
        for &(_, _, r) in &arrivals {
            prop_assert!(r.ts >= clock.saturating_sub(window), "a reading behind the window");
            clock = clock.max(r.ts);
        }
        let n = arrivals.len();
        let cuts: Vec<usize> = cuts.into_iter().map(|c| c % n).collect();
        let (got, late) = alerts_of(true, arrivals.iter().map(|(_, _, r)| *r), &cuts);
        prop_assert!(!late, "no reading inside the horizon is late");
        same_as_stream(true, &got)?;
    }
}

/// Why the window exists, and why the property above is not vacuous: without it, an
/// interleaving of the kind the property tries (each meter up to an hour behind) moves alerts —
/// the season,
/// the peers, the split parts and the feeder balance see the order in which meters' hours close
/// (docs/ARCHITECTURE.md, "Arrival order").
#[test]
fn without_the_window_an_interleaving_of_meters_moves_alerts() {
    let arrivals = delayed(&inputs().2, 0, 1);
    let (got, late) = alerts_of(false, arrivals.iter().map(|(_, _, r)| *r), &[]);
    assert!(!late, "no reading inside the horizon is late");
    assert_ne!(
        &got,
        stream_alerts(false),
        "the same alerts without the window"
    );
    let (got, late) = alerts_of(true, arrivals.iter().map(|(_, _, r)| *r), &[]);
    assert!(!late);
    assert_eq!(&got, stream_alerts(true), "the same alerts with it");
}
