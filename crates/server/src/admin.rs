//! Commands the node answers itself — the connection, the server, COMMAND, INFO, CONFIG —
//! and the hand-off of reads to the engine.

use std::sync::Arc;

use bytes::Bytes;
use shoal_resp::{lookup, Protocol, Value, COMMANDS};

use crate::access;
use crate::connection::Client;
use crate::live_config::LiveConfig;
use crate::node::Node;

/// Commands the connection or the node answer, not the engine.
const NODE_COMMANDS: &[&str] = &[
    "PING",
    "ECHO",
    "HELLO",
    "AUTH",
    "SELECT",
    "CLIENT",
    "QUIT",
    "RESET",
    "COMMAND",
    "INFO",
    "CONFIG",
    "ACL",
    "MULTI",
    "EXEC",
    "DISCARD",
    "WATCH",
    "UNWATCH",
    "READONLY",
    "READWRITE",
    "RAFT",
    "RESHARD",
    "DEBUG",
];

/// Whether a queued transaction command is the engine's (by its table name).
pub fn is_engine_command(args: &[Vec<u8>]) -> bool {
    args.first()
        .and_then(|name| shoal_resp::lookup(name))
        .is_some_and(|c| is_engine_read(c.name))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Reads the engine answers (everything that is neither a write nor a node command).
pub fn is_engine_read(name: &str) -> bool {
    !NODE_COMMANDS.contains(&name)
}

/// The longest `DEBUG FSYNC-DELAY` (a sync that never ends would stop the node).
const MAX_FSYNC_DELAY_MS: u64 = 60_000;

pub fn answer(node: &Arc<Node>, client: &mut Client, name: &str, args: &[Bytes]) -> Value {
    match name {
        "PING" => match args.get(1) {
            Some(msg) => Value::Bulk(msg.clone()),
            None => Value::Simple(Bytes::from_static(b"PONG")),
        },
        "ECHO" => Value::Bulk(args[1].clone()),
        "HELLO" => hello(node, client, args),
        "AUTH" => auth(node, client, args),
        "SELECT" => match args[1].as_ref() {
            b"0" => Value::ok(),
            _ => Value::Error("ERR DB index is out of range".into()),
        },
        "CLIENT" => client_command(client, args),
        "QUIT" => {
            client_closing(client);
            Value::ok()
        }
        "RESET" => {
            client.protocol = Protocol::Resp2;
            client.name = None;
            client.session.reset();
            Value::Simple(Bytes::from_static(b"RESET"))
        }
        "COMMAND" => command(args),
        "INFO" => {
            let sections: Vec<String> = args[1..]
                .iter()
                .map(|a| text(a).to_ascii_lowercase())
                .collect();
            let body = crate::info::render(node, &sections);
            match client.protocol {
                Protocol::Resp3 => Value::Verbatim(body),
                Protocol::Resp2 => Value::Bulk(body.into()),
            }
        }
        "CONFIG" => config(&client.config, args),
        "READONLY" => {
            client.readonly = true;
            Value::ok()
        }
        "READWRITE" => {
            client.readonly = false;
            Value::ok()
        }
        // Queued inside MULTI: membership changes are not transactional.
        "RAFT" => Value::Error("ERR RAFT is not allowed inside MULTI".into()),
        "RESHARD" => Value::Error("ERR RESHARD is not allowed inside MULTI".into()),
        "DEBUG" => match text(&args[1]).to_ascii_uppercase().as_str() {
            // This replica's dataset, as replicas compare it (keys, values, expiries,
            // WATCH versions, index membership).
            "DIGEST" => match args.get(2) {
                None => Value::bulk(format!("{:016x}", node.with_engine(|e| e.digest()))),
                // One group's replica on this node (the chaos checks compare every
                // replica of every group).
                Some(group) => match text(group)
                    .parse::<u64>()
                    .ok()
                    .and_then(|g| node.group_digest(g))
                {
                    Some(digest) => Value::bulk(format!("{digest:016x}")),
                    None => Value::Error(format!(
                        "ERR this node holds no replica of group {}",
                        text(group)
                    )),
                },
            },
            // A failpoint for the chaos tests: a disk whose syncs take this long.
            "FSYNC-DELAY" => match args.get(2).and_then(|ms| text(ms).parse::<u64>().ok()) {
                Some(ms) if ms <= MAX_FSYNC_DELAY_MS => {
                    if node.set_log_sync_delay(std::time::Duration::from_millis(ms)) {
                        Value::ok()
                    } else {
                        Value::Error("ERR this node has no Raft log".into())
                    }
                }
                Some(_) | None => Value::Error(format!(
                    "ERR DEBUG FSYNC-DELAY takes milliseconds, at most {MAX_FSYNC_DELAY_MS}"
                )),
            },
            other => Value::Error(format!(
                "ERR DEBUG subcommand '{}' is not supported (only DIGEST, FSYNC-DELAY)",
                other.to_ascii_lowercase()
            )),
        },
        // Queued inside MULTI and answered at EXEC: nothing left to unwatch by then.
        "UNWATCH" => Value::ok(),
        // Queued inside MULTI and answered at EXEC.
        "ACL" => crate::acl_command::answer_queued(node, client, args),
        // Engine commands never reach here: the connection batches them (`Step::Read`,
        // `Step::Write`) and EXEC applies them as one entry.
        other => Value::Error(format!(
            "ERR unknown command '{}'",
            other.to_ascii_lowercase()
        )),
    }
}

fn client_closing(client: &mut Client) {
    client.mark_closing();
}

/// `AUTH [user] password` (the connection's ACL check already refused wrong
/// credentials; they are checked again here, as the users may have changed since).
fn auth(node: &Arc<Node>, client: &mut Client, args: &[Bytes]) -> Value {
    let Some((user, password)) = access::auth_args(args) else {
        return Value::Error("ERR syntax error".into());
    };
    match access::credentials(&node.access, user, password) {
        Ok(name) => {
            client.session.login(&name);
            Value::ok()
        }
        Err(denial) => Value::Error(denial.message()),
    }
}

/// `HELLO [protover [AUTH user password] [SETNAME name]]`: every option is read
/// before any takes effect, so a refused AUTH leaves the protocol as it was.
/// `HELLO [protover [AUTH user password] [SETNAME name]]`, read whole before anything
/// takes effect (so a refused AUTH leaves the protocol as it was).
pub struct HelloOptions<'a> {
    pub protocol: Option<Protocol>,
    pub auth: Option<(&'a [u8], &'a [u8])>,
    pub name: Option<String>,
}

