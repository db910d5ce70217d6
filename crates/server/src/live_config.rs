//! The parameters `CONFIG GET` reports and `CONFIG SET` changes while the server runs.
//!
//! One `LiveConfig` belongs to a RESP listener and is shared by all its connections, as
//! Redis's configuration belongs to one server: in a cluster each node's is its own
//! (Redis Cluster's rule too), and `shoal dev`'s one port has one.
//!
//! Which parameters, and what SET does with each:
//!
//! | parameter            | GET                      | SET                                            |
//! |----------------------|--------------------------|------------------------------------------------|
//! | `timeout`            | idle seconds, 0 = never  | 0..=2147483647; idle connections then close   |
//! | `proto-max-bulk-len` | the longest argument     | 1mb ..= the node's ceiling (a Raft message's  |
//! |                      |                          | share unless `--standalone`), from each       |
//! |                      |                          | connection's next batch of requests on        |
//! | `maxmemory`          | `0`                      | only its value: Shoal does not evict          |
//! | `maxmemory-policy`   | `noeviction`             | only its value                                 |
//! | `appendonly`         | `no`                     | only its value: durability is the Raft log    |
//! | `save`               | empty                    | only its value: there are no RDB snapshots    |
//! | `databases`          | `1`                      | refused: immutable in Redis too               |
//!
//! Setting a fixed parameter to the value it has succeeds and changes nothing, so a
//! client's set-up (`CONFIG SET save ""`, common in test suites) goes through; any other
//! value is Redis's "can't set immutable config". A SET of several pairs is checked
//! whole before any is applied, as Redis 7 does.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Redis's floor for `proto-max-bulk-len`.
const MIN_BULK_LEN: usize = 1024 * 1024;
/// Redis's ceiling for `timeout` (a C int of seconds).
const MAX_TIMEOUT: u64 = i32::MAX as u64;

/// The values of the parameters SET can change.
#[derive(Debug)]
pub struct LiveConfig {
    max_bulk_len: AtomicUsize,
    /// The most `proto-max-bulk-len` may be raised to on this server.
    max_bulk_ceiling: usize,
    idle_timeout_secs: AtomicU64,
}

/// A parameter whose value is fixed in Shoal, and that value.
const FIXED: [(&str, &str); 5] = [
    ("maxmemory", "0"),
    ("maxmemory-policy", "noeviction"),
    ("appendonly", "no"),
    ("save", ""),
    ("databases", "1"),
];

/// The parameters SET may change, in GET's order after the fixed ones.
const LIVE: [&str; 2] = ["timeout", "proto-max-bulk-len"];

impl LiveConfig {
    /// A server that starts with `max_bulk_len` and may go up to `ceiling`.
    pub fn new(max_bulk_len: usize, ceiling: usize) -> Self {
        LiveConfig {
            max_bulk_len: AtomicUsize::new(max_bulk_len.min(ceiling)),
            max_bulk_ceiling: ceiling,
            idle_timeout_secs: AtomicU64::new(0),
        }
    }

    /// The longest argument a request may carry now.
    pub fn max_bulk_len(&self) -> usize {
        self.max_bulk_len.load(Ordering::Relaxed)
    }

    /// How long a connection may sit without a request before it is closed.
    pub fn idle_timeout(&self) -> Option<Duration> {
        match self.idle_timeout_secs.load(Ordering::Relaxed) {
            0 => None,
            secs => Some(Duration::from_secs(secs)),
        }
    }

