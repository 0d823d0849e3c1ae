//! Signals: the watch installed before a run exists, the run this process
//! drives (for the message a second signal prints), and the SIGBUS last resort.

use crate::journal::Store;
use tokio::sync::watch;

/// Termination requests (SIGINT, SIGTERM, SIGHUP) the process has received, counted.
/// [`watch_signals`] installs the handlers; the executor reacts to the first
/// (abort safely, or end a preflight as aborted) from the first instant of a
/// run, not only once the rollout loop starts.
pub type StopSignals = watch::Receiver<(u32, &'static str)>;

static ACTIVE_RUN: std::sync::Mutex<Option<(String, String)>> = std::sync::Mutex::new(None);

/// The run this process drives and its journal, once known (for the message
/// printed when a second signal ends the process at once).
pub fn active_run() -> Option<(String, String)> {
    ACTIVE_RUN.lock().ok().and_then(|g| g.clone())
}

pub(super) fn set_active_run(run: &str, journal: &dyn Store) {
    if let Ok(mut g) = ACTIVE_RUN.lock() {
        *g = Some((run.to_string(), journal.location()));
    }
    let msg = format!(
        "error: the journal {j} failed under a memory-mapped write (SIGBUS: its files were made immutable, truncated or lost their disk); the process stops here; `{resume}` finishes the run once the journal is writable again\n",
        j = journal.location(),
        resume = crate::hints::Hints::with_arg(run, Some(journal.location())).cmd("resume")
    );
    let msg: &'static [u8] = Box::leak(msg.into_bytes().into_boxed_slice());
    SIGBUS_LEN.store(0, std::sync::atomic::Ordering::SeqCst);
    SIGBUS_MSG.store(msg.as_ptr() as *mut u8, std::sync::atomic::Ordering::SeqCst);
    SIGBUS_LEN.store(msg.len(), std::sync::atomic::Ordering::SeqCst);
}

static SIGBUS_MSG: std::sync::atomic::AtomicPtr<u8> =
    std::sync::atomic::AtomicPtr::new(std::ptr::null_mut());
static SIGBUS_LEN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static SIGBUS_CODE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(8);

extern "C" fn on_sigbus(_: libc::c_int) {
    let len = SIGBUS_LEN.load(std::sync::atomic::Ordering::SeqCst);
    let ptr = SIGBUS_MSG.load(std::sync::atomic::Ordering::SeqCst);
    // SAFETY: write(2) and _exit(2) are async-signal-safe; the message is a
    // leaked, never-freed buffer published before its length.
    unsafe {
        if !ptr.is_null() && len > 0 {
            libc::write(2, ptr as *const libc::c_void, len);
        } else {
            let m = b"error: SIGBUS (a memory-mapped file failed under the journal)\n";
            libc::write(2, m.as_ptr() as *const libc::c_void, m.len());
        }
        libc::_exit(SIGBUS_CODE.load(std::sync::atomic::Ordering::SeqCst));
    }
}

/// The last resort for a journal whose files fail under SQLite's memory map
/// (WAL index): a SIGBUS ends the process with `code` and a message naming
/// the journal and the run, instead of a silent crash. The journal checks
/// its files before each access (`journal::check_writable`), so this only
/// covers a fault landing between that check and the access.
pub fn install_sigbus_handler(code: i32) {
    SIGBUS_CODE.store(code, std::sync::atomic::Ordering::SeqCst);
    // SAFETY: installing a handler that only calls async-signal-safe functions.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigbus as *const () as libc::sighandler_t;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut());
    }
}

/// Install SIGINT and SIGTERM handlers now and count what arrives. From the
/// second signal on, `on_second` is called with the signal's name (the binary
/// ends the process there, whatever the executor is blocked on). Call it
/// inside a tokio runtime.
pub fn watch_signals(on_second: impl Fn(&'static str) + Send + 'static) -> StopSignals {
    use tokio::signal::unix::{signal, SignalKind};
    let (tx, rx) = watch::channel((0u32, ""));
    let mut sigint = signal(SignalKind::interrupt()).ok();
    let mut sigterm = signal(SignalKind::terminate()).ok();
    let mut sighup = signal(SignalKind::hangup()).ok();
    tokio::spawn(async move {
        let mut count = 0;
        loop {
            let name = tokio::select! {
                Some(_) = async { match sigint.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => "Ctrl-C",
                Some(_) = async { match sigterm.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => "SIGTERM",
                // the terminal or ssh session went away: stop safely, as for Ctrl-C
                Some(_) = async { match sighup.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => "SIGHUP",
                else => return,
            };
            count += 1;
            if count >= 2 {
                on_second(name);
            }
            if tx.send((count, name)).is_err() && count >= 2 {
                return;
            }
        }
    });
    rx
}
