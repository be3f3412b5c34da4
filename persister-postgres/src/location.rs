//! Where a store is: a connection URL, the server it names, and how to connect.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use persister_core::{Error, Result};
use postgres::config::Host;
use postgres::{Client, Config};

use crate::error::{Secret, from_pg};

/// A parsed store URL: the connection settings, a description of it without the
/// password, and the password to keep out of every message.
#[derive(Clone)]
pub(crate) struct Location {
    pub config: Config,
    pub description: String,
    pub secret: Secret,
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Location")
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

impl Location {
    /// Parses a `postgres://` (or `postgresql://`) URL, or a `key=value` connection
    /// string, as the `postgres` crate accepts them, without the store's own options
    /// (see [`driver_url`]); `connect_timeout` and `network_timeout` apply where the
    /// URL sets no value of its own (see [`PostgresOptions`](crate::PostgresOptions)).
    ///
    /// Stricter than the driver, which would silently connect elsewhere or otherwise
    /// than written: an option written twice (but `host`, `hostaddr` and `port`, which
    /// list several hosts), a user or database written both in the URL's user part or
    /// path and as an option, a number of seconds under 1 (which the driver ignores),
    /// text a connection string holds past where the driver stops reading, and a number
    /// of ports or addresses that does not match the hosts are refused. An error names the
    /// option or part at fault, never the password.
    pub fn parse(url: &str, connect_timeout: Duration, network_timeout: Duration) -> Result<Self> {
        let settings = written(url);
        let mut secret = Secret::new(password_in(url).as_deref().map(str::as_bytes));
        for option in settings.options.iter().filter(|o| o.key == "password") {
            secret.add(Some(option.raw.as_bytes()));
            secret.add(Some(option.value.as_bytes()));
        }
        let invalid = |reason: String| Error::InvalidInput {
            what: "PostgreSQL URL",
            reason: secret.redact(&reason),
        };
        check_user_part(url).map_err(invalid)?;
        check_settings(&settings).map_err(invalid)?;
        let mut config: Config = url
            .parse()
            .map_err(|err: postgres::Error| invalid(parse_error(&err, &settings)))?;
        check_hosts(&config).map_err(invalid)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(connect_timeout);
        }
        // A TCP connection whose peer went silent (a partition, a machine gone without
        // closing it) counts as lost after `network_timeout`, whether data sent waits
        // for its acknowledgement (TCP_USER_TIMEOUT) or the connection is idle
        // waiting for an answer (keepalive probes: the first after half of it, then
        // three more, one every sixth; in whole seconds, at least 1). The server's kernel answers probes however
        // long a statement runs, so this bounds no statement.
        // The kernel counts keepalive times in whole seconds, and refuses 0.
        let seconds = network_timeout.as_secs().max(2);
        let idle = seconds / 2;
        let interval = ((seconds - idle) / 3).max(1);
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(Duration::from_secs(seconds));
        }
        if !settings
            .options
            .iter()
            .any(|o| o.key.starts_with("keepalives"))
        {
            config
                .keepalives(true)
                .keepalives_idle(Duration::from_secs(idle))
                .keepalives_interval(Duration::from_secs(interval))
                .keepalives_retries(3);
        }
        if config.get_application_name().is_none() {
            config.application_name("persister");
        }
        secret.add(config.get_password());
        Ok(Self {
            description: describe(&config),
            config,
            secret,
        })
    }

    /// How long checking an idle connection may take: the connect timeout.
    pub fn check_timeout(&self) -> Duration {
        self.config
            .get_connect_timeout()
            .copied()
            .unwrap_or(Duration::from_secs(10))
    }

    /// Opens a new connection; `unreplicated` is set when the server warns that it
    /// cancelled a commit's wait for its synchronous standbys (the commit is then
    /// durable on this server only, and the flush must not be acknowledged).
    pub fn connect(&self, unreplicated: &Arc<AtomicBool>) -> Result<Client> {
        let mut config = self.config.clone();
        let flag = Arc::clone(unreplicated);
        config.notice_callback(move |notice| {
            if is_unreplicated_commit(&notice) {
                flag.store(true, Ordering::SeqCst);
            }
        });
        connect(&config).map_err(|err| {
            let mut err = from_pg(&err, "connecting", &self.description, &self.secret);
            if cfg!(not(feature = "tls"))
                && self.config.get_ssl_mode() == postgres::config::SslMode::Require
            {
                err = Error::InvalidInput {
                    what: "PostgreSQL URL",
                    reason: format!(
                        "{}: sslmode=require needs persister-postgres built with its `tls` feature ({err})",
                        self.description
                    ),
                };
            }
            err
        })
    }
}

