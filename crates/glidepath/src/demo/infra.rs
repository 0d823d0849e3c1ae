//! Real infrastructure on 127.0.0.1 for rehearsals, end-to-end tests and
//! benchmarks: HAProxy, Prometheus and OpenSSH's sshd from the system's
//! packages, each started in a directory the caller owns, with a config it
//! writes, and stopped (by PID) when dropped. Nothing here is a fake.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Find a component on PATH (or the usual sbin dirs).
pub fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A free TCP port on 127.0.0.1 (bound and released: a tiny race, fine for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn spawn(cmd: &mut Command, log: &Path) -> std::io::Result<Child> {
    let f = std::fs::File::create(log)?;
    cmd.stdin(Stdio::null()).stdout(f.try_clone()?).stderr(f);
    // SAFETY: prctl between fork and exec; the component dies with its parent.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.spawn()
}

async fn wait_for(
    what: &str,
    timeout: Duration,
    child: &mut Child,
    log: &Path,
    mut ok: impl AsyncFnMut() -> bool,
) -> std::io::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if ok().await {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            return Err(std::io::Error::other(format!(
                "{what} exited ({status}): {}",
                text.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
            )));
        }
        if Instant::now() > deadline {
            return Err(std::io::Error::other(format!(
                "{what} not ready after {timeout:?}; log {}",
                log.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// HAProxy with one frontend and the given backends.
pub struct Haproxy {
    child: Child,
    pub socket: PathBuf,
    pub frontend: String,
    pub config: PathBuf,
}

impl Haproxy {
    /// `backends`: (name, [(server name, address)]); the frontend routes to the first.
    pub async fn start(
        dir: &Path,
        backends: &[(&str, Vec<(String, String)>)],
    ) -> std::io::Result<Haproxy> {
        let bin =
            find("haproxy").ok_or_else(|| std::io::Error::other("haproxy is not installed"))?;
        std::fs::create_dir_all(dir)?;
        let socket = dir.join("haproxy.sock");
        let _ = std::fs::remove_file(&socket);
        let fe_port = free_port();
        let mut cfg = format!(
            "global\n  stats socket {} mode 600 level admin\n  maxconn 2000\n\ndefaults\n  mode http\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n  retries 2\n  option redispatch\n\nfrontend fe\n  bind 127.0.0.1:{fe_port}\n  default_backend {}\n",
            socket.display(),
            backends[0].0
        );
        for (name, servers) in backends {
            cfg.push_str(&format!(
                "\nbackend {name}\n  balance roundrobin\n  option httpchk GET /health\n"
            ));
            for (srv, addr) in servers {
                cfg.push_str(&format!(
                    "  server {srv} {addr} check inter 1s fall 2 rise 2\n"
                ));
            }
        }
        let config = dir.join("haproxy.cfg");
        std::fs::write(&config, cfg)?;
        let check = Command::new(&bin)
            .arg("-c")
            .arg("-f")
            .arg(&config)
            .output()?;
        if !check.status.success() {
            return Err(std::io::Error::other(format!(
                "haproxy -c: {}",
                String::from_utf8_lossy(&check.stderr)
            )));
        }
        let child = Self::launch(&bin, &config, &socket).await?;
        Ok(Haproxy {
            child,
            socket,
            frontend: format!("http://127.0.0.1:{fe_port}"),
            config,
        })
    }

    /// Start HAProxy on `config` and wait until its runtime API answers.
    async fn launch(bin: &Path, config: &Path, socket: &Path) -> std::io::Result<Child> {
        let log = config.with_file_name("haproxy.log");
        let mut child = spawn(Command::new(bin).arg("-f").arg(config).arg("-db"), &log)?;
        let sock = socket.to_path_buf();
        wait_for(
            "haproxy",
            Duration::from_secs(15),
            &mut child,
            &log,
            async || {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let Ok(mut s) = tokio::net::UnixStream::connect(&sock).await else {
                    return false;
                };
                let mut out = String::new();
                s.write_all(b"show info\n").await.is_ok()
                    && s.read_to_string(&mut out).await.is_ok()
                    && out.contains("Name: HAProxy")
            },
        )
        .await?;
        Ok(child)
    }

    /// SIGKILL this HAProxy (by its PID, as a crash would) and reap it. Its
    /// socket file is left behind, dead.
    pub fn kill(&mut self) {
        stop(&mut self.child);
    }

    /// Start it again on the same config and socket (after [`Haproxy::kill`]):
    /// like a restarted HAProxy, it forgets the runtime state (drains).
    pub async fn restart(&mut self) -> std::io::Result<()> {
        stop(&mut self.child);
        let bin =
            find("haproxy").ok_or_else(|| std::io::Error::other("haproxy is not installed"))?;
        self.child = Self::launch(&bin, &self.config, &self.socket).await?;
        Ok(())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// Prometheus scraping `targets` every second.
pub struct Prometheus {
    child: Option<Child>,
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    pub url: String,
    targets: usize,
}

impl Prometheus {
    pub async fn start(dir: &Path, targets: &[String]) -> std::io::Result<Prometheus> {
        let bin = find("prometheus")
            .ok_or_else(|| std::io::Error::other("prometheus is not installed"))?;
        std::fs::create_dir_all(dir)?;
        let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        std::fs::write(
            dir.join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: demo\n    static_configs:\n      - targets: [{}]\n",
                list.join(", ")
            ),
        )?;
        let port = free_port();
        let mut p = Prometheus {
            child: None,
            bin,
            dir: dir.to_path_buf(),
            port,
            url: format!("http://127.0.0.1:{port}"),
            targets: targets.len(),
        };
        p.restart().await?;
        Ok(p)
    }

    /// How many targets Prometheus has scraped successfully since `since` (unix seconds).
    pub async fn targets_up(&self, since: u64) -> usize {
        let q = format!(
            "{}/api/v1/query?query=count(timestamp(up%3D%3D1)%3E{since})",
            self.url
        );
        let Ok(r) = reqwest::Client::new()
            .get(q)
            .timeout(Duration::from_secs(2))
            .send()
            .await
        else {
            return 0;
        };
        let Ok(v) = r.json::<serde_json::Value>().await else {
            return 0;
        };
        v["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// Stop the server (its data directory stays).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop(&mut c);
        }
    }

    /// (Re)start on the same port and data, and wait until every target is up.
    pub async fn restart(&mut self) -> std::io::Result<()> {
        self.stop();
        let log = self.dir.join("prometheus.log");
        let mut child = spawn(
            Command::new(&self.bin)
                .arg(format!(
                    "--config.file={}",
                    self.dir.join("prometheus.yml").display()
                ))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    self.dir.join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
                .arg("--storage.tsdb.retention.time=1h"),
            &log,
        )?;
        let n = self.targets;
        let since = crate::journal::now_ms() / 1000;
        let me = Prometheus {
            child: None,
            bin: self.bin.clone(),
            dir: self.dir.clone(),
            port: self.port,
            url: self.url.clone(),
            targets: n,
        };
        let r = wait_for(
            "prometheus",
            Duration::from_secs(60),
            &mut child,
            &log,
            async || me.targets_up(since).await >= n,
        )
        .await;
        self.child = Some(child);
        r
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A local fleet's front: real HAProxy with two backends of every node
/// (`api`, behind the frontend, and `api_internal`) and real Prometheus
/// scraping every node, as `plans::haproxy_prometheus_plan` expects them.
pub struct Front {
    pub haproxy: Haproxy,
    pub prom: Prometheus,
}

impl Front {
    /// Started in `dir/haproxy` and `dir/prometheus`.
    pub async fn start(dir: &Path, fleet: &super::fleet::LocalFleet) -> std::io::Result<Front> {
        let servers = fleet.servers();
        let haproxy = Haproxy::start(
            &dir.join("haproxy"),
            &[("api", servers.clone()), ("api_internal", servers.clone())],
        )
        .await?;
        let addresses: Vec<String> = servers.into_iter().map(|s| s.1).collect();
        let prom = Prometheus::start(&dir.join("prometheus"), &addresses).await?;
        Ok(Front { haproxy, prom })
    }

    /// Traffic at `rps` requests/s through HAProxy's frontend.
    pub fn traffic(&self, rps: u32) -> super::fleet::Traffic {
        super::fleet::Traffic::through(&format!("{}/", self.haproxy.frontend), rps)
    }
}

/// OpenSSH's sshd on 127.0.0.1 accepting one client key, and the client
/// side's files (key, known_hosts with the server's real host key).
pub struct Sshd {
    child: Child,
    pub port: u16,
    pub client_key: PathBuf,
    pub known_hosts: PathBuf,
}

impl Sshd {
    pub async fn start(dir: &Path) -> std::io::Result<Sshd> {
        let bin = find("sshd")
            .ok_or_else(|| std::io::Error::other("sshd (openssh-server) is not installed"))?;
        std::fs::create_dir_all(dir)?;
        std::fs::create_dir_all("/run/sshd")?;
        for key in ["hostkey", "client"] {
            let p = dir.join(key);
            if !p.exists() {
                let out = Command::new("ssh-keygen")
                    .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                    .arg(&p)
                    .output()?;
                if !out.status.success() {
                    return Err(std::io::Error::other(format!(
                        "ssh-keygen: {}",
                        String::from_utf8_lossy(&out.stderr)
                    )));
                }
            }
        }
        std::fs::copy(dir.join("client.pub"), dir.join("authorized_keys"))?;
        let port = free_port();
        let hostpub = std::fs::read_to_string(dir.join("hostkey.pub"))?;
        let mut parts = hostpub.split_whitespace();
        let known = format!(
            "[127.0.0.1]:{port} {} {}\n",
            parts.next().unwrap_or(""),
            parts.next().unwrap_or("")
        );
        std::fs::write(dir.join("known_hosts"), known)?;
        let log = dir.join("sshd.log");
        let mut child = spawn(
            Command::new(bin)
                .args([
                    "-D",
                    "-e",
                    "-p",
                    &port.to_string(),
                    "-o",
                    "ListenAddress=127.0.0.1",
                    "-h",
                ])
                .arg(dir.join("hostkey"))
                .arg("-o")
                .arg(format!("PidFile={}", dir.join("sshd.pid").display()))
                .arg("-o")
                .arg(format!(
                    "AuthorizedKeysFile={}",
                    dir.join("authorized_keys").display()
                ))
                .args([
                    "-o",
                    "StrictModes=no",
                    "-o",
                    "PasswordAuthentication=no",
                    "-o",
                    "PermitRootLogin=prohibit-password",
                ]),
            &log,
        )?;
        let addr = format!("127.0.0.1:{port}");
        wait_for(
            "sshd",
            Duration::from_secs(15),
            &mut child,
            &log,
            async || tokio::net::TcpStream::connect(&addr).await.is_ok(),
        )
        .await?;
        Ok(Sshd {
            child,
            port,
            client_key: dir.join("client"),
            known_hosts: dir.join("known_hosts"),
        })
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// Debian's PostgreSQL server binaries (`/usr/lib/postgresql/<major>/bin`),
/// the newest installed.
pub fn postgres_bin() -> Option<PathBuf> {
    let mut v: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_ctl").is_file().then_some((major, bin))
        })
        .collect();
    v.sort();
    v.pop().map(|(_, b)| b)
}

/// A throwaway PostgreSQL cluster on 127.0.0.1 in `dir/pg` (trust auth,
/// fsync off; a backend notices its client died within 200 ms), run as the `postgres` user when we are root (initdb
/// refuses root). Stopped (fast) when dropped.
pub struct Postgres {
    pub port: u16,
    data: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
    /// The server options and log file, to start it again.
    opts: String,
    log: PathBuf,
}

impl Postgres {
    pub fn start(dir: &Path) -> std::io::Result<Postgres> {
        Self::start_with(dir, false)
    }

    /// A cluster that keeps every commit on disk (`fsync`, full page
    /// writes: PostgreSQL's defaults), for benchmarks beside SQLite's
    /// `synchronous = FULL`. [`Postgres::start`] turns both off.
    pub fn start_durable(dir: &Path) -> std::io::Result<Postgres> {
        Self::start_with(dir, true)
    }

    fn start_with(dir: &Path, durable: bool) -> std::io::Result<Postgres> {
        let bin = postgres_bin().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "PostgreSQL is not installed (apt-get install postgresql)",
            )
        })?;
        // SAFETY: geteuid has no preconditions.
        let as_postgres = unsafe { libc::geteuid() } == 0;
        let pg = dir.join("pg");
        std::fs::create_dir_all(&pg)?;
        if as_postgres {
            // the postgres user must reach its directory through ours
            use std::os::unix::fs::PermissionsExt;
            let mut p = Some(dir.to_path_buf());
            while let Some(d) = p {
                if d == Path::new("/") || d == Path::new("/tmp") {
                    break;
                }
                let mode = std::fs::metadata(&d)?.permissions().mode();
                std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode | 0o711))?;
                p = d.parent().map(Path::to_path_buf);
            }
            run_ok(Command::new("chown").args(["postgres:postgres"]).arg(&pg))?;
        }
        let data = pg.join("data");
        let port = free_port();
        let cmd = |as_postgres: bool, prog: &Path| {
            if as_postgres {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(prog);
                c
            } else {
                Command::new(prog)
            }
        };
        run_ok(
            cmd(as_postgres, &bin.join("initdb"))
                .arg("-D")
                .arg(&data)
                .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]),
        )?;
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} {} -c client_connection_check_interval=200ms -c max_connections=300",
            pg.display(),
            if durable {
                "-c fsync=on -c full_page_writes=on"
            } else {
                "-c fsync=off -c full_page_writes=off"
            }
        );
        let pg = Postgres {
            port,
            data,
            bin,
            as_postgres,
            opts,
            log: pg.join("log"),
        };
        pg.start_again()?;
        Ok(pg)
    }

    fn pg_ctl(&self) -> Command {
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"])
                .arg(self.bin.join("pg_ctl"));
            c
        } else {
            Command::new(self.bin.join("pg_ctl"))
        }
    }

    /// The postmaster's pid (its children are the server's processes).
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.data.join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// Start the stopped server again (same port, same data), waiting until
    /// it accepts connections.
    pub fn start_again(&self) -> std::io::Result<()> {
        run_ok(
            self.pg_ctl()
                .arg("-D")
                .arg(&self.data)
                .arg("-l")
                .arg(&self.log)
                .args(["-w", "-t", "60", "-o", &self.opts, "start"]),
        )
    }

    /// Stop the server as an operator would (`pg_ctl -m fast`): sessions are
    /// ended, then it shuts down; waits until it has.
    pub fn stop_fast(&self) -> std::io::Result<()> {
        run_ok(
            self.pg_ctl()
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "fast", "-w", "-t", "60", "stop"]),
        )
    }

    /// `postgresql://postgres@127.0.0.1:PORT/DB`.
    pub fn url(&self, db: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Run SQL with psql; its unaligned, tuples-only output.
    pub fn psql(&self, db: &str, sql: &str) -> std::io::Result<String> {
        let out = Command::new("psql")
            .args([
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                &self.url(db),
                "-c",
                sql,
            ])
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(std::io::Error::other(format!(
                "psql {sql:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    pub fn stop(&mut self) {
        let _ = self
            .pg_ctl()
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run_ok(c: &mut Command) -> std::io::Result<()> {
    let out = c.stdin(Stdio::null()).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "{:?}: {}{}",
            c,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}
