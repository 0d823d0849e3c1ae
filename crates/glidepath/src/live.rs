//! The runner's live view on a terminal (`run`, `resume` on a TTY): a
//! progress area (the batches, each node's steps, the SLI window) kept in
//! place by indicatif, with the narration scrolling above it. Off a
//! terminal the narration alone is printed, as plain lines.

use crate::plan::Plan;
use crate::report::{Console, Reporter, Verbosity};
use glidepath_core::{Event, NodeStatus, Phase, RolloutSpec, RunState, Track};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// Lines written to it are printed above the progress area.
struct Above {
    mp: MultiProgress,
    buf: Vec<u8>,
}

impl Write for Above {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        while let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=i).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            self.mp.println(text)?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Bars {
    batch: ProgressBar,
    window: ProgressBar,
    nodes: BTreeMap<String, ProgressBar>,
}

/// The narration with a progress area below it.
pub struct Live {
    mp: MultiProgress,
    console: Console,
    bars: Mutex<Option<Bars>>,
    spec: Mutex<Option<RolloutSpec>>,
}

impl Live {
    /// On stdout (a terminal).
    pub fn new(color: bool, verbosity: Verbosity) -> Arc<Self> {
        let mp = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
        let console = Console::new(
            Box::new(Above {
                mp: mp.clone(),
                buf: Vec::new(),
            }),
            color,
        )
        .with_verbosity(verbosity);
        Arc::new(Live {
            mp,
            console,
            bars: Mutex::new(None),
            spec: Mutex::new(None),
        })
    }

    fn setup(&self, spec: &RolloutSpec) {
        let style = |t: &str| {
            ProgressStyle::with_template(t)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ")
        };
        let batch = self.mp.add(ProgressBar::new(spec.groups.len() as u64));
        batch.set_style(style("{prefix:>12} [{bar:24}] {pos}/{len} {msg}"));
        batch.set_prefix("groups");
        let mut nodes = BTreeMap::new();
        // a bar per node while they fit on a screen (`-q` for large fleets)
        for n in spec.nodes().take(if spec.nodes().count() > 40 {
            0
        } else {
            usize::MAX
        }) {
            let b = self
                .mp
                .add(ProgressBar::new(Track::Forward.steps().len() as u64));
            b.set_style(style("{prefix:>12} [{bar:24}] {msg}"));
            b.set_prefix(n.clone());
            b.set_message("untouched");
            nodes.insert(n.clone(), b);
        }
        let window = self.mp.add(ProgressBar::new(1));
        window.set_style(style("{prefix:>12} [{bar:24}] {msg}"));
        window.set_prefix("SLI window");
        window.set_message("not started");
        *self.bars.lock().expect("live lock") = Some(Bars {
            batch,
            window,
            nodes,
        });
        *self.spec.lock().expect("live lock") = Some(spec.clone());
    }

    fn update(&self, state: &RunState, at: u64) {
        let spec = self.spec.lock().expect("live lock");
        let bars = self.bars.lock().expect("live lock");
        let (Some(spec), Some(bars)) = (spec.as_ref(), bars.as_ref()) else {
            return;
        };
        let batches = spec.groups.len().saturating_sub(1);
        let phase = match state.phase {
            Phase::Rolling if state.group == 0 => "canary".to_string(),
            Phase::Rolling => format!("batch {} of {batches}", state.group),
            Phase::RollingBack => "rolling back".into(),
            Phase::Aborting => "aborting".into(),
            Phase::Finished(o) => o.as_str().into(),
        };
        let done = (0..spec.groups.len())
            .filter(|g| state.group_complete(spec, *g))
            .count();
        bars.batch.set_position(done as u64);
        bars.batch.set_message(phase);
        for (name, b) in &bars.nodes {
            let n = &state.nodes[name];
            let steps = n.track.steps().len().max(1) as u64;
            b.set_length(steps);
            let pos = match n.status {
                NodeStatus::Updated | NodeStatus::RolledBack | NodeStatus::Restored => steps,
                _ => n.pos as u64,
            };
            b.set_position(pos);
            let track = match n.track {
                Track::Back => " (restoring)",
                Track::Restore => " (back into rotation)",
                _ => "",
            };
            b.set_message(match n.next_step() {
                Some(k) if n.status == NodeStatus::InProgress => {
                    format!("{}{track}: {}", n.status.as_str(), k.as_str())
                }
                _ => n.status.as_str().to_string(),
            });
        }
        let length = spec
            .window
            .as_ref()
            .and_then(|w| w.length_after(state.group, spec.groups.len()));
        match (&state.window, length) {
            (Some(ws), Some(len)) if !state.windows_passed.contains(&state.group) => {
                let remaining = ws.end(len, at).saturating_sub(at);
                bars.window.set_length(len);
                bars.window.set_position(len.saturating_sub(remaining));
                let paused = if ws.outage_since.is_some() || ws.incident_since.is_some() {
                    " (paused)"
                } else {
                    ""
                };
                bars.window.set_message(format!(
                    "{:.1}s of {:.1}s, {} probe(s){paused}",
                    len.saturating_sub(remaining) as f64 / 1000.0,
                    len as f64 / 1000.0,
                    ws.probes
                ));
            }
            _ if state.windows_passed.contains(&state.group) => {
                bars.window.set_length(1);
                bars.window.set_position(1);
                bars.window.set_message("passed");
            }
            _ => {}
        }
        if state.is_finished() {
            for b in bars.nodes.values() {
                b.abandon();
            }
            bars.batch.abandon();
            bars.window.abandon();
        }
    }
}

impl Reporter for Live {
    fn run_started(&self, run_id: &str, plan: &Plan, spec: &RolloutSpec) {
        self.console.run_started(run_id, plan, spec);
        self.setup(spec);
    }
    fn run_resumed(&self, run_id: &str, plan: &Plan, spec: &RolloutSpec, events: &[Event]) {
        self.console.run_resumed(run_id, plan, spec, events);
        self.setup(spec);
        let state = RunState::replay(spec, events);
        self.update(&state, events.last().map_or(0, Event::at));
    }
    fn event(&self, state: &RunState, ev: &Event) {
        self.console.event(state, ev);
        self.update(state, ev.at());
    }
    fn note(&self, msg: &str) {
        self.console.note(msg);
    }
    fn waiting(&self, run_id: &str, why: &str) {
        self.console.waiting(run_id, why);
    }
}
