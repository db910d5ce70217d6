//! Who a connection is and what it may do: the node's table of users, each connection's
//! session, and the check every request passes before it is dispatched.
//!
//! Where the users come from:
//!
//! | store                 | users live in                    | a change reaches a router   |
//! |-----------------------|----------------------------------|-----------------------------|
//! | `shoal dev --standalone` | this table only (lost at exit, | at once                     |
//! |                       | as Redis without an ACL file)    |                             |
//! | replicated            | the cluster map (meta group)     | at once on the router that  |
//! |                       |                                  | made it; elsewhere within a |
//! |                       |                                  | map refresh (1 s), or at once |
//! |                       |                                  | when a refusal re-reads it  |
//!
//! A refusal on a replicated node re-reads the map from the meta leader once before it
//! is final ([`Session::may_force_refresh`] bounds how often a connection can ask), so
//! a user created or granted through another router is seen right away; a revocation
//! can take up to a refresh interval to reach every router.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::RwLock;
use shoal_engine::EngineError;
use shoal_resp::acl::{self, KeyAccess, User, DEFAULT_USER};
use shoal_resp::Command;

use crate::node::Node;

/// Refusals a connection may have re-checked against a fresh map per window.
const FORCED_REFRESHES: u32 = 10;
/// The same, for all connections of a node together.
const FORCED_REFRESHES_PER_NODE: u32 = 100;
const FORCED_WINDOW: Duration = Duration::from_secs(1);

/// Commands whose first argument is a subcommand an ACL rule can name (`+config|get`).
const CONTAINERS: &[&str] = &[
    "ACL", "CLIENT", "COMMAND", "CONFIG", "DEBUG", "RAFT", "RESHARD",
];

pub const NOAUTH: &str = "NOAUTH Authentication required.";
const USERS_UNKNOWN: &str =
    "CLUSTERDOWN this node has not read the cluster's users yet (the meta group has no leader), try again";
pub const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";
const NOPERM_KEY: &str = "NOPERM No permissions to access a key";
/// valkey-search's wording when an index's prefixes reach keys the user may not read.
const NOPERM_INDEX: &str = "NOPERM The user doesn't have a permission to execute a command";
const HELLO_NOAUTH: &str = "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time";
const AUTH_WITHOUT_PASSWORD: &str = "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?";

/// The users a node knows, shared by its connections.
#[derive(Debug)]
pub struct Access {
    users: RwLock<Arc<BTreeMap<String, Arc<User>>>>,
    /// Bumped on every change, so sessions know when to look their user up again.
    generation: AtomicU64,
    /// Whether the table holds the cluster's users yet. A replicated node starts
    /// without them and refuses (fails closed) until it has read the map once: its
    /// built-in `default` may be one an operator has since locked.
    loaded: AtomicBool,
    pub denied_auth: AtomicU64,
    pub denied_cmd: AtomicU64,
    pub denied_key: AtomicU64,
    /// Refusals re-checked against a fresh map in the current second, node-wide.
    forced: parking_lot::Mutex<Budget>,
}

impl Access {
    /// A table holding only the built-in `default` user; `loaded` when that is all
    /// there is to know (standalone), not when the cluster map is still to be read.
    pub fn new(loaded: bool) -> Self {
        Access {
            users: RwLock::new(Arc::new(Self::builtin())),
            generation: AtomicU64::new(1),
            loaded: AtomicBool::new(loaded),
            denied_auth: AtomicU64::new(0),
            denied_cmd: AtomicU64::new(0),
            denied_key: AtomicU64::new(0),
            forced: parking_lot::Mutex::new(Budget::new(FORCED_REFRESHES_PER_NODE)),
        }
    }

    /// Whether one more refusal may re-read the map this second, node-wide (so many
    /// connections together cannot turn refusals into a flood of meta leader reads).
    fn may_force_refresh(&self) -> bool {
        self.forced.lock().take()
    }

