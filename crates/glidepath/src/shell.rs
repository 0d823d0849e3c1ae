//! Running a shell command: `sh -c` in the plan's directory, in its own
//! process group (killed whole on a timeout or when the future is dropped),
//! its output read with bounded memory. Used by the command drivers
//! (`drivers::service_command`, …), `[gates]` (backup, custom) and the
//! system file; it imports nothing of the crate, so none of them depends on
//! another through it.

use std::path::Path;
use std::time::Duration;

/// A command that could not start, timed out, or exited non-zero; the
/// message names the command and ends with the tail of its stderr.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ShellError(pub String);

/// The process groups of the commands running now, so that a process that
/// must end at once (a second Ctrl-C) takes them with it: [`kill_all`].
static LIVE: std::sync::Mutex<Vec<libc::pid_t>> = std::sync::Mutex::new(Vec::new());

/// SIGKILL every command's process group still running (the process is
/// about to exit without waiting for them).
pub fn kill_all() {
    let groups = LIVE.lock().map(|g| g.clone()).unwrap_or_default();
    for pgid in groups.into_iter().filter(|p| *p > 1) {
        // SAFETY: signalling process groups this process created.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

/// Kills a command's whole process group when dropped, unless disarmed:
/// on a timeout, and when the future running the command is dropped.
struct GroupKiller {
    pgid: Option<libc::pid_t>,
}

impl GroupKiller {
    fn new(pgid: Option<libc::pid_t>) -> Self {
        if let (Some(p), Ok(mut live)) = (pgid, LIVE.lock()) {
            live.push(p);
        }
        GroupKiller { pgid }
    }

    fn forget(&self) {
        if let (Some(p), Ok(mut live)) = (self.pgid, LIVE.lock()) {
            live.retain(|x| *x != p);
        }
    }

    fn disarm(&mut self) {
        self.forget();
        self.pgid = None;
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        self.forget();
        if let Some(pgid) = self.pgid.filter(|p| *p > 1) {
            // SAFETY: kill(2) with a negative pid signals the process group
            // the command leads (it was spawned with process_group(0)).
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

/// Run a shell command with a timeout; returns its stdout. A non-zero exit
/// fails with the tail of its stderr. The command runs in its own process
/// group, and overrunning the timeout (or dropping the future) kills the
/// whole group: `sh`, and whatever it started.
pub async fn shell_output(cmd: &str, cwd: &Path, timeout: Duration) -> Result<String, ShellError> {
    let raw = shell_output_raw(cmd, cwd, timeout).await?;
    Ok(String::from_utf8_lossy(&raw.annotated()).into_owned())
}

/// What a command printed on one stream, as bytes: at most [`OUTPUT_MAX`]
/// kept, the rest counted in `dropped`.
#[derive(Debug, Clone)]
pub struct RawOutput {
    pub bytes: Vec<u8>,
    pub dropped: usize,
    /// A background process still held the pipe when the shell ended.
    pub held_open: bool,
    /// The processes the command started that were still running (in its
    /// process group) when the shell ended with the pipe held.
    pub holders: Vec<i32>,
}

/// What to say when a command exited but a process it started still holds
/// its output pipe: which one, what it means, and the fix.
pub fn held_open_note(holders: &[i32]) -> String {
    let who = match holders {
        [] => "a process it started".to_string(),
        [p] => format!("a process it started (pid {p})"),
        many => format!(
            "processes it started (pids {})",
            many.iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let holds = if holders.len() > 1 { "hold" } else { "holds" };
    format!(
        "the command exited but {who} still {holds} its output: it counts as done (its exit status); what it writes there from now on is discarded (a detached `cat` drains it, so a write never gets SIGPIPE); redirect the background process's output to its own log (`cmd >/var/log/svc.log 2>&1 &`) or start it with `setsid`"
    )
}

/// The live processes (not zombies) of process group `pgid`, from /proc.
fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    let mut out: Vec<i32> = rd
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|st| {
                // after the command name: state, ppid, pgrp
                let mut f = st.rsplit(')').next().unwrap_or("").split_whitespace();
                let state = f.next().unwrap_or("Z");
                let pgrp = f.nth(1).and_then(|g| g.parse::<i32>().ok());
                pgrp == Some(pgid) && !state.starts_with('Z') && !state.starts_with('X')
            })
        })
        .collect();
    out.sort_unstable();
    out
}

impl RawOutput {
    /// The bytes with notes on what was dropped (for people).
    fn annotated(&self) -> Vec<u8> {
        let mut out = self.bytes.clone();
        if self.dropped > 0 {
            out.extend_from_slice(
                format!("\n[{} more bytes of output dropped]\n", self.dropped).as_bytes(),
            );
        }
        if self.held_open {
            out.extend_from_slice(format!("\n[{}]\n", held_open_note(&self.holders)).as_bytes());
        }
        out
    }
}

/// [`shell_output`], with stdout as bytes and what was dropped counted
/// (a capture must know it saw everything).
pub async fn shell_output_raw(
    cmd: &str,
    cwd: &Path,
    timeout: Duration,
) -> Result<RawOutput, ShellError> {
    shell_raw(cmd, cwd, timeout, None).await
}

/// What a command is given besides its script: bytes on its stdin and
/// environment variables (data, never interpolated into the script).
pub struct Input<'a> {
    pub stdin: &'a [u8],
    pub env: &'a [(&'a str, &'a str)],
}

/// [`shell_output`], with `input` on the command's stdin and in its
/// environment (a command that does not read its stdin is not blocked).
pub async fn shell_output_with(
    cmd: &str,
    cwd: &Path,
    timeout: Duration,
    input: Input<'_>,
) -> Result<String, ShellError> {
    let raw = shell_raw(cmd, cwd, timeout, Some(input)).await?;
    Ok(String::from_utf8_lossy(&raw.annotated()).into_owned())
}

async fn shell_raw(
    cmd: &str,
    cwd: &Path,
    timeout: Duration,
    input: Option<Input<'_>>,
) -> Result<RawOutput, ShellError> {
    let mut c = tokio::process::Command::new("sh");
    c.arg("-c")
        .arg(cmd)
        .current_dir(cwd)
        .process_group(0)
        .kill_on_drop(true)
        .stdin(if input.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(i) = &input {
        for (k, v) in i.env {
            c.env(k, v);
        }
    }
    let mut child = c
        .spawn()
        .map_err(|e| ShellError(format!("`{}` could not start: {e}", shown(cmd))))?;
    if let (Some(i), Some(mut w)) = (&input, child.stdin.take()) {
        let bytes = i.stdin.to_vec();
        // a command that never reads its stdin must not block: the writer
        // runs apart and a broken pipe is no error
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let _ = w.write_all(&bytes).await;
        });
    }
    let mut group = GroupKiller::new(child.id().map(|id| id as libc::pid_t));
    let out = match tokio::time::timeout(timeout, wait_capped(child)).await {
        Err(_) => {
            drop(group);
            return Err(ShellError(format!(
                "`{}` timed out after {}s (its process group was killed)",
                shown(cmd),
                timeout.as_secs_f64()
            )));
        }
        Ok(Err(e)) => return Err(ShellError(format!("`{}`: {e}", shown(cmd)))),
        Ok(Ok(o)) => {
            group.disarm();
            o
        }
    };
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stderr.annotated())
            .trim()
            .to_string();
        return Err(ShellError(format!(
            "`{}` exited with {}: {}",
            shown(cmd),
            out.status,
            tail(&text)
        )));
    }
    Ok(out.stdout)
}