impl<'a> HelloOptions<'a> {
    /// The options, or the error HELLO answers.
    pub fn parse(args: &'a [Bytes]) -> Result<Self, String> {
        let mut options = HelloOptions {
            protocol: None,
            auth: None,
            name: None,
        };
        let mut i = 1;
        if let Some(version) = args.get(1) {
            options.protocol = Some(match version.as_ref() {
                b"2" => Protocol::Resp2,
                b"3" => Protocol::Resp3,
                other if text(other).parse::<i64>().is_err() => {
                    return Err("ERR Protocol version is not an integer or out of range".into())
                }
                _ => return Err("NOPROTO unsupported protocol version".into()),
            });
            i = 2;
        }
        while i < args.len() {
            match text(&args[i]).to_ascii_uppercase().as_str() {
                "AUTH" if i + 2 < args.len() => {
                    options.auth = Some((&args[i + 1], &args[i + 2]));
                    i += 3;
                }
                "SETNAME" if i + 1 < args.len() => {
                    options.name = Some(text(&args[i + 1]));
                    i += 2;
                }
                _ => return Err("ERR Syntax error in HELLO option".into()),
            }
        }
        Ok(options)
    }
}

fn hello(node: &Arc<Node>, client: &mut Client, args: &[Bytes]) -> Value {
    let options = match HelloOptions::parse(args) {
        Ok(options) => options,
        Err(e) => return Value::Error(e),
    };
    if let Some((user, password)) = options.auth {
        match access::credentials(&node.access, user, password) {
            Ok(user) => client.session.login(&user),
            Err(denial) => return Value::Error(denial.message()),
        }
    }
    if let Some(protocol) = options.protocol {
        client.protocol = protocol;
    }
    if options.name.is_some() {
        client.name = options.name;
    }
    Value::Map(vec![
        (Value::bulk("server"), Value::bulk("redis")),
        (
            Value::bulk("version"),
            Value::bulk(crate::info::REDIS_VERSION),
        ),
        (
            Value::bulk("proto"),
            Value::Int(match client.protocol {
                Protocol::Resp2 => 2,
                Protocol::Resp3 => 3,
            }),
        ),
        (Value::bulk("id"), Value::Int(client.id as i64)),
        (Value::bulk("mode"), Value::bulk("standalone")),
        (Value::bulk("role"), Value::bulk("master")),
        (Value::bulk("modules"), modules()),
    ])
}

