//! NEM12 (AEMO's Meter Data File Format), read end to end: every sample file of nem-reader
//! (MIT, Alex Guinman; `tests/data/nem12/LICENSE.nem-reader`) against counts and sums made by
//! hand from the files (a second reading, in Python, of the mapping DESIGN.md gives), and every
//! file of its `invalid/` folder refused, naming the line and the record's field.

use gridwatch_core::{Quality, Reading};
use gridwatch_ingester::parse::InputError;
use gridwatch_ingester::{Format, Records, Reject, Validation};
use std::path::Path;

fn data(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/nem12")
            .join(name),
    )
    .unwrap()
}

/// The readings, the rejects, and the error that ended the file, if one did.
fn read(name: &str) -> (Vec<Reading>, Vec<Reject>, Option<InputError>) {
    let bytes = data(name);
    let format = Format::sniff(&bytes, Format::Csv);
    let (mut ok, mut rejects) = (Vec::new(), Vec::new());
    for item in Records::new(&bytes[..], format, Validation::default()) {
        match item {
            Ok(Ok(r)) => ok.push(r),
            Ok(Err(r)) => rejects.push(r),
            Err(e) => return (ok, rejects, Some(e)),
        }
    }
    (ok, rejects, None)
}

struct Expect {
    readings: usize,
    kwh: f64,
    with_export: usize,
    export: f64,
    estimated: usize,
    nmis: &'static [&'static str],
}

fn check(name: &str, e: Expect) -> Vec<Reading> {
    assert_eq!(
        Format::sniff(&data(name), Format::Csv),
        Format::Nem12,
        "{name}"
    );
    let (r, rejects, err) = read(name);
    assert!(
        err.is_none() && rejects.is_empty(),
        "{name}: {err:?} {rejects:#?}"
    );
    assert_eq!(r.len(), e.readings, "{name}");
    let kwh: f64 = r.iter().map(|x| x.kwh).sum();
    assert!((kwh - e.kwh).abs() < 1e-6, "{name}: {kwh}");
    let exports: Vec<f64> = r.iter().filter_map(|x| x.kwh_export).collect();
    assert_eq!(exports.len(), e.with_export, "{name}");
    let export: f64 = exports.iter().sum();
    assert!((export - e.export).abs() < 1e-6, "{name}: {export}");
    let estimated = r.iter().filter(|x| x.quality == Quality::Estimated).count();
    assert_eq!(estimated, e.estimated, "{name}");
    let mut nmis: Vec<&str> = r.iter().map(|x| x.meter_id.as_str()).collect();
    nmis.dedup();
    assert_eq!(nmis, e.nmis, "{name}");
    r
}

#[test]
fn an_actual_day_is_stamped_with_each_interval_s_end_in_market_time() {
    let r = check(
        "Example_NEM12_actual_interval.csv",
        Expect {
            readings: 48,
            kwh: 53.328,
            with_export: 0,
            export: 0.0,
            estimated: 0,
            nmis: &["VABD000163"],
        },
    );
    // 2004-02-01 00:30 AEST (UTC+10) is 2004-01-31T14:30:00Z; the Q1 (kVArh) channel is left out.
    assert_eq!(r[0].ts, 1_075_559_400);
    assert_eq!(r[0].interval_s, 1800);
    assert!((r[0].kwh - 1.111).abs() < 1e-12);
    assert_eq!(r[47].ts, 1_075_559_400 + 47 * 1800);
    // The same file with its unit upper case.
    check(
        "Example_NEM12_upper_case_units.csv",
        Expect {
            readings: 48,
            kwh: 53.328,
            with_export: 0,
            export: 0.0,
            estimated: 0,
            nmis: &["VABD000163"],
        },
    );
}

#[test]
fn a_variable_day_takes_its_quality_run_by_run_from_its_400_records() {
    let r = check(
        "Example_NEM12_multiple_quality.csv",
        Expect {
            readings: 48,
            kwh: 896.99,
            with_export: 0,
            export: 0.0,
            estimated: 44,
            nmis: &["CCCC123456"],
        },
    );
    // 1–20 F14 (final substituted), 21–24 A, 25–48 S14 (substituted).
    let actual: Vec<usize> = (0..48)
        .filter(|&i| r[i].quality == Quality::Actual)
        .collect();
    assert_eq!(actual, vec![20, 21, 22, 23]);
    // A substituted day is estimated throughout.
    check(
        "Example_NEM12_substituted_interval.csv",
        Expect {
            readings: 48,
            kwh: 110.976,
            with_export: 0,
            export: 0.0,
            estimated: 48,
            nmis: &["VBCD000022"],
        },
    );
}

