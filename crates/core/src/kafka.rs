//! rdkafka client settings shared by the three services.

use crate::config::KafkaConfig;
use rdkafka::ClientConfig;

/// Whether a send failed only because the producer's local queue is full: the broker is slower
/// than the input, so the sender waits for space and tries again.
pub fn queue_full(e: &rdkafka::error::KafkaError) -> bool {
    matches!(
        e,
        rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull)
    )
}

/// Sends with `send`, retrying while `full` says the producer's local queue is full, after
/// `wait` (serving delivery reports, or a short sleep) each time: the one place gridwatch waits
/// for queue space. Any other error is returned.
pub fn retry_while_full<T, E>(
    mut send: impl FnMut() -> Result<T, E>,
    full: impl Fn(&E) -> bool,
    mut wait: impl FnMut(),
) -> Result<T, E> {
    loop {
        match send() {
            Err(e) if full(&e) => wait(),
            other => return other,
        }
    }
}

/// A client config with the bootstrap servers and the passthrough properties applied.
pub fn client_config(k: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.bootstrap_servers);
    for (key, value) in &k.properties {
        c.set(key, value);
    }
    c
}

/// Whether a consumer error is a passing one the client recovers from by itself (a broker
/// gone or restarting, a leader moving): log it and poll on, rather than give up.
pub fn transient(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::BrokerTransportFailure
                | C::AllBrokersDown
                | C::NetworkException
                | C::NotLeaderForPartition
                | C::LeaderNotAvailable
                | C::RequestTimedOut
                | C::OperationTimedOut
                | C::CoordinatorNotAvailable
                | C::NotCoordinator
                | C::CoordinatorLoadInProgress
                // An offset a still-open transaction carries (KIP-447): settled when that
                // transaction ends, by its producer, its successor or its timeout.
                | C::UnstableOffsetCommit
        )
    )
}

/// A consumer error met while reading `what`: a passing one ([`transient`]) is counted in
/// `gridwatch_kafka_errors_retried_total` and ridden out (`true`: poll on; the client recovers
/// by itself, and a new run would be another rebalance); any other is the caller's to end on.
pub fn ride_out(
    e: &rdkafka::error::KafkaError,
    what: &str,
    counters: &crate::events::Counters,
) -> bool {
    use crate::events::{InternalEvent, KafkaRetried};
    if !transient(e) {
        return false;
    }
    KafkaRetried {
        what,
        error: &e.to_string(),
    }
    .emit(counters);
    true
}

/// An idempotent, `acks=all` producer config: nothing acknowledged is lost or duplicated
/// by retries.
pub fn producer_config(k: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.bootstrap_servers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "zstd")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        // The Java client's partitioner: the embedded run groups readings as the topic does
        // (`partition::partition_for`), and so do producers of other languages.
        .set("partitioner", "murmur2_random");
    for (key, value) in &k.properties {
        c.set(key, value);
    }
    c
}

/// A client context that keeps the last error librdkafka reported for the whole client (a
/// failed SASL authentication, an untrusted certificate), so a request that then times out
/// can say why instead of only "timed out".
#[derive(Default)]
pub struct ErrorTrap {
    last: std::sync::Mutex<Option<String>>,
}

impl ErrorTrap {
    /// The last client-wide error, if any.
    pub fn last(&self) -> Option<String> {
        self.last.lock().map(|l| l.clone()).unwrap_or(None)
    }
}

impl rdkafka::ClientContext for ErrorTrap {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::warn!("kafka: {error}: {reason}");
        if let Ok(mut l) = self.last.lock() {
            *l = Some(reason.to_string());
        }
    }
}

impl rdkafka::consumer::ConsumerContext for ErrorTrap {}

