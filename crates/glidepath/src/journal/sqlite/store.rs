//! `Store` for the SQLite journal: runs, events, leases (with the fence
//! checked by every holder write) and operator commands.

use super::*;

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
            let mine = l.is_mine();
            let dead = l.holder_dead(now);
            if !(mine || dead && take_over_dead) {
                return Err(l.locked(now));
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
            "INSERT INTO leases (fleet, run_id, pid, host, since, heartbeat, epoch, ttl_ms, token) VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7, ?8)
             ON CONFLICT(fleet) DO UPDATE SET run_id = ?2, pid = ?3, host = ?4, since = ?5, heartbeat = ?5, epoch = ?6, ttl_ms = ?7, token = ?8",
            params![fleet, run, me as i64, host, now as i64, epoch, lease_ttl_ms() as i64, process_token()],
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

impl Drop for SqliteJournal {
    fn drop(&mut self) {
        if !self.abandoned.load(std::sync::atomic::Ordering::SeqCst) {
            // SAFETY: dropped once, here, and never used after.
            unsafe { std::mem::ManuallyDrop::drop(&mut self.conn) };
        }
    }
}
