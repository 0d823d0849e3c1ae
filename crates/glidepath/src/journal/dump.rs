//! The journal's dump format, which `glidepath journal export` writes and
//! `glidepath journal import` reads to move runs between journals (SQLite
//! and PostgreSQL) without loss.
//!
//! JSON Lines: a [`Header`] line (`{"format":"glidepath-journal","version":1}`),
//! then one line per run ([`RunDump`]) or campaign ([`CampaignDump`]), each
//! with the sha256 of its content, so that a damaged or edited line is
//! refused. A run's events are the rows exactly as stored (the event's JSON
//! as text, never re-serialized). Leases are live state and are not moved.

use super::{CampaignRecord, CampaignStatus, CommandKind, JournalError, Lease, RunStatus};
use super::{StageAction, StageStatus, Store};
use glidepath_core::Event;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{BufRead, Write};

/// The header's `format`.
pub const FORMAT: &str = "glidepath-journal";
/// The header's `version`: bumped when a field is renamed or removed or
/// changes meaning; a newer dump is refused.
pub const FORMAT_VERSION: u32 = 1;
/// The longest line `import` reads (a run with its events is one line).
pub const MAX_LINE: usize = 256 << 20;

/// The first line of a dump.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub format: String,
    pub version: u32,
}

impl Default for Header {
    fn default() -> Header {
        Header {
            format: FORMAT.into(),
            version: FORMAT_VERSION,
        }
    }
}

/// A run: its record, every event row, and its operator commands (in the
/// order they were queued; their ids are the journal's own and not kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunDump {
    pub id: String,
    pub fleet: String,
    pub plan_path: String,
    pub plan_hash: String,
    pub plan_source: String,
    pub version: String,
    pub status: RunStatus,
    pub reason: String,
    pub created_at: u64,
    pub updated_at: u64,
    pub events: Vec<EventRow>,
    pub commands: Vec<CommandRow>,
}

impl RunDump {
    /// A run's record with its rows.
    pub fn of(r: super::RunRecord, events: Vec<EventRow>, commands: Vec<CommandRow>) -> RunDump {
        RunDump {
            id: r.id,
            fleet: r.fleet,
            plan_path: r.plan_path,
            plan_hash: r.plan_hash,
            plan_source: r.plan_source,
            version: r.version,
            status: r.status,
            reason: r.reason,
            created_at: r.created_at,
            updated_at: r.updated_at,
            events,
            commands,
        }
    }
}

/// An event row as stored: `data` is the event's JSON text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventRow {
    pub seq: i64,
    pub at: u64,
    pub kind: String,
    pub node: Option<String>,
    pub step: Option<String>,
    pub data: String,
}

/// An operator command row (`consumed_at` and `outcome` empty while it is
/// pending).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandRow {
    pub kind: CommandKind,
    pub reason: String,
    pub at: u64,
    pub consumed_at: Option<u64>,
    pub outcome: Option<String>,
}

/// A campaign with its stages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignDump {
    pub id: String,
    pub system_path: String,
    pub system_source: String,
    pub to: Vec<String>,
    pub enable: Vec<String>,
    pub status: CampaignStatus,
    pub reason: String,
    pub pid: u32,
    pub host: String,
    pub created_at: u64,
    pub updated_at: u64,
    pub stages: Vec<StageDump>,
}

/// A campaign's stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageDump {
    pub index: usize,
    pub action: StageAction,
    pub why: String,
    pub status: StageStatus,
    pub run_id: Option<String>,
    pub detail: String,
    pub updated_at: u64,
}

impl From<CampaignRecord> for CampaignDump {
    fn from(c: CampaignRecord) -> CampaignDump {
        CampaignDump {
            id: c.id,
            system_path: c.system_path,
            system_source: c.system_source,
            to: c.to,
            enable: c.enable,
            status: c.status,
            reason: c.reason,
            pid: c.pid,
            host: c.host,
            created_at: c.created_at,
            updated_at: c.updated_at,
            stages: c
                .stages
                .into_iter()
                .map(|s| StageDump {
                    index: s.index,
                    action: s.action,
                    why: s.why,
                    status: s.status,
                    run_id: s.run_id,
                    detail: s.detail,
                    updated_at: s.updated_at,
                })
                .collect(),
        }
    }
}