/// What a URL or connection string must not hold, though the driver would take it
/// (see [`Location::parse`]); the reason, not yet cleared of the password.
fn check_settings(settings: &Settings) -> std::result::Result<(), String> {
    if let Some(at) = settings.unread {
        return Err(format!(
            "the connection string holds text from byte {at} on that is no `key=value` pair (an `=` without its key?), which the driver would ignore"
        ));
    }
    for option in &settings.options {
        let key = option.key.as_str();
        // The store takes its own options out before the driver sees the rest, by
        // their names as written.
        if STORE_OPTIONS.contains(&key) {
            return Err(format!(
                "option `{key}` is written `{}`: write its name without %-escapes",
                option.raw_key
            ));
        }
        // The driver decodes a key's escapes; messages that hide a password look for
        // its name as written.
        if option.raw_key != option.key {
            return Err(format!(
                "option `{key}` is written with %-escapes in its name: write the name as it is"
            ));
        }
        if LIST_OPTIONS.contains(&key) || !DRIVER_OPTIONS.contains(&key) {
            // Several hosts, or an option the driver refuses (naming it).
            continue;
        }
        let places: Vec<String> = settings
            .options
            .iter()
            .filter(|o| o.key == key)
            .map(|o| o.place.to_string())
            .collect();
        if places.len() > 1 {
            return Err(format!(
                "option `{key}` is given {} times ({}); give it once (the driver would take the last and ignore the others)",
                places.len(),
                places.join(", ")
            ));
        }
        if SECONDS_OPTIONS.contains(&key)
            && let Ok(seconds) = option.value.parse::<i64>()
            && seconds < 1
        {
            return Err(format!(
                "option `{key}` is {seconds}: give a whole number of seconds, at least 1 (the driver ignores a value under 1)"
            ));
        }
    }
    Ok(())
}

/// The driver's refusal of a URL, with what its message leaves out: the option at
/// fault, the value given to it (never the password's), and the options there are;
/// the reason, not yet cleared of the password.
fn parse_error(err: &postgres::Error, settings: &Settings) -> String {
    let cause = std::error::Error::source(err)
        .map(|cause| format!(": {cause}"))
        .unwrap_or_default();
    let mut reason = format!("{err}{cause}");
    // The driver's causes: "invalid value for option `port`", "unknown option `x`".
    let named = cause
        .split_once('`')
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(key, _)| key);
    if let Some(key) = named {
        if cause.contains("unknown option") {
            reason.push_str(&format!(
                "; the store's options are {}, and the driver's {}",
                STORE_OPTIONS.join(", "),
                DRIVER_OPTIONS.join(", ")
            ));
        } else if key != "password" {
            let given: Vec<String> = settings
                .options
                .iter()
                .filter(|o| o.key == key)
                .map(|o| format!("{:?} {}", o.value, o.place))
                .collect();
            if !given.is_empty() {
                reason.push_str(&format!(" (given {})", given.join(", ")));
            }
        }
    }
    reason.push_str("; expected postgres://user[:password]@host[:port]/database[?options]");
    reason
}

/// Fails when a `postgres://` URL holds an `@` the driver would misread. The driver
/// ends the user part at the first `@` of the whole URL, so the URL reads as written
/// only when that `@` comes before any `/` or `?` and no other `@` follows it before
/// the query: otherwise a user name or password with a raw `@`, `/` or `?` (or a raw
/// `@` in the host or database) would connect elsewhere than written, and show part of
/// a password wherever the host is shown. An `@` in an option's value after a user
/// part is read as written. The message quotes nothing of the URL.
fn check_user_part(url: &str) -> std::result::Result<(), String> {
    let Some(rest) = ["postgres://", "postgresql://"]
        .iter()
        .find_map(|scheme| url.strip_prefix(scheme))
    else {
        return Ok(());
    };
    let query = rest.find('?').unwrap_or(rest.len());
    let misread = match rest.find('@') {
        None => false,
        // Checked first, so that `first < query` below.
        Some(first) if rest[..first].contains(['/', '?']) => true,
        Some(first) => rest[first + 1..query].contains('@'),
    };
    match misread {
        false => Ok(()),
        true => Err(
            "the URL holds an `@` the driver would misread: write each `@` of a user name, password or database name as %40, and each `/` or `?` of a password as %2F or %3F"
                .into(),
        ),
    }
}

/// An error when the driver would refuse to connect for the number of hosts, their
/// addresses (`hostaddr`) and ports: one port serves every host, or each has its own.
fn check_hosts(config: &Config) -> std::result::Result<(), String> {
    let (hosts, addrs) = (config.get_hosts().len(), config.get_hostaddrs().len());
    if hosts > 0 && addrs > 0 && hosts != addrs {
        return Err(format!(
            "{hosts} hosts but {addrs} addresses (`hostaddr`): give one address per host"
        ));
    }
    let ports = config.get_ports().len();
    let hosts = hosts.max(addrs);
    if ports > 1 && ports != hosts {
        return Err(format!(
            "{ports} ports for {hosts} hosts: give one port for all hosts, or one per host (a port in the URL's hosts and a `port` option are two)"
        ));
    }
    Ok(())
}

#[cfg(not(feature = "tls"))]
fn connect(config: &Config) -> std::result::Result<Client, postgres::Error> {
    config.connect(postgres::NoTls)
}

#[cfg(feature = "tls")]
fn connect(config: &Config) -> std::result::Result<Client, postgres::Error> {
    use openssl::ssl::{SslConnector, SslMethod};
    if config.get_ssl_mode() == postgres::config::SslMode::Disable {
        return config.connect(postgres::NoTls);
    }
    match SslConnector::builder(SslMethod::tls()) {
        Ok(builder) => config.connect(postgres_openssl::MakeTlsConnector::new(builder.build())),
        // Without a TLS context, `prefer` falls back to a plain connection and `require`
        // fails with the driver's own message.
        Err(_) => config.connect(postgres::NoTls),
    }
}