    fn value(&self, name: &str) -> Option<String> {
        match name {
            "timeout" => Some(self.idle_timeout_secs.load(Ordering::Relaxed).to_string()),
            "proto-max-bulk-len" => Some(self.max_bulk_len().to_string()),
            _ => FIXED
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned()),
        }
    }

    /// `CONFIG GET pattern...`: each matching parameter once, in the table's order.
    pub fn get(&self, patterns: &[&[u8]]) -> Vec<(String, String)> {
        let names = FIXED.iter().map(|(k, _)| *k).chain(LIVE);
        let patterns: Vec<String> = patterns
            .iter()
            .map(|p| String::from_utf8_lossy(p).to_ascii_lowercase())
            .collect();
        names
            .filter(|name| patterns.iter().any(|p| glob_match(p, name)))
            .filter_map(|name| Some((name.to_owned(), self.value(name)?)))
            .collect()
    }

    /// `CONFIG SET name value [name value ...]`: every pair checked, then all applied;
    /// the error names the first pair refused, in Redis's words (without the `ERR `).
    pub fn set(&self, pairs: &[(&[u8], &[u8])]) -> Result<(), String> {
        let mut changes: Vec<Change> = Vec::with_capacity(pairs.len());
        let mut seen: Vec<String> = Vec::with_capacity(pairs.len());
        for (name, value) in pairs {
            let name = String::from_utf8_lossy(name).to_ascii_lowercase();
            let value = String::from_utf8_lossy(value);
            if self.value(&name).is_none() {
                return Err(format!(
                    "Unknown option or number of arguments for CONFIG SET - '{name}'"
                ));
            }
            let failed = |why: &str| {
                format!("CONFIG SET failed (possibly related to argument '{name}') - {why}")
            };
            if seen.contains(&name) {
                return Err(failed("duplicate parameter"));
            }
            let change = match name.as_str() {
                "timeout" => {
                    let secs: u64 = value
                        .parse()
                        .map_err(|_| failed("argument couldn't be parsed into an integer"))?;
                    if secs > MAX_TIMEOUT {
                        return Err(failed(&format!(
                            "argument must be between 0 and {MAX_TIMEOUT} inclusive"
                        )));
                    }
                    Change::Timeout(secs)
                }
                "proto-max-bulk-len" => {
                    let bytes = memory_value(&value)
                        .ok_or_else(|| failed("argument must be a memory value"))?;
                    if !(MIN_BULK_LEN..=self.max_bulk_ceiling).contains(&bytes) {
                        return Err(failed(&format!(
                            "argument must be between {MIN_BULK_LEN} and {} inclusive",
                            self.max_bulk_ceiling
                        )));
                    }
                    Change::MaxBulkLen(bytes)
                }
                // A fixed parameter: its own value is a no-op, anything else refused.
                _ if self.value(&name).as_deref() == Some(value.as_ref())
                    && name != "databases" =>
                {
                    Change::None
                }
                _ => return Err(failed("can't set immutable config")),
            };
            seen.push(name);
            changes.push(change);
        }
        for change in changes {
            match change {
                Change::Timeout(secs) => self.idle_timeout_secs.store(secs, Ordering::Relaxed),
                Change::MaxBulkLen(bytes) => self.max_bulk_len.store(bytes, Ordering::Relaxed),
                Change::None => {}
            }
        }
        Ok(())
    }
}

/// One checked pair of a SET.
enum Change {
    Timeout(u64),
    MaxBulkLen(usize),
    None,
}

/// Redis's memory values: digits, then an optional unit (`k` 1000, `kb` 1024, `m`, `mb`,
/// `g`, `gb`; any case).
fn memory_value(text: &str) -> Option<usize> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: usize = digits.parse().ok()?;
    let scale: usize = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" => 1_000,
        "kb" => 1 << 10,
        "m" => 1_000_000,
        "mb" => 1 << 20,
        "g" => 1_000_000_000,
        "gb" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(scale)
}

