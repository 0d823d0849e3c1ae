//! `serve`: the dashboard, the API, the event streams, the actions and
//! `/metrics` (`glidepath::serve`), until the process is stopped.

use super::Ctx;
use crate::{exit, Failure};
use glidepath::serve::{ServeConfig, Server};
use std::net::SocketAddr;
use std::path::Path;

/// The actions' token: from the variable `env`, or the file `file`
/// (trimmed), read once here; never printed.
fn token(env: Option<&str>, file: Option<&Path>) -> Result<Option<String>, Failure> {
    let bad = |m: String| Failure::new(exit::INVALID, m);
    let t = match (env, file) {
        (Some(var), _) => std::env::var(var).map_err(|_| {
            bad(format!("--token-env {var}: the variable is not set\nhint: export {var}=\"$(openssl rand -hex 32)\" (or use --token-file PATH)"))
        })?,
        (None, Some(path)) => {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::metadata(path)
                .map_err(|e| bad(format!("--token-file {}: {e}", path.display())))?;
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(bad(format!("--token-file {}: readable by other users (mode {:o})\nhint: chmod 600 {}", path.display(), meta.permissions().mode() & 0o777, path.display())));
            }
            std::fs::read_to_string(path)
                .map_err(|e| bad(format!("--token-file {}: {e}", path.display())))?
        }
        (None, None) => return Ok(None),
    };
    let t = t.trim().to_string();
    if t.len() < 16 || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad(
            "the token must be at least 16 characters, without spaces\nhint: openssl rand -hex 32"
                .into(),
        ));
    }
    Ok(Some(t))
}

pub async fn run(
    ctx: &Ctx,
    listen: &str,
    allow_remote: bool,
    token_env: Option<&str>,
    token_file: Option<&Path>,
) -> Result<u8, Failure> {
    let listen: SocketAddr = listen.parse().map_err(|e| {
        Failure::new(
            exit::INVALID,
            format!("--listen {listen}: {e}\nhint: an address and a port, e.g. 127.0.0.1:8470"),
        )
    })?;
    let token = token(token_env, token_file)?;
    // a journal named on purpose must exist (a typo would serve an empty
    // one); this machine's is created, so serve may start before any run
    let journal = ctx.journal_location()?;
    if ctx.journal.is_some() && !journal.exists() {
        ctx.open_existing()?;
    }
    let server = Server::bind(ServeConfig {
        listen,
        journal: journal.clone(),
        token,
        allow_remote,
    })
    .await
    .map_err(|e| match e {
        // an unreachable database: 4, like every command
        glidepath::serve::ServeError::Journal(j) => Failure::from(j),
        e => Failure::new(exit::INVALID, e.to_string()),
    })?;
    let actions = if server.actions_enabled() {
        "actions need the bearer token"
    } else {
        "actions disabled (no --token-env/--token-file)"
    };
    // stderr: stdout stays free; the address is what a script waits for
    eprintln!(
        "glidepath serve: http://{}/ (journal {}; {actions})",
        server.addr(),
        journal
    );
    server.run().await;
    Ok(exit::OK)
}