/// The most of a command's stdout and of its stderr that is kept in memory;
/// the rest is read and dropped (so the command never blocks on a full
/// pipe), and the error or detail says how much was dropped.
pub const OUTPUT_MAX: usize = 1 << 20;

/// What a reader has kept of one stream, and how many bytes it dropped.
type Captured = std::sync::Arc<std::sync::Mutex<(Vec<u8>, usize)>>;

/// Read up to [`OUTPUT_MAX`] bytes into `into`, drain the rest, count it.
async fn read_capped(
    r: Option<impl tokio::io::AsyncRead + Unpin>,
    into: Captured,
) -> std::io::Result<()> {
    use tokio::io::AsyncReadExt;
    let Some(mut r) = r else {
        return Ok(());
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        let mut c = into.lock().expect("capture lock");
        let room = OUTPUT_MAX.saturating_sub(c.0.len()).min(n);
        c.0.extend_from_slice(&buf[..room]);
        c.1 += n - room;
    }
}

fn captured(c: &Captured, open: bool, holders: &[i32]) -> RawOutput {
    let c = c.lock().expect("capture lock");
    RawOutput {
        bytes: c.0.clone(),
        dropped: c.1,
        held_open: open,
        holders: if open { holders.to_vec() } else { vec![] },
    }
}

/// A finished command: its status, and each stream as kept.
struct CappedOutput {
    status: std::process::ExitStatus,
    stdout: RawOutput,
    stderr: RawOutput,
}

/// How long the output pipes may stay open once the shell has exited: a
/// background process it started (`daemon &`) may hold them for ever.
const PIPE_GRACE: Duration = Duration::from_millis(500);

