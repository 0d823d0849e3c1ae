//! Verification probes: one check of a running system, with a verdict a
//! person can read. [`run`] checks a [`ProbeCfg`] (read by
//! `plan::probe::read` from `probe = { … }`) within a deadline and gives a
//! [`ProbeOutcome`]: passed or not, whether the target could not be reached
//! at all (`infra`), the value observed (bounded, for capture and compare)
//! and one line saying what was expected and what was seen.
//!
//! Kinds, one module each: `http` (status, a body substring, JSON fields by
//! JSON pointer), `ws` (a WebSocket handshake, a JSON message sent, a reply
//! whose `type` and capabilities match), `tcp`, `command` (exit 0 and a
//! stdout substring, through `crate::shell`) and `promql` (one value against
//! `min`/`max`). Every network call is bounded in time (the deadline) and in
//! size (the HTTP body at [`crate::drivers::http::SMALL_MAX`], a WebSocket
//! message at [`ws::MESSAGE_MAX`], a Prometheus answer at
//! [`crate::drivers::http::PROMETHEUS_MAX`], a command's output at
//! [`crate::shell::OUTPUT_MAX`]); what comes back is data, quoted and
//! clipped before it reaches the detail.
//!
//! `health` wraps a node's health probe with a probe (`[health] probe`).
//! The config types live in `crate::config` (so that every config type can
//! hold one) and are re-exported here.

mod checks;
mod command;
mod health;
mod http;
mod promql;
mod tcp;
pub mod ws;

pub use crate::config::{
    CommandProbe, HttpProbe, OnEmpty, ProbeCfg, PromQlProbe, TcpProbe, WsProbe,
};
pub use checks::WithProbeChecks;
pub use health::WithProbe;

use crate::template::Vars;
use std::time::Duration;

/// The most of an observed value a [`ProbeOutcome`] keeps, in bytes.
pub const VALUE_MAX: usize = 4 << 10;
/// The most of a piece of network text quoted in a detail, in characters.
const QUOTE_MAX: usize = 120;

/// What a probe found (serializable, for a journaled outcome).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProbeOutcome {
    pub passed: bool,
    /// The target could not be reached at all (connection refused, no
    /// connection within the deadline, Prometheus unreachable): not a
    /// verdict on the target.
    pub infra: bool,
    /// What was observed (an HTTP body or the matched JSON fields, the
    /// WebSocket reply, a command's trimmed stdout, the PromQL value), at
    /// most [`VALUE_MAX`] bytes, cut at a character boundary and then
    /// ending with `…`.
    pub value: Option<String>,
    /// One line: what was expected, what was seen.
    pub detail: String,
}

impl ProbeOutcome {
    pub(crate) fn pass(detail: impl Into<String>, value: Option<String>) -> Self {
        ProbeOutcome {
            passed: true,
            infra: false,
            value: value.map(|v| clip(&v, VALUE_MAX)),
            detail: one_line(&detail.into()),
        }
    }

    pub(crate) fn fail(detail: impl Into<String>, value: Option<String>) -> Self {
        ProbeOutcome {
            passed: false,
            infra: false,
            value: value.map(|v| clip(&v, VALUE_MAX)),
            detail: one_line(&detail.into()),
        }
    }

    pub(crate) fn infra(detail: impl Into<String>) -> Self {
        ProbeOutcome {
            passed: false,
            infra: true,
            value: None,
            detail: one_line(&detail.into()),
        }
    }
}

