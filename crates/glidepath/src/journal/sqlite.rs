//! The embedded journal: one SQLite database in WAL mode with
//! `synchronous = FULL`, so a `kill -9` at any moment leaves it consistent
//! (an event is either fully there or absent). Every write of a lease holder
//! is one IMMEDIATE transaction that first checks the fence.

use super::*;
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
        let setup = conn
            .execute_batch(SCHEMA)
            .and_then(|_| Self::migrate(&conn));
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
        })
    }

    const LEASE_COLS: &'static str = "fleet, run_id, pid, host, since, heartbeat, epoch";

    const RUN_COLS: &'static str =
        "id, fleet, plan_path, plan_hash, plan_source, version, status, reason, created_at, updated_at";
}

impl Store for SqliteJournal {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn run(&self, id: &str) -> Result<RunRecord, JournalError> {
        self.conn()?
            .query_row(
                &format!("SELECT {} FROM runs WHERE id = ?1", Self::RUN_COLS),
                params![id],
                Self::row_to_run,
            )
            .optional()
            .map_err(|e| self.err(e))?
            .ok_or_else(|| JournalError::NoSuchRun(id.to_string()))
    }

    fn events_since(&self, run: &str, after: i64) -> Result<Vec<(i64, Event)>, JournalError> {
        let mut stmt = self
            .conn()?
            .prepare("SELECT seq, data FROM events WHERE run_id = ?1 AND seq > ?2 ORDER BY seq")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![run, after], |r| {
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
            out.push((seq, ev));
        }
        Ok(out)
    }

