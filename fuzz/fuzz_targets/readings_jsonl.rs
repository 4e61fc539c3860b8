//! Readings as JSON Lines.
#![no_main]
use gridwatch_ingester::{Format, Records, Validation};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for item in Records::new(data, Format::JsonLines, Validation::default()) {
        let _ = item;
    }
});
