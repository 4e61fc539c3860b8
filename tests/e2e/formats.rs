//! Formats in and out, through the `gridwatch` binary (no Kafka): Parquet output read natively
//! by DuckDB (as docs/analysts.md shows it), pyarrow and polars; Green Button, IEC 61968-9 and
//! NEM12 files read by `gridwatch run`.

use gridwatch_e2e::{bin, python_check, repo_root};
use std::path::Path;
use std::process::{Command, Output};

fn gridwatch(args: &[&str]) -> Output {
    let out = Command::new(bin())
        .args(args)
        .output()
        .expect("gridwatch runs");
    assert!(
        out.status.success(),
        "gridwatch {args:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn parquet_output_reads_natively_in_duckdb_pyarrow_and_polars() {
    let dir = tempfile_dir("parquet");
    let data = dir.join("sim");
    gridwatch(&[
        "simulate",
        "--out",
        s(&data),
        "--sites",
        "300",
        "--days",
        "7",
        "--seed",
        "3",
        "--demo-cases",
    ]);
    let out = dir.join("out");
    let run = gridwatch(&[
        "run",
        "--registry",
        s(&data.join("registry.csv")),
        "--readings",
        s(&data.join("readings.csv")),
        "--out",
        s(&out),
        "--format",
        "parquet",
        "--quiet",
    ]);
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(text.contains("file(s) under"), "{text}");
    let parquet = walk(&out.join("flagged"), "parquet");
    assert!(!parquet.is_empty(), "no Parquet files");
    assert!(walk(&out.join("flagged"), "arrow").is_empty());
    python_check(
        "check_parquet.py",
        &[
            &out.join("flagged"),
            &out.join("alerts.jsonl"),
            &repo_root().join("docs/analysts.md"),
        ],
    );
}

#[test]
fn gridwatch_run_reads_green_button_and_iec_files_by_their_content() {
    let dir = tempfile_dir("xml");
    let reg = dir.join("registry.csv");
    std::fs::write(
        &reg,
        "site_id,meter_id,feeder_id,role,customer_class,permitted_kw,status,licensed_mining,lat,lon,region\n\
         S1,M1,F1,customer,residential,12,active,false,,,\n",
    )
    .unwrap();
    let data = repo_root().join("crates/ingester/tests/data");
    // A Green Button feed saved under a name that says nothing: its content decides.
    let gb = dir.join("download.txt");
    std::fs::copy(data.join("greenbutton_openespi_usage_15min.xml"), &gb).unwrap();
    let out = dir.join("gb");
    let run = gridwatch(&[
        "run",
        "--registry",
        s(&reg),
        "--readings",
        s(&gb),
        "--meter-id",
        "M1",
        "--out",
        s(&out),
        "--quiet",
    ]);
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(text.contains("96 records, 96 used"), "{text}");
    assert!(
        text.contains("alerts:   0 messages"),
        "the registered meter M1 is quiet: {text}"
    );
    let out = dir.join("iec");
    let iec = data.join("iec_61968_9_meter_readings.xml");
    let run = gridwatch(&[
        "run",
        "--registry",
        s(&reg),
        "--readings",
        s(&iec),
        "--out",
        s(&out),
        "--quiet",
    ]);
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(
        text.contains("5 records, 3 used") && text.contains("2 rejected"),
        "{text}"
    );
    let rejects = std::fs::read_to_string(out.join("rejects.jsonl")).unwrap();
    assert!(
        rejects.contains("iec_61968_9_meter_readings.xml:55"),
        "{rejects}"
    );
}

#[test]
fn a_real_nem12_rooftop_pv_month_finds_its_generation_unregistered_and_not_once_registered() {
    let dir = tempfile_dir("nem12");
    let nem12 = repo_root().join("crates/ingester/tests/data/nem12/Example_NEM12_month_solar.csv");
    // The site's own time zone: its nights are Sydney's (in UTC they are its days).
    let header = "site_id,meter_id,feeder_id,role,customer_class,permitted_kw,status,licensed_mining,lat,lon,region,generation_kw,timezone";
    let run = |name: &str, generation_kw: &str| {
        let reg = dir.join(format!("{name}.csv"));
        std::fs::write(
            &reg,
            format!("{header}\nS1,NMI1234567,F1,customer,residential,10,active,false,,,NSW,{generation_kw},Australia/Sydney\n"),
        )
        .unwrap();
        let out = dir.join(name);
        let run = gridwatch(&[
            "run",
            "--registry",
            s(&reg),
            "--readings",
            s(&nem12),
            "--out",
            s(&out),
            "--quiet",
        ]);
        let text = String::from_utf8_lossy(&run.stdout).into_owned();
        assert!(
            text.contains("8928 records, 8928 used") && text.contains(" 0 rejected"),
            "{text}"
        );
        std::fs::read_to_string(out.join("alerts.jsonl")).unwrap()
    };
    // Its import and export read (5-minute intervals, B1 as kwh_export): a site exporting with no
    // generation in the register is found on the first sunny day of the month.
    let alerts = run("unregistered", "");
    let first = alerts.lines().next().unwrap_or_default();
    assert!(
        first.contains("\"kind\":\"unregistered_generation\"")
            && first.contains("\"status\":\"open\"")
            && first.contains("\"detected_at\":\"2023-03-01T"),
        "{alerts}"
    );
    // With its 5 kW registered, the same month raises nothing.
    assert_eq!(
        run("registered", "5"),
        "",
        "a registered PV system exporting within its permit"
    );
}

fn tempfile_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("gridwatch-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn walk(dir: &Path, ext: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            found.extend(walk(&p, ext));
        } else if p.extension().is_some_and(|x| x == ext) {
            found.push(p);
        }
    }
    found
}

/// The demo's `report.html` renders in headless Chromium (Debian's `chromium`): a screenshot,
/// no console message (the page has no script), nothing fetched from a network, a card with a
/// plot for every open case and a map.
#[test]
fn report_renders_in_headless_chromium_without_console_errors() {
    let Some(chromium) = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
    else {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "CI=true and no chromium: scripts/test.sh installs Debian's chromium"
        );
        eprintln!("SKIPPED: no chromium on this machine (scripts/test.sh installs it)");
        return;
    };
    let dir = tempfile_dir("report");
    let demo = gridwatch(&["demo", "--out", s(&dir)]);
    let text = String::from_utf8_lossy(&demo.stdout);
    let html =
        std::fs::read_to_string(dir.join("report.html")).expect("the demo writes report.html");
    assert!(
        !html.contains("<script") && !html.contains("src=") && !html.contains("http"),
        "self-contained"
    );
    let open: usize = html
        .split("open cases")
        .next()
        .and_then(|h| h.rsplit('>').next())
        .and_then(|n| n.trim().parse().ok())
        .expect("the header counts the open cases");
    assert!(open >= 5, "{open}");
    assert_eq!(html.matches("<article class=\"case\">").count(), open);
    assert_eq!(
        html.matches("<svg class=\"plot\"").count(),
        open,
        "a plot per case"
    );
    assert_eq!(html.matches("<svg class=\"map\"").count(), 1);
    assert!(
        text.contains("report.html"),
        "the demo says where the report is: {text}"
    );
    let png = dir.join("report.png");
    let shot = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .args([
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1000,2600",
        ])
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", dir.join("report.html").display()))
        .output()
        .expect("chromium runs");
    let log = String::from_utf8_lossy(&shot.stderr);
    assert!(shot.status.success(), "{log}");
    assert!(!log.contains("CONSOLE"), "console messages: {log}");
    let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
    assert!(size > 50_000, "a screenshot with content ({size} bytes)");
}
