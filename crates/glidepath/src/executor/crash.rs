//! The crash test hook.

/// A test hook: `GLIDEPATH_CRASH_AT=<intent|done|outcome>:<step>[:<node>][@N]`
/// or `transition:<event>[@N]` makes the process SIGKILL itself at the Nth
/// (default first) such point, to prove crash safety at exact places.
/// Unset in normal use.
#[derive(Debug, Default)]
pub struct CrashHook {
    at: Option<(String, String, Option<String>, u32)>,
    seen: std::sync::atomic::AtomicU32,
}

impl CrashHook {
    pub fn from_env() -> Self {
        let Ok(v) = std::env::var("GLIDEPATH_CRASH_AT") else {
            return CrashHook::default();
        };
        let (v, nth) = match v.rsplit_once('@') {
            Some((a, n)) => (a.to_string(), n.parse().unwrap_or(1)),
            None => (v, 1),
        };
        let mut parts = v.splitn(3, ':');
        let phase = parts.next().unwrap_or_default().to_string();
        let what = parts.next().unwrap_or_default().to_string();
        CrashHook {
            at: Some((phase, what, parts.next().map(str::to_string), nth)),
            seen: Default::default(),
        }
    }

    pub(super) fn hit(&self, phase: &str, what: &str, node: Option<&str>) {
        if let Some((p, w, n, nth)) = &self.at {
            if p == phase
                && w == what
                && (n.is_none() || n.as_deref() == node)
                && self.seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == *nth
            {
                use std::io::Write;
                let _ = std::io::stdout().flush();
                eprintln!("GLIDEPATH_CRASH_AT={phase}:{what}: killing myself (test hook)");
                // SAFETY: sending SIGKILL to our own pid.
                unsafe {
                    libc::kill(libc::getpid(), libc::SIGKILL);
                }
            }
        }
    }
}
