//! The journal's vocabulary for campaigns (`glidepath upgrade`): a campaign
//! is the system file's text, the target, and its stages in order, each
//! with what it does, its status, and the run that carries it out.

use super::UnknownName;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Where a campaign stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignStatus {
    /// A process carries it out (or did, until it died: `upgrade --resume`).
    Running,
    /// Every stage succeeded.
    Succeeded,
    /// A stage failed (its run rolled back, or its flag command failed):
    /// not resumable; the earlier stages stay as they are.
    Failed,
    /// Stopped without a failure (a stage refused by preflight, aborted by
    /// an operator, suspended by an outage, its fleet locked): resumable.
    Stopped,
}

/// Where one stage stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageStatus {
    Pending,
    /// Started: its run (or flag command) is under way, or was when the
    /// process died.
    Running,
    Succeeded,
    /// Its run rolled back (or failed to), or its flag command failed.
    Failed,
    /// Its run was refused before any node changed, or aborted by an
    /// operator: `upgrade --resume` starts a new run for it.
    Stopped,
}

macro_rules! names {
    ($t:ty, $($v:ident = $s:literal),+) => {
        impl $t {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),+ }
            }
        }
        impl std::str::FromStr for $t {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, UnknownName> {
                match s { $($s => Ok(Self::$v),)+ _ => Err(UnknownName(s.to_string())) }
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

names!(
    CampaignStatus,
    Running = "running",
    Succeeded = "succeeded",
    Failed = "failed",
    Stopped = "stopped"
);
names!(
    StageStatus,
    Pending = "pending",
    Running = "running",
    Succeeded = "succeeded",
    Failed = "failed",
    Stopped = "stopped"
);

/// What a stage does: everything needed to carry it out, so that a resumed
/// campaign does not depend on the system file as it is now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StageAction {
    /// Run the component's rollout plan with its release overridden.
    Upgrade {
        component: String,
        from: Vec<String>,
        to: String,
        rollout_plan: PathBuf,
        artifact: PathBuf,
        sha256: String,
    },
    /// Switch a capability flag on with the system file's command.
    EnableFlag {
        flag: String,
        /// The command as it runs (its placeholders filled and quoted).
        command: String,
        timeout_ms: u64,
        /// Where it runs (the system file's directory).
        dir: PathBuf,
    },
}

impl StageAction {
    /// One line: `server 1.0 → 1.5`, `switch flag streaming on`.
    pub fn title(&self) -> String {
        match self {
            StageAction::Upgrade {
                component,
                from,
                to,
                ..
            } => format!("{component} {} → {to}", from.join("+")),
            StageAction::EnableFlag { flag, .. } => format!("switch flag `{flag}` on"),
        }
    }
}

/// A stage row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageRecord {
    /// 0-based position in the campaign.
    pub index: usize,
    pub action: StageAction,
    /// Why it comes before the next stage (the planner's reason).
    pub why: String,
    pub status: StageStatus,
    /// The run carrying it out (the latest one, for a stage run again after
    /// a refusal).
    pub run_id: Option<String>,
    /// The outcome in words.
    pub detail: String,
    pub updated_at: u64,
}

/// A campaign row with its stages, in order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CampaignRecord {
    pub id: String,
    pub system_path: String,
    /// The system file's text when the campaign started.
    #[serde(skip)]
    pub system_source: String,
    /// `COMPONENT=RELEASE` targets.
    pub to: Vec<String>,
    /// Capability flags to switch on.
    pub enable: Vec<String>,
    pub status: CampaignStatus,
    pub reason: String,
    /// The process carrying it out.
    pub pid: u32,
    pub host: String,
    pub created_at: u64,
    pub updated_at: u64,
    pub stages: Vec<StageRecord>,
}

impl CampaignRecord {
    /// The stage under way or where it stopped: the first one that has not
    /// succeeded (`None` once every stage did).
    pub fn current(&self) -> Option<&StageRecord> {
        self.stages
            .iter()
            .find(|s| s.status != StageStatus::Succeeded)
    }
}
