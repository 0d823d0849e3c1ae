//! The shared journal: PostgreSQL (team mode). Several people, CI runners
//! and machines see the same runs; one holder per fleet, fenced by the
//! lease row's epoch.

use super::*;

/// Is `s` a PostgreSQL URL (`postgres://…`, `postgresql://…`)?
pub fn is_url(s: &str) -> bool {
    let s = s.trim_start().to_ascii_lowercase();
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

/// What a journal location must not be, whatever else it is: a URL of
/// another scheme (a misspelt `postgres://` would otherwise be a SQLite
/// file of that name, and team mode silently off), or libpq's
/// `key=value` form (which may carry a password). `None`: fine.
pub fn not_a_location(s: &str) -> Option<&'static str> {
    let t = s.trim_start();
    if let Some((scheme, _)) = t.split_once("://") {
        if !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        {
            return Some("not a journal URL: only postgres:// and postgresql:// are (anything else is the path of a SQLite file, without ://)");
        }
    }
    let first = t.split_whitespace().next().unwrap_or("");
    if let Some((key, _)) = first.split_once('=') {
        if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Some("a key=value connection string: give a URL, postgres://USER@HOST:PORT/DATABASE, with the password in GLIDEPATH_JOURNAL_PASSWORD_FILE");
        }
    }
    None
}

/// The password variables, read once and then removed from this process's
/// environment (by [`take_password_env`]), so that no command of a plan
/// (tasks, hooks, notifications) inherits them.
static PASSWORD: std::sync::OnceLock<Result<Option<String>, String>> = std::sync::OnceLock::new();

/// Read the journal's password variables and remove them, with a
/// `GLIDEPATH_JOURNAL` that holds a password, from the environment: the
/// binary calls this first thing, while it has one thread.
pub fn take_password_env() {
    let _ = PASSWORD.set(read_password_env());
    // std::env::remove_var: called by `main` before any other thread
    // exists, so nothing reads the environment concurrently
    for var in [
        "GLIDEPATH_JOURNAL_PASSWORD",
        "GLIDEPATH_JOURNAL_PASSWORD_FILE",
    ] {
        std::env::remove_var(var);
    }
    if std::env::var("GLIDEPATH_JOURNAL").is_ok_and(|j| redact_text(&j) != j) {
        std::env::remove_var("GLIDEPATH_JOURNAL");
    }
}

/// A PostgreSQL journal's address: the connection settings (with the
/// password from `GLIDEPATH_JOURNAL_PASSWORD_FILE` or
/// `GLIDEPATH_JOURNAL_PASSWORD` when the URL has none) and the URL without
/// its password, the only form that is ever printed.
#[derive(Clone)]
pub struct Target {
    pub(crate) config: tokio_postgres::Config,
    redacted: String,
}

impl PartialEq for Target {
    fn eq(&self, other: &Target) -> bool {
        self.redacted == other.redacted
    }
}
impl Eq for Target {}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl Target {
    pub fn parse(given: &str) -> Result<Target, JournalError> {
        let bad = |why: String| JournalError::BadLocation {
            given: redact_text(given),
            why,
        };
        let mut config: tokio_postgres::Config = given.trim().parse().map_err(|e| {
            bad(format!(
                "not a PostgreSQL URL ({e}); expected postgres://USER@HOST:PORT/DATABASE"
            ))
        })?;
        if config.get_hosts().is_empty() {
            return Err(bad("no host: postgres://USER@HOST:PORT/DATABASE".into()));
        }
        // `user:p@ss@host` reads as host `ss@host`, showing part of the password
        if config
            .get_hosts()
            .iter()
            .any(|h| matches!(h, tokio_postgres::config::Host::Tcp(h) if h.contains('@')))
        {
            return Err(bad(
                "a host name holds `@`: an `@` in the user or the password is written %40 (better: the password in GLIDEPATH_JOURNAL_PASSWORD_FILE)".into(),
            ));
        }
        if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
            return Err(bad("sslmode=require: this glidepath speaks to PostgreSQL without TLS; reach the server over a trusted network or a tunnel, and drop sslmode".into()));
        }
        if config.get_password().is_none() {
            if let Some(pw) = password_from_env().map_err(bad)? {
                config.password(pw);
            }
        }
        let user = config.get_user().unwrap_or("").to_string();
        let hosts: Vec<String> = config
            .get_hosts()
            .iter()
            .zip(config.get_ports().iter().chain(std::iter::repeat(&5432)))
            .map(|(h, p)| match h {
                tokio_postgres::config::Host::Tcp(h) if h.contains(':') => format!("[{h}]:{p}"),
                tokio_postgres::config::Host::Tcp(h) => format!("{h}:{p}"),
                tokio_postgres::config::Host::Unix(d) => format!("{}:{p}", d.display()),
            })
            .collect();
        let db = config.get_dbname().unwrap_or(&user).to_string();
        let redacted = format!(
            "postgres://{}{}/{}",
            if user.is_empty() {
                String::new()
            } else {
                format!("{user}@")
            },
            hosts.join(","),
            db
        );
        config.application_name("glidepath");
        config.connect_timeout(CONNECT_TIMEOUT);
        config.keepalives_idle(Duration::from_secs(10));
        Ok(Target { config, redacted })
    }

    /// The URL without its password.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }
}

