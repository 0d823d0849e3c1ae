//! `[notify]`: where the run's notifications go. `[[notify.webhook]]` (the
//! event as JSON), `[[notify.slack]]` (Slack's `{"text": …}`) and
//! `[[notify.command]]` (a shell command, the event on its stdin), each with
//! an optional `on = [...]` filter; `grace` bounds the wait for deliveries
//! at the end of a run. A URL that is a secret comes from `url_env` or
//! `url_file`, a bearer token from `token_env` or `token_file`: the plan
//! text is journaled, their values never are.

use super::reader::{Keys, Reader};
use crate::config::{
    NotifyCfg, NotifyFormat, NotifyKind, NotifySink, NotifyUrl, SecretRef, NOTIFY_EVENTS,
};
use std::path::Path;
use std::time::Duration;
use toml_span::value::Table;
use toml_span::Span;

const KEYS: &[&str] = &["webhook", "slack", "command", "grace"];
const WEBHOOK_KEYS: &[&str] = &[
    "url",
    "url_env",
    "url_file",
    "token_env",
    "token_file",
    "on",
    "timeout",
];
const SLACK_KEYS: &[&str] = &["url", "url_env", "url_file", "on", "timeout"];
const COMMAND_KEYS: &[&str] = &["command", "format", "on", "timeout"];

/// The longest a run's end may wait for its notifications.
const MAX_GRACE: Duration = Duration::from_secs(60);

pub(super) fn read(r: &mut Reader, root: &Table<'_>, dir: &Path) -> Option<NotifyCfg> {
    let (t, at) = r.section(root, "notify", Keys::Only(KEYS))?;
    let grace = r.duration(t, "grace", Some(Duration::from_secs(5)));
    if let (Some(g), Some(v)) = (grace, t.get("grace")) {
        if g > MAX_GRACE {
            r.err(
                v.span,
                "`grace` is longer than 60s",
                "too long",
                Some("the end of a run waits at most this long for notifications: e.g. grace = \"5s\"".into()),
            );
        }
    }
    let mut sinks = Vec::new();
    let problems = r.diags.len();
    for kind in ["webhook", "slack", "command"] {
        for (i, (st, sat)) in tables(r, t, kind).into_iter().enumerate() {
            let label = format!("{kind} {}", i + 1);
            sinks.extend(sink(r, kind, st, sat, label, dir));
        }
    }
    if sinks.is_empty() && r.diags.len() == problems {
        r.err(
            Span::new(at.start, at.start),
            "[notify] has no sink",
            "nothing to notify",
            Some("add [[notify.webhook]] with url_env = \"HOOK_URL\", [[notify.slack]] or [[notify.command]]".into()),
        );
        return None;
    }
    Some(NotifyCfg {
        sinks,
        grace: grace?,
    })
}

