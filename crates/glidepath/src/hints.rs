//! Copy-paste-able hints: every command a message suggests is spelled here,
//! with the run's real id and, when the journal is not this machine's
//! default one, `--journal LOCATION` (a path as given, or a PostgreSQL URL
//! without its password), quoted for a shell when it needs to be. The core's
//! texts name a run `RUN` (it knows neither its id nor its journal):
//! [`Hints::fill`] spells them out.

use crate::journal::{default_path, Location, RunStatus};
use glidepath_core::{NodeStatus, Phase, RolloutSpec, RunState};

/// What a run's state lets a person do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Situation {
    /// Waiting for a person (a pause point, a held breach or task): promote
    /// goes on, rollback and abort stop.
    Paused,
    /// Under way, its process alive: rollback or abort.
    Running,
    /// Rolling back or aborting: let it end.
    Unwinding,
    /// Stopped resumable (suspended), or its process is gone: resume
    /// continues, rollback restores instead.
    Stopped,
    /// Ended, with nodes on the run's release: rollback restores them.
    Changed,
    /// Aborted: the nodes it changed stay as they are; rollback restores
    /// them, a new run starts again.
    Aborted,
    /// Ended with a node kept out of rotation: fix it, then resolve.
    RollbackFailed,
    /// Ended, nothing left to do.
    Done,
}

/// The commands for one run in one journal.
#[derive(Debug, Clone)]
pub struct Hints {
    pub run: String,
    /// `--journal …` to add: `None` for the default journal.
    pub journal: Option<String>,
}

/// `--journal`'s value for a journal at `location` (as [`Location`]'s
/// `Display` or `Store::location` give it): `None` when it is this
/// machine's default journal (no flag needed).
pub fn journal_arg(location: &str) -> Option<String> {
    let default = Location::from(default_path()).to_string();
    (location != default).then(|| location.to_string())
}

/// A word as a POSIX shell reads it back: bare when it is plain, else
/// single-quoted.
pub fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./:@%+=,-".contains(c));
    if plain {
        s.to_string()
    } else {
        crate::template::sq(s)
    }
}

impl Hints {
    /// Hints for `run` in the journal at `location` (see [`journal_arg`]).
    pub fn new(run: &str, location: &str) -> Self {
        Hints {
            run: run.to_string(),
            journal: journal_arg(location),
        }
    }

    /// Hints for `run` with `--journal` already decided (`None`: default).
    pub fn with_arg(run: &str, journal: Option<String>) -> Self {
        Hints {
            run: run.to_string(),
            journal,
        }
    }

    /// ` --journal LOCATION` (quoted), or nothing for the default journal.
    pub fn journal_flag(&self) -> String {
        self.journal
            .as_deref()
            .map(|j| format!(" --journal {}", shell_word(j)))
            .unwrap_or_default()
    }

    /// `glidepath WHAT RUN [--journal J]`.
    pub fn cmd(&self, what: &str) -> String {
        format!("glidepath {what} {}{}", self.run, self.journal_flag())
    }

    /// `glidepath WHAT RUN [--journal J] REST` (`REST` are more arguments).
    pub fn cmd_with(&self, what: &str, rest: &str) -> String {
        format!("{} {rest}", self.cmd(what))
    }

    /// The commands that apply in `s`, each with what it does.
    pub fn next_commands(&self, s: Situation) -> Vec<String> {
        let c = |what: &str, does: &str| format!("{}  ({does})", self.cmd(what));
        match s {
            Situation::Paused => vec![
                c("promote", "goes on"),
                c("rollback", "reverts every changed node"),
                c("abort", "stops safely: nodes half-deployed restored"),
            ],
            Situation::Running => vec![
                c("rollback", "reverts every changed node"),
                c("abort", "stops safely: nodes half-deployed restored"),
            ],
            Situation::Unwinding => vec![],
            Situation::Stopped => vec![
                c("resume", "continues it"),
                c("rollback", "restores it instead"),
            ],
            Situation::Changed => vec![c("rollback", "restores every node")],
            Situation::Aborted => vec![
                c("status", "shows each node as the abort left it"),
                c("rollback", "restores the nodes it changed"),
            ],
            Situation::RollbackFailed => vec![
                c("status", "names the node kept out of rotation and why"),
                format!(
                    "{}  (once a person fixed the node and put it back)",
                    self.cmd_with("resolve", "--reason \"what was fixed\"")
                ),
            ],
            Situation::Done => vec![],
        }
    }