/// The modules a client looking for search support expects to see listed.
fn modules() -> Value {
    Value::Array(vec![Value::Map(vec![
        (Value::bulk("name"), Value::bulk("search")),
        (Value::bulk("ver"), Value::Int(10000)),
    ])])
}

fn client_command(client: &mut Client, args: &[Bytes]) -> Value {
    let sub = text(&args[1]).to_ascii_uppercase();
    match sub.as_str() {
        "SETNAME" if args.len() == 3 => {
            let name = text(&args[2]);
            if name.contains(' ') || name.contains('\n') {
                return Value::Error(
                    "ERR Client names cannot contain spaces, newlines or special characters."
                        .into(),
                );
            }
            client.name = (!name.is_empty()).then_some(name);
            Value::ok()
        }
        "GETNAME" => client
            .name
            .as_ref()
            .map_or(Value::Null, |n| Value::bulk(n.clone())),
        "ID" => Value::Int(client.id as i64),
        "SETINFO" if args.len() == 4 => {
            let value = text(&args[3]);
            match text(&args[2]).to_ascii_uppercase().as_str() {
                "LIB-NAME" => client.lib_name = Some(value),
                "LIB-VER" => client.lib_ver = Some(value),
                other => {
                    return Value::Error(format!("ERR Unrecognized option '{other}'"));
                }
            }
            Value::ok()
        }
        "INFO" => Value::bulk(client_line(client)),
        "LIST" => Value::bulk(client_line(client)),
        _ => Value::Error(format!(
            "ERR unknown subcommand '{}'. Try CLIENT HELP.",
            text(&args[1])
        )),
    }
}

fn client_line(client: &Client) -> String {
    format!(
        "id={} addr={} name={} user={} lib-name={} lib-ver={} resp={}\n",
        client.id,
        client.addr,
        client.name.as_deref().unwrap_or(""),
        client.session.user,
        client.lib_name.as_deref().unwrap_or(""),
        client.lib_ver.as_deref().unwrap_or(""),
        match client.protocol {
            Protocol::Resp2 => 2,
            Protocol::Resp3 => 3,
        }
    )
}

fn command(args: &[Bytes]) -> Value {
    let Some(sub) = args.get(1) else {
        return Value::Array(COMMANDS.iter().map(|c| c.info()).collect());
    };
    match text(sub).to_ascii_uppercase().as_str() {
        "COUNT" => Value::Int(COMMANDS.len() as i64),
        "INFO" => Value::Array(
            args[2..]
                .iter()
                .map(|n| lookup(n).map_or(Value::Null, |c| c.info()))
                .collect(),
        ),
        "DOCS" => {
            let pairs: Vec<(Value, Value)> = if args.len() > 2 {
                args[2..]
                    .iter()
                    .filter_map(|n| lookup(n))
                    .map(|c| {
                        let [k, v] = c.docs();
                        (k, v)
                    })
                    .collect()
            } else {
                COMMANDS
                    .iter()
                    .map(|c| {
                        let [k, v] = c.docs();
                        (k, v)
                    })
                    .collect()
            };
            Value::Map(pairs)
        }
        "LIST" => Value::Array(
            COMMANDS
                .iter()
                .map(|c| Value::bulk(c.name.to_ascii_lowercase()))
                .collect(),
        ),
        _ => Value::Error(format!(
            "ERR unknown subcommand '{}'. Try COMMAND HELP.",
            text(sub)
        )),
    }
}

