//! The command table: every command the server knows, with the arity, flags, key
//! positions and ACL categories that COMMAND / COMMAND INFO / COMMAND DOCS report and
//! that the server checks before dispatching.
//!
//! Arity follows Redis: positive means exactly that many arguments including the name,
//! negative means at least its absolute value.

use crate::encode::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Command {
    pub name: &'static str,
    pub arity: i32,
    pub flags: &'static [&'static str],
    /// First key's position, 0 when the command takes none.
    pub first_key: i32,
    /// Last key's position; -1 means the last argument.
    pub last_key: i32,
    pub step: i32,
    /// ACL categories, without the `@`.
    pub categories: &'static [&'static str],
    pub group: &'static str,
    pub summary: &'static str,
}

impl Command {
    pub fn is_write(&self) -> bool {
        self.flags.contains(&"write")
    }

    pub fn arity_ok(&self, argc: usize) -> bool {
        let argc = argc as i64;
        let arity = i64::from(self.arity);
        if arity >= 0 {
            argc == arity
        } else {
            argc >= -arity
        }
    }

    /// COMMAND INFO's entry.
    pub fn info(&self) -> Value {
        let strings = |items: &[&str], prefix: &str| {
            Value::Array(
                items
                    .iter()
                    .map(|s| Value::simple(format!("{prefix}{s}")))
                    .collect(),
            )
        };
        Value::Array(vec![
            Value::bulk(self.name.to_ascii_lowercase()),
            Value::Int(i64::from(self.arity)),
            strings(self.flags, ""),
            Value::Int(i64::from(self.first_key)),
            Value::Int(i64::from(self.last_key)),
            Value::Int(i64::from(self.step)),
            strings(self.categories, "@"),
            Value::Array(Vec::new()),
            Value::Array(Vec::new()),
            Value::Array(Vec::new()),
        ])
    }

    /// COMMAND DOCS's entry (name first, then its map).
    pub fn docs(&self) -> [Value; 2] {
        [
            Value::bulk(self.name.to_ascii_lowercase()),
            Value::Map(vec![
                (Value::bulk("summary"), Value::bulk(self.summary)),
                (Value::bulk("since"), Value::bulk("1.0.0")),
                (Value::bulk("group"), Value::bulk(self.group)),
            ]),
        ]
    }
}

macro_rules! cmd {
    ($name:literal, $arity:literal, [$($flag:literal),*], $first:literal, $last:literal, $step:literal, [$($cat:literal),*], $group:literal, $summary:literal) => {
        Command {
            name: $name,
            arity: $arity,
            flags: &[$($flag),*],
            first_key: $first,
            last_key: $last,
            step: $step,
            categories: &[$($cat),*],
            group: $group,
            summary: $summary,
        }
    };
}