/// How long a connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The password of the journal's database, if the environment gives one:
/// the file `GLIDEPATH_JOURNAL_PASSWORD_FILE` names (its first line), else
/// `GLIDEPATH_JOURNAL_PASSWORD`.
fn password_from_env() -> Result<Option<String>, String> {
    match PASSWORD.get() {
        Some(p) => p.clone(),
        None => read_password_env(),
    }
}

fn read_password_env() -> Result<Option<String>, String> {
    if let Some(f) = std::env::var_os("GLIDEPATH_JOURNAL_PASSWORD_FILE").filter(|f| !f.is_empty()) {
        let path = PathBuf::from(f);
        let meta = std::fs::metadata(&path)
            .map_err(|e| format!("GLIDEPATH_JOURNAL_PASSWORD_FILE {}: {e}", path.display()))?;
        if !meta.is_file() {
            return Err(format!(
                "GLIDEPATH_JOURNAL_PASSWORD_FILE {}: not a regular file",
                path.display()
            ));
        }
        let mut text = String::new();
        {
            use std::io::Read;
            std::fs::File::open(&path)
                .and_then(|f| f.take(4097).read_to_string(&mut text))
                .map_err(|e| format!("GLIDEPATH_JOURNAL_PASSWORD_FILE {}: {e}", path.display()))?;
        }
        if text.len() > 4096 {
            return Err(format!(
                "GLIDEPATH_JOURNAL_PASSWORD_FILE {}: over 4096 bytes; a password file holds one line",
                path.display()
            ));
        }
        return Ok(Some(text.lines().next().unwrap_or("").to_string()));
    }
    Ok(std::env::var("GLIDEPATH_JOURNAL_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty()))
}

/// A URL as given, with any password replaced (for error messages).
pub fn redact_text(given: &str) -> String {
    // postgres://user:secret@host → postgres://user:***@host; the userinfo
    // ends at the last `@` (a password may hold `@`, `/` or `?`), and a
    // `password=` in the query is hidden too
    let Some((scheme, rest)) = given.split_once("://") else {
        return given.to_string();
    };
    let (user, tail) = match rest.rsplit_once('@') {
        Some((auth, tail)) => match auth.split_once(':') {
            Some((user, _)) => (format!("{user}:***@"), tail),
            None => (format!("{auth}@"), tail),
        },
        None => (String::new(), rest),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.trim().eq_ignore_ascii_case("password") => {
                        format!("{k}=***")
                    }
                    _ => kv.to_string(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{user}{tail}")
}

/// Open the journal at `t` (creating or upgrading its schema).
pub fn open(t: &Target) -> Result<Box<dyn Store>, JournalError> {
    Ok(Box::new(PgJournal::open(t)?))
}

/// The schema version this glidepath writes and knows. A database with a
/// newer one is refused ([`JournalError::NewerSchema`]).
pub const SCHEMA_VERSION: i64 = 1;

/// Version 1: everything lives in the `glidepath` schema of the database,
/// apart from whatever else the database holds. Times are milliseconds
/// since the epoch; a lease's `since` and `heartbeat` are the server's
/// clock, so that holders on several machines agree on its age.
const SCHEMA_V1: &str = r#"
CREATE SCHEMA IF NOT EXISTS glidepath;
CREATE TABLE IF NOT EXISTS glidepath.meta (
    key text PRIMARY KEY,
    value text NOT NULL
);
CREATE TABLE IF NOT EXISTS glidepath.runs (
    id text PRIMARY KEY,
    fleet text NOT NULL,
    plan_path text NOT NULL,
    plan_hash text NOT NULL,
    plan_source text NOT NULL,
    version text NOT NULL,
    status text NOT NULL,
    reason text NOT NULL DEFAULT '',
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_newest ON glidepath.runs (created_at DESC, id DESC);
CREATE TABLE IF NOT EXISTS glidepath.events (
    run_id text NOT NULL REFERENCES glidepath.runs(id),
    seq bigint NOT NULL,
    at bigint NOT NULL,
    kind text NOT NULL,
    node text,
    step text,
    data text NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE IF NOT EXISTS glidepath.leases (
    fleet text PRIMARY KEY,
    run_id text,
    pid bigint NOT NULL DEFAULT 0,
    host text NOT NULL DEFAULT '',
    since bigint NOT NULL DEFAULT 0,
    heartbeat bigint NOT NULL DEFAULT 0,
    epoch bigint NOT NULL DEFAULT 0,
    ttl_ms bigint NOT NULL DEFAULT 0,
    token text NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS glidepath.commands (
    id bigserial PRIMARY KEY,
    run_id text NOT NULL,
    kind text NOT NULL,
    reason text NOT NULL,
    at bigint NOT NULL,
    consumed_at bigint,
    outcome text
);
CREATE INDEX IF NOT EXISTS commands_pending ON glidepath.commands (run_id) WHERE consumed_at IS NULL;
CREATE TABLE IF NOT EXISTS glidepath.campaigns (
    id text PRIMARY KEY,
    system_path text NOT NULL,
    system_source text NOT NULL,
    target text NOT NULL,
    status text NOT NULL,
    reason text NOT NULL DEFAULT '',
    pid bigint NOT NULL,
    host text NOT NULL,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS glidepath.campaign_stages (
    campaign_id text NOT NULL REFERENCES glidepath.campaigns(id),
    idx bigint NOT NULL,
    action text NOT NULL,
    why text NOT NULL,
    status text NOT NULL,
    run_id text,
    detail text NOT NULL DEFAULT '',
    updated_at bigint NOT NULL,
    PRIMARY KEY (campaign_id, idx)
);
CREATE INDEX IF NOT EXISTS campaign_stages_run ON glidepath.campaign_stages (run_id);
"#;

/// The server's clock in milliseconds.
const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// The channel of `NOTIFY`: a command queued or acknowledged.
const CHANNEL: &str = "glidepath";

/// How long one call (a query or a transaction) may take before the
/// connection is dropped and the journal counts as unreachable.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A failure inside a call: the driver's, or one of the journal's own
/// (fenced, not found).
pub(crate) enum Fail {
    Pg(tokio_postgres::Error),
    Journal(JournalError),
}

impl From<tokio_postgres::Error> for Fail {
    fn from(e: tokio_postgres::Error) -> Fail {
        Fail::Pg(e)
    }
}

impl From<JournalError> for Fail {
    fn from(e: JournalError) -> Fail {
        Fail::Journal(e)
    }
}

/// A driver error as the journal's: a connection refused, reset, closed or
/// a server shutting down is [`JournalError::Unavailable`] (an
/// infrastructure fault, worth retrying); anything else the database said
/// is [`JournalError::Database`].
fn classify(e: &tokio_postgres::Error, location: &str) -> JournalError {
    let unavailable = |message: String| JournalError::Unavailable {
        location: location.to_string(),
        message,
    };
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        let message = match db.detail() {
            Some(d) => format!("{} ({d})", db.message()),
            None => db.message().to_string(),
        };
        // 08: connection exception; 57P01-57P03: admin shutdown, crash
        // shutdown, cannot connect now; 53300: too many connections;
        // 25P03, 57P05: the server ended an idle session (this process
        // stopped answering mid-transaction): the session is gone
        if code.starts_with("08")
            || matches!(
                code,
                "57P01" | "57P02" | "57P03" | "53300" | "25P03" | "57P05"
            )
        {
            return unavailable(message);
        }
        // the server answered, and said no: wrong user, password or database
        if matches!(code, "28P01" | "28000" | "3D000") {
            return JournalError::BadLocation {
                given: location.to_string(),
                why: format!("{message} [SQLSTATE {code}]: check the user and database of the URL, and the password in GLIDEPATH_JOURNAL_PASSWORD_FILE or GLIDEPATH_JOURNAL_PASSWORD"),
            };
        }
        return JournalError::Database {
            location: location.to_string(),
            message: format!("{message} [SQLSTATE {code}]"),
        };
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    let mut io = false;
    while let Some(s) = source {
        io |= s.is::<std::io::Error>();
        source = s.source();
    }
    if e.is_closed() || io {
        return unavailable(e.to_string());
    }
    if e.to_string().contains("password missing") {
        return JournalError::BadLocation {
            given: location.to_string(),
            why: "the server wants a password: put it in a file named by GLIDEPATH_JOURNAL_PASSWORD_FILE (or in GLIDEPATH_JOURNAL_PASSWORD)".into(),
        };
    }
    JournalError::Database {
        location: location.to_string(),
        message: e.to_string(),
    }
}

fn fail_into(f: Fail, location: &str) -> JournalError {
    match f {
        Fail::Pg(e) => classify(&e, location),
        Fail::Journal(j) => j,
    }
}

/// The connection of the journal's worker thread.
struct Conn {
    client: tokio_postgres::Client,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the worker thread owns: its runtime (one thread, which also drives
/// the connections and the listener between calls) and the connection,
/// made again after it broke.
pub(crate) struct Session {
    rt: tokio::runtime::Runtime,
    target: Target,
    conn: Option<Conn>,
}

type Job = Box<dyn FnOnce(&mut Session) + Send>;

impl Session {
    /// Run `f` on the connection (connecting first if needed), within
    /// [`CALL_TIMEOUT`]. A connection that failed or timed out is dropped;
    /// the next call connects again.
    pub(crate) fn with<T>(
        &mut self,
        f: impl AsyncFnOnce(&mut tokio_postgres::Client) -> Result<T, Fail>,
    ) -> Result<T, JournalError> {
        let Session { rt, target, conn } = self;
        let location = target.redacted.clone();
        if conn.as_ref().is_some_and(|c| c.client.is_closed()) {
            *conn = None;
        }
        if conn.is_none() {
            let connect = rt.block_on(async {
                tokio::time::timeout(
                    CONNECT_TIMEOUT,
                    target.config.connect(tokio_postgres::NoTls),
                )
                .await
            });
            let (client, connection) = match connect {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => return Err(classify(&e, &location)),
                Err(_) => {
                    return Err(JournalError::Unavailable {
                        location,
                        message: format!("no connection within {}s", CONNECT_TIMEOUT.as_secs()),
                    })
                }
            };
            let task = rt.spawn(async move {
                let _ = connection.await;
            });
            *conn = Some(Conn { client, task });
        }
        let c = conn.as_mut().expect("connected above");
        match rt.block_on(async { tokio::time::timeout(CALL_TIMEOUT, f(&mut c.client)).await }) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                let e = fail_into(e, &location);
                if matches!(e, JournalError::Unavailable { .. }) {
                    *conn = None;
                }
                Err(e)
            }
            Err(_) => {
                *conn = None;
                Err(JournalError::Unavailable {
                    location,
                    message: format!("no answer within {}s", CALL_TIMEOUT.as_secs()),
                })
            }
        }
    }
}

/// A PostgreSQL journal. Calls are carried out one at a time by a worker
/// thread that owns the connection (so they may come from any thread, a
/// runtime's too); each waits for its answer.
pub struct PgJournal {
    target: Target,
    jobs: std::sync::mpsc::Sender<Job>,
    /// Set once this handle holds a fleet's lease: every write is then
    /// conditional on the lease row still carrying this epoch.
    fence: Option<Fence>,
    /// The next sequence number of each run this handle appends to: an
    /// append names it, so a retry after a lost answer finds its own event
    /// instead of writing it twice.
    next_seq: HashMap<String, i64>,
    changes: std::sync::OnceLock<Option<std::sync::Arc<tokio::sync::Notify>>>,
}

#[derive(Debug, Clone)]
struct Fence {
    fleet: String,
    run: String,
    epoch: i64,
}

use std::collections::HashMap;

impl PgJournal {
    /// Connect, and create or upgrade the schema (refusing a newer one).
    pub fn open(t: &Target) -> Result<PgJournal, JournalError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("glidepath-pg")
            .enable_all()
            .build()
            .map_err(|e| JournalError::Database {
                location: t.redacted.clone(),
                message: format!("cannot start the journal's runtime: {e}"),
            })?;
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        let mut session = Session {
            rt,
            target: t.clone(),
            conn: None,
        };
        std::thread::Builder::new()
            .name("glidepath-journal".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    // a panicking call fails alone (its caller sees the
                    // worker gone for that call), with a fresh connection next
                    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        job(&mut session)
                    }));
                    if ran.is_err() {
                        session.conn = None;
                    }
                }
            })
            .map_err(|e| JournalError::Database {
                location: t.redacted.clone(),
                message: format!("cannot start the journal's thread: {e}"),
            })?;
        let j = PgJournal {
            target: t.clone(),
            jobs,
            fence: None,
            next_seq: HashMap::new(),
            changes: Default::default(),
        };
        let location = t.redacted.clone();
        j.sql(async move |c| migrate(c, &location).await)?;
        Ok(j)
    }

    /// Carry `f` out on the worker thread and wait for its answer.
    pub(crate) fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Session) -> Result<T, JournalError> + Send + 'static,
    ) -> Result<T, JournalError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let gone = || JournalError::Database {
            location: self.target.redacted.clone(),
            message: "the journal's worker thread stopped".into(),
        };
        self.jobs
            .send(Box::new(move |s| {
                let _ = tx.send(f(s));
            }))
            .map_err(|_| gone())?;
        rx.recv().map_err(|_| gone())?
    }

    /// Run `f` on the connection (see [`Session::with`]).
    pub(crate) fn sql<T: Send + 'static>(
        &self,
        f: impl AsyncFnOnce(&mut tokio_postgres::Client) -> Result<T, Fail> + Send + 'static,
    ) -> Result<T, JournalError> {
        self.call(move |s| s.with(f))
    }

    pub(crate) fn location_str(&self) -> String {
        self.target.redacted.clone()
    }

    /// The listener: its own connection, `LISTEN glidepath`, made again
    /// whenever it breaks (waking the waiter then too: a notification may
    /// have been missed). Waits up to 2 s for the first `LISTEN`.
    fn start_listener(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        let notify = std::sync::Arc::new(tokio::sync::Notify::new());
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<()>(1);
        let (n, config) = (notify.clone(), self.target.config.clone());
        self.call(move |s| {
            s.rt.spawn(listen(config, n, ready_tx));
            Ok(())
        })
        .ok()?;
        let _ = ready_rx.recv_timeout(Duration::from_secs(2));
        Some(notify)
    }
}