fn config(live: &LiveConfig, args: &[Bytes]) -> Value {
    match text(&args[1]).to_ascii_uppercase().as_str() {
        "GET" => {
            if args.len() < 3 {
                return Value::Error(
                    "ERR wrong number of arguments for 'config|get' command".into(),
                );
            }
            let patterns: Vec<&[u8]> = args[2..].iter().map(|p| p.as_ref()).collect();
            Value::Map(
                live.get(&patterns)
                    .into_iter()
                    .map(|(k, v)| (Value::bulk(k), Value::bulk(v)))
                    .collect(),
            )
        }
        "SET" => {
            // Redis's arity for CONFIG SET: at least one pair, and only pairs.
            if args.len() < 4 || !args.len().is_multiple_of(2) {
                return Value::Error(
                    "ERR wrong number of arguments for 'config|set' command".into(),
                );
            }
            let pairs: Vec<(&[u8], &[u8])> = args[2..]
                .chunks_exact(2)
                .map(|pair| (pair[0].as_ref(), pair[1].as_ref()))
                .collect();
            match live.set(&pairs) {
                Ok(()) => Value::ok(),
                Err(why) => Value::Error(format!("ERR {why}")),
            }
        }
        "RESETSTAT" => Value::ok(),
        other => Value::Error(format!(
            "ERR unknown subcommand '{}'. Try CONFIG HELP.",
            other.to_ascii_lowercase()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(live: &LiveConfig, args: &[&str]) -> Value {
        let args: Vec<Bytes> = args
            .iter()
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect();
        config(live, &args)
    }

    #[test]
    fn config_get_names_each_parameter_once() {
        let live = LiveConfig::new(16 << 20, 16 << 20);
        let Value::Map(pairs) = call(
            &live,
            &["CONFIG", "GET", "maxmemory", "MAXMEMORY", "maxmemory*"],
        ) else {
            panic!("CONFIG GET answers a map");
        };
        assert_eq!(
            pairs,
            vec![
                (Value::bulk("maxmemory"), Value::bulk("0")),
                (Value::bulk("maxmemory-policy"), Value::bulk("noeviction")),
            ]
        );
        let Value::Map(all) = call(&live, &["CONFIG", "GET", "*", "timeout"]) else {
            panic!("CONFIG GET answers a map");
        };
        assert_eq!(all.len(), 7);
    }

    #[test]
    fn config_set_answers_ok_or_redis_errors() {
        let live = LiveConfig::new(16 << 20, 16 << 20);
        assert_eq!(call(&live, &["CONFIG", "SET", "timeout", "7"]), Value::ok());
        assert_eq!(
            call(&live, &["CONFIG", "GET", "timeout"]),
            Value::Map(vec![(Value::bulk("timeout"), Value::bulk("7"))])
        );
        assert_eq!(
            call(&live, &["CONFIG", "GET"]),
            Value::Error("ERR wrong number of arguments for 'config|get' command".into())
        );
        let arity = Value::Error("ERR wrong number of arguments for 'config|set' command".into());
        assert_eq!(call(&live, &["CONFIG", "SET"]), arity);
        assert_eq!(call(&live, &["CONFIG", "SET", "timeout"]), arity);
        assert_eq!(
            call(&live, &["CONFIG", "SET", "timeout", "1", "save"]),
            arity
        );
        assert_eq!(
            call(&live, &["CONFIG", "SET", "bogus", "1"]),
            Value::Error(
                "ERR Unknown option or number of arguments for CONFIG SET - 'bogus'".into()
            )
        );
    }
}
