//! The PostgreSQL journal's campaigns: a `campaigns` row and one
//! `campaign_stages` row per stage, as in the SQLite journal.

use super::*;

#[derive(serde::Serialize, serde::Deserialize)]
struct TargetCol {
    to: Vec<String>,
    enable: Vec<String>,
}

const CAMPAIGN_COLS: &str =
    "id, system_path, system_source, target, status, reason, pid, host, created_at, updated_at";

fn bad(location: &str, what: impl std::fmt::Display) -> Fail {
    Fail::Journal(JournalError::Database {
        location: location.to_string(),
        message: format!("unreadable campaign row: {what}"),
    })
}

fn row_to_campaign(r: &tokio_postgres::Row, location: &str) -> Result<CampaignRecord, Fail> {
    let target: TargetCol =
        serde_json::from_str(&r.try_get::<_, String>(3)?).map_err(|e| bad(location, e))?;
    Ok(CampaignRecord {
        id: r.try_get(0)?,
        system_path: r.try_get(1)?,
        system_source: r.try_get(2)?,
        to: target.to,
        enable: target.enable,
        status: r
            .try_get::<_, String>(4)?
            .parse()
            .map_err(|e| bad(location, e))?,
        reason: r.try_get(5)?,
        pid: r.try_get::<_, i64>(6)? as u32,
        host: r.try_get(7)?,
        created_at: r.try_get::<_, i64>(8)? as u64,
        updated_at: r.try_get::<_, i64>(9)? as u64,
        stages: Vec::new(),
    })
}

fn row_to_stage(r: &tokio_postgres::Row, location: &str) -> Result<StageRecord, Fail> {
    Ok(StageRecord {
        index: r.try_get::<_, i64>(0)? as usize,
        action: serde_json::from_str(&r.try_get::<_, String>(1)?).map_err(|e| bad(location, e))?,
        why: r.try_get(2)?,
        status: r
            .try_get::<_, String>(3)?
            .parse()
            .map_err(|e| bad(location, e))?,
        run_id: r.try_get(4)?,
        detail: r.try_get(5)?,
        updated_at: r.try_get::<_, i64>(6)? as u64,
    })
}

async fn read(
    c: &tokio_postgres::Client,
    id: &str,
    location: &str,
) -> Result<CampaignRecord, Fail> {
    let Some(row) = c
        .query_opt(
            &format!("SELECT {CAMPAIGN_COLS} FROM glidepath.campaigns WHERE id = $1"),
            &[&id],
        )
        .await?
    else {
        return Err(Fail::Journal(JournalError::NoSuchCampaign(id.to_string())));
    };
    let mut camp = row_to_campaign(&row, location)?;
    camp.stages = c
        .query(
            "SELECT idx, action, why, status, run_id, detail, updated_at
             FROM glidepath.campaign_stages WHERE campaign_id = $1 ORDER BY idx",
            &[&id],
        )
        .await?
        .iter()
        .map(|r| row_to_stage(r, location))
        .collect::<Result<_, _>>()?;
    Ok(camp)
}

