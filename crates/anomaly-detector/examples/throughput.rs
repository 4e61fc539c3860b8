//! Benchmark (not a test): readings per second through the pure detection core on one core,
//! engine memory per meter, and the time to take and restore a checkpoint of the whole state. Run: `cargo run --release -p gridwatch-anomaly-detector --example throughput`
//! Optional arguments: meters (default 100000), days (default 2), order window in hours
//! (default 0: `detector.order_window_s` off), and `scattered` to send each step's meters in
//! a different order (a head-end that keeps no order: the meter index's worst case).

use gridwatch_anomaly_detector::{Engine, EngineConfig};
use gridwatch_core::{CustomerClass, MeterRecord, Reading, RegistryUpdate};
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let meters: usize = args.next().map_or(100_000, |a| a.parse().expect("meters"));
    let days: i64 = args.next().map_or(2, |a| a.parse().expect("days"));
    let window_h: i64 = args
        .next()
        .map_or(0, |a| a.parse().expect("order window hours"));
    let scattered = args.next().is_some_and(|a| a == "scattered");
    let cfg = EngineConfig {
        order_window_s: window_h * 3600,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(cfg.clone()).expect("config");
    let mut out = Vec::new();
    let ids: Vec<String> = (0..meters).map(|i| format!("M{i:07}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let rec = MeterRecord::customer(
            &format!("S{i:07}"),
            id,
            &format!("F{:04}", i / 200),
            CustomerClass::Residential,
            Some(12.0),
        );
        engine.apply_registry(RegistryUpdate::Upsert(rec), &mut out);
    }
    // Pre-built readings, in time order across meters as a head-end would send them.
    let t0 = 1_767_225_600;
    let steps = days * 96;
    let mut reading = Reading::new("", 0, 900, 0.0);
    let started = Instant::now();
    let mut n = 0u64;
    for s in 1..=steps {
        reading.ts = t0 + s * 900;
        for k in 0..meters {
            // 7919 is prime, so every step visits each meter once, in its own order.
            let i = if scattered {
                (k * 7919 + s as usize * 104_729) % meters
            } else {
                k
            };
            reading.meter_id.clear();
            reading.meter_id.push_str(&ids[i]);
            reading.kwh = 0.1 + ((i as i64 * 31 + s * 7) % 17) as f64 * 0.02;
            engine.offer(&reading, 0, &mut out, &mut |_, _, _| {});
            out.clear();
            n += 1;
        }
    }
    let mut secs = started.elapsed().as_secs_f64();
    println!(
        "engine state: {} B per meter (MeterState, excluding the register row and id), \
         {} readings held by a {window_h} h order window; the meter index {} B per meter",
        engine.state_bytes_per_meter(),
        engine.held(),
        engine.index_bytes_per_meter()
    );
    let started = Instant::now();
    let bytes = engine.checkpoint();
    let took = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let restored = Engine::restore(cfg, &bytes).expect("restores");
    let back = started.elapsed().as_secs_f64();
    assert_eq!(restored.meters(), meters);
    println!(
        "checkpoint: {:.1} MB ({} B per meter), taken in {took:.3} s, restored in {back:.3} s; \
         projected at 1 M meters: {:.1} s to take, {:.1} s to restore",
        bytes.len() as f64 / 1e6,
        bytes.len() / meters,
        took * 1e6 / meters as f64,
        back * 1e6 / meters as f64
    );
    // What the window still holds is judged too: every reading counts in the figure.
    let started = Instant::now();
    engine.release_held(&mut out, &mut |_, _, _| {});
    secs += started.elapsed().as_secs_f64();
    println!(
        "detection core: {n} readings for {meters} meters in {secs:.2} s = {:.2} M readings/s on one core",
        n as f64 / secs / 1e6
    );
}
