//! End to end, security: API keys on the ingester, a SASL_SSL broker with SCRAM, and HTTPS.

use gridwatch_e2e::helpers::*;
use gridwatch_e2e::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

#[test]
fn ingest_needs_an_api_key_records_its_name_follows_rotation_and_limits_each_key() {
    let _one_at_a_time = serial();
    let Some(bootstrap) = kafka() else { return };
    let addr = format!("127.0.0.1:{}", free_port());
    let keys = std::env::temp_dir().join(format!("gridwatch-keys-{}", free_port()));
    let (key_a, key_b, key_c) = (
        "a1b2c3d4e5f6a7b8c9d0SECRET-A",
        "f0e9d8c7b6a5f4e3d2c1SECRET-B",
        "0f1e2d3c4b5a69788796SECRET-C",
    );
    std::fs::write(
        &keys,
        format!("# head-ends\nhes-a {key_a}\nhes-b {key_b}\n"),
    )
    .unwrap();
    let env = Env::new(&bootstrap, "apikeys")
        .with("GRIDWATCH__INGESTER__LISTEN", &addr)
        .with("GRIDWATCH__INGESTER__API_KEYS_FILE", keys.to_str().unwrap())
        .with("GRIDWATCH__INGESTER__MAX_REQUESTS_PER_S", "4");
    env.run(&["topics", "create"]);
    let mut ingester = env.spawn("ingester", &["ingester"]);
    wait_until("the ingester to be ready", Duration::from_secs(60), || {
        get(&addr, "/readyz") == 200
    });
    let body = "meter_id,ts,interval_s,kwh\nM1,2026-01-05T00:15:00Z,900,0.2\nM1,2026-01-05T00:30:00Z,0,0.2\n";
    let send = |key: Option<&str>| post_as(&addr, "/v1/readings", "text/csv", key, body.as_bytes());

    let (status, head, resp) = send(None);
    assert_eq!(status, 401, "{resp}");
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{head}"
    );
    assert_eq!(
        send(Some("a1b2c3d4e5f6a7b8c9d0SECRET-X")).0,
        401,
        "a wrong key"
    );
    assert_eq!(send(Some(&key_a[..20])).0, 401, "a key's prefix");
    let (status, _, resp) = send(Some(key_a));
    assert_eq!(status, 200, "{resp}");

    // The key's name, never the key, travels with the reading and its reject.
    let dlq = env.tail("dlq", 1, Duration::from_secs(30));
    assert!(
        dlq[0]["source"]
            .as_str()
            .unwrap()
            .starts_with("http:hes-a/"),
        "{dlq:?}"
    );
    let out = Command::new("java")
        .arg("-cp")
        .arg(format!(
            "{}/*",
            repo_root().join("deploy/kafka/libs").display()
        ))
        .args([
            "org.apache.kafka.tools.consumer.ConsoleConsumer",
            "--bootstrap-server",
            &bootstrap,
        ])
        .args(["--topic", env.var("GRIDWATCH__KAFKA__TOPICS__READINGS")])
        .args([
            "--from-beginning",
            "--max-messages",
            "1",
            "--timeout-ms",
            "20000",
        ])
        .args(["--property", "print.headers=true"])
        .output()
        .expect("java runs Kafka's console consumer");
    let record = String::from_utf8_lossy(&out.stdout);
    assert!(record.contains("gridwatch-source:http:hes-a/"), "{record}");

    // Rotation: the file is replaced (a secret updated); the old key stops working.
    std::fs::write(&keys, format!("hes-b {key_b}\nhes-c {key_c}\n")).unwrap();
    wait_until(
        "the rotated keys to take effect",
        Duration::from_secs(20),
        || send(Some(key_a)).0 == 401,
    );
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(send(Some(key_c)).0, 200, "the new key");

    // A key over its rate gets 429 with Retry-After; another key is not held back.
    let codes: Vec<u16> = (0..12).map(|_| send(Some(key_b)).0).collect();
    assert!(codes.contains(&429) && codes.contains(&200), "{codes:?}");
    let (status, head, _) = send(Some(key_b));
    if status == 429 {
        assert!(head.to_ascii_lowercase().contains("retry-after"), "{head}");
    }
    assert_eq!(send(Some(key_c)).0, 200, "hes-c has its own budget");

    let (_, metrics) = get_text(&addr, "/metrics");
    assert!(
        metric(
            &metrics,
            "gridwatch_http_requests_total{route=\"/v1/readings\",code=\"401\"}"
        )
        .unwrap_or(0)
            >= 3,
        "{metrics}"
    );
    assert!(ingester.stop(), "{}", ingester.log_text());
    let log = ingester.log_text();
    for key in [key_a, key_b, key_c] {
        assert!(!log.contains(key), "a key appears in the log:\n{log}");
    }
    let _ = std::fs::remove_file(&keys);
}

