//! `journal export`, `journal import` and `journal info`: moving runs and
//! campaigns between journals (a SQLite file, a PostgreSQL database) in the
//! dump format of `glidepath::journal::dump`, and what a journal holds.

use super::{print_json, Ctx};
use crate::{exit, Failure};
use glidepath::journal::dump::{self, ReadLine, Record};
use glidepath::journal::{now_ms, pid_alive, CampaignStatus, JournalError, Location, Store};
use glidepath::output::{Holder, ImportLine, JournalImport, LeaseEntry};
use std::path::Path;

/// `journal export [ITEM…] [--file FILE] [--include-live]`.
pub fn export(
    ctx: &Ctx,
    items: &[String],
    file: Option<&Path>,
    include_live: bool,
) -> Result<u8, Failure> {
    if ctx.json() && file.is_none() {
        return Err(Failure::new(
            exit::INVALID,
            "journal export --output json: the dump would go to stdout with the report\nhint: pass --file FILE (the JSON report then goes to stdout)",
        ));
    }
    let (loc, store) = ctx.open_existing()?;
    let (runs, campaigns) = select(&*store, items)?;
    if !include_live {
        refuse_live(&*store, &runs, &campaigns)?;
    }
    let write = |w: &mut dyn std::io::Write| -> Result<(), Failure> {
        let io = |e: std::io::Error| {
            Failure::new(
                exit::INTERNAL,
                format!(
                    "cannot write the dump to {}: {e}",
                    file.map_or("stdout".into(), |f| f.display().to_string())
                ),
            )
        };
        dump::write_header(w).map_err(io)?;
        for id in &runs {
            dump::write_record(w, &Record::Run(store.export_run(id)?)).map_err(io)?;
        }
        for id in &campaigns {
            dump::write_record(w, &Record::Campaign(store.export_campaign(id)?)).map_err(io)?;
        }
        w.flush().map_err(io)
    };
    match file {
        Some(f) => {
            // written beside it, then renamed: a failed export leaves no half dump
            let tmp = f.with_file_name(format!(
                ".{}.partial",
                f.file_name().map_or("dump".into(), |n| n.to_string_lossy())
            ));
            let out = std::fs::File::create(&tmp).map_err(|e| {
                Failure::new(exit::INVALID, format!("cannot create {}: {e}", f.display()))
            })?;
            let mut w = std::io::BufWriter::new(out);
            let done = write(&mut w).and_then(|()| {
                w.into_inner()
                    .map_err(|e| e.into_error())
                    .and_then(|f| f.sync_all())
                    .and_then(|()| std::fs::rename(&tmp, f))
                    .map_err(|e| {
                        Failure::new(exit::INTERNAL, format!("cannot write {}: {e}", f.display()))
                    })
            });
            if done.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            done?;
        }
        None => {
            let stdout = std::io::stdout();
            let mut w = std::io::BufWriter::new(stdout.lock());
            write(&mut w)?;
        }
    }
    if ctx.json() {
        print_json(glidepath::output::JournalExport {
            journal: &loc.to_string(),
            file: file.unwrap_or(Path::new("-")),
            format: dump::FORMAT,
            format_version: dump::FORMAT_VERSION,
            runs: &runs,
            campaigns: &campaigns,
        });
    } else {
        // the dump may be on stdout: the report goes to stderr
        eprintln!(
            "exported {} run(s) and {} campaign(s) from {loc}{}",
            runs.len(),
            campaigns.len(),
            file.map_or(String::new(), |f| format!(" to {}", f.display()))
        );
    }
    Ok(exit::OK)
}

/// The runs and campaigns to export: those named (a campaign with its
/// stages' runs), or every one, oldest first.
fn select(store: &dyn Store, items: &[String]) -> Result<(Vec<String>, Vec<String>), Failure> {
    let mut runs: Vec<String> = Vec::new();
    let mut campaigns: Vec<String> = Vec::new();
    if items.is_empty() {
        runs = store
            .runs(i64::MAX as usize)?
            .into_iter()
            .rev()
            .map(|r| r.id)
            .collect();
        campaigns = store.campaign_ids()?;
        return Ok((runs, campaigns));
    }
    for item in items {
        if glidepath::campaign::is_campaign_id(item) {
            let c = store.campaign(item)?;
            for r in c.stages.iter().filter_map(|s| s.run_id.clone()) {
                if !runs.contains(&r) {
                    runs.push(r);
                }
            }
            if !campaigns.contains(&c.id) {
                campaigns.push(c.id);
            }
        } else {
            let id = glidepath::control::resolve_run(store, item)?.id;
            if !runs.contains(&id) {
                runs.push(id);
            }
        }
    }
    Ok((runs, campaigns))
}

