//! Notifications (`[notify]`): a subscriber of the event bus that turns the
//! journaled events into the few a person wants to hear about (start, a pause
//! waiting for a person, a breach or rollback decision, an incident pause, a
//! suspension, the end), and delivers them to webhooks, Slack-compatible
//! incoming webhooks and commands.
//!
//! Delivery never blocks or fails the rollout: [`Notifier::event`] only
//! pushes onto one bounded queue per sink (a full queue drops its oldest
//! notification, with a warning), and one task per sink delivers in order,
//! each call bounded by the sink's timeout and [`BODY_MAX`], retried with
//! exponential backoff ([`ATTEMPTS`] at most, within [`RETRY_BUDGET`]).
//! [`Notifier::finish`] gives the deliveries in flight a bounded grace at
//! the end of a run. Failures go to stderr, naming the sink by its label
//! (`webhook 1`), never by its URL or token: secrets are read at each
//! delivery and never stored, logged or journaled.

use crate::config::{NotifyCfg, NotifyFormat, NotifyKind, NotifySink, NotifyUrl};
use crate::events::{Published, Subscriber};
use glidepath_core::{awaiting_promotion, CauseKind, Event, Outcome, Phase, RolloutSpec, RunState};
use serde::Serialize;
use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The notifications waiting per sink; past it, the oldest is dropped.
pub const QUEUE_MAX: usize = 64;
/// Delivery attempts per notification, at most.
pub const ATTEMPTS: u32 = 5;
/// The time one notification's retries may take, at most.
pub const RETRY_BUDGET: Duration = Duration::from_secs(30);
/// The first retry's delay; each next one doubles it.
pub const BACKOFF_FIRST: Duration = Duration::from_millis(250);
/// The largest body sent (a longer reason is clipped).
pub const BODY_MAX: usize = 64 * 1024;
/// The longest reason sent.
const REASON_MAX: usize = 4 * 1024;

/// One notification, as a webhook receives it (`format = "json"`).
#[derive(Debug, Clone, Serialize)]
pub struct Notification {
    /// `start`, `waiting`, `breach`, `rollback`, `incident`, `suspended`,
    /// `finished`, `failed`, `rollback_failed`.
    pub event: String,
    pub run_id: String,
    pub fleet: String,
    pub release: String,
    /// The run's status: `running`, `rolling_back`, `aborting`, or how it
    /// ended (`succeeded`, `rolled_back`, `aborted`, `failed`,
    /// `rollback_failed`).
    pub status: String,
    pub reason: String,
    /// The command that shows the run.
    pub hint: String,
    /// The journaled event's sequence number.
    pub seq: i64,
    #[serde(with = "crate::output::rfc3339")]
    pub at: u64,
}

impl Notification {
    /// The body for a sink's format, within [`BODY_MAX`].
    pub fn body(&self, format: NotifyFormat) -> Vec<u8> {
        let v = match format {
            NotifyFormat::Json => serde_json::to_value(self).expect("serializable"),
            NotifyFormat::Slack => serde_json::json!({ "text": self.text() }),
        };
        let b = serde_json::to_vec(&v).expect("serializable");
        if b.len() <= BODY_MAX {
            return b;
        }
        let mut short = self.clone();
        short.reason = clip(&self.reason, 256);
        short.body(format)
    }

    /// One line for people (Slack's `text`).
    pub fn text(&self) -> String {
        format!(
            "glidepath · {} · {} {}: {} ({}) — {} · `{}`",
            self.event, self.fleet, self.release, self.run_id, self.status, self.reason, self.hint
        )
    }
}

fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// What the notifier remembers between events, to notify a change once.
struct Seen {
    phase: Phase,
    held: bool,
    waiting: bool,
    incident: bool,
}

fn waiting(spec: &RolloutSpec, state: &RunState) -> Option<String> {
    let why = awaiting_promotion(spec, state)?;
    // the watch after the last batch ends by itself: nobody is waited for
    let watching = state.held.is_none()
        && state.window.is_some()
        && spec.is_last_batch(state.group)
        && !spec.pause_after.contains(&state.group);
    (!watching).then_some(why)
}

