//! Green Button Atom and IEC 61968-9 MeterReadings XML (the first byte picks which reader).
#![no_main]
use gridwatch_ingester::{Format, Records, Validation};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let format = if pick % 2 == 0 {
        Format::GreenButton
    } else {
        Format::IecMeterReadings
    };
    for item in Records::new(body, format, Validation::default()) {
        let _ = item;
    }
});
