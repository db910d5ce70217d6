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
use std::sync::Arc;

use crate::idle_clients::IdleClients;

/// Redis's floor for `proto-max-bulk-len`.
const MIN_BULK_LEN: usize = 1024 * 1024;
/// Redis's ceiling for `timeout` (a C int of seconds).
const MAX_TIMEOUT: i64 = i32::MAX as i64;

/// The values of the parameters SET can change, and the connections they apply to.
#[derive(Debug)]
pub struct LiveConfig {
    max_bulk_len: AtomicUsize,
    /// The least `proto-max-bulk-len` may be set to: Redis's floor, or less when the
    /// server started below it (so its starting value can be set back).
    min_bulk_len: usize,
    /// The most `proto-max-bulk-len` may be raised to on this server.
    max_bulk_ceiling: usize,
    idle_timeout_secs: AtomicU64,
    /// The listener's connections, for `timeout`.
    pub idle: Arc<IdleClients>,
}

/// The parameters in GET's order: the fixed ones, then those SET changes.
const NAMES: [&str; 7] = [
    "maxmemory",
    "maxmemory-policy",
    "appendonly",
    "save",
    "databases",
    "timeout",
    "proto-max-bulk-len",
];

impl LiveConfig {
    /// A server that starts with `max_bulk_len` and may go up to `ceiling`.
    pub fn new(max_bulk_len: usize, ceiling: usize) -> Self {
        let start = max_bulk_len.min(ceiling);
        LiveConfig {
            max_bulk_len: AtomicUsize::new(start),
            min_bulk_len: MIN_BULK_LEN.min(start),
            max_bulk_ceiling: ceiling,
            idle_timeout_secs: AtomicU64::new(0),
            idle: Arc::new(IdleClients::default()),
        }
    }

    /// The longest argument a request may carry now.
    pub fn max_bulk_len(&self) -> usize {
        self.max_bulk_len.load(Ordering::Relaxed)
    }

    /// Seconds a connection may wait for a request before it is closed; None: forever.
    pub fn idle_timeout_secs(&self) -> Option<u64> {
        match self.idle_timeout_secs.load(Ordering::Relaxed) {
            0 => None,
            secs => Some(secs),
        }
    }

    fn value(&self, name: &str) -> Option<String> {
        let fixed = match name {
            "timeout" => return Some(self.idle_timeout_secs.load(Ordering::Relaxed).to_string()),
            "proto-max-bulk-len" => return Some(self.max_bulk_len().to_string()),
            "maxmemory" => "0",
            "maxmemory-policy" => "noeviction",
            "appendonly" => "no",
            "save" => "",
            "databases" => "1",
            _ => return None,
        };
        Some(fixed.to_owned())
    }

    /// `CONFIG GET pattern...`: each matching parameter once, in the table's order.
    pub fn get(&self, patterns: &[&[u8]]) -> Vec<(String, String)> {
        NAMES
            .iter()
            .filter(|name| {
                patterns
                    .iter()
                    .any(|p| shoal_resp::glob::matches_case(p, name.as_bytes(), true))
            })
            .filter_map(|name| Some(((*name).to_owned(), self.value(name)?)))
            .collect()
    }

