//! `Store` for the PostgreSQL journal. Every write of a lease holder is one
//! transaction that first reads the fleet's lease row `FOR SHARE`: a
//! takeover (which updates that row) waits for it, and once the row carries
//! another epoch the write affects nothing and fails with
//! [`JournalError::Fenced`]. Every write may be retried after a lost answer
//! without doubling anything (an event names its sequence number).

use super::*;
use tokio_postgres::{Row, Transaction};

pub(super) const RUN_COLS: &str =
    "id, fleet, plan_path, plan_hash, plan_source, version, status, reason, created_at, updated_at";

fn corrupt(location: &str, run: &str, seq: i64, message: String) -> JournalError {
    JournalError::Corrupt {
        path: PathBuf::from(location),
        run: run.to_string(),
        seq,
        message,
    }
}

pub(super) fn unknown(location: &str, e: UnknownName) -> Fail {
    Fail::Journal(JournalError::Database {
        location: location.to_string(),
        message: e.to_string(),
    })
}

pub(super) fn row_to_run(r: &Row, location: &str) -> Result<RunRecord, Fail> {
    Ok(RunRecord {
        id: r.try_get(0)?,
        fleet: r.try_get(1)?,
        plan_path: r.try_get(2)?,
        plan_hash: r.try_get(3)?,
        plan_source: r.try_get(4)?,
        version: r.try_get(5)?,
        status: r
            .try_get::<_, String>(6)?
            .parse()
            .map_err(|e| unknown(location, e))?,
        reason: r.try_get(7)?,
        created_at: r.try_get::<_, i64>(8)? as u64,
        updated_at: r.try_get::<_, i64>(9)? as u64,
    })
}

/// The lease columns, with the holder's ages by the server's clock.
pub(super) const LEASE_COLS: &str = "fleet, run_id, pid, host, epoch,
        (extract(epoch from clock_timestamp()) * 1000)::bigint - since,
        (extract(epoch from clock_timestamp()) * 1000)::bigint - heartbeat,
        ttl_ms, token";

/// The fleet's lease row.
const LEASE_SELECT: &str = "SELECT fleet, run_id, pid, host, epoch,
        (extract(epoch from clock_timestamp()) * 1000)::bigint - since,
        (extract(epoch from clock_timestamp()) * 1000)::bigint - heartbeat,
        ttl_ms, token
    FROM glidepath.leases WHERE fleet = $1";

/// A lease row, its times put on this machine's clock (the server measured
/// the ages), or `None` when the fleet has no holder.
pub(super) fn row_to_lease(r: &Row) -> Result<Option<Lease>, Fail> {
    let Some(run_id) = r.try_get::<_, Option<String>>(1)? else {
        return Ok(None);
    };
    let now = now_ms();
    let age = |i: usize| -> Result<u64, Fail> {
        Ok(now.saturating_sub(r.try_get::<_, i64>(i)?.max(0) as u64))
    };
    Ok(Some(Lease {
        fleet: r.try_get(0)?,
        run_id,
        pid: r.try_get::<_, i64>(2)? as u32,
        host: r.try_get(3)?,
        epoch: r.try_get(4)?,
        since: age(5)?,
        heartbeat: age(6)?,
        ttl_ms: r.try_get::<_, i64>(7)?.max(0) as u64,
        token: r.try_get(8)?,
    }))
}

fn holder_text(l: &Lease) -> String {
    format!(
        "run {} (pid {} on {}, epoch {})",
        l.run_id, l.pid, l.host, l.epoch
    )
}

/// The first statement of a transaction that locks the lease row (a
/// holder's write, a takeover): should this process stop answering in the
/// middle of it (stopped, partitioned, its machine suspended), the server
/// ends the session after 2 s idle in the transaction, releasing the row;
/// otherwise the lock would outlive the TTL and block every takeover. (A
/// live process never idles in these transactions: each is one call.)
const IDLE_LIMIT: &str = "SET LOCAL idle_in_transaction_session_timeout = '2s'";

