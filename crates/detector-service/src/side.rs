//! The side topics every engine reads whole: the register, the weather, the holidays and the
//! inspection outcomes. Read to their ends when partitions are handed to this instance, then
//! followed between batches. A register row goes to the engine of its meter's partition (a
//! delete to all); the rest go to every engine (an engine without the target ignores it).

use crate::task::Task;
use crate::TIMEOUT;
use anyhow::{anyhow, Context, Result};
use gridwatch_core::kafka::{read_compacted, read_compacted_from, transient, QuietConsumer};
use gridwatch_core::{
    partition, Alert, Holiday, KafkaConfig, MeterRecord, RegistryUpdate, WeatherObs,
};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use std::collections::BTreeMap;
use std::time::Duration;

pub(crate) fn registry_update(
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
) -> Result<RegistryUpdate, String> {
    match payload {
        None => {
            let key = key.ok_or("a delete (null value) without a key")?;
            Ok(RegistryUpdate::Delete {
                meter_id: String::from_utf8_lossy(key).into_owned(),
            })
        }
        Some(p) => serde_json::from_slice::<MeterRecord>(p)
            .map(RegistryUpdate::Upsert)
            .map_err(|e| e.to_string()),
    }
}

/// A weather record: the region's temperature for an hour. A tombstone (null value) or a bad
/// record is skipped with a log line; the weather only ever explains load, never raises alerts.
fn weather_obs(payload: Option<&[u8]>) -> Result<Option<WeatherObs>, String> {
    let Some(p) = payload else { return Ok(None) };
    let w: WeatherObs = serde_json::from_slice(p).map_err(|e| e.to_string())?;
    w.validate()
        .map_err(|(field, why)| format!("{field}: {why}"))?;
    Ok(Some(w))
}

/// A holiday record; a tombstone or a bad record is skipped with a log line.
fn holiday(payload: Option<&[u8]>) -> Result<Option<Holiday>, String> {
    let Some(p) = payload else { return Ok(None) };
    let h: Holiday = serde_json::from_slice(p).map_err(|e| e.to_string())?;
    h.validate()
        .map_err(|(field, why)| format!("{field}: {why}"))?;
    Ok(Some(h))
}

/// An inspection outcome from the outcomes topic (`None`: a tombstone).
fn outcome(payload: Option<&[u8]>) -> Result<Option<gridwatch_core::Outcome>, String> {
    let Some(p) = payload else { return Ok(None) };
    let o: gridwatch_core::Outcome = serde_json::from_slice(p).map_err(|e| e.to_string())?;
    o.validate()?;
    Ok(Some(o))
}

/// The side topics every engine reads whole: the register (each row to the engine of its meter's
/// partition, a delete to all), the weather, the holidays and the inspection outcomes (to all:
/// an engine without the target ignores it). Each is read to its end when partitions are handed
/// to this instance, then followed by the consumer that read it.
pub(crate) struct SideTopics {
    registry: QuietConsumer,
    weather: QuietConsumer,
    holidays: QuietConsumer,
    outcomes: QuietConsumer,
}

/// Where a register row applies: the partition of its meter's readings (its feeder's); a delete,
/// which names only the meter, everywhere.
fn registry_partition(u: &RegistryUpdate, partitions: i32) -> Option<i32> {
    match u {
        RegistryUpdate::Upsert(r) => {
            let key =
                partition::reading_key(&r.meter_id, None, || Some(r.feeder_id.as_str().into()));
            Some(partition::partition_for(key.as_bytes(), partitions))
        }
        RegistryUpdate::Delete { .. } => None,
    }
}

/// Hands register row `offset` of register partition `rp` to the tasks that have not seen it:
/// to the engine of its meter's partition (all, for a delete). Alerts from tasks that were
/// live go to `alerts`; a task taking in the register it missed makes none (the run that owned
/// it before may have sent them).
pub(crate) fn apply_registry_row(
    tasks: &mut BTreeMap<i32, Task>,
    partitions: i32,
    (rp, offset): (i32, i64),
    u: &RegistryUpdate,
    alerts: &mut Vec<Alert>,
) {
    let target = registry_partition(u, partitions);
    let mut silent = Vec::new();
    for (&p, task) in tasks.iter_mut() {
        if offset < task.registry.get(&rp).copied().unwrap_or(0) {
            continue;
        }
        task.registry.insert(rp, offset + 1);
        if target.is_none_or(|t| t == p) {
            let out = if task.speaks(rp, offset) {
                &mut *alerts
            } else {
                &mut silent
            };
            task.engine.apply_registry(u.clone(), out);
        }
    }
}