impl From<&CampaignDump> for CampaignRecord {
    fn from(c: &CampaignDump) -> CampaignRecord {
        CampaignRecord {
            id: c.id.clone(),
            system_path: c.system_path.clone(),
            system_source: c.system_source.clone(),
            to: c.to.clone(),
            enable: c.enable.clone(),
            status: c.status,
            reason: c.reason.clone(),
            pid: c.pid,
            host: c.host.clone(),
            created_at: c.created_at,
            updated_at: c.updated_at,
            stages: c
                .stages
                .iter()
                .map(|s| super::StageRecord {
                    index: s.index,
                    action: s.action.clone(),
                    why: s.why.clone(),
                    status: s.status,
                    run_id: s.run_id.clone(),
                    detail: s.detail.clone(),
                    updated_at: s.updated_at,
                })
                .collect(),
        }
    }
}

/// What importing one run or campaign did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Imported {
    /// It was not there: added.
    Added,
    /// It was there with the same content: nothing to do.
    Skipped,
}

/// `glidepath journal info`.
#[derive(Debug, Clone, Serialize)]
pub struct JournalInfo {
    /// `sqlite` or `postgresql`.
    pub backend: &'static str,
    /// The path, or the URL without its password.
    pub location: String,
    pub schema_version: i64,
    /// The newest schema this glidepath knows.
    pub known_schema_version: i64,
    pub runs: u64,
    pub campaigns: u64,
    /// Every lease row (a live or a dead holder).
    pub leases: Vec<Lease>,
}

/// A line after the header.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Run(RunDump),
    Campaign(CampaignDump),
}

impl Record {
    /// `run` or `campaign`.
    pub fn what(&self) -> &'static str {
        match self {
            Record::Run(_) => "run",
            Record::Campaign(_) => "campaign",
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Record::Run(r) => &r.id,
            Record::Campaign(c) => &c.id,
        }
    }

    /// Import it into `store` (checked first: see [`parse_record`]).
    pub fn import_into(&self, store: &mut dyn Store) -> Result<Imported, JournalError> {
        match self {
            Record::Run(r) => store.import_run(r),
            Record::Campaign(c) => store.import_campaign(c),
        }
    }
}

/// A record line as written: the record under its kind, and its digest.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    run: Option<RunDump>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    campaign: Option<CampaignDump>,
    sha256: String,
}