/// Why one of gridwatch's Kafka operations failed. Callers branch on [`KafkaOpError::passing`]
/// (a cluster out of reach, a coordinator or leader moving: waited out) against the rest (a
/// refusal: reported).
#[derive(Debug, thiserror::Error)]
pub enum KafkaOpError {
    /// No broker answered; `why` is the client-wide reason librdkafka gave (a refused
    /// password, an untrusted certificate), if any.
    #[error("cannot reach Kafka at {servers}: {source}{why}")]
    Unreachable {
        servers: String,
        #[source]
        source: Box<rdkafka::error::KafkaError>,
        why: String,
    },
    /// A client call failed; `what` says which.
    #[error("{what}: {source}")]
    Call {
        what: String,
        #[source]
        source: Box<rdkafka::error::KafkaError>,
    },
    /// A topic is missing, or the cluster reports it unusable.
    #[error("topic {topic}: {problem}")]
    Topic { topic: String, problem: String },
    /// A partition's own error in an answer (an offset still unstable, a leader moving).
    #[error("{topic} partition {partition}: {source}")]
    Partition {
        topic: String,
        partition: i32,
        #[source]
        source: Box<rdkafka::error::KafkaError>,
    },
    #[error("cannot create topic {topic}: {code}")]
    Create {
        topic: String,
        code: rdkafka::types::RDKafkaErrorCode,
    },
    /// A setting the broker would refuse, named.
    #[error("{0}")]
    Config(String),
    #[error("{topic} could not be read to its end within {timeout:?}")]
    NotToEnd {
        topic: String,
        timeout: std::time::Duration,
    },
    /// A record the caller could not take, and why.
    #[error("{topic} partition {partition} offset {offset}: {reason}")]
    Record {
        topic: String,
        partition: i32,
        offset: i64,
        reason: String,
    },
}

impl KafkaOpError {
    /// Whether it is a passing condition (the cluster out of reach, a broker of several lost,
    /// a coordinator or leader moving), worth waiting out rather than reporting.
    pub fn passing(&self) -> bool {
        match self {
            KafkaOpError::Unreachable { .. } | KafkaOpError::NotToEnd { .. } => true,
            KafkaOpError::Call { source, .. } | KafkaOpError::Partition { source, .. } => {
                transient(source)
            }
            _ => false,
        }
    }
}

/// Names a failed client call.
fn call(what: impl Into<String>) -> impl FnOnce(rdkafka::error::KafkaError) -> KafkaOpError {
    let what = what.into();
    move |source| KafkaOpError::Call {
        what,
        source: Box::new(source),
    }
}

fn no_topic(topic: &str, problem: impl Into<String>) -> KafkaOpError {
    KafkaOpError::Topic {
        topic: topic.to_string(),
        problem: problem.into(),
    }
}

/// The cluster's metadata, from a short-lived client whose client-wide errors are kept: when
/// the cluster can't be reached, the error says why (a refused password, an untrusted
/// certificate) rather than only that a request timed out.
pub fn metadata(k: &KafkaConfig) -> Result<rdkafka::metadata::Metadata, KafkaOpError> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let probe: BaseConsumer<ErrorTrap> = client_config(k)
        .create_with_context(ErrorTrap::default())
        .map_err(call("kafka client"))?;
    probe
        .fetch_metadata(None, std::time::Duration::from_secs(10))
        .map_err(|e| {
            // Client-wide errors wait in the client's queue until it is polled.
            for _ in 0..5 {
                if probe.poll(std::time::Duration::from_millis(100)).is_none()
                    && probe.context().last().is_some()
                {
                    break;
                }
            }
            let why = probe
                .context()
                .last()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            KafkaOpError::Unreachable {
                servers: k.bootstrap_servers.clone(),
                source: Box::new(e),
                why,
            }
        })
}

