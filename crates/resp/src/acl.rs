//! Users and their permissions, as Redis's ACLs define them: which commands a user may
//! run (by category, command or subcommand), which keys it may read or write, and the
//! passwords it authenticates with.
//!
//! A [`User`] is built by applying `ACL SETUSER` rules in order, and described back by
//! [`User::rules`] in the same rule language (what `ACL LIST` shows): the description
//! applied to a fresh user gives the same user again, so the cluster map stores users as
//! that one line.
//!
//! Command rules are kept in order and the last one that names a command decides, which
//! is what Redis's bitmap of allowed commands computes; `+@all` and `-@all` replace
//! everything before them, so the list never grows past what it says.
//!
//! Key patterns are globs (`*` and `?`, as `KEYS` matches them). An index is readable
//! when the user's read patterns cover every key its prefixes can name
//! ([`User::covers_prefix`]): a search would otherwise return documents the user may
//! not `HGET`.

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};

use crate::commands::{Command, COMMANDS};

/// The user a connection starts as.
pub const DEFAULT_USER: &str = "default";

/// Why an `ACL SETUSER` rule was refused (Redis's wording).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    #[error("ERR Error in ACL SETUSER modifier '{rule}': {reason}")]
    Rule { rule: String, reason: &'static str },
    #[error("ERR Usernames can't contain spaces or null characters")]
    BadName,
}

const SYNTAX: &str = "Syntax error";
const UNKNOWN: &str = "Unknown command or category name in ACL";
const BAD_HASH: &str = "The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters";
const NO_SUCH_PASSWORD: &str = "The password you are trying to remove from the user does not exist";

/// What a command rule names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// `@name`; `@all` is every command.
    Category(String),
    /// A command by its lowercase name.
    Command(String),
    /// `command|subcommand`, both lowercase.
    Subcommand(String, String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct CommandRule {
    allow: bool,
    target: Target,
}

impl CommandRule {
    fn text(&self) -> String {
        let sign = if self.allow { '+' } else { '-' };
        match &self.target {
            Target::Category(c) => format!("{sign}@{c}"),
            Target::Command(c) => format!("{sign}{c}"),
            Target::Subcommand(c, s) => format!("{sign}{c}|{s}"),
        }
    }

    fn matches(&self, command: &Command, sub: Option<&str>) -> bool {
        match &self.target {
            Target::Category(c) => c == "all" || categories(command, sub).contains(&c.as_str()),
            Target::Command(c) => command.name.eq_ignore_ascii_case(c),
            Target::Subcommand(c, s) => {
                command.name.eq_ignore_ascii_case(c)
                    && sub.is_some_and(|sub| sub.eq_ignore_ascii_case(s))
            }
        }
    }
}

/// A key pattern and what it grants.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KeyPattern {
    read: bool,
    write: bool,
    pattern: String,
}

impl KeyPattern {
    fn text(&self) -> String {
        match (self.read, self.write) {
            (true, true) => format!("~{}", self.pattern),
            (true, false) => format!("%R~{}", self.pattern),
            (false, true) => format!("%W~{}", self.pattern),
            // Never built: a `%~` without R or W is a syntax error.
            (false, false) => String::new(),
        }
    }

    fn matches(&self, key: &[u8]) -> bool {
        self.pattern == "*" || crate::glob::matches(self.pattern.as_bytes(), key)
    }

    /// Whether every key that starts with `prefix` matches: the pattern ends in `*` and
    /// what comes before it matches some leading part of the prefix (the `*` then takes
    /// the rest of the prefix and whatever follows it). Conservative: a pattern that
    /// covers the prefix some other way (none in practice) is not recognised, nor one
    /// with a class or an escape before its last `*` (which may belong to them: `a\*`,
    /// `[a*`).
    fn covers_prefix(&self, prefix: &[u8]) -> bool {
        let Some(head) = self.pattern.strip_suffix('*') else {
            return false;
        };
        // `~*` is every key, the empty one included (Redis's allkeys); `~**` is the glob,
        // which no empty key matches, so it covers every prefix but the empty one.
        if head.bytes().all(|b| b == b'*') {
            return head.is_empty() || !prefix.is_empty();
        }
        if head.contains(['[', '\\']) {
            return false;
        }
        (1..=prefix.len()).any(|end| crate::glob::matches(head.as_bytes(), &prefix[..end]))
    }
}

/// Which access a command needs to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAccess {
    Read,
    Write,
}