fn incident(state: &RunState) -> Option<String> {
    state
        .window
        .as_ref()
        .and_then(|w| w.incident_since.map(|_| w.incident_reason.clone()))
}

/// The notifications one journaled event gives, as (event, reason).
fn derive(
    spec: &RolloutSpec,
    seen: &mut Seen,
    event: &Event,
    state: &RunState,
) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    match event {
        Event::Started { before, .. } => out.push((
            "start",
            format!("rolling out {} to {} node(s)", spec.version, before.len()),
        )),
        Event::Suspended { reason, .. } => out.push(("suspended", reason.clone())),
        Event::Finished {
            outcome, reason, ..
        } => out.push((
            match outcome {
                Outcome::Failed => "failed",
                Outcome::RollbackFailed => "rollback_failed",
                _ => "finished",
            },
            reason.clone(),
        )),
        _ => {}
    }
    if seen.phase == Phase::Rolling && state.phase == Phase::RollingBack {
        let (kind, reason) = match &state.cause {
            Some(c) if c.kind == CauseKind::Sli => ("breach", c.reason.clone()),
            Some(c) => ("rollback", c.reason.clone()),
            None => ("rollback", "rolling back".to_string()),
        };
        out.push((kind, reason));
    }
    // a breach held for a person (no automatic rollback on SLI breaches):
    // the window's verdict set `held`
    let sli_verdict = match event {
        Event::WindowClosed { passed, .. } => !passed,
        Event::Outcome { step, .. } => step.kind == glidepath_core::StepKind::Probe,
        _ => false,
    };
    if let (false, true, Some(why)) = (seen.held, sli_verdict, &state.held) {
        out.push(("breach", why.clone()));
    }
    let w = waiting(spec, state);
    if let (false, Some(why)) = (seen.waiting, &w) {
        out.push((
            "waiting",
            format!("{why} (`glidepath promote` continues, `abort`/`rollback` stop)"),
        ));
    }
    let i = incident(state);
    if let (false, Some(why)) = (seen.incident, &i) {
        out.push(("incident", why.clone()));
    }
    seen.phase = state.phase;
    seen.held = state.held.is_some();
    seen.waiting = w.is_some();
    seen.incident = i.is_some();
    out
}

fn status(phase: Phase) -> String {
    match phase {
        Phase::Rolling => "running".into(),
        Phase::RollingBack => "rolling_back".into(),
        Phase::Aborting => "aborting".into(),
        Phase::Finished(o) => o.as_str().into(),
    }
}

/// One sink's queue, shared by the subscriber and the sink's task.
struct Queue {
    items: Mutex<VecDeque<Arc<Notification>>>,
    wake: tokio::sync::Notify,
    closed: AtomicBool,
    /// A delivery is in flight.
    busy: AtomicBool,
}

/// The run's notifier: an event-bus [`Subscriber`] that queues, and one
/// task per sink that delivers.
pub struct Notifier {
    spec: RolloutSpec,
    fleet: String,
    hint: String,
    seen: Mutex<Seen>,
    sinks: Vec<(NotifySink, Arc<Queue>)>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    grace: Duration,
}

