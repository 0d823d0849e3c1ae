//! The journal: every run, every event (each step's intent before it starts
//! and its outcome after), operator commands, and the per-fleet lease that
//! keeps two runs off the same fleet.
//!
//! [`Store`] is what the executor and the commands need of a journal; the
//! SQLite implementation ([`sqlite::SqliteJournal`], also exported as
//! [`Journal`]) is the embedded default, and a shared one (PostgreSQL) is a
//! second implementation of the same trait. The types here (runs, leases,
//! commands, statuses) are the journal's vocabulary, whatever holds it.

mod campaign;
pub mod dump;
pub mod locks;
pub mod postgres;
pub mod sqlite;

pub use campaign::{CampaignRecord, CampaignStatus, StageAction, StageRecord, StageStatus};
pub use locks::NodeLocks;
pub use sqlite::{SqliteJournal, SqliteJournal as Journal};

use glidepath_core::Event;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

/// Where a journal is: a SQLite file (the embedded default, one machine) or
/// a PostgreSQL database (team mode: every machine sees the same runs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Sqlite(PathBuf),
    Postgres(Box<postgres::Target>),
}

impl Location {
    /// `postgres://…` or `postgresql://…` is a PostgreSQL database (its
    /// password from `GLIDEPATH_JOURNAL_PASSWORD_FILE` or
    /// `GLIDEPATH_JOURNAL_PASSWORD`, never from the command line); anything
    /// else is the path of a SQLite file.
    pub fn parse(given: &str) -> Result<Location, JournalError> {
        if postgres::is_url(given) {
            return postgres::Target::parse(given).map(|t| Location::Postgres(Box::new(t)));
        }
        if let Some(why) = postgres::not_a_location(given) {
            return Err(JournalError::BadLocation {
                // a key=value string may hold a password: not echoed
                given: if given.contains("://") {
                    postgres::redact_text(given)
                } else {
                    "(a key=value string, not shown)".into()
                },
                why: why.into(),
            });
        }
        if given.trim().is_empty() {
            return Err(JournalError::BadLocation {
                given: given.to_string(),
                why: "empty".into(),
            });
        }
        Ok(Location::Sqlite(PathBuf::from(given)))
    }

    /// Open the journal (creating or upgrading its schema).
    pub fn open(&self) -> Result<Box<dyn Store>, JournalError> {
        Ok(match self {
            Location::Sqlite(p) => Box::new(SqliteJournal::open(p)?),
            Location::Postgres(t) => postgres::open(t)?,
        })
    }

    /// Does it exist yet? (A database is assumed to: opening it says.)
    pub fn exists(&self) -> bool {
        match self {
            Location::Sqlite(p) => p.exists(),
            Location::Postgres(_) => true,
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Location::Postgres(_))
    }
}

/// As people read it (and as `--journal` takes it back): a path, or the URL
/// without its password.
impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(p) => write!(f, "{}", p.display()),
            Location::Postgres(t) => f.write_str(t.redacted()),
        }
    }
}

impl From<PathBuf> for Location {
    fn from(p: PathBuf) -> Location {
        Location::Sqlite(p)
    }
}

/// A SQLite journal where any store will do (`Executor::start` takes
/// `impl Into<Box<dyn Store>>`: a `SqliteJournal`, or what
/// [`Location::open`] gives).
impl From<SqliteJournal> for Box<dyn Store> {
    fn from(j: SqliteJournal) -> Box<dyn Store> {
        Box::new(j)
    }
}

/// Lease heartbeats older than this mean the holder is gone (other hosts,
/// or a stopped process on this one). `GLIDEPATH_LEASE_TTL` overrides it.
pub const LEASE_STALE_MS: u64 = 30_000;

