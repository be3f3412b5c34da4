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
    /// string, as the `postgres` crate accepts them; `connect_timeout` and
    /// `network_timeout` apply where the URL sets no value of its own (see
    /// [`PostgresOptions`](crate::PostgresOptions)).
    pub fn parse(url: &str, connect_timeout: Duration, network_timeout: Duration) -> Result<Self> {
        let secret = Secret::new(password_in(url).as_deref().map(str::as_bytes));
        let mut config: Config =
            url.parse()
                .map_err(|err: postgres::Error| Error::InvalidInput {
                    what: "PostgreSQL URL",
                    reason: secret.redact(&format!(
                        "{err}; expected postgres://user[:password]@host[:port]/database[?options]"
                    )),
                })?;
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
        if !url.contains("keepalives") {
            config
                .keepalives(true)
                .keepalives_idle(Duration::from_secs(idle))
                .keepalives_interval(Duration::from_secs(interval))
                .keepalives_retries(3);
        }
        if config.get_application_name().is_none() {
            config.application_name("persister");
        }
        let mut secret = secret;
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

/// `url` without the options that are the store's, not the driver's (`schema`,
/// `migrate_format`): what the driver is given.
pub(crate) fn driver_url(url: &str) -> String {
    let (url, _) = take_option(url, "schema");
    take_option(&url, "migrate_format").0
}

/// Takes the option `key` (`schema`, `migrate_format`) out of a URL (`?key=VALUE`) or
/// connection string (`key=VALUE`, or `key = 'VALUE'`), since the driver does not know
/// it: the URL without it, and its value (the last one, should it be there twice).
///
/// Both are read as the driver reads them, so that the option found is the one the
/// driver would see: a URL's options follow the first `?` after its user part (which
/// ends at the first `@`), hosts and database; a connection string's value may be
/// quoted (`'a b'`) and hold `\` escapes, and a quoted value that looks like an option
/// (`application_name='x schema=y'`) is part of that value. Whatever else the string
/// holds is kept byte for byte. A connection string the driver could not parse is
/// returned as it is, without a value, for the driver to report.
pub(crate) fn take_option(url: &str, key: &str) -> (String, Option<String>) {
    if is_url(url) {
        let Some(start) = url_query_start(url) else {
            return (url.to_string(), None);
        };
        let (base, query) = (&url[..start - 1], &url[start..]);
        let prefix = format!("{key}=");
        let mut value = None;
        let kept: Vec<&str> = query
            .split('&')
            .filter(|kv| match kv.strip_prefix(&prefix) {
                Some(v) => {
                    value = Some(v.to_string());
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
        return (url, value);
    }
    let Some(pairs) = pairs(url) else {
        return (url.to_string(), None);
    };
    let mut kept = String::with_capacity(url.len());
    let (mut from, mut previous_end) = (0, 0);
    let mut value = None;
    for pair in pairs {
        if pair.key == key {
            // The pair and the whitespace before it, back to the end of the pair
            // before (whose value may end in an escaped space).
            kept.push_str(&url[from..previous_end]);
            from = pair.end;
            value = Some(pair.value);
        }
        previous_end = pair.end;
    }
    kept.push_str(&url[from..]);
    (kept, value)
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
/// where no key starts (an `=` there), as the driver's does. `None` when the driver
/// would refuse it.
fn pairs(s: &str) -> Option<Vec<Pair>> {
    fn skip_whitespace(it: &mut std::iter::Peekable<std::str::CharIndices<'_>>) {
        while it.next_if(|(_, c)| c.is_whitespace()).is_some() {}
    }
    let mut it = s.char_indices().peekable();
    let mut pairs = Vec::new();
    loop {
        skip_whitespace(&mut it);
        if it.peek().is_none() {
            return Some(pairs);
        }
        let mut key = String::new();
        while let Some((_, c)) = it.next_if(|(_, c)| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        // The driver stops reading where no key starts, and ignores the rest.
        if key.is_empty() {
            return Some(pairs);
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
        Some(pairs) => pairs
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
                Some("notes".to_string())
            )
        );
        assert_eq!(
            take_schema("postgres://u@h/db?schema=n"),
            ("postgres://u@h/db".to_string(), Some("n".to_string()))
        );
        assert_eq!(
            take_schema("host=/tmp schema=s user=u"),
            ("host=/tmp user=u".to_string(), Some("s".to_string()))
        );
        assert_eq!(
            take_schema("postgres://u@h/db"),
            ("postgres://u@h/db".to_string(), None)
        );
        assert_eq!(
            take_option(
                "postgres://u@h/db?migrate_format=true&schema=n",
                "migrate_format"
            ),
            (
                "postgres://u@h/db?schema=n".to_string(),
                Some("true".to_string())
            )
        );
    }

    /// Options are found where the driver finds them, and everything else is kept
    /// byte for byte.
    #[test]
    fn options_are_read_as_the_driver_reads_them() {
        let take_schema = |url| take_option(url, "schema");
        // A quoted value is one value, however much it looks like options.
        assert_eq!(
            take_schema("host=/tmp  schema=a application_name='x  schema=b'"),
            (
                "host=/tmp application_name='x  schema=b'".to_string(),
                Some("a".to_string())
            )
        );
        assert_eq!(
            take_schema("application_name='schema=b' host=/tmp"),
            ("application_name='schema=b' host=/tmp".to_string(), None)
        );
        // Spaces around `=`, a quoted value with escapes, the last of two.
        assert_eq!(
            take_schema("schema = 'one' password='a\\' b' schema=\\two"),
            (" password='a\\' b'".to_string(), Some("two".to_string()))
        );
        // A value ending in an escaped space keeps it.
        assert_eq!(
            take_schema("application_name=a\\  schema=s port=5433"),
            (
                "application_name=a\\  port=5433".to_string(),
                Some("s".to_string())
            )
        );
        assert_eq!(
            take_schema("password=pw\\  schema=s"),
            ("password=pw\\ ".to_string(), Some("s".to_string()))
        );
        // Where the driver stops reading, so does the search.
        assert_eq!(
            take_schema("host=/tmp schema=s =x schema=t"),
            ("host=/tmp =x schema=t".to_string(), Some("s".to_string()))
        );
        // A string the driver refuses is left for it to refuse.
        assert_eq!(
            take_schema("host=/tmp schema='open"),
            ("host=/tmp schema='open".to_string(), None)
        );
        // A connection string is not a URL because a value holds `://`.
        assert_eq!(
            take_schema("application_name=a://b?schema=c schema=d"),
            (
                "application_name=a://b?schema=c".to_string(),
                Some("d".to_string())
            )
        );
        // A URL's options start after its user part, hosts and database.
        assert_eq!(
            take_schema("postgres://u:p?schema=x@h/db?schema=y"),
            (
                "postgres://u:p?schema=x@h/db".to_string(),
                Some("y".to_string())
            )
        );
        assert_eq!(
            take_schema("postgres://u:p?schema=x@h/db"),
            ("postgres://u:p?schema=x@h/db".to_string(), None)
        );
        assert_eq!(
            take_schema("postgresql://h?schema=y"),
            ("postgresql://h".to_string(), Some("y".to_string()))
        );
        assert_eq!(
            driver_url("postgres://h/db?migrate_format=true&schema=s&sslmode=disable"),
            "postgres://h/db?sslmode=disable"
        );
        assert_eq!(
            driver_url("migrate_format=true host=/tmp schema=s"),
            " host=/tmp"
        );
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
}
