//! The Kafka-facing commands: the three services (ingester, detect, sink) and the operator
//! helpers (ingest, registry load, alerts tail, topics create).

use crate::config::Config;
use anyhow::{anyhow, bail, Context, Result};
use gridwatch_core::events::{Counter, Counters, Gauge, InternalEvent, Restarted};
use gridwatch_core::kafka::{
    consumer_config, ensure_topics, partitions, read_compacted, transient, Quiet, QuietConsumer,
};
use gridwatch_ingester::{
    ingest, read_registry, FeederIndex, Format, Records, SendError, Sender, Validation,
};
use indicatif::ProgressBar;
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// A flag set on SIGINT or SIGTERM, for the blocking service loops.
fn stop_flag(rt: &tokio::runtime::Runtime) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    rt.spawn(async move {
        shutdown_signal().await;
        tracing::info!("stop requested: finishing the current batch");
        flag.store(true, Ordering::Relaxed);
    });
    stop
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub fn topics_create(cfg: &Config) -> Result<()> {
    runtime()?
        .block_on(ensure_topics(&cfg.kafka))
        .map_err(|e| anyhow!(e))?;
    let (k, t) = (&cfg.kafka, &cfg.kafka.topics);
    println!(
        "topics ready at {}: {}, {}, {} (retention {} h); {}, {}, {}, {} (compacted); \
         {} partitions, replication factor {}, min.insync.replicas {} (topics that existed \
         are left as they were)",
        k.bootstrap_servers,
        t.readings,
        t.alerts,
        t.dlq,
        k.retention_s / 3600,
        t.registry,
        t.suspects,
        t.weather,
        t.holidays,
        k.partitions,
        k.replication_factor,
        k.min_insync()
    );
    Ok(())
}

/// `gridwatch topics lag`: each readings partition's owner in the detector group, committed
/// and end offsets, and lag. Returns whether every partition has an owner.
pub fn topics_lag(cfg: &Config) -> Result<bool> {
    let (k, group) = (&cfg.kafka, &cfg.detector.service.group_id);
    let topic = &k.topics.readings;
    let timeout = Duration::from_secs(10);
    let c: QuietConsumer = consumer_config(k, group).create_with_context(Quiet)?;
    let status =
        gridwatch_core::kafka::group_status(&c, group, topic, timeout).map_err(|e| anyhow!(e))?;
    let view = &status.view;
    println!(
        "group {group}: {} member(s), {}",
        view.members,
        if view.stable {
            "stable"
        } else {
            "rebalancing or empty"
        }
    );
    let mut all_owned = true;
    for ps in &status.partitions {
        let (p, end, at) = (ps.partition, ps.high, ps.committed);
        let owner = view.owners.get(&p);
        all_owned &= owner.is_some();
        println!(
            "{topic} partition={p} owner={} committed={} end={end} lag={}",
            owner.map_or("-", |o| o.as_str()),
            at.map_or("-".to_string(), |o| o.to_string()),
            end - at.unwrap_or(0)
        );
    }
    Ok(all_owned)
}

/// `gridwatch state inspect`.
pub fn state_inspect(cfg: &Config) -> Result<()> {
    use gridwatch_detector_service::state_admin::inspect;
    let group = &cfg.detector.service.group_id;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    println!("group {group}, state topic {}", cfg.kafka.topics.state);
    for row in inspect(&cfg.kafka, group)? {
        let (p, committed) = (row.partition, row.committed);
        let Some((at, info)) = row.snapshot else {
            println!("partition={p} committed={committed} snapshot=none (a move replays every retained reading)");
            continue;
        };
        let covers = info.covers.map_or("-".to_string(), |c| c.to_string());
        let replay = info
            .covers
            .map_or("-".to_string(), |c| (committed - c).max(0).to_string());
        let age = info.written_ms.map_or("-".to_string(), |w| {
            format!("{}s", (now_ms - w).max(0) / 1000)
        });
        let engine = info
            .engine_format
            .map_or("-".to_string(), |f| f.to_string());
        println!(
            "partition={p} committed={committed} snapshot={}@{} covers={covers} replay={replay} bytes={} chunks={} age={age} format=record:{},engine:{engine}{}",
            at.partition,
            at.offset,
            info.bytes,
            info.chunks,
            info.record_format,
            info.problem.map(|e| format!(" problem={e:?}")).unwrap_or_default()
        );
    }
    Ok(())
}