/// The lease TTL in force: [`LEASE_STALE_MS`] unless `GLIDEPATH_LEASE_TTL`
/// (a duration such as `10s`) says otherwise.
pub fn lease_ttl_ms() -> u64 {
    std::env::var("GLIDEPATH_LEASE_TTL")
        .ok()
        .and_then(|v| humantime::parse_duration(v.trim()).ok())
        .map_or(LEASE_STALE_MS, |d| (d.as_millis() as u64).max(1_000))
}

/// The journal used when neither `--journal`, `GLIDEPATH_JOURNAL` nor the
/// plan's `[journal] path` names one: one per machine and user (so that two
/// copies of a plan share one lease per fleet), in the XDG state directory:
/// `$XDG_STATE_HOME/glidepath/journal.db`, else
/// `~/.local/state/glidepath/journal.db`.
pub fn default_path() -> PathBuf {
    crate::files::state_dir()
        .unwrap_or_else(|| {
            // SAFETY: getuid has no preconditions.
            PathBuf::from(format!("/var/tmp/glidepath-{}", unsafe { libc::getuid() }))
        })
        .join("journal.db")
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("journal {path}: event {seq} of run {run} is unreadable: {message}")]
    Corrupt {
        path: PathBuf,
        run: String,
        seq: i64,
        message: String,
    },
    /// The journal's server cannot be reached (refused, reset, timed out):
    /// an infrastructure fault, retried by a run's holder with backoff.
    #[error("journal {location} is unreachable: {message}")]
    Unavailable { location: String, message: String },
    /// The database answered with an error.
    #[error("journal {location}: {message}")]
    Database { location: String, message: String },
    /// Written by a newer glidepath: this one refuses to touch it.
    #[error("journal {location} has schema version {found}; this glidepath knows up to {known}")]
    NewerSchema {
        location: String,
        found: i64,
        known: i64,
    },
    #[error("journal `{given}`: {why}")]
    BadLocation { given: String, why: String },
    /// `journal import`: the journal holds another run (or campaign) under
    /// the same id; nothing of it was imported.
    #[error("{what} {id} is already in journal {location} with different content ({why}); refused: nothing of it was imported")]
    ImportConflict {
        what: &'static str,
        id: String,
        location: String,
        why: String,
    },
    /// This kind of journal cannot do that.
    #[error("journal {location}: {what} is not supported by this journal")]
    Unsupported {
        location: String,
        what: &'static str,
    },
    #[error("no run `{0}` in the journal")]
    NoSuchRun(String),
    #[error("no campaign `{0}` in the journal")]
    NoSuchCampaign(String),
    /// A live process on this host carries the campaign out.
    #[error("campaign {campaign} is being carried out by pid {pid} on {host}")]
    CampaignHeld {
        campaign: String,
        pid: u32,
        host: String,
    },
    /// Another journal on this machine drives a run on one of the nodes.
    #[error("node {node} ({address}) is being rolled out by run {run} (pid {pid}) from another journal, {journal}: two journals cannot see each other's leases")]
    OtherJournal {
        node: String,
        address: String,
        run: String,
        pid: u32,
        journal: String,
    },
    /// A run of another fleet of this journal drives one of the nodes (two
    /// plans naming the same nodes under two fleet names: two leases).
    #[error("node {node} ({address}) is being rolled out by run {run} (pid {pid}) of another fleet in this journal: a node is driven by one run at a time")]
    NodeBusy {
        node: String,
        address: String,
        run: String,
        pid: u32,
    },
    #[error("journal file {path} cannot be written: {why}")]
    NotWritable { path: PathBuf, why: String },
    #[error("cannot take this machine's node lock {path}: {source}")]
    NodeLock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// This process held the fleet's lease and lost it (another process took
    /// it over after the TTL): it must write nothing more and stop.
    #[error("run {run} lost the lease of fleet `{fleet}` (epoch {epoch}){}: this process stops without touching the fleet again", match .taken_by { Some(t) => format!(" to {t}"), None => String::new() })]
    Fenced {
        fleet: String,
        run: String,
        epoch: i64,
        /// Who holds it now (`run … pid … on host`), if anyone.
        taken_by: Option<String>,
    },
    #[error("fleet `{fleet}` is locked by run {run_id} (pid {pid} on {host}, since {since})")]
    Locked {
        fleet: String,
        run_id: String,
        pid: u32,
        host: String,
        since: String,
        holder_dead: bool,
        /// How long ago the holder's last heartbeat was, and the TTL after
        /// which, without another, it may be taken over.
        heartbeat_age_ms: u64,
        ttl_ms: u64,
    },
}

