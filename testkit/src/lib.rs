//! Test support shared by the test suites: a throwaway PostgreSQL server
//! started from the installed binaries, fresh databases on it, free loopback
//! ports, and `taskloom` server processes.
//!
//! PostgreSQL: if `TASKLOOM_TEST_PG_URL` names a running server (the README's
//! test command starts one and sets it), databases are created there.
//! Otherwise the first caller in a test process starts a private server with
//! `initdb` + `pg_ctl` on a free loopback port; a watchdog shell stops it
//! when the test process exits. Tests that stop or break PostgreSQL start a
//! [`PostgresServer`] of their own.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub mod fake_llm;

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("bind an ephemeral loopback port")
}

/// URL of the shared PostgreSQL server's `postgres` database.
pub fn postgres_admin_url() -> Result<String> {
    static URL: OnceLock<std::result::Result<String, String>> = OnceLock::new();
    URL.get_or_init(|| match std::env::var("TASKLOOM_TEST_PG_URL") {
        Ok(url) if !url.is_empty() => Ok(url),
        _ => start_private_postgres().map_err(|e| format!("{e:#}")),
    })
    .clone()
    .map_err(|e| anyhow::anyhow!(e))
}

/// Creates a fresh, empty database on the shared server; returns its URL.
pub fn fresh_postgres_database() -> Result<String> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let admin = postgres_admin_url()?;
    let name = format!(
        "taskloom_test_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    );
    let status = Command::new("psql")
        .arg(&admin)
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c"])
        .arg(format!("CREATE DATABASE {name}"))
        .stdout(Stdio::null())
        .status()
        .context("run psql (is the postgresql client installed?)")?;
    if !status.success() {
        bail!("CREATE DATABASE {name} failed");
    }
    let base = admin
        .rsplit_once('/')
        .map(|(base, _)| base.to_string())
        .context("admin URL has no database part")?;
    Ok(format!("{base}/{name}"))
}

