//! `kind = "haproxy"`: HAProxy's runtime API over a unix socket or TCP
//! (`stats socket … level admin`). One command per connection.
//!
//! - drain/enable: `set server BACKEND/SERVER state drain|ready` (idempotent:
//!   HAProxy accepts setting the state a server already has);
//! - drained or not: the admin-state bits of `show servers state` (not the
//!   status text, which reads DOWN while a restarted server is checked);
//! - active connections: `scur` of `show stat`;
//! - after enabling: the server is UP and, when configured, a request through
//!   the frontend succeeds.

use super::{http_client, http_err, Balancer, DResult, DriverError, Target};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct HaproxyBalancer {
    pub socket: Option<PathBuf>,
    pub address: Option<String>,
    pub backend: String,
    pub servers: BTreeMap<String, String>,
    pub frontend: Option<String>,
    pub timeout: Duration,
    pub client: reqwest::Client,
}

/// Admin-state bits of `srv_admin_state`.
const ADMIN_FMAINT: u32 = 0x01;
const ADMIN_IMAINT: u32 = 0x02;
const ADMIN_CMAINT: u32 = 0x04;
const ADMIN_FDRAIN: u32 = 0x08;
const ADMIN_IDRAIN: u32 = 0x10;

/// One server's row of `show servers state`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerState {
    pub op_state: u32,
    pub admin_state: u32,
}

impl ServerState {
    pub fn out_of_rotation(&self) -> bool {
        self.admin_state
            & (ADMIN_FMAINT | ADMIN_IMAINT | ADMIN_CMAINT | ADMIN_FDRAIN | ADMIN_IDRAIN)
            != 0
    }
}

/// Parse `show servers state` output: a version line, a `#` header, rows.
pub fn parse_servers_state(text: &str, server: &str) -> Option<ServerState> {
    let mut cols: Vec<&str> = Vec::new();
    for line in text.lines() {
        if let Some(h) = line.strip_prefix('#') {
            cols = h.split_whitespace().collect();
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if cols.is_empty() || fields.len() < cols.len() {
            continue;
        }
        let get = |name: &str| {
            cols.iter()
                .position(|c| *c == name)
                .and_then(|i| fields.get(i).copied())
        };
        if get("srv_name") == Some(server) {
            return Some(ServerState {
                op_state: get("srv_op_state")?.parse().ok()?,
                admin_state: get("srv_admin_state")?.parse().ok()?,
            });
        }
    }
    None
}

/// Parse `show stat` CSV: (scur, status) of one server.
pub fn parse_stat(text: &str, backend: &str, server: &str) -> Option<(u64, String)> {
    let mut lines = text.lines();
    let header = lines.next()?.trim_start_matches("# ");
    let cols: Vec<&str> = header.split(',').collect();
    let idx = |n: &str| cols.iter().position(|c| *c == n);
    let (px, sv, scur, status) = (idx("pxname")?, idx("svname")?, idx("scur")?, idx("status")?);
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        if f.get(px) == Some(&backend) && f.get(sv) == Some(&server) {
            return Some((
                f.get(scur)?.parse().unwrap_or(0),
                f.get(status)?.to_string(),
            ));
        }
    }
    None
}

impl HaproxyBalancer {
    fn endpoint(&self) -> String {
        match (&self.socket, &self.address) {
            (Some(s), _) => s.display().to_string(),
            (None, Some(a)) => a.clone(),
            _ => "?".into(),
        }
    }

    fn server<'a>(&'a self, t: &'a Target) -> &'a str {
        self.servers
            .get(&t.name)
            .map_or(t.name.as_str(), |s| s.as_str())
    }

    /// Send one runtime API command, read the whole answer (at most
    /// [`HAPROXY_MAX`](super::http::HAPROXY_MAX) bytes).
    pub async fn command(&self, cmd: &str) -> DResult<String> {
        let unreachable = |e: std::io::Error| {
            DriverError::Unreachable(format!("HAProxy runtime API {}: {e}", self.endpoint()))
        };
        let cap = super::http::HAPROXY_MAX;
        let fut = async {
            let mut out = Vec::new();
            if let Some(path) = &self.socket {
                let mut s = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(unreachable)?;
                s.write_all(format!("{cmd}\n").as_bytes())
                    .await
                    .map_err(unreachable)?;
                s.take(cap as u64 + 1)
                    .read_to_end(&mut out)
                    .await
                    .map_err(unreachable)?;
            } else if let Some(addr) = &self.address {
                let mut s = tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(unreachable)?;
                s.write_all(format!("{cmd}\n").as_bytes())
                    .await
                    .map_err(unreachable)?;
                s.take(cap as u64 + 1)
                    .read_to_end(&mut out)
                    .await
                    .map_err(unreachable)?;
            }
            if out.len() > cap {
                return Err(DriverError::Failed(super::http::too_large(
                    &format!("HAProxy runtime API {} `{cmd}`", self.endpoint()),
                    cap,
                )));
            }
            Ok(String::from_utf8_lossy(&out).into_owned())
        };
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(DriverError::Unreachable(format!(
                "HAProxy runtime API {}: timed out after {:?}",
                self.endpoint(),
                self.timeout
            ))),
        }
    }

    async fn set_state(&self, t: &Target, state: &str) -> DResult<String> {
        let srv = self.server(t);
        let cmd = format!("set server {}/{srv} state {state}", self.backend);
        let out = self.command(&cmd).await?;
        let out = out.trim();
        if !out.is_empty() {
            return Err(DriverError::Failed(format!(
                "HAProxy refused `{cmd}`: {out}"
            )));
        }
        Ok(format!("{}/{srv} → {state}", self.backend))
    }

    pub async fn server_state(&self, t: &Target) -> DResult<ServerState> {
        let out = self
            .command(&format!("show servers state {}", self.backend))
            .await?;
        parse_servers_state(&out, self.server(t)).ok_or_else(|| {
            DriverError::Failed(format!(
                "HAProxy backend `{}` has no server `{}` ({})",
                self.backend,
                self.server(t),
                out.lines().next().unwrap_or("").trim()
            ))
        })
    }

    pub async fn stat(&self, t: &Target) -> DResult<(u64, String)> {
        let out = self
            .command(&format!("show stat {} 4 -1", self.backend))
            .await?;
        parse_stat(&out, &self.backend, self.server(t)).ok_or_else(|| {
            DriverError::Failed(format!(
                "`show stat` has no row for {}/{}",
                self.backend,
                self.server(t)
            ))
        })
    }
}

