//! `report RUN`: the run's report from the journal, as Markdown, a
//! self-contained HTML page or JSON, to stdout or a file.

use super::Ctx;
use crate::{exit, Failure, ReportFormat};
use glidepath::runreport::RunReport;
use std::path::Path;

pub fn run(
    ctx: &Ctx,
    run: Option<&str>,
    format: Option<ReportFormat>,
    out: Option<&Path>,
) -> Result<u8, Failure> {
    let (_, journal) = ctx.open_existing()?;
    let journal = journal.as_ref();
    let rec = glidepath::control::resolve_run(journal, run.unwrap_or("latest"))?;
    let events = journal.events(&rec.id)?;
    let report = RunReport::build(&rec, &events);
    let format = format.unwrap_or(if ctx.json() {
        ReportFormat::Json
    } else {
        ReportFormat::Md
    });
    let text = match format {
        ReportFormat::Md => report.markdown(),
        ReportFormat::Html => report.html(),
        ReportFormat::Json => report.json(),
    };
    match out {
        None => print!("{text}"),
        Some(path) => {
            std::fs::write(path, text).map_err(|e| {
                Failure::new(
                    exit::INVALID,
                    format!(
                        "--out {}: {e}\nhint: the report's directory must exist and be writable",
                        path.display()
                    ),
                )
            })?;
            eprintln!("report of run {} written to {}", rec.id, path.display());
        }
    }
    Ok(exit::OK)
}