/// Creates the gridwatch topics that don't exist yet: readings, alerts and the DLQ with
/// `partitions` partitions, the registry and the suspects compacted, the weather and the
/// holidays compacted on one partition (every detector reads all of them). Existing topics are left as they are.
pub async fn ensure_topics(k: &KafkaConfig) -> Result<(), KafkaOpError> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::types::RDKafkaErrorCode;

    let admin: AdminClient<rdkafka::client::DefaultClientContext> = client_config(k)
        .create()
        .map_err(call("kafka admin client"))?;
    k.validate().map_err(KafkaOpError::Config)?;
    let isr = k.min_insync().to_string();
    let retention_ms = (k.retention_s * 1000).to_string();
    let topic = |name, partitions| {
        NewTopic::new(
            name,
            partitions,
            TopicReplication::Fixed(k.replication_factor),
        )
        .set("min.insync.replicas", &isr)
    };
    let log = |name| topic(name, k.partitions).set("retention.ms", &retention_ms);
    let compacted = |name, partitions| topic(name, partitions).set("cleanup.policy", "compact");
    let t = &k.topics;
    let topics = [
        log(&t.readings),
        log(&t.alerts),
        log(&t.dlq),
        compacted(&t.registry, k.partitions),
        compacted(&t.suspects, k.partitions),
        compacted(&t.weather, 1),
        compacted(&t.holidays, 1),
        compacted(&t.outcomes, 1),
        // The detector's state: chunks far below the broker's message limit, in segments small
        // enough that the cleaner drops superseded snapshots within hours, not at 1 GiB.
        compacted(&t.state, k.partitions)
            .set("segment.bytes", "67108864")
            .set("min.cleanable.dirty.ratio", "0.2"),
    ];
    // Only the topics that don't exist yet: every service calls this at start, and a
    // CreateTopics request needs the controller, which may be the broker that is down.
    let existing: std::collections::HashSet<String> = metadata(k)?
        .topics()
        .iter()
        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
        .map(|t| t.name().to_string())
        .collect();
    let topics: Vec<NewTopic<'_>> = topics
        .into_iter()
        .filter(|t| !t.name.is_empty() && !existing.contains(t.name))
        .collect();
    if topics.is_empty() {
        return Ok(());
    }
    let opts = AdminOptions::new().operation_timeout(Some(std::time::Duration::from_secs(30)));
    let results = admin
        .create_topics(&topics, &opts)
        .await
        .map_err(call(format!(
            "cannot create topics at {}",
            k.bootstrap_servers
        )))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(KafkaOpError::Create { topic, code }),
        }
    }
    Ok(())
}

/// The partition ids of `topic`, as the cluster reports them.
pub fn partitions<C: rdkafka::consumer::ConsumerContext>(
    consumer: &rdkafka::consumer::BaseConsumer<C>,
    topic: &str,
) -> Result<Vec<i32>, KafkaOpError> {
    use rdkafka::consumer::Consumer;
    let md = consumer
        .fetch_metadata(Some(topic), std::time::Duration::from_secs(10))
        .map_err(call(format!("metadata of {topic}")))?;
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| no_topic(topic, "not found"))?;
    if let Some(e) = t.error() {
        return Err(no_topic(topic, format!("{e:?}")));
    }
    let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
    ids.sort_unstable();
    if ids.is_empty() {
        return Err(no_topic(topic, "has no partitions"));
    }
    Ok(ids)
}

/// A consumer config for reading committed data without automatic commits.
pub fn consumer_config(k: &KafkaConfig, group_id: &str) -> ClientConfig {
    let mut c = client_config(k);
    c.set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed");
    c
}

/// The consumers' client context: librdkafka's errors go to the log at ERROR, except reaching
/// the end of a partition, which is how a compacted topic is read to its end and how every
/// caught-up consumer idles — normal, so DEBUG (at ERROR it would page someone at 3 a.m.).
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl rdkafka::ClientContext for Quiet {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        use rdkafka::error::KafkaError;
        use rdkafka::types::RDKafkaErrorCode;
        match error {
            KafkaError::Global(RDKafkaErrorCode::PartitionEOF) | KafkaError::PartitionEOF(_) => {
                tracing::debug!("librdkafka: {error}: {reason}")
            }
            _ => tracing::error!("librdkafka: {error}: {reason}"),
        }
    }
}

impl rdkafka::consumer::ConsumerContext for Quiet {}

/// A consumer with the [`Quiet`] context.
pub type QuietConsumer = rdkafka::consumer::BaseConsumer<Quiet>;

/// Reads a compacted topic (the register, the suspects, the weather) from the beginning to its current end,
/// handing each record's key and value (None: a tombstone) to `apply`, and returns the consumer
/// positioned for what comes next. The end is the partition-EOF event, which also holds for
/// topics written in transactions (their last offsets are commit markers no message carries);
/// a caller that keeps polling gets `KafkaError::PartitionEOF` again whenever it catches up and
/// should skip it. Fails if the end isn't reached within `timeout`, or when `apply` fails.
pub fn read_compacted(
    k: &KafkaConfig,
    group_id: &str,
    topic: &str,
    timeout: std::time::Duration,
    mut apply: impl FnMut(Option<&[u8]>, Option<&[u8]>) -> Result<(), String>,
) -> Result<QuietConsumer, KafkaOpError> {
    read_compacted_from(
        k,
        group_id,
        topic,
        &std::collections::BTreeMap::new(),
        timeout,
        |_, _, key, value| apply(key, value),
    )
    .map(|(consumer, _)| consumer)
}

