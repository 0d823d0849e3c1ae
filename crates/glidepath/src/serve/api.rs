//! `/api/v1`: the runs (the `--output json` documents of `history` and
//! `status`), a run's events as Server-Sent Events, the operator actions,
//! and the step list the dashboard draws.

// A handler's early answer is a `Response`: it is returned at once, not
// carried around.
#![allow(clippy::result_large_err)]

use super::{App, Peer, ACTION_WAIT, POLL_INTERVAL, STREAM_LIFETIME};
use crate::control::{self, ControlError, OperatorCommand, Sent};
use crate::journal::{JournalError, RunStatus, Store};
use crate::output::{document, Command, CommandResult, History, RunEntry};
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use glidepath_core::{Event, Phase, RolloutSpec, RunState, TaskPhase};
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An error answer: `{schema_version, error, status}`.
pub(crate) fn error(status: StatusCode, message: String) -> Response {
    #[derive(Serialize)]
    struct E {
        error: String,
        status: u16,
    }
    json(
        status,
        document(E {
            error: message,
            status: status.as_u16(),
        }),
    )
}

fn json(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body,
    )
        .into_response()
}

pub(super) fn journal_error(e: JournalError) -> Response {
    match e {
        JournalError::NoSuchRun(_) => error(StatusCode::NOT_FOUND, e.to_string()),
        JournalError::Unavailable { .. } => {
            eprintln!("serve: {e}");
            let mut r = error(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            r
        }
        other => {
            eprintln!("serve: {other}");
            error(StatusCode::INTERNAL_SERVER_ERROR, other.to_string())
        }
    }
}

fn control_error(e: ControlError) -> Response {
    match e {
        ControlError::Journal(j) => journal_error(j),
        ControlError::Exec(x) => error(StatusCode::INTERNAL_SERVER_ERROR, x.to_string()),
        other => error(StatusCode::CONFLICT, other.to_string()),
    }
}

/// Run `f` with the server's journal, off the async threads.
async fn with_journal<T: Send + 'static>(
    app: &Arc<App>,
    f: impl FnOnce(&dyn Store) -> Result<T, Response> + Send + 'static,
) -> Result<T, Response> {
    let app = app.clone();
    tokio::task::spawn_blocking(move || {
        let j = app.db.lock().unwrap_or_else(|p| p.into_inner());
        f(j.as_ref())
    })
    .await
    .unwrap_or_else(|e| {
        Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error: {e}"),
        ))
    })
}

/// A run id as the journal writes them: short, printable, no separators.
fn check_id(id: &str) -> Result<(), Response> {
    if id.is_empty()
        || id.len() > 100
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!(
                "`{}` is not a run id (`glidepath history` lists them)",
                id.escape_default()
            ),
        ));
    }
    Ok(())
}

#[derive(serde::Deserialize)]
pub(crate) struct RunsQuery {
    limit: Option<usize>,
}

/// `GET /api/v1/runs?limit=N`: newest first, as `history --output json`.
pub(crate) async fn runs(State(app): State<Arc<App>>, Query(q): Query<RunsQuery>) -> Response {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    match with_journal(&app, move |j| j.runs(limit).map_err(journal_error)).await {
        Ok(runs) => json(
            StatusCode::OK,
            document(History {
                runs: runs.iter().map(RunEntry::from).collect(),
            }),
        ),
        Err(r) => r,
    }
}

/// `GET /api/v1/runs/{id}`: as `status RUN --output json`.
pub(crate) async fn run(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    if let Err(r) = check_id(&id) {
        return r;
    }
    let got = with_journal(&app, move |j| {
        let rec = j.run(&id).map_err(journal_error)?;
        control::summary(j, &rec, true).map_err(control_error)
    })
    .await;
    match got {
        Ok(s) => json(StatusCode::OK, document(s)),
        Err(r) => r,
    }
}

