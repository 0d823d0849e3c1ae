//! Export and import of runs and campaigns ([`crate::journal::dump`]) and
//! `journal info`, for the PostgreSQL journal. Called from `store.rs`.

use super::*;
use crate::journal::dump::{self, CampaignDump, CommandRow, EventRow, Imported, RunDump};
use tokio_postgres::GenericClient;

use store::{unknown as bad, RUN_COLS};

/// The run's rows, as [`RunDump`], if it is there.
async fn read_run<C: GenericClient + Sync>(
    c: &C,
    id: &str,
    location: &str,
) -> Result<Option<RunDump>, Fail> {
    let Some(r) = c
        .query_opt(
            &format!("SELECT {RUN_COLS} FROM glidepath.runs WHERE id = $1"),
            &[&id],
        )
        .await?
    else {
        return Ok(None);
    };
    let events = c
        .query(
            "SELECT seq, at, kind, node, step, data FROM glidepath.events WHERE run_id = $1 ORDER BY seq",
            &[&id],
        )
        .await?
        .iter()
        .map(|e| {
            Ok(EventRow {
                seq: e.try_get(0)?,
                at: e.try_get::<_, i64>(1)? as u64,
                kind: e.try_get(2)?,
                node: e.try_get(3)?,
                step: e.try_get(4)?,
                data: e.try_get(5)?,
            })
        })
        .collect::<Result<_, Fail>>()?;
    let commands = c
        .query(
            "SELECT kind, reason, at, consumed_at, outcome FROM glidepath.commands WHERE run_id = $1 ORDER BY id",
            &[&id],
        )
        .await?
        .iter()
        .map(|k| {
            Ok(CommandRow {
                kind: k
                    .try_get::<_, String>(0)?
                    .parse()
                    .map_err(|e| bad(location, e))?,
                reason: k.try_get(1)?,
                at: k.try_get::<_, i64>(2)? as u64,
                consumed_at: k.try_get::<_, Option<i64>>(3)?.map(|v| v as u64),
                outcome: k.try_get(4)?,
            })
        })
        .collect::<Result<_, Fail>>()?;
    Ok(Some(RunDump::of(
        store::row_to_run(&r, location)?,
        events,
        commands,
    )))
}

impl PgJournal {
    pub(super) fn dump_run(&self, id: &str) -> Result<RunDump, JournalError> {
        let (id, location) = (id.to_string(), self.location_str());
        self.sql(async move |c| {
            // one snapshot: the run, its events and its commands as of one moment
            let tx = c
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await?;
            let d = read_run(&tx, &id, &location).await?;
            tx.commit().await?;
            d.ok_or(Fail::Journal(JournalError::NoSuchRun(id)))
        })
    }