/// The start of a rollback command's reason when it was forced past
/// irreversible tasks (`rollback --force --reason`): the live process
/// refuses a rollback without it once such a task has run.
pub const FORCED: &str = "forced past irreversible tasks";

/// Where a run stands, as the journal records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Created; its gates are being checked (nothing changed yet).
    Preflight,
    Running,
    /// Running, and waiting for a person (a pause point, a held breach or
    /// task, post tasks held for a promote); the reason says what for.
    Paused,
    /// Running, and waiting out the infrastructure (an outage, a fleet-wide
    /// incident, nodes found down) by itself; the reason says what.
    Waiting,
    /// Stopped by an infrastructure outage past the retry deadline; resumable.
    Suspended,
    Succeeded,
    RolledBack,
    Aborted,
    RollbackFailed,
    /// Refused by a gate or a lock before anything changed.
    Refused,
    /// A `pre` task failed: no node was changed.
    Failed,
    /// A `rollback_failed` run that a person closed after fixing the node
    /// it kept out of rotation (`glidepath resolve`; the reason says who
    /// and what was done).
    Resolved,
}

/// A name the journal does not know (a status or a command kind).
#[derive(Debug, thiserror::Error)]
#[error("unknown name `{0}` in the journal")]
pub struct UnknownName(pub String);

impl RunStatus {
    pub const ALL: [RunStatus; 12] = [
        RunStatus::Preflight,
        RunStatus::Running,
        RunStatus::Paused,
        RunStatus::Waiting,
        RunStatus::Suspended,
        RunStatus::Succeeded,
        RunStatus::RolledBack,
        RunStatus::Aborted,
        RunStatus::RollbackFailed,
        RunStatus::Refused,
        RunStatus::Failed,
        RunStatus::Resolved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Preflight => "preflight",
            RunStatus::Running => "running",
            RunStatus::Paused => "paused",
            RunStatus::Waiting => "waiting",
            RunStatus::Suspended => "suspended",
            RunStatus::Succeeded => "succeeded",
            RunStatus::RolledBack => "rolled_back",
            RunStatus::Aborted => "aborted",
            RunStatus::RollbackFailed => "rollback_failed",
            RunStatus::Refused => "refused",
            RunStatus::Failed => "failed",
            RunStatus::Resolved => "resolved",
        }
    }

    /// The run is under way (running, paused or waiting): its process acts.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            RunStatus::Running | RunStatus::Paused | RunStatus::Waiting
        )
    }

    /// The run ended (nothing will happen unless an operator asks).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded
                | RunStatus::RolledBack
                | RunStatus::Aborted
                | RunStatus::RollbackFailed
                | RunStatus::Refused
                | RunStatus::Failed
                | RunStatus::Resolved
        )
    }
}

impl From<glidepath_core::Outcome> for RunStatus {
    fn from(o: glidepath_core::Outcome) -> Self {
        use glidepath_core::Outcome;
        match o {
            Outcome::Succeeded => RunStatus::Succeeded,
            Outcome::RolledBack => RunStatus::RolledBack,
            Outcome::Aborted => RunStatus::Aborted,
            Outcome::RollbackFailed => RunStatus::RollbackFailed,
            Outcome::Failed => RunStatus::Failed,
        }
    }
}