/// One entry of a run's step list.
#[derive(Debug, Clone, Serialize)]
pub struct StepEntry {
    pub label: String,
    /// `done`, `current`, `pending`, `stopped` (where a run that did not
    /// succeed ended), or `skipped` (never reached: the run ended before).
    pub status: &'static str,
}

/// A check's limits, for the charts.
#[derive(Debug, Clone, Serialize)]
pub struct CheckLimit {
    pub check: String,
    pub max: Option<f64>,
    pub min: Option<f64>,
    pub shadow: bool,
    /// Compared with the baseline group.
    pub compare: bool,
}

/// `GET /api/v1/runs/{id}/steps`: the run's steps in order, with where it
/// stands, and its SLI checks' limits (what the dashboard draws).
#[derive(Debug, Clone, Serialize)]
pub struct RunSteps {
    pub run_id: String,
    pub steps: Vec<StepEntry>,
    pub checks: Vec<CheckLimit>,
    /// The canary's SLI window, and its probe interval.
    pub window_ms: Option<u64>,
    pub interval_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Pos {
    Preflight,
    Task(TaskPhase, usize),
    Group(usize),
    Window(usize),
    Pause(usize),
    Finished,
}

impl RunSteps {
    /// The step list of `spec`, and where a run with `events` stands.
    pub fn of(run_id: &str, spec: &RolloutSpec, events: &[Event], status: RunStatus) -> Self {
        let n = spec.groups.len();
        let mut list: Vec<(Pos, String)> = vec![(Pos::Preflight, "preflight gates".into())];
        for (i, t) in spec.pre.iter().enumerate() {
            list.push((Pos::Task(TaskPhase::Pre, i), format!("pre: {}", t.name)));
        }
        for (g, nodes) in spec.groups.iter().enumerate() {
            let who = if g == 0 {
                format!("canary: {}", nodes.join(", "))
            } else {
                format!("batch {g}/{}: {}", n - 1, nodes.join(", "))
            };
            list.push((Pos::Group(g), who));
            if let Some(len) = spec.window.as_ref().and_then(|w| w.length_after(g, n)) {
                let what = match g {
                    0 => "SLI window",
                    _ if g + 1 == n => "SLI watch",
                    _ => "SLI bake",
                };
                list.push((
                    Pos::Window(g),
                    format!(
                        "{what} ({})",
                        humantime::format_duration(Duration::from_millis(len))
                    ),
                ));
            }
            if spec.pause_after.contains(&g) {
                list.push((Pos::Pause(g), "pause: waits for promote".into()));
            }
        }
        for (i, t) in spec.post.iter().enumerate() {
            list.push((Pos::Task(TaskPhase::Post, i), format!("post: {}", t.name)));
        }
        list.push((Pos::Finished, "finished".into()));

        let state = RunState::replay(spec, events);
        let started = events.iter().any(|e| matches!(e, Event::Started { .. }));
        let at = |p: Pos| list.iter().position(|(q, _)| *q == p);
        // where the forward path is (or stopped)
        let reached = if !started {
            0
        } else if state.tasks.done(TaskPhase::Pre) < spec.pre.len() {
            at(Pos::Task(TaskPhase::Pre, state.tasks.done(TaskPhase::Pre))).unwrap_or(0)
        } else if state.group < n {
            let g = state.group;
            let window = spec
                .window
                .as_ref()
                .and_then(|w| w.length_after(g, n))
                .is_some();
            let p = if !state.group_complete(spec, g) {
                Pos::Group(g)
            } else if window && !state.windows_passed.contains(&g) {
                Pos::Window(g)
            } else if spec.pause_after.contains(&g) && !state.promoted.contains(&g) {
                Pos::Pause(g)
            } else if state.tasks.done(TaskPhase::Post) < spec.post.len() && g + 1 == n {
                Pos::Task(TaskPhase::Post, state.tasks.done(TaskPhase::Post))
            } else {
                Pos::Group(g)
            };
            at(p).unwrap_or(0)
        } else {
            at(Pos::Task(
                TaskPhase::Post,
                state.tasks.done(TaskPhase::Post),
            ))
            .unwrap_or(list.len() - 1)
        };
        // the furthest the journal shows it went (a run that turned back
        // is no longer there by its state)
        let mut g = 0;
        let mut furthest = 0;
        for e in events {
            let p = match e {
                Event::GroupStarted { group, .. } => {
                    g = *group;
                    Some(Pos::Group(g))
                }
                Event::Intent { step, .. }
                    if step.kind == glidepath_core::StepKind::StartWindow =>
                {
                    Some(Pos::Window(g))
                }
                Event::Intent { step, .. } => {
                    step.task.as_ref().map(|t| Pos::Task(t.phase, t.index))
                }
                _ => None,
            };
            if let Some(i) = p.and_then(at) {
                furthest = furthest.max(i);
            }
        }
        let reached = reached.max(furthest);
        let ended = state.is_finished() || status.is_final();
        let mut steps: Vec<StepEntry> = list
            .iter()
            .enumerate()
            .map(|(i, (p, label))| {
                let status = if *p == Pos::Finished {
                    if ended {
                        "current"
                    } else {
                        "pending"
                    }
                } else if ended {
                    if state.phase == Phase::Finished(glidepath_core::Outcome::Succeeded)
                        || i < reached
                    {
                        "done"
                    } else if i == reached {
                        "current"
                    } else {
                        "skipped"
                    }
                } else if i < reached {
                    "done"
                } else if i == reached && state.phase == Phase::Rolling {
                    "current"
                } else {
                    "pending"
                };
                StepEntry {
                    label: label.clone(),
                    status,
                }
            })
            .collect();
        if ended {
            // where it stopped is not current once it ended: the end is
            let stopped = if status == RunStatus::Succeeded {
                "done"
            } else {
                "stopped"
            };
            if let Some(s) = steps
                .iter_mut()
                .find(|s| s.status == "current" && s.label != "finished")
            {
                s.status = stopped;
            }
            if let Some(last) = steps.last_mut() {
                last.label = format!("finished: {status}");
            }
        } else if matches!(state.phase, Phase::RollingBack | Phase::Aborting) {
            let what = if state.phase == Phase::Aborting {
                "aborting: restoring the nodes in flight"
            } else {
                "rolling back every changed node"
            };
            let k = reached.min(steps.len() - 1);
            steps.insert(
                k + 1,
                StepEntry {
                    label: what.into(),
                    status: "current",
                },
            );
            for s in steps.iter_mut().skip(k + 2) {
                if s.label != "finished" {
                    s.status = "skipped";
                }
            }
        }
        let checks = spec
            .window
            .as_ref()
            .map(|w| {
                w.checks
                    .iter()
                    .map(|c| CheckLimit {
                        check: c.name.clone(),
                        max: c.max,
                        min: c.min,
                        shadow: c.shadow,
                        compare: c.compare.is_some(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        RunSteps {
            run_id: run_id.to_string(),
            steps,
            checks,
            window_ms: spec.window.as_ref().map(|w| w.length_ms),
            interval_ms: spec.window.as_ref().map(|w| w.interval_ms),
        }
    }
}

/// `GET /api/v1/runs/{id}/steps`.
pub(crate) async fn steps(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    if let Err(r) = check_id(&id) {
        return r;
    }
    let got = with_journal(&app, move |j| {
        let rec = j.run(&id).map_err(journal_error)?;
        let plan = control::journaled_plan(&rec)
            .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        let events = j.events(&id).map_err(journal_error)?;
        Ok(RunSteps::of(&id, &plan.rollout_spec(), &events, rec.status))
    })
    .await;
    match got {
        Ok(s) => json(StatusCode::OK, document(s)),
        Err(r) => r,
    }
}

#[derive(serde::Deserialize)]
pub(crate) struct EventsQuery {
    from: Option<i64>,
}

/// One event of the stream: its sequence number, then the journaled
/// event's own keys (`event`, `at`, …).
fn sse_event(seq: i64, ev: &Event) -> SseEvent {
    let mut v = serde_json::to_value(ev).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("seq".into(), seq.into());
    }
    SseEvent::default().id(seq.to_string()).data(v.to_string())
}

/// A stream's progress.
struct Follow {
    /// The stream's own connection, used on blocking threads.
    journal: Arc<Mutex<Box<dyn Store>>>,
    run: String,
    /// The last sequence number sent.
    last: i64,
    pending: VecDeque<(i64, Event)>,
    ends_at: Instant,
    /// The run has ended and every event was sent: say so, then stop.
    ended: bool,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// `GET /api/v1/runs/{id}/events?from=N`: the run's journaled events as
/// Server-Sent Events, from sequence number `N` (default 1), or after the
/// `Last-Event-ID` a reconnecting browser sends; then each new one as it is
/// journaled (the journal is polled every [`POLL_INTERVAL`]). Each event's
/// `id` is its sequence number and its data the event's JSON with `seq`.
/// Once the run has ended and everything was sent, an `end` event closes
/// the stream. At most [`super::MAX_STREAMS`] streams at once (503 past
/// that); a stream lasts at most [`STREAM_LIFETIME`].
pub(crate) async fn events(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Query(q): Query<EventsQuery>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check_id(&id) {
        return r;
    }
    let Ok(permit) = app.streams.clone().try_acquire_owned() else {
        let mut r = error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{} event streams are open already", super::MAX_STREAMS),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return r;
    };
    let last_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    let after = match (last_id, q.from) {
        (Some(l), _) => l.max(0),
        (None, Some(f)) => (f - 1).max(0),
        (None, None) => 0,
    };
    let location = app.journal.clone();
    let run = id.clone();
    let shared = app.db.clone();
    let opened = tokio::task::spawn_blocking(move || {
        // a SQLite file: a handle per stream (reads run side by side); a
        // database: the server's one connection, each poll a short query
        let j = if location.is_postgres() {
            shared
        } else {
            Arc::new(Mutex::new(location.open()?))
        };
        j.lock().unwrap_or_else(|p| p.into_inner()).run(&run)?;
        Ok::<_, JournalError>(j)
    })
    .await;
    let journal = match opened {
        Ok(Ok(j)) => j,
        Ok(Err(e)) => return journal_error(e),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let follow = Follow {
        journal,
        run: id,
        last: after,
        pending: VecDeque::new(),
        ends_at: Instant::now() + STREAM_LIFETIME,
        ended: false,
        _permit: permit,
    };
    let stream = futures_util::stream::unfold(Some(follow), |st| async move {
        let mut st = st?;
        loop {
            if let Some((seq, ev)) = st.pending.pop_front() {
                st.last = seq;
                let e = sse_event(seq, &ev);
                return Some((Ok::<_, std::convert::Infallible>(e), Some(st)));
            }
            if st.ended {
                let e = SseEvent::default().event("end").data("the run has ended");
                return Some((Ok(e), None));
            }
            if Instant::now() >= st.ends_at {
                return None;
            }
            // a short indexed read, on a blocking thread (a database is
            // across the network); the status first, so that an event
            // journaled between the two reads is not missed
            let (j, run, last) = (st.journal.clone(), st.run.clone(), st.last);
            let read = tokio::task::spawn_blocking(move || {
                let j = j.lock().unwrap_or_else(|p| p.into_inner());
                let status = j.run(&run).map(|r| r.status);
                (status, j.events_since(&run, last))
            })
            .await;
            let Ok((status, read)) = read else {
                return None;
            };
            match read {
                Ok(new) if !new.is_empty() => st.pending.extend(new),
                Ok(_) if status.as_ref().is_ok_and(|s| s.is_final()) => st.ended = true,
                Ok(_) => tokio::time::sleep(POLL_INTERVAL).await,
                Err(e) => {
                    eprintln!("serve: events of {}: {e}", st.run);
                    return None;
                }
            }
        }
    });
    let mut resp = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    resp.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    reason: Option<String>,
    #[serde(default)]
    force: bool,
}

/// Constant-time comparison of the token.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `POST /api/v1/runs/{id}/promote|abort|rollback` with
/// `Authorization: Bearer TOKEN` and a JSON body `{"reason": "…", "force":
/// false}` (both optional; `force` for a rollback past irreversible tasks,
/// with a reason). Queued through the journal like the CLI's commands,
/// never carried out here: `applied` once the live process journaled it
/// (within [`ACTION_WAIT`]), else `queued`. 401 without the token or with
/// another (logged, without the token), 403 when the server has none.
pub(crate) async fn action(
    State(app): State<Arc<App>>,
    Path((id, action)): Path<(String, String)>,
    Extension(Peer(peer)): Extension<Peer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let command = match action.as_str() {
        "promote" => OperatorCommand::Promote,
        "abort" => OperatorCommand::Abort,
        "rollback" => OperatorCommand::Rollback,
        _ => {
            return error(
                StatusCode::NOT_FOUND,
                "no such action: promote, abort or rollback".into(),
            )
        }
    };
    let Some(token) = &app.token else {
        eprintln!("serve: refused {action} of run {} from {peer}: actions are disabled (no --token-env/--token-file)", id.escape_default());
        return error(
            StatusCode::FORBIDDEN,
            "actions are disabled: start `glidepath serve` with --token-env VAR or --token-file PATH".into(),
        );
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let why = match given {
        None => Some("no bearer token"),
        Some(t) if !same(t.as_bytes(), token.as_bytes()) => Some("wrong bearer token"),
        Some(_) => None,
    };
    if let Some(why) = why {
        eprintln!(
            "serve: refused {action} of run {} from {peer}: {why}",
            id.escape_default()
        );
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            format!("{why}: actions need `Authorization: Bearer TOKEN`"),
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"glidepath\""),
        );
        return r;
    }
    if let Err(r) = check_id(&id) {
        return r;
    }
    let b: ActionBody = if body.iter().all(|c| c.is_ascii_whitespace()) {
        ActionBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("the body must be JSON {{\"reason\": \"…\", \"force\": false}}: {e}"),
                )
            }
        }
    };
    let reason = b
        .reason
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty());
    if b.force && reason.is_none() {
        return control_error(ControlError::ForceWithoutReason);
    }
    if reason.as_ref().is_some_and(|r| r.len() > 1000) {
        return error(
            StatusCode::BAD_REQUEST,
            "the reason is longer than 1000 bytes".into(),
        );
    }
    let reason = format!(
        "{} (via glidepath serve, from {})",
        reason.unwrap_or_else(|| format!("{action} requested by operator")),
        peer.ip()
    );
    let run = id.clone();
    let got = with_journal(&app, move |j| {
        control::queue(
            j,
            &run,
            control::Request {
                command,
                reason: &reason,
                force: b.force,
            },
            ACTION_WAIT,
        )
        .map_err(control_error)
    })
    .await;
    let q = match got {
        Ok(q) => q,
        Err(r) => return r,
    };
    eprintln!("serve: {action} of run {id} from {peer}: {:?}", q.sent);
    let (result, holder, status) = match &q.sent {
        Sent::Applied { holder } => (CommandResult::Applied, Some(holder), None),
        Sent::Queued => (CommandResult::Queued, None, None),
        Sent::AlreadyFinished { status } => {
            (CommandResult::AlreadyFinished, None, Some(status.as_str()))
        }
        Sent::CarriedOut(_) => (CommandResult::CarriedOut, None, None),
    };
    #[derive(Serialize)]
    struct Answer<'a> {
        #[serde(flatten)]
        command: Command<'a>,
        /// The command's id in the journal (0: nothing was queued).
        command_id: i64,
    }
    json(
        StatusCode::OK,
        document(Answer {
            command: Command {
                run_id: &id,
                command: command.as_str(),
                acknowledged: result == CommandResult::Applied,
                result,
                status,
                holder,
                summary: None,
            },
            command_id: q.id,
        }),
    )
}