    pub(super) fn load_run(&mut self, d: &RunDump) -> Result<Imported, JournalError> {
        let (d, location) = (d.clone(), self.location_str());
        self.sql(async move |c| {
            let tx = c.transaction().await?;
            // a concurrent import of the same run waits here for the other
            // to end, then sees what it wrote
            let added = tx
                .execute(
                    &format!(
                        "INSERT INTO glidepath.runs ({RUN_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                         ON CONFLICT (id) DO NOTHING"
                    ),
                    &[
                        &d.id,
                        &d.fleet,
                        &d.plan_path,
                        &d.plan_hash,
                        &d.plan_source,
                        &d.version,
                        &d.status.as_str(),
                        &d.reason,
                        &(d.created_at as i64),
                        &(d.updated_at as i64),
                    ],
                )
                .await?;
            if added == 0 {
                let existing = read_run(&tx, &d.id, &location).await?;
                tx.rollback().await?;
                return match dump::compare_run(existing, &d, location.clone())? {
                    Some(done) => Ok(done),
                    // (runs are never deleted: its insert conflicted, so it is there)
                    None => Err(Fail::Journal(JournalError::Database {
                        location,
                        message: format!("run {} neither inserted nor found", d.id),
                    })),
                };
            }
            let ev = tx
                .prepare(
                    "INSERT INTO glidepath.events (run_id, seq, at, kind, node, step, data)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .await?;
            for e in &d.events {
                tx.execute(
                    &ev,
                    &[&d.id, &e.seq, &(e.at as i64), &e.kind, &e.node, &e.step, &e.data],
                )
                .await?;
            }
            let cmd = tx
                .prepare(
                    "INSERT INTO glidepath.commands (run_id, kind, reason, at, consumed_at, outcome)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .await?;
            for k in &d.commands {
                tx.execute(
                    &cmd,
                    &[
                        &d.id,
                        &k.kind.as_str(),
                        &k.reason,
                        &(k.at as i64),
                        &k.consumed_at.map(|v| v as i64),
                        &k.outcome,
                    ],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(Imported::Added)
        })
    }

    pub(super) fn list_campaigns(&self) -> Result<Vec<String>, JournalError> {
        self.sql(async move |c| {
            Ok(c.query(
                "SELECT id FROM glidepath.campaigns ORDER BY created_at, id",
                &[],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect())
        })
    }

    pub(super) fn dump_campaign(&self, id: &str) -> Result<CampaignDump, JournalError> {
        self.read_campaign(id).map(CampaignDump::from)
    }

    /// A campaign, added once: the campaign row is inserted first
    /// (`ON CONFLICT DO NOTHING`), so that two imports of one campaign do
    /// not both add it; the stages follow in the same transaction.
    pub(super) fn load_campaign(&mut self, c: &CampaignDump) -> Result<Imported, JournalError> {
        let existing = match self.read_campaign(&c.id) {
            Ok(e) => Some(CampaignDump::from(e)),
            Err(JournalError::NoSuchCampaign(_)) => None,
            Err(e) => return Err(e),
        };
        if let Some(done) = dump::compare_campaign(existing, c, self.location_str())? {
            return Ok(done);
        }
        match self.insert_campaign(&CampaignRecord::from(c)) {
            Ok(()) => Ok(Imported::Added),
            // added by another import meanwhile: compare with that
            Err(e @ JournalError::Database { .. }) => {
                let now = match self.read_campaign(&c.id) {
                    Ok(now) => CampaignDump::from(now),
                    Err(_) => return Err(e),
                };
                dump::compare_campaign(Some(now), c, self.location_str())
                    .map(|d| d.unwrap_or(Imported::Skipped))
            }
            Err(e) => Err(e),
        }
    }

    pub(super) fn describe(&self) -> Result<dump::JournalInfo, JournalError> {
        let location = self.location_str();
        self.sql(async move |c| {
            let version: i64 = c
                .query_opt(
                    "SELECT value FROM glidepath.meta WHERE key = 'schema_version'",
                    &[],
                )
                .await?
                .and_then(|r| r.get::<_, String>(0).parse().ok())
                .unwrap_or(0);
            let count = async |sql: &str| -> Result<u64, Fail> {
                Ok(c.query_one(sql, &[]).await?.get::<_, i64>(0) as u64)
            };
            let runs = count("SELECT COUNT(*) FROM glidepath.runs").await?;
            let campaigns = count("SELECT COUNT(*) FROM glidepath.campaigns").await?;
            // the holders' ages by the server's clock, put on this machine's
            let leases: Vec<Lease> = c
                .query(
                    &format!(
                        "SELECT {} FROM glidepath.leases WHERE run_id IS NOT NULL ORDER BY fleet",
                        store::LEASE_COLS
                    ),
                    &[],
                )
                .await?
                .iter()
                .filter_map(|r| store::row_to_lease(r).transpose())
                .collect::<Result<_, Fail>>()?;
            Ok(dump::JournalInfo {
                backend: "postgresql",
                location,
                schema_version: version,
                known_schema_version: SCHEMA_VERSION,
                runs,
                campaigns,
                leases,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::infra::Postgres;
    use crate::journal::{CampaignStatus, StageAction, StageRecord, StageStatus};

    fn open(pg: &Postgres, db: &str) -> PgJournal {
        pg.psql("postgres", &format!("CREATE DATABASE {db}"))
            .unwrap();
        PgJournal::open(&Target::parse(&pg.url(db)).unwrap()).unwrap()
    }

    #[test]
    fn runs_and_campaigns_move_between_databases_once() {
        let dir = tempfile::tempdir().unwrap();
        let pg =
            Postgres::start(dir.path()).expect("PostgreSQL starts (apt-get install postgresql)");
        let mut a = open(&pg, "a");
        let now = now_ms();
        a.create_run(&RunRecord {
            id: "r1".into(),
            fleet: "web".into(),
            plan_path: "/p/plan.toml".into(),
            plan_hash: "h".into(),
            plan_source: "[release]".into(),
            version: "2".into(),
            status: RunStatus::Running,
            reason: String::new(),
            created_at: now,
            updated_at: now,
        })
        .unwrap();
        for i in 1..=3 {
            a.append(
                "r1",
                &Event::Promoted {
                    at: i,
                    reason: format!("event {i}"),
                },
            )
            .unwrap();
        }
        let k = a.push_command("r1", CommandKind::Abort, "stop").unwrap();
        a.refuse_command(k, "too late").unwrap();
        a.push_command("r1", CommandKind::Promote, "go").unwrap();
        a.create_campaign(&CampaignRecord {
            id: "c1".into(),
            system_path: "/s/system.toml".into(),
            system_source: "[[component]]".into(),
            to: vec!["server=2".into()],
            enable: vec![],
            status: CampaignStatus::Stopped,
            reason: "aborted".into(),
            pid: 1,
            host: "elsewhere".into(),
            created_at: now,
            updated_at: now,
            stages: vec![StageRecord {
                index: 0,
                action: StageAction::EnableFlag {
                    flag: "f".into(),
                    command: "true".into(),
                    timeout_ms: 1000,
                    dir: "/s".into(),
                },
                why: "last".into(),
                status: StageStatus::Stopped,
                run_id: Some("r1".into()),
                detail: "aborted".into(),
                updated_at: now,
            }],
        })
        .unwrap();
        let run = a.export_run("r1").unwrap();
        assert_eq!((run.events.len(), run.commands.len()), (3, 2));
        let camp = a.export_campaign("c1").unwrap();
        assert_eq!(a.campaign_ids().unwrap(), ["c1"]);

        // two importers of one run at once: it is added once
        let url = pg.url("b");
        let mut b = open(&pg, "b");
        let results: Vec<Imported> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..2)
                .map(|_| {
                    let (url, run) = (url.clone(), run.clone());
                    s.spawn(move || {
                        let mut j = PgJournal::open(&Target::parse(&url).unwrap()).unwrap();
                        j.import_run(&run).unwrap()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut results = results;
        results.sort_by_key(|r| *r == Imported::Skipped);
        assert_eq!(results, [Imported::Added, Imported::Skipped]);
        assert_eq!(b.import_campaign(&camp).unwrap(), Imported::Added);
        assert_eq!(b.import_campaign(&camp).unwrap(), Imported::Skipped);
        assert_eq!(b.export_run("r1").unwrap(), run);
        assert_eq!(b.export_campaign("c1").unwrap(), camp);
        assert_eq!(b.pending_commands("r1").unwrap().len(), 1);
        assert_eq!(b.events("r1").unwrap(), a.events("r1").unwrap());
        // the imported run goes on where it was
        assert_eq!(
            b.append(
                "r1",
                &Event::Promoted {
                    at: 9,
                    reason: "on".into()
                }
            )
            .unwrap(),
            4
        );
        let mut other = run.clone();
        other.plan_source = "[release] changed".into();
        let e = b.import_run(&other).unwrap_err();
        assert!(
            matches!(&e, JournalError::ImportConflict { what: "run", id, .. } if id == "r1"),
            "{e}"
        );
        let info = b.info().unwrap();
        assert_eq!(
            (info.backend, info.schema_version),
            ("postgresql", SCHEMA_VERSION)
        );
        assert_eq!((info.runs, info.campaigns), (1, 1));
        assert!(info.leases.is_empty());
        a.acquire_lease("web", "r1", false).unwrap();
        let info = a.info().unwrap();
        assert_eq!(info.leases.len(), 1);
        assert_eq!(info.leases[0].pid, std::process::id());
    }
}
