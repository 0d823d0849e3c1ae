//! `[health]`: the probe that says a node is up (HTTP, TCP or a command,
//! and a verification probe, `probe = { … }`, read by `plan::probe`), the
//! version URL, and the deadline, interval and timeout.

use super::reader::{Keys, Reader};
use super::HealthCfg;
use crate::template::{HEALTH_PLACEHOLDERS, PLACEHOLDERS};
use std::path::Path;
use std::time::Duration;
use toml_span::value::Table;

const KEYS: &[&str] = &[
    "http",
    "body",
    "tcp",
    "command",
    "version_url",
    "deadline",
    "interval",
    "timeout",
    "probe",
];

pub(super) fn read(r: &mut Reader, root: &Table<'_>, dir: &Path) -> Option<HealthCfg> {
    let (t, at) = r.required_section(
        root,
        "health",
        Keys::Only(KEYS),
        "add [health] with http = \"http://{address}/health\" (or tcp = \"{address}\", command = \"…\")",
    )?;
    let http = r.template_str(
        t,
        "http",
        "\"http://{address}/health\"",
        HEALTH_PLACEHOLDERS,
    );
    let body = r
        .template_str(t, "body", "\"ok\"", HEALTH_PLACEHOLDERS)
        .map(|x| x.0);
    let tcp = r.template_str(t, "tcp", "\"{address}\"", HEALTH_PLACEHOLDERS);
    let command = r.template_str(t, "command", "\"systemctl is-active api\"", PLACEHOLDERS);
    // `Some(None)`: a probe with problems (reported).
    let probe = t
        .get("probe")
        .map(|v| super::probe::read(r, v, "[health].probe", super::probe::Scope::Node, dir));
    if http.is_none() && tcp.is_none() && command.is_none() && probe.is_none() {
        r.missing(
            at,
            "[health]",
            "http",
            "\"http://{address}/health\"  # or tcp = \"{address}\", or command = \"…\"",
        );
    }
    if body.is_some() && http.is_none() {
        let s = t.get("body").map_or(at, |v| v.span);
        r.err(
            s,
            "`body` needs an `http` probe",
            "no http probe",
            Some("add http = \"http://{address}/health\"".into()),
        );
    }
    let version_url = r.template_str(
        t,
        "version_url",
        "\"http://{address}/version\"",
        HEALTH_PLACEHOLDERS,
    );
    let deadline = r.duration(t, "deadline", Some(Duration::from_secs(60)));
    let interval = r.duration(t, "interval", Some(Duration::from_secs(1)));
    let timeout = r.duration(t, "timeout", Some(Duration::from_secs(2)));
    Some(HealthCfg {
        http: http.map(|x| x.0),
        body,
        tcp: tcp.map(|x| x.0),
        command: command.map(|x| x.0),
        version_url: version_url.map(|v| v.0),
        deadline: deadline?,
        interval: interval?,
        timeout: timeout?,
        probe: probe.map_or(Some(None), |p| p.map(Some))?,
    })
}