impl Notifier {
    /// Start one delivery task per sink (call within a tokio runtime).
    /// `state` is the run's state now (a resumed run's is replayed), so a
    /// change is notified once across a resume.
    pub fn start(
        cfg: &NotifyCfg,
        spec: &RolloutSpec,
        fleet: &str,
        journal: &str,
        state: &RunState,
        cwd: PathBuf,
    ) -> Arc<Notifier> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        let mut sinks = Vec::new();
        let mut tasks = Vec::new();
        for s in &cfg.sinks {
            let q = Arc::new(Queue {
                items: Mutex::new(VecDeque::new()),
                wake: tokio::sync::Notify::new(),
                closed: AtomicBool::new(false),
                busy: AtomicBool::new(false),
            });
            if let NotifyKind::Webhook {
                url: NotifyUrl::Secret(sec),
                ..
            } = &s.kind
            {
                // say so now rather than at the first event (never the value)
                if let Err(why) = sec
                    .read()
                    .and_then(|u| crate::plan::notify::check_url(&u).map_err(|(w, _)| w))
                {
                    warn(&format!("notifications to {}: its URL: {why}", s.label));
                }
            }
            tasks.push(tokio::spawn(work(
                s.clone(),
                q.clone(),
                client.clone(),
                cwd.clone(),
            )));
            sinks.push((s.clone(), q));
        }
        let default = journal == crate::journal::default_path().display().to_string();
        Arc::new(Notifier {
            spec: spec.clone(),
            fleet: fleet.to_string(),
            hint: if default {
                "glidepath status {run}".into()
            } else {
                format!("glidepath status {{run}} --journal {journal}")
            },
            seen: Mutex::new(Seen {
                phase: state.phase,
                held: state.held.is_some(),
                waiting: waiting(spec, state).is_some(),
                incident: incident(state).is_some(),
            }),
            sinks,
            tasks: Mutex::new(tasks),
            grace: cfg.grace,
        })
    }

    /// Let the deliveries in flight and queued finish, for the plan's grace
    /// at most (`[notify] grace`, 5 s by default); what is left is dropped
    /// with a warning.
    pub async fn finish(&self) {
        for (_, q) in &self.sinks {
            q.closed.store(true, Ordering::SeqCst);
            q.wake.notify_one();
        }
        let tasks = std::mem::take(&mut *self.tasks.lock().expect("notifier lock"));
        let aborts: Vec<_> = tasks.iter().map(|t| t.abort_handle()).collect();
        let all = futures_join(tasks);
        if tokio::time::timeout(self.grace, all).await.is_err() {
            for a in aborts {
                a.abort();
            }
            let left: Vec<String> = self
                .sinks
                .iter()
                .filter_map(|(s, q)| {
                    let n = q.items.lock().expect("queue lock").len()
                        + usize::from(q.busy.load(Ordering::SeqCst));
                    (n > 0).then(|| format!("{} to {}", n, s.label))
                })
                .collect();
            warn(&format!(
                "notifications: gave up after the {}s grace ([notify] grace), undelivered: {}",
                self.grace.as_secs_f64(),
                left.join(", ")
            ));
        }
    }

    fn push(&self, sink: &NotifySink, q: &Queue, n: Arc<Notification>) {
        if sink
            .on
            .as_ref()
            .is_some_and(|on| !on.iter().any(|e| *e == n.event))
        {
            return;
        }
        let mut items = q.items.lock().expect("queue lock");
        if items.len() >= QUEUE_MAX {
            if let Some(old) = items.pop_front() {
                warn(&format!(
                    "notifications to {}: queue full, dropped the oldest ({} of run {})",
                    sink.label, old.event, old.run_id
                ));
            }
        }
        items.push_back(n);
        drop(items);
        q.wake.notify_one();
    }
}

async fn futures_join(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for t in tasks {
        let _ = t.await;
    }
}

impl Subscriber for Notifier {
    fn event(&self, p: &Published, state: &RunState) {
        let derived = {
            let mut seen = self.seen.lock().expect("notifier lock");
            derive(&self.spec, &mut seen, &p.event, state)
        };
        for (event, reason) in derived {
            let n = Arc::new(Notification {
                event: event.to_string(),
                run_id: p.run_id.clone(),
                fleet: self.fleet.clone(),
                release: self.spec.version.clone(),
                status: status(state.phase),
                reason: clip(&reason, REASON_MAX),
                hint: self.hint.replace("{run}", &p.run_id),
                seq: p.seq,
                at: event_at(&p.event),
            });
            for (s, q) in &self.sinks {
                self.push(s, q, n.clone());
            }
        }
    }
}

fn event_at(e: &Event) -> u64 {
    serde_json::to_value(e)
        .ok()
        .and_then(|v| v.get("at").and_then(|a| a.as_u64()))
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)
        })
}

fn warn(msg: &str) {
    let _ = writeln!(std::io::stderr(), "glidepath: warning: {msg}");
}