/// A PostgreSQL binary: from `PG_BIN`, the `PATH`, or the newest
/// `/usr/lib/postgresql/*/bin`.
pub fn find_pg_bin(name: &str) -> Result<PathBuf> {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return Ok(Path::new(&dir).join(name));
    }
    let mut candidates: Vec<PathBuf> = vec![];
    if let Ok(path) = std::env::var("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|p| p.join(name)));
    }
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        versions.sort();
        candidates.extend(versions.into_iter().rev().map(|v| v.join("bin").join(name)));
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .with_context(|| format!("{name} not found (set PG_BIN)"))
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs `program args` as the `postgres` user when we are root (initdb and
/// postgres refuse to run as root).
pub fn pg_command(program: &Path, root: bool) -> Command {
    if root {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn start_private_postgres() -> Result<String> {
    let server = PostgresServer::start()?;
    let url = server.url();
    // It serves the whole test process; its watchdog stops it at exit.
    std::mem::forget(server);
    Ok(url)
}

/// A PostgreSQL server of the caller's own, from the installed binaries, on
/// a free loopback port, for tests that stop, restart or break it (never do
/// that to the shared server). Stopped and removed on drop; a watchdog shell
/// does the same if the test process dies first.
pub struct PostgresServer {
    dir: PathBuf,
    data: PathBuf,
    port: u16,
    root: bool,
}

impl PostgresServer {
    /// `initdb` + `pg_ctl start` with settings for tests (no fsync).
    pub fn start() -> Result<PostgresServer> {
        static N: AtomicU32 = AtomicU32::new(0);
        let root = is_root();
        let initdb = find_pg_bin("initdb")?;
        let dir = std::env::temp_dir().join(format!(
            "taskloom-pg-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let data = dir.join("data");
        if root {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()?;
            if !status.success() {
                bail!("chown {} to postgres failed", dir.display());
            }
        }
        let output = pg_command(&initdb, root)
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-locale",
                "-D",
            ])
            .arg(&data)
            .output()
            .context("run initdb")?;
        if !output.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        let server = PostgresServer {
            dir,
            data,
            port: free_port(),
            root,
        };
        // The watchdog stops the server once this test process is gone.
        let stop = format!("{:?}", server.pg_ctl(&["stop", "-m", "immediate"])?).replace('"', "'");
        let script = format!(
            "while kill -0 {me} 2>/dev/null; do sleep 0.5; done; {stop} >/dev/null 2>&1; rm -rf '{dir}'",
            me = std::process::id(),
            dir = server.dir.display(),
        );
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawn the postgres watchdog")?;
        server.start_again()?;
        Ok(server)
    }

    /// URL of the `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server (fast shutdown: open sessions are terminated).
    pub fn stop(&self) -> Result<()> {
        self.run_pg_ctl(&["stop", "-m", "fast", "-w"])
    }

    /// Starts the (stopped) server again on the same port and data, and
    /// waits until it accepts connections.
    pub fn start_again(&self) -> Result<()> {
        let options = format!(
            "-h 127.0.0.1 -p {} -k {} -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=300",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("postgres.log");
        let log = log.display().to_string();
        self.run_pg_ctl(&["start", "-w", "-t", "60", "-l", &log, "-o", &options])
            .with_context(|| {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                format!("postgres did not start on port {}: {log}", self.port)
            })
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<Command> {
        let mut command = pg_command(&find_pg_bin("pg_ctl")?, self.root);
        command.arg("-D").arg(&self.data).args(args);
        Ok(command)
    }

    fn run_pg_ctl(&self, args: &[&str]) -> Result<()> {
        let output = self
            .pg_ctl(args)?
            .stdin(Stdio::null())
            .output()
            .context("run pg_ctl")?;
        if !output.status.success() {
            bail!(
                "pg_ctl {args:?} failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if let Ok(mut stop) = self.pg_ctl(&["stop", "-m", "immediate", "-w"]) {
            let _ = stop.stdout(Stdio::null()).stderr(Stdio::null()).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A secret key file for test servers on PostgreSQL, the same for every
/// test process (a fixed test key, mode 0600).
pub fn test_secret_key_file() -> Result<PathBuf> {
    const TEST_KEY: &str = "7465737420736563726574206b657920666f72207461736b6c6f6f6d21212121";
    let path = std::env::temp_dir().join("taskloom-test-secret.key");
    if std::fs::read_to_string(&path).is_ok_and(|text| text.trim() == TEST_KEY) {
        return Ok(path);
    }
    // Written whole under a unique name, then renamed: concurrent callers
    // never see a partial file.
    let partial = path.with_extension(format!("{}.partial", std::process::id()));
    std::fs::write(&partial, format!("{TEST_KEY}\n"))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o600))?;
    }
    std::fs::rename(&partial, &path)?;
    Ok(path)
}

/// A running `taskloom serve` process on a loopback port; killed on drop.
pub struct ServerProcess {
    child: Child,
    pub addr: String,
    pub port: u16,
    _data_dir: Option<tempfile_dir::TempDir>,
    /// Every line the server printed so far.
    output: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl ServerProcess {
    /// Starts `binary serve` on port 0, so the operating system picks the
    /// port and the server prints the address it bound (choosing a "free"
    /// port first races with parallel tests), with the given database URL
    /// (a fresh SQLite file in a temp dir when `None`), and waits until it
    /// accepts connections. The reconciler syncs only on request unless
    /// `extra_args` sets `--sync-interval`.
    pub fn start(binary: &Path, database_url: Option<&str>, extra_args: &[&str]) -> Result<Self> {
        let (url, data_dir) = match database_url {
            Some(url) => (url.to_string(), None),
            None => {
                let dir = tempfile_dir::TempDir::new()?;
                (
                    dir.path().join("taskloom.db").display().to_string(),
                    Some(dir),
                )
            }
        };
        let mut command = Command::new(binary);
        command
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(["--database-url", &url])
            .args(extra_args);
        if database_url.is_some() && !extra_args.contains(&"--secret-key-file") {
            // PostgreSQL needs a key, the same for every process on a
            // database (replicas, restarts).
            command
                .arg("--secret-key-file")
                .arg(test_secret_key_file()?);
        }
        if !extra_args.contains(&"--sync-interval") {
            // Fake providers answer any model but list only the models a
            // test sets; the resolver trusts a synced list, so a sync in
            // the middle of an unrelated test would change its routing.
            // Tests of the reconciler set their own interval.
            command.args(["--sync-interval", "0s"]);
        }
        let mut child = command
            // The server exits when this process (holding the pipe) dies.
            .arg("--exit-with-stdin")
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "error".into()),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("spawn taskloom")?;
        let output = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let port = match read_announced_port(&mut child, Duration::from_secs(30), output.clone()) {
            Ok(port) => port,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        let mut server = ServerProcess {
            child,
            addr: format!("http://127.0.0.1:{port}"),
            port,
            _data_dir: data_dir,
            output,
        };
        server.wait_ready(Duration::from_secs(30))?;
        Ok(server)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("taskloom exited early with {status}");
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "taskloom did not listen on {} within {timeout:?}",
            self.addr
        )
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self) -> Result<std::process::ExitStatus> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        Ok(self.child.wait()?)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What follows `prefix` on the first line the server printed that
    /// starts with it, waiting up to `timeout` for that line.
    pub fn printed(&self, prefix: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self
                .output
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .iter()
                .find_map(|line| line.strip_prefix(prefix).map(str::to_string));
            if let Some(rest) = found {
                return Ok(rest);
            }
            if Instant::now() > deadline {
                bail!("taskloom printed no line starting with {prefix:?} within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Reads the server's "taskloom <version> listening on <addr>" line and
/// keeps draining its stdout afterwards so the pipe never fills.
fn read_announced_port(
    child: &mut Child,
    timeout: Duration,
    output: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) -> Result<u16> {
    use std::io::BufRead;
    let stdout = child.stdout.take().context("taskloom stdout")?;
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = std::io::BufReader::new(stdout).lines();
        let mut sender = Some(sender);
        while let Some(Ok(line)) = lines.next() {
            if let Some(addr) = line.split(" listening on ").nth(1)
                && let Some(sender) = sender.take()
            {
                let _ = sender.send(addr.trim().to_string());
            }
            output
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(line);
        }
    });
    let addr = match receiver.recv_timeout(timeout) {
        Ok(addr) => addr,
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            bail!("taskloom exited early with {}", child.wait()?)
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            bail!("taskloom did not announce its address within {timeout:?}")
        }
    };
    addr.parse::<std::net::SocketAddr>()
        .map(|addr| addr.port())
        .with_context(|| format!("taskloom announced an unparsable address {addr:?}"))
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal self-deleting temporary directory (keeps the testkit free of
/// extra dependencies).
pub mod tempfile_dir {
    use std::path::{Path, PathBuf};

    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new() -> std::io::Result<Self> {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let path = std::env::temp_dir().join(format!(
                "taskloom-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            std::fs::create_dir_all(&path)?;
            Ok(TempDir(path))
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