/// A run whose holder is alive (or a campaign whose process is) is not
/// exported: the copy, resumed elsewhere, would drive the same fleet.
fn refuse_live(store: &dyn Store, runs: &[String], campaigns: &[String]) -> Result<(), Failure> {
    let now = now_ms();
    let mut live = Vec::new();
    for id in runs {
        if let Some(l) = store.lease_of_run(id)?.filter(|l| !l.holder_dead(now)) {
            live.push(format!("run {id} (pid {} on {})", l.pid, l.host));
        }
    }
    for id in campaigns {
        let c = store.campaign(id)?;
        if c.status == CampaignStatus::Running
            && c.host == glidepath::journal::hostname()
            && pid_alive(c.pid)
        {
            live.push(format!("campaign {id} (pid {} on {})", c.pid, c.host));
        }
    }
    if live.is_empty() {
        return Ok(());
    }
    Err(Failure::new(
        exit::LOCKED,
        format!(
            "not exported: {} still driven by a live process; a copy resumed from another journal would drive the same fleet twice\nhint: wait for it to end (`glidepath status RUN --watch`), or pass --include-live to copy it as it stands now (and resume the copy only once the original process is gone)",
            live.join(", ")
        ),
    ))
}

/// `journal import FILE`: into `--journal` (created if it is a new SQLite
/// file). Each line is imported on its own, in one transaction.
pub fn import(ctx: &Ctx, file: &Path) -> Result<u8, Failure> {
    let loc = ctx.journal_location()?;
    let bad_file = |why: String| Failure::new(exit::INVALID, format!("{}: {why}", file.display()));
    let mut reader: Box<dyn std::io::BufRead> = if file == Path::new("-") {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(file).map_err(|e| bad_file(e.to_string()))?,
        ))
    };
    let io = |e: std::io::Error| bad_file(format!("cannot read: {e}"));
    match dump::read_line(&mut *reader, 4096).map_err(io)? {
        ReadLine::Line(h) => {
            dump::parse_header(&h).map_err(|e| bad_file(format!("line 1: {e}")))?
        }
        ReadLine::Eof => return Err(bad_file("empty: not a glidepath journal dump".into())),
        _ => return Err(bad_file("line 1: not a glidepath journal dump".into())),
    };
    let mut store = loc.open()?;
    let mut lines: Vec<ImportLine> = Vec::new();
    let mut n = 1;
    loop {
        n += 1;
        let malformed = |why: String| ImportLine {
            line: n,
            kind: None,
            id: None,
            result: "malformed",
            error: Some(why),
        };
        let text = match dump::read_line(&mut *reader, dump::MAX_LINE).map_err(io)? {
            ReadLine::Eof => break,
            ReadLine::Line(t) if t.trim().is_empty() => continue,
            ReadLine::Line(t) => t,
            ReadLine::TooLong => {
                lines.push(malformed(format!(
                    "longer than {} MiB: not a line glidepath writes",
                    dump::MAX_LINE >> 20
                )));
                continue;
            }
            ReadLine::NotText => {
                lines.push(malformed("not UTF-8 text".into()));
                continue;
            }
        };
        let record = match dump::parse_record(&text) {
            Ok(r) => r,
            Err(why) => {
                lines.push(malformed(why));
                continue;
            }
        };
        let (kind, id) = (Some(record.what()), Some(record.id().to_string()));
        let line = match record.import_into(&mut *store) {
            Ok(dump::Imported::Added) => ImportLine {
                line: n,
                kind,
                id,
                result: "imported",
                error: None,
            },
            Ok(dump::Imported::Skipped) => ImportLine {
                line: n,
                kind,
                id,
                result: "skipped",
                error: None,
            },
            Err(e @ JournalError::ImportConflict { .. }) => ImportLine {
                line: n,
                kind,
                id,
                result: "refused",
                error: Some(e.to_string()),
            },
            // the journal itself failed (unreachable, …): stop here
            // (what was done so far is said in text; in JSON, the error
            // document says which journal failed)
            Err(e) => {
                if !ctx.json() {
                    report_import(ctx, &loc, file, &lines, None);
                }
                return Err(Failure::from(e));
            }
        };
        lines.push(line);
    }
    let bad: Vec<String> = lines
        .iter()
        .filter(|l| matches!(l.result, "refused" | "malformed"))
        .map(|l| l.line.to_string())
        .collect();
    if bad.is_empty() {
        report_import(ctx, &loc, file, &lines, None);
        return Ok(exit::OK);
    }
    let message = format!(
        "{}: line(s) {} not imported\nhint: a refused run is already in the journal with other content (a run is imported once; export it again from where it changed, or import into another journal); a malformed line was changed or cut after export",
        file.display(),
        bad.join(", ")
    );
    report_import(ctx, &loc, file, &lines, Some(&message));
    Err(Failure {
        reported: ctx.json(),
        ..Failure::new(exit::INVALID, message)
    })
}