/// The fence check of a holder's write, inside its transaction: the lease
/// row, locked `FOR SHARE` until the transaction ends, must still be ours.
async fn check_fence(tx: &Transaction<'_>, f: &Fence) -> Result<(), Fail> {
    tx.batch_execute(IDLE_LIMIT).await?;
    let now = tx
        .query_opt(&format!("{LEASE_SELECT} FOR SHARE"), &[&f.fleet])
        .await?;
    let lease = match now {
        Some(r) => row_to_lease(&r)?,
        None => None,
    };
    if lease
        .as_ref()
        .is_some_and(|l| l.run_id == f.run && l.epoch == f.epoch)
    {
        return Ok(());
    }
    Err(Fail::Journal(JournalError::Fenced {
        fleet: f.fleet.clone(),
        run: f.run.clone(),
        epoch: f.epoch,
        taken_by: lease.as_ref().map(holder_text),
    }))
}

/// The row an event is journaled as: its JSON (clipped when oversized),
/// and the columns `history` and the dashboards query.
struct EventRow {
    data: String,
    at: i64,
    kind: String,
    node: Option<String>,
    step: Option<String>,
}

impl EventRow {
    fn of(event: &Event) -> EventRow {
        let mut data = serde_json::to_string(event).expect("events serialize");
        if data.len() > MAX_EVENT {
            data = serde_json::to_string(&clip_event(event)).expect("events serialize");
        }
        let (node, step) = match event {
            Event::Intent { step, .. } | Event::Outcome { step, .. } => {
                (step.node.clone(), Some(step.kind.as_str().to_string()))
            }
            _ => (None, None),
        };
        EventRow {
            data,
            at: event.at() as i64,
            kind: event.kind().to_string(),
            node,
            step,
        }
    }
}

/// Insert the event at `seq`. If a row is already there, it is ours from
/// an attempt whose answer was lost (same text: done) or someone else's
/// (an error: the caller reloads its sequence).
async fn insert_event(
    tx: &Transaction<'_>,
    run: &str,
    seq: i64,
    e: &EventRow,
    location: &str,
) -> Result<(), Fail> {
    let n = tx
        .execute(
            "INSERT INTO glidepath.events (run_id, seq, at, kind, node, step, data)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (run_id, seq) DO NOTHING",
            &[&run, &seq, &e.at, &e.kind, &e.node, &e.step, &e.data],
        )
        .await?;
    if n == 0 {
        let there: String = tx
            .query_one(
                "SELECT data FROM glidepath.events WHERE run_id = $1 AND seq = $2",
                &[&run, &seq],
            )
            .await?
            .get(0);
        if there != e.data {
            return Err(Fail::Journal(JournalError::Database {
                location: location.to_string(),
                message: format!("event {seq} of run {run} was written by another process"),
            }));
        }
    }
    Ok(())
}

impl PgJournal {
    /// The next sequence number of `run`, from the database.
    fn load_next_seq(&self, run: &str) -> Result<i64, JournalError> {
        let run = run.to_string();
        self.sql(async move |c| {
            Ok(c.query_one(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM glidepath.events WHERE run_id = $1",
                &[&run],
            )
            .await?
            .get::<_, i64>(0))
        })
    }