    /// `CONFIG SET name value [name value ...]`, in Redis 7's order: every name is
    /// checked first (unknown, immutable, repeated; the error echoes the name as sent),
    /// then every value (the error names the parameter), then all are applied. The
    /// error is Redis's text without its `ERR `.
    pub fn set(&self, pairs: &[(&[u8], &[u8])]) -> Result<(), String> {
        let mut names: Vec<String> = Vec::with_capacity(pairs.len());
        for (sent, _) in pairs {
            let name = String::from_utf8_lossy(sent).to_ascii_lowercase();
            let sent = String::from_utf8_lossy(sent);
            if self.value(&name).is_none() {
                return Err(format!(
                    "Unknown option or number of arguments for CONFIG SET - '{sent}'"
                ));
            }
            if name == "databases" {
                return Err(failed(&sent, "can't set immutable config"));
            }
            if names.contains(&name) {
                return Err(failed(&sent, "duplicate parameter"));
            }
            names.push(name);
        }
        let mut changes: Vec<Change> = Vec::with_capacity(pairs.len());
        for (name, (_, value)) in names.iter().zip(pairs) {
            let value = String::from_utf8_lossy(value);
            let value = value.as_ref();
            let change = match name.as_str() {
                "timeout" => {
                    let secs = redis_integer(value).ok_or_else(|| {
                        failed(name, "argument couldn't be parsed into an integer")
                    })?;
                    let secs = u64::try_from(secs)
                        .ok()
                        .filter(|s| *s <= MAX_TIMEOUT as u64)
                        .ok_or_else(|| {
                            failed(
                                name,
                                &format!("argument must be between 0 and {MAX_TIMEOUT} inclusive"),
                            )
                        })?;
                    Change::Timeout(secs)
                }
                "proto-max-bulk-len" => {
                    let bytes = memory_value(value)
                        .ok_or_else(|| failed(name, "argument must be a memory value"))?;
                    if !(self.min_bulk_len..=self.max_bulk_ceiling).contains(&bytes) {
                        return Err(failed(
                            name,
                            &format!(
                                "argument must be between {} and {} inclusive",
                                self.min_bulk_len, self.max_bulk_ceiling
                            ),
                        ));
                    }
                    Change::MaxBulkLen(bytes)
                }
                // A fixed parameter: its own value, as Redis would read it, is a no-op.
                "maxmemory" if memory_value(value) == Some(0) => Change::None,
                "maxmemory-policy" | "appendonly"
                    if self
                        .value(name)
                        .is_some_and(|v| v.eq_ignore_ascii_case(value)) =>
                {
                    Change::None
                }
                "save" if value.trim().is_empty() => Change::None,
                _ => return Err(failed(name, "can't set immutable config")),
            };
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

/// Redis's `CONFIG SET failed` error for one parameter.
fn failed(name: &str, why: &str) -> String {
    format!("CONFIG SET failed (possibly related to argument '{name}') - {why}")
}

/// One checked pair of a SET.
enum Change {
    Timeout(u64),
    MaxBulkLen(usize),
    None,
}

/// An integer as Redis's `string2ll` reads one: an optional `-`, then digits with no
/// leading zero (besides `0` itself); no `+`, no spaces.
fn redis_integer(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let well_formed = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && text != "-0";
    if well_formed {
        text.parse().ok()
    } else {
        None
    }
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

    fn pair(k: &str, v: &str) -> (String, String) {
        (k.to_owned(), v.to_owned())
    }

    #[test]
    fn get_names_each_matching_parameter_once_with_its_live_value() {
        let c = config();
        assert_eq!(
            get(&c, &["maxmemory", "MAXMEMORY", "maxmemory*"]),
            [
                pair("maxmemory", "0"),
                pair("maxmemory-policy", "noeviction")
            ]
        );
        assert_eq!(get(&c, &["*"]).len(), NAMES.len());
        assert_eq!(
            get(&c, &["proto-max-bulk-len", "t?meout"]),
            [
                pair("timeout", "0"),
                pair("proto-max-bulk-len", &(16usize << 20).to_string())
            ]
        );
        assert_eq!(
            get(&c, &["*-*-*"]),
            [pair("proto-max-bulk-len", &(16usize << 20).to_string())]
        );
        assert_eq!(get(&c, &["*ory"]), [pair("maxmemory", "0")]);
        assert_eq!(
            get(&c, &["[st]*"]),
            [pair("save", ""), pair("timeout", "0")]
        );
        assert_eq!(get(&c, &["TIME?UT"]), [pair("timeout", "0")]);
        assert!(get(&c, &["nothing-like-it"]).is_empty());
        assert!(get(&c, &[""]).is_empty());
    }

    #[test]
    fn a_pattern_of_many_stars_is_answered_at_once() {
        // A recursive matcher takes exponential time (or the stack) on these.
        let c = config();
        let stars = format!("{}z", "*".repeat(100_000));
        let started = std::time::Instant::now();
        assert!(get(&c, &[&stars]).is_empty());
        assert_eq!(get(&c, &[&"*".repeat(100_000)]).len(), NAMES.len());
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn set_changes_what_get_and_the_connections_read() {
        let c = config();
        assert_eq!(c.idle_timeout_secs(), None);
        set(&c, &[("timeout", "30"), ("proto-max-bulk-len", "2mb")]).unwrap();
        assert_eq!(c.idle_timeout_secs(), Some(30));
        assert_eq!(c.max_bulk_len(), 2 << 20);
        assert_eq!(get(&c, &["timeout"]), [pair("timeout", "30")]);
        set(&c, &[("TIMEOUT", "0"), ("Proto-Max-Bulk-Len", "1048576")]).unwrap();
        assert_eq!(c.idle_timeout_secs(), None);
        assert_eq!(c.max_bulk_len(), 1 << 20);
    }

    #[test]
    fn a_refused_pair_leaves_every_pair_unapplied_and_says_why_in_redis_words() {
        let c = config();
        let failed = |name: &str, why: &str| Err(super::failed(name, why));
        let unknown = |name: &str| {
            Err(format!(
                "Unknown option or number of arguments for CONFIG SET - '{name}'"
            ))
        };
        let cases: &[Case] = &[
            (&[("timeout", "5"), ("Nope", "1")], unknown("Nope")),
            // Names before values: the unknown name wins over the bad value before it.
            (&[("timeout", "x"), ("nope", "1")], unknown("nope")),
            (
                &[("TIMEOUT", "5"), ("timeout", "6")],
                failed("timeout", "duplicate parameter"),
            ),
            (
                &[("timeout", "5"), ("Databases", "1")],
                failed("Databases", "can't set immutable config"),
            ),
            (
                &[("timeout", "soon")],
                failed("timeout", "argument couldn't be parsed into an integer"),
            ),
            (
                &[("timeout", "+5")],
                failed("timeout", "argument couldn't be parsed into an integer"),
            ),
            (
                &[("timeout", "05")],
                failed("timeout", "argument couldn't be parsed into an integer"),
            ),
            (
                &[("timeout", " 5")],
                failed("timeout", "argument couldn't be parsed into an integer"),
            ),
            (
                &[("Timeout", "-1")],
                failed(
                    "timeout",
                    "argument must be between 0 and 2147483647 inclusive",
                ),
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
                &[("MAXMEMORY", "100mb")],
                failed("maxmemory", "can't set immutable config"),
            ),
            (
                &[("appendonly", "yes")],
                failed("appendonly", "can't set immutable config"),
            ),
            (
                &[("save", "3600 1")],
                failed("save", "can't set immutable config"),
            ),
        ];
        for (pairs, want) in cases {
            assert_eq!(&set(&c, pairs), want, "{pairs:?}");
            assert_eq!(c.idle_timeout_secs(), None, "{pairs:?} applied a part");
            assert_eq!(c.max_bulk_len(), 16 << 20, "{pairs:?} applied a part");
        }
    }

    #[test]
    fn a_fixed_parameter_takes_its_own_value_as_redis_reads_it() {
        let c = config();
        set(
            &c,
            &[
                ("save", ""),
                ("appendonly", "NO"),
                ("maxmemory", "0mb"),
                ("maxmemory-policy", "NoEviction"),
            ],
        )
        .unwrap();
        assert_eq!(get(&c, &["save"]), [pair("save", "")]);
        assert_eq!(get(&c, &["appendonly"]), [pair("appendonly", "no")]);
    }

    #[test]
    fn integers_are_read_as_redis_reads_them() {
        for (text, want) in [
            ("0", Some(0)),
            ("7", Some(7)),
            ("-3", Some(-3)),
            ("9223372036854775807", Some(i64::MAX)),
            ("9223372036854775808", None),
            ("", None),
            ("-", None),
            ("-0", None),
            ("+1", None),
            ("01", None),
            ("1 ", None),
            ("1.0", None),
        ] {
            assert_eq!(redis_integer(text), want, "{text:?}");
        }
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
    fn the_start_is_held_to_the_ceiling_and_a_low_start_can_be_set_back() {
        assert_eq!(
            LiveConfig::new(512 << 20, 16 << 20).max_bulk_len(),
            16 << 20
        );
        let low = LiveConfig::new(1000, 16 << 20);
        set(&low, &[("proto-max-bulk-len", "2mb")]).unwrap();
        set(&low, &[("proto-max-bulk-len", "1000")]).unwrap();
        assert_eq!(low.max_bulk_len(), 1000);
        assert_eq!(
            set(&low, &[("proto-max-bulk-len", "999")]),
            Err(failed(
                "proto-max-bulk-len",
                "argument must be between 1000 and 16777216 inclusive"
            ))
        );
    }
}