/// Whether `url` is a URL (`postgres://` or `postgresql://`) rather than a `key=value`
/// connection string, as the driver tells them apart.
pub(crate) fn is_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The options a store reads from its URL itself, which the driver is never given.
pub(crate) const STORE_OPTIONS: [&str; 2] = ["schema", "migrate_format"];

/// The options of the `postgres` driver, named in the message for an option neither
/// it nor the store knows.
const DRIVER_OPTIONS: [&str; 19] = [
    "host",
    "hostaddr",
    "port",
    "user",
    "password",
    "dbname",
    "options",
    "application_name",
    "sslmode",
    "sslnegotiation",
    "connect_timeout",
    "tcp_user_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_retries",
    "target_session_attrs",
    "channel_binding",
    "load_balance_hosts",
];

/// The driver's options that may be written more than once: each adds to the list of
/// hosts it tries in turn (`host=a&host=b` is `host=a,b`). Every other option, the
/// store's and the driver's, may be written once: the driver would take the last and
/// silently ignore the others.
const LIST_OPTIONS: [&str; 3] = ["host", "hostaddr", "port"];

/// The driver's options whose value is a number of seconds that the driver ignores
/// when it is under 1 (libpq reads 0 as "no limit" or "the system's default").
const SECONDS_OPTIONS: [&str; 4] = [
    "connect_timeout",
    "tcp_user_timeout",
    "keepalives_idle",
    "keepalives_interval",
];

/// `url` without the options that are the store's, not the driver's (`schema`,
/// `migrate_format`): what the driver is given.
///
/// # Errors
///
/// [`Error::InvalidInput`] when one of them is written more than once.
pub(crate) fn driver_url(url: &str) -> Result<String> {
    let mut url = url.to_string();
    for key in STORE_OPTIONS {
        let (rest, values) = take_option(&url, key);
        only_one(key, &values, &url_secret(&url))?;
        url = rest;
    }
    Ok(url)
}

/// The value of the store's option `key` (`schema`, `migrate_format`) in `url`, if it
/// has one.
///
/// # Errors
///
/// [`Error::InvalidInput`] when the option is written more than once: which one was
/// meant is not known, and taking the last would open what the user may not have
/// meant.
pub(crate) fn option_in(url: &str, key: &'static str) -> Result<Option<String>> {
    let (_, mut values) = take_option(url, key);
    only_one(key, &values, &url_secret(url))?;
    Ok(values.pop())
}

/// An error when the option `key` has more than one value.
fn only_one(key: &str, values: &[String], secret: &Secret) -> Result<()> {
    if values.len() < 2 {
        return Ok(());
    }
    let quoted: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    Err(Error::InvalidInput {
        what: "PostgreSQL URL",
        reason: secret.redact(&format!(
            "option `{key}` is given {} times ({}); give it once",
            values.len(),
            quoted.join(", ")
        )),
    })
}

/// The passwords written in `url`, to keep out of a message about it.
fn url_secret(url: &str) -> Secret {
    let mut secret = Secret::new(password_in(url).as_deref().map(str::as_bytes));
    for option in written(url).options {
        if option.key == "password" {
            secret.add(Some(option.raw.as_bytes()));
            secret.add(Some(option.value.as_bytes()));
        }
    }
    secret
}

/// Takes the option `key` (`schema`, `migrate_format`) out of a URL (`?key=VALUE`) or
/// connection string (`key=VALUE`, or `key = 'VALUE'`), since the driver does not know
/// it: the URL without it, and its values in the order written (more than one when it
/// is there several times, which the callers refuse).
///
/// Both are read as the driver reads them, so that the option found is the one the
/// driver would see: a URL's options follow the first `?` after its user part (which
/// ends at the first `@`), hosts and database; a connection string's value may be
/// quoted (`'a b'`) and hold `\` escapes, and a quoted value that looks like an option
/// (`application_name='x schema=y'`) is part of that value. Whatever else the string
/// holds is kept byte for byte. A connection string the driver could not parse is
/// returned as it is, without a value, for the driver to report.
pub(crate) fn take_option(url: &str, key: &str) -> (String, Vec<String>) {
    if is_url(url) {
        let Some(start) = url_query_start(url) else {
            return (url.to_string(), Vec::new());
        };
        let (base, query) = (&url[..start - 1], &url[start..]);
        let prefix = format!("{key}=");
        let mut values = Vec::new();
        let kept: Vec<&str> = query
            .split('&')
            .filter(|kv| match kv.strip_prefix(&prefix) {
                Some(v) => {
                    values.push(v.to_string());
                    false
                }
                None => true,
            })
            .collect();
        let url = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return (url, values);
    }
    let Some((pairs, _)) = pairs(url) else {
        return (url.to_string(), Vec::new());
    };
    let mut kept = String::with_capacity(url.len());
    let (mut from, mut previous_end) = (0, 0);
    let mut values = Vec::new();
    for pair in pairs {
        if pair.key == key {
            // The pair and the whitespace before it, back to the end of the pair
            // before (whose value may end in an escaped space).
            kept.push_str(&url[from..previous_end]);
            from = pair.end;
            values.push(pair.value);
        }
        previous_end = pair.end;
    }
    kept.push_str(&url[from..]);
    (kept, values)
}