/// `gridwatch state reset --partition N`.
pub fn state_reset(cfg: &Config, partition: i32, yes: bool) -> Result<()> {
    let group = &cfg.detector.service.group_id;
    if !yes {
        if !io::stdin().is_terminal() {
            bail!("gridwatch state reset asks first: add --yes to reset without asking");
        }
        eprint!(
            "Forget the saved state of partition {partition} of {} for group {group}? Its next owner \
             rebuilds it from every retained reading. Type the partition number to go on: ",
            cfg.kafka.topics.readings
        );
        let mut answer = String::new();
        io::stdin().read_line(&mut answer)?;
        if answer.trim() != partition.to_string() {
            bail!("not confirmed: nothing was changed");
        }
    }
    match gridwatch_detector_service::state_admin::reset(&cfg.kafka, group, partition)? {
        Some(at) => println!(
            "partition {partition}: snapshot {}@{} forgotten; the next detector to take it rebuilds its state from every retained reading",
            at.partition, at.offset
        ),
        None => println!("partition {partition}: no snapshot saved, nothing to forget"),
    }
    Ok(())
}

/// `gridwatch ingest`: a readings file (or stdin) to Kafka.
pub fn ingest_file(cfg: &Config, readings: &str, meter_id: Option<String>) -> Result<()> {
    let rt = runtime()?;
    rt.block_on(async {
        ensure_topics(&cfg.kafka).await.map_err(|e| anyhow!(e))?;
        let sender = Sender::in_order(&cfg.kafka)?.with_feeders(register_feeders(cfg)?);
        let (mut input, name): (Box<dyn BufRead>, &str) = if readings == "-" {
            (Box::new(BufReader::new(io::stdin())), "stdin")
        } else {
            let f = File::open(readings).with_context(|| format!("{readings}: cannot open"))?;
            (Box::new(BufReader::with_capacity(1 << 20, f)), readings)
        };
        let bar = if io::stderr().is_terminal() { ProgressBar::new_spinner() } else { ProgressBar::hidden() };
        let started = std::time::Instant::now();
        let counters = Counters::default();
        let validation = Validation { max_ts: Some(now() + cfg.ingester.max_future_s) };
        let format = Format::detect(&mut input, readings).with_context(|| format!("{name}: cannot read"))?;
        let records = Records::new(input, format, validation).with_meter_id(meter_id);
        let first_failure = ingest(&sender, records, name, &counters, |line| {
            bar.set_message(format!("{line} lines"));
            bar.tick();
        })
        .await?;
        bar.finish_and_clear();
        let secs = started.elapsed().as_secs_f64();
        let (sent, rejects) = (counters.get(Counter::Ingested), counters.get(Counter::Rejected));
        println!(
            "{}: {} readings to {}, {} rejects to {} in {:.1} s ({:.0} records/s)",
            name,
            sent,
            cfg.kafka.topics.readings,
            rejects,
            cfg.kafka.topics.dlq,
            secs,
            (sent + rejects) as f64 / secs.max(1e-9)
        );
        if let Some(first) = first_failure {
            bail!(
                "{} records were not acknowledged by Kafka (first: {first}); run the ingest again — duplicates are counted once",
                counters.get(Counter::SendFailures),
            );
        }
        Ok(())
    })
}