/// Every command, by name.
pub static COMMANDS: &[Command] = &[
    // Connection and server.
    cmd!(
        "PING",
        -1,
        ["fast", "stale"],
        0,
        0,
        0,
        ["fast", "connection"],
        "connection",
        "Returns the server's liveliness response."
    ),
    cmd!(
        "ECHO",
        2,
        ["fast", "stale"],
        0,
        0,
        0,
        ["fast", "connection"],
        "connection",
        "Returns the given string."
    ),
    cmd!(
        "HELLO",
        -1,
        ["noscript", "loading", "stale", "fast", "no_auth"],
        0,
        0,
        0,
        ["fast", "connection"],
        "connection",
        "Handshakes with the server."
    ),
    cmd!(
        "AUTH",
        -2,
        ["noscript", "loading", "stale", "fast", "no_auth"],
        0,
        0,
        0,
        ["fast", "connection"],
        "connection",
        "Authenticates the connection."
    ),
    cmd!(
        "SELECT",
        2,
        ["loading", "stale", "fast"],
        0,
        0,
        0,
        ["fast", "connection"],
        "connection",
        "Changes the selected database."
    ),
    cmd!(
        "CLIENT",
        -2,
        ["noscript", "loading", "stale"],
        0,
        0,
        0,
        ["slow", "connection"],
        "connection",
        "A container for client connection commands."
    ),
    cmd!(
        "QUIT",
        -1,
        ["noscript", "loading", "stale", "fast", "no_auth"],
        0,
        0,
        0,
        ["fast", "connection"],
        "connection",
        "Closes the connection."
    ),
    cmd!(
        "RESET",
        1,
        ["noscript", "loading", "stale", "fast", "no_auth"],
        0,
        0,
        0,
        ["fast", "connection"],
        "connection",
        "Resets the connection."
    ),
    cmd!(
        "COMMAND",
        -1,
        ["loading", "stale"],
        0,
        0,
        0,
        ["slow", "connection"],
        "server",
        "Returns detailed information about all commands."
    ),
    cmd!(
        "INFO",
        -1,
        ["loading", "stale"],
        0,
        0,
        0,
        ["slow", "dangerous"],
        "server",
        "Returns information and statistics about the server."
    ),
    cmd!(
        "CONFIG",
        -2,
        ["admin", "noscript", "loading", "stale"],
        0,
        0,
        0,
        ["admin", "slow", "dangerous"],
        "server",
        "A container for server configuration commands."
    ),
    cmd!(
        "DBSIZE",
        1,
        ["readonly", "fast"],
        0,
        0,
        0,
        ["keyspace", "read", "fast"],
        "server",
        "Returns the number of keys in the database."
    ),
    cmd!(
        "FLUSHALL",
        -1,
        ["write"],
        0,
        0,
        0,
        ["keyspace", "write", "slow", "dangerous"],
        "server",
        "Removes all keys from all databases."
    ),
    cmd!(
        "FLUSHDB",
        -1,
        ["write"],
        0,
        0,
        0,
        ["keyspace", "write", "slow", "dangerous"],
        "server",
        "Remove all keys from the current database."
    ),
    cmd!(
        "MULTI",
        1,
        ["noscript", "loading", "stale", "fast"],
        0,
        0,
        0,
        ["fast", "transaction"],
        "transactions",
        "Starts a transaction."
    ),
    cmd!(
        "EXEC",
        1,
        ["noscript", "loading", "stale", "skip_slowlog"],
        0,
        0,
        0,
        ["slow", "transaction"],
        "transactions",
        "Executes all commands in a transaction."
    ),
    cmd!(
        "DISCARD",
        1,
        ["noscript", "loading", "stale", "fast"],
        0,
        0,
        0,
        ["fast", "transaction"],
        "transactions",
        "Discards a transaction."
    ),
    cmd!(
        "WATCH",
        -2,
        ["noscript", "loading", "stale", "fast"],
        1,
        -1,
        1,
        ["fast", "transaction"],
        "transactions",
        "Monitors changes to keys to determine the execution of a transaction."
    ),
    cmd!(
        "UNWATCH",
        1,
        ["noscript", "loading", "stale", "fast"],
        0,
        0,
        0,
        ["fast", "transaction"],
        "transactions",
        "Forgets about watched keys of a transaction."
    ),
    cmd!(
        "ACL",
        -2,
        ["noscript", "loading", "stale"],
        0,
        0,
        0,
        ["slow"],
        "server",
        "A container for Access List Control commands."
    ),
    cmd!(
        "READONLY",
        1,
        ["loading", "stale", "fast"],
        0,
        0,
        0,
        ["fast", "connection"],
        "cluster",
        "Lets this connection read from a replica that does not lead (reads may be stale)."
    ),
    cmd!(
        "READWRITE",
        1,
        ["loading", "stale", "fast"],
        0,
        0,
        0,
        ["fast", "connection"],
        "cluster",
        "Sends this connection's reads to the leader again."
    ),
    cmd!(
        "RAFT",
        -2,
        ["admin", "noscript", "loading", "stale"],
        0,
        0,
        0,
        ["admin", "slow", "dangerous"],
        "cluster",
        "Shard group administration: STATUS, ADD-LEARNER, PROMOTE, REMOVE, SNAPSHOT."
    ),
    cmd!(
        "RESHARD",
        -2,
        ["admin", "noscript", "loading", "stale"],
        0,
        0,
        0,
        ["admin", "slow", "dangerous"],
        "cluster",
        "Online resharding: ADD-GROUP adds a shard group while writes go on; STATUS; ABORT."
    ),
    cmd!(
        "DEBUG",
        -2,
        ["admin", "noscript", "loading", "stale"],
        0,
        0,
        0,
        ["admin", "slow", "dangerous"],
        "server",
        "Debugging commands (DIGEST: a hash of this replica's dataset)."
    ),
    // Generic keyspace.
    cmd!(
        "KEYS",
        2,
        ["readonly"],
        0,
        0,
        0,
        ["keyspace", "read", "slow", "dangerous"],
        "generic",
        "Returns all key names that match a pattern."
    ),
    cmd!(
        "SCAN",
        -2,
        ["readonly"],
        0,
        0,
        0,
        ["keyspace", "read", "slow"],
        "generic",
        "Iterates over the key names in the database."
    ),
    cmd!(
        "EXISTS",
        -2,
        ["readonly", "fast"],
        1,
        -1,
        1,
        ["keyspace", "read", "fast"],
        "generic",
        "Determines whether one or more keys exist."
    ),
    cmd!(
        "TYPE",
        2,
        ["readonly", "fast"],
        1,
        1,
        1,
        ["keyspace", "read", "fast"],
        "generic",
        "Determines the type of value stored at a key."
    ),
    cmd!(
        "DEL",
        -2,
        ["write"],
        1,
        -1,
        1,
        ["keyspace", "write", "slow"],
        "generic",
        "Deletes one or more keys."
    ),
    cmd!(
        "UNLINK",
        -2,
        ["write", "fast"],
        1,
        -1,
        1,
        ["keyspace", "write", "fast"],
        "generic",
        "Asynchronously deletes one or more keys."
    ),
    cmd!(
        "EXPIRE",
        -3,
        ["write", "fast"],
        1,
        1,
        1,
        ["keyspace", "write", "fast"],
        "generic",
        "Sets the expiration time of a key in seconds."
    ),
    cmd!(
        "PEXPIRE",
        -3,
        ["write", "fast"],
        1,
        1,
        1,
        ["keyspace", "write", "fast"],
        "generic",
        "Sets the expiration time of a key in milliseconds."
    ),
    cmd!(
        "EXPIREAT",
        -3,
        ["write", "fast"],
        1,
        1,
        1,
        ["keyspace", "write", "fast"],
        "generic",
        "Sets the expiration time of a key to a Unix timestamp."
    ),
    cmd!(
        "PEXPIREAT",
        -3,
        ["write", "fast"],
        1,
        1,
        1,
        ["keyspace", "write", "fast"],
        "generic",
        "Sets the expiration time of a key to a Unix milliseconds timestamp."
    ),
    cmd!(
        "TTL",
        2,
        ["readonly", "fast"],
        1,
        1,
        1,
        ["keyspace", "read", "fast"],
        "generic",
        "Returns the expiration time in seconds of a key."
    ),
    cmd!(
        "PTTL",
        2,
        ["readonly", "fast"],
        1,
        1,
        1,
        ["keyspace", "read", "fast"],
        "generic",
        "Returns the expiration time in milliseconds of a key."
    ),
    cmd!(
        "PERSIST",
        2,
        ["write", "fast"],
        1,
        1,
        1,
        ["keyspace", "write", "fast"],
        "generic",
        "Removes the expiration time of a key."
    ),
    // Strings.
    cmd!(
        "GET",
        2,
        ["readonly", "fast"],
        1,
        1,
        1,
        ["read", "string", "fast"],
        "string",
        "Returns the string value of a key."
    ),
    cmd!(
        "SET",
        -3,
        ["write", "denyoom"],
        1,
        1,
        1,
        ["write", "string", "slow"],
        "string",
        "Sets the string value of a key."
    ),
    cmd!(
        "MGET",
        -2,
        ["readonly", "fast"],
        1,
        -1,
        1,
        ["read", "string", "fast"],
        "string",
        "Atomically returns the string values of one or more keys."
    ),
    cmd!(
        "MSET",
        -3,
        ["write", "denyoom"],
        1,
        -1,
        2,
        ["write", "string", "slow"],
        "string",
        "Atomically creates or modifies the string values of one or more keys."
    ),
    cmd!(
        "STRLEN",
        2,
        ["readonly", "fast"],
        1,
        1,
        1,
        ["read", "string", "fast"],
        "string",
        "Returns the length of a string value."
    ),
    cmd!(
        "INCR",
        2,
        ["write", "denyoom", "fast"],
        1,
        1,
        1,
        ["write", "string", "fast"],
        "string",
        "Increments the integer value of a key by one."
    ),
    cmd!(
        "DECR",
        2,
        ["write", "denyoom", "fast"],
        1,
        1,
        1,
        ["write", "string", "fast"],
        "string",
        "Decrements the integer value of a key by one."
    ),
    cmd!(
        "INCRBY",
        3,
        ["write", "denyoom", "fast"],
        1,
        1,
        1,
        ["write", "string", "fast"],
        "string",
        "Increments the integer value of a key by a number."
    ),
    cmd!(
        "DECRBY",
        3,
        ["write", "denyoom", "fast"],
        1,
        1,
        1,
        ["write", "string", "fast"],
        "string",
        "Decrements a number from the integer value of a key."
    ),
    // Hashes.
    cmd!(
        "HSET",
        -4,
        ["write", "denyoom", "fast"],
        1,
        1,
        1,
        ["write", "hash", "fast"],
        "hash",
        "Creates or modifies the value of a field in a hash."
    ),
    cmd!(
        "HMSET",
        -4,
        ["write", "denyoom", "fast"],
        1,
        1,
        1,
        ["write", "hash", "fast"],
        "hash",
        "Sets the values of multiple fields."
    ),
    cmd!(
        "HSETNX",
        4,
        ["write", "denyoom", "fast"],
        1,
        1,
        1,
        ["write", "hash", "fast"],
        "hash",
        "Sets the value of a field in a hash only when the field doesn't exist."
    ),
    cmd!(
        "HGET",
        3,
        ["readonly", "fast"],
        1,
        1,
        1,
        ["read", "hash", "fast"],
        "hash",
        "Returns the value of a field in a hash."
    ),
    cmd!(
        "HMGET",
        -3,
        ["readonly", "fast"],
        1,
        1,
        1,
        ["read", "hash", "fast"],
        "hash",
        "Returns the values of all fields in a hash."
    ),
    cmd!(
        "HGETALL",
        2,
        ["readonly"],
        1,
        1,
        1,
        ["read", "hash", "slow"],
        "hash",
        "Returns all fields and values in a hash."
    ),
    cmd!(
        "HDEL",
        -3,
        ["write", "fast"],
        1,
        1,
        1,
        ["write", "hash", "fast"],
        "hash",
        "Deletes one or more fields and their values from a hash."
    ),
    cmd!(
        "HLEN",
        2,
        ["readonly", "fast"],
        1,
        1,
        1,
        ["read", "hash", "fast"],
        "hash",
        "Returns the number of fields in a hash."
    ),
    cmd!(
        "HEXISTS",
        3,
        ["readonly", "fast"],
        1,
        1,
        1,
        ["read", "hash", "fast"],
        "hash",
        "Determines whether a field exists in a hash."
    ),
    cmd!(
        "HKEYS",
        2,
        ["readonly"],
        1,
        1,
        1,
        ["read", "hash", "slow"],
        "hash",
        "Returns all fields in a hash."
    ),
    cmd!(
        "HVALS",
        2,
        ["readonly"],
        1,
        1,
        1,
        ["read", "hash", "slow"],
        "hash",
        "Returns all values in a hash."
    ),
    cmd!(
        "HINCRBY",
        4,
        ["write", "denyoom", "fast"],
        1,
        1,
        1,
        ["write", "hash", "fast"],
        "hash",
        "Increments the integer value of a field in a hash by a number."
    ),
    cmd!(
        "HINCRBYFLOAT",
        4,
        ["write", "denyoom", "fast"],
        1,
        1,
        1,
        ["write", "hash", "fast"],
        "hash",
        "Increments the floating point value of a field by a number."
    ),
    // JSON.
    cmd!(
        "JSON.SET",
        -4,
        ["write", "denyoom"],
        1,
        1,
        1,
        ["write", "json", "slow"],
        "json",
        "Sets or updates the JSON value at a path."
    ),
    cmd!(
        "JSON.GET",
        -2,
        ["readonly"],
        1,
        1,
        1,
        ["read", "json", "slow"],
        "json",
        "Gets the value at one or more paths in JSON serialized form."
    ),
    cmd!(
        "JSON.DEL",
        -2,
        ["write"],
        1,
        1,
        1,
        ["write", "json", "slow"],
        "json",
        "Deletes a value."
    ),
    cmd!(
        "JSON.FORGET",
        -2,
        ["write"],
        1,
        1,
        1,
        ["write", "json", "slow"],
        "json",
        "Deletes a value."
    ),
    cmd!(
        "JSON.MGET",
        -3,
        ["readonly"],
        1,
        -2,
        1,
        ["read", "json", "slow"],
        "json",
        "Returns the values at a path from one or more keys."
    ),
    cmd!(
        "JSON.TYPE",
        -2,
        ["readonly"],
        1,
        1,
        1,
        ["read", "json", "slow"],
        "json",
        "Returns the type of the JSON value at a path."
    ),
    cmd!(
        "JSON.NUMINCRBY",
        4,
        ["write", "denyoom"],
        1,
        1,
        1,
        ["write", "json", "slow"],
        "json",
        "Increments the numeric value at a path by a value."
    ),
    cmd!(
        "JSON.ARRAPPEND",
        -4,
        ["write", "denyoom"],
        1,
        1,
        1,
        ["write", "json", "slow"],
        "json",
        "Appends one or more JSON values to the array at a path."
    ),
    // Search.
    cmd!(
        "FT.CREATE",
        -2,
        ["write", "denyoom", "fast"],
        0,
        0,
        0,
        ["search", "write", "fast"],
        "search",
        "Creates an index with the given spec."
    ),
    cmd!(
        "FT.DROPINDEX",
        -2,
        ["write", "fast"],
        0,
        0,
        0,
        ["search", "write", "fast"],
        "search",
        "Deletes the index."
    ),
    cmd!(
        "FT.SEARCH",
        -3,
        ["readonly"],
        0,
        0,
        0,
        ["search", "read", "slow"],
        "search",
        "Searches the index with a query, returning documents or ids."
    ),
    cmd!(
        "FT.AGGREGATE",
        -3,
        ["readonly"],
        0,
        0,
        0,
        ["search", "read", "slow"],
        "search",
        "Runs a search query and performs aggregate transformations."
    ),
    cmd!(
        "FT.INFO",
        2,
        ["readonly", "fast"],
        0,
        0,
        0,
        ["search", "read", "fast"],
        "search",
        "Returns information and statistics on the index."
    ),
    cmd!(
        "FT._LIST",
        1,
        ["readonly", "admin"],
        0,
        0,
        0,
        ["search", "read", "slow", "admin"],
        "search",
        "Returns a list of all existing indexes."
    ),
];

