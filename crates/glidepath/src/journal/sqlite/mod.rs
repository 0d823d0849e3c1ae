//! The embedded journal: one SQLite database in WAL mode with
//! `synchronous = FULL`, so a `kill -9` at any moment leaves it consistent
//! (an event is either fully there or absent). Every write of a lease holder
//! is one IMMEDIATE transaction that first checks the fence.

use super::*;
mod campaigns;
mod dump;
mod store;

use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;

/// Refuse to touch the journal when its WAL index (`-shm`) was made
/// immutable or append-only (`chattr +i`): SQLite writes that index through
/// a shared memory map, even to read, and a write into an immutable file's
/// map is a SIGBUS that kills the process without a word. The database and
/// the WAL are written with `write(2)`, whose failure SQLite reports as an
/// error, so only the index needs the check. Checked before every access;
/// the window between the check and the access is microseconds.
fn check_writable(shm: &std::ffi::CStr) -> Result<(), JournalError> {
    use std::os::unix::ffi::OsStrExt;
    // statx, not open: closing any descriptor of a SQLite file would drop
    // SQLite's POSIX locks on it
    // SAFETY: a zeroed statx is a valid out-parameter.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: shm is a valid C string, st a valid out-parameter.
    let r = unsafe { libc::statx(libc::AT_FDCWD, shm.as_ptr(), 0, 0, &mut st) };
    let flags = (libc::STATX_ATTR_IMMUTABLE | libc::STATX_ATTR_APPEND) as u64;
    if r == 0 && st.stx_attributes_mask & flags != 0 && st.stx_attributes & flags != 0 {
        return Err(JournalError::NotWritable {
            path: PathBuf::from(std::ffi::OsStr::from_bytes(shm.to_bytes())),
            why: "the file is immutable or append-only (chattr)".into(),
        });
    }
    Ok(())
}

pub struct SqliteJournal {
    /// Dropped by hand (see `Drop`): a journal whose files failed is not
    /// closed, because closing the last connection checkpoints the WAL
    /// through its memory-mapped index, which SIGBUSes on an immutable file.
    conn: std::mem::ManuallyDrop<Connection>,
    abandoned: std::sync::atomic::AtomicBool,
    path: PathBuf,
    /// The WAL index's path, for [`check_writable`].
    shm: std::ffi::CString,
    /// Set once this handle holds a fleet's lease: every write is then
    /// conditional on the lease still being ours at this epoch.
    fence: Option<Fence>,
}

#[derive(Debug, Clone)]
struct Fence {
    fleet: String,
    run: String,
    epoch: i64,
}

/// The schema version this glidepath writes (`PRAGMA user_version`): 1 is
/// the schema below with the migrations of [`SqliteJournal::migrate`]. A
/// journal with a higher one was written by a newer glidepath and is
/// refused ([`JournalError::NewerSchema`]).
pub const SCHEMA_VERSION: i64 = 1;

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
CREATE TABLE IF NOT EXISTS fences (
    fleet TEXT PRIMARY KEY,
    epoch INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS commands (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    reason TEXT NOT NULL,
    at INTEGER NOT NULL,
    consumed_at INTEGER
);
-- campaigns (`glidepath upgrade`), added after the first schema: created
-- here on a journal written by an older version too
CREATE TABLE IF NOT EXISTS campaigns (
    id TEXT PRIMARY KEY,
    system_path TEXT NOT NULL,
    system_source TEXT NOT NULL,
    target TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS campaign_stages (
    campaign_id TEXT NOT NULL REFERENCES campaigns(id),
    idx INTEGER NOT NULL,
    action TEXT NOT NULL,
    why TEXT NOT NULL,
    status TEXT NOT NULL,
    run_id TEXT,
    detail TEXT NOT NULL DEFAULT '',
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, idx)
);
CREATE INDEX IF NOT EXISTS campaign_stages_run ON campaign_stages(run_id);
"#;

/// A text column parsed into one of the journal's typed values.
fn parse_col<T>(r: &rusqlite::Row, i: usize) -> rusqlite::Result<T>
where
    T: std::str::FromStr<Err = UnknownName>,
{
    r.get::<_, String>(i)?.parse().map_err(|e: UnknownName| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    })
}