/// `gridwatch registry load`: a register CSV to the compacted register topic.
pub fn registry_load(
    cfg: &Config,
    path: &Path,
    delete_missing: bool,
    effective_from: Option<i64>,
) -> Result<()> {
    let name = path.display().to_string();
    let f = File::open(path).with_context(|| format!("{name}: cannot open register"))?;
    let mut rows = read_registry(BufReader::new(f), &name)?;
    for r in &mut rows {
        r.effective_from = r.effective_from.or(effective_from);
    }
    runtime()?.block_on(async {
        ensure_topics(&cfg.kafka).await.map_err(|e| anyhow!(e))?;
        // Meters on the topic now that the file no longer has: deleted only when asked.
        let missing: Vec<String> = if delete_missing {
            let mut on_topic = std::collections::BTreeSet::new();
            read_compacted(
                &cfg.kafka,
                "gridwatch-registry-load",
                &cfg.kafka.topics.registry,
                Duration::from_secs(120),
                |key, value| {
                    let Some(meter) = key.map(|k| String::from_utf8_lossy(k).into_owned()) else {
                        return Ok(());
                    };
                    if value.is_some() {
                        on_topic.insert(meter);
                    } else {
                        on_topic.remove(&meter);
                    }
                    Ok(())
                },
            )
            .map_err(|e| anyhow!(e))?;
            for r in &rows {
                on_topic.remove(&r.meter_id);
            }
            on_topic.into_iter().collect()
        } else {
            Vec::new()
        };
        let sender = Sender::in_order(&cfg.kafka)?;
        let mut acks = Vec::with_capacity(rows.len() + missing.len());
        for r in &rows {
            acks.push(sender.send_patiently(|s| s.send_registry(r))?.wait());
        }
        for m in &missing {
            acks.push(sender.send_patiently(|s| s.send_registry_delete(m))?.wait());
        }
        for ack in acks {
            ack.await?;
        }
        println!(
            "{name}: {} meters loaded to {}{}",
            rows.len(),
            cfg.kafka.topics.registry,
            if delete_missing {
                format!(", {} meters not in the file deleted", missing.len())
            } else {
                String::new()
            }
        );
        Ok(())
    })
}

/// `gridwatch weather load`: a weather file to the compacted weather topic.
pub fn weather_load(cfg: &Config, path: &Path) -> Result<()> {
    let rows = crate::embedded::read_weather_file(path)?;
    send_rows(cfg, &rows, Sender::send_weather)?;
    println!(
        "{}: {} region-hours loaded to {}",
        path.display(),
        rows.len(),
        cfg.kafka.topics.weather
    );
    Ok(())
}

/// `gridwatch holidays load`: a holidays file to the compacted holidays topic.
pub fn holidays_load(cfg: &Config, path: &Path) -> Result<()> {
    let rows = crate::embedded::read_holidays_file(path)?;
    send_rows(cfg, &rows, Sender::send_holiday)?;
    println!(
        "{}: {} holidays loaded to {}",
        path.display(),
        rows.len(),
        cfg.kafka.topics.holidays
    );
    Ok(())
}

/// `gridwatch outcome record|load`: inspection outcomes to the compacted outcomes topic.
pub fn outcomes_send(cfg: &Config, rows: &[gridwatch_core::Outcome]) -> Result<()> {
    send_rows(cfg, rows, Sender::send_outcome)?;
    println!(
        "{} outcome(s) recorded to {}",
        rows.len(),
        cfg.kafka.topics.outcomes
    );
    Ok(())
}

/// Sends rows to their side topic (the topics made first), waiting for room while the
/// producer's queue is full, and returns once the broker has acknowledged every one.
fn send_rows<T>(
    cfg: &Config,
    rows: &[T],
    send: impl Fn(&Sender, &T) -> Result<gridwatch_ingester::kafka::Ack, SendError>,
) -> Result<()> {
    runtime()?.block_on(async {
        ensure_topics(&cfg.kafka).await.map_err(|e| anyhow!(e))?;
        let sender = Sender::in_order(&cfg.kafka)?;
        let mut acks = Vec::with_capacity(rows.len());
        for row in rows {
            acks.push(sender.send_patiently(|s| send(s, row))?.wait());
        }
        for ack in acks {
            ack.await?;
        }
        Ok(())
    })
}