fn report_import(
    ctx: &Ctx,
    loc: &Location,
    file: &Path,
    lines: &[ImportLine],
    error: Option<&str>,
) {
    let count = |r: &str| lines.iter().filter(|l| l.result == r).count();
    let (imported, skipped) = (count("imported"), count("skipped"));
    let refused = count("refused") + count("malformed");
    if ctx.json() {
        print_json(JournalImport {
            journal: &loc.to_string(),
            file,
            imported,
            skipped,
            refused,
            lines,
            error,
            exit_code: error.map(|_| exit::INVALID),
        });
        return;
    }
    for l in lines {
        let what = match (l.kind, &l.id) {
            (Some(k), Some(id)) => format!("{k} {id}"),
            _ => String::new(),
        };
        match l.result {
            "imported" => println!("line {}: imported {what}", l.line),
            "skipped" => println!("line {}: skipped {what} (already there, identical)", l.line),
            r => println!(
                "line {}: {r}: {}",
                l.line,
                l.error.as_deref().unwrap_or_default()
            ),
        }
    }
    println!("{imported} imported, {skipped} skipped, {refused} refused into {loc}");
}

/// `journal info`.
pub fn info(ctx: &Ctx) -> Result<u8, Failure> {
    let (loc, store) = ctx.open_existing()?;
    let i = store.info()?;
    let now = now_ms();
    let leases: Vec<LeaseEntry> = i
        .leases
        .iter()
        .map(|l| LeaseEntry {
            fleet: l.fleet.clone(),
            run_id: l.run_id.clone(),
            holder: Holder::of(l, now),
            epoch: l.epoch,
        })
        .collect();
    let doc = glidepath::output::JournalInfo {
        backend: i.backend,
        location: loc.to_string(),
        journal_schema_version: i.schema_version,
        known_journal_schema_version: i.known_schema_version,
        runs: i.runs,
        campaigns: i.campaigns,
        live_leases: leases.iter().filter(|l| l.holder.alive).count(),
        leases,
    };
    if ctx.json() {
        print_json(&doc);
        return Ok(exit::OK);
    }
    println!("backend: {}", doc.backend);
    println!("location: {}", doc.location);
    println!(
        "schema version: {} (this glidepath knows up to {})",
        doc.journal_schema_version, doc.known_journal_schema_version
    );
    println!("runs: {}", doc.runs);
    println!("campaigns: {}", doc.campaigns);
    println!("live leases: {}", doc.live_leases);
    for l in &doc.leases {
        println!(
            "  fleet {}: run {} (pid {} on {}, since {}, epoch {}){}",
            l.fleet,
            l.run_id,
            l.holder.pid,
            l.holder.host,
            glidepath::journal::fmt_time(l.holder.since),
            l.epoch,
            if l.holder.alive {
                ""
            } else {
                " — holder gone"
            }
        );
    }
    Ok(exit::OK)
}
