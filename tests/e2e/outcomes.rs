//! End to end, inspection outcomes: recorded by CLI and HTTP, through Kafka, closing cases.

use gridwatch_e2e::helpers::*;
use gridwatch_e2e::*;
use serde_json::Value;
use std::fmt::Write as _;
use std::time::Duration;

/// Issue 26, end to end: inspection outcomes recorded by the CLI (`gridwatch outcome record`)
/// and over HTTP (`POST /v1/outcomes`) reach the detector through the compacted outcomes topic.
/// Two homes draw a flat 5 kW from day 2: S1 is cleared (a heat pump) and, after a kill -9 and
/// a restart, its same load is not accused again, until it adds 10 kW on day 9 — a new case that
/// says it was cleared; S2 is confirmed. The alerts equal `gridwatch run --outcomes`, id for id.
#[test]
fn inspection_outcomes_through_kafka_close_cases_and_a_cleared_site_is_accused_only_of_more() {
    let _one_at_a_time = serial();
    let Some(bootstrap) = kafka() else { return };
    let addr = format!("127.0.0.1:{}", free_port());
    let env = Env::new(&bootstrap, "outcomes")
        .with("GRIDWATCH__INGESTER__LISTEN", &addr)
        .with("GRIDWATCH__DETECTOR__BATCH_SIZE", "400");
    let registry = env.dir.join("registry.csv");
    std::fs::write(
        &registry,
        "site_id,meter_id,feeder_id,role,customer_class,permitted_kw,status,licensed_mining,lat,lon,region\n\
         S1,M1,F1,customer,residential,30,active,false,52.3,77.0,Pavlodar\n\
         S2,M2,F1,customer,residential,30,active,false,52.3,77.1,Pavlodar\n",
    )
    .unwrap();
    let rows = |days: std::ops::Range<i64>| -> String {
        let mut text = String::from("meter_id,ts,interval_s,kwh\n");
        for i in days.start * 96 + 1..=days.end * 96 {
            for (m, c) in [("M1", 0), ("M2", 3)] {
                let rigs = if i > 2 * 96 { 5.0 } else { 0.0 };
                let more = if m == "M1" && i > 9 * 96 { 10.0 } else { 0.0 };
                let kw = household(i + c) + rigs + more;
                let ts = gridwatch_core::time::format_rfc3339(T0 + i * 900);
                let _ = writeln!(text, "{m},{ts},900,{:.3}", kw / 4.0);
            }
        }
        text
    };
    let (part1, part2, all) = (
        env.dir.join("p1.csv"),
        env.dir.join("p2.csv"),
        env.dir.join("all.csv"),
    );
    std::fs::write(&part1, rows(0..7)).unwrap();
    std::fs::write(&part2, rows(7..13)).unwrap();
    std::fs::write(&all, rows(0..13)).unwrap();
    let visit = gridwatch_core::time::format_rfc3339(T0 + 5 * 86_400 + 9 * 3600);
    let outcomes = env.dir.join("outcomes.csv");
    std::fs::write(
        &outcomes,
        format!(
            "target_id,verdict,visited_at,explained_by,kw,inspector,note\n\
             S1,legitimate,{visit},heat_pump,,insp-7,\nS2,confirmed,{visit},,5,insp-7,rigs in the shed\n"
        ),
    )
    .unwrap();
    let emb = env.dir.join("embedded");
    env.run(&[
        "run",
        "--registry",
        registry.to_str().unwrap(),
        "--readings",
        all.to_str().unwrap(),
        "--outcomes",
        outcomes.to_str().unwrap(),
        "--out",
        emb.to_str().unwrap(),
        "--quiet",
    ]);
    let embedded = alerts_in(&emb);
    let status = |alerts: &[Value], site: &str, s: &str| {
        alerts
            .iter()
            .filter(|a| a["site_id"] == site && a["status"] == s)
            .count()
    };
    assert_eq!(status(&embedded, "S1", "cleared"), 1, "{embedded:#?}");
    assert_eq!(status(&embedded, "S2", "confirmed"), 1, "{embedded:#?}");
    assert_eq!(
        status(&embedded, "S1", "open"),
        2,
        "the case, then the one for more: {embedded:#?}"
    );

    env.run(&["registry", "load", "--registry", registry.to_str().unwrap()]);
    // S1 by the CLI, S2 over HTTP, before the readings reach the visit.
    env.run(&[
        "outcome",
        "record",
        "--target",
        "S1",
        "--verdict",
        "legitimate",
        "--explained-by",
        "heat_pump",
        "--visited-at",
        &visit,
        "--inspector",
        "insp-7",
    ]);
    let mut ingester = env.spawn("ingester", &["ingester"]);
    wait_until("the ingester to be ready", Duration::from_secs(60), || {
        get(&addr, "/readyz") == 200
    });
    let bad = post(
        &addr,
        "/v1/outcomes",
        "application/json",
        br#"{"target_id":"S2","verdict":"guilty","visited_at":"2026-01-06T09:00:00Z"}"#,
    );
    assert_eq!(bad.0, 422, "{bad:?}");
    let body = format!(
        r#"{{"target_id":"S2","verdict":"confirmed","visited_at":"{visit}","kw":5,"inspector":"insp-7","note":"rigs in the shed"}}"#
    );
    let ok = post(&addr, "/v1/outcomes", "application/json", body.as_bytes());
    assert_eq!(ok.0, 200, "{ok:?}");
    let counted = get_text(&addr, "/metrics").1;
    assert_eq!(
        metric(&counted, "gridwatch_outcomes_total{verdict=\"confirmed\"}"),
        Some(1),
        "{counted}"
    );
    env.run(&["ingest", "--readings", part1.to_str().unwrap()]);
    let mut detector = env.spawn("detector1", &["detect"]);
    wait_until("S1 cleared", Duration::from_secs(120), || {
        status(&env.tail("alerts", 0, Duration::ZERO), "S1", "cleared") == 1
    });
    detector.kill9();
    env.run(&["ingest", "--readings", part2.to_str().unwrap()]);
    let mut detector = env.spawn("detector2", &["detect"]);
    let kafka = env.tail("alerts", embedded.len(), Duration::from_secs(180));
    std::thread::sleep(Duration::from_secs(3));
    let kafka_all = env.tail("alerts", kafka.len(), Duration::ZERO);
    assert_eq!(
        alert_ids(&kafka_all),
        alert_ids(&embedded),
        "Kafka and embedded differ"
    );
    let reopened = kafka_all
        .iter()
        .find(|a| {
            a["site_id"] == "S1"
                && a["status"] == "open"
                && a["summary"]
                    .as_str()
                    .unwrap()
                    .contains("cleared by inspection")
        })
        .expect("the added load is a new case that says the site was cleared");
    assert!(reopened["detected_at"].as_str().unwrap() > "2026-01-10");
    assert!(detector.stop(), "{}", detector.log_text());
    assert!(ingester.stop(), "{}", ingester.log_text());
}
