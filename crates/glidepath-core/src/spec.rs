//! What the core needs to know about a rollout: the node groups (canary, then
//! batches), concurrency bounds, deadlines and SLI checks. The plan loader in
//! the `glidepath` crate builds a [`RolloutSpec`] from a validated plan file;
//! tests build one by hand.

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch. The core never reads a clock: every
/// function that needs the time takes `now: Millis`.
pub type Millis = u64;

/// How a check treats a probe that had too few samples to judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum InconclusivePolicy {
    /// Keep probing; if the window ends without enough data, fail.
    #[default]
    Wait,
    /// Fail as soon as a probe is inconclusive.
    Fail,
    /// Treat "not enough data" as a pass (explicitly chosen by the plan).
    Pass,
}

/// One SLI check: a value compared to a threshold, judged only on enough samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckSpec {
    pub name: String,
    /// Breach when the value is above this.
    pub max: Option<f64>,
    /// Breach when the value is below this.
    pub min: Option<f64>,
    /// Fewer samples than this make the probe inconclusive.
    pub min_samples: u64,
    pub on_inconclusive: InconclusivePolicy,
    /// Judge the canary against its baseline (the nodes still on the old
    /// release), not only against `max`/`min`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compare: Option<CompareSpec>,
    /// Computed and reported, never acted on (`mode = "shadow"`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shadow: bool,
}

/// How a check compares the canary group with its baseline: a sequential
/// test (`crate::seq`) of the canary's rate of bad events (errors, or
/// requests slower than a bound) against the baseline's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareSpec {
    /// The smallest regression that counts: a canary whose rate of bad
    /// events is at most `1 + tolerance` times the baseline's is no worse.
    pub tolerance: f64,
    /// This check's share of the rollout's false-regression budget: the
    /// probability that it ever calls a canary that is no worse a
    /// regression stays below it, however often it looks.
    pub alpha: f64,
    /// The share of requests the canary group should get (its nodes among
    /// the canary and baseline nodes): the traffic check's reference.
    pub expected_share: f64,
    /// For a latency check, the quantile whose bound in the baseline's
    /// histogram splits slow requests from fast ones (e.g. 0.95).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantile: Option<f64>,
}

/// What a window does when the canary and its baseline are both past a
/// check's absolute limit: a fleet-wide incident, not a bad release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum IncidentPolicy {
    /// Pause the window (its end moves on) until the fleet recovers.
    #[default]
    Pause,
    /// Roll the canary back.
    Rollback,
}

/// The SLI window watched after the canary group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowSpec {
    pub length_ms: u64,
    pub interval_ms: u64,
    pub checks: Vec<CheckSpec>,
    /// Roll back automatically on a breach; otherwise pause for the operator.
    pub rollback_on_breach: bool,
    /// When the metrics source cannot be read (an infrastructure fault, not a
    /// verdict): `true` pauses the window until it answers again, `false`
    /// rolls back.
    pub pause_on_metrics_error: bool,
    /// A fleet-wide incident during the window: pause or roll back.
    #[serde(default)]
    pub on_incident: IncidentPolicy,
    /// After each batch but the last, watch the nodes upgraded so far this
    /// long before the next batch starts (`batch_bake`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bake_ms: Option<u64>,
    /// After the last batch, watch the whole fleet this long before the run
    /// succeeds (`watch_after`): a breach reverts every node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch_ms: Option<u64>,
}

impl WindowSpec {
    /// How long the SLI window after group `g` (of `groups`) lasts, if
    /// there is one: the canary's window, a bake after a batch, or the
    /// watch after the last batch.
    ///
    /// ```
    /// use glidepath_core::WindowSpec;
    /// let w = WindowSpec { length_ms: 10, interval_ms: 1, checks: vec![], rollback_on_breach: true,
    ///     pause_on_metrics_error: true, on_incident: Default::default(), bake_ms: Some(5), watch_ms: Some(30) };
    /// assert_eq!([0, 1, 2, 3].map(|g| w.length_after(g, 4)), [Some(10), Some(5), Some(5), Some(30)]);
    /// ```
    pub fn length_after(&self, g: usize, groups: usize) -> Option<u64> {
        if g == 0 {
            Some(self.length_ms)
        } else if g + 1 == groups {
            self.watch_ms.or(self.bake_ms)
        } else {
            self.bake_ms
        }
    }
}