/// One sink's task: deliver its queue in order until it is closed and empty.
async fn work(sink: NotifySink, q: Arc<Queue>, client: reqwest::Client, cwd: PathBuf) {
    loop {
        let next = q.items.lock().expect("queue lock").pop_front();
        match next {
            Some(n) => {
                q.busy.store(true, Ordering::SeqCst);
                deliver(&sink, &n, &client, &cwd).await;
                q.busy.store(false, Ordering::SeqCst);
            }
            None if q.closed.load(Ordering::SeqCst) => return,
            None => q.wake.notified().await,
        }
    }
}

/// Why one attempt failed, and whether another may succeed.
struct Failure {
    why: String,
    retry: bool,
}

async fn deliver(sink: &NotifySink, n: &Notification, client: &reqwest::Client, cwd: &Path) {
    let started = Instant::now();
    let body = n.body(sink.format);
    let mut delay = BACKOFF_FIRST;
    let mut attempt = 1;
    loop {
        let f = match attempt_once(sink, &body, client, cwd).await {
            Ok(()) => return,
            Err(f) => f,
        };
        let out_of_time = started.elapsed() + delay > RETRY_BUDGET;
        if !f.retry || attempt >= ATTEMPTS || out_of_time {
            warn(&format!(
                "notification `{}` of run {} to {} not delivered after {attempt} attempt(s): {}",
                n.event, n.run_id, sink.label, f.why
            ));
            return;
        }
        tokio::time::sleep(delay).await;
        delay *= 2;
        attempt += 1;
    }
}

/// A request's error with its causes, without the URL (it may be the
/// secret): reqwest's own mention is dropped, and any echo of the URL or
/// its host in a cause is masked.
fn redacted(e: reqwest::Error, url: &str) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    let host = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string));
    let mut text = text.replace(url, "<url>");
    if let Some(h) = host.filter(|h| !h.is_empty()) {
        text = text.replace(&h, "<host>");
    }
    text
}