/// Commands by upper-case name (FxHash: SipHash's DoS resistance buys nothing for a
/// fixed table, and it showed in the profile of every request).
static BY_NAME: std::sync::LazyLock<rustc_hash::FxHashMap<&'static [u8], &'static Command>> =
    std::sync::LazyLock::new(|| COMMANDS.iter().map(|c| (c.name.as_bytes(), c)).collect());

/// The table entry of a command name, any case.
// #[PerformanceCriticalPath]: once per request.
pub fn lookup(name: &[u8]) -> Option<&'static Command> {
    let mut buf = [0u8; 32];
    let upper = buf.get_mut(..name.len())?;
    for (d, s) in upper.iter_mut().zip(name) {
        *d = s.to_ascii_uppercase();
    }
    BY_NAME.get(&*upper).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ft_command_is_in_the_search_category() {
        for c in COMMANDS.iter().filter(|c| c.name.starts_with("FT.")) {
            assert!(c.categories.contains(&"search"), "{}", c.name);
        }
    }

    #[test]
    fn names_are_unique_and_flags_consistent() {
        let mut names: Vec<&str> = COMMANDS.iter().map(|c| c.name).collect();
        names.sort();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len());
        for c in COMMANDS {
            assert!(
                !(c.flags.contains(&"write") && c.flags.contains(&"readonly")),
                "{}",
                c.name
            );
        }
    }

    #[test]
    fn arity() {
        let get = lookup(b"get").unwrap();
        assert!(get.arity_ok(2) && !get.arity_ok(3));
        let hset = lookup(b"HSET").unwrap();
        assert!(hset.arity_ok(4) && hset.arity_ok(6) && !hset.arity_ok(3));
        assert!(lookup(b"nope").is_none());
    }
}