    /// Changes the table under its write lock (standalone), so that two changes at
    /// once do not lose either.
    pub fn modify<T>(&self, f: impl FnOnce(&mut BTreeMap<String, Arc<User>>) -> T) -> T {
        let mut guard = self.users.write();
        let mut users = (**guard).clone();
        let out = f(&mut users);
        if users != **guard {
            *guard = Arc::new(users);
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        out
    }

    fn builtin() -> BTreeMap<String, Arc<User>> {
        BTreeMap::from([(DEFAULT_USER.to_owned(), Arc::new(User::default_user()))])
    }

    pub fn user(&self, name: &str) -> Option<Arc<User>> {
        self.users.read().get(name).cloned()
    }

    pub fn users(&self) -> Arc<BTreeMap<String, Arc<User>>> {
        self.users.read().clone()
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Removes a user (standalone); whether it was there.
    pub fn remove(&self, name: &str) -> bool {
        self.modify(|users| users.remove(name).is_some())
    }

    /// Makes the table what the cluster map says (name → rules); `default` is the
    /// built-in one unless the map changed it. Rules that do not parse (a newer node's
    /// syntax) leave that user out, which refuses it rather than granting too much.
    pub fn sync(&self, rules: &BTreeMap<String, String>) {
        let mut users = Self::builtin();
        for (name, text) in rules {
            match User::from_rules(name, text) {
                Ok(user) => {
                    users.insert(name.clone(), Arc::new(user));
                }
                Err(e) => {
                    users.remove(name);
                    tracing::warn!(user = %name, error = %e, "a user in the cluster map does not parse");
                }
            }
        }
        self.modify(|current| *current = users);
        self.loaded.store(true, Ordering::Release);
    }

    pub fn loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }
}

/// One connection's identity.
#[derive(Debug)]
pub struct Session {
    pub user: String,
    /// `None` until decided: a connection that has not logged in is the `default`
    /// user when that user needs no password, which the node knows once it has its
    /// users (and decides again after re-reading them for a refusal).
    authenticated: Option<bool>,
    /// Logged in with AUTH or HELLO AUTH (never decided again).
    explicit: bool,
    /// The user as last looked up, with the table generation it came from.
    cached: Option<(u64, Arc<User>, bool)>,
    forced: Budget,
}

/// Forced re-reads of the users allowed per second ([`FORCED_WINDOW`]).
#[derive(Debug)]
pub struct Budget {
    window: Instant,
    used: u32,
    limit: u32,
}

impl Budget {
    fn new(limit: u32) -> Budget {
        Budget {
            window: Instant::now(),
            used: 0,
            limit,
        }
    }

    /// A connection's (or, for gRPC, which has no connections to tell callers apart
    /// by, every call's together).
    pub fn per_client() -> Budget {
        Budget::new(FORCED_REFRESHES)
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        if now.duration_since(self.window) >= FORCED_WINDOW {
            self.window = now;
            self.used = 0;
        }
        if self.used >= self.limit {
            return false;
        }
        self.used += 1;
        true
    }

    /// Whether one more refusal may re-read the users: within this budget and the
    /// node's.
    pub fn allows(&mut self, access: &Access) -> bool {
        self.take() && access.may_force_refresh()
    }
}

impl Session {
    /// A new connection: the default user, logged in if that user needs no password.
    pub fn new() -> Session {
        Session {
            user: DEFAULT_USER.to_owned(),
            authenticated: None,
            explicit: false,
            cached: None,
            forced: Budget::per_client(),
        }
    }

    /// Logs the connection in as `name` (the caller checked the password).
    pub fn login(&mut self, name: &str) {
        self.user = name.to_owned();
        self.authenticated = Some(true);
        self.explicit = true;
        self.cached = None;
    }

    /// After the users were read again: a connection that never logged in is the
    /// default user if the default user now needs no password.
    pub fn decide_again(&mut self) {
        if !self.explicit {
            self.authenticated = None;
        }
    }

    /// RESET: back to a new connection's state.
    pub fn reset(&mut self) {
        *self = Session::new();
    }

    /// Whether the connection is logged in; `None` while the node does not know its
    /// users yet.
    fn logged_in(&mut self, access: &Access) -> Option<bool> {
        if self.authenticated.is_none() && access.loaded() {
            self.authenticated = Some(access.user(DEFAULT_USER).is_some_and(|u| u.needs_no_auth()));
        }
        self.authenticated
    }

    /// Logged in as a user that was unrestricted when last looked up, and the table
    /// has not changed since: the common case, answered without touching the table.
    pub fn unrestricted(&self, access: &Access) -> bool {
        self.authenticated == Some(true)
            && matches!(&self.cached, Some((seen, _, true)) if *seen == access.generation())
    }