impl std::str::FromStr for RunStatus {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        RunStatus::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownName(s.to_string()))
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status reads as its journaled name (`"rolled_back"`), so text output
/// and comparisons with names keep working.
impl std::ops::Deref for RunStatus {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<&str> for RunStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// An operator command queued for the run's holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandKind {
    Promote,
    Abort,
    Rollback,
}

impl CommandKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CommandKind::Promote => "promote",
            CommandKind::Abort => "abort",
            CommandKind::Rollback => "rollback",
        }
    }
}

impl std::str::FromStr for CommandKind {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        [
            CommandKind::Promote,
            CommandKind::Abort,
            CommandKind::Rollback,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
        .ok_or_else(|| UnknownName(s.to_string()))
    }
}

impl std::fmt::Display for CommandKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the executor and the commands need of a journal. Every write of a
/// lease holder is fenced: once another process took the fleet's lease over,
/// it fails with [`JournalError::Fenced`] and writes nothing.
pub trait Store: Send {
    /// Where it lives, for messages (a path, or a URL without secrets).
    fn location(&self) -> String;
    fn create_run(&self, r: &RunRecord) -> Result<(), JournalError>;
    fn set_status(
        &mut self,
        run: &str,
        status: RunStatus,
        reason: &str,
    ) -> Result<(), JournalError>;
    /// Append an event; returns its sequence number.
    fn append(&mut self, run: &str, event: &Event) -> Result<i64, JournalError>;
    /// Append the event an operator command produced and mark the command
    /// applied, atomically: a crash never applies a command twice.
    fn append_for_command(
        &mut self,
        run: &str,
        event: &Event,
        command: i64,
    ) -> Result<i64, JournalError>;
    fn events(&self, run: &str) -> Result<Vec<Event>, JournalError>;
    /// Events after sequence number `after` (0: all), with their numbers:
    /// how another process follows a run.
    fn events_since(&self, run: &str, after: i64) -> Result<Vec<(i64, Event)>, JournalError>;
    fn run(&self, id: &str) -> Result<RunRecord, JournalError>;
    /// Runs, newest first.
    fn runs(&self, limit: usize) -> Result<Vec<RunRecord>, JournalError>;
    fn lease(&self, fleet: &str) -> Result<Option<Lease>, JournalError>;
    /// The lease of the run's fleet, if this run holds it.
    fn lease_of_run(&self, run: &str) -> Result<Option<Lease>, JournalError> {
        let fleet = self.run(run)?.fleet;
        Ok(self.lease(&fleet)?.filter(|l| l.run_id == run))
    }
    /// Take the fleet's lease for `run`, with a new epoch. A lease held by a
    /// live process is refused; one held by a dead process is taken over only
    /// when `take_over_dead` (resume, abort, rollback of that run).
    fn acquire_lease(
        &mut self,
        fleet: &str,
        run: &str,
        take_over_dead: bool,
    ) -> Result<(), JournalError>;
    fn heartbeat(&mut self, fleet: &str, run: &str) -> Result<(), JournalError>;
    fn release_lease(&mut self, fleet: &str, run: &str) -> Result<(), JournalError>;
    /// The lease epoch this handle writes under, once it holds a lease.
    fn epoch(&self) -> Option<i64>;
    /// Never touch the journal again, not even to close it.
    fn abandon(&self);
    fn push_command(&self, run: &str, kind: CommandKind, reason: &str)
        -> Result<i64, JournalError>;
    /// Commands not yet acted on, oldest first.
    fn pending_commands(&self, run: &str) -> Result<Vec<Command>, JournalError>;
    fn consume_command(&mut self, id: i64) -> Result<(), JournalError>;
    /// Mark a command consumed without acting on it, saying why.
    fn refuse_command(&mut self, id: i64, why: &str) -> Result<(), JournalError>;
    /// `None` while pending, else `Some("applied")` or why it was refused.
    fn command_outcome(&self, id: i64) -> Result<Option<String>, JournalError>;
    /// Woken (one permit) when a command is queued or acknowledged, for a
    /// holder or a sender that would otherwise poll: PostgreSQL's
    /// LISTEN/NOTIFY. `None`: poll.
    fn changes(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }

    // Campaigns (`glidepath upgrade`): not fenced (each stage's run takes
    // its fleet's lease); one process carries a campaign out at a time.

    /// Record a new campaign with its stages, held by this process.
    fn create_campaign(&self, c: &CampaignRecord) -> Result<(), JournalError>;
    /// A campaign with its stages ([`JournalError::NoSuchCampaign`]).
    fn campaign(&self, id: &str) -> Result<CampaignRecord, JournalError>;
    /// The campaign one of whose stages `run` carries out, if any.
    fn campaign_of_run(&self, run: &str) -> Result<Option<CampaignRecord>, JournalError>;
    /// Take a campaign over for this process (status `running`): refused
    /// with [`JournalError::CampaignHeld`] while it is `running` under a
    /// live process of this host.
    fn claim_campaign(&self, id: &str) -> Result<(), JournalError>;
    fn set_campaign_status(
        &self,
        id: &str,
        status: CampaignStatus,
        reason: &str,
    ) -> Result<(), JournalError>;
    /// Record a stage's status, its run and its outcome in words.
    fn set_stage(
        &self,
        id: &str,
        index: usize,
        status: StageStatus,
        run: Option<&str>,
        detail: &str,
    ) -> Result<(), JournalError>;

    // Moving runs between journals (`glidepath journal export/import`, see
    // [`dump`]). Leases are live state: they are not moved.

    /// A run with every event row exactly as stored and its commands.
    fn export_run(&self, id: &str) -> Result<dump::RunDump, JournalError> {
        let _ = id;
        Err(self.unsupported("exporting a run"))
    }
    /// Add a run in one transaction: one already here with the same content
    /// is skipped, one with other content refused
    /// ([`JournalError::ImportConflict`]).
    fn import_run(&mut self, run: &dump::RunDump) -> Result<dump::Imported, JournalError> {
        let _ = run;
        Err(self.unsupported("importing a run"))
    }
    /// Every campaign's id, oldest first.
    fn campaign_ids(&self) -> Result<Vec<String>, JournalError> {
        Err(self.unsupported("listing campaigns"))
    }
    /// A campaign with its stages, as [`dump::CampaignDump`].
    fn export_campaign(&self, id: &str) -> Result<dump::CampaignDump, JournalError> {
        let _ = id;
        Err(self.unsupported("exporting a campaign"))
    }
    /// Add a campaign with its stages in one transaction (skipped when
    /// identical, refused when different, as [`Store::import_run`]).
    fn import_campaign(&mut self, c: &dump::CampaignDump) -> Result<dump::Imported, JournalError> {
        let _ = c;
        Err(self.unsupported("importing a campaign"))
    }
    /// What `glidepath journal info` shows.
    fn info(&self) -> Result<dump::JournalInfo, JournalError> {
        Err(self.unsupported("describing the journal"))
    }
    /// The error of a method this journal does not implement.
    fn unsupported(&self, what: &'static str) -> JournalError {
        JournalError::Unsupported {
            location: self.location(),
            what,
        }
    }
}

/// A row of the `runs` table.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub id: String,
    pub fleet: String,
    pub plan_path: String,
    pub plan_hash: String,
    #[serde(skip)]
    pub plan_source: String,
    pub version: String,
    pub status: RunStatus,
    pub reason: String,
    pub created_at: u64,
    pub updated_at: u64,
}

/// A lease row: who holds a fleet.
#[derive(Debug, Clone, Serialize)]
pub struct Lease {
    pub fleet: String,
    pub run_id: String,
    pub pid: u32,
    pub host: String,
    pub since: u64,
    pub heartbeat: u64,
    /// The fencing epoch: increased by every acquisition of the fleet's
    /// lease, checked by every write of the holder.
    pub epoch: i64,
    /// The TTL the holder declared ([`lease_ttl_ms`] in its process; 0 in
    /// rows written before it was recorded): it knows, so, when it may be
    /// taken over.
    pub ttl_ms: u64,
    /// The holder process's [`process_token`] (empty in older rows).
    #[serde(skip)]
    pub token: String,
}