/// Where a URL's options start, as the driver finds them: just past the `?` that
/// follows the user part (up to the first `@`, when there is one), the hosts (up to
/// the first `/` or `?`) and the database (up to the first `?`); `None` when it has no
/// options.
pub(crate) fn url_query_start(url: &str) -> Option<usize> {
    let mut at = url.find("://")? + 3;
    if let Some(i) = url[at..].find('@') {
        at += i + 1;
    }
    at += url[at..].find(['/', '?'])?;
    if url[at..].starts_with('/') {
        at += url[at..].find('?')?;
    }
    Some(at + 1)
}

/// One `key=value` pair of a connection string.
struct Pair {
    key: String,
    /// As the driver reads it: without its quotes, its escapes undone.
    value: String,
    /// Where the pair ends (past its value), in bytes.
    end: usize,
}

/// The pairs of a connection string, read as the driver reads them: `key = value`,
/// separated by whitespace; a value is a run of characters up to the next whitespace,
/// or quoted in `'`, and a `\` takes the next character as it is, in both. Reading stops
/// where no key starts (an `=` there), as the driver's does: then also where, in bytes,
/// which the driver ignores from there on. `None` when the driver would refuse it.
fn pairs(s: &str) -> Option<(Vec<Pair>, Option<usize>)> {
    fn skip_whitespace(it: &mut std::iter::Peekable<std::str::CharIndices<'_>>) {
        while it.next_if(|(_, c)| c.is_whitespace()).is_some() {}
    }
    let mut it = s.char_indices().peekable();
    let mut pairs = Vec::new();
    loop {
        skip_whitespace(&mut it);
        let Some(&(start, _)) = it.peek() else {
            return Some((pairs, None));
        };
        let mut key = String::new();
        while let Some((_, c)) = it.next_if(|(_, c)| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        // The driver stops reading where no key starts, and ignores the rest.
        if key.is_empty() {
            return Some((pairs, Some(start)));
        }
        skip_whitespace(&mut it);
        it.next_if(|(_, c)| *c == '=')?;
        skip_whitespace(&mut it);
        let mut value = String::new();
        let end = if it.next_if(|(_, c)| *c == '\'').is_some() {
            loop {
                match it.next()? {
                    (i, '\'') => break i + 1,
                    (_, '\\') => value.push(it.next()?.1),
                    (_, c) => value.push(c),
                }
            }
        } else {
            while let Some((_, c)) = it.next_if(|(_, c)| !c.is_whitespace()) {
                if c == '\\' {
                    if let Some((_, escaped)) = it.next() {
                        value.push(escaped);
                    }
                } else {
                    value.push(c);
                }
            }
            if value.is_empty() {
                return None;
            }
            it.peek().map_or(s.len(), |&(i, _)| i)
        };
        pairs.push(Pair { key, value, end });
    }
}

/// Where an option was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    /// A URL's user part (`user:password@`).
    UserPart,
    /// A URL's hosts (`host:port,...`).
    Hosts,
    /// A URL's path (`/database`).
    Path,
    /// A URL's options (`?key=value`) or a connection string's pairs.
    Option,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Place::UserPart => "in the URL's user part",
            Place::Hosts => "in the URL's hosts",
            Place::Path => "as the URL's path",
            Place::Option => "as an option",
        })
    }
}

/// One setting written in a URL or connection string, as the driver reads it.
#[derive(Debug)]
struct Written {
    /// The option it sets (`dbname` for a URL's path), its percent-encoding undone.
    key: String,
    /// Its key as written.
    raw_key: String,
    /// Its value as the driver reads it (percent-encoding or quotes and escapes undone).
    value: String,
    /// Its value as written.
    raw: String,
    place: Place,
}

/// What a URL or connection string sets, as the driver reads it.
#[derive(Debug, Default)]
struct Settings {
    options: Vec<Written>,
    /// Where, in bytes, a connection string holds text the driver does not read.
    unread: Option<usize>,
}

/// The settings of a URL or connection string, in the order written, read as the
/// driver reads them (`tokio-postgres`' `UrlParser` and `Parser`). What the driver
/// would refuse outright (an unterminated quote, an option without `=`) is left out,
/// for the driver to report.
fn written(url: &str) -> Settings {
    let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    else {
        return match pairs(url) {
            Some((pairs, unread)) => Settings {
                options: pairs
                    .into_iter()
                    .map(|pair| Written {
                        raw_key: pair.key.clone(),
                        key: pair.key,
                        raw: pair.value.clone(),
                        value: pair.value,
                        place: Place::Option,
                    })
                    .collect(),
                unread,
            },
            None => Settings::default(),
        };
    };
    let mut options = Vec::new();
    let mut push = |key: &str, raw_key: &str, raw: &str, place| {
        options.push(Written {
            key: key.to_string(),
            raw_key: raw_key.to_string(),
            value: percent_decoded(raw),
            raw: raw.to_string(),
            place,
        });
    };
    // The user part ends at the first `@`, wherever it is.
    let rest = match rest.split_once('@') {
        Some((creds, rest)) => {
            let (user, password) = match creds.split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (creds, None),
            };
            // `postgres://:pw@host` writes a password and no user.
            if !user.is_empty() {
                push("user", "user", user, Place::UserPart);
            }
            if let Some(password) = password {
                push("password", "password", password, Place::UserPart);
            }
            rest
        }
        None => rest,
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (hosts, rest) = rest.split_at(end);
    if !hosts.is_empty() {
        for chunk in hosts.split(',') {
            let (host, port) = match chunk.strip_prefix('[') {
                Some(bracketed) => match bracketed.split_once(']') {
                    Some((host, port)) => (host, port.strip_prefix(':')),
                    None => (bracketed, None),
                },
                None => match chunk.split_once(':') {
                    Some((host, port)) => (host, Some(port)),
                    None => (chunk, None),
                },
            };
            push("host", "host", host, Place::Hosts);
            if let Some(port) = port {
                push("port", "port", port, Place::Hosts);
            }
        }
    }
    let rest = match rest.strip_prefix('/') {
        Some(path) => {
            let end = path.find('?').unwrap_or(path.len());
            if end > 0 {
                push("dbname", "dbname", &path[..end], Place::Path);
            }
            &path[end..]
        }
        None => rest,
    };
    if let Some(mut query) = rest.strip_prefix('?') {
        // As the driver reads them: a key runs to the next `=`, its value to the next `&`.
        while !query.is_empty() {
            let Some((key, after)) = query.split_once('=') else {
                break;
            };
            let (value, after) = after.split_once('&').unwrap_or((after, ""));
            push(&percent_decoded(key), key, value, Place::Option);
            query = after;
        }
    }
    Settings {
        options,
        unread: None,
    }
}

