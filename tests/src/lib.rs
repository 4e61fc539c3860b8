//! Helpers for the end-to-end suites: a real broker (required under `CI=true`), isolated
//! topic names per test, the `gridwatch` binary as child processes, a tiny HTTP client.

pub mod helpers;

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The broker the suites use: `GRIDWATCH_TEST_KAFKA`, default 127.0.0.1:9092. Returns `None`
/// (the test then says it skipped) when unreachable, except under `CI=true`, where a missing
/// broker is a failure.
pub fn kafka() -> Option<String> {
    let addr = std::env::var("GRIDWATCH_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let reachable = addr
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok());
    if reachable {
        return Some(addr);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("Kafka is not reachable at {addr}, and CI=true: tests that need Kafka must run (start it with deploy/kafka/kafka.sh up)");
    }
    eprintln!("SKIPPED: Kafka not reachable at {addr} (start it with deploy/kafka/kafka.sh up)");
    None
}

/// Serializes the suites that drive the broker: each spawns several services, and the
/// machine may have two cores.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The `gridwatch` binary: `GRIDWATCH_BIN`, or the workspace's debug build.
pub fn bin() -> PathBuf {
    if let Ok(p) = std::env::var("GRIDWATCH_BIN") {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/gridwatch");
    assert!(
        p.exists(),
        "{} not built: run `cargo build -p gridwatch` first (scripts/test.sh does)",
        p.display()
    );
    p
}

/// The Python with pyarrow and polars: `GRIDWATCH_PYTHON`, or `.venv/bin/python`.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("GRIDWATCH_PYTHON") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python")
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// One test's private corner of the broker: its own topics, groups and transactional ids.
#[derive(Clone)]
pub struct Env {
    pub vars: Vec<(String, String)>,
    pub dir: PathBuf,
}

impl Env {
    pub fn new(bootstrap: &str, name: &str) -> Env {
        let nonce = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            % 1_000_000_000;
        let p = format!("t{nonce}-{name}");
        let dir = std::env::temp_dir().join(format!("gridwatch-e2e-{p}"));
        std::fs::create_dir_all(&dir).unwrap();
        let vars = [
            ("GRIDWATCH__KAFKA__BOOTSTRAP_SERVERS", bootstrap.to_string()),
            (
                "GRIDWATCH__KAFKA__TOPICS__READINGS",
                format!("{p}.readings"),
            ),
            (
                "GRIDWATCH__KAFKA__TOPICS__REGISTRY",
                format!("{p}.registry"),
            ),
            ("GRIDWATCH__KAFKA__TOPICS__ALERTS", format!("{p}.alerts")),
            ("GRIDWATCH__KAFKA__TOPICS__DLQ", format!("{p}.dlq")),
            (
                "GRIDWATCH__KAFKA__TOPICS__SUSPECTS",
                format!("{p}.suspects"),
            ),
            ("GRIDWATCH__KAFKA__TOPICS__WEATHER", format!("{p}.weather")),
            (
                "GRIDWATCH__KAFKA__TOPICS__OUTCOMES",
                format!("{p}.outcomes"),
            ),
            (
                "GRIDWATCH__KAFKA__TOPICS__HOLIDAYS",
                format!("{p}.holidays"),
            ),
            ("GRIDWATCH__KAFKA__TOPICS__STATE", format!("{p}.state")),
            ("GRIDWATCH__DETECTOR__GROUP_ID", format!("{p}-detector")),
            ("GRIDWATCH__DETECTOR__INSTANCE_ID", "0".to_string()),
            ("GRIDWATCH__SINK__INSTANCE_ID", "0".to_string()),
            ("GRIDWATCH__SINK__GROUP_ID", format!("{p}-sink")),
            (
                "GRIDWATCH__DETECTOR__STATE_DIR",
                dir.join("state").to_string_lossy().into_owned(),
            ),
            ("GRIDWATCH__SINK__ROLL_AGE_S", "1".to_string()),
            (
                "GRIDWATCH__DETECTOR__METRICS_LISTEN",
                format!("127.0.0.1:{}", free_port()),
            ),
            (
                "GRIDWATCH__SINK__METRICS_LISTEN",
                format!("127.0.0.1:{}", free_port()),
            ),
            ("GRIDWATCH_LOG", "info".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Env { vars, dir }
    }

    pub fn with(mut self, key: &str, value: &str) -> Env {
        self.vars.retain(|(k, _)| k != key);
        self.vars.push((key.into(), value.into()));
        self
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(args)
            .envs(self.vars.iter().map(|(k, v)| (k, v)))
            .env_remove("GRIDWATCH_CONFIG");
        c
    }

    /// Runs a command to completion, whatever its exit status (for commands meant to fail).
    pub fn output(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("gridwatch runs")
    }

    /// Runs a command to completion; panics with its output if it fails.
    pub fn run(&self, args: &[&str]) -> Output {
        let out = self.output(args);
        assert!(
            out.status.success(),
            "gridwatch {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Starts a service in the background; its log goes to `<dir>/<name>.log`.
    pub fn spawn(&self, name: &str, args: &[&str]) -> Service {
        let log = std::fs::File::create(self.dir.join(format!("{name}.log"))).unwrap();
        let child = self
            .command(args)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("gridwatch starts");
        Service {
            child: Some(child),
            log: self.dir.join(format!("{name}.log")),
        }
    }

    /// The value of one of the test's `GRIDWATCH__…` settings (its topic names, say).
    pub fn var(&self, key: &str) -> &str {
        self.vars
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("{key} is not set"))
    }

    /// Writes raw records (one a line, no key) to a topic with Kafka's own console producer,
    /// past gridwatch's ingester: what a broken or hostile producer would put there.
    pub fn produce_raw(&self, topic: &str, lines: &[&str]) {
        let libs = repo_root().join("deploy/kafka/libs");
        let mut child = Command::new("java")
            .arg("-cp")
            .arg(format!("{}/*", libs.display()))
            .args(["org.apache.kafka.tools.ConsoleProducer", "--topic", topic])
            .args([
                "--bootstrap-server",
                self.var("GRIDWATCH__KAFKA__BOOTSTRAP_SERVERS"),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("java runs Kafka's console producer (deploy/kafka/kafka.sh fetches it)");
        let mut stdin = child.stdin.take().expect("piped");
        for l in lines {
            writeln!(stdin, "{l}").unwrap();
        }
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "console producer: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Reads a topic's committed records as JSON until `n` arrived or `timeout` passed.
    pub fn tail(&self, what: &str, n: usize, timeout: Duration) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.run(&[what, "tail", "--from-beginning", "--idle-exit", "3"]);
            let rows: Vec<serde_json::Value> = String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .map(|l| {
                    serde_json::from_str(l)
                        .unwrap_or_else(|e| panic!("{what} record is not JSON ({e}): {l}"))
                })
                .collect();
            if rows.len() >= n || Instant::now() > deadline {
                return rows;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// A background `gridwatch` service, stopped with SIGTERM (then killed) when dropped.
pub struct Service {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Service {
    /// SIGTERM, then wait up to 20 s; returns whether it exited cleanly.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// Whether the process is still running (it has not exited, crashed or been stopped).
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL: a crash at an arbitrary point.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A minimal HTTP/1.1 POST; returns (status, headers, body).
pub fn post(addr: &str, path: &str, content_type: &str, body: &[u8]) -> (u16, String, String) {
    post_as(addr, path, content_type, None, body)
}

/// POST with `Authorization: Bearer <key>` when `key` is given; returns (status, head, body).
pub fn post_as(
    addr: &str,
    path: &str,
    content_type: &str,
    key: Option<&str>,
    body: &[u8],
) -> (u16, String, String) {
    try_post(addr, path, content_type, key, body).expect("connect to the ingester")
}

/// POST as [`post_as`]; `None` when nothing listens (a service being restarted).
pub fn try_post(
    addr: &str,
    path: &str,
    content_type: &str,
    key: Option<&str>,
    body: &[u8],
) -> Option<(u16, String, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .ok()?;
    // The server may answer (413) before reading a large body; a failed write is fine then.
    let _ = s.write_all(body);
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Some((status, head.to_string(), body.to_string()))
}

/// GET, for health checks.
pub fn get(addr: &str, path: &str) -> u16 {
    get_text(addr, path).0
}

/// GET; returns (status, body). Status 0 when nothing answers.
pub fn get_text(addr: &str, path: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return (0, String::new());
    };
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    );
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}

/// Runs one of the Python checks in `tests/python` with `args` (pyarrow, polars and duckdb
/// installed by scripts/test.sh); panics with its output unless it passes.
pub fn python_check(script: &str, args: &[&Path]) {
    let out = Command::new(python())
        .arg(repo_root().join("tests/python").join(script))
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}); scripts/test.sh installs it",
                python().display()
            )
        });
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{said}");
    assert!(out.status.success(), "{script} failed:\n{said}");
}

/// A metric's value in a Prometheus text body: its unlabelled line, or the sum of its
/// labelled series (`name{…} v`); `name` may include a label set to pick one series.
pub fn metric(body: &str, name: &str) -> Option<u64> {
    let mut found = None;
    for l in body.lines() {
        let Some(rest) = l.strip_prefix(name) else {
            continue;
        };
        let value = match rest.strip_prefix(' ') {
            Some(v) => v,
            None if rest.starts_with('{') && !name.ends_with('}') => match rest.rsplit_once("} ") {
                Some((_, v)) => v,
                None => continue,
            },
            None => continue,
        };
        if let Ok(v) = value.trim().parse::<u64>() {
            *found.get_or_insert(0) += v;
        }
    }
    found
}

/// Waits until `f` holds or panics after `timeout` with `what`.
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A private single-node broker (deploy/kafka/kafka.sh on free ports, data under `dir`), for
/// tests that stop and restart it; stopped when dropped.
pub struct Broker {
    vars: Vec<(String, String)>,
    pub bootstrap: String,
}

impl Broker {
    pub fn start(dir: &Path) -> Broker {
        let port = free_port();
        let vars = vec![
            ("KAFKA_PORT".to_string(), port.to_string()),
            ("KAFKA_CONTROLLER_PORT".to_string(), free_port().to_string()),
            (
                "KAFKA_RUN_DIR".to_string(),
                dir.join("kafka").to_string_lossy().into_owned(),
            ),
            ("KAFKA_HEAP".to_string(), "384m".to_string()),
        ];
        let b = Broker {
            vars,
            bootstrap: format!("127.0.0.1:{port}"),
        };
        b.kafka_sh(&["up"]);
        b
    }

    /// One broker whose client listener is SASL_SSL with SCRAM-SHA-512 (`kafka.sh secure up`):
    /// the user `gridwatch` with `password`; its CA at [`Broker::ca`].
    pub fn secure(dir: &Path, password: &str) -> Broker {
        let port = free_port();
        let vars = vec![
            ("KAFKA_PORT".to_string(), port.to_string()),
            ("KAFKA_CONTROLLER_PORT".to_string(), free_port().to_string()),
            ("KAFKA_INTERNAL_PORT".to_string(), free_port().to_string()),
            (
                "KAFKA_RUN_DIR".to_string(),
                dir.join("kafka").to_string_lossy().into_owned(),
            ),
            ("KAFKA_HEAP".to_string(), "384m".to_string()),
            ("KAFKA_SCRAM_PASSWORD".to_string(), password.to_string()),
        ];
        let b = Broker {
            vars,
            bootstrap: format!("127.0.0.1:{port}"),
        };
        b.kafka_sh(&["secure", "up"]);
        b
    }

    /// The CA a `secure` broker's certificate is signed by.
    pub fn ca(&self) -> PathBuf {
        let run = &self
            .vars
            .iter()
            .find(|(k, _)| k == "KAFKA_RUN_DIR")
            .unwrap()
            .1;
        Path::new(run).join("tls/ca.pem")
    }

    /// Three brokers (`kafka.sh cluster up`, replication factor 3, min ISR 2) on free ports.
    pub fn cluster(dir: &Path) -> Broker {
        let base = (0..200)
            .map(|i| 20_000 + ((std::process::id() as u16 % 1000) * 30 + i * 7) % 40_000)
            .find(|&b| (b..b + 6).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()))
            .expect("six free ports in a row");
        let vars = vec![
            ("KAFKA_PORT".to_string(), base.to_string()),
            (
                "KAFKA_RUN_DIR".to_string(),
                dir.join("kafka").to_string_lossy().into_owned(),
            ),
        ];
        let b = Broker {
            vars,
            bootstrap: (0..3)
                .map(|i| format!("127.0.0.1:{}", base + 2 * i))
                .collect::<Vec<_>>()
                .join(","),
        };
        b.kafka_sh(&["cluster", "up"]);
        b
    }

    /// `kafka.sh …` (`up`, `down`, `cluster kill 2`); panics with its output if it fails.
    pub fn kafka_sh(&self, what: &[&str]) {
        let out = Command::new("bash")
            .arg(repo_root().join("deploy/kafka/kafka.sh"))
            .args(what)
            .envs(self.vars.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("bash runs kafka.sh");
        assert!(
            out.status.success(),
            "kafka.sh {what:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let what: &[&str] = if self.bootstrap.contains(',') {
            &["cluster", "down"]
        } else {
            &["down"]
        };
        let _ = Command::new("bash")
            .arg(repo_root().join("deploy/kafka/kafka.sh"))
            .args(what)
            .envs(self.vars.iter().map(|(k, v)| (k, v)))
            .output();
    }
}