/// `wait_with_output` with bounded memory, that ends when the shell ends: a
/// background child still holding the pipes (a service started with `&`
/// and no redirection) does not turn a finished command into a timeout.
async fn wait_capped(mut child: tokio::process::Child) -> std::io::Result<CappedOutput> {
    let (out, err) = (child.stdout.take(), child.stderr.take());
    // a second descriptor of each pipe: handed to a drain if a background
    // process keeps it open past the shell
    use std::os::fd::AsFd;
    let dup =
        |p: Option<std::os::fd::BorrowedFd<'_>>| p.and_then(|fd| fd.try_clone_to_owned().ok());
    let (do_, de) = (
        dup(out.as_ref().map(|o| o.as_fd())),
        dup(err.as_ref().map(|e| e.as_fd())),
    );
    let (co, ce): (Captured, Captured) = Default::default();
    let ho = tokio::spawn(read_capped(out, co.clone()));
    let he = tokio::spawn(read_capped(err, ce.clone()));
    let pgid = child.id().map(|p| p as i32);
    let status = child.wait().await?;
    let settle = |h: tokio::task::JoinHandle<std::io::Result<()>>| async move {
        let abort = h.abort_handle();
        match tokio::time::timeout(PIPE_GRACE, h).await {
            Ok(Ok(r)) => r.map(|_| false),
            Ok(Err(e)) => Err(std::io::Error::other(e)),
            Err(_) => {
                abort.abort();
                Ok(true)
            }
        }
    };
    let (o, e) = tokio::join!(settle(ho), settle(he));
    let (o, e) = (o?, e?);
    for (held, fd) in [(o, do_), (e, de)] {
        if let (true, Some(fd)) = (held, fd) {
            drain_detached(fd);
        }
    }
    // the shell is gone: what is left of its group started in it
    let holders = match pgid {
        Some(g) if o || e => group_members(g),
        _ => vec![],
    };
    Ok(CappedOutput {
        status,
        stdout: captured(&co, o, &holders),
        stderr: captured(&ce, e, &holders),
    })
}

/// Keep reading a pipe a background process still writes to, after this
/// process stopped and even after it exits: a detached `cat` in its own
/// process group (no signal of ours reaches it) reads it to /dev/null and
/// ends when the last writer closes it. Without it, the writer's next write
/// would get SIGPIPE and kill the service.
pub(crate) fn drain_detached(fd: std::os::fd::OwnedFd) {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    // tokio's pipe is non-blocking, and `cat` would stop at the first
    // EAGAIN: the description (shared by the dup) blocks again, its reader
    // here being gone
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK);
        }
    }
    let spawned = std::process::Command::new("cat")
        .stdin(std::process::Stdio::from(fd))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn();
    if let Ok(mut child) = spawned {
        // reaped by a thread, so it never lingers as a zombie of ours
        std::thread::spawn(move || child.wait());
    }
}

/// The last 3 non-empty lines, joined.
pub fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

/// Run a shell command with a timeout; describe what happened.
pub async fn run_shell(cmd: &str, cwd: &Path, timeout: Duration) -> Result<String, ShellError> {
    let out = shell_output(cmd, cwd, timeout).await?;
    let t = tail(out.trim());
    Ok(if t.is_empty() {
        format!("`{}` ok", shown(cmd))
    } else {
        format!("`{}` ok: {t}", shown(cmd))
    })
}

/// The prefix of the shell variables that carry placeholder values (see
/// `plan::render_shell`).
pub const VAR_PREFIX: &str = "__gp_";

/// A command from `plan::render_shell` as a person reads it in a message,
/// the narration or the journal: the values back in place of their
/// variables, single-quoted (never to run), and of a script of several
/// lines its first line only, with how many follow (the plan has the rest).
pub fn shown(script: &str) -> String {
    first_line(&shown_full(script))
}

/// The first non-blank line of a script, and `… (+N lines)` when more
/// follow.
fn first_line(script: &str) -> String {
    let mut lines = script
        .lines()
        .map(str::trim_end)
        .skip_while(|l| l.trim().is_empty());
    let Some(first) = lines.next() else {
        return String::new();
    };
    let more = lines.filter(|l| !l.trim().is_empty()).count();
    match more {
        0 => first.trim_start().to_string(),
        n => format!(
            "{} … (+{n} line{})",
            first.trim_start(),
            if n == 1 { "" } else { "s" }
        ),
    }
}