/// `text` with its `%XX` escapes undone (an invalid one, or bytes that are not UTF-8,
/// kept as they are or replaced, for the driver to report).
fn percent_decoded(text: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(hi * 16 + lo);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `postgres://user@host:port/database`, never with the password.
fn describe(config: &Config) -> String {
    let user = config
        .get_user()
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = config
                .get_ports()
                .get(i)
                .or_else(|| config.get_ports().first())
                .map(|p| format!(":{p}"))
                .unwrap_or_default();
            match host {
                Host::Tcp(name) => format!("{name}{port}"),
                Host::Unix(path) => format!("[{}]{port}", path.display()),
            }
        })
        .collect();
    let db = config.get_dbname().unwrap_or("");
    format!("postgres://{user}{}/{db}", hosts.join(","))
}

/// The password written in a URL or connection string, found without parsing it fully,
/// so that even a URL the driver refuses is reported without it.
fn password_in(url: &str) -> Option<String> {
    if let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    {
        let authority = rest.split(['/', '?']).next().unwrap_or("");
        let userinfo = authority.rsplit_once('@')?.0;
        return userinfo.split_once(':').map(|(_, p)| p.to_string());
    }
    match pairs(url) {
        Some((pairs, _)) => pairs
            .into_iter()
            .rev()
            .find(|pair| pair.key == "password")
            .map(|pair| pair.value),
        // The driver refuses it; its message may still quote the password.
        None => url
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("password="))
            .map(|p| p.trim_matches('\'').to_string()),
    }
}