#[test]
fn the_pipeline_runs_against_a_sasl_ssl_broker_and_a_wrong_password_is_named() {
    let _one_at_a_time = serial();
    let Some(_) = kafka() else { return };
    let scratch = Env::new("unused", "saslssl");
    let password = format!("pw-{}-{}", std::process::id(), free_port());
    let broker = gridwatch_e2e::Broker::secure(&scratch.dir, &password);
    let ca = broker.ca();
    // Every setting but the password in the environment as an operator would set it
    // (`_` for `.` in librdkafka's keys); the password from a file or the environment.
    let base = Env::new(&broker.bootstrap, "saslssl")
        .with(
            "GRIDWATCH__KAFKA__PROPERTIES__SECURITY_PROTOCOL",
            "SASL_SSL",
        )
        .with(
            "GRIDWATCH__KAFKA__PROPERTIES__SASL_MECHANISMS",
            "SCRAM-SHA-512",
        )
        .with("GRIDWATCH__KAFKA__PROPERTIES__SASL_USERNAME", "gridwatch")
        .with(
            "GRIDWATCH__KAFKA__PROPERTIES__SSL_CA_LOCATION",
            ca.to_str().unwrap(),
        );
    let secret = base.dir.join("kafka.password");
    std::fs::write(&secret, format!("{password}\n")).unwrap();
    let from_file = base.clone().with(
        "GRIDWATCH__KAFKA__SASL_PASSWORD_FILE",
        secret.to_str().unwrap(),
    );
    let from_env = base
        .clone()
        .with("GRIDWATCH__KAFKA__PROPERTIES__SASL_PASSWORD", &password);

    // A wrong password is refused, and the error says so.
    let wrong = base.clone().with(
        "GRIDWATCH__KAFKA__PROPERTIES__SASL_PASSWORD",
        "not-the-password",
    );
    let out = wrong.output(&["topics", "create"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("SASL authentication error"),
        "{err}"
    );
    // Without the password at all, nothing is reachable either.
    let out = base.output(&["topics", "create"]);
    assert!(!out.status.success(), "no password, no topics");

    let (data, _, embedded) = simulated(&from_file, 30, 4, 17);
    let d = data.to_str().unwrap();
    assert!(!embedded.is_empty());
    topics_and_register(&from_file, &data);
    from_file.run(&["ingest", "--readings", &format!("{d}/readings.csv")]);
    let out = base.dir.join("kafka-out");
    let mut detector = from_env.spawn("detector", &["detect"]);
    let mut sink = from_env.spawn("sink", &["sink", "--out", out.to_str().unwrap()]);
    let kafka = from_env.tail("alerts", embedded.len(), Duration::from_secs(180));
    std::thread::sleep(Duration::from_secs(2));
    let kafka_all = from_env.tail("alerts", kafka.len(), Duration::ZERO);
    assert_eq!(
        alert_counts(&kafka_all),
        alert_counts(&embedded),
        "over SASL_SSL, Kafka and embedded alerts differ\n{}",
        detector.log_text()
    );
    settle(|| logged_rows(&sink.log_text()) >= kafka_all.len());
    assert!(sink.stop(), "{}", sink.log_text());
    assert!(detector.stop(), "{}", detector.log_text());
    for log in [detector.log_text(), sink.log_text()] {
        assert!(!log.contains(&password), "the password never reaches a log");
    }
    drop(broker);
}

/// A CA and a server certificate for 127.0.0.1 (openssl), as an operator would make them:
/// returns (ca.pem, server.pem, server.key).
fn certificates(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let sh = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    sh(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    sh(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    sh(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

/// `curl` with `args`; returns (HTTP status or 0 when no HTTP answer came, body).
fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
fn the_ingester_serves_https_with_the_configured_certificate_and_refuses_plain_http() {
    let _one_at_a_time = serial();
    let Some(bootstrap) = kafka() else { return };
    let addr = format!("127.0.0.1:{}", free_port());
    let env = Env::new(&bootstrap, "tls");
    let (ca, cert, key) = certificates(&env.dir);
    let keys = env.dir.join("keys");
    let secret = "0123456789abcdefSECRET-TLS";
    std::fs::write(&keys, format!("hes-tls {secret}\n")).unwrap();
    let env = env
        .with("GRIDWATCH__INGESTER__LISTEN", &addr)
        .with("GRIDWATCH__INGESTER__TLS_CERT", cert.to_str().unwrap())
        .with("GRIDWATCH__INGESTER__TLS_KEY", key.to_str().unwrap())
        .with("GRIDWATCH__INGESTER__API_KEYS_FILE", keys.to_str().unwrap());
    env.run(&["topics", "create"]);
    let mut ingester = env.spawn("ingester", &["ingester"]);
    let https = format!("https://{addr}");
    let ca = ca.to_str().unwrap();
    wait_until(
        "the ingester to answer over HTTPS",
        Duration::from_secs(60),
        || curl(&["--cacert", ca, &format!("{https}/readyz")]).0 == 200,
    );
    let body = "meter_id,ts,interval_s,kwh\nMTLS1,2026-01-05T00:15:00Z,900,0.2\n";
    let (status, resp) = curl(&[
        "--cacert",
        ca,
        "-H",
        &format!("Authorization: Bearer {secret}"),
        "-H",
        "Content-Type: text/csv",
        "--data-binary",
        body,
        &format!("{https}/v1/readings"),
    ]);
    assert_eq!(status, 200, "{resp}");
    assert!(resp.contains("\"accepted\":1"), "{resp}");
    // A client that doesn't trust the certificate gets no answer; nor does plain HTTP.
    assert_eq!(
        curl(&[&format!("{https}/readyz")]).0,
        0,
        "untrusted certificate"
    );
    assert_eq!(get(&addr, "/readyz"), 0, "plain HTTP on the HTTPS port");
    // The listener still serves after those failed handshakes.
    assert_eq!(curl(&["--cacert", ca, &format!("{https}/healthz")]).0, 200);
    assert!(ingester.stop(), "{}", ingester.log_text());

    // Half a TLS setting is refused at start, naming both keys.
    let half = env.clone().with("GRIDWATCH__INGESTER__TLS_KEY", "");
    let out = half.output(&["ingester"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("ingester.tls_key"),
        "{err}"
    );
}