/// Check `cfg` within `timeout` (or its own `within`, when shorter). The
/// probe's templates must have been filled ([`ProbeCfg::fill`]).
pub async fn run(cfg: &ProbeCfg, timeout: Duration) -> ProbeOutcome {
    let limit = cfg.within().map_or(timeout, |w| w.min(timeout));
    let deadline = tokio::time::Instant::now() + limit;
    let work = async {
        match cfg {
            ProbeCfg::Http(p) => http::run(p, limit).await,
            ProbeCfg::WebSocket(p) => ws::run(p, limit, deadline).await,
            ProbeCfg::Tcp(p) => tcp::run(p, limit, deadline).await,
            ProbeCfg::Command(p) => command::run(p, limit).await,
            ProbeCfg::PromQl(p) => promql::run(p, limit).await,
        }
    };
    // Each kind keeps its own deadline (and says which phase overran it);
    // this one is the backstop.
    match tokio::time::timeout_at(deadline + Duration::from_millis(250), work).await {
        Ok(o) => o,
        Err(_) => ProbeOutcome::fail(
            format!("{}: no answer within {}", cfg.target(), show(limit)),
            None,
        ),
    }
}

impl ProbeCfg {
    /// `within`, the probe's own deadline, if it has one.
    pub fn within(&self) -> Option<Duration> {
        match self {
            ProbeCfg::Http(p) => p.within,
            ProbeCfg::WebSocket(p) => p.within,
            ProbeCfg::Tcp(p) => p.within,
            ProbeCfg::Command(p) => p.within,
            ProbeCfg::PromQl(p) => p.within,
        }
    }

    /// The kind's key: `http`, `websocket`, `tcp`, `command`, `promql`.
    pub fn kind(&self) -> &'static str {
        match self {
            ProbeCfg::Http(_) => "http",
            ProbeCfg::WebSocket(_) => "websocket",
            ProbeCfg::Tcp(_) => "tcp",
            ProbeCfg::Command(_) => "command",
            ProbeCfg::PromQl(_) => "promql",
        }
    }

    /// What is probed, as the details name it (`GET url`, `tcp addr`, …).
    pub fn target(&self) -> String {
        match self {
            ProbeCfg::Http(p) => format!("GET {}", p.url),
            ProbeCfg::WebSocket(p) => format!("websocket {}", p.url),
            ProbeCfg::Tcp(p) => format!("tcp {}", p.address),
            ProbeCfg::Command(p) => format!("`{}`", crate::shell::shown(&p.command)),
            ProbeCfg::PromQl(p) => format!("PromQL `{}`", p.query),
        }
    }

    /// One line for a plan's summary: what is probed and what passes.
    pub fn describe(&self) -> String {
        let mut s = match self {
            ProbeCfg::Http(p) => {
                let mut s = format!(
                    "GET {} answers {}",
                    p.url,
                    p.status.map_or("2xx".to_string(), |c| c.to_string())
                );
                if let Some(b) = &p.body {
                    s += &format!(", body contains {b:?}");
                }
                for (ptr, v) in &p.json {
                    s += &format!(", {ptr} = {v}");
                }
                s
            }
            ProbeCfg::WebSocket(p) => {
                let mut s = format!("websocket {}", p.url);
                if let Some(m) = &p.send {
                    s += &format!(", sends {m}");
                }
                match &p.expect_type {
                    Some(t) => s += &format!(", expects a reply of type {t:?}"),
                    None => s += ", handshake",
                }
                if !p.caps.is_empty() {
                    s += &format!(" with {} ⊇ [{}]", p.caps_field, p.caps.join(", "));
                }
                s
            }
            ProbeCfg::Tcp(p) => format!("tcp {} accepts", p.address),
            ProbeCfg::Command(p) => {
                let mut s = format!("`{}` exits 0", crate::shell::shown(&p.command));
                if let Some(o) = &p.stdout {
                    s += &format!(", stdout contains {o:?}");
                }
                s
            }
            ProbeCfg::PromQl(p) => {
                let mut s = format!("PromQL `{}` on {}", p.query, p.prometheus);
                if let Some(m) = p.min {
                    s += &format!(", min {m}");
                }
                if let Some(m) = p.max {
                    s += &format!(", max {m}");
                }
                if p.on_empty == OnEmpty::Zero {
                    s += " (no series = 0)";
                }
                s
            }
        };
        if let Some(w) = self.within() {
            s += &format!(", within {}", show(w));
        }
        s
    }

    /// The probe with its templates filled: URLs and addresses with
    /// [`Vars::fill`], the command with [`Vars::shell`] (every value
    /// quoted). The query, the message sent and the expected values are
    /// not templates.
    pub fn fill(&self, vars: &Vars) -> ProbeCfg {
        let mut c = self.clone();
        match &mut c {
            ProbeCfg::Http(p) => p.url = vars.fill(&p.url),
            ProbeCfg::WebSocket(p) => p.url = vars.fill(&p.url),
            ProbeCfg::Tcp(p) => p.address = vars.fill(&p.address),
            ProbeCfg::Command(p) => p.command = vars.shell(&p.command),
            ProbeCfg::PromQl(p) => p.prometheus = vars.fill(&p.prometheus),
        }
        c
    }
}

