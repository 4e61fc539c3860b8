//! End to end against a real Kafka broker, the data path: HTTP → ingester → readings topic →
//! detector → alerts topic → sink → Arrow files, read back by pyarrow and polars; rejects on
//! the DLQ; the embedded and Kafka runs agree alert for alert, through kill -9 of detector and
//! sink, with one to three detectors, with weather, holidays, backfills and restores.

use gridwatch_e2e::helpers::*;
use gridwatch_e2e::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

#[test]
fn http_ingest_reaches_alerts_dlq_and_arrow_files() {
    let _one_at_a_time = serial();
    let Some(bootstrap) = kafka() else { return };
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let env = Env::new(&bootstrap, "http")
        .with("GRIDWATCH__INGESTER__LISTEN", &addr)
        .with("GRIDWATCH__INGESTER__MAX_BODY_BYTES", "300000");
    let reg = env.dir.join("registry.csv");
    std::fs::write(&reg, REGISTRY).unwrap();
    env.run(&["registry", "load", "--registry", reg.to_str().unwrap()]);

    let out = env.dir.join("out");
    let mut ingester = env.spawn("ingester", &["ingester"]);
    let mut detector = env.spawn("detector", &["detect"]);
    let mut sink = env.spawn("sink", &["sink", "--out", out.to_str().unwrap()]);
    wait_until("the ingester to be ready", Duration::from_secs(60), || {
        get(&addr, "/readyz") == 200
    });
    assert_eq!(get(&addr, "/healthz"), 200);

    // A mining farm at a residence from 06:00 on day one; consumption on the disconnected
    // site from noon; a normal household; a licensed farm within its permit; a meter that is
    // not in the register.
    let feeds: Vec<(&str, Load)> = vec![
        (
            "M1",
            Box::new(|i| household(i) + if i > 24 { 86.0 } else { 0.0 }),
        ),
        ("M2", Box::new(|i| if i > 48 { household(i) } else { 0.0 })),
        ("M3", Box::new(household)),
        ("M4", Box::new(|i| 500.0 + (i % 3) as f64)),
        ("MX", Box::new(|_| 5.0)),
    ];
    let mut accepted = 0;
    for (meter, kw) in &feeds {
        let body = format!(
            "meter_id,ts,interval_s,kwh,feeder_id\n{}\n",
            csv_lines(meter, kw).join("\n")
        );
        let (status, _, resp) = post(&addr, "/v1/readings", "text/csv", body.as_bytes());
        assert_eq!(status, 200, "{resp}");
        let v: Value = serde_json::from_str(&resp).unwrap();
        assert_eq!(v["rejected"], 0, "{resp}");
        accepted += v["accepted"].as_u64().unwrap();
    }
    assert_eq!(accepted, 5 * 192);

    // JSON array and NDJSON, each with bad records that must reach the DLQ with reasons.
    let json = r#"[{"meter_id":"M3","ts":"2026-01-07T00:15:00Z","interval_s":900,"kwh":0.1},
                   {"meter_id":"M3","ts":"2026-01-07T00:30:00Z","interval_s":900},
                   {"meter_id":"M3","ts":"7 January","interval_s":900,"kwh":0.1}]"#;
    let (status, _, resp) = post(&addr, "/v1/readings", "application/json", json.as_bytes());
    assert_eq!(status, 200, "{resp}");
    let v: Value = serde_json::from_str(&resp).unwrap();
    assert_eq!(
        (v["accepted"].as_u64(), v["rejected"].as_u64()),
        (Some(1), Some(2)),
        "{resp}"
    );
    assert!(
        v["reasons"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("field kwh: missing"),
        "{resp}"
    );
    assert!(
        v["reasons"][1]["reason"]
            .as_str()
            .unwrap()
            .contains("field ts"),
        "{resp}"
    );
    let nd = "{\"meter_id\":\"M3\",\"ts\":\"2026-01-07T00:45:00Z\",\"interval_s\":900,\"kwh\":0.1}\n{\"meter_id\":\"M3\",\"ts\":\"2026-01-07T01:00:00Z\",\"interval_s\":0,\"kwh\":0.1}\n";
    let (status, _, resp) = post(
        &addr,
        "/v1/readings",
        "application/x-ndjson; charset=utf-8",
        nd.as_bytes(),
    );
    assert_eq!(status, 200, "{resp}");
    assert!(resp.contains("field interval_s"), "{resp}");

    // A reading stamped an hour ahead of the clock (beyond ingester.max_future_s, 15 min) is a
    // reject: it would make the meter's genuine readings look late.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let ahead = gridwatch_core::time::format_rfc3339((now / 900 + 4) * 900);
    let body = format!("meter_id,ts,interval_s,kwh\nM3,{ahead},900,0.1\n");
    let (status, _, resp) = post(&addr, "/v1/readings", "text/csv", body.as_bytes());
    assert_eq!(status, 200, "{resp}");
    assert!(resp.contains("is in the future"), "{resp}");

    // Unusable requests are refused outright.
    let (status, _, resp) = post(&addr, "/v1/readings", "text/plain", b"hello");
    assert_eq!(status, 415, "{resp}");
    let (status, _, resp) = post(&addr, "/v1/readings", "application/json", b"{\"meter_id\":");
    assert_eq!(status, 400, "{resp}");
    assert!(resp.contains("invalid JSON"), "{resp}");
    let (status, _, _) = post(&addr, "/v1/readings", "text/csv", &vec![b'x'; 400_000]);
    assert_eq!(status, 413);

    // Loaded with --delete-missing, a register file is the whole register: M3 leaves it, and
    // its readings from then on are an unregistered meter's.
    let without_m3: String = REGISTRY
        .lines()
        .filter(|l| !l.contains(",M3,"))
        .map(|l| format!("{l}\n"))
        .collect();
    let reg2 = env.dir.join("registry-without-m3.csv");
    std::fs::write(&reg2, without_m3).unwrap();
    let loaded = env.run(&[
        "registry",
        "load",
        "--registry",
        reg2.to_str().unwrap(),
        "--delete-missing",
    ]);
    let loaded = String::from_utf8_lossy(&loaded.stdout).into_owned();
    assert!(
        loaded.contains("1 meters not in the file deleted"),
        "{loaded}"
    );
    // The detector polls the register between batches; give it a moment before M3 speaks again.
    std::thread::sleep(Duration::from_secs(3));
    let later: Vec<String> = (193..=196)
        .map(|i| {
            format!(
                "M3,{},900,{:.4},F1",
                gridwatch_core::time::format_rfc3339(T0 + i * 900),
                household(i) / 4.0
            )
        })
        .collect();
    let body = format!(
        "meter_id,ts,interval_s,kwh,feeder_id\n{}\n",
        later.join("\n")
    );
    let (status, _, resp) = post(&addr, "/v1/readings", "text/csv", body.as_bytes());
    assert_eq!(status, 200, "{resp}");

    // The alerts: every case found, the household and the licensed farm left alone.
    let unregistered_m3 = |rows: &[Value]| {
        rows.iter()
            .any(|a| a["kind"] == "unregistered_meter" && a["meter_id"] == "M3")
    };
    let mut alerts = env.tail("alerts", 5, Duration::from_secs(90));
    for _ in 0..60 {
        if unregistered_m3(&alerts) {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
        alerts = env.tail("alerts", 5, Duration::from_secs(5));
    }
    assert!(
        unregistered_m3(&alerts),
        "M3 deleted from the register: {alerts:#?}"
    );
    let opened: std::collections::BTreeSet<(String, String)> = alerts
        .iter()
        .filter(|a| a["status"] == "open")
        .map(|a| {
            (
                a["kind"].as_str().unwrap().to_string(),
                a["meter_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // The farm is over its permit within hours, then flat around the clock: one case, with
    // both detectors' evidence on it.
    let want: std::collections::BTreeSet<(String, String)> = [
        ("capacity_exceeded", "M1"),
        ("disconnected_consumption", "M2"),
        ("unregistered_meter", "MX"),
        ("unregistered_meter", "M3"),
    ]
    .into_iter()
    .map(|(k, m)| (k.to_string(), m.to_string()))
    .collect();
    assert_eq!(opened, want, "one case per target: {alerts:#?}");
    assert!(
        alerts.iter().all(|a| a["meter_id"] != "M4"
            && (a["meter_id"] != "M3" || a["kind"] == "unregistered_meter")),
        "{alerts:#?}"
    );
    let farm = alerts
        .iter()
        .find(|a| a["evidence"]["detectors"].get("mining_signature").is_some())
        .unwrap_or_else(|| panic!("mining evidence on the farm's case: {alerts:#?}"));
    assert_eq!(farm["site_id"], "S1");
    assert_eq!(farm["feeder_id"], "F1");
    assert!(farm["summary"].as_str().unwrap().contains("residential"));

    // The compacted inspection list holds the latest alert of every case still open.
    let listed = env.run(&["suspects", "--kafka", "--json"]);
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let mut latest: BTreeMap<&str, &Value> = BTreeMap::new();
    for a in &alerts {
        latest.insert(a["alert_id"].as_str().unwrap(), a);
    }
    let mut open_targets: Vec<&str> = latest
        .values()
        .filter(|a| a["status"] != "resolved")
        .map(|a| a["site_id"].as_str().or(a["meter_id"].as_str()).unwrap())
        .collect();
    open_targets.sort_unstable();
    let mut on_topic: Vec<&str> = listed["suspects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["target"].as_str().unwrap())
        .collect();
    on_topic.sort_unstable();
    assert_eq!(on_topic, open_targets, "{listed:#}");
    let first = &listed["suspects"][0];
    assert_eq!(first["target"], "S1", "the farm heads the list: {listed:#}");
    assert!(first["est_excess_mwh"].as_f64().unwrap() > 1.0, "{first}");

    // Every reject is on the DLQ with its reason and source.
    let dlq = env.tail("dlq", 4, Duration::from_secs(30));
    assert_eq!(dlq.len(), 4, "{dlq:#?}");
    assert!(dlq
        .iter()
        .all(|d| d["source"].as_str().unwrap().starts_with("http:")
            && !d["raw"].as_str().unwrap().is_empty()));
    assert!(dlq
        .iter()
        .any(|d| d["reason"].as_str().unwrap().contains("interval_s")));

    // The sink writes them all; on SIGTERM it flushes and exits cleanly.
    settle(|| logged_rows(&sink.log_text()) >= alerts.len());

    // Both services count what they did at /metrics, in Prometheus text: every reading the
    // ingester took reached the detector's count (used, duplicate or late), every alert row
    // the sink's.
    let detector_metrics = env.var("GRIDWATCH__DETECTOR__METRICS_LISTEN").to_string();
    let sink_metrics = env.var("GRIDWATCH__SINK__METRICS_LISTEN").to_string();
    let seen = |text: &str| {
        [
            "gridwatch_readings_total",
            "gridwatch_readings_duplicate_total",
            "gridwatch_readings_late_total",
        ]
        .iter()
        .map(|m| metric(text, m).unwrap_or(0))
        .sum::<u64>()
    };
    wait_until(
        "the detector's metrics to count every reading",
        Duration::from_secs(30),
        || seen(&get_text(&detector_metrics, "/metrics").1) >= accepted,
    );
    let (status, text) = get_text(&detector_metrics, "/metrics");
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("# TYPE gridwatch_readings_total counter"),
        "{text}"
    );
    assert!(
        metric(&text, "gridwatch_alerts_total").unwrap_or(0) >= alerts.len() as u64,
        "{text}"
    );
    // Broken down the way an operator asks: alerts by kind and status, records per topic,
    // the detector's lag per partition, latency histograms.
    let readings_topic = env.var("GRIDWATCH__KAFKA__TOPICS__READINGS");
    for series in [
        "gridwatch_alerts_total{kind=\"disconnected_consumption\",status=\"open\"}".to_string(),
        format!("gridwatch_records_consumed_total{{topic=\"{readings_topic}\"}}"),
        format!("gridwatch_consumer_lag{{topic=\"{readings_topic}\",partition=\"0\"}}"),
        "gridwatch_transaction_duration_seconds_count".to_string(),
        "gridwatch_reading_to_commit_seconds_bucket{le=\"+Inf\"}".to_string(),
    ] {
        assert!(
            metric(&text, &series).is_some(),
            "{series} is not served:\n{text}"
        );
    }
    assert_eq!(
        metric(
            &text,
            &format!("gridwatch_records_consumed_total{{topic=\"{readings_topic}\"}}")
        ),
        Some(seen(&text)),
        "every reading consumed is counted on its topic"
    );
    let (status, text) = get_text(&sink_metrics, "/metrics");
    assert_eq!(status, 200, "{text}");
    assert!(
        metric(&text, "gridwatch_flagged_rows_total").unwrap_or(0) >= alerts.len() as u64,
        "{text}"
    );
    assert!(
        metric(&text, "gridwatch_sink_flush_duration_seconds_count").unwrap_or(0) >= 1,
        "{text}"
    );
    // The ingester serves its own, on its API listener: requests by route and code, rejects
    // by reason class (never a value from the input).
    let (status, text) = get_text(&addr, "/metrics");
    assert_eq!(status, 200, "{text}");
    assert!(
        metric(
            &text,
            "gridwatch_http_requests_total{route=\"/v1/readings\",code=\"200\"}"
        )
        .unwrap_or(0)
            >= 1,
        "{text}"
    );
    assert!(
        metric(
            &text,
            "gridwatch_http_requests_total{route=\"/v1/readings\",code=\"415\"}"
        )
        .unwrap_or(0)
            >= 1,
        "{text}"
    );
    assert!(
        metric(
            &text,
            "gridwatch_records_rejected_total{reason=\"invalid_interval_s\"}"
        )
        .unwrap_or(0)
            >= 1,
        "{text}"
    );
    let ingested = metric(&text, "gridwatch_readings_ingested_total").unwrap_or(0);
    assert!(ingested >= accepted, "{text}");
    let consumed = format!("gridwatch_records_consumed_total{{topic=\"{readings_topic}\"}}");
    wait_until(
        "the detector to consume every reading the ingester took",
        Duration::from_secs(30),
        || metric(&get_text(&detector_metrics, "/metrics").1, &consumed) == Some(ingested),
    );
    assert_eq!(
        get(env.var("GRIDWATCH__DETECTOR__METRICS_LISTEN"), "/healthz"),
        200
    );
    assert!(
        sink.stop(),
        "sink did not stop cleanly:\n{}",
        sink.log_text()
    );
    assert!(
        ingester.stop(),
        "ingester did not stop cleanly:\n{}",
        ingester.log_text()
    );
    assert!(
        detector.stop(),
        "detector did not stop cleanly:\n{}",
        detector.log_text()
    );
    check_rows(&env, &out, &alerts);
}

#[test]
fn embedded_and_kafka_agree_through_kill_9_of_detector_and_sink() {
    let _one_at_a_time = serial();
    let Some(bootstrap) = kafka() else { return };
    let env = Env::new(&bootstrap, "same").with("GRIDWATCH__DETECTOR__BATCH_SIZE", "300");
    let (data, emb, embedded) = simulated(&env, 60, 6, 11);
    let d = data.to_str().unwrap();
    assert!(
        embedded.len() >= 5,
        "the simulated utility should raise alerts: {embedded:#?}"
    );
    let kinds: std::collections::BTreeSet<&str> = embedded
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.len() >= 3, "{kinds:?}");

    // The readings arrive in two halves, with crashes in between.
    let text = std::fs::read_to_string(data.join("readings.csv")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let half = lines.len() / 2;
    let part1 = data.join("part1.csv");
    let part2 = data.join("part2.csv");
    std::fs::write(&part1, format!("{}\n", lines[..half].join("\n"))).unwrap();
    std::fs::write(
        &part2,
        format!("{}\n{}\n", lines[0], lines[half..].join("\n")),
    )
    .unwrap();

    env.run(&[
        "registry",
        "load",
        "--registry",
        &format!("{d}/registry.csv"),
    ]);
    env.run(&["ingest", "--readings", part1.to_str().unwrap()]);
    let out = env.dir.join("kafka-out");
    let o = out.to_str().unwrap();
    let mut sink = env.spawn("sink1", &["sink", "--out", o]);
    let mut detector = env.spawn("detector1", &["detect"]);
    wait_until(
        "alerts from the first half",
        Duration::from_secs(120),
        || !env.tail("alerts", 1, Duration::ZERO).is_empty(),
    );
    std::thread::sleep(Duration::from_secs(2));
    // Crash both with state in memory and files half written, perhaps.
    detector.kill9();
    sink.kill9();
    let partial = env.tail("alerts", 0, Duration::ZERO).len();
    println!(
        "killed the detector and the sink after {partial} of {} alerts",
        embedded.len()
    );
    assert!(
        partial > 0 && partial < embedded.len(),
        "the crash must fall between the first and the last alert"
    );

    env.run(&["ingest", "--readings", part2.to_str().unwrap()]);
    // A second crash at an arbitrary point: while replaying or mid-stream, small transactions.
    let mut detector = env.spawn("detector2", &["detect"]);
    std::thread::sleep(Duration::from_millis(2500));
    detector.kill9();
    let mut detector = env.spawn("detector3", &["detect"]);
    let mut sink = env.spawn("sink2", &["sink", "--out", o]);
    let kafka = env.tail("alerts", embedded.len(), Duration::from_secs(180));
    // Wait a little longer: nothing more (no duplicates) may arrive.
    std::thread::sleep(Duration::from_secs(3));
    let kafka_all = env.tail("alerts", kafka.len(), Duration::ZERO);
    assert_eq!(
        alert_counts(&kafka_all),
        alert_counts(&embedded),
        "Kafka and embedded alerts differ"
    );
    assert!(
        detector.log_text().contains("replaying"),
        "{}",
        detector.log_text()
    );
    let before = std::fs::read_to_string(env.dir.join("sink1.log")).unwrap_or_default();
    settle(|| logged_rows(&before) + logged_rows(&sink.log_text()) >= kafka_all.len());
    assert!(sink.stop(), "{}", sink.log_text());
    assert!(detector.stop(), "{}", detector.log_text());
    check_rows(&env, &out, &kafka_all);
    // And the embedded run's own Arrow output matches its alerts.jsonl.
    check_with_python(&emb.join("flagged"), &emb.join("alerts.jsonl"));
}

/// Issue 24, end to end: a summer utility with rooftop PV (some of it unregistered), MDM
/// estimates whose actuals come up to eight days later, and 2–4 day outages backfilled hours
/// after live reads resume, goes through Kafka in two halves with the detector killed between,
/// and gives the embedded run's alerts id for id. Nothing of it is late: no reject in the
/// embedded run, no DLQ record from the detector; and the detector counted the backfills.
#[test]
fn week_late_backfills_and_estimates_corrected_after_the_horizon_give_the_embedded_alerts() {
    let _one_at_a_time = serial();
    let Some(bootstrap) = kafka() else { return };
    let env = Env::new(&bootstrap, "backfill").with("GRIDWATCH__DETECTOR__BATCH_SIZE", "500");
    let sunbelt = [
        "--summer",
        "--start",
        "2026-07-06T00:00:00Z",
        "--pv",
        "0.25",
        "--estimates",
        "0.05",
        "--outages",
        "0.15",
        "--backfill",
        "0.5",
    ];
    let (data, emb, embedded) = simulated_with(&env, 300, 12, 24, &sunbelt);
    let d = data.to_str().unwrap();
    let text = std::fs::read_to_string(data.join("readings.csv")).unwrap();
    assert!(text.contains(",estimated"), "the head-end sent estimates");
    let rejects = std::fs::read_to_string(emb.join("rejects.jsonl")).unwrap_or_default();
    assert_eq!(rejects.lines().count(), 0, "nothing late: {rejects}");
    assert!(
        embedded
            .iter()
            .any(|a| a["kind"] == "unregistered_generation"),
        "{embedded:#?}"
    );
    let lines: Vec<&str> = text.lines().collect();
    let half = lines.len() / 2;
    let part1 = data.join("part1.csv");
    let part2 = data.join("part2.csv");
    std::fs::write(&part1, format!("{}\n", lines[..half].join("\n"))).unwrap();
    std::fs::write(
        &part2,
        format!("{}\n{}\n", lines[0], lines[half..].join("\n")),
    )
    .unwrap();
    env.run(&[
        "registry",
        "load",
        "--registry",
        &format!("{d}/registry.csv"),
    ]);
    env.run(&["ingest", "--readings", part1.to_str().unwrap()]);
    let mut detector = env.spawn("detector1", &["detect"]);
    wait_until(
        "alerts from the first half",
        Duration::from_secs(120),
        || !env.tail("alerts", 1, Duration::ZERO).is_empty(),
    );
    detector.kill9();
    env.run(&["ingest", "--readings", part2.to_str().unwrap()]);
    let mut detector = env.spawn("detector2", &["detect"]);
    let kafka = env.tail("alerts", embedded.len(), Duration::from_secs(240));
    std::thread::sleep(Duration::from_secs(3));
    let kafka_all = env.tail("alerts", kafka.len(), Duration::ZERO);
    assert_eq!(
        alert_ids(&kafka_all),
        alert_ids(&embedded),
        "Kafka and embedded differ"
    );
    assert!(
        env.tail("dlq", 0, Duration::from_secs(2)).is_empty(),
        "nothing dead-lettered"
    );
    let addr = env.var("GRIDWATCH__DETECTOR__METRICS_LISTEN");
    let body = get_text(addr, "/metrics").1;
    assert!(
        metric(&body, "gridwatch_readings_backfilled_total").is_some_and(|n| n > 0),
        "{body}"
    );
    assert!(detector.stop(), "{}", detector.log_text());
}

/// The order window's price and promise, end to end: with `detector.order_window_s` at the
/// horizon, the readings delivered in another order — each meter's moved by its own ~0–12 hours
/// — through Kafka, with the detector killed between two halves and restored from a checkpoint
/// that carries the held readings, give the embedded run's alerts on the file as simulated,
/// word for word. A last reading per feeder from a meter of its own
/// (`TICK-…`), days past the window, releases what the window holds: a stream never ends, so
/// the detector judges a reading once the stream is the window past it.
#[test]
fn in_event_order_another_delivery_order_through_kafka_gives_the_embedded_alerts_word_for_word() {
    let _one_at_a_time = serial();
    let Some(bootstrap) = kafka() else { return };
    let env = Env::new(&bootstrap, "order")
        .with("GRIDWATCH__DETECTOR__BATCH_SIZE", "300")
        .with("GRIDWATCH__DETECTOR__ORDER_WINDOW_S", "172800")
        .with("GRIDWATCH__DETECTOR__CHECKPOINT_INTERVAL_S", "1");
    let data = env.dir.join("data");
    let d = data.to_str().unwrap();
    env.run(&[
        "simulate",
        "--out",
        d,
        "--sites",
        "120",
        "--days",
        "7",
        "--seed",
        "9",
        "--winter",
        "--batched",
        "0.3",
    ]);
    let text = std::fs::read_to_string(data.join("readings.csv")).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    let header = lines.remove(0);
    assert!(
        header.starts_with("meter_id,ts,interval_s,kwh,feeder_id,"),
        "{header}"
    );
    let columns = header.split(',').count();
    let feeders: std::collections::BTreeSet<&str> =
        lines.iter().filter_map(|l| l.split(',').nth(4)).collect();
    let ticks: Vec<String> = feeders
        .iter()
        .map(|f| {
            format!(
                "TICK-{f},2026-01-20T00:00:00Z,900,0.1,{f}{}",
                ",".repeat(columns - 5)
            )
        })
        .collect();
    // ~490 lines an hour: a meter moved by up to 5,900 lines arrives up to ~12 h late.
    let meter_hash = |l: &str| {
        l.split(',')
            .next()
            .unwrap()
            .bytes()
            .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
    };
    let mut moved: Vec<(usize, &str)> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| (i + (meter_hash(l) % 5900) as usize, *l))
        .collect();
    moved.sort_by_key(|&(at, _)| at);
    assert_ne!(
        moved.iter().map(|(_, l)| *l).collect::<Vec<_>>(),
        lines,
        "the delivery order must differ"
    );
    let file = |name: &str, rows: &[&str], with_ticks: bool| {
        let path = data.join(name);
        let ticks = ticks.iter().map(String::as_str).filter(|_| with_ticks);
        let body: Vec<&str> = std::iter::once(header)
            .chain(rows.iter().copied())
            .chain(ticks)
            .collect();
        std::fs::write(&path, format!("{}\n", body.join("\n"))).unwrap();
        path
    };
    let as_simulated = file("as-simulated.csv", &lines, true);
    let emb = env.dir.join("embedded");
    // The analysts' flag gives the window the detector runs with (the horizon).
    env.clone()
        .with("GRIDWATCH__DETECTOR__ORDER_WINDOW_S", "0")
        .run(&[
            "run",
            "--registry",
            &format!("{d}/registry.csv"),
            "--readings",
            as_simulated.to_str().unwrap(),
            "--out",
            emb.to_str().unwrap(),
            "--in-event-order",
            "--quiet",
        ]);
    let words = |alerts: &[Value]| -> Vec<String> {
        let mut w: Vec<String> = alerts
            .iter()
            .filter(|a| !a["meter_id"].as_str().unwrap_or("").starts_with("TICK-"))
            .map(|a| a.to_string())
            .collect();
        w.sort();
        w
    };
    let embedded: Vec<Value> = alerts_in(&emb);
    let want = words(&embedded);
    assert!(
        want.len() >= 5,
        "the simulated utility should raise alerts: {want:#?}"
    );

    let moved: Vec<&str> = moved.into_iter().map(|(_, l)| l).collect();
    // Without the window, this delivery order moves some alerts (a winter, daily batches: the
    // season and the peers read other meters' hours as they stand).
    let unordered = env.dir.join("unordered");
    env.clone()
        .with("GRIDWATCH__DETECTOR__ORDER_WINDOW_S", "0")
        .run(&[
            "run",
            "--registry",
            &format!("{d}/registry.csv"),
            "--readings",
            file("moved-all.csv", &moved, true).to_str().unwrap(),
            "--out",
            unordered.to_str().unwrap(),
            "--quiet",
        ]);
    let unordered: Vec<Value> = alerts_in(&unordered);
    assert_ne!(
        words(&unordered),
        want,
        "the order must matter without the window"
    );
    let half = moved.len() / 2;
    // The ticks come last, with the second half.
    let part1 = file("moved-1.csv", &moved[..half], false);
    let part2 = file("moved-2.csv", &moved[half..], true);
    env.run(&[
        "registry",
        "load",
        "--registry",
        &format!("{d}/registry.csv"),
    ]);
    env.run(&["ingest", "--readings", part1.to_str().unwrap()]);
    let mut detector = env.spawn("detector1", &["detect"]);
    wait_until(
        "alerts from the first half",
        Duration::from_secs(120),
        || !env.tail("alerts", 1, Duration::ZERO).is_empty(),
    );
    std::thread::sleep(Duration::from_secs(2));
    detector.kill9();
    env.run(&["ingest", "--readings", part2.to_str().unwrap()]);
    let mut detector = env.spawn("detector2", &["detect"]);
    let kafka = env.tail("alerts", want.len(), Duration::from_secs(180));
    std::thread::sleep(Duration::from_secs(3));
    let kafka_all = env.tail("alerts", kafka.len(), Duration::ZERO);
    // The window holds the ticks, and nothing else: they are days past every reading.
    let (_, text) = get_text(env.var("GRIDWATCH__DETECTOR__METRICS_LISTEN"), "/metrics");
    let held = metric(&text, "gridwatch_readings_held");
    assert_eq!(held, Some(ticks.len() as u64), "{text}");
    assert!(detector.stop(), "{}", detector.log_text());
    // The checkpoint it came back from carried the readings the window held.
    let log = detector.log_text();
    assert!(log.contains("state restored"), "{log}");
    let got = words(&kafka_all);
    let missing: Vec<&String> = want.iter().filter(|a| !got.contains(a)).collect();
    let extra: Vec<&String> = got.iter().filter(|a| !want.contains(a)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} of the embedded alerts missing, {} new:\nmissing {missing:#?}\nnew {extra:#?}",
        missing.len(),
        extra.len()
    );
}

#[test]
fn one_two_and_three_detectors_in_a_group_give_the_alerts_of_the_embedded_run() {
    let _one_at_a_time = serial();
    let Some(bootstrap) = kafka() else { return };
    // Six partitions, so three instances hold two each; the embedded run keeps six engines too.
    let env = Env::new(&bootstrap, "group")
        .with("GRIDWATCH__KAFKA__PARTITIONS", "6")
        .with("GRIDWATCH__DETECTOR__BATCH_SIZE", "500");
    let (data, _, embedded) = simulated(&env, 240, 4, 12);
    let d = data.to_str().unwrap();
    assert!(embedded.len() >= 10, "{embedded:#?}");

    let text = std::fs::read_to_string(data.join("readings.csv")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let third = lines.len() / 3;
    let parts: Vec<PathBuf> = (0..3)
        .map(|i| {
            let path = data.join(format!("part{i}.csv"));
            let end = if i == 2 { lines.len() } else { (i + 1) * third };
            let body = lines[(i * third).max(1)..end].join("\n");
            std::fs::write(&path, format!("{}\n{body}\n", lines[0])).unwrap();
            path
        })
        .collect();
    env.run(&[
        "registry",
        "load",
        "--registry",
        &format!("{d}/registry.csv"),
    ]);
    env.run(&["ingest", "--readings", parts[0].to_str().unwrap()]);
    let out = env.dir.join("kafka-out");
    let o = out.to_str().unwrap();
    let (a, b, c) = (
        instance(&env, "a"),
        instance(&env, "b"),
        instance(&env, "c"),
    );
    // One detector and one sink, then a second of each joins mid-stream, then a third detector;
    // the second detector is killed and comes back under its name.
    let mut sink_a = a.spawn("sink-a", &["sink", "--out", o]);
    let mut det_a = a.spawn("detector-a", &["detect"]);
    wait_until("alerts from one detector", Duration::from_secs(120), || {
        !env.tail("alerts", 1, Duration::ZERO).is_empty()
    });
    let mut sink_b = b.spawn("sink-b", &["sink", "--out", o]);
    let det_b = b.spawn("detector-b", &["detect"]);
    env.run(&["ingest", "--readings", parts[1].to_str().unwrap()]);
    let mut det_c = c.spawn("detector-c", &["detect"]);
    // An instance that was handed partitions logs them: "partitions assigned partitions=[4, 1]".
    let holds = |s: &gridwatch_e2e::Service| {
        s.log_text()
            .lines()
            .any(|l| l.contains("partitions assigned") && !l.contains("partitions=[]"))
    };
    wait_until(
        "three detectors share the partitions",
        Duration::from_secs(60),
        || holds(&det_b) && holds(&det_c),
    );
    let mut det_b = det_b;
    det_b.kill9();
    env.run(&["ingest", "--readings", parts[2].to_str().unwrap()]);
    let mut det_b = b.spawn("detector-b2", &["detect"]);
    let kafka = env.tail("alerts", embedded.len(), Duration::from_secs(240));
    std::thread::sleep(Duration::from_secs(3));
    let kafka_all = env.tail("alerts", kafka.len(), Duration::ZERO);
    assert_eq!(
        alert_counts(&kafka_all),
        alert_counts(&embedded),
        "three detectors, joining and crashing, differ from the embedded run"
    );
    assert_eq!(
        alert_ids(&kafka_all),
        alert_ids(&embedded),
        "the same alerts, id for id"
    );
    // The restarted instance took its partitions back under its name.
    assert!(holds(&det_b), "{}", det_b.log_text());
    let logs = || {
        [&sink_a, &sink_b]
            .iter()
            .map(|s| logged_rows(&s.log_text()))
            .sum::<usize>()
    };
    settle(|| logs() >= kafka_all.len());
    for s in [&mut det_a, &mut det_b, &mut det_c, &mut sink_a, &mut sink_b] {
        assert!(s.stop(), "{}", s.log_text());
    }
    check_rows(&env, &out, &kafka_all);
}

#[test]
fn partitions_added_to_the_readings_topic_are_picked_up_by_a_running_detector() {
    let _one_at_a_time = serial();
    let Some(bootstrap) = kafka() else { return };
    let env = Env::new(&bootstrap, "grow")
        .with("GRIDWATCH__KAFKA__PARTITIONS", "2")
        // The group notices new partitions at its next metadata refresh (5 min by default).
        .with(
            "GRIDWATCH__KAFKA__PROPERTIES__TOPIC_METADATA_REFRESH_INTERVAL_MS",
            "2000",
        );
    let dir = env.dir.clone();
    std::fs::write(dir.join("registry.csv"), REGISTRY).unwrap();
    env.run(&["topics", "create"]);
    env.run(&[
        "registry",
        "load",
        "--registry",
        dir.join("registry.csv").to_str().unwrap(),
    ]);
    let mut detector = env.spawn("detector", &["detect"]);
    wait_until(
        "the detector holds both partitions",
        Duration::from_secs(60),
        || {
            detector
                .log_text()
                .contains("partitions assigned partitions=[0, 1]")
        },
    );
    let topic = env.var("GRIDWATCH__KAFKA__TOPICS__READINGS").to_string();
    let libs = repo_root().join("deploy/kafka/libs");
    let out = Command::new("java")
        .arg("-cp")
        .arg(format!("{}/*", libs.display()))
        .args([
            "org.apache.kafka.tools.TopicCommand",
            "--alter",
            "--topic",
            &topic,
        ])
        .args(["--partitions", "4", "--bootstrap-server", &bootstrap])
        .output()
        .expect("java runs Kafka's topic command");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A meter nobody registered, whose readings land on one of the new partitions.
    let meter = (0..)
        .map(|i| format!("ROGUE{i}"))
        .find(|m| gridwatch_core::partition::partition_for(m.as_bytes(), 4) >= 2)
        .unwrap();
    wait_until(
        "the detector takes the new partitions",
        Duration::from_secs(60),
        || {
            detector
                .log_text()
                .lines()
                .any(|l| l.contains("partitions assigned") && l.contains('2') && l.contains('3'))
        },
    );
    // Without feeder_id, so keyed (and partitioned) by the meter.
    let lines: Vec<String> = (1..=8)
        .map(|i| {
            let ts = gridwatch_core::time::format_rfc3339(T0 + i * 900);
            format!("{meter},{ts},900,0.5")
        })
        .collect();
    let readings = dir.join("rogue.csv");
    std::fs::write(
        &readings,
        format!("meter_id,ts,interval_s,kwh\n{}\n", lines.join("\n")),
    )
    .unwrap();
    env.run(&["ingest", "--readings", readings.to_str().unwrap()]);
    let alerts = env.tail("alerts", 1, Duration::from_secs(60));
    assert!(
        alerts
            .iter()
            .any(|a| a["kind"] == "unregistered_meter" && a["meter_id"] == meter.as_str()),
        "no alert for {meter} on a new partition: {alerts:?}\n{}",
        detector.log_text()
    );
    assert!(detector.stop(), "{}", detector.log_text());
}

#[test]
fn demo_finds_every_hidden_case_and_no_false_alert() {
    let dir = std::env::temp_dir().join(format!("gridwatch-demo-{}", std::process::id()));
    let out = Command::new(gridwatch_e2e::bin())
        .args(["demo", "--out", dir.to_str().unwrap()])
        .output()
        .expect("the demo runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("Found 8 of 8 hidden cases."), "{text}");
    assert!(text.contains("No false alerts"), "{text}");
    // The inspection list heads with a farm: the most unauthorized energy.
    let first = text
        .lines()
        .skip_while(|l| !l.starts_with("Inspectors:"))
        .nth(1)
        .unwrap_or_else(|| panic!("no inspection list: {text}"));
    assert!(first.trim_start().starts_with("1. S000"), "{first}");
    check_with_python(&dir.join("flagged"), &dir.join("alerts.jsonl"));
}

/// Records written to the readings topic past the ingester — a broken producer, a replayed
/// export, anyone with write access — are validated again by the detector: the invalid ones
/// reach the DLQ with the reason and their place on the topic, and the valid ones are used.
#[test]
fn detector_revalidates_what_it_consumes_and_dead_letters_the_invalid() {
    let _one_at_a_time = serial();
    let Some(bootstrap) = kafka() else { return };
    let env = Env::new(&bootstrap, "revalidate");
    let reg = env.dir.join("registry.csv");
    std::fs::write(&reg, REGISTRY).unwrap();
    env.run(&["registry", "load", "--registry", reg.to_str().unwrap()]);
    env.run(&["topics", "create"]);
    let mut detector = env.spawn("detector", &["detect"]);
    let topic = env.var("GRIDWATCH__KAFKA__TOPICS__READINGS").to_string();
    // A 900 KB record first: its DLQ copy is cut to 16 KiB, so the transaction carrying it fits
    // Kafka's message size and the detector carries on to the records after it.
    let huge = format!(
        r#"{{"meter_id":"{}","ts":"2026-01-05T00:15:00Z","interval_s":900,"kwh":1}}"#,
        "Z".repeat(900_000)
    );
    env.produce_raw(
        &topic,
        &[
            &huge,
            // A field this version doesn't know: ignored, the reading used.
            r#"{"meter_id":"MX","ts":"2026-01-05T00:15:00Z","interval_s":900,"kwh":1.5,"firmware":"4.2"}"#,
            r#"{"meter_id":"M1","ts":"2026-01-05T00:15:00Z","interval_s":900,"kwh":-2.0}"#,
            r#"{"meter_id":"M1","ts":"2026-01-05T00:30:00Z","interval_s":0,"kwh":0.2}"#,
            r#"{"meter_id":"M1","ts":"2026-01-05T00:45:00Z","interval_s":900,"kwh":1e9}"#,
            "not json at all",
            // Far ahead of the time it was written: would make M1's genuine readings late.
            r#"{"meter_id":"M1","ts":"2031-06-01T00:15:00Z","interval_s":900,"kwh":0.1}"#,
        ],
    );
    let dlq = env.tail("dlq", 6, Duration::from_secs(60));
    let reasons: Vec<&str> = dlq.iter().map(|d| d["reason"].as_str().unwrap()).collect();
    assert_eq!(dlq.len(), 6, "{reasons:#?}\n{}", detector.log_text());
    let cut = dlq
        .iter()
        .find(|d| {
            d["raw"]
                .as_str()
                .unwrap()
                .starts_with("{\"meter_id\":\"ZZZ")
        })
        .expect("the huge record is on the DLQ");
    assert!(cut["raw"].as_str().unwrap().len() <= 16 * 1024);
    let reason = cut["reason"].as_str().unwrap();
    assert!(
        reason.len() < 500,
        "the reason quotes the id in part: {reason:.300}"
    );
    assert!(
        reason.contains("field meter_id") && reason.contains("of 900068 bytes"),
        "{reason}"
    );
    for (want, raw) in [
        ("field kwh: -2 is negative", "-2.0"),
        ("field interval_s", "\"interval_s\":0"),
        ("field kwh: 1000000000 kWh", "1e9"),
        ("not a valid reading", "not json at all"),
        (
            "field ts: 2031-06-01T00:15:00Z is in the future",
            "2031-06-01",
        ),
    ] {
        let d = dlq
            .iter()
            .find(|d| d["raw"].as_str().unwrap().contains(raw))
            .unwrap_or_else(|| panic!("{raw} not on the DLQ: {dlq:#?}"));
        let reason = d["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("detector: not a valid reading"),
            "{reason}"
        );
        assert!(reason.contains(want), "{reason} lacks {want}");
        assert!(
            d["source"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{topic}/")),
            "{d}"
        );
    }
    assert!(reasons.iter().all(|r| !r.contains("MX")), "{reasons:?}");
    // The valid one was used: an unregistered meter, named within its first reading.
    let alerts = env.tail("alerts", 1, Duration::from_secs(60));
    assert!(
        alerts
            .iter()
            .any(|a| a["kind"] == "unregistered_meter" && a["meter_id"] == "MX"),
        "{alerts:#?}"
    );
    assert!(detector.stop(), "{}", detector.log_text());
}

/// Two heated homes through a cold snap, one with rigs: the weather loaded to its compacted
/// topic reaches the detector, which then clears the home whose demand follows the cold, as
/// `gridwatch run --weather` does; without the weather both look like rigs. The holidays
/// topic is read the same way.
#[test]
fn weather_and_holidays_loaded_to_kafka_reach_the_detector_as_in_the_embedded_run() {
    let _one_at_a_time = serial();
    let Some(bootstrap) = kafka() else { return };
    let env = Env::new(&bootstrap, "weather");
    let dir = &env.dir;
    let registry = dir.join("registry.csv");
    std::fs::write(
        &registry,
        "site_id,meter_id,feeder_id,role,customer_class,permitted_kw,status,licensed_mining,lat,lon,region\n\
         S1,M1,F1,customer,residential,25,active,false,52.3,77.0,Pavlodar\n\
         S2,M2,F1,customer,residential,25,active,false,52.3,77.1,Pavlodar\n",
    )
    .unwrap();
    // Heating degrees by day: a mild week's start, then a snap.
    let degrees = [8.0, 12.0, 9.0, 13.0, 34.0, 40.0, 40.0, 38.0, 30.0, 22.0];
    let mut weather = String::from("region,ts,temp_c\n");
    for h in 1..=degrees.len() as i64 * 24 {
        let t = 16.0 - degrees[(h as usize - 1) / 24];
        let ts = gridwatch_core::time::format_rfc3339(T0 + h * 3600);
        writeln!(weather, "Pavlodar,{ts},{t}").unwrap();
    }
    let weather_csv = dir.join("weather.csv");
    std::fs::write(&weather_csv, weather).unwrap();
    let mut readings = String::from("meter_id,ts,interval_s,kwh,feeder_id\n");
    for i in 1..=degrees.len() as i64 * 96 {
        let heating = 0.3 * degrees[(i as usize - 1) / 96];
        for (meter, rigs) in [("M1", 0.0), ("M2", if i > 2 * 96 { 6.0 } else { 0.0 })] {
            let kw = household(i) + heating + rigs;
            let ts = gridwatch_core::time::format_rfc3339(T0 + i * 900);
            writeln!(readings, "{meter},{ts},900,{:.4},F1", kw / 4.0).unwrap();
        }
    }
    let readings_csv = dir.join("readings.csv");
    std::fs::write(&readings_csv, readings).unwrap();
    let (r, w, rd) = (
        registry.to_str().unwrap(),
        weather_csv.to_str().unwrap(),
        readings_csv.to_str().unwrap(),
    );
    let embedded = |name: &str, extra: &[&str]| -> Vec<Value> {
        let out = dir.join(name);
        let o = out.to_str().unwrap();
        let mut args = vec![
            "run",
            "--registry",
            r,
            "--readings",
            rd,
            "--out",
            o,
            "--quiet",
        ];
        args.extend_from_slice(extra);
        env.run(&args);
        alerts_in(&out)
    };
    let sites = |alerts: &[Value]| -> std::collections::BTreeSet<String> {
        alerts
            .iter()
            .filter(|a| a["kind"] == "mining_signature")
            .map(|a| a["site_id"].as_str().unwrap().to_string())
            .collect()
    };
    let blind = embedded("blind", &[]);
    assert_eq!(sites(&blind), ["S1", "S2"].map(String::from).into());
    let seen = embedded("seen", &["--weather", w]);
    assert_eq!(sites(&seen), ["S2"].map(String::from).into());

    env.run(&["registry", "load", "--registry", r]);
    let loaded = env.run(&["weather", "load", "--weather", w]);
    assert!(
        String::from_utf8_lossy(&loaded.stdout).contains("240 region-hours loaded"),
        "{loaded:?}"
    );
    // A holiday in the region on a day the homes don't care about: the calendar's path
    // through its topic (a refused file publishes nothing).
    let holidays_csv = dir.join("holidays.csv");
    std::fs::write(
        &holidays_csv,
        "region,date,name\nPavlodar,2026-01-07,Orthodox Christmas\n",
    )
    .unwrap();
    let loaded = env.run(&[
        "holidays",
        "load",
        "--holidays",
        holidays_csv.to_str().unwrap(),
    ]);
    assert!(
        String::from_utf8_lossy(&loaded.stdout).contains("1 holidays loaded"),
        "{loaded:?}"
    );
    env.run(&["ingest", "--readings", rd]);
    let mut detector = env.spawn("detector", &["detect"]);
    let kafka = env.tail("alerts", seen.len(), Duration::from_secs(120));
    std::thread::sleep(Duration::from_secs(3));
    let kafka_all = env.tail("alerts", kafka.len(), Duration::ZERO);
    assert!(detector.stop(), "{}", detector.log_text());
    // Logs to a file carry no terminal colours.
    let log = detector.log_text();
    assert!(!log.contains('\u{1b}'), "{log}");
    assert!(
        log.contains("weather, holidays and outcomes read hours=240 days=1"),
        "{log}"
    );
    // Reading compacted topics to their ends and idling at them are normal: nothing at ERROR.
    assert!(!log.contains("ERROR"), "{log}");
    assert_eq!(alert_counts(&kafka_all), alert_counts(&seen));
}

/// Also: a register change loaded while the detector is down takes effect at its
/// `effective_from` in the replay, as in the embedded run given the register's history.
#[test]
fn a_killed_detector_s_partitions_restore_from_the_state_topic_on_an_empty_disk_and_replay_only_since(
) {
    let _one_at_a_time = serial();
    let Some(bootstrap) = kafka() else { return };
    let metrics = format!("127.0.0.1:{}", free_port());
    let env = Env::new(&bootstrap, "checkpoint")
        .with("GRIDWATCH__DETECTOR__CHECKPOINT_INTERVAL_S", "1")
        .with("GRIDWATCH__DETECTOR__BATCH_SIZE", "2000")
        .with("GRIDWATCH__DETECTOR__METRICS_LISTEN", &metrics);
    let data = env.dir.join("data");
    let d = data.to_str().unwrap();
    env.run(&[
        "simulate", "--out", d, "--sites", "60", "--days", "6", "--seed", "12",
    ]);
    let text = std::fs::read_to_string(data.join("readings.csv")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let half = lines.len() / 2;
    // The first active customer is disconnected from three quarters of the way through.
    let meter = active_customers(&data.join("registry.csv"), 1).remove(0);
    let at = lines[lines.len() * 3 / 4].split(',').nth(1).unwrap();
    let change = register_changes(&data.join("registry.csv"), &[(&meter, at)], &data).remove(0);
    let history = data.join("history.csv");
    let emb = env.dir.join("embedded");
    env.run(&[
        "run",
        "--registry",
        history.to_str().unwrap(),
        "--readings",
        &format!("{d}/readings.csv"),
        "--out",
        emb.to_str().unwrap(),
        "--quiet",
    ]);
    let embedded: Vec<Value> = alerts_in(&emb);
    let at = gridwatch_core::time::parse_rfc3339(at).unwrap();
    let opened = disconnected_at(&embedded, &meter);
    assert!(
        opened.len() == 1 && opened[0] >= at && opened[0] < at + 3600,
        "{meter} disconnected at {at}: {opened:?}"
    );
    let part1 = data.join("part1.csv");
    let part2 = data.join("part2.csv");
    std::fs::write(&part1, format!("{}\n", lines[..half].join("\n"))).unwrap();
    std::fs::write(
        &part2,
        format!("{}\n{}\n", lines[0], lines[half..].join("\n")),
    )
    .unwrap();
    env.run(&[
        "registry",
        "load",
        "--registry",
        &format!("{d}/registry.csv"),
    ]);
    env.run(&["ingest", "--readings", part1.to_str().unwrap()]);

    let replayed = |body: &str| metric(body, "gridwatch_readings_replayed_total").unwrap_or(0);
    let mut detector = env.spawn("detector1", &["detect"]);
    // Wait for snapshots that cover the whole first half, then crash.
    wait_until(
        "snapshots of the first half",
        Duration::from_secs(120),
        || {
            let (_, body) = get_text(&metrics, "/metrics");
            let counted = metric(&body, "gridwatch_readings_total").unwrap_or(0)
                + metric(&body, "gridwatch_readings_duplicate_total").unwrap_or(0);
            counted >= (half - 1) as u64
                && metric(&body, "gridwatch_state_bytes_written_total").unwrap_or(0) > 0
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    detector.kill9();
    env.run(&["registry", "load", "--registry", change.to_str().unwrap()]);
    env.run(&["ingest", "--readings", part2.to_str().unwrap()]);
    // Another host: an empty state directory. The state comes from Kafka alone.
    let host2 = env.dir.join("host2-state");
    let env2 = env
        .clone()
        .with("GRIDWATCH__DETECTOR__STATE_DIR", host2.to_str().unwrap());
    let mut detector = env2.spawn("detector2", &["detect"]);
    wait_until(
        "the detector on another host is ready",
        Duration::from_secs(120),
        || get(&metrics, "/readyz") == 200,
    );
    let kafka = env.tail("alerts", embedded.len(), Duration::from_secs(180));
    std::thread::sleep(Duration::from_secs(3));
    let kafka_all = env.tail("alerts", kafka.len(), Duration::ZERO);
    assert_eq!(
        alert_counts(&kafka_all),
        alert_counts(&embedded),
        "Kafka (through a restore from the state topic) and embedded alerts differ"
    );
    assert_eq!(
        disconnected_at(&kafka_all, &meter),
        opened,
        "the change took effect elsewhere"
    );
    let log = detector.log_text();
    assert!(
        log.contains("state restored") && log.contains("from=\"kafka\""),
        "{log}"
    );
    let (_, body) = get_text(&metrics, "/metrics");
    assert!(
        replayed(&body) < (half / 10) as u64,
        "a partition restored from the state topic replays only what came after its snapshot, \
         not the {half} readings before: replayed {}",
        replayed(&body)
    );
    assert!(
        body.contains("gridwatch_state_restore_seconds_count"),
        "{body}"
    );
    // A clean stop commits a last snapshot of every partition: nothing is left to replay.
    assert!(detector.stop(), "{}", detector.log_text());
    let inspect = String::from_utf8(env.run(&["state", "inspect"]).stdout).unwrap();
    let rows: Vec<&str> = inspect
        .lines()
        .filter(|l| l.starts_with("partition="))
        .collect();
    assert_eq!(rows.len(), 3, "{inspect}");
    // The partitions with readings (a utility this small has one feeder, so one partition).
    let busy: Vec<&str> = rows
        .iter()
        .copied()
        .filter(|r| !r.contains(" committed=0 "))
        .collect();
    assert!(!busy.is_empty(), "{inspect}");
    for row in &busy {
        assert!(
            row.contains(" replay=0 ") && row.contains("format=record:1,engine:"),
            "{inspect}"
        );
    }
    let p = busy[0]
        .split_whitespace()
        .next()
        .and_then(|f| f.strip_prefix("partition="))
        .unwrap()
        .to_string();

    // The same host again: its file is the snapshot the commit names, used as a cache.
    let mut detector = env2.spawn("detector3", &["detect"]);
    wait_until("the restart", Duration::from_secs(120), || {
        get(&metrics, "/readyz") == 200
    });
    assert!(detector.stop(), "{}", detector.log_text());
    let log = detector.log_text();
    assert!(
        log.contains("from=\"file\"") && !log.contains("from=\"kafka\""),
        "{log}"
    );

    // Other detector settings: the snapshot is refused and the state rebuilt from every
    // retained reading, saying why.
    let env3 = env2
        .clone()
        .with("GRIDWATCH__DETECTOR__LATENESS_HORIZON_S", "86400");
    let mut detector = env3.spawn("detector4", &["detect"]);
    wait_until("the full replay", Duration::from_secs(120), || {
        get(&metrics, "/readyz") == 200
    });
    let log = detector.log_text();
    assert!(
        log.contains("saved state not used") && log.contains("settings"),
        "{log}"
    );
    let (_, body) = get_text(&metrics, "/metrics");
    assert!(
        replayed(&body) >= (lines.len() - 2) as u64 * 9 / 10,
        "replayed {} of {}",
        replayed(&body),
        lines.len() - 1
    );
    assert!(detector.stop(), "{}", detector.log_text());

    // An operator forgets partition p's state: no snapshot is named any more, and the next
    // detector rebuilds that partition from every retained reading, the alerts unchanged.
    let reset = env.output(&["state", "reset", "--partition", &p]);
    assert!(
        !reset.status.success(),
        "asks first, and refuses without a terminal"
    );
    // A stopped static member stays in the group for its session timeout: refused until then.
    let mut out = String::new();
    wait_until(
        "the group empty for a reset",
        Duration::from_secs(120),
        || {
            let o = env.output(&["state", "reset", "--partition", &p, "--yes"]);
            out = String::from_utf8_lossy(&o.stdout).into_owned();
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(o.status.success() || err.contains("member(s)"), "{err}");
            o.status.success()
        },
    );
    assert!(out.contains("forgotten"), "{out}");
    let inspect = String::from_utf8(env.run(&["state", "inspect"]).stdout).unwrap();
    assert!(
        inspect.contains("partition=0 ")
            && inspect
                .lines()
                .any(|l| l.starts_with("partition=0 ") && l.contains("snapshot=none")),
        "{inspect}"
    );
    let mut detector = env2.spawn("detector5", &["detect"]);
    wait_until("the rebuild", Duration::from_secs(120), || {
        get(&metrics, "/readyz") == 200
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(detector.stop(), "{}", detector.log_text());
    let log = detector.log_text();
    assert!(log.contains("no state saved for this partition"), "{log}");
    let after = env.tail("alerts", kafka_all.len(), Duration::ZERO);
    assert_eq!(
        alert_counts(&after),
        alert_counts(&embedded),
        "a reset partition's rebuild said something again"
    );
}

#[test]
fn a_state_record_of_another_format_is_replaced_by_a_replay_never_a_crash() {
    let _one_at_a_time = serial();
    let Some(bootstrap) = kafka() else { return };
    let env = Env::new(&bootstrap, "state-format");
    let (data, _, embedded) = simulated(&env, 60, 4, 21);
    topics_and_register(&env, &data);
    let parts = readings_in_parts(&data, 2);
    env.run(&["ingest", "--readings", parts[0].to_str().unwrap()]);
    // A release with another record layout saves the state and stops cleanly.
    let newer = env.clone().with("GRIDWATCH_TEST_STATE_FORMAT", "99");
    let mut detector = newer.spawn("newer", &["detect"]);
    let metrics = env.var("GRIDWATCH__DETECTOR__METRICS_LISTEN").to_string();
    wait_until("the first half judged", Duration::from_secs(120), || {
        get(&metrics, "/readyz") == 200 && {
            let (_, body) = get_text(&metrics, "/metrics");
            metric(&body, "gridwatch_consumer_lag").unwrap_or(1) == 0
                && metric(&body, "gridwatch_readings_total").unwrap_or(0) > 0
        }
    });
    assert!(detector.stop(), "{}", detector.log_text());
    let inspect = String::from_utf8(env.run(&["state", "inspect"]).stdout).unwrap();
    assert!(inspect.contains("format=record:99"), "{inspect}");
    env.run(&["ingest", "--readings", parts[1].to_str().unwrap()]);
    // This release on another host: the snapshot is refused, saying why, and the partition is
    // rebuilt from every retained reading; the alerts are those of the embedded run.
    let host2 = env.dir.join("host2");
    let this = env
        .clone()
        .with("GRIDWATCH__DETECTOR__STATE_DIR", host2.to_str().unwrap());
    let mut detector = this.spawn("this", &["detect"]);
    let kafka = env.tail("alerts", embedded.len(), Duration::from_secs(180));
    std::thread::sleep(Duration::from_secs(3));
    let kafka_all = env.tail("alerts", kafka.len(), Duration::ZERO);
    assert!(detector.alive(), "{}", detector.log_text());
    assert!(detector.stop(), "{}", detector.log_text());
    let log = detector.log_text();
    assert!(
        log.contains("saved state not used") && log.contains("state record format 99"),
        "{log}"
    );
    assert_eq!(
        alert_counts(&kafka_all),
        alert_counts(&embedded),
        "after a refused snapshot"
    );
    assert_eq!(alert_ids(&kafka_all).len(), alert_ids(&embedded).len());
}

#[test]
fn topics_are_created_with_the_configured_retention_and_min_insync_replicas() {
    let _one_at_a_time = serial();
    let Some(bootstrap) = kafka() else { return };
    let env = Env::new(&bootstrap, "topiccfg")
        .with("GRIDWATCH__KAFKA__RETENTION_S", "7200")
        .with("GRIDWATCH__KAFKA__MIN_INSYNC_REPLICAS", "1");
    let out = env.run(&["topics", "create"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("retention 2 h") && said.contains("min.insync.replicas 1"),
        "{said}"
    );
    let describe = |topic: &str| {
        let out = Command::new("java")
            .arg("-cp")
            .arg(format!(
                "{}/*",
                repo_root().join("deploy/kafka/libs").display()
            ))
            .args([
                "org.apache.kafka.tools.TopicCommand",
                "--describe",
                "--topic",
                topic,
            ])
            .args(["--bootstrap-server", &bootstrap])
            .output()
            .expect("java runs Kafka's TopicCommand");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let readings = describe(env.var("GRIDWATCH__KAFKA__TOPICS__READINGS"));
    assert!(
        readings.contains("retention.ms=7200000") && readings.contains("min.insync.replicas=1"),
        "{readings}"
    );
    let registry = describe(env.var("GRIDWATCH__KAFKA__TOPICS__REGISTRY"));
    assert!(
        registry.contains("cleanup.policy=compact") && !registry.contains("retention.ms"),
        "{registry}"
    );
    // A min ISR beyond the replication factor is refused before any topic is made.
    let bad = env
        .with("GRIDWATCH__KAFKA__MIN_INSYNC_REPLICAS", "2")
        .with("GRIDWATCH__KAFKA__TOPICS__READINGS", "never-made.readings");
    let out = bad.output(&["topics", "create"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("kafka.min_insync_replicas"),
        "{err}"
    );
}

#[test]
fn a_body_of_150000_records_is_taken_whole() {
    let _one_at_a_time = serial();
    let Some(bootstrap) = kafka() else { return };
    let addr = format!("127.0.0.1:{}", free_port());
    let env = Env::new(&bootstrap, "bigbody").with("GRIDWATCH__INGESTER__LISTEN", &addr);
    env.run(&["topics", "create"]);
    // A producer queue far smaller than the body (librdkafka's default holds 100,000).
    let config = env.dir.join("gridwatch.toml");
    std::fs::write(
        &config,
        "[kafka.properties]\n\"queue.buffering.max.messages\" = \"2000\"\n",
    )
    .unwrap();
    let mut ingester = env.spawn(
        "ingester",
        &["ingester", "--config", config.to_str().unwrap()],
    );
    wait_until("the ingester to be ready", Duration::from_secs(60), || {
        get(&addr, "/readyz") == 200
    });
    // Far more records than the producer's queue holds, well under the 16 MiB limit.
    let mut body = String::from("meter_id,ts,interval_s,kwh\n");
    for i in 0..150_000i64 {
        let ts = gridwatch_core::time::format_rfc3339(T0 + 900 * (1 + i / 500));
        writeln!(body, "M{},{ts},900,0.25", i % 500).unwrap();
    }
    let (status, _, resp) = post(&addr, "/v1/readings", "text/csv", body.as_bytes());
    assert_eq!(status, 200, "{resp}");
    let v: Value = serde_json::from_str(&resp).unwrap();
    assert_eq!(v["accepted"], 150_000, "{resp}");
    let (_, metrics) = get_text(&addr, "/metrics");
    assert_eq!(
        metric(&metrics, "gridwatch_readings_ingested_total"),
        Some(150_000),
        "{metrics}"
    );
    assert!(ingester.stop(), "{}", ingester.log_text());
}

#[test]
fn a_flood_of_a_million_readings_from_invented_meters_keeps_the_detector_bounded() {
    let _one_at_a_time = serial();
    let Some(bootstrap) = kafka() else { return };
    let metrics = format!("127.0.0.1:{}", free_port());
    let env = Env::new(&bootstrap, "flood")
        .with("GRIDWATCH__KAFKA__PARTITIONS", "3")
        .with("GRIDWATCH__DETECTOR__METRICS_LISTEN", &metrics)
        .with("GRIDWATCH__DETECTOR__CHECKPOINT_INTERVAL_S", "3600");
    let registry = env.dir.join("registry.csv");
    std::fs::write(
        &registry,
        "site_id,meter_id,feeder_id,role,customer_class,permitted_kw,status,licensed_mining,lat,lon,region\n\
         SH1,H1,F1,feeder_head,,,active,false,,,North\n\
         S1,M1,F1,customer,residential,12,active,false,,,North\n",
    )
    .unwrap();
    // 250,000 invented meters, four readings each; half name the registered feeder F1.
    let flood = env.dir.join("flood.csv");
    let mut text = String::from("meter_id,ts,interval_s,kwh,feeder_id\n");
    let meters = 250_000;
    for k in 0..4 * meters {
        let (m, step) = (k % meters, k / meters);
        let feeder = if m % 2 == 0 { "F1" } else { "" };
        let min = step * 15;
        writeln!(
            text,
            "FAKE{m:07},2026-01-05T00:{min:02}:00Z,900,0.1,{feeder}"
        )
        .unwrap();
    }
    std::fs::write(&flood, text).unwrap();

    env.run(&["topics", "create"]);
    env.run(&["registry", "load", "--registry", registry.to_str().unwrap()]);
    env.run(&["ingest", "--readings", flood.to_str().unwrap()]);
    let mut detector = env.spawn("detector", &["detect"]);
    // 100 meters of F1's crowd and, in each of the three partition engines (the ids naming no
    // feeder are keyed by themselves, so spread over all three), 1,000 of the crowd naming no
    // registered feeder get a case each; every other id folds into its crowd's one case.
    let (per_feeder, per_region, engines) = (100, 1_000, 3);
    let expected_opens = per_feeder + engines * per_region + 1 + engines;
    wait_until(
        "the detector to consume the flood",
        Duration::from_secs(600),
        || {
            let (_, body) = get_text(&metrics, "/metrics");
            metric(&body, "gridwatch_records_consumed_total").unwrap_or(0) >= 4 * meters as u64
        },
    );
    let alerts = env.tail("alerts", expected_opens, Duration::from_secs(120));
    std::thread::sleep(Duration::from_secs(3));
    let alerts = env.tail("alerts", alerts.len() + 1, Duration::from_secs(5));
    let opens: Vec<&Value> = alerts.iter().filter(|a| a["status"] == "open").collect();
    assert_eq!(opens.len(), expected_opens, "{} alerts", alerts.len());
    assert!(opens.iter().all(|a| a["kind"] == "unregistered_meter"));
    let crowds: Vec<&&Value> = opens.iter().filter(|a| a["meter_id"].is_null()).collect();
    assert_eq!(crowds.len(), 1 + engines, "{crowds:?}");
    let f1 = crowds
        .iter()
        .find(|a| a["feeder_id"] == "F1")
        .expect("F1's crowd");
    assert_eq!(f1["region"], "North");
    assert!(
        alerts.len() < expected_opens + 50,
        "crowd updates are rate-limited: {} messages",
        alerts.len()
    );
    let (_, body) = get_text(&metrics, "/metrics");
    assert_eq!(
        metric(&body, "gridwatch_meters"),
        Some((2 + per_feeder + engines * per_region) as u64),
        "the registered two and the capped unregistered: the rest hold no state"
    );
    assert!(detector.stop(), "{}", detector.log_text());
}

#[test]
fn a_rejected_record_the_dlq_cannot_take_is_logged_and_counted_and_the_detector_goes_on() {
    let _one_at_a_time = serial();
    let Some(bootstrap) = kafka() else { return };
    let metrics = format!("127.0.0.1:{}", free_port());
    // The producer refuses messages over 12,000 bytes: the DLQ copy of the huge record below
    // (cut to 16 KiB) can't be written. Before, that failed the transaction on every replay.
    let env = Env::new(&bootstrap, "dlqfail")
        .with("GRIDWATCH__DETECTOR__METRICS_LISTEN", &metrics)
        .with("GRIDWATCH__KAFKA__PROPERTIES__MESSAGE_MAX_BYTES", "12000");
    env.run(&["topics", "create"]);
    let mut detector = env.spawn("detector", &["detect"]);
    let topic = env.var("GRIDWATCH__KAFKA__TOPICS__READINGS").to_string();
    let huge = format!(
        r#"{{"meter_id":"{}","ts":"2026-01-05T00:15:00Z","interval_s":900,"kwh":1}}"#,
        "Z".repeat(200_000)
    );
    env.produce_raw(
        &topic,
        &[
            &huge,
            r#"{"meter_id":"M1","ts":"2026-01-05T00:15:00Z","interval_s":900,"kwh":-2.0}"#,
            r#"{"meter_id":"MX","ts":"2026-01-05T00:15:00Z","interval_s":900,"kwh":1.5}"#,
        ],
    );
    let alerts = env.tail("alerts", 1, Duration::from_secs(60));
    assert!(
        alerts.iter().any(|a| a["meter_id"] == "MX"),
        "the reading after the poison is used: {alerts:#?}\n{}",
        detector.log_text()
    );
    let dlq = env.tail("dlq", 1, Duration::from_secs(30));
    assert_eq!(
        dlq.len(),
        1,
        "the small reject still reaches the DLQ: {dlq:#?}"
    );
    assert!(dlq[0]["reason"].as_str().unwrap().contains("field kwh"));
    let (_, body) = get_text(&metrics, "/metrics");
    assert_eq!(metric(&body, "gridwatch_dlq_write_failures_total"), Some(1));
    assert_eq!(
        metric(&body, "gridwatch_service_restarts_total").unwrap_or(0),
        0
    );
    let log = detector.log_text();
    assert!(
        log.contains("could not be written to the DLQ") && log.contains(&format!("{topic}/")),
        "{log}"
    );
    assert!(detector.stop(), "{log}");
}