impl Lease {
    /// The TTL that judges this holder: the one it declared, else ours.
    pub fn ttl(&self) -> u64 {
        if self.ttl_ms > 0 {
            self.ttl_ms
        } else {
            lease_ttl_ms()
        }
    }

    /// The error of a fleet held by this lease's holder.
    pub fn locked(&self, now: u64) -> JournalError {
        JournalError::Locked {
            fleet: self.fleet.clone(),
            run_id: self.run_id.clone(),
            pid: self.pid,
            host: self.host.clone(),
            since: fmt_time(self.since),
            holder_dead: self.holder_dead(now),
            heartbeat_age_ms: now.saturating_sub(self.heartbeat),
            ttl_ms: self.ttl(),
        }
    }

    /// Is the holder certainly gone? Any host: no heartbeat for the TTL the
    /// holder declared. This host and this pid namespace: the process no
    /// longer exists (or is a zombie); in another pid namespace (another
    /// container with the same host name) its pid means nothing here.
    pub fn holder_dead(&self, now: u64) -> bool {
        if now.saturating_sub(self.heartbeat) > self.ttl() {
            return true;
        }
        self.host == hostname() && self.same_pid_namespace() && !pid_alive(self.pid)
    }

    /// Is this lease held by this very process?
    pub fn is_mine(&self) -> bool {
        if self.token.is_empty() {
            self.pid == std::process::id() && self.host == hostname()
        } else {
            self.token == process_token()
        }
    }

    fn same_pid_namespace(&self) -> bool {
        self.token.is_empty() || self.token.split('/').next() == process_token().split('/').next()
    }
}

/// This process's identity in a lease: its pid namespace and 64 random
/// bits (`pid:[4026531836]/9f…`). Two processes that share a host name and
/// a pid (pid 1 of two containers) differ by it.
pub fn process_token() -> &'static str {
    static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TOKEN.get_or_init(|| {
        use std::io::Read;
        let ns = std::fs::read_link("/proc/self/ns/pid")
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let mut bytes = [0u8; 8];
        let random = std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .is_ok();
        if !random {
            // no /dev/urandom: the time and pid still tell two processes apart
            bytes = (now_ms() ^ ((std::process::id() as u64) << 40)).to_le_bytes();
        }
        format!("{ns}/{}", hex::encode(bytes))
    })
}

/// A queued operator command.
#[derive(Debug, Clone, Serialize)]
pub struct Command {
    pub id: i64,
    pub kind: CommandKind,
    pub reason: String,
    pub at: u64,
}

/// This machine's name in leases and campaigns: `GLIDEPATH_HOST` if set
/// (containers that share a host name, or tests simulating hosts), else the
/// kernel's host name.
pub fn hostname() -> String {
    if let Some(h) = std::env::var("GLIDEPATH_HOST")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty() && h.len() <= 255)
    {
        return h;
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// Who is asking, for the journal (a forced gate, a forced rollback, the run's origin): `$USER` (or `$LOGNAME`), else the uid.
pub fn operator() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty() && u.len() <= 64)
        .unwrap_or_else(|| {
            // SAFETY: getuid has no preconditions.
            format!("uid {}", unsafe { libc::getuid() })
        })
}

/// `kill(pid, 0)` plus a zombie check: a killed child not yet reaped still
/// answers `kill -0`.
pub fn pid_alive(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks for existence/permission.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    if r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|s| s.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X"))
        }
        Err(_) => r == 0,
    }
}

