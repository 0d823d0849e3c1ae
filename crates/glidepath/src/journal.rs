//! The journal: one SQLite database holding every run, every event (each
//! step's intent before it starts and its outcome after), operator commands,
//! and the per-fleet lease that keeps two runs off the same fleet.
//!
//! Writes are single statements in WAL mode with `synchronous = FULL`, so a
//! `kill -9` at any moment leaves a consistent journal: an event is either
//! fully there or absent.

use glidepath_core::Event;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Lease heartbeats older than this mean the holder is gone (other hosts).
pub const LEASE_STALE_MS: u64 = 30_000;

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
    #[error("no run `{0}` in the journal")]
    NoSuchRun(String),
    #[error("fleet `{fleet}` is locked by run {run_id} (pid {pid} on {host}, since {since})")]
    Locked {
        fleet: String,
        run_id: String,
        pid: u32,
        host: String,
        since: String,
        holder_dead: bool,
    },
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
    pub status: String,
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
}

impl Lease {
    /// Is the holder certainly gone? Same host: the process no longer exists
    /// (or is a zombie). Any host: no heartbeat for [`LEASE_STALE_MS`].
    pub fn holder_dead(&self, now: u64) -> bool {
        if now.saturating_sub(self.heartbeat) > LEASE_STALE_MS {
            return true;
        }
        self.host == hostname() && !pid_alive(self.pid)
    }
}

