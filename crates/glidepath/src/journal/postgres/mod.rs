//! The shared journal: PostgreSQL (team mode). Several people, CI runners
//! and machines see the same runs; one holder per fleet, fenced by the
//! lease row's epoch.

use super::*;

/// Is `s` a PostgreSQL URL (`postgres://…`, `postgresql://…`)?
pub fn is_url(s: &str) -> bool {
    let s = s.trim_start();
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

/// A PostgreSQL journal's address: the connection settings (with the
/// password from `GLIDEPATH_JOURNAL_PASSWORD_FILE` or
/// `GLIDEPATH_JOURNAL_PASSWORD` when the URL has none) and the URL without
/// its password, the only form that is ever printed.
#[derive(Clone)]
pub struct Target {
    pub(crate) config: tokio_postgres::Config,
    redacted: String,
}

impl PartialEq for Target {
    fn eq(&self, other: &Target) -> bool {
        self.redacted == other.redacted
    }
}
impl Eq for Target {}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl Target {
    pub fn parse(given: &str) -> Result<Target, JournalError> {
        let bad = |why: String| JournalError::BadLocation {
            given: redact_text(given),
            why,
        };
        let mut config: tokio_postgres::Config = given.trim().parse().map_err(|e| {
            bad(format!(
                "not a PostgreSQL URL ({e}); expected postgres://USER@HOST:PORT/DATABASE"
            ))
        })?;
        if config.get_hosts().is_empty() {
            return Err(bad("no host: postgres://USER@HOST:PORT/DATABASE".into()));
        }
        if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
            return Err(bad("sslmode=require: this glidepath speaks to PostgreSQL without TLS; reach the server over a trusted network or a tunnel, and drop sslmode".into()));
        }
        if config.get_password().is_none() {
            if let Some(pw) = password_from_env().map_err(bad)? {
                config.password(pw);
            }
        }
        let user = config.get_user().unwrap_or("").to_string();
        let hosts: Vec<String> = config
            .get_hosts()
            .iter()
            .zip(config.get_ports().iter().chain(std::iter::repeat(&5432)))
            .map(|(h, p)| match h {
                tokio_postgres::config::Host::Tcp(h) if h.contains(':') => format!("[{h}]:{p}"),
                tokio_postgres::config::Host::Tcp(h) => format!("{h}:{p}"),
                tokio_postgres::config::Host::Unix(d) => format!("{}:{p}", d.display()),
            })
            .collect();
        let db = config.get_dbname().unwrap_or(&user).to_string();
        let redacted = format!(
            "postgres://{}{}/{}",
            if user.is_empty() {
                String::new()
            } else {
                format!("{user}@")
            },
            hosts.join(","),
            db
        );
        config.application_name("glidepath");
        config.connect_timeout(CONNECT_TIMEOUT);
        config.keepalives_idle(Duration::from_secs(10));
        Ok(Target { config, redacted })
    }

    /// The URL without its password.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }
}

/// How long a connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The password of the journal's database, if the environment gives one:
/// the file `GLIDEPATH_JOURNAL_PASSWORD_FILE` names (its first line), else
/// `GLIDEPATH_JOURNAL_PASSWORD`.
fn password_from_env() -> Result<Option<String>, String> {
    if let Some(f) = std::env::var_os("GLIDEPATH_JOURNAL_PASSWORD_FILE").filter(|f| !f.is_empty()) {
        let path = PathBuf::from(f);
        let meta = std::fs::metadata(&path)
            .map_err(|e| format!("GLIDEPATH_JOURNAL_PASSWORD_FILE {}: {e}", path.display()))?;
        if meta.len() > 4096 {
            return Err(format!(
                "GLIDEPATH_JOURNAL_PASSWORD_FILE {}: {} bytes; a password file holds one line",
                path.display(),
                meta.len()
            ));
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("GLIDEPATH_JOURNAL_PASSWORD_FILE {}: {e}", path.display()))?;
        return Ok(Some(text.lines().next().unwrap_or("").to_string()));
    }
    Ok(std::env::var("GLIDEPATH_JOURNAL_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty()))
}

/// A URL as given, with any password replaced (for error messages).
pub fn redact_text(given: &str) -> String {
    // postgres://user:secret@host → postgres://user:***@host
    let Some((scheme, rest)) = given.split_once("://") else {
        return given.to_string();
    };
    let (auth, tail) = match rest.split_once('@') {
        Some((a, t)) => (a, t),
        None => return given.to_string(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{tail}"),
        None => given.to_string(),
    }
}

/// Open the journal at `t` (creating or upgrading its schema).
pub fn open(t: &Target) -> Result<Box<dyn Store>, JournalError> {
    Err(JournalError::Unavailable {
        location: t.redacted.clone(),
        message: "PostgreSQL journals are being built".into(),
    })
}
