//! Ingest API keys: `Authorization: Bearer <key>` checked against the keys file named by
//! `ingester.api_keys_file` (one `name key` per line, the shape of a mounted secret), reloaded
//! when the file changes or on SIGHUP. The key's name — never the key — goes into logs and
//! into the source of each rejected record. Per key: a request rate and a concurrency limit.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime};

/// Shortest key accepted: 16 characters (a random key of that length is out of reach of any
/// guessing the rate limit allows).
pub const MIN_KEY_LEN: usize = 16;

/// The keys: name and key bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet(Vec<(String, Vec<u8>)>);

impl KeySet {
    /// Parses a keys file's text; `name` is the file, for errors (`file:line: why`).
    pub fn parse(text: &str, name: &str) -> Result<KeySet, String> {
        let mut keys: Vec<(String, Vec<u8>)> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = format!("{name}:{}", i + 1);
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [who, key] = fields[..] else {
                return Err(format!(
                    "{at}: a line is `name key` (two fields), found {}",
                    fields.len()
                ));
            };
            if key.len() < MIN_KEY_LEN {
                return Err(format!(
                    "{at}: the key of {who:?} is {} characters; at least {MIN_KEY_LEN}",
                    key.len()
                ));
            }
            if keys.iter().any(|(n, _)| n == who) {
                return Err(format!("{at}: the name {who:?} appears twice"));
            }
            if keys.iter().any(|(_, k)| k == key.as_bytes()) {
                return Err(format!(
                    "{at}: the key of {who:?} is another name's key too"
                ));
            }
            keys.push((who.to_string(), key.as_bytes().to_vec()));
        }
        if keys.is_empty() {
            return Err(format!("{name}: no keys (every request would be refused)"));
        }
        Ok(KeySet(keys))
    }

    /// The name of the key presented, comparing every key in constant time.
    pub fn name_of(&self, presented: &[u8]) -> Option<&str> {
        let mut found = None;
        for (name, key) in &self.0 {
            if ct_eq(key, presented) {
                found = Some(name.as_str());
            }
        }
        found
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Equality whose time depends only on the lengths, not on where the bytes differ.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The keys file, reloaded when it changes.
pub struct Keys {
    path: PathBuf,
    keys: RwLock<KeySet>,
    stamp: Mutex<Option<(SystemTime, u64)>>,
}

impl Keys {
    /// Loads the file; an unreadable or invalid file is an error at start.
    pub fn load(path: &Path) -> Result<Arc<Keys>, String> {
        let keys = Keys {
            path: path.to_path_buf(),
            keys: RwLock::new(KeySet::default()),
            stamp: Mutex::new(None),
        };
        keys.reload()?;
        Ok(Arc::new(keys))
    }

    fn stamp_now(&self) -> Option<(SystemTime, u64)> {
        let m = std::fs::metadata(&self.path).ok()?;
        Some((m.modified().ok()?, m.len()))
    }

    /// Reads the file again; on an error the keys in force stay.
    pub fn reload(&self) -> Result<usize, String> {
        let stamp = self.stamp_now();
        let name = self.path.display().to_string();
        let text = std::fs::read_to_string(&self.path).map_err(|e| format!("{name}: {e}"))?;
        let set = KeySet::parse(&text, &name)?;
        let n = set.len();
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = set;
        *self.stamp.lock().unwrap_or_else(|e| e.into_inner()) = stamp;
        Ok(n)
    }

    /// Reloads if the file's time or size changed since the last load (a secret rotated).
    pub fn reload_if_changed(&self) {
        let now = self.stamp_now();
        let last = *self.stamp.lock().unwrap_or_else(|e| e.into_inner());
        if now.is_some() && now != last {
            match self.reload() {
                Ok(n) => tracing::info!(keys = n, path = %self.path.display(), "API keys reloaded"),
                Err(e) => tracing::error!("API keys not reloaded, the previous ones stay: {e}"),
            }
        }
    }

    /// The name of the key in an `Authorization: Bearer <key>` header value.
    pub fn check(&self, authorization: Option<&str>) -> Option<String> {
        let key = authorization?.strip_prefix("Bearer ")?.trim();
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        keys.name_of(key.as_bytes()).map(str::to_string)
    }
}

/// Per-key limits: requests per second (a token bucket holding one second's worth) and
/// requests in flight.
pub struct Limits {
    rate: f64,
    concurrency: usize,
    state: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
    in_flight: usize,
}

/// Why a request over a limit is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Rate,
    Concurrency,
}