impl SideTopics {
    /// Reads the register (from where the tasks left it), the weather and the holidays to their
    /// ends into the tasks.
    pub(crate) fn read(
        k: &KafkaConfig,
        group_id: &str,
        tasks: &mut BTreeMap<i32, Task>,
        partitions: i32,
        alerts: &mut Vec<Alert>,
    ) -> Result<SideTopics> {
        // Per register partition, from the first row some task has not seen.
        let mut from: BTreeMap<i32, i64> = BTreeMap::new();
        let all: std::collections::BTreeSet<i32> = tasks
            .values()
            .flat_map(|t| t.registry.keys().copied())
            .collect();
        for rp in all {
            if tasks.values().all(|t| t.registry.contains_key(&rp)) {
                let min = tasks.values().map(|t| t.registry[&rp]).min().unwrap_or(0);
                from.insert(rp, min);
            }
        }
        let mut rows = 0u64;
        let (registry, next) = read_compacted_from(
            k,
            &format!("{group_id}-registry"),
            &k.topics.registry,
            &from,
            TIMEOUT * 4,
            |rp, offset, key, value| {
                match registry_update(key, value) {
                    Ok(u) => apply_registry_row(tasks, partitions, (rp, offset), &u, alerts),
                    Err(e) => tracing::error!("bad register record skipped: {e}"),
                }
                rows += 1;
                Ok(())
            },
        )
        .map_err(|e| anyhow!(e))?;
        for task in tasks.values_mut() {
            task.registry.extend(next.iter().map(|(&rp, &o)| (rp, o)));
        }
        let meters: usize = tasks.values().map(|t| t.engine.meters()).sum();
        tracing::info!(rows, meters, "register read");
        let (weather, hours) = read_side(
            k,
            group_id,
            ("weather", &k.topics.weather),
            weather_obs,
            |w| tasks.values_mut().for_each(|t| t.engine.on_weather(w)),
        )?;
        let (holidays, days) = read_side(
            k,
            group_id,
            ("holidays", &k.topics.holidays),
            holiday,
            |h| tasks.values_mut().for_each(|t| t.engine.on_holiday(h)),
        )?;
        let (outcomes, visits) = read_side(
            k,
            group_id,
            ("outcomes", &k.topics.outcomes),
            outcome,
            |o| {
                tasks
                    .values_mut()
                    .for_each(|t| t.engine.add_outcome(o.clone()))
            },
        )?;
        tracing::info!(hours, days, visits, "weather, holidays and outcomes read");
        for task in tasks.values_mut() {
            // Handed over: what it took in silently was the previous owner's to say.
            if task.said.is_none() {
                task.said = Some(task.registry.clone());
            }
            task.taking_in = false;
        }
        Ok(SideTopics {
            registry,
            weather,
            holidays,
            outcomes,
        })
    }

    /// Applies what the side topics have had since they were read (without waiting).
    pub(crate) fn follow(
        &self,
        tasks: &mut BTreeMap<i32, Task>,
        partitions: i32,
        alerts: &mut Vec<Alert>,
    ) -> Result<()> {
        drain(&self.registry, "register", |msg| {
            match registry_update(msg.key(), msg.payload()) {
                Ok(u) => {
                    let at = (msg.partition(), msg.offset());
                    apply_registry_row(tasks, partitions, at, &u, alerts)
                }
                Err(e) => {
                    tracing::error!(offset = msg.offset(), "bad register record skipped: {e}")
                }
            }
        })?;
        drain(&self.weather, "weather", |msg| {
            match weather_obs(msg.payload()) {
                Ok(Some(w)) => tasks.values_mut().for_each(|t| t.engine.on_weather(&w)),
                Ok(None) => {}
                Err(e) => tracing::warn!(offset = msg.offset(), "bad weather record skipped: {e}"),
            }
        })?;
        drain(&self.holidays, "holidays", |msg| {
            match holiday(msg.payload()) {
                Ok(Some(h)) => tasks.values_mut().for_each(|t| t.engine.on_holiday(&h)),
                Ok(None) => {}
                Err(e) => tracing::warn!(offset = msg.offset(), "bad holiday record skipped: {e}"),
            }
        })?;
        drain(&self.outcomes, "outcomes", |msg| {
            match outcome(msg.payload()) {
                Ok(Some(o)) => tasks
                    .values_mut()
                    .for_each(|t| t.engine.add_outcome(o.clone())),
                Ok(None) => {}
                Err(e) => tracing::warn!(offset = msg.offset(), "bad outcome record skipped: {e}"),
            }
        })
    }
}

/// What makes a side topic's record (its value; `None` a tombstone) into something to apply.
type Decode<T> = fn(Option<&[u8]>) -> Result<Option<T>, String>;