/// [`read_compacted`] from `from` (per partition, the first offset to read; a partition not
/// in it from the beginning), handing each record's partition and offset too. Also returns, per
/// partition, the next offset after what was read.
pub fn read_compacted_from(
    k: &KafkaConfig,
    group_id: &str,
    topic: &str,
    from: &std::collections::BTreeMap<i32, i64>,
    timeout: std::time::Duration,
    mut apply: impl FnMut(i32, i64, Option<&[u8]>, Option<&[u8]>) -> Result<(), String>,
) -> Result<(QuietConsumer, std::collections::BTreeMap<i32, i64>), KafkaOpError> {
    use rdkafka::consumer::Consumer;
    use rdkafka::error::KafkaError;
    use rdkafka::message::Message;
    use rdkafka::{Offset, TopicPartitionList};
    use std::collections::BTreeSet;
    use std::time::{Duration, Instant};

    let consumer: QuietConsumer = consumer_config(k, group_id)
        .set("enable.partition.eof", "true")
        .create_with_context(Quiet)
        .map_err(call(format!("consumer for {topic}")))?;
    let parts = partitions(&consumer, topic)?;
    let mut tpl = TopicPartitionList::new();
    let mut next = std::collections::BTreeMap::new();
    for p in &parts {
        let start = from
            .get(p)
            .map_or(Offset::Beginning, |&o| Offset::Offset(o));
        tpl.add_partition_offset(topic, *p, start)
            .map_err(call(format!("reading {topic}")))?;
        next.insert(*p, from.get(p).copied().unwrap_or(0));
    }
    consumer
        .assign(&tpl)
        .map_err(call(format!("reading {topic}")))?;
    // A partition with nothing past where reading starts is at its end already: the broker
    // would answer its first fetch only after `fetch.wait.max.ms` (half a second per empty
    // topic at every start and hand-over, for the weather and holidays most deployments
    // leave empty).
    let mut at_end = BTreeSet::new();
    for p in &parts {
        if let Ok((low, high)) = consumer.fetch_watermarks(topic, *p, timeout) {
            if from.get(p).copied().unwrap_or(0).max(low) >= high {
                at_end.insert(*p);
            }
        }
    }
    let deadline = Instant::now() + timeout;
    while at_end.len() < parts.len() {
        if Instant::now() > deadline {
            return Err(KafkaOpError::NotToEnd {
                topic: topic.to_string(),
                timeout,
            });
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) if transient(&e) => {
                tracing::warn!("reading {topic}: {e} (retrying)");
            }
            Some(Err(e)) => return Err(call(format!("reading {topic}"))(e)),
            Some(Ok(msg)) => {
                at_end.remove(&msg.partition());
                next.insert(msg.partition(), msg.offset() + 1);
                apply(msg.partition(), msg.offset(), msg.key(), msg.payload()).map_err(
                    |reason| KafkaOpError::Record {
                        topic: topic.to_string(),
                        partition: msg.partition(),
                        offset: msg.offset(),
                        reason,
                    },
                )?;
            }
        }
    }
    Ok((consumer, next))
}

/// Sets `gridwatch_consumer_lag{topic,partition}`: records on each partition not read yet,
/// `at(partition)` being the next offset to read (`None`: nothing read, the log start). One
/// watermark request per partition: call it every few seconds, not per record. Returns each
/// partition's lag.
pub fn report_lag<C: rdkafka::consumer::ConsumerContext>(
    consumer: &rdkafka::consumer::BaseConsumer<C>,
    topic: &str,
    parts: &[i32],
    at: impl Fn(i32) -> Option<i64>,
    counters: &crate::events::Counters,
) -> std::collections::BTreeMap<i32, i64> {
    use rdkafka::consumer::Consumer;
    let mut lags = std::collections::BTreeMap::new();
    for &p in parts {
        if let Ok((low, high)) =
            consumer.fetch_watermarks(topic, p, std::time::Duration::from_secs(1))
        {
            let next = at(p).unwrap_or(low).max(low);
            let lag = (high - next).max(0);
            counters.set_labelled(
                "gridwatch_consumer_lag",
                crate::events::labels(&[("topic", topic), ("partition", &p.to_string())]),
                lag,
            );
            lags.insert(p, lag);
        }
    }
    lags
}