/// The longest text (a reason, a step's detail) kept in the journal.
pub const MAX_TEXT: usize = 4096;
/// An event larger than this has its texts clipped to [`MAX_TEXT`].
pub const MAX_EVENT: usize = 64 * 1024;

/// `s` cut to at most `max` bytes on a char boundary, saying how much went.
pub fn clip(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return s.into();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}… [{} more bytes not journaled]",
        &s[..end],
        s.len() - end
    )
    .into()
}

/// The event as it may be journaled: one over [`MAX_EVENT`] bytes has its
/// free texts clipped. The executor applies the bounded event, so the state
/// it folds is the one a replay folds.
pub fn bounded(ev: Event) -> Event {
    match serde_json::to_string(&ev) {
        Ok(s) if s.len() > MAX_EVENT => clip_event(&ev),
        _ => ev,
    }
}

/// The event with every free text clipped to [`MAX_TEXT`].
fn clip_event(ev: &Event) -> Event {
    let c = |s: &String| clip(s, MAX_TEXT).into_owned();
    let mut ev = ev.clone();
    match &mut ev {
        Event::Outcome { outcome, step, .. } => {
            outcome.detail = c(&outcome.detail);
            step.reason = c(&step.reason);
            for o in &mut outcome.observations {
                o.check = c(&o.check);
                if let Some(e) = &mut o.error {
                    *e = c(e);
                }
            }
        }
        Event::Intent { step, .. } => step.reason = c(&step.reason),
        Event::Finished { reason, .. }
        | Event::WindowClosed { reason, .. }
        | Event::GroupStarted { reason, .. }
        | Event::GateForced { reason, .. }
        | Event::Promoted { reason, .. }
        | Event::AbortRequested { reason, .. }
        | Event::RollbackRequested { reason, .. } => *reason = c(reason),
        Event::GatesChecked { results, .. } => {
            for r in results {
                r.reason = c(&r.reason);
            }
        }
        _ => {}
    }
    ev
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub fn fmt_time(ms: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

#[cfg(test)]
mod lease_tests {
    use super::*;

    fn lease(pid: u32, host: &str, token: &str, heartbeat: u64, ttl_ms: u64) -> Lease {
        Lease {
            fleet: "web".into(),
            run_id: "r1".into(),
            pid,
            host: host.into(),
            since: heartbeat,
            heartbeat,
            epoch: 1,
            ttl_ms,
            token: token.into(),
        }
    }

    #[test]
    fn a_lease_is_mine_by_its_token_not_by_pid_and_host() {
        let me = std::process::id();
        // pid 1 of another container with the same host name: not mine
        let other = format!(
            "{}/0000000000000000",
            process_token().split('/').next().unwrap()
        );
        assert!(!lease(me, &hostname(), &other, now_ms(), 30_000).is_mine());
        assert!(lease(me, &hostname(), process_token(), now_ms(), 30_000).is_mine());
        // rows written before tokens: pid and host
        assert!(lease(me, &hostname(), "", now_ms(), 30_000).is_mine());
    }

    #[test]
    fn a_holder_is_dead_by_its_own_ttl_and_by_pid_only_in_this_pid_namespace() {
        let now = now_ms();
        // the holder declared 3 s: 5 s without a heartbeat is dead, whatever
        // this process's TTL
        assert!(lease(1, "elsewhere", "pid:[1]/x", now - 5_000, 3_000).holder_dead(now));
        assert!(!lease(1, "elsewhere", "pid:[1]/x", now - 5_000, 60_000).holder_dead(now));
        // this host, a pid that does not exist here, in another pid
        // namespace: its pid means nothing here, only the TTL counts
        let gone = 4_000_000;
        assert!(!lease(gone, &hostname(), "pid:[1]/x", now, 30_000).holder_dead(now));
        // … in this one: dead at once
        let here = format!("{}/x", process_token().split('/').next().unwrap());
        assert!(lease(gone, &hostname(), &here, now, 30_000).holder_dead(now));
    }
}