#[async_trait]
impl Balancer for HaproxyBalancer {
    async fn drain(&self, t: &Target) -> DResult<String> {
        self.set_state(t, "drain").await
    }

    async fn active(&self, t: &Target) -> DResult<u64> {
        let st = self.server_state(t).await?;
        if !st.out_of_rotation() {
            return Err(DriverError::Failed(format!(
                "{}/{} is not drained (admin state {})",
                self.backend,
                self.server(t),
                st.admin_state
            )));
        }
        Ok(self.stat(t).await?.0)
    }

    async fn enable(&self, t: &Target) -> DResult<String> {
        self.set_state(t, "ready").await
    }

    async fn check_in_rotation(&self, t: &Target) -> DResult<String> {
        let st = self.server_state(t).await?;
        if st.out_of_rotation() {
            return Err(DriverError::Failed(format!(
                "{}/{} is still out of rotation (admin state {})",
                self.backend,
                self.server(t),
                st.admin_state
            )));
        }
        let (_, status) = self.stat(t).await?;
        if !status.starts_with("UP") {
            return Err(DriverError::Failed(format!(
                "{}/{} is {status} in HAProxy, waiting for UP",
                self.backend,
                self.server(t)
            )));
        }
        if let Some(url) = &self.frontend {
            let resp = self
                .client
                .get(url)
                .send()
                .await
                .map_err(|e| http_err(&format!("GET {url} (frontend)"), e))?;
            if !resp.status().is_success() {
                return Err(DriverError::Failed(format!(
                    "GET {url} through the frontend: HTTP {}",
                    resp.status()
                )));
            }
            return Ok(format!(
                "{}/{} {status}; frontend {url} answers {}",
                self.backend,
                self.server(t),
                resp.status()
            ));
        }
        Ok(format!("{}/{} {status}", self.backend, self.server(t)))
    }

    async fn out_before(&self, t: &Target) -> DResult<Option<String>> {
        let st = self.server_state(t).await?;
        Ok(st.out_of_rotation().then(|| {
            format!(
                "{}/{} is in {} in HAProxy (admin state {})",
                self.backend,
                self.server(t),
                if st.admin_state & (ADMIN_FDRAIN | ADMIN_IDRAIN) != 0 {
                    "drain"
                } else {
                    "maintenance"
                },
                st.admin_state
            )
        }))
    }

    async fn preflight(&self, t: &Target) -> DResult<String> {
        let st = self.server_state(t).await?;
        // prove admin level: a harmless admin command
        let out = self
            .command(&format!("get weight {}/{}", self.backend, self.server(t)))
            .await?;
        if out.contains("Permission denied") {
            return Err(DriverError::Failed(format!(
                "HAProxy socket {} is not at admin level: {}",
                self.endpoint(),
                out.trim()
            )));
        }
        Ok(format!(
            "{}/{} known (admin state {}, op state {})",
            self.backend,
            self.server(t),
            st.admin_state,
            st.op_state
        ))
    }
}

impl HaproxyBalancer {
    pub fn new(
        socket: Option<PathBuf>,
        address: Option<String>,
        backend: String,
        servers: BTreeMap<String, String>,
        frontend: Option<String>,
        timeout: Duration,
    ) -> Self {
        HaproxyBalancer {
            socket,
            address,
            backend,
            servers,
            frontend,
            timeout,
            client: http_client(timeout),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_state_admin_bits() {
        let text = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight\n3 api 1 n1 127.0.0.1 2 8 1\n3 api 2 n2 127.0.0.1 2 0 1\n";
        let n1 = parse_servers_state(text, "n1").unwrap();
        assert_eq!(
            n1,
            ServerState {
                op_state: 2,
                admin_state: 8
            }
        );
        assert!(n1.out_of_rotation());
        assert!(!parse_servers_state(text, "n2").unwrap().out_of_rotation());
        assert_eq!(parse_servers_state(text, "n3"), None);
    }

    #[test]
    fn stat_csv() {
        let text = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight\napi,n1,0,0,3,5,,10,0,0,,0,,0,0,0,0,DRAIN,1\napi,n2,0,0,0,5,,10,0,0,,0,,0,0,0,0,UP 1/2,1\n";
        assert_eq!(parse_stat(text, "api", "n1"), Some((3, "DRAIN".into())));
        assert_eq!(parse_stat(text, "api", "n2"), Some((0, "UP 1/2".into())));
    }
}