/// This process's name within a consumer group (`group.instance.id`, static membership: a
/// restarted instance takes its partitions back at once instead of after the session timeout) and
/// in its transactional id: `configured` when set, else the host's name (a Kubernetes
/// StatefulSet's pod name, stable across restarts), else `0`.
pub fn instance_id(configured: &str) -> String {
    if !configured.is_empty() {
        return configured.to_string();
    }
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "0".into())
}

/// A consumer-group member's settings: static membership under `instance` with the eager
/// `range` assignor.
///
/// Not cooperative-sticky: with static members it can leave a partition without an owner for
/// good. A cooperative rebalance moves a partition in two rounds: its owner gives it up in the
/// first and rejoins, and only the second round hands it on. A static member restarted between
/// the rounds (a crash, a restart on a broker's loss) is given the first round's cached
/// assignment by the coordinator without a rebalance, so the second round never comes and the
/// partition it gave up belongs to nobody (issue 23: a third of the readings never judged). An
/// eager assignor hands out every partition in every round, so any cached assignment covers the
/// topic. `range` orders static members by instance id, so an instance that comes back under
/// its name gets the same partitions.
pub fn group_member_config(k: &KafkaConfig, group_id: &str, instance: &str) -> ClientConfig {
    let mut c = consumer_config(k, group_id);
    c.set("partition.assignment.strategy", "range")
        .set("group.instance.id", instance);
    for (key, value) in &k.properties {
        c.set(key, value);
    }
    c
}

/// The partitions of `topic` in a consumer-protocol member assignment (the bytes a group's
/// description carries per member: version, then per topic its name and partitions, then user
/// data). `None` if the bytes are not such an assignment.
pub fn assigned_partitions(bytes: &[u8], topic: &str) -> Option<Vec<i32>> {
    fn take<const N: usize>(b: &mut &[u8]) -> Option<[u8; N]> {
        let (head, rest) = b.split_at_checked(N)?;
        *b = rest;
        head.try_into().ok()
    }
    let mut b = bytes;
    take::<2>(&mut b)?;
    let topics = i32::from_be_bytes(take::<4>(&mut b)?);
    let mut out = Vec::new();
    for _ in 0..topics.max(0) {
        let len = i16::from_be_bytes(take::<2>(&mut b)?).max(0) as usize;
        let (name, rest) = b.split_at_checked(len)?;
        b = rest;
        let n = i32::from_be_bytes(take::<4>(&mut b)?);
        for _ in 0..n.max(0) {
            let p = i32::from_be_bytes(take::<4>(&mut b)?);
            if name == topic.as_bytes() {
                out.push(p);
            }
        }
    }
    Some(out)
}

/// What the group's coordinator says of it: whether it is stable, its members, and which
/// member (its id, which starts with a static member's instance id) holds each partition of a
/// topic.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupView {
    pub stable: bool,
    pub members: usize,
    pub owners: std::collections::BTreeMap<i32, String>,
}

/// A consumer group over one topic, as operators and the detector's audit look at it: the
/// coordinator's view, and per partition its committed offset (`None`: never committed) and
/// the log's start and end.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupStatus {
    pub view: GroupView,
    pub partitions: Vec<PartitionStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionStatus {
    pub partition: i32,
    pub committed: Option<i64>,
    pub low: i64,
    pub high: i64,
}

/// The group's view, committed offsets and watermarks of every partition of `topic`. A
/// partition whose committed offset Kafka cannot give yet (a transaction carrying it still
/// open: UNSTABLE_OFFSET_COMMIT) makes the whole answer an error, never "not committed".
pub fn group_status<C: rdkafka::consumer::ConsumerContext>(
    c: &rdkafka::consumer::BaseConsumer<C>,
    group_id: &str,
    topic: &str,
    timeout: std::time::Duration,
) -> Result<GroupStatus, KafkaOpError> {
    use rdkafka::consumer::Consumer;
    let parts = partitions(c, topic)?;
    let view = describe_group(c.client(), group_id, topic, timeout)?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    for &p in &parts {
        tpl.add_partition(topic, p);
    }
    let committed = c
        .committed_offsets(tpl, timeout)
        .map_err(call(format!("committed offsets of group {group_id}")))?;
    let mut out = Vec::with_capacity(parts.len());
    for &partition in &parts {
        let elem = committed.find_partition(topic, partition);
        if let Some(Err(source)) = elem.as_ref().map(|e| e.error()) {
            return Err(KafkaOpError::Partition {
                topic: topic.to_string(),
                partition,
                source: Box::new(source),
            });
        }
        let committed = match elem.map(|e| e.offset()) {
            Some(rdkafka::Offset::Offset(o)) => Some(o),
            _ => None,
        };
        let (low, high) = c
            .fetch_watermarks(topic, partition, timeout)
            .map_err(call(format!("offsets of {topic} partition {partition}")))?;
        out.push(PartitionStatus {
            partition,
            committed,
            low,
            high,
        });
    }
    Ok(GroupStatus {
        view,
        partitions: out,
    })
}