/// CONFIG GET's patterns: Redis's glob, of which clients use `*`, a prefix with `*` and
/// exact names; `?` matches one character.
fn glob_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
            (Some(_), _) | (None, Some(_)) => false,
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pairs of a SET, and what it answers.
    type Case<'a> = (&'a [(&'a str, &'a str)], Result<(), String>);

    fn config() -> LiveConfig {
        LiveConfig::new(16 << 20, 16 << 20)
    }

    fn set(c: &LiveConfig, pairs: &[(&str, &str)]) -> Result<(), String> {
        let pairs: Vec<(&[u8], &[u8])> = pairs
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
            .collect();
        c.set(&pairs)
    }

    fn get(c: &LiveConfig, patterns: &[&str]) -> Vec<(String, String)> {
        let patterns: Vec<&[u8]> = patterns.iter().map(|p| p.as_bytes()).collect();
        c.get(&patterns)
    }

    #[test]
    fn get_names_each_matching_parameter_once_with_its_live_value() {
        let c = config();
        assert_eq!(
            get(&c, &["maxmemory", "MAXMEMORY", "maxmemory*"]),
            [
                ("maxmemory".to_owned(), "0".to_owned()),
                ("maxmemory-policy".to_owned(), "noeviction".to_owned())
            ]
        );
        assert_eq!(get(&c, &["*"]).len(), FIXED.len() + LIVE.len());
        assert_eq!(
            get(&c, &["proto-max-bulk-len", "t?meout"]),
            [
                ("timeout".to_owned(), "0".to_owned()),
                ("proto-max-bulk-len".to_owned(), (16usize << 20).to_string())
            ]
        );
        assert!(get(&c, &["nothing-like-it"]).is_empty());
    }

    #[test]
    fn set_changes_what_get_and_the_connections_read() {
        let c = config();
        assert_eq!(c.idle_timeout(), None);
        set(&c, &[("timeout", "30"), ("proto-max-bulk-len", "2mb")]).unwrap();
        assert_eq!(c.idle_timeout(), Some(Duration::from_secs(30)));
        assert_eq!(c.max_bulk_len(), 2 << 20);
        assert_eq!(
            get(&c, &["timeout"]),
            [("timeout".to_owned(), "30".to_owned())]
        );
        set(&c, &[("TIMEOUT", "0"), ("proto-max-bulk-len", "1048576")]).unwrap();
        assert_eq!(c.idle_timeout(), None);
        assert_eq!(c.max_bulk_len(), 1 << 20);
    }

    #[test]
    fn a_refused_pair_leaves_every_pair_unapplied_and_says_why_in_redis_words() {
        let c = config();
        let failed = |name: &str, why: &str| {
            Err(format!(
                "CONFIG SET failed (possibly related to argument '{name}') - {why}"
            ))
        };
        let cases: &[Case] = &[
            (
                &[("timeout", "5"), ("nope", "1")],
                Err("Unknown option or number of arguments for CONFIG SET - 'nope'".to_owned()),
            ),
            (
                &[("timeout", "5"), ("timeout", "6")],
                failed("timeout", "duplicate parameter"),
            ),
            (
                &[("timeout", "soon")],
                failed("timeout", "argument couldn't be parsed into an integer"),
            ),
            (
                &[("timeout", "-1")],
                failed("timeout", "argument couldn't be parsed into an integer"),
            ),
            (
                &[("timeout", "2147483648")],
                failed(
                    "timeout",
                    "argument must be between 0 and 2147483647 inclusive",
                ),
            ),
            (
                &[("timeout", "5"), ("proto-max-bulk-len", "17mb")],
                failed(
                    "proto-max-bulk-len",
                    "argument must be between 1048576 and 16777216 inclusive",
                ),
            ),
            (
                &[("proto-max-bulk-len", "1000")],
                failed(
                    "proto-max-bulk-len",
                    "argument must be between 1048576 and 16777216 inclusive",
                ),
            ),
            (
                &[("proto-max-bulk-len", "2 mb")],
                failed("proto-max-bulk-len", "argument must be a memory value"),
            ),
            (
                &[("proto-max-bulk-len", "99999999999999999999gb")],
                failed("proto-max-bulk-len", "argument must be a memory value"),
            ),
            (
                &[("maxmemory", "100mb")],
                failed("maxmemory", "can't set immutable config"),
            ),
            (
                &[("databases", "1")],
                failed("databases", "can't set immutable config"),
            ),
        ];
        for (pairs, want) in cases {
            assert_eq!(&set(&c, pairs), want, "{pairs:?}");
            assert_eq!(c.idle_timeout(), None, "{pairs:?} applied a part");
            assert_eq!(c.max_bulk_len(), 16 << 20, "{pairs:?} applied a part");
        }
    }

    #[test]
    fn a_fixed_parameter_takes_its_own_value() {
        let c = config();
        set(
            &c,
            &[
                ("save", ""),
                ("appendonly", "no"),
                ("maxmemory", "0"),
                ("maxmemory-policy", "noeviction"),
            ],
        )
        .unwrap();
        assert_eq!(get(&c, &["save"]), [("save".to_owned(), String::new())]);
    }

    #[test]
    fn memory_values_take_redis_units() {
        for (text, want) in [
            ("0", Some(0)),
            ("123", Some(123)),
            ("1b", Some(1)),
            ("2k", Some(2_000)),
            ("2KB", Some(2_048)),
            ("3m", Some(3_000_000)),
            ("3mb", Some(3 << 20)),
            ("1g", Some(1_000_000_000)),
            ("1Gb", Some(1 << 30)),
            ("", None),
            ("mb", None),
            ("1tb", None),
            ("1.5mb", None),
            ("-1", None),
        ] {
            assert_eq!(memory_value(text), want, "{text}");
        }
    }

    #[test]
    fn a_start_above_the_ceiling_is_held_to_it() {
        let c = LiveConfig::new(512 << 20, 16 << 20);
        assert_eq!(c.max_bulk_len(), 16 << 20);
    }
}