/// What to do when a drained node still has connections at the drain timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrainTimeoutPolicy {
    Proceed,
    Fail,
}

/// How infrastructure faults (a balancer, deployer or ssh endpoint that does
/// not answer) are retried. A fault is never a verdict on the release: the
/// step is repeated after `backoff_ms`, doubling up to `max_backoff_ms`,
/// and the run pauses with the reason visible in `status`. When the outage
/// has lasted `deadline_ms`, the run takes no new step, lets the steps in
/// flight finish, and stops resumable (`Event::Suspended`, exit 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetrySpec {
    pub backoff_ms: u64,
    pub max_backoff_ms: u64,
    pub deadline_ms: u64,
}

impl Default for RetrySpec {
    /// 500 ms, doubling up to 10 s, for at most 5 minutes.
    fn default() -> Self {
        RetrySpec {
            backoff_ms: 500,
            max_backoff_ms: 10_000,
            deadline_ms: 300_000,
        }
    }
}

impl RetrySpec {
    /// The wait after the `tries`-th failed attempt (1-based).
    ///
    /// ```
    /// use glidepath_core::RetrySpec;
    /// let r = RetrySpec { backoff_ms: 200, max_backoff_ms: 1_000, deadline_ms: 60_000 };
    /// assert_eq!([1, 2, 3, 4, 30].map(|t| r.delay(t)), [200, 400, 800, 1_000, 1_000]);
    /// ```
    pub fn delay(&self, tries: u32) -> u64 {
        let shift = tries.saturating_sub(1).min(32);
        self.backoff_ms
            .saturating_mul(1u64 << shift)
            .min(self.max_backoff_ms.max(self.backoff_ms))
    }
}

/// When a task runs: before the first node changes, or after the last
/// batch and the watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskPhase {
    Pre,
    Post,
}

impl TaskPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskPhase::Pre => "pre",
            TaskPhase::Post => "post",
        }
    }
}

/// One `[[pre]]` or `[[post]]` task as the core knows it: what it is
/// called, how often it may be tried, whether it may run again after a
/// crash cut it short, and whether it can be undone. What it does (a
/// command, a migration, a probe) is the executor's business.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub name: String,
    /// What it does, for reasons and summaries (`migrate 001_expand.sql`).
    pub what: String,
    /// Attempts before the task counts as failed (1 = no retry).
    pub attempts: u32,
    /// The wait between attempts.
    pub retry_delay_ms: u64,
    /// Safe to run again when a crash cut an attempt short. A task that is
    /// not is held for a person after a crash instead of repeated.
    pub idempotent: bool,
    /// `Some(note)`: what running it changes for good (a contract
    /// migration, a flipped flag). Once it has run, the run never rolls
    /// back on its own, and an operator's rollback needs `--force`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub irreversible: Option<String>,
}

/// What a failed `post` task does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PostFailurePolicy {
    /// Roll every node back (unless an irreversible task has run: then hold).
    #[default]
    Rollback,
    /// Hold for a person: `promote` accepts, `rollback` restores.
    Hold,
}

/// The first wait between two health checks of a node (see
/// [`RolloutSpec::health_interval_ms`]).
pub const HEALTH_FIRST_RETRY_MS: u64 = 50;

/// Everything the decision core knows about a rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutSpec {
    /// Version being rolled out.
    pub version: String,
    /// Node groups in order: `groups[0]` is the canary group, the rest are batches.
    pub groups: Vec<Vec<String>>,
    /// At most this many nodes of a group out of rotation at once.
    pub max_unavailable: usize,
    /// Wait for `promote` after finishing these group indices (0 = canary).
    pub pause_after: Vec<usize>,
    pub window: Option<WindowSpec>,
    pub drain_timeout_ms: u64,
    pub drain_poll_ms: u64,
    pub on_drain_timeout: DrainTimeoutPolicy,
    pub health_deadline_ms: u64,
    /// The longest wait between two health checks of a node: the first
    /// retry comes [`HEALTH_FIRST_RETRY_MS`] after the first try, and each
    /// wait is half the time waited so far, up to this (a node that is up
    /// 100 ms after its restart is seen then, not a whole interval later;
    /// one that takes a minute is polled once an interval).
    pub health_interval_ms: u64,
    /// Retry budget for infrastructure faults.
    #[serde(default)]
    pub retry: RetrySpec,
    /// Tasks before the first node changes (`[[pre]]`), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre: Vec<TaskSpec>,
    /// Tasks after the last batch and the watch (`[[post]]`), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post: Vec<TaskSpec>,
    /// What a `post` task that fails does to the run.
    #[serde(default)]
    pub on_post_failure: PostFailurePolicy,
    /// The failure budget (`max_failed_nodes`): up to this many batch nodes
    /// may fail on the forward path; each is restored to its last-known-good
    /// release on its own and the run goes on. One more failure rolls every
    /// node back. A canary node's failure always rolls back. 0: any failure
    /// rolls back.
    #[serde(default)]
    pub max_failed_nodes: usize,
}