/// Asks the group's coordinator for its members' assignments (DescribeGroups).
pub fn describe_group<C: rdkafka::ClientContext>(
    client: &rdkafka::client::Client<C>,
    group_id: &str,
    topic: &str,
    timeout: std::time::Duration,
) -> Result<GroupView, KafkaOpError> {
    let list = client
        .fetch_group_list(Some(group_id), timeout)
        .map_err(call(format!("describing group {group_id}")))?;
    let mut view = GroupView::default();
    for g in list.groups().iter().filter(|g| g.name() == group_id) {
        view.stable = g.state().eq_ignore_ascii_case("stable");
        view.members = g.members().len();
        for m in g.members() {
            let ps = m
                .assignment()
                .and_then(|a| assigned_partitions(a, topic))
                .unwrap_or_default();
            view.owners
                .extend(ps.into_iter().map(|p| (p, m.id().to_string())));
        }
    }
    Ok(view)
}

/// Judges, look after look, which partitions of the readings topic the group as a whole leaves
/// unwatched: held by no member (or the group mid-rebalance), or holding records the group has
/// never committed past. A partition counts once it has been so for longer than `bound_ms`, so
/// the moments of an ordinary rebalance raise nothing. Pure: the looks come from
/// [`describe_group`] and the committed offsets.
#[derive(Debug, Default)]
pub struct Ownership {
    bound_ms: i64,
    since: std::collections::BTreeMap<i32, i64>,
}

impl Ownership {
    pub fn new(bound_ms: i64) -> Ownership {
        Ownership {
            bound_ms,
            since: Default::default(),
        }
    }

    /// One look at `now_ms`: the topic's partitions, the group's view, and the partitions with
    /// records but no committed offset. Returns the partitions unwatched longer than the bound.
    pub fn look(
        &mut self,
        now_ms: i64,
        partitions: &[i32],
        group: &GroupView,
        never_committed: &std::collections::BTreeSet<i32>,
    ) -> Vec<i32> {
        let unwatched =
            |p: &i32| !group.stable || !group.owners.contains_key(p) || never_committed.contains(p);
        self.since
            .retain(|p, _| partitions.contains(p) && unwatched(p));
        let mut out = Vec::new();
        for p in partitions.iter().filter(|p| unwatched(p)) {
            let since = *self.since.entry(*p).or_insert(now_ms);
            if now_ms - since > self.bound_ms {
                out.push(*p);
            }
        }
        out
    }
}

/// A group member's client context: logs as [`Quiet`] does, and notes the partitions the group
/// takes away, for the run loop to drop what it holds of them (their next owner reads them
/// from the group's commit).
#[derive(Default)]
pub struct GroupEvents {
    revoked: std::sync::Mutex<Vec<i32>>,
    changed: std::sync::atomic::AtomicBool,
}

impl GroupEvents {
    /// Whether the assignment changed since the last call, and the partitions taken away.
    pub fn take(&self) -> Option<Vec<i32>> {
        use std::sync::atomic::Ordering;
        if !self.changed.swap(false, Ordering::Acquire) {
            return None;
        }
        Some(std::mem::take(
            &mut *self.revoked.lock().unwrap_or_else(|e| e.into_inner()),
        ))
    }
}

impl rdkafka::ClientContext for GroupEvents {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        rdkafka::ClientContext::error(&Quiet, error, reason)
    }
}

