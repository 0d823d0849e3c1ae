//! The SQLite journal's campaigns: a `campaigns` row and one
//! `campaign_stages` row per stage (what it does as JSON, its status, its
//! run). Called from `store.rs`'s `Store` implementation.

use super::*;

/// The target as journaled: `{"to": [...], "enable": [...]}`.
#[derive(serde::Serialize, serde::Deserialize)]
struct TargetCol {
    to: Vec<String>,
    enable: Vec<String>,
}

const CAMPAIGN_COLS: &str =
    "id, system_path, system_source, target, status, reason, pid, host, created_at, updated_at";

fn bad(i: usize, e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
}

fn row_to_campaign(r: &rusqlite::Row) -> rusqlite::Result<CampaignRecord> {
    let target: TargetCol = serde_json::from_str(&r.get::<_, String>(3)?).map_err(|e| bad(3, e))?;
    Ok(CampaignRecord {
        id: r.get(0)?,
        system_path: r.get(1)?,
        system_source: r.get(2)?,
        to: target.to,
        enable: target.enable,
        status: parse_col(r, 4)?,
        reason: r.get(5)?,
        pid: r.get::<_, i64>(6)? as u32,
        host: r.get(7)?,
        created_at: r.get::<_, i64>(8)? as u64,
        updated_at: r.get::<_, i64>(9)? as u64,
        stages: Vec::new(),
    })
}

fn row_to_stage(r: &rusqlite::Row) -> rusqlite::Result<StageRecord> {
    Ok(StageRecord {
        index: r.get::<_, i64>(0)? as usize,
        action: serde_json::from_str(&r.get::<_, String>(1)?).map_err(|e| bad(1, e))?,
        why: r.get(2)?,
        status: parse_col(r, 3)?,
        run_id: r.get(4)?,
        detail: r.get(5)?,
        updated_at: r.get::<_, i64>(6)? as u64,
    })
}

impl SqliteJournal {
    pub(super) fn insert_campaign(&self, c: &CampaignRecord) -> Result<(), JournalError> {
        let conn = self.conn()?;
        let tx = conn.unchecked_transaction().map_err(|e| self.err(e))?;
        self.write_campaign(&tx, c).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    /// The campaign's rows, written with `conn` (in the caller's transaction).
    pub(super) fn write_campaign(
        &self,
        conn: &Connection,
        c: &CampaignRecord,
    ) -> rusqlite::Result<()> {
        let target = serde_json::to_string(&TargetCol {
            to: c.to.clone(),
            enable: c.enable.clone(),
        })
        .expect("strings serialize");
        conn.execute(
            &format!("INSERT INTO campaigns ({CAMPAIGN_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
            params![
                c.id,
                c.system_path,
                c.system_source,
                target,
                c.status.as_str(),
                c.reason,
                c.pid as i64,
                c.host,
                c.created_at as i64,
                c.updated_at as i64
            ],
        )?;
        for s in &c.stages {
            conn.execute(
                "INSERT INTO campaign_stages (campaign_id, idx, action, why, status, run_id, detail, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    c.id,
                    s.index as i64,
                    serde_json::to_string(&s.action).expect("actions serialize"),
                    s.why,
                    s.status.as_str(),
                    s.run_id,
                    s.detail,
                    s.updated_at as i64
                ],
            )?;
        }
        Ok(())
    }

    pub(super) fn read_campaign(&self, id: &str) -> Result<CampaignRecord, JournalError> {
        let conn = self.conn()?;
        let mut c = conn
            .query_row(
                &format!("SELECT {CAMPAIGN_COLS} FROM campaigns WHERE id = ?1"),
                params![id],
                row_to_campaign,
            )
            .optional()
            .map_err(|e| self.err(e))?
            .ok_or_else(|| JournalError::NoSuchCampaign(id.to_string()))?;
        let mut st = conn
            .prepare(
                "SELECT idx, action, why, status, run_id, detail, updated_at
                 FROM campaign_stages WHERE campaign_id = ?1 ORDER BY idx",
            )
            .map_err(|e| self.err(e))?;
        c.stages = st
            .query_map(params![id], row_to_stage)
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?;
        Ok(c)
    }

    pub(super) fn find_campaign_of_run(
        &self,
        run: &str,
    ) -> Result<Option<CampaignRecord>, JournalError> {
        let id: Option<String> = self
            .conn()?
            .query_row(
                "SELECT campaign_id FROM campaign_stages WHERE run_id = ?1",
                params![run],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        id.map(|id| self.read_campaign(&id)).transpose()
    }

    pub(super) fn take_campaign(&self, id: &str) -> Result<(), JournalError> {
        let (me, host) = (std::process::id(), hostname());
        let conn = self.conn()?;
        // IMMEDIATE: two processes claiming at once are serialized
        let tx =
            rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)
                .map_err(|e| self.err(e))?;
        let held: Option<(String, i64, String)> = tx
            .query_row(
                "SELECT status, pid, host FROM campaigns WHERE id = ?1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let Some((status, pid, h)) = held else {
            return Err(JournalError::NoSuchCampaign(id.to_string()));
        };
        let pid = pid as u32;
        if status == CampaignStatus::Running.as_str() && h == host && pid != me && pid_alive(pid) {
            return Err(JournalError::CampaignHeld {
                campaign: id.to_string(),
                pid,
                host: h,
            });
        }
        tx.execute(
            "UPDATE campaigns SET status = 'running', reason = '', pid = ?2, host = ?3, updated_at = ?4 WHERE id = ?1",
            params![id, me as i64, host, now_ms() as i64],
        )
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    pub(super) fn update_campaign(
        &self,
        id: &str,
        status: CampaignStatus,
        reason: &str,
    ) -> Result<(), JournalError> {
        self.conn()?
            .execute(
                "UPDATE campaigns SET status = ?2, reason = ?3, updated_at = ?4 WHERE id = ?1",
                params![id, status.as_str(), clip(reason, MAX_TEXT), now_ms() as i64],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub(super) fn update_stage(
        &self,
        id: &str,
        index: usize,
        status: StageStatus,
        run: Option<&str>,
        detail: &str,
    ) -> Result<(), JournalError> {
        let now = now_ms() as i64;
        let conn = self.conn()?;
        let tx = conn.unchecked_transaction().map_err(|e| self.err(e))?;
        tx.execute(
            "UPDATE campaign_stages SET status = ?3, run_id = COALESCE(?4, run_id), detail = ?5, updated_at = ?6
             WHERE campaign_id = ?1 AND idx = ?2",
            params![id, index as i64, status.as_str(), run, clip(detail, MAX_TEXT), now],
        )
        .map_err(|e| self.err(e))?;
        tx.execute(
            "UPDATE campaigns SET updated_at = ?2 WHERE id = ?1",
            params![id, now],
        )
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }
}
