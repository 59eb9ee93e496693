//! A throwaway PostgreSQL server with production-like durability (`fsync`,
//! `synchronous_commit` and `full_page_writes` at their defaults), on a free
//! loopback port, from the installed binaries.
//!
//! `taskloom_testkit` starts its server with fsync off, which suits tests but
//! flatters every commit-bound figure; the bench uses it only with
//! `--pg-no-fsync`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use taskloom_testkit::{find_pg_bin, is_root, pg_command};

/// File whose presence tells the watchdog to leave postgres running.
const KEEP_MARKER: &str = "keep";

/// A running PostgreSQL server; stopped and its data deleted on drop unless
/// [`LocalPostgres::keep`] was called.
pub struct LocalPostgres {
    /// The `postgres` database; the bench creates its own next to it.
    pub admin_url: String,
    dir: PathBuf,
    data: PathBuf,
    /// The watchdog shell that runs postgres and cleans up after it.
    watchdog: Option<Child>,
}

impl LocalPostgres {
    /// Runs `initdb` in a fresh temp directory and starts `postgres` on a
    /// free 127.0.0.1 port. A watchdog shell stops it and removes the
    /// directory once this process is gone, even if it is killed.
    pub fn start() -> Result<LocalPostgres> {
        let root = is_root();
        let initdb = find_pg_bin("initdb")?;
        let postgres = find_pg_bin("postgres")?;
        let dir = std::env::temp_dir().join(format!("taskloom-bench-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let data = dir.join("data");
        if root {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .context("run chown")?;
            if !status.success() {
                bail!("chown {} to postgres failed", dir.display());
            }
        }
        let output = pg_command(&initdb, root)
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-locale"])
            .arg("-D")
            .arg(&data)
            .output()
            .context("run initdb")?;
        if !output.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        let port = taskloom_testkit::free_port();
        let mut server = pg_command(&postgres, root);
        server
            .arg("-D")
            .arg(&data)
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-k"])
            .arg(&dir)
            // Room for the server's pool plus psql; everything else default.
            .args(["-c", "max_connections=200"]);
        let server_line = format!("{server:?}").replace('"', "'");
        let me = std::process::id();
        let script = format!(
            "{server_line} >'{log}' 2>&1 & pg=$!; \
             while kill -0 {me} 2>/dev/null && kill -0 $pg 2>/dev/null; do sleep 0.5; done; \
             [ -e '{dir}/{KEEP_MARKER}' ] && exit 0; \
             kill -INT $(head -1 '{data}/postmaster.pid') 2>/dev/null; wait $pg; rm -rf '{dir}'",
            log = dir.join("postgres.log").display(),
            data = data.display(),
            dir = dir.display(),
        );
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawn postgres")?;
        let mut server = LocalPostgres {
            admin_url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            dir,
            data,
            watchdog: Some(watchdog),
        };
        server.wait_ready(Duration::from_secs(30))?;
        Ok(server)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if psql_ok(&self.admin_url, "SELECT 1") {
                return Ok(());
            }
            if let Some(watchdog) = self.watchdog.as_mut()
                && watchdog.try_wait()?.is_some()
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default();
        bail!("postgres did not start: {log}")
    }

    /// Creates a fresh database; returns its URL.
    pub fn create_database(&self, name: &str) -> Result<String> {
        if !psql_ok(&self.admin_url, &format!("CREATE DATABASE {name}")) {
            bail!("CREATE DATABASE {name} failed");
        }
        let base = self
            .admin_url
            .rsplit_once('/')
            .map(|(base, _)| base)
            .context("admin URL has no database part")?;
        Ok(format!("{base}/{name}"))
    }

    /// The postmaster's pid, for CPU accounting.
    pub fn postmaster_pid(&self) -> Option<u32> {
        let pid_file = std::fs::read_to_string(self.data.join("postmaster.pid")).ok()?;
        pid_file.lines().next()?.trim().parse().ok()
    }

    /// Leaves the server and its data in place after the bench exits: the
    /// watchdog sees the marker file and lets postgres run on. Returns how
    /// to stop it.
    pub fn keep(mut self) -> Result<String> {
        std::fs::write(self.dir.join(KEEP_MARKER), b"")
            .context("write the keep marker for the watchdog")?;
        // Dropping the handle neither waits for nor kills the watchdog.
        self.watchdog = None;
        Ok(format!(
            "postgres left running at {} (data {}); stop it with: kill -INT $(head -1 {}/postmaster.pid)",
            self.admin_url,
            self.data.display(),
            self.data.display()
        ))
    }

    /// Fast shutdown; the watchdog then removes the directory.
    fn stop(&mut self) {
        if let Some(pid) = self.postmaster_pid() {
            let _ = Command::new("kill")
                .args(["-INT", &pid.to_string()])
                .status();
        }
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.wait();
        }
    }
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        if self.watchdog.is_some() {
            self.stop();
        }
    }
}

fn psql_ok(url: &str, sql: &str) -> bool {
    Command::new("psql")
        .arg(url)
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|status| status.success())
        .unwrap_or(false)
}

/// The server's version string (`SHOW server_version`), if psql can reach it.
pub fn server_version(url: &str) -> Option<String> {
    let output = Command::new("psql")
        .arg(url)
        .args(["-Atq", "-c", "SHOW server_version"])
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}
