//! Renders chain templates for the kernel, outside every transaction and
//! lock (the kernel's decisions ask for them: `kernel::decide::Renders`).
//!
//! A template is code a chain's author runs on the server. Fuel and an
//! output cap bound its time and its output in any process
//! ([`TemplateEngine`]), but not the memory it builds up in variables: a
//! string doubled in a loop would abort the server. So templates that can
//! build values (anything beyond substituting variables, see
//! [`template::is_plain`]) render in sandbox processes: children of the
//! server (`taskloom render-sandbox`) with a data-size limit, a lower CPU
//! priority than the server, and a wall-clock timeout. A child that dies
//! mid-render (its allocator aborts at the limit) fails that render with
//! [`Limit::Memory`] and is replaced. Plain templates, whose memory is
//! bounded by their output, render in the server's own process.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Semaphore;

use crate::chain::template::{
    self, Limit, RenderJob, TemplateEngine, TemplateError, TemplateLimits,
};

/// How templates are rendered.
#[derive(Debug, Clone, Default)]
pub struct RenderConfig {
    pub limits: TemplateLimits,
    /// Where templates that can build values render; `None` renders them
    /// in this process on the blocking pool (tests and embedders: a
    /// template can then exhaust this process's memory).
    pub sandbox: Option<SandboxConfig>,
}

#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// The `taskloom` executable, run as `taskloom render-sandbox`.
    pub program: PathBuf,
    /// Most memory a sandbox process may allocate (`RLIMIT_DATA`).
    pub memory_bytes: u64,
    /// Most sandbox processes rendering at once.
    pub processes: usize,
    /// Longest a render may take before its process is killed; fuel ends
    /// runaway templates long before.
    pub timeout: Duration,
}

impl SandboxConfig {
    pub const DEFAULT_MEMORY_BYTES: u64 = 256 * 1024 * 1024;

    pub fn new(program: PathBuf, memory_bytes: u64) -> SandboxConfig {
        SandboxConfig {
            program,
            memory_bytes,
            processes: 4,
            timeout: Duration::from_secs(10),
        }
    }
}

/// Renders templates (see the module documentation).
pub struct Renderer {
    engine: Arc<TemplateEngine>,
    sandbox: Option<Sandbox>,
}

impl Renderer {
    pub fn new(config: &RenderConfig) -> Renderer {
        Renderer {
            engine: Arc::new(TemplateEngine::new(config.limits)),
            sandbox: config.sandbox.clone().map(|sandbox| Sandbox {
                limits: config.limits,
                permits: Semaphore::new(sandbox.processes.max(1)),
                idle: Mutex::new(Vec::new()),
                config: sandbox,
            }),
        }
    }

    pub fn limits(&self) -> TemplateLimits {
        self.engine.limits()
    }

    /// Renders one template.
    pub async fn render(&self, job: &RenderJob) -> Result<String, TemplateError> {
        if template::is_plain(&job.template) {
            return self.engine.render(&job.template, &job.context);
        }
        if let Some(sandbox) = &self.sandbox {
            return sandbox.render(job).await;
        }
        let (engine, job) = (self.engine.clone(), job.clone());
        tokio::task::spawn_blocking(move || engine.render(&job.template, &job.context))
            .await
            .unwrap_or_else(|_| Err(TemplateError::Invalid("the render panicked".to_string())))
    }

    /// Renders several templates at once.
    pub async fn render_all(
        &self,
        jobs: Vec<RenderJob>,
    ) -> Vec<(RenderJob, Result<String, TemplateError>)> {
        let results = futures::future::join_all(jobs.iter().map(|job| self.render(job))).await;
        jobs.into_iter().zip(results).collect()
    }
}

/// A pool of sandbox processes, started on demand and kept while they
/// behave.
struct Sandbox {
    config: SandboxConfig,
    limits: TemplateLimits,
    permits: Semaphore,
    idle: Mutex<Vec<SandboxProcess>>,
}

struct SandboxProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// One render request to a sandbox process: a JSON line.
#[derive(Serialize, Deserialize)]
struct Request {
    template: String,
    context: serde_json::Value,
}

/// A sandbox process's answer: a JSON line.
#[derive(Serialize, Deserialize)]
enum Response {
    Rendered(String),
    Invalid(String),
    Fuel(u64),
    Output(usize),
}

impl From<Result<String, TemplateError>> for Response {
    fn from(result: Result<String, TemplateError>) -> Response {
        match result {
            Ok(text) => Response::Rendered(text),
            Err(TemplateError::Invalid(message)) => Response::Invalid(message),
            Err(TemplateError::Limit(Limit::Fuel(fuel))) => Response::Fuel(fuel),
            Err(TemplateError::Limit(Limit::Output(bytes))) => Response::Output(bytes),
            Err(TemplateError::Limit(other)) => Response::Invalid(other.to_string()),
        }
    }
}