/// The values of a probe in a `[[pre]]`/`[[post]]` task when only
/// `{version}` (the plan's release) is at hand; a task's own `Vars`
/// (`{version}`, `{plan_dir}`, `{run}`) fill it as well.
pub fn phase_vars(version: &str) -> Vars {
    Vars::node("", "").with("version", version)
}

/// `s` cut to at most `max` bytes at a character boundary; a cut string
/// ends with `…` (within the `max`).
pub fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Text from the other side, quoted for a detail: at most [`QUOTE_MAX`]
/// characters, control characters escaped.
pub(crate) fn quote(s: &str) -> String {
    let mut q: String = s.chars().take(QUOTE_MAX).collect();
    if q.len() < s.len() {
        q.push('…');
    }
    format!("{q:?}")
}

/// A detail on one line (newlines and other control characters become
/// spaces), at most 1 KiB.
fn one_line(s: &str) -> String {
    let line: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    clip(&line, 1 << 10)
}

/// `2s`, `1.5s`, `250ms`.
pub(crate) fn show(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_clipped_at_a_character_boundary() {
        let s = "é".repeat(3000); // 6000 bytes
        let c = clip(&s, VALUE_MAX);
        assert!(c.len() <= VALUE_MAX, "{}", c.len());
        assert!(c.ends_with('…'));
        assert_eq!(clip("short", VALUE_MAX), "short");
        let o = ProbeOutcome::pass("a\nb\r\tc", Some(s));
        assert_eq!(o.detail, "a b  c");
        assert!(o.value.unwrap().len() <= VALUE_MAX);
    }

    #[test]
    fn quotes_are_bounded_and_escaped() {
        let q = quote(&format!("x\n{}", "y".repeat(500)));
        assert!(q.starts_with("\"x\\ny"), "{q}");
        assert!(q.chars().count() < QUOTE_MAX + 10, "{q}");
        assert_eq!(show(Duration::from_millis(2000)), "2s");
        assert_eq!(show(Duration::from_millis(1500)), "1.5s");
        assert_eq!(show(Duration::from_millis(250)), "250ms");
    }

    #[test]
    fn fill_quotes_the_command_and_fills_the_urls() {
        let vars = Vars::node("api-1", "127.0.0.1:8080");
        let p = ProbeCfg::Http(HttpProbe {
            url: "http://{address}/health".into(),
            status: None,
            body: None,
            json: Vec::new(),
            within: None,
        });
        let ProbeCfg::Http(h) = p.fill(&vars) else {
            unreachable!()
        };
        assert_eq!(h.url, "http://127.0.0.1:8080/health");
        let c = ProbeCfg::Command(CommandProbe {
            command: "check {node}".into(),
            stdout: None,
            dir: ".".into(),
            within: None,
        });
        let ProbeCfg::Command(c) = c.fill(&vars) else {
            unreachable!()
        };
        assert!(c.command.contains("__gp_node='api-1'"), "{}", c.command);
    }
}