/// Reads a compacted side topic (the weather, the holidays) to its end, handing each record
/// `decode` makes something of to `apply` (a tombstone is nothing; a bad record is logged and
/// skipped: these only ever explain load, never raise alerts). Returns the consumer,
/// positioned for what comes next, and how many records were applied.
fn read_side<T>(
    k: &KafkaConfig,
    group_id: &str,
    (what, topic): (&str, &str),
    decode: Decode<T>,
    mut apply: impl FnMut(&T),
) -> Result<(QuietConsumer, u64)> {
    let mut n = 0u64;
    let consumer = read_compacted(
        k,
        &format!("{group_id}-{what}"),
        topic,
        TIMEOUT * 4,
        |_, value| {
            match decode(value) {
                Ok(Some(t)) => {
                    apply(&t);
                    n += 1;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!("bad {what} record skipped: {e}"),
            }
            Ok(())
        },
    )
    .map_err(|e| anyhow!(e))?;
    Ok((consumer, n))
}

/// Hands each record a consumer has fetched to `apply`, without waiting; a passing error is
/// logged and polled past.
fn drain(
    consumer: &QuietConsumer,
    what: &str,
    mut apply: impl FnMut(&rdkafka::message::BorrowedMessage<'_>),
) -> Result<()> {
    while let Some(msg) = consumer.poll(Duration::ZERO) {
        match msg {
            Err(KafkaError::PartitionEOF(_)) => {}
            Err(e) if transient(&e) => tracing::warn!("reading the {what}: {e} (retrying)"),
            Err(e) => return Err(e).with_context(|| format!("reading the {what}")),
            Ok(msg) => apply(&msg),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{apply_registry_row, holiday, registry_update, weather_obs};
    use crate::task::Task;
    use gridwatch_anomaly_detector::{Engine, EngineConfig};
    use gridwatch_core::{partition, RegistryUpdate};
    use std::collections::BTreeMap;

    #[test]
    fn topic_records_with_fields_this_binary_does_not_know_still_decode() {
        let row = br#"{"site_id":"S1","meter_id":"M1","feeder_id":"F1","role":"customer",
            "customer_class":"residential","permitted_kw":12.0,"status":"active",
            "licensed_mining":false,"lat":null,"lon":null,"region":"North","timezone":null,
            "tariff_zone":"T2"}"#;
        match registry_update(Some(b"M1"), Some(row)) {
            Ok(RegistryUpdate::Upsert(r)) => assert_eq!(r.meter_id, "M1"),
            other => panic!("{other:?}"),
        }
        let w = br#"{"region":"North","ts":"2026-01-05T01:00:00Z","temp_c":-21.5,"station":"X"}"#;
        assert_eq!(weather_obs(Some(w)).unwrap().unwrap().temp_c, -21.5);
        let h = br#"{"region":"North","date":"2026-01-07","name":"Christmas","source":"gov"}"#;
        assert_eq!(holiday(Some(h)).unwrap().unwrap().name, "Christmas");
    }

    #[test]
    fn a_register_row_goes_to_its_feeders_partition_once_and_a_delete_to_all() {
        let cfg = EngineConfig::default();
        let n = 3;
        let mut tasks: BTreeMap<i32, Task> =
            (0..n).map(|p| (p, Task::for_tests(&cfg, 0, 0))).collect();
        let row = |meter: &str, feeder: &str| {
            let json = format!(
                r#"{{"site_id":"S{meter}","meter_id":"{meter}","feeder_id":"{feeder}","role":"customer",
                "customer_class":"residential","permitted_kw":12.0,"status":"active",
                "licensed_mining":false,"lat":null,"lon":null,"region":"North"}}"#
            );
            registry_update(Some(meter.as_bytes()), Some(json.as_bytes())).unwrap()
        };
        let mut alerts = Vec::new();
        // F01 hashes to partition 2 of 3 (Kafka's partitioner), as its readings do.
        let f01 = partition::partition_for(b"F01", n);
        assert_eq!(f01, 2);
        apply_registry_row(&mut tasks, n, (0, 0), &row("M1", "F01"), &mut alerts);
        apply_registry_row(&mut tasks, n, (0, 1), &row("M2", "F01"), &mut alerts);
        let meters = |tasks: &BTreeMap<i32, Task>| {
            tasks
                .iter()
                .map(|(&p, t)| (p, t.engine.meters()))
                .collect::<Vec<_>>()
        };
        assert_eq!(meters(&tasks), vec![(0, 0), (1, 0), (2, 2)]);
        // Read again (a second read of the register after a rebalance): already seen, skipped.
        tasks.get_mut(&2).unwrap().engine = Engine::new(cfg.clone()).unwrap();
        apply_registry_row(&mut tasks, n, (0, 1), &row("M2", "F01"), &mut alerts);
        assert_eq!(meters(&tasks), vec![(0, 0), (1, 0), (2, 0)]);
        // A task handed over later (nothing seen) takes it.
        tasks.insert(1, Task::for_tests(&cfg, 0, 0));
        apply_registry_row(&mut tasks, n, (0, 0), &row("M3", "F01"), &mut alerts);
        assert_eq!(meters(&tasks), vec![(0, 0), (1, 0), (2, 0)]);
        apply_registry_row(&mut tasks, n, (0, 2), &row("M3", "F01"), &mut alerts);
        assert_eq!(meters(&tasks), vec![(0, 0), (1, 0), (2, 1)]);
        let delete = RegistryUpdate::Delete {
            meter_id: "M3".into(),
        };
        apply_registry_row(&mut tasks, n, (0, 3), &delete, &mut alerts);
        // Every engine hears of it; none that never had the meter makes a slot for it.
        assert_eq!(meters(&tasks), vec![(0, 0), (1, 0), (2, 1)]);
        assert!(tasks.values().all(|t| t.registry[&0] == 4));
        assert!(alerts.is_empty());
    }
}
