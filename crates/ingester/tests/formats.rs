//! The standard XML formats, read end to end: the real Green Button sample files (Apache-2.0,
//! Green Button Alliance; their headers kept) against a hand count of their readings and energy,
//! and an IEC 61968-9 `MeterReadings` message written from the schema.

use gridwatch_core::Reading;
use gridwatch_ingester::{Format, Records, Reject, Validation};
use std::path::Path;

fn data(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name),
    )
    .unwrap()
}

fn read(bytes: &[u8], format: Format, meter_id: Option<&str>) -> (Vec<Reading>, Vec<Reject>) {
    let (mut ok, mut rejects) = (Vec::new(), Vec::new());
    let records = Records::new(bytes, format, Validation::default())
        .with_meter_id(meter_id.map(str::to_string));
    for item in records {
        match item.expect("a readable document") {
            Ok(r) => ok.push(r),
            Err(r) => rejects.push(r),
        }
    }
    (ok, rejects)
}

fn total_kwh(r: &[Reading]) -> f64 {
    r.iter().map(|r| r.kwh).sum()
}

#[test]
fn green_button_15_minute_sample_matches_a_hand_count() {
    let bytes = data("greenbutton_openespi_usage_15min.xml");
    assert_eq!(Format::sniff(&bytes, Format::Csv), Format::GreenButton);
    let (r, rejects) = read(&bytes, Format::GreenButton, None);
    assert!(rejects.is_empty(), "{rejects:#?}");
    // 96 IntervalReadings, 93,846 Wh (ReadingType: uom 72 = Wh, multiplier 10^0).
    assert_eq!(r.len(), 96);
    assert!((total_kwh(&r) - 93.846).abs() < 1e-9, "{}", total_kwh(&r));
    assert!(r
        .iter()
        .all(|x| x.meter_id == "5446AF3F" && x.interval_s == 900));
    // The first interval starts 2012-03-01T05:00:00Z: its reading is stamped with its end.
    assert_eq!(r[0].ts, 1_330_578_900);
    assert!((r[0].kwh - 0.282).abs() < 1e-12);
    assert_eq!(r.last().unwrap().ts, 1_330_664_400);
    assert!(r.iter().all(|x| x.kwh_export.is_none()));
}

#[test]
fn green_button_hourly_sample_matches_a_hand_count_and_takes_a_meter_id() {
    let bytes = data("greenbutton_gba_hourly_9days.xml");
    let (r, rejects) = read(&bytes, Format::GreenButton, None);
    assert!(rejects.is_empty(), "{rejects:#?}");
    assert_eq!(r.len(), 216);
    assert!((total_kwh(&r) - 199.563).abs() < 1e-9, "{}", total_kwh(&r));
    assert!(r.iter().all(|x| x.meter_id == "2" && x.interval_s == 3600));
    assert!(r.windows(2).all(|w| w[0].ts < w[1].ts), "in time order");
    let (r, _) = read(&bytes, Format::GreenButton, Some("M100042"));
    assert_eq!(r.len(), 216);
    assert!(r.iter().all(|x| x.meter_id == "M100042"));
}

#[test]
fn iec_meter_readings_merge_import_and_export_and_reject_what_they_cannot_use() {
    let bytes = data("iec_61968_9_meter_readings.xml");
    assert_eq!(
        Format::sniff(&bytes, Format::GreenButton),
        Format::IecMeterReadings
    );
    let (r, rejects) = read(&bytes, Format::IecMeterReadings, None);
    // Three delivered intervals used (one estimated), the failed one rejected; export (Wh, no
    // multiplier) merged into the same intervals; the demand type rejected, reading by reading.
    assert_eq!(r.len(), 3, "{r:#?}");
    assert!(r
        .iter()
        .all(|x| x.meter_id == "M100001" && x.interval_s == 900));
    let t0 = 1_767_571_200; // 2026-01-05T00:00:00Z
    assert_eq!(
        r.iter().map(|x| (x.ts - t0, x.kwh)).collect::<Vec<_>>(),
        vec![(900, 0.25), (1800, 0.5), (3600, 0.75)]
    );
    assert_eq!(r[0].kwh_export, Some(0.1));
    assert_eq!(r[1].kwh_export, Some(0.05));
    assert_eq!(r[2].kwh_export, None);
    assert_eq!(rejects.len(), 2, "{rejects:#?}");
    assert!(rejects[0].reason.contains("1.5.257") || rejects[1].reason.contains("1.5.257"));
    let demand = rejects
        .iter()
        .find(|x| x.reason.contains("not interval energy"))
        .expect("the demand reading type is refused with its reason");
    assert!(demand.reason.contains("0.0.2.6.1.1.8"), "{}", demand.reason);
    // The line its IntervalReadings opens on.
    assert_eq!(demand.line, 55);
}

#[test]
fn malformed_xml_keeps_what_came_before_and_ends_with_an_error() {
    let text = r#"<MeterReadings xmlns="http://iec.ch/TC57/2011/MeterReadings#"><MeterReading>
        <IntervalBlocks><IntervalReadings><timeStamp>2026-01-05T00:15:00Z</timeStamp><value>1</value></IntervalReadings>
        <ReadingType ref="0.0.2.4.1.1.12.0.0.0.0.0.0.0.0.3.72.0"/></IntervalBlocks>
        <Meter><Names><name>M1</name></Names></Meter></MeterReading>
        <MeterReading><IntervalBlocks></Meter>"#;
    let items: Vec<_> = Records::new(
        text.as_bytes(),
        Format::IecMeterReadings,
        Validation::default(),
    )
    .collect();
    assert_eq!(items.len(), 2, "{items:?}");
    let Ok(Ok(first)) = &items[0] else {
        panic!("{items:?}")
    };
    assert_eq!((first.meter_id.as_str(), first.kwh), ("M1", 1.0));
    let Err(e) = &items[1] else {
        panic!("{items:?}")
    };
    assert!(e.to_string().contains("not well-formed XML"), "{e}");
}

#[test]
fn content_decides_the_xml_kind_and_other_text_keeps_its_name() {
    assert_eq!(Format::from_path("usage.xml"), Format::GreenButton);
    assert_eq!(
        Format::sniff(
            b"\xef\xbb\xbf  <feed xmlns=\"http://www.w3.org/2005/Atom\">",
            Format::Csv
        ),
        Format::GreenButton
    );
    assert_eq!(
        Format::sniff(b"meter_id,ts,interval_s,kwh\n", Format::Csv),
        Format::Csv
    );
}
