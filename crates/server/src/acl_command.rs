//! The `ACL` command: changing users (`SETUSER`, `DELUSER`) where they live — this
//! node's table when standalone, the cluster map when replicated — and reading them
//! back (`GETUSER`, `LIST`, `USERS`, `WHOAMI`, `CAT`, `DRYRUN`).
//!
//! Replicated, a change is a guarded read-modify-write on the meta group
//! ([`shoal_cluster::Router::map_update_user`]) and the reads first re-read the map
//! from the meta leader, so `ACL LIST` on any router shows every change acknowledged
//! before it.

use std::sync::Arc;

use bytes::Bytes;
use shoal_cluster::UserChange;
use shoal_resp::acl::{self, AclError, User, DEFAULT_USER};
use shoal_resp::{lookup, Value};

use crate::access::{self, Session};
use crate::connection::Client;
use crate::node::{now_ms, Node, Store};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The least argument count (with `ACL` and the subcommand) of each subcommand, and
/// whether that count is exact.
fn arity(sub: &str) -> Option<(usize, bool)> {
    Some(match sub {
        "SETUSER" | "DELUSER" => (3, false),
        "GETUSER" => (3, true),
        "WHOAMI" | "LIST" | "USERS" | "HELP" => (2, true),
        "CAT" => (2, false),
        "DRYRUN" => (4, false),
        _ => return None,
    })
}

/// Checks the subcommand and its argument count; the error to answer otherwise.
fn validate(args: &[Bytes]) -> Result<String, Value> {
    let sub = text(&args[1]).to_ascii_uppercase();
    let Some((least, exact)) = arity(&sub) else {
        return Err(Value::Error(format!(
            "ERR unknown subcommand '{}'. Try ACL HELP.",
            text(&args[1])
        )));
    };
    let n = args.len();
    if n < least || (exact && n != least) || (sub == "CAT" && n > 3) {
        return Err(Value::Error(format!(
            "ERR wrong number of arguments for 'acl|{}' command",
            sub.to_ascii_lowercase()
        )));
    }
    Ok(sub)
}

/// `ACL …` outside a transaction: changes go to where the users live, reads see
/// the users as the meta leader has them.
pub async fn answer(node: &Arc<Node>, client: &mut Client, args: &[Bytes]) -> Value {
    let sub = match validate(args) {
        Ok(sub) => sub,
        Err(e) => return e,
    };
    let Store::Replicated(r) = &node.store else {
        return answer_here(node, client, &sub, args);
    };
    match sub.as_str() {
        "SETUSER" => {
            let name = text(&args[2]);
            let rules: Vec<String> = args[3..].iter().map(|a| text(a)).collect();
            // The rules are checked against the user as the map has it (`<password`
            // needs the password to be there).
            let change = |current: Option<&str>| {
                let mut user = stored_user(&name, current).map_err(|e| e.to_string())?;
                user.apply_all(rules.iter().map(String::as_str))
                    .map_err(|e| e.to_string())?;
                Ok(UserChange::Set(user.rules()))
            };
            match r.router.map_update_user(&name, change, now_ms()).await {
                Ok(_) => {
                    node.refresh_access().await;
                    Value::ok()
                }
                Err(e) => Value::Error(e),
            }
        }
        "DELUSER" => {
            if let Some(e) = refuse_default(args) {
                return e;
            }
            let mut deleted = 0;
            for name in &args[2..] {
                let name = text(name);
                let change = |current: Option<&str>| {
                    Ok(if current.is_some() {
                        UserChange::Delete
                    } else {
                        UserChange::Keep
                    })
                };
                match r.router.map_update_user(&name, change, now_ms()).await {
                    Ok(UserChange::Delete) => deleted += 1,
                    Ok(UserChange::Keep | UserChange::Set(_)) => {}
                    Err(e) => return Value::Error(e),
                }
            }
            node.refresh_access().await;
            Value::Int(deleted)
        }
        // What the users are: as the meta leader has them.
        "LIST" | "GETUSER" | "USERS" | "DRYRUN" => {
            node.refresh_access().await;
            read(node, client, &sub, args)
        }
        _ => read(node, client, &sub, args),
    }
}

/// `ACL …` queued in a transaction and answered at EXEC, without waiting on the
/// cluster: a replicated node's users change only outside MULTI.
pub fn answer_queued(node: &Arc<Node>, client: &mut Client, args: &[Bytes]) -> Value {
    let sub = match validate(args) {
        Ok(sub) => sub,
        Err(e) => return e,
    };
    match (&node.store, sub.as_str()) {
        (Store::Replicated(_), "SETUSER" | "DELUSER") => Value::Error(format!(
            "ERR ACL {sub} is not allowed inside MULTI on a cluster (users live in the cluster map)"
        )),
        (Store::Replicated(_) | Store::Local { .. }, _) => answer_here(node, client, &sub, args),
    }
}