/// The register's feeders, for keying readings that don't carry theirs.
fn register_feeders(cfg: &Config) -> Result<FeederIndex> {
    let index =
        FeederIndex::follow(&cfg.kafka, "gridwatch-ingester-register").map_err(|e| anyhow!(e))?;
    tracing::info!(meters = index.len(), "register feeders loaded");
    Ok(index)
}

/// `gridwatch ingester`: the HTTP API.
pub fn ingester(cfg: &Config) -> Result<()> {
    let rt = runtime()?;
    rt.block_on(async {
        ensure_topics(&cfg.kafka).await.map_err(|e| anyhow!(e))?;
        let sender = Sender::new(&cfg.kafka)?.with_feeders(register_feeders(cfg)?);
        let listener = tokio::net::TcpListener::bind(&cfg.ingester.listen)
            .await
            .with_context(|| format!("cannot listen on {}", cfg.ingester.listen))?;
        tracing::info!(listen = %cfg.ingester.listen, "ingester listening");
        println!("ingester listening on http://{}", listener.local_addr()?);
        gridwatch_ingester::http::serve(
            listener,
            sender.clone(),
            cfg.ingester.clone(),
            Arc::new(Counters::default()),
            shutdown_signal(),
        )
        .await?;
        sender.flush(Duration::from_secs(10))?;
        Ok(())
    })
}

/// `/readyz`: 503 while the service rebuilds its state (with how much is left), else 200.
fn readiness(c: &Counters) -> (axum::http::StatusCode, String) {
    if c.level(Gauge::Restoring) == 1 {
        (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "restoring: {} readings to replay\n",
                c.level(Gauge::RestoreRemaining)
            ),
        )
    } else {
        (axum::http::StatusCode::OK, "ready\n".into())
    }
}

/// Serves a service's metrics at `/metrics` (Prometheus text), `/healthz` (the process
/// answers) and `/readyz` (it is live, not rebuilding state) on `listen`.
fn serve_metrics(
    rt: &tokio::runtime::Runtime,
    listen: &str,
    counters: Arc<Counters>,
) -> Result<()> {
    use axum::routing::get;
    let ready = counters.clone();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(listen))
        .with_context(|| format!("metrics: cannot listen on {listen}"))?;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let text = counters.prometheus_text();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        text,
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(move || async move { readiness(&ready) }));
    rt.spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("metrics endpoint stopped: {e}");
        }
    });
    tracing::info!(listen, "metrics on /metrics");
    Ok(())
}

/// Whether a service failure is one a restart cannot cure: another instance took over the
/// transactional id (fenced), or a setting the client refuses. Everything else (a broker gone,
/// a transaction timed out, a rebalance) is retried.
fn fatal(e: &anyhow::Error) -> bool {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    e.chain().any(|c| match c.downcast_ref::<KafkaError>() {
        Some(KafkaError::ClientConfig(..)) => true,
        Some(k) => matches!(
            k.rdkafka_error_code(),
            Some(RDKafkaErrorCode::Fenced | RDKafkaErrorCode::ProducerFenced)
        ),
        None => c.is::<gridwatch_anomaly_detector::ConfigError>(),
    })
}

