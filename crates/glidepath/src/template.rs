//! The one template module. A template is a string with `{placeholder}`s:
//! the placeholder sets each kind of template may use (checked while the
//! plan is read), [`Vars`] (the only way a set of values is built),
//! [`render`] for URLs, addresses and paths, and [`render_shell`] (with
//! [`sq`]) for shell commands, where every value goes in quoted.

/// Placeholders a shell command template may use (`restart`, `check`,
/// the health and balancer commands). Every set is checked while the plan
/// is read (`Reader::template`) and filled from [`Vars`].
pub const PLACEHOLDERS: &[&str] = &[
    "node",
    "address",
    "host",
    "port",
    "version",
    "previous",
    "install_dir",
    "plan_dir",
];

/// A capability flag's `enable` command (system file): the flag and the
/// campaign that switches it.
pub const FLAG_PLACEHOLDERS: &[&str] = &["flag", "campaign"];

/// What every template of a node may use: what [`Vars::node`] gives (URLs,
/// probe addresses, the ssh host, the scrape URL). `{port}` is the port of
/// the node's address; a plan that uses it on a node whose address has no
/// port is refused.
pub const NODE_PLACEHOLDERS: &[&str] = &["node", "address", "host", "port"];

/// A health check (`[health]` `http`, `tcp`, `body`, `version_url`): the
/// node's placeholders, `{version}` (the release the node is expected to
/// serve at that moment: the one it runs at preflight, the new one after
/// the switch, the last-known-good in a rollback) and `{previous}` (the
/// release it ran when the run started).
pub const HEALTH_PLACEHOLDERS: &[&str] =
    &["node", "address", "host", "port", "version", "previous"];

/// `install_dir`: the node's placeholders and `{plan_dir}` (what
/// `Plan::vars` gives).
pub const INSTALL_DIR_PLACEHOLDERS: &[&str] = &["node", "address", "host", "port", "plan_dir"];

/// The templates of a `kind = "command"` deployer: [`PLACEHOLDERS`], and
/// the artifact being staged with its checksum.
pub const DEPLOY_PLACEHOLDERS: &[&str] = &[
    "node",
    "address",
    "host",
    "port",
    "version",
    "previous",
    "install_dir",
    "plan_dir",
    "artifact",
    "sha256",
];

/// The commands of `[[pre]]`/`[[post]]` tasks: the release being rolled
/// out, the release the fleet ran when the run started (`{previous}`: a
/// task fails rather than guess when the nodes ran different releases),
/// the plan's directory and the run's id (no node: a task runs once).
pub const TASK_PLACEHOLDERS: &[&str] = &["version", "previous", "plan_dir", "run"];

/// PromQL queries: the first node's placeholders, and `{instances}` and
/// `{nodes}`, every watched node's address and name joined with `|`;
/// `{baseline}` and `{baseline_nodes}`, the same for the baseline nodes;
/// `{window}`, the time since the SLI window started as a PromQL range
/// (`37s`).
pub const QUERY_PLACEHOLDERS: &[&str] = &[
    "node",
    "address",
    "host",
    "port",
    "instances",
    "nodes",
    "baseline",
    "baseline_nodes",
    "window",
];

/// The host part of an address (`10.0.0.1:8080` → `10.0.0.1`, `[::1]:80` → `::1`).
pub fn host_of(address: &str) -> &str {
    if let Some(rest) = address.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match address.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) && !h.contains(':') => h,
        _ => address,
    }
}

/// The port of an address (`10.0.0.1:8080` → `8080`, `[::1]:80` → `80`),
/// if it has one.
pub fn port_of(address: &str) -> Option<&str> {
    let (h, p) = address.rsplit_once(':')?;
    let bracketed = address.starts_with('[') && h.ends_with(']');
    (!p.is_empty() && p.chars().all(|c| c.is_ascii_digit()) && (bracketed || !h.contains(':')))
        .then_some(p)
}