/// A standalone node's answer, from and to its own table.
fn answer_here(node: &Arc<Node>, client: &mut Client, sub: &str, args: &[Bytes]) -> Value {
    match sub {
        "SETUSER" => {
            let name = text(&args[2]);
            let rules: Vec<String> = args[3..].iter().map(|a| text(a)).collect();
            let changed = node.access.modify(|users| {
                let mut user = match users.get(&name) {
                    Some(u) => (**u).clone(),
                    None => User::new(&name)?,
                };
                user.apply_all(rules.iter().map(String::as_str))?;
                users.insert(name.clone(), Arc::new(user));
                Ok::<(), AclError>(())
            });
            match changed {
                Ok(()) => Value::ok(),
                Err(e) => Value::Error(e.to_string()),
            }
        }
        "DELUSER" => {
            if let Some(e) = refuse_default(args) {
                return e;
            }
            let deleted = args[2..]
                .iter()
                .filter(|name| node.access.remove(&text(name)))
                .count();
            Value::Int(deleted as i64)
        }
        _ => read(node, client, sub, args),
    }
}

/// The user `name` as the map stores it (`None`: as a fresh cluster has it).
fn stored_user(name: &str, rules: Option<&str>) -> Result<User, AclError> {
    match rules {
        Some(rules) => User::from_rules(name, rules),
        None if name == DEFAULT_USER => Ok(User::default_user()),
        None => User::new(name),
    }
}

fn refuse_default(args: &[Bytes]) -> Option<Value> {
    args[2..]
        .iter()
        .any(|n| n.as_ref() == DEFAULT_USER.as_bytes())
        .then(|| Value::Error("ERR The 'default' user cannot be removed".into()))
}

/// The subcommands that read: from this node's table.
fn read(node: &Arc<Node>, client: &mut Client, sub: &str, args: &[Bytes]) -> Value {
    match sub {
        "WHOAMI" => Value::bulk(client.session.user.clone()),
        "USERS" => Value::Array(
            node.access
                .users()
                .keys()
                .map(|n| Value::bulk(n.clone()))
                .collect(),
        ),
        "LIST" => Value::Array(
            node.access
                .users()
                .values()
                .map(|u| Value::bulk(format!("user {} {}", u.name, u.rules())))
                .collect(),
        ),
        "GETUSER" => match node.access.user(&text(&args[2])) {
            Some(user) => getuser(&user),
            None => Value::Null,
        },
        "CAT" => match args.get(2) {
            None => Value::Array(acl::all_categories().into_iter().map(Value::bulk).collect()),
            Some(category) => match acl::commands_in(&text(category)) {
                Some(commands) => Value::Array(commands.into_iter().map(Value::bulk).collect()),
                None => Value::Error(format!(
                    "ERR Unknown category '{}'",
                    text(category).to_ascii_lowercase()
                )),
            },
        },
        "DRYRUN" => dryrun(node, args),
        _ => help(),
    }
}

fn getuser(user: &User) -> Value {
    let strings = |items: Vec<String>| Value::Array(items.into_iter().map(Value::bulk).collect());
    Value::Map(vec![
        (
            Value::bulk("flags"),
            strings(user.flags().into_iter().map(str::to_owned).collect()),
        ),
        (
            Value::bulk("passwords"),
            strings(user.password_hashes().map(str::to_owned).collect()),
        ),
        (Value::bulk("commands"), Value::bulk(user.command_rules())),
        (Value::bulk("keys"), Value::bulk(user.key_rules())),
        (
            Value::bulk("channels"),
            Value::bulk(user.channel_patterns()),
        ),
        (Value::bulk("selectors"), Value::Array(Vec::new())),
    ])
}

/// `ACL DRYRUN user command args…`: whether the user could run it, without running it.
fn dryrun(node: &Arc<Node>, args: &[Bytes]) -> Value {
    let name = text(&args[2]);
    if node.access.user(&name).is_none() {
        return Value::Error(format!("ERR User '{name}' not found"));
    }
    let Some(command) = lookup(&args[3]) else {
        return Value::Error(format!("ERR Command '{}' not found", text(&args[3])));
    };
    if !command.arity_ok(args.len() - 3) {
        return Value::Error(format!(
            "ERR wrong number of arguments for '{}' command",
            command.name.to_ascii_lowercase()
        ));
    }
    let mut session = Session::new();
    session.login(&name);
    match access::check(node, &mut session, command, &args[3..]) {
        Ok(()) => Value::ok(),
        Err(denial) => {
            let message = denial.message();
            Value::bulk(
                message
                    .strip_prefix("NOPERM ")
                    .unwrap_or(&message)
                    .to_owned(),
            )
        }
    }
}

fn help() -> Value {
    Value::Array(
        [
            "ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "CAT [<category>]",
            "DELUSER <username> [<username> ...]",
            "DRYRUN <username> <command> [<arg> ...]",
            "GETUSER <username>",
            "LIST",
            "SETUSER <username> <attribute> [<attribute> ...]",
            "USERS",
            "WHOAMI",
        ]
        .iter()
        .map(|l| Value::Simple(Bytes::from_static(l.as_bytes())))
        .collect(),
    )
}