/// Runs a service until it stops cleanly. A failure a restart can cure restarts it in this
/// process after a backoff (1 s, doubling to 30 s; back to 1 s after a run of two minutes),
/// while `/readyz` says not ready: a broker restart or a lost transaction costs a restore from
/// the detector's checkpoint, not the process.
fn supervise(
    name: &str,
    counters: &Counters,
    stop: &AtomicBool,
    mut run: impl FnMut() -> Result<()>,
) -> Result<()> {
    let mut backoff = Duration::from_secs(1);
    loop {
        let started = std::time::Instant::now();
        let Err(e) = run() else { return Ok(()) };
        if fatal(&e) || stop.load(Ordering::Relaxed) {
            return Err(e);
        }
        counters.set(Gauge::Restoring, 1);
        Restarted.emit(counters);
        if started.elapsed() > Duration::from_secs(120) {
            backoff = Duration::from_secs(1);
        }
        tracing::error!("{name} failed, restarting in {backoff:?}: {e:#}");
        let until = std::time::Instant::now() + backoff;
        while std::time::Instant::now() < until {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// `gridwatch detect`: the anomaly-detector service.
pub fn detect(cfg: &Config) -> Result<()> {
    let rt = runtime()?;
    rt.block_on(ensure_topics(&cfg.kafka))
        .map_err(|e| anyhow!(e))?;
    let stop = stop_flag(&rt);
    let counters = Arc::new(Counters::default());
    serve_metrics(&rt, &cfg.detector.service.metrics_listen, counters.clone())?;
    let (cfg, served) = (cfg.clone(), counters.clone());
    rt.block_on(rt.spawn_blocking(move || {
        let d = &cfg.detector;
        let watch = gridwatch_detector_service::GroupWatch::default();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                gridwatch_detector_service::audit(&cfg.kafka, &d.service, &served, &stop, &watch)
            });
            let ran = supervise("detector", &served, &stop, || {
                gridwatch_detector_service::run(
                    &cfg.kafka, &d.service, &d.engine, &served, &stop, &watch,
                )
            });
            // The audit ends with the service, however the service ended.
            stop.store(true, Ordering::Relaxed);
            ran
        })
    }))??;
    println!("detector stopped: {:?}", counters.snapshot());
    Ok(())
}

/// `gridwatch sink`: alerts to Arrow files.
pub fn sink(cfg: &Config, out: &Path) -> Result<()> {
    let rt = runtime()?;
    rt.block_on(ensure_topics(&cfg.kafka))
        .map_err(|e| anyhow!(e))?;
    let stop = stop_flag(&rt);
    let counters = Arc::new(Counters::default());
    serve_metrics(&rt, &cfg.sink.metrics_listen, counters.clone())?;
    let (cfg, out, served) = (cfg.clone(), out.to_path_buf(), counters.clone());
    rt.block_on(rt.spawn_blocking(move || {
        supervise("sink", &served, &stop, || {
            gridwatch_sink::service::run(&cfg.kafka, &cfg.sink, &out, &served, &stop)
        })
    }))??;
    println!("sink stopped: {:?}", counters.snapshot());
    Ok(())
}

/// What `gridwatch alerts tail` and `gridwatch dlq tail` do.
#[derive(clap::Args)]
pub struct Tail {
    /// Start at the oldest record instead of the newest.
    #[arg(long)]
    pub from_beginning: bool,
    /// Stop after this many records.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Stop after this many seconds without a new record, once every partition has been read to
    /// its end (a partition a broker is slow to serve is waited for, not cut short).
    #[arg(long)]
    pub idle_exit: Option<u64>,
}

/// Prints the committed records of `topic` as lines, for operators (`alerts tail`, `dlq tail`).
pub fn tail(cfg: &Config, topic: &str, t: Tail) -> Result<()> {
    let Tail {
        from_beginning,
        limit,
        idle_exit,
    } = t;
    let rt = runtime()?;
    let stop = stop_flag(&rt);
    // Partition EOF marks each partition read to its end (past transaction markers too), so
    // `--idle-exit` never stops while a partition still has records to give: after a broker's
    // restart a partition's first fetch can take longer than the idle time.
    let consumer: QuietConsumer = consumer_config(&cfg.kafka, "gridwatch-tail")
        .set("enable.partition.eof", "true")
        .create_with_context(Quiet)?;
    let parts = partitions(&consumer, topic).map_err(|e| anyhow!(e))?;
    let mut at_end = std::collections::BTreeSet::new();
    let mut tpl = TopicPartitionList::new();
    for &p in &parts {
        tpl.add_partition_offset(
            topic,
            p,
            if from_beginning {
                Offset::Beginning
            } else {
                Offset::End
            },
        )?;
    }
    consumer.assign(&tpl)?;
    let mut out = io::stdout().lock();
    let mut n = 0u64;
    let mut idle = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) && limit.is_none_or(|l| n < l) {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) if transient(&e) => {
                tracing::warn!("{e} (retrying)");
            }
            Some(msg) => {
                let msg = msg?;
                at_end.remove(&msg.partition());
                out.write_all(msg.payload().unwrap_or_default())?;
                out.write_all(b"\n")?;
                out.flush()?;
                n += 1;
                idle = std::time::Instant::now();
            }
            None => {
                let Some(s) = idle_exit else { continue };
                let idle_for = idle.elapsed();
                if at_end.len() == parts.len() && idle_for >= Duration::from_secs(s) {
                    break;
                }
                // A partition whose broker stays away is not waited for forever.
                if idle_for >= Duration::from_secs((10 * s).max(60)) {
                    let unread: Vec<i32> = parts
                        .iter()
                        .copied()
                        .filter(|p| !at_end.contains(p))
                        .collect();
                    eprintln!(
                        "{topic}: partitions {unread:?} not read to their end after {} s \
                         without a record; stopping",
                        idle_for.as_secs()
                    );
                    break;
                }
            }
        }
    }
    Ok(())
}

