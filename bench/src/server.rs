//! The one `taskloom serve` process under test, on a 127.0.0.1 port.
//!
//! Normally it is a `taskloom_testkit::ServerProcess`, which ends with the
//! bench even if the bench is killed. With `--keep` it is spawned here
//! instead, detached from the bench's lifetime, so it can be inspected
//! afterwards.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use taskloom_testkit::ServerProcess;

/// How long the server may take to migrate and start listening.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

pub struct BenchServer {
    /// `http://127.0.0.1:PORT`.
    pub addr: String,
    kind: Kind,
}

enum Kind {
    Managed(ServerProcess),
    Kept {
        child: Child,
        /// The SQLite file, when the bench made one.
        data: Option<String>,
        log: String,
    },
}

impl BenchServer {
    /// Starts `binary serve` on `database_url` (a fresh SQLite file when
    /// `None`) with `extra_args`, and waits until it accepts connections.
    pub fn start(
        binary: &Path,
        database_url: Option<&str>,
        extra_args: &[&str],
        keep: bool,
    ) -> Result<BenchServer> {
        if !keep {
            let process = ServerProcess::start(binary, database_url, extra_args)?;
            return Ok(BenchServer {
                addr: process.addr.clone(),
                kind: Kind::Managed(process),
            });
        }
        let (url, sqlite_file) = match database_url {
            Some(url) => (url.to_string(), None),
            None => {
                let dir = std::env::temp_dir()
                    .join(format!("taskloom-bench-sqlite-{}", std::process::id()));
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("create {}", dir.display()))?;
                let file = dir.join("taskloom.db").display().to_string();
                (file.clone(), Some(file))
            }
        };
        // A kept server outlives the bench, so it must not hold the bench's
        // stderr open: its log goes to a file.
        let log_path =
            std::env::temp_dir().join(format!("taskloom-bench-server-{}.log", std::process::id()));
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("create {}", log_path.display()))?;
        let port = taskloom_testkit::free_port();
        let mut command = Command::new(binary);
        command
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--database-url", &url])
            .args(extra_args);
        if database_url.is_some() && !extra_args.contains(&"--secret-key-file") {
            command
                .arg("--secret-key-file")
                .arg(taskloom_testkit::test_secret_key_file()?);
        }
        let mut child = command
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "error".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("spawn taskloom")?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                bail!("taskloom exited early with {status}");
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("taskloom did not listen on 127.0.0.1:{port} within {READY_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(BenchServer {
            addr: format!("http://127.0.0.1:{port}"),
            kind: Kind::Kept {
                child,
                data: sqlite_file,
                log: log_path.display().to_string(),
            },
        })
    }

    pub fn pid(&self) -> u32 {
        match &self.kind {
            Kind::Managed(process) => process.pid(),
            Kind::Kept { child, .. } => child.id(),
        }
    }

    /// Stops a managed server (SIGTERM, then waits) or leaves a kept one
    /// running; returns a line to print.
    pub fn finish(self) -> Result<String> {
        let pid = self.pid();
        match self.kind {
            Kind::Managed(mut process) => {
                let status = process.terminate().context("stop the server")?;
                Ok(if status.success() {
                    format!("server stopped ({status})")
                } else {
                    format!("the server exited with {status} on SIGTERM")
                })
            }
            Kind::Kept { data, log, .. } => {
                let mut line = format!(
                    "server left running: pid {pid}, {}, log {log} (stop it with: kill -TERM {pid})",
                    self.addr
                );
                if let Some(file) = data {
                    line.push_str(&format!("\nSQLite database: {file}"));
                }
                Ok(line)
            }
        }
    }
}