impl RolloutSpec {
    /// All nodes, in rollout order.
    pub fn nodes(&self) -> impl Iterator<Item = &String> {
        self.groups.iter().flatten()
    }

    /// Whether group `g` is the last batch (after a canary): the window
    /// after it watches the whole fleet.
    pub fn is_last_batch(&self, g: usize) -> bool {
        g > 0 && g + 1 == self.groups.len()
    }

    /// The tasks of a phase.
    pub fn tasks(&self, phase: TaskPhase) -> &[TaskSpec] {
        match phase {
            TaskPhase::Pre => &self.pre,
            TaskPhase::Post => &self.post,
        }
    }

    /// The group a node belongs to.
    pub fn group_of(&self, node: &str) -> Option<usize> {
        self.groups.iter().position(|g| g.iter().any(|n| n == node))
    }
}

/// A batch size: a node count or a percentage of the peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BatchSize {
    Count(usize),
    Percent(u8),
}

impl BatchSize {
    /// Nodes per batch for `peers` peers: a percentage rounds up, and a batch
    /// always holds at least one node.
    ///
    /// ```
    /// use glidepath_core::BatchSize;
    /// assert_eq!(BatchSize::Percent(25).resolve(10), 3);
    /// assert_eq!(BatchSize::Percent(1).resolve(10), 1);
    /// assert_eq!(BatchSize::Count(4).resolve(3), 3);
    /// ```
    pub fn resolve(self, peers: usize) -> usize {
        let n = match self {
            BatchSize::Count(n) => n,
            BatchSize::Percent(p) => (peers * p as usize).div_ceil(100),
        };
        n.clamp(1, peers.max(1))
    }
}

/// Split a fleet into the canary group and batches of peers, keeping fleet order.
///
/// ```
/// use glidepath_core::{plan_groups, BatchSize};
/// let nodes: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
/// let g = plan_groups(&nodes, &["c".to_string()], BatchSize::Count(2));
/// assert_eq!(g, vec![vec!["c"], vec!["a", "b"], vec!["d", "e"]]);
/// ```
pub fn plan_groups(nodes: &[String], canary: &[String], batch: BatchSize) -> Vec<Vec<String>> {
    let mut groups = Vec::new();
    let canary_group: Vec<String> = nodes
        .iter()
        .filter(|n| canary.contains(n))
        .cloned()
        .collect();
    if !canary_group.is_empty() {
        groups.push(canary_group);
    }
    let peers: Vec<String> = nodes
        .iter()
        .filter(|n| !canary.contains(n))
        .cloned()
        .collect();
    let size = batch.resolve(peers.len());
    for chunk in peers.chunks(size) {
        groups.push(chunk.to_vec());
    }
    groups
}

/// A failure budget (`max_failed_nodes`): a node count or a percentage of
/// the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureBudget {
    Count(usize),
    Percent(u8),
}

impl Default for FailureBudget {
    /// No failure tolerated: any failed node rolls the run back.
    fn default() -> Self {
        FailureBudget::Count(0)
    }
}

impl FailureBudget {
    /// Nodes allowed to fail in a fleet of `fleet` nodes: a percentage
    /// rounds down (a budget never tolerates more than it says), so it may
    /// come to 0.
    ///
    /// ```
    /// use glidepath_core::FailureBudget;
    /// assert_eq!(FailureBudget::Percent(10).resolve(25), 2);
    /// assert_eq!(FailureBudget::Percent(10).resolve(9), 0);
    /// assert_eq!(FailureBudget::Count(3).resolve(9), 3);
    /// ```
    pub fn resolve(self, fleet: usize) -> usize {
        match self {
            FailureBudget::Count(n) => n,
            FailureBudget::Percent(p) => fleet * p as usize / 100,
        }
    }
}