impl From<Response> for Result<String, TemplateError> {
    fn from(response: Response) -> Result<String, TemplateError> {
        match response {
            Response::Rendered(text) => Ok(text),
            Response::Invalid(message) => Err(TemplateError::Invalid(message)),
            Response::Fuel(fuel) => Err(TemplateError::Limit(Limit::Fuel(fuel))),
            Response::Output(bytes) => Err(TemplateError::Limit(Limit::Output(bytes))),
        }
    }
}

/// A sandbox exchange without an answer: the process ended (or its pipes
/// broke) first.
enum Failure {
    Died(std::io::Error),
}

impl Sandbox {
    async fn render(&self, job: &RenderJob) -> Result<String, TemplateError> {
        let mut request = serde_json::to_vec(&Request {
            template: job.template.clone(),
            context: job.context.clone(),
        })
        .map_err(|error| TemplateError::Invalid(format!("cannot encode the context: {error}")))?;
        request.push(b'\n');
        let Ok(_permit) = self.permits.acquire().await else {
            return Err(TemplateError::Invalid(
                "the template sandbox is closed".into(),
            ));
        };
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop();
        let mut process = match idle {
            Some(process) => process,
            None => self.spawn().map_err(|error| {
                tracing::error!(error = %error, program = %self.config.program.display(), "cannot start a template sandbox process");
                TemplateError::Invalid(format!("cannot start the template sandbox: {error}"))
            })?,
        };
        match tokio::time::timeout(self.config.timeout, exchange(&mut process, &request)).await {
            Ok(Ok(response)) => {
                self.idle
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .push(process);
                response.into()
            }
            Ok(Err(Failure::Died(error))) => {
                let _ = process.child.start_kill();
                let status = process.child.wait().await.ok();
                tracing::warn!(error = %error, status = ?status, "a template sandbox process died while rendering (memory limit)");
                Err(TemplateError::Limit(Limit::Memory(
                    self.config.memory_bytes,
                )))
            }
            Err(_) => {
                let _ = process.child.kill().await;
                Err(TemplateError::Limit(Limit::Time(
                    self.config.timeout.as_millis() as u64,
                )))
            }
        }
    }

    fn spawn(&self) -> std::io::Result<SandboxProcess> {
        let mut command = Command::new(&self.config.program);
        command
            .arg("render-sandbox")
            .arg("--template-fuel")
            .arg(self.limits.fuel.to_string())
            .arg("--template-max-output")
            .arg(self.limits.max_output_bytes.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // An aborting allocator says so on stderr; the server logs the
            // death itself.
            .stderr(Stdio::null())
            .kill_on_drop(true);
        limit_child(&mut command, self.config.memory_bytes);
        let mut child = command.spawn()?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(std::io::Error::other("the sandbox process has no pipes"));
        };
        Ok(SandboxProcess {
            child,
            stdin,
            stdout: BufReader::new(stdout),
        })
    }
}

async fn exchange(process: &mut SandboxProcess, request: &[u8]) -> Result<Response, Failure> {
    process
        .stdin
        .write_all(request)
        .await
        .map_err(Failure::Died)?;
    process.stdin.flush().await.map_err(Failure::Died)?;
    let mut line = String::new();
    let read = process
        .stdout
        .read_line(&mut line)
        .await
        .map_err(Failure::Died)?;
    if read == 0 {
        return Err(Failure::Died(std::io::Error::from(
            std::io::ErrorKind::UnexpectedEof,
        )));
    }
    serde_json::from_str(&line).map_err(|error| Failure::Died(std::io::Error::other(error)))
}

/// Caps the child's memory and lowers its CPU priority, so a template
/// spinning through its fuel takes time from idle cores first.
#[cfg(target_os = "linux")]
fn limit_child(command: &mut Command, memory_bytes: u64) {
    // SAFETY: the closure runs in the forked child before exec and only
    // makes async-signal-safe system calls.
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: memory_bytes as libc::rlim_t,
                rlim_max: memory_bytes as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_DATA, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::setpriority(libc::PRIO_PROCESS, 0, 10);
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn limit_child(_command: &mut Command, _memory_bytes: u64) {
    tracing::warn!("template sandbox processes have no memory limit on this platform");
}

/// The body of `taskloom render-sandbox`: answers render requests, one
/// JSON line each way, until standard input closes.
pub fn serve_sandbox(limits: TemplateLimits) -> ExitCode {
    let engine = TemplateEngine::new(limits);
    let mut stdout = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else {
            return ExitCode::FAILURE;
        };
        let response = match serde_json::from_str::<Request>(&line) {
            Ok(request) => Response::from(engine.render(&request.template, &request.context)),
            Err(error) => Response::Invalid(format!("bad render request: {error}")),
        };
        let written = serde_json::to_writer(&mut stdout, &response)
            .map_err(std::io::Error::other)
            .and_then(|()| stdout.write_all(b"\n"))
            .and_then(|()| stdout.flush());
        if written.is_err() {
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