async fn listen(
    config: tokio_postgres::Config,
    notify: std::sync::Arc<tokio::sync::Notify>,
    ready: std::sync::mpsc::SyncSender<()>,
) {
    use futures_util::StreamExt;
    let mut ready = Some(ready);
    loop {
        let connect = tokio::time::timeout(CONNECT_TIMEOUT, config.connect(tokio_postgres::NoTls));
        if let Ok(Ok((client, mut connection))) = connect.await {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
            let driver = tokio::spawn(async move {
                let mut messages =
                    futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                while let Some(m) = messages.next().await {
                    match m {
                        Ok(tokio_postgres::AsyncMessage::Notification(_)) => {
                            if tx.send(()).is_err() {
                                break;
                            }
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            });
            if client
                .batch_execute(&format!("LISTEN {CHANNEL}"))
                .await
                .is_ok()
            {
                if let Some(r) = ready.take() {
                    let _ = r.send(());
                }
                notify.notify_one();
                while rx.recv().await.is_some() {
                    notify.notify_one();
                }
            }
            driver.abort();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Create the schema, or check and upgrade it, under a transaction-scoped
/// advisory lock (two processes opening a fresh database at once; it also
/// works behind a transaction-mode connection pooler).
async fn migrate(c: &mut tokio_postgres::Client, location: &str) -> Result<(), Fail> {
    let tx = c.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock(7245690311)", &[])
        .await?;
    let has_meta: bool = tx
        .query_one("SELECT to_regclass('glidepath.meta') IS NOT NULL", &[])
        .await?
        .get(0);
    let found: i64 = if has_meta {
        tx.query_opt(
            "SELECT value FROM glidepath.meta WHERE key = 'schema_version'",
            &[],
        )
        .await?
        .map(|r| r.get::<_, String>(0))
        .map(|v| {
            v.trim().parse::<i64>().map_err(|_| {
                Fail::Journal(JournalError::Database {
                    location: location.to_string(),
                    message: format!(
                        "glidepath.meta holds schema version {v:?}, which is not a number: not touching it"
                    ),
                })
            })
        })
        .transpose()?
        .unwrap_or(0)
    } else {
        0
    };
    if found > SCHEMA_VERSION {
        return Err(Fail::Journal(JournalError::NewerSchema {
            location: location.to_string(),
            found,
            known: SCHEMA_VERSION,
        }));
    }
    if found < SCHEMA_VERSION {
        tx.batch_execute(SCHEMA_V1).await?;
        tx.execute(
            "INSERT INTO glidepath.meta (key, value) VALUES ('schema_version', $1)
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            &[&SCHEMA_VERSION.to_string()],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

mod campaigns;
mod dump;
mod store;

#[cfg(test)]
mod tests;