/// `[[notify.KIND]]` (several) or `[notify.KIND]` (one).
fn tables<'t, 'de>(r: &mut Reader, t: &'t Table<'de>, kind: &str) -> Vec<(&'t Table<'de>, Span)> {
    let Some(v) = t.get(kind) else {
        return Vec::new();
    };
    let example = format!("[[notify.{kind}]] tables");
    if let Some(one) = v.as_table() {
        return vec![(one, v.span)];
    }
    let Some(arr) = v.as_array() else {
        r.type_err(v, kind, "an array of tables", &example);
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in arr {
        match item.as_table() {
            Some(it) => out.push((it, item.span)),
            None => r.type_err(item, kind, "a table", &example),
        }
    }
    out
}

fn sink(
    r: &mut Reader,
    kind: &str,
    t: &Table<'_>,
    at: Span,
    label: String,
    dir: &Path,
) -> Option<NotifySink> {
    let section = format!("[[notify.{kind}]]");
    let keys = match kind {
        "webhook" => WEBHOOK_KEYS,
        "slack" => SLACK_KEYS,
        _ => COMMAND_KEYS,
    };
    r.known_keys(t, &section, keys);
    let on = events(r, t);
    let timeout = r.duration(t, "timeout", Some(Duration::from_secs(5)));
    let (kind, format) = match kind {
        "command" => {
            let command = r.req_str(
                t,
                at,
                &section,
                "command",
                "\"logger -t glidepath\"  # the event is on stdin and in $GLIDEPATH_EVENT",
            );
            let format = match r.str(t, "format", "\"json\"") {
                None => Some(NotifyFormat::Json),
                Some((f, _)) if f == "json" => Some(NotifyFormat::Json),
                Some((f, _)) if f == "slack" => Some(NotifyFormat::Slack),
                Some((f, s)) => {
                    r.err(
                        s,
                        format!("unknown format `{f}` in {section}"),
                        "not a format",
                        Some("format = \"json\" (the event) or \"slack\" ({\"text\": …})".into()),
                    );
                    None
                }
            };
            (
                NotifyKind::Command {
                    command: command?.0,
                },
                format?,
            )
        }
        k => {
            let url = url(r, t, at, &section, dir);
            let token = if k == "webhook" {
                secret(r, t, "token_env", "token_file", dir)
            } else {
                Some(None)
            };
            let format = if k == "slack" {
                NotifyFormat::Slack
            } else {
                NotifyFormat::Json
            };
            (
                NotifyKind::Webhook {
                    url: url?,
                    token: token?,
                },
                format,
            )
        }
    };
    Some(NotifySink {
        label,
        kind,
        on: on?,
        timeout: timeout?,
        format,
    })
}

/// `on = [...]`: known event names only.
fn events(r: &mut Reader, t: &Table<'_>) -> Option<Option<Vec<String>>> {
    let Some(list) = r.str_list(t, "on", "[\"finished\", \"failed\"]") else {
        return Some(None);
    };
    let mut ok = true;
    for (e, s) in &list {
        if !NOTIFY_EVENTS.contains(&e.as_str()) {
            ok = false;
            let hint = super::did_you_mean(e, NOTIFY_EVENTS.iter().copied())
                .unwrap_or_else(|| format!("the events: {}", NOTIFY_EVENTS.join(", ")));
            r.err(
                *s,
                format!("unknown event `{e}` in `on`"),
                "not an event",
                Some(hint),
            );
        }
    }
    ok.then(|| Some(list.into_iter().map(|x| x.0).collect()))
}

/// One of `url`, `url_env`, `url_file`; a written one must be `http://`.
fn url(r: &mut Reader, t: &Table<'_>, at: Span, section: &str, dir: &Path) -> Option<NotifyUrl> {
    let plain = r.str(t, "url", "\"http://hooks.internal:8080/glidepath\"");
    let secret = secret(r, t, "url_env", "url_file", dir)?;
    match (plain, secret) {
        (Some((_, s)), Some(_)) => {
            r.err(
                s,
                format!("`url` and `url_env`/`url_file` both set in {section}"),
                "choose one",
                Some("a webhook URL that is a secret belongs in url_env or url_file only".into()),
            );
            None
        }
        (Some((u, s)), None) => match check_url(&u) {
            Ok(()) => Some(NotifyUrl::Plain(u)),
            Err((why, hint)) => {
                r.err(
                    s,
                    format!("bad webhook URL `{u}`: {why}"),
                    "not usable",
                    Some(hint),
                );
                None
            }
        },
        (None, Some(sec)) => Some(NotifyUrl::Secret(sec)),
        (None, None) => {
            r.missing(
                at,
                section,
                "url_env",
                "\"HOOK_URL\"  # or url_file = \"…\", or url = \"http://…\"",
            );
            None
        }
    }
}

/// Whether a webhook URL can be used by this build: `http://host…` only.
pub fn check_url(u: &str) -> Result<(), (String, String)> {
    if u.starts_with("https://") {
        return Err((
            "https is not supported: this build has no TLS".into(),
            "post through a plain-http relay, or use [[notify.command]] with curl: command = \"curl -fsS -H 'Content-Type: application/json' --data-binary @- \\\"$HOOK_URL\\\"\"".into(),
        ));
    }
    match reqwest::Url::parse(u) {
        Ok(p) if p.scheme() == "http" && p.host_str().is_some_and(|h| !h.is_empty()) => Ok(()),
        Ok(p) => Err((
            format!("scheme `{}` is not http", p.scheme()),
            "write http://host:port/path".into(),
        )),
        Err(e) => Err((e.to_string(), "write http://host:port/path".into())),
    }
}

fn secret(
    r: &mut Reader,
    t: &Table<'_>,
    env_key: &str,
    file_key: &str,
    dir: &Path,
) -> Option<Option<SecretRef>> {
    let env = r.str(t, env_key, "\"HOOK_SECRET\"");
    let file = r.str(t, file_key, "\"/etc/glidepath/hook-secret\"");
    match (env, file) {
        (Some(_), Some((_, s))) => {
            r.err(
                s,
                format!("`{env_key}` and `{file_key}` both set"),
                "choose one",
                Some("a secret comes from one place: an environment variable or a file".into()),
            );
            None
        }
        (Some((e, _)), None) => Some(Some(SecretRef::Env(e))),
        (None, Some((f, _))) => Some(Some(SecretRef::File(dir.join(f)))),
        (None, None) => Some(None),
    }
}