#[test]
fn a_rooftop_pv_month_reads_with_its_export_and_import() {
    let r = check(
        "Example_NEM12_month_solar.csv",
        Expect {
            readings: 8928,
            kwh: 270.738,
            with_export: 8928,
            export: 589.172,
            estimated: 0,
            nmis: &["NMI1234567"],
        },
    );
    assert!(r.iter().all(|x| x.interval_s == 300));
    assert!(
        r.windows(2).all(|w| w[1].ts == w[0].ts + 300),
        "every 5 minutes, in order"
    );
    // The same month where the export channel has one day: the import stands alone elsewhere.
    check(
        "Example_NEM12_partialchannel.csv",
        Expect {
            readings: 8928,
            kwh: 270.738,
            with_export: 288,
            export: 23.166,
            estimated: 0,
            nmis: &["NMI1234567"],
        },
    );
}

#[test]
fn the_e_channels_of_every_meter_of_an_nmi_sum_and_units_convert() {
    // NCDE001111: E1 (10 Wh) and E2 on another meter (100 Wh) sum, B1 (10 Wh) is its export;
    // NDDD001888 exports only.
    let r = check(
        "Example_NEM12_multiple_meters.csv",
        Expect {
            readings: 384,
            kwh: 21.12,
            with_export: 384,
            export: 5.76,
            estimated: 0,
            nmis: &["NCDE001111", "NDDD001888"],
        },
    );
    assert!((r[0].kwh - 0.11).abs() < 1e-12 && r[0].kwh_export == Some(0.01));
    let nddd = r.iter().find(|x| x.meter_id == "NDDD001888").unwrap();
    assert_eq!((nddd.kwh, nddd.kwh_export), (0.0, Some(0.02)));
    // A voltage channel of another interval length is left out.
    check(
        "Example_NEM12_different_interval_length.csv",
        Expect {
            readings: 48,
            kwh: 374.0,
            with_export: 0,
            export: 0.0,
            estimated: 0,
            nmis: &["C123"],
        },
    );
    check(
        "Example_NEM12_no_scheduled_read.csv",
        Expect {
            readings: 96,
            kwh: 5.84,
            with_export: 0,
            export: 0.0,
            estimated: 0,
            nmis: &["NMI111"],
        },
    );
    check(
        "Example_WesternPower.csv",
        Expect {
            readings: 48,
            kwh: 0.0,
            with_export: 48,
            export: 0.0,
            estimated: 0,
            nmis: &["9999999999"],
        },
    );
}

#[test]
fn every_invalid_file_is_refused_naming_the_line_and_the_field() {
    let cases: &[(&str, &str)] = &[
        ("Example_NEM12_15min_200_30min_300.csv", "line 3: record 300: 48 interval values where the 200 record's IntervalLength of 15 minutes means 96"),
        ("Example_NEM12_15min_200_30min_400.csv", "line 3: record 300: QualityMethod V, but no 400 record gives intervals 49–96 of 96 their quality"),
        ("Example_NEM12_30min_200_15min_300.csv", "line 3: record 300: 96 interval values where the 200 record's IntervalLength of 30 minutes means 48"),
        ("Example_NEM12_30min_200_15min_400.csv", "record 300: 96 interval values where the 200 record's IntervalLength of 30 minutes means 48"),
        ("Example_NEM12_empty.csv", "line 2: no interval data: no 300 record"),
        ("Example_NEM12_incomplete_interval.csv", "line 3: record 300: 0 interval values where the 200 record's IntervalLength of 30 minutes means 48"),
        ("Example_NEM12_missing_header.csv", "line 2: a NEM12 200 record before the 100 header"),
        ("Example_NEM12_powercor.csv", "line 2: a NEM12 200 record before the 100 header"),
        ("Example_NEM12_powercor_missing_fields.csv", "line 2: a NEM12 200 record before the 100 header"),
    ];
    for (name, said) in cases {
        let (r, _, err) = read(&format!("invalid/{name}"));
        let err = err.unwrap_or_else(|| panic!("{name} was read: {} readings", r.len()));
        assert!(err.to_string().contains(said), "{name}: {err}");
        assert!(r.is_empty(), "{name}: nothing of a refused day is read");
    }
    // An empty file is no NEM12 at all: as a readings CSV it has no header.
    let (_, _, err) = read("invalid/Example_empty_file.csv");
    assert!(err.is_some(), "an empty file is refused");
}

#[test]
fn a_damaged_value_rejects_its_day_and_the_file_goes_on() {
    let text = "100,NEM12,200405011135,MDA1,Ret1\n\
        200,N1,E1,1,E1,N1,M1,kWh,30,\n\
        300,20040201,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,x,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,A,,,,\n\
        300,20040202,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,A,,,,\n\
        900\n";
    let (mut ok, mut rejects) = (Vec::new(), Vec::new());
    for item in Records::new(text.as_bytes(), Format::Nem12, Validation::default()) {
        match item.unwrap() {
            Ok(r) => ok.push(r),
            Err(r) => rejects.push(r),
        }
    }
    assert_eq!(ok.len(), 48, "the next day is read");
    assert_eq!(rejects.len(), 1);
    assert_eq!(rejects[0].line, 3);
    assert!(
        rejects[0]
            .reason
            .contains("field IntervalValue30: \"x\" is not a number"),
        "{}",
        rejects[0].reason
    );
}