    /// Never touch this journal's files again, not even to close it (the
    /// process ends soon after; the kernel closes the descriptors).
    fn abandon(&self) {
        self.abandoned
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// The lease epoch this handle writes under, once it holds a lease.
    fn epoch(&self) -> Option<i64> {
        self.fence.as_ref().map(|f| f.epoch)
    }

    fn create_run(&self, r: &RunRecord) -> Result<(), JournalError> {
        self.conn()?
            .execute(
                "INSERT INTO runs (id, fleet, plan_path, plan_hash, plan_source, version, status, reason, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
                params![r.id, r.fleet, r.plan_path, r.plan_hash, r.plan_source, r.version, r.status.as_str(), r.reason, r.created_at as i64],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn set_status(
        &mut self,
        run: &str,
        status: RunStatus,
        reason: &str,
    ) -> Result<(), JournalError> {
        let reason = clip(reason, MAX_TEXT);
        let status = status.as_str();
        self.fenced(|tx| {
            tx.execute(
                "UPDATE runs SET status = ?2, reason = ?3, updated_at = ?4 WHERE id = ?1",
                params![run, status, reason, now_ms() as i64],
            )
        })?;
        Ok(())
    }

    /// Append the event an operator command produced and mark the command
    /// consumed, atomically: a crash never applies a command twice.
    fn append_for_command(
        &mut self,
        run: &str,
        event: &Event,
        command: i64,
    ) -> Result<i64, JournalError> {
        self.fenced(|tx| {
            let seq = Self::insert_event(tx, run, event)?;
            tx.execute(
                "UPDATE commands SET consumed_at = ?2, outcome = 'applied' WHERE id = ?1",
                params![command, now_ms() as i64],
            )?;
            Ok(seq)
        })
    }

    /// Append an event; returns its sequence number.
    fn append(&mut self, run: &str, event: &Event) -> Result<i64, JournalError> {
        self.fenced(|tx| Self::insert_event(tx, run, event))
    }

    fn events(&self, run: &str) -> Result<Vec<Event>, JournalError> {
        Ok(self
            .events_since(run, 0)?
            .into_iter()
            .map(|(_, e)| e)
            .collect())
    }

    /// Runs, newest first.
    fn runs(&self, limit: usize) -> Result<Vec<RunRecord>, JournalError> {
        let mut stmt = self
            .conn()?
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

    fn lease(&self, fleet: &str) -> Result<Option<Lease>, JournalError> {
        self.conn()?
            .query_row(
                &format!("SELECT {} FROM leases WHERE fleet = ?1", Self::LEASE_COLS),
                params![fleet],
                Self::row_to_lease,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Take the fleet's lease for `run`. A lease held by a live process is
    /// refused; one held by a dead process is taken over only when
    /// `take_over_dead` (resume, abort, rollback of that run) is set.
    fn acquire_lease(
        &mut self,
        fleet: &str,
        run: &str,
        take_over_dead: bool,
    ) -> Result<(), JournalError> {
        let me = std::process::id();
        let host = hostname();
        let now = now_ms();
        self.check()?;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| JournalError::Sqlite {
                path: self.path.clone(),
                source: e,
            })?;
        let existing: Option<Lease> = tx
            .query_row(
                &format!("SELECT {} FROM leases WHERE fleet = ?1", Self::LEASE_COLS),
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
        // every acquisition (a takeover too) gets a new epoch; the old
        // holder's fenced writes fail from now on
        let sql_err = |e| JournalError::Sqlite {
            path: self.path.clone(),
            source: e,
        };
        let epoch: i64 = tx
            .query_row(
                "INSERT INTO fences (fleet, epoch) VALUES (?1, 1)
                 ON CONFLICT(fleet) DO UPDATE SET epoch = epoch + 1 RETURNING epoch",
                params![fleet],
                |r| r.get(0),
            )
            .map_err(sql_err)?;
        tx.execute(
            "INSERT INTO leases (fleet, run_id, pid, host, since, heartbeat, epoch) VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6)
             ON CONFLICT(fleet) DO UPDATE SET run_id = ?2, pid = ?3, host = ?4, since = ?5, heartbeat = ?5, epoch = ?6",
            params![fleet, run, me as i64, host, now as i64, epoch],
        )
        .map_err(sql_err)?;
        tx.commit().map_err(sql_err)?;
        self.fence = Some(Fence {
            fleet: fleet.to_string(),
            run: run.to_string(),
            epoch,
        });
        Ok(())
    }

    /// Refresh the lease's heartbeat (fenced: a holder that lost the lease
    /// gets [`JournalError::Fenced`]).
    fn heartbeat(&mut self, fleet: &str, run: &str) -> Result<(), JournalError> {
        let epoch = self.epoch().unwrap_or(0);
        self.fenced(|tx| {
            tx.execute(
                "UPDATE leases SET heartbeat = ?3 WHERE fleet = ?1 AND run_id = ?2 AND epoch = ?4",
                params![fleet, run, now_ms() as i64, epoch],
            )
        })?;
        Ok(())
    }

    fn release_lease(&mut self, fleet: &str, run: &str) -> Result<(), JournalError> {
        let epoch = self.epoch();
        self.fenced(|tx| match epoch {
            Some(e) => tx.execute(
                "DELETE FROM leases WHERE fleet = ?1 AND run_id = ?2 AND epoch = ?3",
                params![fleet, run, e],
            ),
            None => tx.execute(
                "DELETE FROM leases WHERE fleet = ?1 AND run_id = ?2 AND pid = ?3",
                params![fleet, run, std::process::id() as i64],
            ),
        })?;
        self.fence = None;
        Ok(())
    }

    /// Queue an operator command; returns its id.
    fn push_command(
        &self,
        run: &str,
        kind: CommandKind,
        reason: &str,
    ) -> Result<i64, JournalError> {
        self.conn()?
            .execute(
                "INSERT INTO commands (run_id, kind, reason, at) VALUES (?1, ?2, ?3, ?4)",
                params![run, kind.as_str(), reason, now_ms() as i64],
            )
            .map_err(|e| self.err(e))?;
        Ok(self.conn()?.last_insert_rowid())
    }

    /// Commands not yet acted on, oldest first. Call [`Journal::consume_command`]
    /// after journaling the event each one produced.
    fn pending_commands(&self, run: &str) -> Result<Vec<Command>, JournalError> {
        let mut stmt = self.conn()?
            .prepare("SELECT id, kind, reason, at FROM commands WHERE run_id = ?1 AND consumed_at IS NULL ORDER BY id")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![run], |r| {
                Ok(Command {
                    id: r.get(0)?,
                    kind: parse_col(r, 1)?,
                    reason: r.get(2)?,
                    at: r.get::<_, i64>(3)? as u64,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    fn consume_command(&mut self, id: i64) -> Result<(), JournalError> {
        self.refuse_command(id, "ignored")
    }

    /// Mark a command consumed without acting on it, saying why (the
    /// sender prints it and exits non-zero).
    fn refuse_command(&mut self, id: i64, why: &str) -> Result<(), JournalError> {
        self.fenced(|tx| {
            tx.execute(
                "UPDATE commands SET consumed_at = ?2, outcome = ?3 WHERE id = ?1",
                params![id, now_ms() as i64, why],
            )
        })?;
        Ok(())
    }

    /// What became of a command: `None` while it is pending, else
    /// `Some("applied")` or the reason it was refused.
    fn command_outcome(&self, id: i64) -> Result<Option<String>, JournalError> {
        self.conn()?
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

impl Drop for SqliteJournal {
    fn drop(&mut self) {
        if !self.abandoned.load(std::sync::atomic::Ordering::SeqCst) {
            // SAFETY: dropped once, here, and never used after.
            unsafe { std::mem::ManuallyDrop::drop(&mut self.conn) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{bounded, RunStatus, Store, MAX_EVENT, MAX_TEXT};
    use glidepath_core::{Step, StepKind, StepOutcome};

    fn run_r1() -> RunRecord {
        RunRecord {
            id: "r1".into(),
            fleet: "f".into(),
            plan_path: "p".into(),
            plan_hash: "h".into(),
            plan_source: String::new(),
            version: "2".into(),
            status: RunStatus::Running,
            reason: String::new(),
            created_at: 1,
            updated_at: 1,
        }
    }

    fn failed(detail: String) -> Event {
        Event::Outcome {
            at: 1,
            step: Step {
                kind: StepKind::CheckHealth,
                node: Some("n1".into()),
                version: Some("2".into()),
                reason: "probe".into(),
            },
            outcome: StepOutcome {
                ok: false,
                detail,
                ..Default::default()
            },
        }
    }

    #[test]
    fn a_huge_answer_is_journaled_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(&dir.path().join("j.db")).unwrap();
        j.create_run(&run_r1()).unwrap();
        let ev = bounded(failed("x".repeat(20 << 20)));
        j.append("r1", &ev).unwrap();
        let size: i64 = j
            .conn
            .query_row("SELECT length(data) FROM events", [], |r| r.get(0))
            .unwrap();
        assert!(size < MAX_EVENT as i64, "{size} bytes journaled");
        let back = j.events("r1").unwrap();
        let Event::Outcome { outcome, .. } = &back[0] else {
            panic!("{back:?}")
        };
        assert!(outcome.detail.ends_with("more bytes not journaled]"));
        assert_eq!(back[0], ev, "what is applied is what is journaled");
        // a small event is untouched
        let small = failed("fine".into());
        assert_eq!(bounded(small.clone()), small);
        // the run's reason is bounded too
        j.set_status("r1", RunStatus::RollbackFailed, &"y".repeat(1 << 20))
            .unwrap();
        assert!(j.run("r1").unwrap().reason.len() < 2 * MAX_TEXT);
    }

    #[test]
    fn a_takeover_fences_the_old_handle() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let mut a = Journal::open(&path).unwrap();
        let mut b = Journal::open(&path).unwrap();
        {
            a.create_run(&run_r1()).unwrap();
        }
        a.acquire_lease("f", "r1", false).unwrap();
        a.append("r1", &failed("a1".into())).unwrap();
        // same pid here, so `mine` lets b take it: a new epoch all the same
        b.acquire_lease("f", "r1", true).unwrap();
        assert!(b.epoch() > a.epoch());
        let e = a.append("r1", &failed("a2".into())).unwrap_err();
        assert!(matches!(e, JournalError::Fenced { .. }), "{e}");
        assert!(matches!(
            a.heartbeat("f", "r1").unwrap_err(),
            JournalError::Fenced { .. }
        ));
        assert!(matches!(
            a.set_status("r1", RunStatus::Succeeded, "").unwrap_err(),
            JournalError::Fenced { .. }
        ));
        assert!(a.release_lease("f", "r1").is_err(), "cannot drop b's lease");
        b.append("r1", &failed("b1".into())).unwrap();
        assert_eq!(b.events("r1").unwrap().len(), 2);
        assert_eq!(b.run("r1").unwrap().status, "running");
    }

    #[test]
    fn many_processes_may_open_a_fresh_journal_at_once() {
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("j.db");
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let p = path.clone();
                    std::thread::spawn(move || Journal::open(&p).map(|_| ()))
                })
                .collect();
            for h in handles {
                h.join().unwrap().unwrap();
            }
        }
    }
}
