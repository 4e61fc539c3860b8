//! A body split into chunks at any lines (each chunk with the header, as a head-end that
//! batches would send it) gives the readings and the rejects of the whole body: what reaches
//! the topic, and so every alert, doesn't depend on how a sender cut its batches.

use gridwatch_ingester::http::parse_body;
use gridwatch_ingester::parse::Validation;
use proptest::prelude::*;

fn line(k: usize, bad: bool) -> String {
    let minute = (k % 4) * 15;
    let hour = (k / 4) % 24;
    let kwh = if bad {
        "-1".to_string()
    } else {
        format!("0.{:03}", (k * 37) % 1000)
    };
    format!("M{},2026-01-05T{hour:02}:{minute:02}:00Z,900,{kwh}", k % 7)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn splitting_a_body_into_chunks_changes_no_reading_and_no_reject(
        n in 1usize..400,
        bad_per_mille in 0u64..300,
        cuts in proptest::collection::vec(0usize..400, 0..8),
        json in any::<bool>(),
    ) {
        let rows: Vec<String> = (0..n)
            .map(|k| line(k, (k as u64 * 7919) % 1000 < bad_per_mille))
            .collect();
        let (kind, header, render): (&str, &str, fn(&str) -> String) = if json {
            ("application/x-ndjson", "", |row| {
                let f: Vec<&str> = row.split(',').collect();
                format!(
                    r#"{{"meter_id":"{}","ts":"{}","interval_s":{},"kwh":{}}}"#,
                    f[0], f[1], f[2], f[3]
                )
            })
        } else {
            ("text/csv", "meter_id,ts,interval_s,kwh\n", |row| row.to_string())
        };
        let body = |rows: &[String]| {
            let mut b = header.to_string();
            for r in rows {
                b.push_str(&render(r));
                b.push('\n');
            }
            b
        };
        let v = Validation::default();
        let (whole, whole_rejects) = parse_body(kind, body(&rows).as_bytes(), "whole", v).unwrap();
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (n + 1)).collect();
        cuts.extend([0, n]);
        cuts.sort_unstable();
        cuts.dedup();
        let (mut parts, mut part_rejects) = (Vec::new(), Vec::new());
        for w in cuts.windows(2) {
            let (r, rej) = parse_body(kind, body(&rows[w[0]..w[1]]).as_bytes(), "part", v).unwrap();
            parts.extend(r);
            part_rejects.extend(rej.into_iter().map(|d| (d.reason, d.raw)));
        }
        prop_assert_eq!(&parts, &whole);
        let whole_rejects: Vec<(String, String)> =
            whole_rejects.into_iter().map(|d| (d.reason, d.raw)).collect();
        prop_assert_eq!(part_rejects, whole_rejects);
    }
}