/// [`shown`] with every line of the script.
pub fn shown_full(script: &str) -> String {
    let Some((first, body)) = script.split_once('\n') else {
        return script.to_string();
    };
    if !first.starts_with(VAR_PREFIX) {
        return script.to_string();
    }
    // parse back what render_shell wrote: name='value' pairs
    let mut vals: Vec<(String, String)> = Vec::new();
    let mut rest = first;
    while let Some(r) = rest.strip_prefix(VAR_PREFIX) {
        let Some((name, after)) = r.split_once('=') else {
            break;
        };
        let mut value = String::new();
        let mut tail = after;
        // a run of '…' segments and \' escapes
        loop {
            if let Some(t) = tail.strip_prefix('\'') {
                let end = t.find('\'').unwrap_or(t.len());
                value.push_str(&t[..end]);
                tail = t.get(end + 1..).unwrap_or("");
            } else if let Some(t) = tail.strip_prefix("\\'") {
                value.push('\'');
                tail = t;
            } else {
                break;
            }
        }
        vals.push((name.to_string(), value));
        rest = tail.trim_start();
    }
    let mut out = body.to_string();
    for (k, v) in &vals {
        let q = format!("'{}'", v.replace('\'', "'\\''"));
        out = out
            .replace(&format!("'\"${{{VAR_PREFIX}{k}}}\"'"), &q)
            .replace(&format!("\"${{{VAR_PREFIX}{k}}}\""), &q)
            .replace(&format!("${{{VAR_PREFIX}{k}}}"), v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_is_shown_by_its_first_line() {
        assert_eq!(shown("systemctl restart api"), "systemctl restart api");
        assert_eq!(
            shown("\n  set -e\n\n  systemctl restart api\n  sleep 1\n"),
            "set -e … (+2 lines)"
        );
        assert_eq!(shown("a\nb"), "a … (+1 line)");
        // the values are put back first: a first line of assignments is not shown
        let script = format!("{VAR_PREFIX}node='api-1'\necho \"${{{VAR_PREFIX}node}}\"\nexit 0");
        assert_eq!(shown(&script), "echo 'api-1' … (+1 line)");
        assert_eq!(shown_full(&script), "echo 'api-1'\nexit 0");
    }

    /// Alive and not a zombie waiting to be reaped.
    fn running(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => false,
            Ok(stat) => {
                let state = stat.rsplit(')').next().unwrap_or("").trim_start();
                !state.starts_with('Z') && !state.starts_with('X')
            }
        }
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_process_group() {
        let tmp = tempfile::tempdir().unwrap();
        let err = shell_output(
            "sleep 300 & echo $! > bg.pid; sh -c 'echo $$ > fg.pid; exec sleep 300'",
            tmp.path(),
            Duration::from_millis(500),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("timed out"), "{err}");
        let pid = |f: &str| -> i32 {
            std::fs::read_to_string(tmp.path().join(f))
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        };
        let (bg, fg) = (pid("bg.pid"), pid("fg.pid"));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while running(bg) || running(fg) {
            assert!(
                std::time::Instant::now() < deadline,
                "children of the timed-out command still run: bg {bg} {}, fg {fg} {}",
                running(bg),
                running(fg)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn dropping_a_running_command_kills_its_process_group() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let task = tokio::spawn(async move {
            shell_output(
                "sleep 300 & echo $! > bg.pid; sleep 300",
                &dir,
                Duration::from_secs(300),
            )
            .await
        });
        let file = tmp.path().join("bg.pid");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let bg: i32 = loop {
            if let Some(p) = std::fs::read_to_string(&file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                break p;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the command never started"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        task.abort();
        let _ = task.await;
        while running(bg) {
            assert!(
                std::time::Instant::now() < deadline,
                "the background child {bg} outlived the dropped command"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_command_printing_gigabytes_is_read_with_bounded_memory() {
        let tmp = tempfile::tempdir().unwrap();
        let out = shell_output(
            "head -c 50000000 /dev/zero | tr '\\0' x; echo; echo done >&2",
            tmp.path(),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
        assert!(out.len() < OUTPUT_MAX + 100, "{} bytes kept", out.len());
        assert!(out.contains("more bytes of output dropped"), "says so");
    }

    /// `daemon &` without redirection keeps the pipes open: the command is
    /// done when the shell is, not at the timeout.
    #[tokio::test]
    async fn a_background_child_holding_the_pipes_does_not_make_a_timeout() {
        let tmp = tempfile::tempdir().unwrap();
        let t = std::time::Instant::now();
        let out = shell_output(
            "echo started; sleep 30 & echo $! > bg.pid",
            tmp.path(),
            Duration::from_secs(20),
        )
        .await
        .unwrap();
        assert!(out.starts_with("started"), "{out}");
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        let pid: i32 = std::fs::read_to_string(tmp.path().join("bg.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(
            out.contains(&format!(
                "a process it started (pid {pid}) still holds its output"
            )) && out.contains("setsid"),
            "names the holder and the fix: {out}"
        );
        // SAFETY: the sleep this test started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}