/// The open cases on the compacted `gridwatch.suspects` topic, read to its end: the latest
/// alert of each case still standing (a resolved case is a tombstone).
pub fn read_suspects(cfg: &Config) -> Result<Vec<gridwatch_core::Alert>> {
    let mut cases = std::collections::BTreeMap::new();
    read_compacted(
        &cfg.kafka,
        "gridwatch-suspects",
        &cfg.kafka.topics.suspects,
        Duration::from_secs(120),
        |key, value| {
            let key = String::from_utf8_lossy(key.unwrap_or_default()).into_owned();
            match value {
                None => {
                    cases.remove(&key);
                }
                Some(v) => {
                    let alert: gridwatch_core::Alert =
                        serde_json::from_slice(v).map_err(|e| e.to_string())?;
                    cases.insert(key, alert);
                }
            }
            Ok(())
        },
    )
    .map_err(|e| anyhow!(e))?;
    Ok(cases.into_values().collect())
}

/// `gridwatch simulate --to-kafka`: the register to its topic, the readings straight to the
/// readings topic (no CSV), the truth to `out`; prints the rate.
pub fn simulate_to_kafka(
    cfg: &Config,
    out: &Path,
    sim: gridwatch_simulator::SimConfig,
) -> Result<()> {
    let utility = gridwatch_simulator::Utility::generate(sim).map_err(|e| anyhow!(e))?;
    crate::demo::write_truth(out, &utility)?;
    registry_load(cfg, &out.join("registry.csv"), false, None)?;
    let rt = runtime()?;
    let sender = rt.block_on(async { Sender::in_order(&cfg.kafka) })?;
    let bar = if io::stderr().is_terminal() {
        ProgressBar::new(0)
    } else {
        ProgressBar::hidden()
    };
    let started = std::time::Instant::now();
    let mut acks = Vec::new();
    let mut failed = 0u64;
    let mut settle = |acks: &mut Vec<gridwatch_ingester::kafka::Ack>| {
        let results = rt.block_on(futures::future::join_all(acks.drain(..).map(|a| a.wait())));
        failed += results.iter().filter(|r| r.is_err()).count() as u64;
    };
    let n = utility.readings::<anyhow::Error>(
        |r| {
            let reading = r.to_reading();
            acks.push(sender.send_patiently(|s| s.send_reading(&reading))?);
            if acks.len() >= 50_000 {
                settle(&mut acks);
            }
            Ok(())
        },
        |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        },
    )?;
    settle(&mut acks);
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "produced {n} readings to {} in {secs:.1} s = {:.0} readings/s; truth in {}/",
        cfg.kafka.topics.readings,
        n as f64 / secs.max(1e-9),
        out.display()
    );
    if failed > 0 {
        bail!("{failed} readings were not acknowledged by Kafka");
    }
    Ok(())
}