    /// The core's text with each `glidepath X RUN` spelled out for this run
    /// (and journal): `RUN` is replaced where it follows a `glidepath`
    /// command word, and the `--journal` flag is added after it.
    pub fn fill(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len() + 32);
        let mut rest = text;
        while let Some(at) = rest.find("glidepath ") {
            out.push_str(&rest[..at]);
            let after = &rest[at + "glidepath ".len()..];
            let word_end = after
                .find(|c: char| !c.is_ascii_lowercase())
                .unwrap_or(after.len());
            let (word, tail) = after.split_at(word_end);
            if !word.is_empty() {
                if let Some(t) = tail.strip_prefix(" RUN") {
                    if t.is_empty() || !t.starts_with(|c: char| c.is_alphanumeric() || c == '_') {
                        out.push_str(&self.cmd(word));
                        rest = t;
                        continue;
                    }
                }
            }
            out.push_str("glidepath ");
            rest = after;
        }
        out.push_str(rest);
        out
    }
}

/// Some node runs the run's release now (journaled: switched to it and
/// not switched back).
pub fn changed(state: &RunState) -> bool {
    state
        .nodes
        .values()
        .any(|n| n.switched || n.status == NodeStatus::Updated)
}

/// Where a run stands for a person: its journaled status, its state, and
/// whether the process holding it is alive (`None`: not known or none).
pub fn situation(
    status: RunStatus,
    spec: &RolloutSpec,
    state: &RunState,
    holder_alive: Option<bool>,
) -> Situation {
    match status {
        RunStatus::Refused | RunStatus::Preflight | RunStatus::Failed => Situation::Done,
        RunStatus::RollbackFailed => Situation::RollbackFailed,
        // a run that went on with a node kept out of rotation for a person
        s if s.is_final() && state.resolved.is_none() && state.kept_out() > 0 => {
            Situation::RollbackFailed
        }
        RunStatus::Aborted if changed(state) => Situation::Aborted,
        RunStatus::Succeeded if changed(state) => Situation::Changed,
        s if s.is_final() => Situation::Done,
        RunStatus::Suspended => Situation::Stopped,
        _ if holder_alive == Some(false) => Situation::Stopped,
        _ if matches!(state.phase, Phase::RollingBack | Phase::Aborting) => Situation::Unwinding,
        _ if glidepath_core::awaiting_promotion(spec, state).is_some() => Situation::Paused,
        _ => Situation::Running,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_spells_out_every_command_of_a_core_text() {
        let h = Hints::with_arg("r1", Some("/tmp/my journal.db".into()));
        let t = "paused: run `glidepath promote RUN` to continue or `glidepath rollback RUN --force --reason TEXT`; RUNNING glidepath status";
        assert_eq!(
            h.fill(t),
            "paused: run `glidepath promote r1 --journal '/tmp/my journal.db'` to continue or `glidepath rollback r1 --journal '/tmp/my journal.db' --force --reason TEXT`; RUNNING glidepath status"
        );
        let d = Hints::with_arg("r1", None);
        assert_eq!(d.fill("`glidepath promote RUN`"), "`glidepath promote r1`");
        assert_eq!(
            d.fill("glidepath promote RUNNER"),
            "glidepath promote RUNNER"
        );
    }

    #[test]
    fn the_default_journal_needs_no_flag_and_others_are_quoted() {
        let def = Location::from(default_path()).to_string();
        assert_eq!(journal_arg(&def), None);
        assert_eq!(
            Hints::new("r1", "j.db").cmd("abort"),
            "glidepath abort r1 --journal j.db"
        );
        assert_eq!(
            Hints::new("r1", "postgres://gp@db:5432/glidepath").cmd("promote"),
            "glidepath promote r1 --journal postgres://gp@db:5432/glidepath"
        );
        assert_eq!(shell_word("it's"), "'it'\\''s'");
    }

    #[test]
    fn a_pause_offers_promote_rollback_and_abort() {
        let h = Hints::with_arg("r9", None);
        let c = h.next_commands(Situation::Paused);
        assert!(c[0].starts_with("glidepath promote r9  ("), "{c:?}");
        assert!(c.iter().any(|l| l.starts_with("glidepath abort r9")));
        assert!(h
            .next_commands(Situation::RollbackFailed)
            .iter()
            .any(|l| l.contains("glidepath resolve r9 --reason")));
    }
}