impl PgJournal {
    pub(super) fn insert_campaign(&self, c: &CampaignRecord) -> Result<(), JournalError> {
        let camp = c.clone();
        let target = serde_json::to_string(&TargetCol {
            to: c.to.clone(),
            enable: c.enable.clone(),
        })
        .expect("strings serialize");
        self.sql(async move |c| {
            let tx = c.transaction().await?;
            tx.execute(
                &format!(
                    "INSERT INTO glidepath.campaigns ({CAMPAIGN_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                ),
                &[
                    &camp.id,
                    &camp.system_path,
                    &camp.system_source,
                    &target,
                    &camp.status.as_str(),
                    &camp.reason,
                    &(camp.pid as i64),
                    &camp.host,
                    &(camp.created_at as i64),
                    &(camp.updated_at as i64),
                ],
            )
            .await?;
            for s in &camp.stages {
                tx.execute(
                    "INSERT INTO glidepath.campaign_stages (campaign_id, idx, action, why, status, run_id, detail, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    &[
                        &camp.id,
                        &(s.index as i64),
                        &serde_json::to_string(&s.action).expect("actions serialize"),
                        &s.why,
                        &s.status.as_str(),
                        &s.run_id,
                        &s.detail,
                        &(s.updated_at as i64),
                    ],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    pub(super) fn read_campaign(&self, id: &str) -> Result<CampaignRecord, JournalError> {
        let (id, location) = (id.to_string(), self.location_str());
        self.sql(async move |c| read(c, &id, &location).await)
    }

    pub(super) fn find_campaign_of_run(
        &self,
        run: &str,
    ) -> Result<Option<CampaignRecord>, JournalError> {
        let (run, location) = (run.to_string(), self.location_str());
        self.sql(async move |c| {
            let id: Option<String> = c
                .query_opt(
                    "SELECT campaign_id FROM glidepath.campaign_stages WHERE run_id = $1 LIMIT 1",
                    &[&run],
                )
                .await?
                .map(|r| r.get(0));
            match id {
                Some(id) => Ok(Some(read(c, &id, &location).await?)),
                None => Ok(None),
            }
        })
    }

    pub(super) fn take_campaign(&self, id: &str) -> Result<(), JournalError> {
        let (me, host, id) = (std::process::id(), hostname(), id.to_string());
        self.sql(async move |c| {
            let tx = c.transaction().await?;
            let Some(row) = tx
                .query_opt(
                    "SELECT status, pid, host FROM glidepath.campaigns WHERE id = $1 FOR UPDATE",
                    &[&id],
                )
                .await?
            else {
                return Err(Fail::Journal(JournalError::NoSuchCampaign(id)));
            };
            let (status, pid, h): (String, i64, String) = (row.get(0), row.get(1), row.get(2));
            let pid = pid as u32;
            if status == CampaignStatus::Running.as_str() && h == host && pid != me && pid_alive(pid)
            {
                return Err(Fail::Journal(JournalError::CampaignHeld {
                    campaign: id,
                    pid,
                    host: h,
                }));
            }
            tx.execute(
                "UPDATE glidepath.campaigns SET status = 'running', reason = '', pid = $2, host = $3, updated_at = $4 WHERE id = $1",
                &[&id, &(me as i64), &host, &(now_ms() as i64)],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    pub(super) fn update_campaign(
        &self,
        id: &str,
        status: CampaignStatus,
        reason: &str,
    ) -> Result<(), JournalError> {
        let (id, status, reason) = (
            id.to_string(),
            status.as_str(),
            clip(reason, MAX_TEXT).into_owned(),
        );
        self.sql(async move |c| {
            c.execute(
                "UPDATE glidepath.campaigns SET status = $2, reason = $3, updated_at = $4 WHERE id = $1",
                &[&id, &status, &reason, &(now_ms() as i64)],
            )
            .await?;
            Ok(())
        })
    }

    pub(super) fn update_stage(
        &self,
        id: &str,
        index: usize,
        status: StageStatus,
        run: Option<&str>,
        detail: &str,
    ) -> Result<(), JournalError> {
        let (id, status, run, detail) = (
            id.to_string(),
            status.as_str(),
            run.map(str::to_string),
            clip(detail, MAX_TEXT).into_owned(),
        );
        let now = now_ms() as i64;
        self.sql(async move |c| {
            let tx = c.transaction().await?;
            tx.execute(
                "UPDATE glidepath.campaign_stages SET status = $3, run_id = COALESCE($4, run_id), detail = $5, updated_at = $6
                 WHERE campaign_id = $1 AND idx = $2",
                &[&id, &(index as i64), &status, &run, &detail, &now],
            )
            .await?;
            tx.execute(
                "UPDATE glidepath.campaigns SET updated_at = $2 WHERE id = $1",
                &[&id, &now],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }
}