/// A queued operator command.
#[derive(Debug, Clone, Serialize)]
pub struct Command {
    pub id: i64,
    pub kind: String,
    pub reason: String,
    pub at: u64,
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
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

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub fn fmt_time(ms: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

pub struct Journal {
    conn: Connection,
    path: PathBuf,
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    fleet TEXT NOT NULL,
    plan_path TEXT NOT NULL,
    plan_hash TEXT NOT NULL,
    plan_source TEXT NOT NULL,
    version TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL REFERENCES runs(id),
    seq INTEGER NOT NULL,
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    node TEXT,
    step TEXT,
    data TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE IF NOT EXISTS leases (
    fleet TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    since INTEGER NOT NULL,
    heartbeat INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS commands (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    reason TEXT NOT NULL,
    at INTEGER NOT NULL,
    consumed_at INTEGER
);
"#;

impl Journal {
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        let err = |source| JournalError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        Self::migrate(&conn).map_err(err)?;
        Ok(Journal {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Columns added since the first schema, for journals written by older
    /// versions (`ALTER TABLE … ADD COLUMN` is idempotent here).
    fn migrate(conn: &Connection) -> rusqlite::Result<()> {
        let has = |table: &str, col: &str| -> rusqlite::Result<bool> {
            let mut st = conn.prepare(&format!("PRAGMA table_info({table})"))?;
            let names = st.query_map([], |r| r.get::<_, String>(1))?;
            for n in names {
                if n? == col {
                    return Ok(true);
                }
            }
            Ok(false)
        };
        if !has("commands", "outcome")? {
            conn.execute_batch("ALTER TABLE commands ADD COLUMN outcome TEXT")?;
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, source: rusqlite::Error) -> JournalError {
        JournalError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    pub fn create_run(&self, r: &RunRecord) -> Result<(), JournalError> {
        self.conn
            .execute(
                "INSERT INTO runs (id, fleet, plan_path, plan_hash, plan_source, version, status, reason, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
                params![r.id, r.fleet, r.plan_path, r.plan_hash, r.plan_source, r.version, r.status, r.reason, r.created_at as i64],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub fn set_status(&self, run: &str, status: &str, reason: &str) -> Result<(), JournalError> {
        self.conn
            .execute(
                "UPDATE runs SET status = ?2, reason = ?3, updated_at = ?4 WHERE id = ?1",
                params![run, status, reason, now_ms() as i64],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Append the event an operator command produced and mark the command
    /// consumed, atomically: a crash never applies a command twice.
    pub fn append_for_command(
        &mut self,
        run: &str,
        event: &Event,
        command: i64,
    ) -> Result<i64, JournalError> {
        let tx = self.conn.transaction().map_err(|e| JournalError::Sqlite {
            path: self.path.clone(),
            source: e,
        })?;
        let seq = Self::insert_event(&tx, run, event).map_err(|e| JournalError::Sqlite {
            path: self.path.clone(),
            source: e,
        })?;
        tx.execute(
            "UPDATE commands SET consumed_at = ?2, outcome = 'applied' WHERE id = ?1",
            params![command, now_ms() as i64],
        )
        .and_then(|_| tx.commit())
        .map_err(|e| JournalError::Sqlite {
            path: self.path.clone(),
            source: e,
        })?;
        Ok(seq)
    }

    /// Append an event; returns its sequence number.
    pub fn append(&self, run: &str, event: &Event) -> Result<i64, JournalError> {
        Self::insert_event(&self.conn, run, event).map_err(|e| self.err(e))
    }

    fn insert_event(conn: &Connection, run: &str, event: &Event) -> rusqlite::Result<i64> {
        let data = serde_json::to_string(event).expect("events serialize");
        let (node, step) = match event {
            Event::Intent { step, .. } | Event::Outcome { step, .. } => {
                (step.node.clone(), Some(step.kind.as_str()))
            }
            _ => (None, None),
        };
        conn.query_row(
            "INSERT INTO events (run_id, seq, at, kind, node, step, data)
             VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE run_id = ?1), ?2, ?3, ?4, ?5, ?6)
             RETURNING seq",
            params![run, event.at() as i64, event.kind(), node, step, data],
            |r| r.get(0),
        )
    }

    pub fn events(&self, run: &str) -> Result<Vec<Event>, JournalError> {
        let mut stmt = self
            .conn
            .prepare("SELECT seq, data FROM events WHERE run_id = ?1 ORDER BY seq")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![run], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, data) = row.map_err(|e| self.err(e))?;
            let ev = serde_json::from_str(&data).map_err(|e| JournalError::Corrupt {
                path: self.path.clone(),
                run: run.to_string(),
                seq,
                message: e.to_string(),
            })?;
            out.push(ev);
        }
        Ok(out)
    }

    fn row_to_run(r: &rusqlite::Row) -> rusqlite::Result<RunRecord> {
        Ok(RunRecord {
            id: r.get(0)?,
            fleet: r.get(1)?,
            plan_path: r.get(2)?,
            plan_hash: r.get(3)?,
            plan_source: r.get(4)?,
            version: r.get(5)?,
            status: r.get(6)?,
            reason: r.get(7)?,
            created_at: r.get::<_, i64>(8)? as u64,
            updated_at: r.get::<_, i64>(9)? as u64,
        })
    }

    fn row_to_lease(r: &rusqlite::Row) -> rusqlite::Result<Lease> {
        Ok(Lease {
            fleet: r.get(0)?,
            run_id: r.get(1)?,
            pid: r.get::<_, i64>(2)? as u32,
            host: r.get(3)?,
            since: r.get::<_, i64>(4)? as u64,
            heartbeat: r.get::<_, i64>(5)? as u64,
        })
    }

    const RUN_COLS: &'static str =
        "id, fleet, plan_path, plan_hash, plan_source, version, status, reason, created_at, updated_at";

    pub fn run(&self, id: &str) -> Result<RunRecord, JournalError> {
        self.conn
            .query_row(
                &format!("SELECT {} FROM runs WHERE id = ?1", Self::RUN_COLS),
                params![id],
                Self::row_to_run,
            )
            .optional()
            .map_err(|e| self.err(e))?
            .ok_or_else(|| JournalError::NoSuchRun(id.to_string()))
    }

    /// Runs, newest first.
    pub fn runs(&self, limit: usize) -> Result<Vec<RunRecord>, JournalError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {} FROM runs ORDER BY created_at DESC, id DESC LIMIT ?1",
                Self::RUN_COLS
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![limit as i64], Self::row_to_run)
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    pub fn lease(&self, fleet: &str) -> Result<Option<Lease>, JournalError> {
        self.conn
            .query_row(
                "SELECT fleet, run_id, pid, host, since, heartbeat FROM leases WHERE fleet = ?1",
                params![fleet],
                Self::row_to_lease,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    pub fn lease_of_run(&self, run: &str) -> Result<Option<Lease>, JournalError> {
        let fleet = self.run(run)?.fleet;
        Ok(self.lease(&fleet)?.filter(|l| l.run_id == run))
    }

    /// Take the fleet's lease for `run`. A lease held by a live process is
    /// refused; one held by a dead process is taken over only when
    /// `take_over_dead` (resume, abort, rollback of that run) is set.
    pub fn acquire_lease(
        &mut self,
        fleet: &str,
        run: &str,
        take_over_dead: bool,
    ) -> Result<(), JournalError> {
        let me = std::process::id();
        let host = hostname();
        let now = now_ms();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| JournalError::Sqlite {
                path: self.path.clone(),
                source: e,
            })?;
        let existing: Option<Lease> = tx
            .query_row(
                "SELECT fleet, run_id, pid, host, since, heartbeat FROM leases WHERE fleet = ?1",
                params![fleet],
                Self::row_to_lease,
            )
            .optional()
            .map_err(|e| JournalError::Sqlite {
                path: self.path.clone(),
                source: e,
            })?;
        if let Some(l) = existing {
            let mine = l.pid == me && l.host == host;
            let dead = l.holder_dead(now);
            if !(mine || dead && take_over_dead) {
                return Err(JournalError::Locked {
                    fleet: fleet.to_string(),
                    run_id: l.run_id,
                    pid: l.pid,
                    host: l.host,
                    since: fmt_time(l.since),
                    holder_dead: dead,
                });
            }
        }
        tx.execute(
            "INSERT INTO leases (fleet, run_id, pid, host, since, heartbeat) VALUES (?1, ?2, ?3, ?4, ?5, ?5)
             ON CONFLICT(fleet) DO UPDATE SET run_id = ?2, pid = ?3, host = ?4, since = ?5, heartbeat = ?5",
            params![fleet, run, me as i64, host, now as i64],
        )
        .map_err(|e| JournalError::Sqlite {
            path: self.path.clone(),
            source: e,
        })?;
        tx.commit().map_err(|e| JournalError::Sqlite {
            path: self.path.clone(),
            source: e,
        })
    }

    pub fn heartbeat(&self, fleet: &str, run: &str) -> Result<(), JournalError> {
        self.conn
            .execute(
                "UPDATE leases SET heartbeat = ?3 WHERE fleet = ?1 AND run_id = ?2 AND pid = ?4",
                params![fleet, run, now_ms() as i64, std::process::id() as i64],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub fn release_lease(&self, fleet: &str, run: &str) -> Result<(), JournalError> {
        self.conn
            .execute(
                "DELETE FROM leases WHERE fleet = ?1 AND run_id = ?2 AND pid = ?3",
                params![fleet, run, std::process::id() as i64],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Queue an operator command; returns its id.
    pub fn push_command(&self, run: &str, kind: &str, reason: &str) -> Result<i64, JournalError> {
        self.conn
            .execute(
                "INSERT INTO commands (run_id, kind, reason, at) VALUES (?1, ?2, ?3, ?4)",
                params![run, kind, reason, now_ms() as i64],
            )
            .map_err(|e| self.err(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Commands not yet acted on, oldest first. Call [`Journal::consume_command`]
    /// after journaling the event each one produced.
    pub fn pending_commands(&self, run: &str) -> Result<Vec<Command>, JournalError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, kind, reason, at FROM commands WHERE run_id = ?1 AND consumed_at IS NULL ORDER BY id")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![run], |r| {
                Ok(Command {
                    id: r.get(0)?,
                    kind: r.get(1)?,
                    reason: r.get(2)?,
                    at: r.get::<_, i64>(3)? as u64,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    pub fn consume_command(&self, id: i64) -> Result<(), JournalError> {
        self.refuse_command(id, "ignored")
    }

    /// Mark a command consumed without acting on it, saying why (the
    /// sender prints it and exits non-zero).
    pub fn refuse_command(&self, id: i64, why: &str) -> Result<(), JournalError> {
        self.conn
            .execute(
                "UPDATE commands SET consumed_at = ?2, outcome = ?3 WHERE id = ?1",
                params![id, now_ms() as i64, why],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// What became of a command: `None` while it is pending, else
    /// `Some("applied")` or the reason it was refused.
    pub fn command_outcome(&self, id: i64) -> Result<Option<String>, JournalError> {
        self.conn
            .query_row(
                "SELECT consumed_at, COALESCE(outcome, 'applied') FROM commands WHERE id = ?1",
                params![id],
                |r| Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, String>(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))
            .map(|o| o.and_then(|(c, out)| c.map(|_| out)))
    }
}
