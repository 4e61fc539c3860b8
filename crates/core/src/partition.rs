//! Which partition a key lands in: Kafka's default partitioner (the Java client's, and
//! librdkafka's `murmur2_random`, which every gridwatch producer sets), `murmur2(key) & 0x7fffffff
//! mod partitions`. The detector keeps one engine per partition of the readings topic, so a
//! meter's verdicts depend on which meters share its partition; the embedded run groups the
//! readings with this same function and partition count, and gives the alerts the services give.

use std::borrow::Cow;

/// Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`).
pub fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        let mut k = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        for (i, &b) in tail.iter().enumerate().rev() {
            h ^= u32::from(b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of `key` among `partitions` (at least 1).
pub fn partition_for(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

/// The partition key of a reading: its feeder when known — the reading's own, else its meter's
/// register feeder (`register_feeder`, asked only when the reading names none) — so a feeder's
/// meters and its head meter share a partition; else its meter.
pub fn reading_key<'a>(
    meter_id: &'a str,
    own_feeder: Option<&'a str>,
    register_feeder: impl FnOnce() -> Option<Cow<'a, str>>,
) -> Cow<'a, str> {
    match own_feeder {
        Some(f) => Cow::Borrowed(f),
        None => register_feeder().unwrap_or(Cow::Borrowed(meter_id)),
    }
}

#[cfg(test)]
mod tests {
    use super::{murmur2, partition_for};

    #[test]
    fn matches_the_java_client() {
        // Values printed by org.apache.kafka.common.utils.Utils (kafka-clients 4.1.1).
        for (key, hash, of3, of7) in [
            ("", 275_646_681, 0, 2),
            ("a", -1_563_381_124, 1, 5),
            ("ab", 316_155_434, 2, 0),
            ("abc", 479_470_107, 0, 4),
            ("F01", 173_274_182, 2, 4),
            ("M100147", 1_454_104_419, 0, 5),
            ("feeder-0042", -1_810_899_940, 1, 6),
            ("Zürich", -1_551_140_815, 1, 2),
        ] {
            assert_eq!(murmur2(key.as_bytes()), hash, "{key:?}");
            assert_eq!(partition_for(key.as_bytes(), 3), of3, "{key:?}");
            assert_eq!(partition_for(key.as_bytes(), 7), of7, "{key:?}");
        }
    }
}