impl SqliteJournal {
    pub fn open(path: &Path) -> Result<SqliteJournal, JournalError> {
        let err = |source| JournalError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(err)?;
        // switching to WAL needs a moment alone with the file: another
        // process opening it at the same instant makes this busy, briefly
        let mut tries = 0;
        loop {
            match conn.pragma_update(None, "journal_mode", "WAL") {
                Ok(()) => break,
                Err(e)
                    if tries < 50
                        && e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) =>
                {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(err(e)),
            }
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        // schema and migrations in one IMMEDIATE transaction: two processes
        // opening a fresh journal at once must not both add a column
        conn.execute_batch("BEGIN IMMEDIATE").map_err(err)?;
        // a journal written by a newer glidepath is left as it is
        match Self::schema_version(&conn) {
            Ok(found) if found > SCHEMA_VERSION => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(JournalError::NewerSchema {
                    location: path.display().to_string(),
                    found,
                    known: SCHEMA_VERSION,
                });
            }
            Ok(_) => {}
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(err(e));
            }
        }
        let setup = conn
            .execute_batch(SCHEMA)
            .and_then(|_| Self::migrate(&conn))
            .and_then(|_| conn.pragma_update(None, "user_version", SCHEMA_VERSION));
        match setup {
            Ok(()) => conn.execute_batch("COMMIT").map_err(err)?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(err(e));
            }
        }
        Ok(SqliteJournal {
            conn: std::mem::ManuallyDrop::new(conn),
            abandoned: Default::default(),
            shm: {
                use std::os::unix::ffi::OsStrExt;
                let mut b = path.as_os_str().as_bytes().to_vec();
                b.extend_from_slice(b"-shm");
                // a path never holds a NUL byte
                std::ffi::CString::new(b).unwrap_or_default()
            },
            path: path.to_path_buf(),
            fence: None,
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
        if !has("leases", "epoch")? {
            conn.execute_batch("ALTER TABLE leases ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0")?;
        }
        if !has("leases", "ttl_ms")? {
            conn.execute_batch(
                "ALTER TABLE leases ADD COLUMN ttl_ms INTEGER NOT NULL DEFAULT 0;
                 ALTER TABLE leases ADD COLUMN token TEXT NOT NULL DEFAULT ''",
            )?;
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection, once the journal's files are known to be writable
    /// (see [`check_writable`]: in WAL mode even a read writes to the
    /// memory-mapped index).
    fn conn(&self) -> Result<&Connection, JournalError> {
        self.check()?;
        Ok(&self.conn)
    }

    fn check(&self) -> Result<(), JournalError> {
        check_writable(&self.shm).inspect_err(|_| self.abandon())
    }

    /// Run `write` in one IMMEDIATE transaction that first checks the fence:
    /// a holder that lost its lease writes nothing.
    fn fenced<T>(
        &mut self,
        write: impl FnOnce(&rusqlite::Transaction) -> rusqlite::Result<T>,
    ) -> Result<T, JournalError> {
        let path = self.path.clone();
        let fence = self.fence.clone();
        let err = |source| JournalError::Sqlite {
            path: path.clone(),
            source,
        };
        self.check()?;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        if let Some(f) = &fence {
            let now: Option<Lease> = tx
                .query_row(
                    &format!("SELECT {} FROM leases WHERE fleet = ?1", Self::LEASE_COLS),
                    params![f.fleet],
                    Self::row_to_lease,
                )
                .optional()
                .map_err(err)?;
            if !now
                .as_ref()
                .is_some_and(|l| l.run_id == f.run && l.epoch == f.epoch)
            {
                return Err(JournalError::Fenced {
                    fleet: f.fleet.clone(),
                    run: f.run.clone(),
                    epoch: f.epoch,
                    taken_by: now.map(|l| {
                        format!(
                            "run {} (pid {} on {}, epoch {})",
                            l.run_id, l.pid, l.host, l.epoch
                        )
                    }),
                });
            }
        }
        let out = write(&tx).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(out)
    }

    fn err(&self, source: rusqlite::Error) -> JournalError {
        JournalError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn insert_event(conn: &Connection, run: &str, event: &Event) -> rusqlite::Result<i64> {
        let mut data = serde_json::to_string(event).expect("events serialize");
        if data.len() > MAX_EVENT {
            // a node or a metrics server answered with megabytes: keep the
            // event, bounded, with its texts clipped
            data = serde_json::to_string(&clip_event(event)).expect("events serialize");
        }
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

    fn row_to_run(r: &rusqlite::Row) -> rusqlite::Result<RunRecord> {
        Ok(RunRecord {
            id: r.get(0)?,
            fleet: r.get(1)?,
            plan_path: r.get(2)?,
            plan_hash: r.get(3)?,
            plan_source: r.get(4)?,
            version: r.get(5)?,
            status: parse_col(r, 6)?,
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
            epoch: r.get(6)?,
            ttl_ms: r.get::<_, i64>(7)?.max(0) as u64,
            token: r.get(8)?,
        })
    }

    const LEASE_COLS: &'static str =
        "fleet, run_id, pid, host, since, heartbeat, epoch, ttl_ms, token";

    const RUN_COLS: &'static str =
        "id, fleet, plan_path, plan_hash, plan_source, version, status, reason, created_at, updated_at";
}

#[cfg(test)]
mod tests;