/// One user: whether it may log in, with which passwords, and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub enabled: bool,
    /// Any password (or none) authenticates.
    pub nopass: bool,
    /// SHA-256 of each password, lowercase hex.
    passwords: BTreeSet<String>,
    commands: Vec<CommandRule>,
    keys: Vec<KeyPattern>,
    /// Channel patterns; kept and shown, as Shoal has no pub/sub to check them on.
    channels: Vec<String>,
}

impl User {
    /// A user `ACL SETUSER` creates: disabled, no password, no commands, no keys.
    pub fn new(name: &str) -> Result<User, AclError> {
        if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == '\0') {
            return Err(AclError::BadName);
        }
        Ok(User {
            name: name.to_owned(),
            enabled: false,
            nopass: false,
            passwords: BTreeSet::new(),
            commands: Vec::new(),
            keys: Vec::new(),
            channels: Vec::new(),
        })
    }

    /// The `default` user before anyone changes it: `on nopass ~* &* +@all`.
    pub fn default_user() -> User {
        User {
            name: DEFAULT_USER.to_owned(),
            enabled: true,
            nopass: true,
            passwords: BTreeSet::new(),
            commands: vec![CommandRule {
                allow: true,
                target: Target::Category("all".into()),
            }],
            keys: vec![KeyPattern {
                read: true,
                write: true,
                pattern: "*".into(),
            }],
            channels: vec!["*".into()],
        }
    }

    /// The user `name` as `rules` (from [`User::rules`]) describe it.
    pub fn from_rules(name: &str, rules: &str) -> Result<User, AclError> {
        let mut user = User::new(name)?;
        user.apply_all(rules.split_whitespace())?;
        Ok(user)
    }

    /// Applies `rules` in order; on an error the user is left as it was.
    pub fn apply_all<'a>(
        &mut self,
        rules: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), AclError> {
        let mut next = self.clone();
        for rule in rules {
            next.apply(rule)?;
        }
        *self = next;
        Ok(())
    }

    /// Applies one `ACL SETUSER` rule.
    pub fn apply(&mut self, rule: &str) -> Result<(), AclError> {
        let refuse = |reason| AclError::Rule {
            rule: rule.to_owned(),
            reason,
        };
        if rule.is_empty() || rule.contains(char::is_whitespace) {
            return Err(refuse(SYNTAX));
        }
        match rule.to_ascii_lowercase().as_str() {
            "on" => self.enabled = true,
            "off" => self.enabled = false,
            "nopass" => {
                self.nopass = true;
                self.passwords.clear();
            }
            "resetpass" => {
                self.nopass = false;
                self.passwords.clear();
            }
            "allkeys" => self.add_keys(true, true, "*"),
            "resetkeys" => self.keys.clear(),
            "allchannels" => self.channels = vec!["*".into()],
            "resetchannels" => self.channels.clear(),
            "allcommands" => self.add_command(true, Target::Category("all".into())),
            "nocommands" => self.add_command(false, Target::Category("all".into())),
            // Payload sanitizing is about DUMP/RESTORE, which Shoal does not have.
            "sanitize-payload" | "skip-sanitize-payload" => {}
            "reset" => {
                let name = std::mem::take(&mut self.name);
                *self = User::new(&name).map_err(|_| refuse(SYNTAX))?;
            }
            _ => return self.apply_prefixed(rule).map_err(refuse),
        }
        Ok(())
    }

    fn apply_prefixed(&mut self, rule: &str) -> Result<(), &'static str> {
        let mut chars = rule.chars();
        let first = chars.next().ok_or(SYNTAX)?;
        let rest = chars.as_str();
        match first {
            '>' => {
                self.passwords.insert(hash(rest));
                self.nopass = false;
            }
            '<' => {
                if !self.passwords.remove(&hash(rest)) {
                    return Err(NO_SUCH_PASSWORD);
                }
            }
            '#' => {
                if rest.len() != 64 || !rest.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                {
                    return Err(BAD_HASH);
                }
                self.passwords.insert(rest.to_owned());
                self.nopass = false;
            }
            '!' => {
                if !self.passwords.remove(rest) {
                    return Err(NO_SUCH_PASSWORD);
                }
            }
            '~' => self.add_keys(true, true, rest),
            '%' => {
                let (perms, pattern) = rest.split_once('~').ok_or(SYNTAX)?;
                let mut read = false;
                let mut write = false;
                for c in perms.chars() {
                    match c.to_ascii_uppercase() {
                        'R' => read = true,
                        'W' => write = true,
                        _ => return Err(SYNTAX),
                    }
                }
                if !(read || write) {
                    return Err(SYNTAX);
                }
                self.add_keys(read, write, pattern);
            }
            '&' => {
                if rest == "*" {
                    self.channels = vec!["*".into()];
                } else if !self.channels.iter().any(|c| c == "*" || c == rest) {
                    self.channels.push(rest.to_owned());
                }
            }
            '+' | '-' => {
                let target = target(rest)?;
                self.add_command(first == '+', target);
            }
            _ => return Err(SYNTAX),
        }
        Ok(())
    }

    fn add_keys(&mut self, read: bool, write: bool, pattern: &str) {
        let pattern = pattern.to_owned();
        if let Some(existing) = self.keys.iter_mut().find(|k| k.pattern == pattern) {
            existing.read |= read;
            existing.write |= write;
        } else {
            self.keys.push(KeyPattern {
                read,
                write,
                pattern,
            });
        }
    }

    fn add_command(&mut self, allow: bool, target: Target) {
        if target == Target::Category("all".into()) {
            // Everything before is overridden; `-@all` is where every user starts.
            self.commands.clear();
            if !allow {
                return;
            }
        }
        self.commands.push(CommandRule { allow, target });
    }

    /// The rules that rebuild this user from scratch (`ACL LIST` without `user <name>`).
    pub fn rules(&self) -> String {
        let mut out: Vec<String> = vec![if self.enabled { "on" } else { "off" }.into()];
        if self.nopass {
            out.push("nopass".into());
        }
        out.extend(self.passwords.iter().map(|h| format!("#{h}")));
        out.extend(self.keys.iter().map(KeyPattern::text));
        out.extend(self.channel_rules());
        out.push(self.command_rules());
        out.join(" ")
    }

    fn channel_rules(&self) -> Vec<String> {
        if self.channels.iter().any(|c| c == "*") {
            return vec!["&*".into()];
        }
        std::iter::once("resetchannels".to_owned())
            .chain(self.channels.iter().map(|c| format!("&{c}")))
            .collect()
    }

    /// `ACL GETUSER`'s `commands`: `+@all …` or `-@all …`.
    pub fn command_rules(&self) -> String {
        let all = CommandRule {
            allow: true,
            target: Target::Category("all".into()),
        };
        let mut out = Vec::new();
        if self.commands.first() != Some(&all) {
            out.push("-@all".to_owned());
        }
        out.extend(self.commands.iter().map(CommandRule::text));
        out.join(" ")
    }

    /// `ACL GETUSER`'s `keys`.
    pub fn key_rules(&self) -> String {
        self.keys
            .iter()
            .map(KeyPattern::text)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// `ACL GETUSER`'s `channels`.
    pub fn channel_patterns(&self) -> String {
        self.channels
            .iter()
            .map(|c| format!("&{c}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// `ACL GETUSER`'s `flags`.
    pub fn flags(&self) -> Vec<&'static str> {
        let mut flags = vec![if self.enabled { "on" } else { "off" }];
        if self.nopass {
            flags.push("nopass");
        }
        flags
    }

    pub fn password_hashes(&self) -> impl Iterator<Item = &str> {
        self.passwords.iter().map(String::as_str)
    }

    /// Whether `password` logs this user in.
    pub fn authenticates(&self, password: &[u8]) -> bool {
        self.enabled && (self.nopass || self.passwords.contains(&hash_bytes(password)))
    }

    /// Whether a new connection is this user without AUTH (the default user, when it
    /// is enabled and needs no password).
    pub fn needs_no_auth(&self) -> bool {
        self.enabled && self.nopass
    }

    /// Every command on every key: the connection need not check anything.
    pub fn unrestricted(&self) -> bool {
        self.enabled
            && matches!(self.commands.as_slice(), [CommandRule { allow: true, target: Target::Category(c) }] if c == "all")
            && self
                .keys
                .iter()
                .any(|k| k.read && k.write && k.pattern == "*")
    }

    /// Whether the user may run `command` (with `sub`, its first argument, for the
    /// container commands whose subcommands differ: ACL, CONFIG, CLIENT…).
    pub fn may_run(&self, command: &Command, sub: Option<&str>) -> bool {
        let mut allowed = false;
        for rule in &self.commands {
            if rule.matches(command, sub) {
                allowed = rule.allow;
            }
        }
        allowed
    }

    pub fn may_access(&self, key: &[u8], access: KeyAccess) -> bool {
        self.keys.iter().any(|k| {
            let granted = match access {
                KeyAccess::Read => k.read,
                KeyAccess::Write => k.write,
            };
            granted && k.matches(key)
        })
    }

    /// Whether the user may read every key that starts with `prefix` (an index's
    /// prefix; the empty prefix is every key).
    pub fn covers_prefix(&self, prefix: &[u8]) -> bool {
        self.keys.iter().any(|k| k.read && k.covers_prefix(prefix))
    }
}

/// The command rule target `rest` names (after the `+` or `-`).
fn target(rest: &str) -> Result<Target, &'static str> {
    if let Some(category) = rest.strip_prefix('@') {
        let category = category.to_ascii_lowercase();
        if category != "all" && !all_categories().contains(&category.as_str()) {
            return Err(UNKNOWN);
        }
        return Ok(Target::Category(category));
    }
    let (name, sub) = match rest.split_once('|') {
        Some((name, sub)) if !sub.is_empty() && !sub.contains('|') => (name, Some(sub)),
        Some(_) => return Err(SYNTAX),
        None => (rest, None),
    };
    if crate::lookup(name.as_bytes()).is_none() {
        return Err(UNKNOWN);
    }
    let name = name.to_ascii_lowercase();
    Ok(match sub {
        Some(sub) => Target::Subcommand(name, sub.to_ascii_lowercase()),
        None => Target::Command(name),
    })
}

fn hash(password: &str) -> String {
    hash_bytes(password.as_bytes())
}

fn hash_bytes(password: &[u8]) -> String {
    Sha256::digest(password)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The categories of `command` run with subcommand `sub`. The ACL subcommands that
/// change or reveal users are administrative; asking who one is, or which categories
/// exist, is not.
pub fn categories(command: &Command, sub: Option<&str>) -> &'static [&'static str] {
    if command.name == "ACL" {
        let harmless = sub.is_some_and(|s| {
            ["WHOAMI", "CAT", "HELP"]
                .iter()
                .any(|h| s.eq_ignore_ascii_case(h))
        });
        return if harmless {
            &["slow"]
        } else {
            &["admin", "slow", "dangerous"]
        };
    }
    command.categories
}

/// Every category some command is in, sorted (`ACL CAT`).
pub fn all_categories() -> Vec<&'static str> {
    let mut all: BTreeSet<&'static str> = COMMANDS
        .iter()
        .flat_map(|c| c.categories.iter().copied())
        .collect();
    all.insert("admin");
    all.insert("dangerous");
    all.into_iter().collect()
}