    /// The session's user and whether it is unrestricted, looked up again only when
    /// the table changed.
    fn current(&mut self, access: &Access) -> Option<(Arc<User>, bool)> {
        let generation = access.generation();
        if let Some((seen, user, free)) = &self.cached {
            if *seen == generation {
                return Some((user.clone(), *free));
            }
        }
        let user = access.user(&self.user)?;
        let free = user.unrestricted();
        self.cached = Some((generation, user.clone(), free));
        Some((user, free))
    }

    /// Whether a refusal may re-read the users first (at most [`FORCED_REFRESHES`] per
    /// second per connection, so a client repeating a refused command cannot turn each
    /// one into a read on the meta leader).
    pub fn may_force_refresh(&mut self, access: &Access) -> bool {
        self.forced.allows(access)
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// Not logged in, or the user was deleted since.
    NoAuth,
    /// A replicated node that has not read the cluster's users yet.
    UsersUnknown,
    /// HELLO without AUTH from a connection that is not logged in.
    HelloNoAuth,
    /// AUTH or HELLO AUTH with credentials that do not log in.
    WrongPass,
    /// `AUTH <password>` while the default user has none.
    NoPasswordConfigured,
    Command {
        user: String,
        command: String,
    },
    Key,
    Index,
    /// An FT command on an index this router does not know (yet): refused until the
    /// map is read again, as another router may just have created it.
    UnknownIndex(String),
}

impl Denial {
    pub fn message(&self) -> String {
        match self {
            Denial::NoAuth => NOAUTH.to_owned(),
            Denial::UsersUnknown => USERS_UNKNOWN.to_owned(),
            Denial::HelloNoAuth => HELLO_NOAUTH.to_owned(),
            Denial::WrongPass => WRONGPASS.to_owned(),
            Denial::NoPasswordConfigured => AUTH_WITHOUT_PASSWORD.to_owned(),
            Denial::Command { user, command } => {
                format!("NOPERM User {user} has no permissions to run the '{command}' command")
            }
            Denial::Key => NOPERM_KEY.to_owned(),
            Denial::Index => NOPERM_INDEX.to_owned(),
            Denial::UnknownIndex(name) => EngineError::UnknownIndex(name.clone()).to_string(),
        }
    }

    /// Whether the users as another router changed them could turn it into a yes.
    pub fn may_change_with_the_map(&self) -> bool {
        match self {
            Denial::NoAuth
            | Denial::UsersUnknown
            | Denial::WrongPass
            | Denial::Command { .. }
            | Denial::Key
            | Denial::Index
            | Denial::UnknownIndex(_) => true,
            Denial::HelloNoAuth | Denial::NoPasswordConfigured => false,
        }
    }