/// Fill `{node}`, `{address}`, … in a template, as they are: for URLs,
/// addresses and paths, never for a shell command (that is
/// [`render_shell`]). `${VAR}` is left alone.
pub fn render(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

/// Quote for a POSIX shell: `'…'`, a `'` inside written `'\''`.
pub fn sq(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

pub use crate::shell::shown;
use crate::shell::VAR_PREFIX;

/// Fill a shell command template so that data never becomes shell: the
/// values are assigned to shell variables on a first line of their own (each
/// single-quoted, in a context that is always plain), and each placeholder
/// becomes a quoted reference to its variable. A value is then expanded,
/// never parsed: whatever the template does around it (comments with a `'`,
/// here-documents, `$'…'`, `case` patterns), the worst a misread context can
/// do is split a value into words. The reference follows where the
/// placeholder stands: bare (`"${__gp_x}"`), inside `"…"` (`${__gp_x}`),
/// inside `'…'` (the quote is closed around it and reopened). `${VAR}` is
/// left to the shell; unknown `{…}` are left as they are. [`shown`] gives
/// the command as a person reads it.
pub fn render_shell(template: &str, vars: &[(&str, &str)]) -> String {
    let mut used: Vec<(&str, &str)> = Vec::new();
    let body = render_refs(template, vars, &mut used);
    if used.is_empty() {
        return body;
    }
    let assigns: Vec<String> = used
        .iter()
        .map(|(k, v)| format!("{VAR_PREFIX}{k}={}", sq(v)))
        .collect();
    format!("{}\n{body}", assigns.join(" "))
}

/// The template with each known placeholder replaced by a reference to its
/// variable; `used` collects the placeholders seen, once each.
fn render_refs<'v>(
    template: &str,
    vars: &[(&'v str, &'v str)],
    used: &mut Vec<(&'v str, &'v str)>,
) -> String {
    #[derive(Clone, Copy, PartialEq)]
    enum Ctx {
        Plain,
        Single,
        Double,
        /// `$(…)`, with its open parentheses
        Sub(usize),
        Tick,
    }
    let b = template.as_bytes();
    let mut stack = vec![Ctx::Plain];
    let mut out: Vec<u8> = Vec::with_capacity(b.len() + 16);
    let mut i = 0;
    // here-documents announced on the current line: (delimiter, quoted, strip tabs)
    let mut pending: Vec<(String, bool, bool)> = Vec::new();
    // inside a here-document body: (delimiter, quoted, strip tabs)
    let mut heredoc: Option<(String, bool, bool)> = None;
    while i < b.len() {
        let ctx = *stack.last().expect("never empty");
        let c = b[i];
        let line_start = i == 0 || b[i - 1] == b'\n';
        if let Some((delim, quoted, strip)) = heredoc.clone() {
            if line_start {
                let end = template[i..].find('\n').map_or(b.len(), |e| i + e);
                let line = &template[i..end];
                let line = if strip {
                    line.trim_start_matches('\t')
                } else {
                    line
                };
                if line == delim {
                    heredoc = None;
                    out.extend_from_slice(&b[i..end]);
                    i = end;
                    continue;
                }
            }
            // a body line: an unquoted here-document expands `${…}` (not
            // quotes); a quoted one expands nothing, so a placeholder there
            // stays a (visible) reference rather than become text
            if c == b'{' && (i == 0 || b[i - 1] != b'$') {
                if let Some(len) = template[i + 1..].find('}') {
                    let name = &template[i + 1..i + 1 + len];
                    if let Some(&(k, v)) = vars.iter().find(|(k, _)| *k == name) {
                        if !used.iter().any(|(u, _)| *u == k) {
                            used.push((k, v));
                        }
                        let _ = quoted;
                        out.extend(format!("${{{VAR_PREFIX}{k}}}").bytes());
                        i += len + 2;
                        continue;
                    }
                }
            }
            out.push(c);
            i += 1;
            continue;
        }
        if c == b'\n' && !pending.is_empty() && matches!(ctx, Ctx::Plain | Ctx::Sub(_)) {
            heredoc = Some(pending.remove(0));
            out.push(c);
            i += 1;
            continue;
        }
        // a comment runs to the end of the line: its quotes are not quotes
        if c == b'#'
            && matches!(ctx, Ctx::Plain | Ctx::Sub(_))
            && (i == 0 || matches!(b[i - 1], b' ' | b'\t' | b'\n' | b';' | b'&' | b'|' | b'('))
        {
            let end = template[i..].find('\n').map_or(b.len(), |e| i + e);
            out.extend_from_slice(&b[i..end]);
            i = end;
            continue;
        }
        // `<<DELIM`, `<<-DELIM`, `<<'DELIM'`, `<<"DELIM"` (not `<<<`)
        if c == b'<'
            && matches!(ctx, Ctx::Plain | Ctx::Sub(_))
            && b.get(i + 1) == Some(&b'<')
            && b.get(i + 2) != Some(&b'<')
        {
            let mut j = i + 2;
            let strip = b.get(j) == Some(&b'-');
            if strip {
                j += 1;
            }
            while matches!(b.get(j), Some(b' ' | b'\t')) {
                j += 1;
            }
            let quote = match b.get(j) {
                Some(b'\'') => Some('\''),
                Some(b'"') => Some('"'),
                _ => None,
            };
            let (word, after) = match quote {
                Some(q) => {
                    let start = j + 1;
                    let end = template[start..].find(q).map_or(b.len(), |e| start + e);
                    (template[start..end].to_string(), (end + 1).min(b.len()))
                }
                None => {
                    let start = j;
                    let mut end = start;
                    while end < b.len() && !b" \t\n;&|<>()".contains(&b[end]) {
                        end += 1;
                    }
                    (template[start..end].replace('\\', ""), end)
                }
            };
            if !word.is_empty() {
                pending.push((word, quote.is_some(), strip));
                out.extend_from_slice(&b[i..after]);
                i = after;
                continue;
            }
        }
        if c == b'{' && (i == 0 || b[i - 1] != b'$') {
            if let Some(len) = template[i + 1..].find('}') {
                let name = &template[i + 1..i + 1 + len];
                if let Some(&(k, v)) = vars.iter().find(|(k, _)| *k == name) {
                    if !used.iter().any(|(u, _)| *u == k) {
                        used.push((k, v));
                    }
                    let r = format!("${{{VAR_PREFIX}{k}}}");
                    match ctx {
                        Ctx::Single => out.extend(format!("'\"{r}\"'").bytes()),
                        Ctx::Double => out.extend(r.bytes()),
                        _ => out.extend(format!("\"{r}\"").bytes()),
                    }
                    i += len + 2;
                    continue;
                }
            }
        }
        let next = b.get(i + 1).copied();
        let mut take = 1;
        match ctx {
            Ctx::Single => {
                if c == b'\'' {
                    stack.pop();
                }
            }
            Ctx::Double => match c {
                b'\\' => take = 2,
                b'"' => {
                    stack.pop();
                }
                b'$' if next == Some(b'(') => {
                    stack.push(Ctx::Sub(0));
                    take = 2;
                }
                b'`' => stack.push(Ctx::Tick),
                _ => {}
            },
            Ctx::Plain | Ctx::Sub(_) | Ctx::Tick => match c {
                b'\\' => take = 2,
                b'\'' => stack.push(Ctx::Single),
                b'"' => stack.push(Ctx::Double),
                b'$' if next == Some(b'(') => {
                    stack.push(Ctx::Sub(0));
                    take = 2;
                }
                b'`' if ctx == Ctx::Tick => {
                    stack.pop();
                }
                b'`' => stack.push(Ctx::Tick),
                b'(' => {
                    if let Some(Ctx::Sub(n)) = stack.last_mut() {
                        *n += 1;
                    }
                }
                b')' => match stack.last_mut() {
                    Some(Ctx::Sub(0)) => {
                        stack.pop();
                    }
                    Some(Ctx::Sub(n)) => *n -= 1,
                    _ => {}
                },
                _ => {}
            },
        }
        let end = (i + take).min(b.len());
        out.extend_from_slice(&b[i..end]);
        i = end;
    }
    String::from_utf8(out).expect("copied from UTF-8 input and quoted UTF-8 values")
}

/// The placeholder values of every template, built in one place: `{node}`,
/// `{address}`, `{host}`, `{port}` and `{plan_dir}`, plus `{install_dir}`,
/// `{version}`, `{previous}` (and `{artifact}`, `{sha256}`) where a step
/// has them.
#[derive(Debug, Clone, PartialEq)]
pub struct Vars(Vec<(&'static str, String)>);

impl Vars {
    /// No values (a template with none, or built up with `with`).
    pub fn empty() -> Vars {
        Vars(Vec::new())
    }

    /// `{node}`, `{address}`, `{host}` and `{port}` (empty when the
    /// address has none: the plan reader refuses a template that needs
    /// it then): what every template of a node has.
    pub fn node(name: &str, address: &str) -> Vars {
        Vars(vec![
            ("node", name.to_string()),
            ("address", address.to_string()),
            ("host", host_of(address).to_string()),
            ("port", port_of(address).unwrap_or("").to_string()),
        ])
    }

    /// Add (or replace) one value.
    pub fn with(mut self, key: &'static str, value: impl Into<String>) -> Vars {
        let value = value.into();
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key, value)),
        }
        self
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn pairs(&self) -> Vec<(&str, &str)> {
        self.0.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }

    /// [`render`] with these values (URLs, addresses, paths).
    pub fn fill(&self, template: &str) -> String {
        render(template, &self.pairs())
    }

    /// [`render_shell`] with these values (shell commands).
    pub fn shell(&self, template: &str) -> String {
        render_shell(template, &self.pairs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_templates_quote_every_value() {
        let evil = "x'; touch PWNED; echo '$(id)`id`\"";
        let vars = [("node", "api-1"), ("install_dir", evil)];
        let run = |tpl: &str| {
            let cmd = render_shell(tpl, &vars);
            let tmp = tempfile::tempdir().unwrap();
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(&cmd)
                .current_dir(tmp.path())
                .output()
                .unwrap();
            assert!(
                !tmp.path().join("PWNED").exists(),
                "`{cmd}` ran data as shell"
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        assert_eq!(
            run("printf '%s|' {install_dir} {node}"),
            format!("{evil}|api-1|")
        );
        assert_eq!(
            run("printf '%s|' \"{install_dir}/pid\""),
            format!("{evil}/pid|")
        );
        assert_eq!(
            run("printf '%s|' 'at {install_dir}!'"),
            format!("at {evil}!|")
        );
        assert_eq!(
            run("printf '%s|' \"$(printf %s {install_dir})\""),
            format!("{evil}|")
        );
        assert_eq!(run("printf '%s|' `printf %s {node}`"), "api-1|");
        assert_eq!(
            run("printf '%s|' ${HOME+set} {unknown} {node}"),
            "set|{unknown}|api-1|"
        );
        assert_eq!(shown(&render_shell("echo {node}", &vars)), "echo 'api-1'");
        // a `'` in a comment, a here-document, ANSI-C quotes: still data
        assert_eq!(
            run("# it's only a check\nprintf '%s|' {install_dir}"),
            format!("{evil}|")
        );
        assert_eq!(run("cat <<EOF\n{install_dir}|\nEOF"), format!("{evil}|\n"));
        assert_eq!(
            run("case {node} in api-*) printf '%s|' {install_dir};; esac"),
            format!("{evil}|")
        );
        // a quoted here-document expands nothing: the reference stays visible
        assert_eq!(run("cat <<'EOF'\n{node}\nEOF"), "${__gp_node}\n");
        // what a person reads is the old quoting, values in place
        assert_eq!(
            shown(&render_shell(
                "cat {install_dir}/pid \"{node}\" 'a {node}'",
                &vars
            )),
            format!("cat {}/pid 'api-1' 'a 'api-1''", sq(evil))
        );
    }

    #[test]
    fn one_placeholder_set_for_every_template() {
        let v = Vars::node("api-1", "[::1]:8080")
            .with("plan_dir", "/plans")
            .with("version", "2")
            .with("install_dir", "/opt/api/api-1");
        assert_eq!(
            v.fill("{node} {address} {host} {plan_dir} {version} {install_dir}"),
            "api-1 [::1]:8080 ::1 /plans 2 /opt/api/api-1"
        );
        assert_eq!(shown(&v.shell("ping {host}")), "ping '::1'");
        assert_eq!(v.with("version", "3").get("version"), Some("3"));
    }

    #[test]
    fn templates_render() {
        assert_eq!(
            render(
                "http://{address}/h?n={node}",
                &[("address", "a:1"), ("node", "n1")]
            ),
            "http://a:1/h?n=n1"
        );
        assert_eq!(
            render("echo ${HOME} {node}", &[("node", "x")]),
            "echo ${HOME} x"
        );
    }

    #[test]
    fn the_port_of_an_address() {
        assert_eq!(port_of("10.0.0.1:8080"), Some("8080"));
        assert_eq!(port_of("[::1]:80"), Some("80"));
        assert_eq!(port_of("api.internal:443"), Some("443"));
        assert_eq!(port_of("10.0.0.1"), None);
        assert_eq!(port_of("::1"), None);
        assert_eq!(port_of("[::1]"), None);
        assert_eq!(port_of("host:"), None);
        assert_eq!(port_of("host:http"), None);
        assert_eq!(Vars::node("a", "10.0.0.1:81").get("port"), Some("81"));
        assert_eq!(Vars::node("a", "10.0.0.1").get("port"), Some(""));
    }

    #[test]
    fn the_node_placeholder_set_is_what_vars_gives() {
        let v = Vars::node("api-1", "10.0.0.1:80");
        let keys: Vec<&str> = v.pairs().iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, NODE_PLACEHOLDERS);
        let v = v.with("plan_dir", "/p");
        let keys: Vec<&str> = v.pairs().iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, INSTALL_DIR_PLACEHOLDERS);
        for p in PLACEHOLDERS {
            assert!(DEPLOY_PLACEHOLDERS.contains(p), "{p}");
        }
    }
}