/// Whether a notice is the server's warning that it stopped waiting for its
/// synchronous standbys before they confirmed a commit (`pg_cancel_backend` on a
/// backend waiting for them): the commit is then durable on this server only. Known by
/// the server function that raises it, which the protocol reports whatever the
/// language of the server's messages, or by its English text.
fn is_unreplicated_commit(notice: &postgres::error::DbError) -> bool {
    notice.routine() == Some("SyncRepWaitForLSN")
        || notice
            .message()
            .starts_with("canceling wait for synchronous replication")
        || notice
            .detail()
            .is_some_and(|d| d.contains("might not have been replicated"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_options_are_taken_out_of_urls() {
        let take_schema = |url| take_option(url, "schema");
        assert_eq!(
            take_schema("postgres://u@h/db?schema=notes&sslmode=disable"),
            (
                "postgres://u@h/db?sslmode=disable".to_string(),
                vec!["notes".to_string()]
            )
        );
        assert_eq!(
            take_schema("postgres://u@h/db?schema=n"),
            ("postgres://u@h/db".to_string(), vec!["n".to_string()])
        );
        assert_eq!(
            take_schema("host=/tmp schema=s user=u"),
            ("host=/tmp user=u".to_string(), vec!["s".to_string()])
        );
        assert_eq!(
            take_schema("postgres://u@h/db"),
            ("postgres://u@h/db".to_string(), vec![])
        );
        assert_eq!(
            take_option(
                "postgres://u@h/db?migrate_format=true&schema=n",
                "migrate_format"
            ),
            (
                "postgres://u@h/db?schema=n".to_string(),
                vec!["true".to_string()]
            )
        );
    }

    /// Options are found where the driver finds them, and everything else is kept
    /// byte for byte.
    #[test]
    fn options_are_read_as_the_driver_reads_them() -> Result<()> {
        let take_schema = |url| take_option(url, "schema");
        // A quoted value is one value, however much it looks like options.
        assert_eq!(
            take_schema("host=/tmp  schema=a application_name='x  schema=b'"),
            (
                "host=/tmp application_name='x  schema=b'".to_string(),
                vec!["a".to_string()]
            )
        );
        assert_eq!(
            take_schema("application_name='schema=b' host=/tmp"),
            ("application_name='schema=b' host=/tmp".to_string(), vec![])
        );
        // Spaces around `=`, a quoted value with escapes, both of two.
        assert_eq!(
            take_schema("schema = 'one' password='a\\' b' schema=\\two"),
            (
                " password='a\\' b'".to_string(),
                vec!["one".to_string(), "two".to_string()]
            )
        );
        // A value ending in an escaped space keeps it.
        assert_eq!(
            take_schema("application_name=a\\  schema=s port=5433"),
            (
                "application_name=a\\  port=5433".to_string(),
                vec!["s".to_string()]
            )
        );
        assert_eq!(
            take_schema("password=pw\\  schema=s"),
            ("password=pw\\ ".to_string(), vec!["s".to_string()])
        );
        // Where the driver stops reading, so does the search.
        assert_eq!(
            take_schema("host=/tmp schema=s =x schema=t"),
            ("host=/tmp =x schema=t".to_string(), vec!["s".to_string()])
        );
        // A string the driver refuses is left for it to refuse.
        assert_eq!(
            take_schema("host=/tmp schema='open"),
            ("host=/tmp schema='open".to_string(), vec![])
        );
        // A connection string is not a URL because a value holds `://`.
        assert_eq!(
            take_schema("application_name=a://b?schema=c schema=d"),
            (
                "application_name=a://b?schema=c".to_string(),
                vec!["d".to_string()]
            )
        );
        // A URL's options start after its user part, hosts and database.
        assert_eq!(
            take_schema("postgres://u:p?schema=x@h/db?schema=y"),
            (
                "postgres://u:p?schema=x@h/db".to_string(),
                vec!["y".to_string()]
            )
        );
        assert_eq!(
            take_schema("postgres://u:p?schema=x@h/db"),
            ("postgres://u:p?schema=x@h/db".to_string(), vec![])
        );
        assert_eq!(
            take_schema("postgresql://h?schema=y"),
            ("postgresql://h".to_string(), vec!["y".to_string()])
        );
        assert_eq!(
            driver_url("postgres://h/db?migrate_format=true&schema=s&sslmode=disable")?,
            "postgres://h/db?sslmode=disable"
        );
        assert_eq!(
            driver_url("migrate_format=true host=/tmp schema=s")?,
            " host=/tmp"
        );
        Ok(())
    }

    #[test]
    fn a_quoted_password_is_found_whole() {
        assert_eq!(
            password_in("host=h password='a b\\'c' user=u").as_deref(),
            Some("a b'c")
        );
        assert_eq!(password_in("password=x password = y").as_deref(), Some("y"));
    }

    #[test]
    fn several_hosts_are_kept_and_described() -> Result<()> {
        let loc = Location::parse(
            "postgres://alice:pw@db1:5433,db2:5434/notes?target_session_attrs=read-write",
            Duration::from_secs(1),
            Duration::from_secs(30),
        )?;
        assert_eq!(loc.description, "postgres://alice@db1:5433,db2:5434/notes");
        assert_eq!(loc.config.get_hosts().len(), 2);
        assert_eq!(
            loc.config.get_target_session_attrs(),
            postgres::config::TargetSessionAttrs::ReadWrite
        );
        let loc = Location::parse(
            "host=/run/a,/run/b port=5433,5434 user=u target_session_attrs=read-write",
            Duration::from_secs(1),
            Duration::from_secs(30),
        )?;
        assert_eq!(loc.description, "postgres://u@[/run/a]:5433,[/run/b]:5434/");
        Ok(())
    }

    #[test]
    fn the_network_timeout_applies_unless_the_url_sets_its_own() -> Result<()> {
        let t = Duration::from_secs(30);
        let loc = Location::parse("postgres://u@db/notes", t, t)?;
        assert_eq!(loc.config.get_tcp_user_timeout(), Some(&t));
        assert!(loc.config.get_keepalives());
        assert_eq!(loc.config.get_keepalives_idle(), Duration::from_secs(15));
        assert_eq!(
            loc.config.get_keepalives_interval(),
            Some(Duration::from_secs(5))
        );
        assert_eq!(loc.config.get_keepalives_retries(), Some(3));
        let loc = Location::parse(
            "postgres://u@db/notes?tcp_user_timeout=7&keepalives_idle=60",
            t,
            t,
        )?;
        assert_eq!(
            loc.config.get_tcp_user_timeout(),
            Some(&Duration::from_secs(7))
        );
        assert_eq!(loc.config.get_keepalives_idle(), Duration::from_secs(60));
        Ok(())
    }

    #[test]
    fn description_and_errors_never_hold_the_password() -> Result<()> {
        let loc = Location::parse(
            "postgres://alice:s3cr%20t@db.example:5433/notes?sslmode=disable",
            Duration::from_secs(1),
            Duration::from_secs(30),
        )?;
        assert_eq!(loc.description, "postgres://alice@db.example:5433/notes");
        assert_eq!(loc.secret.redact("x s3cr t y"), "x ******** y");
        let bad = Location::parse(
            "postgres://bob:hunter2@host:notaport/db",
            Duration::from_secs(1),
            Duration::from_secs(30),
        );
        let message = bad.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(!message.is_empty());
        assert!(!message.contains("hunter2"), "{message}");
        Ok(())
    }

    fn parse(url: &str) -> Result<Location> {
        Location::parse(url, Duration::from_secs(1), Duration::from_secs(30))
    }

    /// The driver ends a URL's user part at its first `@`: the rest of a password
    /// with a raw `@` would be read as the host, and shown wherever the host is.
    #[test]
    fn a_password_with_a_raw_at_sign_is_refused_without_showing_it() {
        for url in [
            "postgres://u:s3@cr@t@127.0.0.1:1/db",
            "postgres://u:s3@cr@t@127.0.0.1:1/db?sslmode=disable",
            "postgres://u:s3@cr/t@127.0.0.1:1/db",
            "postgres://127.0.0.1:1/db?application_name=s3@cr",
        ] {
            let message = parse(url).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(message.contains("%40"), "{url}: {message}");
            for piece in ["s3", "cr@t", "cr", "t@127"] {
                assert!(!message.contains(piece), "{url}: {piece} in {message}");
            }
        }
        // An `@` in an option's value, after a user part, reads as written.
        let loc =
            parse("postgres://u:pw@127.0.0.1:1/db?application_name=a@b").expect("a valid URL");
        assert_eq!(loc.description, "postgres://u@127.0.0.1:1/db");
        // Written as %40, it is a password like any other.
        let loc = parse("postgres://u:s3%40cr%40t@127.0.0.1:1/db").expect("a valid URL");
        assert_eq!(loc.description, "postgres://u@127.0.0.1:1/db");
        // An escaped option name would pass by messages that hide a password.
        let message = parse("postgres://u@127.0.0.1:1/db?pass%77ord=s3cret")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(message.contains("%-escapes"), "{message}");
        assert!(!message.contains("s3cret"), "{message}");
    }

    /// The message of a refused URL, which must be `InvalidInput` and hold each of
    /// `names` and never `hidden`.
    fn refused(result: Result<impl std::fmt::Debug>, names: &[&str], hidden: &str) -> String {
        let message = match result {
            Err(err @ Error::InvalidInput { .. }) => err.to_string(),
            other => panic!("not refused as invalid input: {other:?}"),
        };
        for name in names {
            assert!(message.contains(name), "{name:?} is not in: {message}");
        }
        assert!(!message.contains(hidden), "{hidden:?} is in: {message}");
        message
    }

    /// `?schema=a&schema=b` is not the schema `b`: which one was meant is not known.
    #[test]
    fn a_store_option_given_twice_is_refused() {
        for url in [
            "postgres://u@h/db?schema=a&schema=b",
            "postgres://u@h/db?schema=a&sslmode=disable&schema=a",
            "host=/tmp schema=a user=u schema = 'b'",
        ] {
            refused(crate::schema_in(url), &["`schema`", "2 times"], "\u{0}");
            refused(driver_url(url), &["`schema`", "2 times"], "\u{0}");
        }
        for url in [
            "postgres://u@h/db?migrate_format=true&migrate_format=false",
            "host=/tmp migrate_format=false migrate_format=true",
        ] {
            refused(
                crate::migrate_format_in(url),
                &["`migrate_format`"],
                "\u{0}",
            );
            refused(driver_url(url), &["`migrate_format`"], "\u{0}");
        }
        // Nor is a password shown when it sits beside them.
        refused(
            driver_url("postgres://u:hunter2@h/db?schema=hunter2&schema=b"),
            &["`schema`"],
            "hunter2",
        );
        refused(
            driver_url("host=/tmp password=hunter2 schema=a schema=hunter2"),
            &["`schema`"],
            "hunter2",
        );
    }

    /// The driver would take the last of two users or databases and connect to what
    /// the user may not have meant; hosts and ports are lists of hosts to try, and may
    /// be given several times.
    #[test]
    fn a_driver_option_given_twice_is_refused_but_hosts_are_a_list() -> Result<()> {
        for (url, names) in [
            ("postgres://h/db?user=a&user=b", &["`user`", "2 times"][..]),
            (
                "postgres://alice@h/notes?user=bob",
                &["`user`", "user part", "as an option"],
            ),
            (
                "postgres://h/notes?dbname=other",
                &["`dbname`", "path", "as an option"],
            ),
            ("host=/tmp dbname=a user=u dbname=b", &["`dbname`"]),
            (
                "postgres://h/db?sslmode=disable&sslmode=require",
                &["`sslmode`"],
            ),
            (
                "postgres://u:hunter2@h/db?password=hunter3",
                &["`password`", "user part"],
            ),
            (
                "host=h password=hunter2 password='hunter3'",
                &["`password`"],
            ),
        ] {
            let message = refused(parse(url), names, "hunter2");
            assert!(!message.contains("hunter3"), "{message}");
        }
        let loc = parse("postgres://u@a/db?host=b&host=c&port=5433&port=5434")?;
        assert_eq!(loc.config.get_hosts().len(), 3);
        assert_eq!(loc.config.get_ports(), [5432, 5433, 5434]);
        let loc = parse("host=/run/a host=/run/b port=5433 port=5434 user=u")?;
        assert_eq!(loc.description, "postgres://u@[/run/a]:5433,[/run/b]:5434/");
        // A port for each host, or one for all; not two for one host.
        refused(
            parse("postgres://u@h:5433/db?port=5434"),
            &["2 ports for 1 hosts"],
            "\u{0}",
        );
        refused(
            parse("host=a,b,c port=1,2 user=u"),
            &["2 ports for 3 hosts"],
            "\u{0}",
        );
        refused(
            parse("host=a hostaddr=127.0.0.1,127.0.0.2"),
            &["1 hosts but 2 addresses"],
            "\u{0}",
        );
        Ok(())
    }

    /// An option neither the store nor the driver knows, and a value the driver
    /// refuses, are named, with the value (never the password).
    #[test]
    fn an_unknown_option_or_a_bad_value_is_named() {
        let message = refused(
            parse("postgres://u:hunter2@h/db?bogus=1"),
            &[
                "unknown option `bogus`",
                "schema",
                "migrate_format",
                "sslmode",
            ],
            "hunter2",
        );
        assert!(!message.contains("hunter2"), "{message}");
        refused(
            parse("host=/tmp password=hunter2 bogus=1"),
            &["`bogus`", "schema, migrate_format"],
            "hunter2",
        );
        refused(
            parse("postgres://bob:hunter2@host:notaport/db"),
            &["option `port`", "\"notaport\" in the URL's hosts"],
            "hunter2",
        );
        refused(
            parse("host=/x port=70000 password=hunter2"),
            &["option `port`", "\"70000\" as an option"],
            "hunter2",
        );
        refused(
            parse("postgres://u@h/db?password=hunter2&sslmode=nope"),
            &["option `sslmode`", "\"nope\""],
            "hunter2",
        );
        refused(
            parse("postgres://u@h/db?connect_timeout=99999999999999999999"),
            &["option `connect_timeout`", "99999999999999999999"],
            "\u{0}",
        );
        // The store's own option, %-escaped, would reach the driver as unknown.
        refused(
            parse("postgres://u@h/db?sch%65ma=notes"),
            &["`schema`", "sch%65ma", "%-escapes"],
            "\u{0}",
        );
    }

    /// The driver ignores a number of seconds under 1, which would leave the store's
    /// default (or no limit) in force without a word.
    #[test]
    fn a_number_of_seconds_under_one_is_refused() -> Result<()> {
        for (url, key) in [
            ("postgres://u@h/db?connect_timeout=0", "connect_timeout"),
            ("host=h connect_timeout=-5", "connect_timeout"),
            ("host=h tcp_user_timeout=0", "tcp_user_timeout"),
            ("postgres://u@h/db?keepalives_idle=0", "keepalives_idle"),
            ("host=h keepalives_interval=-1", "keepalives_interval"),
        ] {
            refused(parse(url), &[&format!("`{key}`"), "at least 1"], "\u{0}");
        }
        let loc = parse("postgres://u@h/db?connect_timeout=3")?;
        assert_eq!(
            loc.config.get_connect_timeout(),
            Some(&Duration::from_secs(3))
        );
        Ok(())
    }

    /// Text past where the driver stops reading a connection string (it stops at an
    /// `=` where a key should start) would be ignored: here a database.
    #[test]
    fn text_the_driver_would_ignore_is_refused() {
        refused(
            parse("host=/tmp user=u =x dbname=other password=hunter2"),
            &["byte 17", "ignore"],
            "hunter2",
        );
    }

    /// A password (or any other value) that holds `keepalives` keeps the store's
    /// keepalive settings: only the options themselves replace them.
    #[test]
    fn only_a_keepalive_option_replaces_the_stores_settings() -> Result<()> {
        for url in [
            "postgres://u:keepalives@db/notes",
            "host=db application_name=keepalives_idle",
        ] {
            let loc = parse(url)?;
            assert_eq!(loc.config.get_keepalives_retries(), Some(3), "{url}");
        }
        let loc = parse("postgres://u@db/notes?keepalives_retries=5")?;
        assert_eq!(loc.config.get_keepalives_retries(), Some(5));
        assert_eq!(loc.config.get_keepalives_idle(), Duration::from_secs(7200));
        Ok(())
    }

    /// A schema is an identifier written into SQL text: anything but 1 to 63
    /// lowercase ASCII letters, digits and `_` is refused, however it is written.
    #[test]
    fn a_schema_that_is_no_safe_identifier_is_refused() -> Result<()> {
        let long = "s".repeat(64);
        for url in [
            "postgres://u@h/db?schema=".to_string(),
            "postgres://u@h/db?schema=a%22b".to_string(),
            "postgres://u@h/db?schema=\"a\"".to_string(),
            "postgres://u@h/db?schema=a%00b".to_string(),
            "host=h schema='a\u{0}b'".to_string(),
            "host=h schema='a;b'".to_string(),
            "host=h schema=Notes".to_string(),
            "host=h schema=1notes".to_string(),
            format!("postgres://u@h/db?schema={long}"),
        ] {
            refused(crate::schema_in(&url), &["schema name"], "\u{1}");
        }
        let longest = "s".repeat(63);
        assert_eq!(
            crate::schema_in(&format!("host=h schema={longest}"))?,
            Some(longest)
        );
        Ok(())
    }

    /// `migrate_format` is `true` or `false`, written so.
    #[test]
    fn migrate_format_is_true_or_false_exactly() -> Result<()> {
        for value in ["TRUE", "True", "yes", "1", "2", "on", ""] {
            refused(
                crate::migrate_format_in(&format!("postgres://h/db?migrate_format={value}")),
                &["migrate_format", &format!("{value:?}")],
                "\u{0}",
            );
        }
        assert_eq!(
            crate::migrate_format_in("host=h migrate_format=false")?,
            Some(false)
        );
        Ok(())
    }

    #[test]
    fn percent_escapes_are_undone_as_the_driver_does() {
        assert_eq!(percent_decoded("a%2Fb%2f%zz%4"), "a/b/%zz%4");
        assert_eq!(percent_decoded("%"), "%");
    }
}