impl Limits {
    /// `rate` requests per second and `concurrency` in flight per key; 0 means no limit.
    pub fn new(rate: f64, concurrency: usize) -> Limits {
        Limits {
            rate,
            concurrency,
            state: Mutex::new(HashMap::new()),
        }
    }

    /// Admits one request of `who` at `now`, or says which limit it is over. An admitted
    /// request must be [`Limits::done`] when answered.
    pub fn admit(&self, who: &str, now: Instant) -> Result<(), Refused> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let b = state.entry(who.to_string()).or_insert(Bucket {
            tokens: self.rate.max(1.0),
            at: now,
            in_flight: 0,
        });
        if self.rate > 0.0 {
            let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
            b.tokens = (b.tokens + elapsed * self.rate).min(self.rate.max(1.0));
            b.at = now;
            if b.tokens < 1.0 {
                return Err(Refused::Rate);
            }
        }
        if self.concurrency > 0 && b.in_flight >= self.concurrency {
            return Err(Refused::Concurrency);
        }
        if self.rate > 0.0 {
            b.tokens -= 1.0;
        }
        b.in_flight += 1;
        Ok(())
    }

    pub fn done(&self, who: &str) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = state.get_mut(who) {
            b.in_flight = b.in_flight.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_keys_file_is_name_key_lines_and_mistakes_are_named_by_line() {
        let k = KeySet::parse(
            "# head-end keys\nsiemens-hes  0123456789abcdefXYZ\n\nlandis 9876543210fedcbaQQQ\n",
            "keys.txt",
        )
        .unwrap();
        assert_eq!(k.len(), 2);
        assert_eq!(k.name_of(b"9876543210fedcbaQQQ"), Some("landis"));
        assert_eq!(k.name_of(b"9876543210fedcbaQQ"), None);
        assert_eq!(k.name_of(b""), None);
        for (text, want) in [
            ("a b c\n", "keys.txt:1: a line is `name key`"),
            ("a short\n", "keys.txt:1: the key of \"a\" is 5 characters"),
            (
                "a 0123456789abcdef\na 0123456789abcdeg\n",
                "keys.txt:2: the name \"a\" appears twice",
            ),
            (
                "a 0123456789abcdef\nb 0123456789abcdef\n",
                "keys.txt:2: the key of \"b\" is another name's key",
            ),
            ("# nothing\n", "keys.txt: no keys"),
        ] {
            let e = KeySet::parse(text, "keys.txt").unwrap_err();
            assert!(e.starts_with(want), "{e}");
        }
    }

    #[test]
    fn the_rate_and_concurrency_limits_hold_per_key() {
        let l = Limits::new(2.0, 3);
        let t = Instant::now();
        assert!(l.admit("a", t).is_ok());
        assert!(l.admit("a", t).is_ok());
        assert_eq!(l.admit("a", t), Err(Refused::Rate));
        assert!(l.admit("b", t).is_ok(), "another key has its own bucket");
        assert!(l.admit("a", t + Duration::from_millis(600)).is_ok());
        assert_eq!(
            l.admit("a", t + Duration::from_secs(5)),
            Err(Refused::Concurrency),
            "three of a's requests are still in flight"
        );
        l.done("a");
        assert!(l.admit("a", t + Duration::from_secs(5)).is_ok());
        let open = Limits::new(0.0, 0);
        for _ in 0..1000 {
            assert!(open.admit("a", t).is_ok());
        }
    }
}