    /// Counts the refusal in INFO stats.
    pub fn count(&self, access: &Access) {
        let counter = match self {
            Denial::NoAuth
            | Denial::UsersUnknown
            | Denial::HelloNoAuth
            | Denial::WrongPass
            | Denial::NoPasswordConfigured => &access.denied_auth,
            Denial::Command { .. } => &access.denied_cmd,
            Denial::Key | Denial::Index | Denial::UnknownIndex(_) => &access.denied_key,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The user `AUTH`/`HELLO AUTH` would log in as, if the credentials are right.
pub fn credentials(access: &Access, user: &[u8], password: &[u8]) -> Result<String, Denial> {
    if !access.loaded() {
        // The built-in `default` takes any password; the cluster's may not.
        return Err(Denial::UsersUnknown);
    }
    let name = text(user);
    match access.user(&name) {
        Some(u) if u.authenticates(password) => Ok(name),
        Some(_) | None => Err(Denial::WrongPass),
    }
}

/// `AUTH`'s arguments as (user, password): one argument is the default user's password.
pub fn auth_args(args: &[Bytes]) -> Option<(&[u8], &[u8])> {
    match args {
        [_, password] => Some((DEFAULT_USER.as_bytes(), password)),
        [_, user, password] => Some((user, password)),
        _ => None,
    }
}

/// Whether this session may run this request.
pub fn check(
    node: &Node,
    session: &mut Session,
    command: &Command,
    args: &[Bytes],
) -> Result<(), Denial> {
    let access = &node.access;
    match command.name {
        "AUTH" => {
            let Some((user, password)) = auth_args(args) else {
                return Ok(()); // a syntax error, answered by AUTH itself
            };
            if args.len() == 2 && access.user(DEFAULT_USER).is_some_and(|u| u.nopass) {
                return Err(Denial::NoPasswordConfigured);
            }
            return credentials(access, user, password).map(|_| ());
        }
        "HELLO" => {
            // A syntax error is HELLO's own to answer.
            let Ok(options) = crate::admin::HelloOptions::parse(args) else {
                return Ok(());
            };
            return match options.auth {
                Some((user, password)) => credentials(access, user, password).map(|_| ()),
                None => match session.logged_in(access) {
                    Some(true) => Ok(()),
                    Some(false) => Err(Denial::HelloNoAuth),
                    None => Err(Denial::UsersUnknown),
                },
            };
        }
        _ => {}
    }
    if session.unrestricted(access) {
        return Ok(());
    }
    match session.logged_in(access) {
        Some(true) => {}
        _ if command.flags.contains(&"no_auth") => return Ok(()),
        Some(false) => return Err(Denial::NoAuth),
        None => return Err(Denial::UsersUnknown),
    }
    let Some((user, unrestricted)) = session.current(access) else {
        // Deleted since it logged in: as Redis, which disconnects such clients, the
        // connection may do nothing until it logs in again.
        session.authenticated = Some(false);
        return Err(Denial::NoAuth);
    };
    // AUTH, HELLO, QUIT and RESET: every user may run them.
    if unrestricted || command.flags.contains(&"no_auth") {
        return Ok(());
    }
    let sub = CONTAINERS
        .contains(&command.name)
        .then(|| args.get(1).map(|s| text(s)))
        .flatten();
    if !user.may_run(command, sub.as_deref()) {
        let mut shown = command.name.to_ascii_lowercase();
        if let Some(sub) = &sub {
            shown = format!("{shown}|{}", sub.to_ascii_lowercase());
        }
        return Err(Denial::Command {
            user: user.name.clone(),
            command: shown,
        });
    }
    let need: &[KeyAccess] = if !command.is_write() {
        &[KeyAccess::Read]
    } else if returns_the_value(command, args) {
        &[KeyAccess::Read, KeyAccess::Write]
    } else {
        &[KeyAccess::Write]
    };
    if !acl::keys(command, args).all(|k| need.iter().all(|a| user.may_access(k, *a))) {
        return Err(Denial::Key);
    }
    if let Some(prefixes) = index_prefixes(node, command, args)? {
        let covered = if prefixes.is_empty() {
            user.covers_prefix(b"")
        } else {
            prefixes.iter().all(|p| user.covers_prefix(p))
        };
        if !covered {
            return Err(Denial::Index);
        }
    }
    Ok(())
}

/// Writes that answer with the value they leave (or had), so that they read it too
/// and need read access as well (`INCRBY k 0` would otherwise read a write-only key).
fn returns_the_value(command: &Command, args: &[Bytes]) -> bool {
    match command.name {
        "INCR" | "DECR" | "INCRBY" | "DECRBY" | "HINCRBY" | "HINCRBYFLOAT" | "JSON.NUMINCRBY" => {
            true
        }
        "SET" => args.iter().skip(3).any(|a| a.eq_ignore_ascii_case(b"GET")),
        _ => false,
    }
}

/// The key prefixes of the index an FT command names (FT.CREATE: the prefixes it
/// declares); `None` when there is none to check (FT._LIST, or FT.CREATE arguments
/// that do not parse, which FT.CREATE then refuses itself). An index this router does
/// not know is refused, not let through: another router may have just created it,
/// and the groups would answer with its documents.
fn index_prefixes(
    node: &Node,
    command: &Command,
    args: &[Bytes],
) -> Result<Option<Vec<Vec<u8>>>, Denial> {
    match command.name {
        "FT.CREATE" => Ok(shoal_query::schema::parse_create(&args[1..])
            .ok()
            .map(|s| s.prefixes)),
        "FT.SEARCH" | "FT.AGGREGATE" | "FT.INFO" | "FT.DROPINDEX" => {
            let Some(name) = args.get(1).map(|n| text(n)) else {
                return Ok(None);
            };
            match node.index_prefixes(&name) {
                Some(prefixes) => Ok(Some(prefixes)),
                None => Err(Denial::UnknownIndex(name)),
            }
        }
        _ => Ok(None),
    }
}
