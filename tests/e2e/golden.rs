//! Golden alerts: the demo and every utility of the fixed quality suite, run through the
//! embedded pipeline, give byte for byte the alerts committed in tests/golden (blessed before
//! the detector refactor). A change meant to change alerts re-blesses them with
//! `scripts/golden.sh --bless` and says why in its commit.

use gridwatch_e2e::{bin, repo_root};
use std::process::Command;

#[test]
fn demo_and_quality_suite_alerts_are_byte_identical_to_the_golden_files() {
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/golden.sh"))
        .arg(bin())
        .output()
        .expect("run scripts/golden.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "golden alerts differ:\n{stdout}\n{stderr}"
    );
    // Every file compared: the demo and each utility of the suite.
    let suite = std::fs::read_to_string(repo_root().join("tests/golden/suite.json"))
        .expect("tests/golden/suite.json");
    let utilities = suite.matches("\"name\"").count() - suite.matches("\"golden\": false").count();
    assert!(utilities >= 6, "the suite lists its utilities: {suite}");
    assert_eq!(stdout.matches("same ").count(), 1 + utilities, "{stdout}");
}