fn digest<T: Serialize>(body: &T) -> String {
    let text = serde_json::to_string(body).expect("dumps serialize");
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Write the header line.
pub fn write_header(w: &mut dyn Write) -> std::io::Result<()> {
    let h = serde_json::to_string(&Header::default()).expect("headers serialize");
    writeln!(w, "{h}")
}

/// Write one record line.
pub fn write_record(w: &mut dyn Write, r: &Record) -> std::io::Result<()> {
    let line = match r {
        Record::Run(d) => Line {
            sha256: digest(d),
            run: Some(d.clone()),
            campaign: None,
        },
        Record::Campaign(c) => Line {
            sha256: digest(c),
            run: None,
            campaign: Some(c.clone()),
        },
    };
    let text = serde_json::to_string(&line).expect("dumps serialize");
    writeln!(w, "{text}")
}

/// The header, checked: a dump of this format at a version this glidepath
/// reads.
pub fn parse_header(text: &str) -> Result<Header, String> {
    let h: Header = serde_json::from_str(text).map_err(|e| {
        format!("not a glidepath journal dump (expected a header line {{\"format\":\"{FORMAT}\",\"version\":{FORMAT_VERSION}}}): {e}")
    })?;
    if h.format != FORMAT {
        return Err(format!(
            "format `{}`, expected `{FORMAT}`: not a glidepath journal dump",
            h.format
        ));
    }
    if h.version > FORMAT_VERSION {
        return Err(format!(
            "dump format version {}; this glidepath reads up to {FORMAT_VERSION}: import it with a newer glidepath",
            h.version
        ));
    }
    Ok(h)
}

/// A record line, checked: its digest matches its content, and its content
/// is what a journal holds (each event readable and agreeing with its row,
/// sequence numbers 1, 2, 3…, stages in order).
pub fn parse_record(text: &str) -> Result<Record, String> {
    let line: Line = serde_json::from_str(text).map_err(|e| format!("unreadable: {e}"))?;
    let (record, sum) = match (line.run, line.campaign) {
        (Some(r), None) => {
            let sum = digest(&r);
            (Record::Run(r), sum)
        }
        (None, Some(c)) => {
            let sum = digest(&c);
            (Record::Campaign(c), sum)
        }
        _ => return Err("a line holds either `run` or `campaign`".into()),
    };
    if sum != line.sha256 {
        return Err(format!(
            "{} {}: its content does not match its sha256 (the line was changed or damaged after export)",
            record.what(),
            record.id()
        ));
    }
    let checked = match &record {
        Record::Run(r) => r.check(),
        Record::Campaign(c) => c.check(),
    };
    checked.map_err(|e| format!("{} {}: {e}", record.what(), record.id()))?;
    Ok(record)
}

impl RunDump {
    /// Is it what a journal holds?
    pub fn check(&self) -> Result<(), String> {
        if self.id.trim().is_empty() {
            return Err("empty id".into());
        }
        for (i, e) in self.events.iter().enumerate() {
            let want = i as i64 + 1;
            if e.seq != want {
                return Err(format!("event {want} has sequence number {}", e.seq));
            }
            let ev: Event = serde_json::from_str(&e.data)
                .map_err(|err| format!("event {}: unreadable: {err}", e.seq))?;
            let (node, step) = match &ev {
                Event::Intent { step, .. } | Event::Outcome { step, .. } => {
                    (step.node.clone(), Some(step.kind.as_str().to_string()))
                }
                _ => (None, None),
            };
            if ev.kind() != e.kind || ev.at() != e.at || node != e.node || step != e.step {
                return Err(format!(
                    "event {}: its row (kind, at, node, step) does not agree with its data",
                    e.seq
                ));
            }
        }
        Ok(())
    }

    /// Why `self` (what a journal holds) and `other` differ, if they do.
    pub fn difference(&self, other: &RunDump) -> Option<String> {
        if self == other {
            return None;
        }
        let mut why = Vec::new();
        let mut field = |name: &str, differs: bool| {
            if differs {
                why.push(name.to_string());
            }
        };
        field("fleet", self.fleet != other.fleet);
        field("plan", self.plan_source != other.plan_source);
        field(
            "plan path or hash",
            self.plan_path != other.plan_path || self.plan_hash != other.plan_hash,
        );
        field("release", self.version != other.version);
        field(
            "status",
            self.status != other.status || self.reason != other.reason,
        );
        field(
            "times",
            self.created_at != other.created_at || self.updated_at != other.updated_at,
        );
        field("commands", self.commands != other.commands);
        let mut s = why.join(", ");
        if self.events.len() != other.events.len() {
            s = join(
                s,
                format!(
                    "{} events here, {} in the dump",
                    self.events.len(),
                    other.events.len()
                ),
            );
        } else if let Some((a, _)) = self.events.iter().zip(&other.events).find(|(a, b)| a != b) {
            s = join(s, format!("event {} differs", a.seq));
        }
        Some(s)
    }
}

fn join(a: String, b: String) -> String {
    if a.is_empty() {
        b
    } else {
        format!("{a}; {b}")
    }
}

impl CampaignDump {
    pub fn check(&self) -> Result<(), String> {
        if self.id.trim().is_empty() {
            return Err("empty id".into());
        }
        for (i, s) in self.stages.iter().enumerate() {
            if s.index != i {
                return Err(format!("stage {} has index {}", i + 1, s.index + 1));
            }
        }
        Ok(())
    }

    pub fn difference(&self, other: &CampaignDump) -> Option<String> {
        if self == other {
            return None;
        }
        if self.stages.len() != other.stages.len() {
            return Some(format!(
                "{} stages here, {} in the dump",
                self.stages.len(),
                other.stages.len()
            ));
        }
        if let Some((a, _)) = self.stages.iter().zip(&other.stages).find(|(a, b)| a != b) {
            return Some(format!("stage {} differs", a.index + 1));
        }
        Some("its record differs (status, times, process or system file)".into())
    }
}

/// One line of a dump, read with a bound on its size.
pub enum ReadLine {
    /// The line's text (without its newline).
    Line(String),
    /// Longer than `max` bytes: skipped to its end.
    TooLong,
    /// Not UTF-8.
    NotText,
    Eof,
}

/// Read the next line, at most `max` bytes of it (the rest of a longer
/// line is read and dropped).
pub fn read_line(r: &mut dyn BufRead, max: usize) -> std::io::Result<ReadLine> {
    let mut buf = Vec::new();
    let mut too_long = false;
    let mut any = false;
    loop {
        let chunk = r.fill_buf()?;
        if chunk.is_empty() {
            break;
        }
        any = true;
        let (take, done) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (i, true),
            None => (chunk.len(), false),
        };
        if !too_long {
            if buf.len() + take > max {
                too_long = true;
                buf = Vec::new();
            } else {
                buf.extend_from_slice(&chunk[..take]);
            }
        }
        r.consume(if done { take + 1 } else { take });
        if done {
            break;
        }
    }
    if !any {
        return Ok(ReadLine::Eof);
    }
    if too_long {
        return Ok(ReadLine::TooLong);
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(match String::from_utf8(buf) {
        Ok(s) => ReadLine::Line(s),
        Err(_) => ReadLine::NotText,
    })
}

/// The generic part of importing a campaign, for a store that holds it as
/// a [`CampaignRecord`]: `existing` is what the store has under its id.
pub fn compare_campaign(
    existing: Option<CampaignDump>,
    c: &CampaignDump,
    location: String,
) -> Result<Option<Imported>, JournalError> {
    match existing {
        None => Ok(None),
        Some(e) => match e.difference(c) {
            None => Ok(Some(Imported::Skipped)),
            Some(why) => Err(JournalError::ImportConflict {
                what: "campaign",
                id: c.id.clone(),
                location,
                why,
            }),
        },
    }
}

/// The same for a run.
pub fn compare_run(
    existing: Option<RunDump>,
    r: &RunDump,
    location: String,
) -> Result<Option<Imported>, JournalError> {
    match existing {
        None => Ok(None),
        Some(e) => match e.difference(r) {
            None => Ok(Some(Imported::Skipped)),
            Some(why) => Err(JournalError::ImportConflict {
                what: "run",
                id: r.id.clone(),
                location,
                why,
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> RunDump {
        let ev = Event::Finished {
            at: 5,
            outcome: glidepath_core::Outcome::Succeeded,
            reason: "done".into(),
        };
        RunDump {
            id: "r1".into(),
            fleet: "f".into(),
            plan_path: "p".into(),
            plan_hash: "h".into(),
            plan_source: "[release]\n".into(),
            version: "2".into(),
            status: RunStatus::Succeeded,
            reason: "done".into(),
            created_at: 1,
            updated_at: 5,
            events: vec![EventRow {
                seq: 1,
                at: 5,
                kind: ev.kind().into(),
                node: None,
                step: None,
                data: serde_json::to_string(&ev).unwrap(),
            }],
            commands: vec![],
        }
    }

    fn line(r: &RunDump) -> String {
        let mut out = Vec::new();
        write_record(&mut out, &Record::Run(r.clone())).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_line_reads_back_as_written() {
        let text = line(&run());
        assert_eq!(parse_record(text.trim_end()).unwrap(), Record::Run(run()));
    }

    #[test]
    fn an_edited_line_is_refused() {
        let text = line(&run()).replace("\\\"done\\\"", "\\\"fine\\\"");
        assert!(text.contains("fine"), "{text}");
        let e = parse_record(text.trim_end()).unwrap_err();
        assert!(e.contains("does not match its sha256"), "{e}");
    }

    #[test]
    fn an_event_that_disagrees_with_its_row_is_refused() {
        let mut r = run();
        r.events[0].kind = "started".into();
        let e = parse_record(line(&r).trim_end()).unwrap_err();
        assert!(e.contains("event 1") && e.contains("does not agree"), "{e}");
        let mut r = run();
        r.events[0].seq = 2;
        let e = parse_record(line(&r).trim_end()).unwrap_err();
        assert!(e.contains("sequence number 2"), "{e}");
    }

    #[test]
    fn a_newer_or_foreign_header_is_refused() {
        assert!(parse_header(r#"{"format":"glidepath-journal","version":1}"#).is_ok());
        let e = parse_header(r#"{"format":"glidepath-journal","version":9}"#).unwrap_err();
        assert!(e.contains("newer glidepath"), "{e}");
        let e = parse_header(r#"{"format":"other","version":1}"#).unwrap_err();
        assert!(e.contains("not a glidepath journal dump"), "{e}");
    }

    #[test]
    fn a_long_line_is_skipped_to_its_end() {
        let text = format!("{}\nshort\n", "x".repeat(100));
        let mut r = std::io::BufReader::with_capacity(16, text.as_bytes());
        assert!(matches!(read_line(&mut r, 50).unwrap(), ReadLine::TooLong));
        assert!(matches!(read_line(&mut r, 50).unwrap(), ReadLine::Line(s) if s == "short"));
        assert!(matches!(read_line(&mut r, 50).unwrap(), ReadLine::Eof));
    }
}
