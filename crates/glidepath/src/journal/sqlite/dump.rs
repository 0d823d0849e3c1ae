//! Export and import of runs and campaigns ([`crate::journal::dump`]) and
//! `journal info`, for the SQLite journal. Called from `store.rs`.

use super::*;
use crate::journal::dump::{self, CampaignDump, CommandRow, EventRow, Imported, RunDump};

impl SqliteJournal {
    /// The run's rows, as [`RunDump`], if it is there.
    fn read_run_dump(conn: &Connection, id: &str) -> rusqlite::Result<Option<RunDump>> {
        let Some(r) = conn
            .query_row(
                &format!("SELECT {} FROM runs WHERE id = ?1", Self::RUN_COLS),
                params![id],
                Self::row_to_run,
            )
            .optional()?
        else {
            return Ok(None);
        };
        let mut st = conn.prepare(
            "SELECT seq, at, kind, node, step, data FROM events WHERE run_id = ?1 ORDER BY seq",
        )?;
        let events = st
            .query_map(params![id], |r| {
                Ok(EventRow {
                    seq: r.get(0)?,
                    at: r.get::<_, i64>(1)? as u64,
                    kind: r.get(2)?,
                    node: r.get(3)?,
                    step: r.get(4)?,
                    data: r.get(5)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        let mut st = conn.prepare(
            "SELECT kind, reason, at, consumed_at, outcome FROM commands WHERE run_id = ?1 ORDER BY id",
        )?;
        let commands = st
            .query_map(params![id], |r| {
                Ok(CommandRow {
                    kind: parse_col(r, 0)?,
                    reason: r.get(1)?,
                    at: r.get::<_, i64>(2)? as u64,
                    consumed_at: r.get::<_, Option<i64>>(3)?.map(|v| v as u64),
                    outcome: r.get(4)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(Some(RunDump::of(r, events, commands)))
    }

    fn insert_run_dump(tx: &rusqlite::Transaction, d: &RunDump) -> rusqlite::Result<()> {
        tx.execute(
            &format!(
                "INSERT INTO runs ({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                Self::RUN_COLS
            ),
            params![
                d.id,
                d.fleet,
                d.plan_path,
                d.plan_hash,
                d.plan_source,
                d.version,
                d.status.as_str(),
                d.reason,
                d.created_at as i64,
                d.updated_at as i64
            ],
        )?;
        let mut st = tx.prepare(
            "INSERT INTO events (run_id, seq, at, kind, node, step, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for e in &d.events {
            st.execute(params![
                d.id,
                e.seq,
                e.at as i64,
                e.kind,
                e.node,
                e.step,
                e.data
            ])?;
        }
        let mut st = tx.prepare(
            "INSERT INTO commands (run_id, kind, reason, at, consumed_at, outcome) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for c in &d.commands {
            st.execute(params![
                d.id,
                c.kind.as_str(),
                c.reason,
                c.at as i64,
                c.consumed_at.map(|v| v as i64),
                c.outcome
            ])?;
        }
        Ok(())
    }

    pub(super) fn dump_run(&self, id: &str) -> Result<RunDump, JournalError> {
        let conn = self.conn()?;
        // one read transaction: the run, its events and its commands as of
        // one moment
        let tx = conn.unchecked_transaction().map_err(|e| self.err(e))?;
        let d = Self::read_run_dump(&tx, id).map_err(|e| self.err(e))?;
        tx.finish().map_err(|e| self.err(e))?;
        d.ok_or_else(|| JournalError::NoSuchRun(id.to_string()))
    }

    pub(super) fn load_run(&mut self, d: &RunDump) -> Result<Imported, JournalError> {
        let location = self.location();
        self.check()?;
        let path = self.path.clone();
        let err = |source| JournalError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        let existing = Self::read_run_dump(&tx, &d.id).map_err(err)?;
        if let Some(done) = dump::compare_run(existing, d, location)? {
            return Ok(done);
        }
        Self::insert_run_dump(&tx, d).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(Imported::Added)
    }

    pub(super) fn dump_campaign(&self, id: &str) -> Result<CampaignDump, JournalError> {
        let conn = self.conn()?;
        // the campaign and its stages as of one moment
        let tx = conn.unchecked_transaction().map_err(|e| self.err(e))?;
        let c = self.read_campaign(id)?;
        tx.finish().map_err(|e| self.err(e))?;
        Ok(c.into())
    }

    pub(super) fn list_campaigns(&self) -> Result<Vec<String>, JournalError> {
        let conn = self.conn()?;
        let mut st = conn
            .prepare("SELECT id FROM campaigns ORDER BY created_at, id")
            .map_err(|e| self.err(e))?;
        let ids = st
            .query_map([], |r| r.get(0))
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e));
        ids
    }

    pub(super) fn load_campaign(&mut self, c: &CampaignDump) -> Result<Imported, JournalError> {
        let location = self.location();
        let conn = self.conn()?;
        // IMMEDIATE: the comparison and the insert see the same journal
        let tx =
            rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)
                .map_err(|e| self.err(e))?;
        let existing = match self.read_campaign(&c.id) {
            Ok(e) => Some(CampaignDump::from(e)),
            Err(JournalError::NoSuchCampaign(_)) => None,
            Err(e) => return Err(e),
        };
        if let Some(done) = dump::compare_campaign(existing, c, location)? {
            return Ok(done);
        }
        // `insert_campaign` opens a savepoint-free transaction of its own:
        // write the rows here instead, in this one
        self.write_campaign(&tx, &CampaignRecord::from(c))
            .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(Imported::Added)
    }

    /// The schema version recorded in the file (`PRAGMA user_version`).
    pub(super) fn schema_version(conn: &Connection) -> rusqlite::Result<i64> {
        conn.query_row("PRAGMA user_version", [], |r| r.get(0))
    }

    pub(super) fn describe(&self) -> Result<dump::JournalInfo, JournalError> {
        let conn = self.conn()?;
        let count = |sql: &str| -> Result<u64, JournalError> {
            conn.query_row(sql, [], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
                .map_err(|e| self.err(e))
        };
        let mut st = conn
            .prepare(&format!(
                "SELECT {} FROM leases ORDER BY fleet",
                Self::LEASE_COLS
            ))
            .map_err(|e| self.err(e))?;
        let leases = st
            .query_map([], Self::row_to_lease)
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?;
        Ok(dump::JournalInfo {
            backend: "sqlite",
            location: self.location(),
            schema_version: Self::schema_version(conn).map_err(|e| self.err(e))?,
            known_schema_version: SCHEMA_VERSION,
            runs: count("SELECT COUNT(*) FROM runs")?,
            campaigns: count("SELECT COUNT(*) FROM campaigns")?,
            leases,
        })
    }
}