/// The commands in `category`, lowercase (`ACL CAT <category>`).
pub fn commands_in(category: &str) -> Option<Vec<String>> {
    let category = category.to_ascii_lowercase();
    if !all_categories().contains(&category.as_str()) {
        return None;
    }
    Some(
        COMMANDS
            .iter()
            .filter(|c| categories(c, None).contains(&category.as_str()))
            .map(|c| c.name.to_ascii_lowercase())
            .collect(),
    )
}

/// The keys of a request, by the command's key positions, with the access it needs:
/// writes need write access to their keys, everything else read access.
pub fn keys<'a, A: AsRef<[u8]>>(
    command: &Command,
    args: &'a [A],
) -> impl Iterator<Item = &'a [u8]> + 'a {
    let n = args.len() as i64;
    let first = i64::from(command.first_key);
    let last = match i64::from(command.last_key) {
        l if l < 0 => n + l,
        l => l,
    };
    let step = i64::from(command.step).max(1) as usize;
    // A keyless command (first key 0) gives an empty range.
    let positions = (first.max(1)..=if first > 0 { last.min(n - 1) } else { 0 }).step_by(step);
    positions.filter_map(move |i| args.get(i as usize).map(AsRef::as_ref))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lookup;

    fn cmd(name: &str) -> &'static Command {
        lookup(name.as_bytes()).unwrap_or_else(|| panic!("{name} is in the table"))
    }

    fn user(rules: &str) -> User {
        User::from_rules("alice", rules).unwrap_or_else(|e| panic!("{rules}: {e}"))
    }

    #[test]
    fn a_new_user_may_do_nothing_and_the_default_user_everything() {
        let new = user("");
        assert!(!new.enabled && !new.may_run(cmd("GET"), None));
        assert!(!new.may_access(b"k", KeyAccess::Read));
        assert_eq!(new.rules(), "off resetchannels -@all");
        let default = User::default_user();
        assert!(default.unrestricted() && default.needs_no_auth());
        assert_eq!(default.rules(), "on nopass ~* &* +@all");
    }

    #[test]
    fn the_last_rule_naming_a_command_decides() {
        let u = user("on +@all -@dangerous +flushall -get");
        assert!(u.may_run(cmd("SET"), None));
        assert!(!u.may_run(cmd("GET"), None));
        assert!(u.may_run(cmd("FLUSHALL"), None));
        assert!(!u.may_run(cmd("KEYS"), None));
        assert_eq!(u.command_rules(), "+@all -@dangerous +flushall -get");
        // `-@all` forgets everything before it.
        let u = user("+@all -get -@all +@search");
        assert_eq!(u.command_rules(), "-@all +@search");
        assert!(u.may_run(cmd("FT.SEARCH"), None) && !u.may_run(cmd("GET"), None));
        assert!(!u.unrestricted());
    }

    #[test]
    fn subcommands_and_the_acl_command_s_own_categories() {
        let u = user("on -@all +acl|whoami +config|get");
        assert!(u.may_run(cmd("ACL"), Some("whoami")));
        assert!(!u.may_run(cmd("ACL"), Some("setuser")));
        assert!(u.may_run(cmd("CONFIG"), Some("GET")));
        assert!(!u.may_run(cmd("CONFIG"), Some("set")));
        let admin_less = user("on +@all -@admin");
        assert!(admin_less.may_run(cmd("ACL"), Some("WHOAMI")));
        assert!(!admin_less.may_run(cmd("ACL"), Some("SETUSER")));
        assert!(!admin_less.may_run(cmd("ACL"), Some("LIST")));
    }

    #[test]
    fn key_patterns_grant_read_write_or_both() {
        let u = user("on ~doc:* %R~ro:* %W~wo:? allcommands");
        assert!(
            u.may_access(b"doc:1", KeyAccess::Read) && u.may_access(b"doc:1", KeyAccess::Write)
        );
        assert!(u.may_access(b"ro:1", KeyAccess::Read) && !u.may_access(b"ro:1", KeyAccess::Write));
        assert!(u.may_access(b"wo:1", KeyAccess::Write) && !u.may_access(b"wo:1", KeyAccess::Read));
        assert!(!u.may_access(b"wo:12", KeyAccess::Write));
        assert!(!u.may_access(b"other", KeyAccess::Read));
        assert_eq!(u.key_rules(), "~doc:* %R~ro:* %W~wo:?");
        // The same pattern twice merges its permissions.
        let u = user("%R~a* %W~a*");
        assert_eq!(u.key_rules(), "~a*");
        let u = user("~a* resetkeys ~b*");
        assert_eq!(u.key_rules(), "~b*");
    }

    #[test]
    fn an_index_prefix_is_covered_only_when_every_key_under_it_is_readable() {
        let u = user("~doc:* %W~w:* ~exact");
        assert!(u.covers_prefix(b"doc:"));
        assert!(u.covers_prefix(b"doc:sub:"));
        assert!(!u.covers_prefix(b"do"), "'do' also names 'dog'");
        assert!(!u.covers_prefix(b""), "the empty prefix is every key");
        assert!(!u.covers_prefix(b"w:"), "write-only");
        assert!(!u.covers_prefix(b"exact"));
        assert!(user("~*").covers_prefix(b""));
        assert!(user("~d?c*").covers_prefix(b"doc:"));
        assert!(user("~d*:*").covers_prefix(b"doc:"));
        assert!(!user("~d*:x*").covers_prefix(b"doc:"));
        assert!(
            !user("~***").covers_prefix(b""),
            "`**` does not match the empty key"
        );
        assert!(user("~***").covers_prefix(b"d"));
        // A star that is escaped or inside a class does not end the pattern.
        assert!(!user("~doc\\*").covers_prefix(b"doc"));
        assert!(!user("~[d*").covers_prefix(b"d"));
    }

    #[test]
    fn key_patterns_are_redis_globs_over_bytes() {
        let u = user("~user:[0-9]* ~k\\?");
        assert!(u.may_access(b"user:7", KeyAccess::Read));
        assert!(!u.may_access(b"user:x", KeyAccess::Read));
        assert!(u.may_access(b"k?", KeyAccess::Read));
        assert!(!u.may_access(b"kx", KeyAccess::Read), "the ? was escaped");
        assert!(user("~b?").may_access(b"b\xff", KeyAccess::Write));
    }

    #[test]
    fn passwords_are_kept_as_hashes_and_checked() {
        let mut u = user("on >secret >other");
        assert!(u.authenticates(b"secret") && u.authenticates(b"other"));
        assert!(!u.authenticates(b"wrong"));
        assert_eq!(u.password_hashes().count(), 2);
        assert!(!u.rules().contains("secret"));
        u.apply("<other").unwrap_or_else(|e| panic!("{e}"));
        assert!(!u.authenticates(b"other"));
        assert_eq!(
            u.apply("<other"),
            Err(AclError::Rule {
                rule: "<other".into(),
                reason: NO_SUCH_PASSWORD
            })
        );
        u.apply("off").unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !u.authenticates(b"secret"),
            "a disabled user logs in with nothing"
        );
        let hashed = user(&format!("on #{}", hash("pw")));
        assert!(hashed.authenticates(b"pw"));
        assert!(user("on nopass").authenticates(b"anything"));
        assert!(!user("on >x nopass resetpass").authenticates(b"x"));
    }

    #[test]
    fn the_description_rebuilds_the_same_user() {
        for rules in [
            "on >pw ~doc:* %R~ro:* &chan +@all -@dangerous +flushall|async -get",
            "off nopass allkeys allchannels -@all +@search +acl|whoami",
            "on #5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8 resetchannels",
        ] {
            let u = user(rules);
            let again = User::from_rules("alice", &u.rules()).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(again, u, "{rules} -> {}", u.rules());
        }
    }

    #[test]
    fn bad_rules_are_refused_in_redis_s_words_and_change_nothing() {
        let mut u = user("on ~a*");
        let before = u.clone();
        for (rule, reason) in [
            ("+nosuchcommand", UNKNOWN),
            ("+@nosuchcategory", UNKNOWN),
            ("#abc", BAD_HASH),
            ("%X~k", SYNTAX),
            ("%~k", SYNTAX),
            ("bogus", SYNTAX),
            ("+get|", SYNTAX),
        ] {
            let err = u.apply_all(["+@all", rule]).err();
            assert_eq!(
                err,
                Some(AclError::Rule {
                    rule: rule.into(),
                    reason
                }),
                "{rule}"
            );
            assert_eq!(u, before, "{rule} left the user changed");
        }
        assert_eq!(
            AclError::Rule {
                rule: "+x".into(),
                reason: UNKNOWN
            }
            .to_string(),
            "ERR Error in ACL SETUSER modifier '+x': Unknown command or category name in ACL"
        );
        assert_eq!(User::new("a b"), Err(AclError::BadName));
        assert!(user("reset").rules() == "off resetchannels -@all");
    }

    #[test]
    fn keys_follow_the_command_table_s_positions() {
        let args: Vec<&[u8]> = vec![b"MSET", b"a", b"1", b"b", b"2"];
        assert_eq!(
            keys(cmd("MSET"), &args).collect::<Vec<_>>(),
            vec![b"a" as &[u8], b"b"]
        );
        let args: Vec<&[u8]> = vec![b"DEL", b"a", b"b", b"c"];
        assert_eq!(keys(cmd("DEL"), &args).count(), 3);
        let args: Vec<&[u8]> = vec![b"JSON.MGET", b"a", b"b", b"$"];
        assert_eq!(
            keys(cmd("JSON.MGET"), &args).collect::<Vec<_>>(),
            vec![b"a" as &[u8], b"b"]
        );
        let args: Vec<&[u8]> = vec![b"HSET", b"h", b"f", b"v"];
        assert_eq!(
            keys(cmd("HSET"), &args).collect::<Vec<_>>(),
            vec![b"h" as &[u8]]
        );
        let args: Vec<&[u8]> = vec![b"FT.SEARCH", b"idx", b"*"];
        assert_eq!(keys(cmd("FT.SEARCH"), &args).count(), 0);
    }

    #[test]
    fn categories_list_what_the_table_uses() {
        let all = all_categories();
        for c in [
            "read",
            "write",
            "search",
            "admin",
            "dangerous",
            "fast",
            "slow",
        ] {
            assert!(all.contains(&c), "{c}");
        }
        let search = commands_in("search").unwrap_or_default();
        assert!(search.contains(&"ft.search".to_owned()));
        assert!(commands_in("nope").is_none());
    }
}