async fn attempt_once(
    sink: &NotifySink,
    body: &[u8],
    client: &reqwest::Client,
    cwd: &Path,
) -> Result<(), Failure> {
    match &sink.kind {
        NotifyKind::Webhook { url, token } => {
            let url = match url {
                NotifyUrl::Plain(u) => u.clone(),
                NotifyUrl::Secret(s) => s.read().map_err(|why| Failure {
                    why: format!("its URL: {why}"),
                    retry: true,
                })?,
            };
            crate::plan::notify::check_url(&url).map_err(|(why, _)| Failure {
                why: format!("its URL: {why}"),
                retry: false,
            })?;
            let mut req = client
                .post(&url)
                .timeout(sink.timeout)
                .header("content-type", "application/json")
                .body(body.to_vec());
            if let Some(t) = token {
                let t = t.read().map_err(|why| Failure {
                    why: format!("its token: {why}"),
                    retry: true,
                })?;
                req = req.bearer_auth(t);
            }
            let resp = req.send().await.map_err(|e| Failure {
                why: redacted(e, &url),
                retry: true,
            })?;
            let st = resp.status();
            if st.is_success() {
                return Ok(());
            }
            Err(Failure {
                why: format!("HTTP {st}"),
                retry: st.is_server_error() || st.as_u16() == 429 || st.as_u16() == 408,
            })
        }
        NotifyKind::Command { command } => {
            let event = String::from_utf8_lossy(body).into_owned();
            crate::shell::shell_output_with(
                command,
                cwd,
                sink.timeout,
                crate::shell::Input {
                    stdin: body,
                    env: &[("GLIDEPATH_EVENT", &event)],
                },
            )
            .await
            .map(|_| ())
            .map_err(|e| Failure {
                why: e.0,
                retry: true,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RolloutSpec {
        serde_json::from_value(serde_json::json!({
            "version": "2", "groups": [["n1"], ["n2"]], "max_unavailable": 1, "pause_after": [0],
            "window": null, "drain_timeout_ms": 1, "drain_poll_ms": 1,
            "on_drain_timeout": "fail", "health_deadline_ms": 1, "health_interval_ms": 1
        }))
        .unwrap()
    }

    #[test]
    fn a_finished_run_notifies_by_its_outcome() {
        let spec = spec();
        let state = RunState::new(&spec);
        let mut seen = Seen {
            phase: Phase::Rolling,
            held: false,
            waiting: false,
            incident: false,
        };
        let start = Event::Started {
            at: 1,
            before: [("n1".to_string(), Some("1".to_string()))].into(),
        };
        assert_eq!(derive(&spec, &mut seen, &start, &state)[0].0, "start");
        for (o, kind) in [
            (Outcome::Succeeded, "finished"),
            (Outcome::Aborted, "finished"),
            (Outcome::Failed, "failed"),
            (Outcome::RollbackFailed, "rollback_failed"),
        ] {
            let ev = Event::Finished {
                at: 2,
                outcome: o,
                reason: "why".into(),
            };
            let got = derive(&spec, &mut seen, &ev, &state);
            assert_eq!(got, vec![(kind, "why".to_string())]);
        }
    }

    fn seen() -> Seen {
        Seen {
            phase: Phase::Rolling,
            held: false,
            waiting: false,
            incident: false,
        }
    }

    fn window(incident: bool) -> glidepath_core::WindowState {
        serde_json::from_value(serde_json::json!({
            "started": 1, "last_probe": null, "probes": 1, "latest": [],
            "incident_since": if incident { Some(5) } else { None },
            "incident_reason": "both groups past the limit"
        }))
        .unwrap()
    }

    #[test]
    fn a_rollback_is_a_breach_when_the_sli_decided_it_and_notified_once() {
        let spec = spec();
        let ev = Event::Promoted {
            at: 1,
            reason: "x".into(),
        };
        for (kind, expect) in [
            (CauseKind::Sli, "breach"),
            (CauseKind::Health, "rollback"),
            (CauseKind::Operator, "rollback"),
        ] {
            let mut state = RunState::new(&spec);
            let mut s = seen();
            state.phase = Phase::RollingBack;
            state.cause = Some(glidepath_core::Cause {
                kind,
                node: None,
                reason: "error rate 0.3 > max 0.05".into(),
            });
            assert_eq!(
                derive(&spec, &mut s, &ev, &state),
                vec![(expect, "error rate 0.3 > max 0.05".to_string())]
            );
            assert!(derive(&spec, &mut s, &ev, &state).is_empty(), "once");
        }
    }

    #[test]
    fn an_incident_and_a_pause_are_notified_when_they_begin() {
        let spec = spec();
        let ev = Event::Promoted {
            at: 1,
            reason: "x".into(),
        };
        let mut state = RunState::new(&spec);
        let mut s = seen();
        state.window = Some(window(false));
        assert!(derive(&spec, &mut s, &ev, &state).is_empty());
        state.window = Some(window(true));
        assert_eq!(
            derive(&spec, &mut s, &ev, &state),
            vec![("incident", "both groups past the limit".to_string())]
        );
        assert!(derive(&spec, &mut s, &ev, &state).is_empty(), "once");
        // a breach held for a person: the breach, then the wait
        state.window = None;
        state.held = Some("SLI breach held: promote or rollback".into());
        let closed = Event::WindowClosed {
            at: 9,
            passed: false,
            reason: "error rate 0.3 > max 0.05".into(),
        };
        let got = derive(&spec, &mut s, &closed, &state);
        let kinds: Vec<_> = got.iter().map(|g| g.0).collect();
        assert_eq!(kinds, ["breach", "waiting"]);
        assert!(got[1].1.starts_with("SLI breach held"));
        assert!(derive(&spec, &mut s, &ev, &state).is_empty(), "once");
    }

    #[test]
    fn slack_gets_one_text_and_a_long_reason_is_clipped() {
        let n = Notification {
            event: "breach".into(),
            run_id: "r1".into(),
            fleet: "api".into(),
            release: "2.0.0".into(),
            status: "rolling_back".into(),
            reason: "x".repeat(200_000),
            hint: "glidepath status r1".into(),
            seq: 3,
            at: 0,
        };
        let b = n.body(NotifyFormat::Slack);
        assert!(b.len() <= BODY_MAX);
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        let text = v["text"].as_str().unwrap();
        assert!(text.starts_with("glidepath · breach · api 2.0.0: r1 (rolling_back)"));
        assert_eq!(v.as_object().unwrap().len(), 1);
        assert!(n.body(NotifyFormat::Json).len() <= BODY_MAX);
    }
}