impl rdkafka::consumer::ConsumerContext for GroupEvents {
    fn post_rebalance(
        &self,
        _: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &rdkafka::consumer::Rebalance<'_>,
    ) {
        use rdkafka::consumer::Rebalance;
        let (what, tpl) = match rebalance {
            Rebalance::Assign(tpl) => ("assigned", Some(tpl)),
            Rebalance::Revoke(tpl) => ("revoked", Some(tpl)),
            Rebalance::Error(e) => {
                tracing::warn!("rebalance: {e}");
                ("error", None)
            }
        };
        let ps: Vec<i32> = tpl
            .map(|t| t.elements().iter().map(|e| e.partition()).collect())
            .unwrap_or_default();
        tracing::info!(partitions = ?ps, "partitions {what}");
        if what == "revoked" {
            self.revoked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(ps);
        }
        self.changed
            .store(true, std::sync::atomic::Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_cluster_out_of_reach_or_an_unstable_offset_is_passing_a_refusal_is_not() {
        use super::KafkaOpError as E;
        use rdkafka::error::KafkaError;
        use rdkafka::types::RDKafkaErrorCode as C;
        let unstable = E::Partition {
            topic: "r".into(),
            partition: 2,
            source: Box::new(KafkaError::OffsetFetch(C::UnstableOffsetCommit)),
        };
        assert!(unstable.passing());
        assert!(
            unstable.to_string().starts_with("r partition 2: "),
            "{unstable}"
        );
        let down = E::Call {
            what: "metadata of r".into(),
            source: Box::new(KafkaError::MetadataFetch(C::AllBrokersDown)),
        };
        assert!(down.passing());
        let refused = E::Create {
            topic: "r".into(),
            code: C::PolicyViolation,
        };
        assert!(!refused.passing());
        assert!(!E::Config("kafka.partitions: at least 1".into()).passing());
        let denied = E::Call {
            what: "describing group g".into(),
            source: Box::new(KafkaError::GroupListFetch(C::GroupAuthorizationFailed)),
        };
        assert!(!denied.passing());
    }

    use super::*;
    use std::collections::BTreeSet;

    fn assignment(topics: &[(&str, &[i32])]) -> Vec<u8> {
        let mut b = 1i16.to_be_bytes().to_vec();
        b.extend((topics.len() as i32).to_be_bytes());
        for (t, ps) in topics {
            b.extend((t.len() as i16).to_be_bytes());
            b.extend(t.as_bytes());
            b.extend((ps.len() as i32).to_be_bytes());
            for p in *ps {
                b.extend(p.to_be_bytes());
            }
        }
        b.extend((-1i32).to_be_bytes());
        b
    }

    #[test]
    fn a_member_assignment_gives_its_partitions_of_the_topic_only() {
        let a = assignment(&[("other", &[0, 1]), ("gridwatch.readings", &[2, 0])]);
        assert_eq!(
            assigned_partitions(&a, "gridwatch.readings"),
            Some(vec![2, 0])
        );
        assert_eq!(assigned_partitions(&a, "absent"), Some(vec![]));
        assert_eq!(assigned_partitions(&a[..9], "gridwatch.readings"), None);
        assert_eq!(assigned_partitions(&[], "gridwatch.readings"), None);
    }

    fn view(stable: bool, owned: &[i32]) -> GroupView {
        GroupView {
            stable,
            members: 2,
            owners: owned.iter().map(|&p| (p, format!("m{p}"))).collect(),
        }
    }

    #[test]
    fn a_partition_counts_unwatched_only_after_the_bound_and_stops_counting_once_held() {
        let mut o = Ownership::new(60_000);
        let none = BTreeSet::new();
        let ps = [0, 1, 2];
        // Partition 0 held by nobody: not yet past the bound, then past it.
        assert!(o.look(0, &ps, &view(true, &[1, 2]), &none).is_empty());
        assert!(o.look(60_000, &ps, &view(true, &[1, 2]), &none).is_empty());
        assert_eq!(o.look(60_001, &ps, &view(true, &[1, 2]), &none), vec![0]);
        // A rebalance's moment: everything in flux, but only for a moment.
        assert!(o.look(70_000, &ps, &view(false, &[]), &none).len() == 1);
        // Held again: the clock starts over if it is lost again.
        assert!(o
            .look(80_000, &ps, &view(true, &[0, 1, 2]), &none)
            .is_empty());
        assert!(o.look(130_000, &ps, &view(true, &[1, 2]), &none).is_empty());
        // Held, but never committed while it has records.
        let never: BTreeSet<i32> = [2].into();
        assert!(o
            .look(200_000, &ps, &view(true, &[0, 1, 2]), &never)
            .is_empty());
        assert_eq!(
            o.look(260_001, &ps, &view(true, &[0, 1, 2]), &never),
            vec![2]
        );
    }
}