    /// Append `event` (and mark `command` applied in the same transaction).
    fn append_event(
        &mut self,
        run: &str,
        event: &Event,
        command: Option<i64>,
    ) -> Result<i64, JournalError> {
        let row = std::sync::Arc::new(EventRow::of(event));
        for attempt in 0..2 {
            let seq = match self.next_seq.get(run) {
                Some(s) => *s,
                None => self.load_next_seq(run)?,
            };
            let (fence, run_s, row, location) = (
                self.fence.clone(),
                run.to_string(),
                row.clone(),
                self.location_str(),
            );
            let out = self.sql(async move |c| {
                let tx = c.transaction().await?;
                if let Some(f) = &fence {
                    check_fence(&tx, f).await?;
                }
                insert_event(&tx, &run_s, seq, &row, &location).await?;
                if let Some(id) = command {
                    tx.execute(
                        "UPDATE glidepath.commands SET consumed_at = $2, outcome = 'applied' WHERE id = $1",
                        &[&id, &(now_ms() as i64)],
                    )
                    .await?;
                    tx.execute("SELECT pg_notify($1, 'ack')", &[&CHANNEL])
                        .await?;
                }
                tx.commit().await?;
                Ok(seq)
            });
            match out {
                Ok(seq) => {
                    self.next_seq.insert(run.to_string(), seq + 1);
                    return Ok(seq);
                }
                Err(JournalError::Database { .. }) if attempt == 0 && self.fence.is_none() => {
                    // another writer (no lease held here): take the next number
                    self.next_seq.remove(run);
                }
                Err(e) => {
                    if matches!(e, JournalError::Database { .. }) {
                        self.next_seq.remove(run);
                    }
                    return Err(e);
                }
            }
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// A fenced write: `f` in a transaction that first checks the fence.
    fn fenced_exec(
        &self,
        sql: &'static str,
        params: Vec<Param>,
        notify: bool,
    ) -> Result<u64, JournalError> {
        let fence = self.fence.clone();
        self.sql(async move |c| {
            let tx = c.transaction().await?;
            if let Some(f) = &fence {
                check_fence(&tx, f).await?;
            }
            let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                params.iter().map(Param::as_sql).collect();
            let n = tx.execute(sql, &refs).await?;
            if notify {
                tx.execute("SELECT pg_notify($1, 'ack')", &[&CHANNEL])
                    .await?;
            }
            tx.commit().await?;
            Ok(n)
        })
    }

    fn read_lease(&self, fleet: &str) -> Result<Option<Lease>, JournalError> {
        let fleet = fleet.to_string();
        self.sql(
            async move |c| match c.query_opt(LEASE_SELECT, &[&fleet]).await? {
                Some(r) => row_to_lease(&r),
                None => Ok(None),
            },
        )
    }

    fn fenced_error(&self, fleet: &str, run: &str, epoch: i64) -> JournalError {
        JournalError::Fenced {
            fleet: fleet.to_string(),
            run: run.to_string(),
            epoch,
            taken_by: self
                .read_lease(fleet)
                .ok()
                .flatten()
                .map(|l| holder_text(&l)),
        }
    }
}

/// An owned query parameter (calls cross to the worker thread).
pub(crate) enum Param {
    Text(String),
    Int(i64),
}

impl Param {
    fn as_sql(&self) -> &(dyn tokio_postgres::types::ToSql + Sync) {
        match self {
            Param::Text(s) => s,
            Param::Int(i) => i,
        }
    }
}

impl Store for PgJournal {
    fn location(&self) -> String {
        self.location_str()
    }

    fn create_run(&self, r: &RunRecord) -> Result<(), JournalError> {
        let r = r.clone();
        let location = self.location_str();
        self.sql(async move |c| {
            let n = c
                .execute(
                    "INSERT INTO glidepath.runs (id, fleet, plan_path, plan_hash, plan_source, version, status, reason, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) ON CONFLICT (id) DO NOTHING",
                    &[&r.id, &r.fleet, &r.plan_path, &r.plan_hash, &r.plan_source, &r.version, &r.status.as_str(), &r.reason, &(r.created_at as i64)],
                )
                .await?;
            if n == 0 {
                // ours from an attempt whose answer was lost, or a clash
                let same = c
                    .query_opt(
                        "SELECT 1 FROM glidepath.runs WHERE id = $1 AND fleet = $2 AND plan_hash = $3",
                        &[&r.id, &r.fleet, &r.plan_hash],
                    )
                    .await?
                    .is_some();
                if !same {
                    return Err(Fail::Journal(JournalError::Database {
                        location,
                        message: format!("a run {} already exists", r.id),
                    }));
                }
            }
            Ok(())
        })
    }

    fn set_status(
        &mut self,
        run: &str,
        status: RunStatus,
        reason: &str,
    ) -> Result<(), JournalError> {
        self.fenced_exec(
            "UPDATE glidepath.runs SET status = $2, reason = $3, updated_at = $4 WHERE id = $1",
            vec![
                Param::Text(run.to_string()),
                Param::Text(status.as_str().to_string()),
                Param::Text(clip(reason, MAX_TEXT).into_owned()),
                Param::Int(now_ms() as i64),
            ],
            false,
        )?;
        Ok(())
    }

    fn append(&mut self, run: &str, event: &Event) -> Result<i64, JournalError> {
        self.append_event(run, event, None)
    }

    fn append_for_command(
        &mut self,
        run: &str,
        event: &Event,
        command: i64,
    ) -> Result<i64, JournalError> {
        self.append_event(run, event, Some(command))
    }

    fn events(&self, run: &str) -> Result<Vec<Event>, JournalError> {
        Ok(self
            .events_since(run, 0)?
            .into_iter()
            .map(|(_, e)| e)
            .collect())
    }

    fn events_since(&self, run: &str, after: i64) -> Result<Vec<(i64, Event)>, JournalError> {
        let run_s = run.to_string();
        let rows: Vec<(i64, String)> = self.sql(async move |c| {
            let rows = c
                .query(
                    "SELECT seq, data FROM glidepath.events WHERE run_id = $1 AND seq > $2 ORDER BY seq",
                    &[&run_s, &after],
                )
                .await?;
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect()
        })?;
        let location = self.location_str();
        rows.into_iter()
            .map(|(seq, data)| {
                serde_json::from_str(&data)
                    .map(|ev| (seq, ev))
                    .map_err(|e| corrupt(&location, run, seq, e.to_string()))
            })
            .collect()
    }

    fn run(&self, id: &str) -> Result<RunRecord, JournalError> {
        let (id_s, location) = (id.to_string(), self.location_str());
        self.sql(async move |c| {
            match c
                .query_opt(
                    &format!("SELECT {RUN_COLS} FROM glidepath.runs WHERE id = $1"),
                    &[&id_s],
                )
                .await?
            {
                Some(r) => row_to_run(&r, &location),
                None => Err(Fail::Journal(JournalError::NoSuchRun(id_s))),
            }
        })
    }

    fn runs(&self, limit: usize) -> Result<Vec<RunRecord>, JournalError> {
        let location = self.location_str();
        let limit = limit.min(i64::MAX as usize) as i64;
        self.sql(async move |c| {
            let rows = c
                .query(
                    &format!(
                        "SELECT {RUN_COLS} FROM glidepath.runs ORDER BY created_at DESC, id DESC LIMIT $1"
                    ),
                    &[&limit],
                )
                .await?;
            rows.iter().map(|r| row_to_run(r, &location)).collect()
        })
    }

    fn lease(&self, fleet: &str) -> Result<Option<Lease>, JournalError> {
        self.read_lease(fleet)
    }

    /// Take the fleet's lease: the lease row is locked `FOR UPDATE`, judged
    /// (free, ours, or held by a dead holder when `take_over_dead`), and
    /// given a new epoch; the old holder's fenced writes fail from then on.
    fn acquire_lease(
        &mut self,
        fleet: &str,
        run: &str,
        take_over_dead: bool,
    ) -> Result<(), JournalError> {
        let (me, host, ttl, token) = (
            std::process::id() as i64,
            hostname(),
            lease_ttl_ms() as i64,
            process_token(),
        );
        let (fleet_s, run_s) = (fleet.to_string(), run.to_string());
        let epoch = self.sql(async move |c| {
            let tx = c.transaction().await?;
            tx.batch_execute(IDLE_LIMIT).await?;
            tx.execute(
                "INSERT INTO glidepath.leases (fleet) VALUES ($1) ON CONFLICT (fleet) DO NOTHING",
                &[&fleet_s],
            )
            .await?;
            let row = tx
                .query_one(&format!("{LEASE_SELECT} FOR UPDATE"), &[&fleet_s])
                .await?;
            if let Some(l) = row_to_lease(&row)? {
                // this very process: a retry after a lost answer, or a
                // second run of one campaign
                let mine = l.is_mine();
                let now = now_ms();
                if !(mine || l.holder_dead(now) && take_over_dead) {
                    return Err(Fail::Journal(l.locked(now)));
                }
            }
            let epoch: i64 = tx
                .query_one(
                    &format!(
                        "UPDATE glidepath.leases SET run_id = $2, pid = $3, host = $4,
                            since = {NOW_MS}, heartbeat = {NOW_MS}, epoch = epoch + 1,
                            ttl_ms = $5, token = $6
                         WHERE fleet = $1 RETURNING epoch"
                    ),
                    &[&fleet_s, &run_s, &me, &host, &ttl, &token],
                )
                .await?
                .get(0);
            tx.commit().await?;
            Ok(epoch)
        })?;
        self.fence = Some(Fence {
            fleet: fleet.to_string(),
            run: run.to_string(),
            epoch,
        });
        Ok(())
    }

    fn heartbeat(&mut self, fleet: &str, run: &str) -> Result<(), JournalError> {
        let epoch = self.epoch().unwrap_or(0);
        let (fleet_s, run_s) = (fleet.to_string(), run.to_string());
        let n = self.sql(async move |c| {
            Ok(c.execute(
                &format!(
                    "UPDATE glidepath.leases SET heartbeat = {NOW_MS}
                     WHERE fleet = $1 AND run_id = $2 AND epoch = $3"
                ),
                &[&fleet_s, &run_s, &epoch],
            )
            .await?)
        })?;
        if n == 0 {
            return Err(self.fenced_error(fleet, run, epoch));
        }
        Ok(())
    }

    /// Give the lease up, keeping the row (and its epoch, which only grows).
    /// The update itself is conditional on the epoch, so that a retry after
    /// a lost answer finds it done rather than fenced.
    fn release_lease(&mut self, fleet: &str, run: &str) -> Result<(), JournalError> {
        let epoch = self.epoch();
        let (fleet_s, run_s, me, host) = (
            fleet.to_string(),
            run.to_string(),
            std::process::id() as i64,
            hostname(),
        );
        let n = self.sql(async move |c| {
            Ok(match epoch {
                Some(e) => {
                    c.execute(
                        "UPDATE glidepath.leases SET run_id = NULL, pid = 0, host = ''
                         WHERE fleet = $1 AND epoch = $3 AND (run_id = $2 OR run_id IS NULL)",
                        &[&fleet_s, &run_s, &e],
                    )
                    .await?
                }
                None => {
                    c.execute(
                        "UPDATE glidepath.leases SET run_id = NULL, pid = 0, host = ''
                         WHERE fleet = $1 AND run_id = $2 AND pid = $3 AND host = $4",
                        &[&fleet_s, &run_s, &me, &host],
                    )
                    .await?
                }
            })
        })?;
        if let (0, Some(e)) = (n, epoch) {
            return Err(self.fenced_error(fleet, run, e));
        }
        self.fence = None;
        Ok(())
    }

    fn epoch(&self) -> Option<i64> {
        self.fence.as_ref().map(|f| f.epoch)
    }

    /// Nothing to protect here (no memory map): later calls still work.
    fn abandon(&self) {}

    fn push_command(
        &self,
        run: &str,
        kind: CommandKind,
        reason: &str,
    ) -> Result<i64, JournalError> {
        let (run, kind, reason) = (
            run.to_string(),
            kind.as_str(),
            clip(reason, MAX_TEXT).into_owned(),
        );
        self.sql(async move |c| {
            let tx = c.transaction().await?;
            let id: i64 = tx
                .query_one(
                    "INSERT INTO glidepath.commands (run_id, kind, reason, at) VALUES ($1, $2, $3, $4) RETURNING id",
                    &[&run, &kind, &reason, &(now_ms() as i64)],
                )
                .await?
                .get(0);
            tx.execute("SELECT pg_notify($1, 'command')", &[&CHANNEL])
                .await?;
            tx.commit().await?;
            Ok(id)
        })
    }

    fn pending_commands(&self, run: &str) -> Result<Vec<Command>, JournalError> {
        let (run, location) = (run.to_string(), self.location_str());
        self.sql(async move |c| {
            let rows = c
                .query(
                    "SELECT id, kind, reason, at FROM glidepath.commands
                     WHERE run_id = $1 AND consumed_at IS NULL ORDER BY id",
                    &[&run],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(Command {
                        id: r.try_get(0)?,
                        kind: r
                            .try_get::<_, String>(1)?
                            .parse()
                            .map_err(|e| unknown(&location, e))?,
                        reason: r.try_get(2)?,
                        at: r.try_get::<_, i64>(3)? as u64,
                    })
                })
                .collect()
        })
    }

    fn consume_command(&mut self, id: i64) -> Result<(), JournalError> {
        self.refuse_command(id, "ignored")
    }

    fn refuse_command(&mut self, id: i64, why: &str) -> Result<(), JournalError> {
        self.fenced_exec(
            "UPDATE glidepath.commands SET consumed_at = $2, outcome = $3 WHERE id = $1",
            vec![
                Param::Int(id),
                Param::Int(now_ms() as i64),
                Param::Text(clip(why, MAX_TEXT).into_owned()),
            ],
            true,
        )?;
        Ok(())
    }

    fn command_outcome(&self, id: i64) -> Result<Option<String>, JournalError> {
        self.sql(async move |c| {
            let row = c
                .query_opt(
                    "SELECT consumed_at, COALESCE(outcome, 'applied') FROM glidepath.commands WHERE id = $1",
                    &[&id],
                )
                .await?;
            Ok(match row {
                Some(r) => r
                    .try_get::<_, Option<i64>>(0)?
                    .map(|_| r.get::<_, String>(1)),
                None => None,
            })
        })
    }

    fn changes(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        self.changes.get_or_init(|| self.start_listener()).clone()
    }

    fn create_campaign(&self, c: &CampaignRecord) -> Result<(), JournalError> {
        self.insert_campaign(c)
    }

    fn campaign(&self, id: &str) -> Result<CampaignRecord, JournalError> {
        self.read_campaign(id)
    }

    fn campaign_of_run(&self, run: &str) -> Result<Option<CampaignRecord>, JournalError> {
        self.find_campaign_of_run(run)
    }

    fn claim_campaign(&self, id: &str) -> Result<(), JournalError> {
        self.take_campaign(id)
    }

    fn set_campaign_status(
        &self,
        id: &str,
        status: CampaignStatus,
        reason: &str,
    ) -> Result<(), JournalError> {
        self.update_campaign(id, status, reason)
    }

    fn set_stage(
        &self,
        id: &str,
        index: usize,
        status: StageStatus,
        run: Option<&str>,
        detail: &str,
    ) -> Result<(), JournalError> {
        self.update_stage(id, index, status, run, detail)
    }

    // `journal export/import/info`: in dump.rs
    fn export_run(&self, id: &str) -> Result<crate::journal::dump::RunDump, JournalError> {
        self.dump_run(id)
    }

    fn import_run(
        &mut self,
        run: &crate::journal::dump::RunDump,
    ) -> Result<crate::journal::dump::Imported, JournalError> {
        self.load_run(run)
    }

    fn campaign_ids(&self) -> Result<Vec<String>, JournalError> {
        self.list_campaigns()
    }

    fn export_campaign(
        &self,
        id: &str,
    ) -> Result<crate::journal::dump::CampaignDump, JournalError> {
        self.dump_campaign(id)
    }

    fn import_campaign(
        &mut self,
        c: &crate::journal::dump::CampaignDump,
    ) -> Result<crate::journal::dump::Imported, JournalError> {
        self.load_campaign(c)
    }

    fn info(&self) -> Result<crate::journal::dump::JournalInfo, JournalError> {
        self.describe()
    }
}
