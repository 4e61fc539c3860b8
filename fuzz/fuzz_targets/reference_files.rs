//! The register, weather and holidays files (the first byte picks which reader).
#![no_main]
use gridwatch_ingester::{calendar::read_holidays, read_registry, weather::read_weather};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    match pick % 3 {
        0 => {
            let _ = read_registry(body, "fuzz.csv");
        }
        1 => {
            let _ = read_weather(body, "fuzz.csv");
        }
        _ => {
            let _ = read_holidays(body, "fuzz.csv");
        }
    }
});
