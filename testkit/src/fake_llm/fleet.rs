//! The fake's fleet routes (additions kept apart from the chat paths):
//! per-model listing details, Ollama's `/api/show` and `/api/pull` with
//! scripted progress or failure, and a count of concurrent pulls.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::{FakeLlm, Operation, Shared, Tracker, lock, respond};

impl FakeLlm {
    /// Extra fields for `model`'s entry in every listing (merged into the
    /// entry: `{"size": 7}` for Ollama, `{"max_model_len": 4096}` for vLLM,
    /// `{"inputTokenLimit": 1000}` for Gemini…).
    pub fn set_model_details(&self, model: &str, details: Value) {
        lock(&self.shared.model_details).insert(model.to_string(), details);
    }

    /// What Ollama's `/api/show` answers for `model` (`model_info`,
    /// `capabilities`…); models without one answer 404.
    pub fn set_ollama_show(&self, model: &str, show: Value) {
        lock(&self.shared.shows).insert(model.to_string(), show);
    }

    /// The next answer of Ollama's `/api/pull` for `model`. Unscripted pulls
    /// fail as Ollama does for a model its registry lacks.
    pub fn script_pull(&self, model: &str, pull: Pull) -> &Self {
        lock(&self.shared.pulls)
            .entry(model.to_string())
            .or_default()
            .push_back(pull);
        self
    }

    /// The most `/api/pull` answers that were streaming at once.
    pub fn max_pulls_in_flight(&self) -> usize {
        self.shared.max_pulls_in_flight.load(Ordering::SeqCst)
    }

    /// How many model listings (any provider's) were requested.
    pub fn list_requests(&self) -> usize {
        self.requests()
            .iter()
            .filter(|request| {
                request.method == "GET"
                    && matches!(
                        request.path.as_str(),
                        "/api/tags" | "/v1/models" | "/v1beta/models"
                    )
            })
            .count()
    }
}

/// A scripted answer of Ollama's `/api/pull`: NDJSON progress lines (each
/// after `line_delay`), ending with `success` (and the model then listed)
/// or an `error` line; or an HTTP error.
#[derive(Clone, Debug)]
pub struct Pull {
    lines: Vec<Value>,
    line_delay: Duration,
    error: Option<(u16, String)>,
    adds_model: bool,
}

impl Pull {
    /// A successful download of `total` bytes in `steps` progress lines:
    /// `pulling manifest`, the `pulling <digest>` lines, `verifying sha256
    /// digest`, `writing manifest`, `success`. The model is listed from then
    /// on.
    pub fn success(total: i64, steps: i64) -> Self {
        let mut lines = Self::downloading(total, steps);
        lines.push(json!({"status": "verifying sha256 digest"}));
        lines.push(json!({"status": "writing manifest"}));
        lines.push(json!({"status": "success"}));
        Pull {
            lines,
            line_delay: Duration::ZERO,
            error: None,
            adds_model: true,
        }
    }

    /// Some progress, then an `{"error": message}` line.
    pub fn failing(message: &str) -> Self {
        let mut lines = Self::downloading(100, 2);
        lines.push(json!({"error": message}));
        Pull {
            lines,
            line_delay: Duration::ZERO,
            error: None,
            adds_model: false,
        }
    }

    /// An HTTP error with this status and JSON body.
    pub fn http_error(status: u16, body: impl Into<String>) -> Self {
        Pull {
            lines: vec![],
            line_delay: Duration::ZERO,
            error: Some((status, body.into())),
            adds_model: false,
        }
    }

    /// Wait this long before each line.
    pub fn line_delay(mut self, delay: Duration) -> Self {
        self.line_delay = delay;
        self
    }

    fn downloading(total: i64, steps: i64) -> Vec<Value> {
        let steps = steps.max(1);
        let mut lines = vec![json!({"status": "pulling manifest"})];
        for step in 1..=steps {
            lines.push(json!({
                "status": "pulling 6a0746a1ec1a",
                "digest": "sha256:6a0746a1ec1a",
                "total": total,
                "completed": total * step / steps,
            }));
        }
        lines
    }
}

/// Ollama's `/api/show` and `/api/pull`, answered from their own scripts;
/// other operations are handed back (with the tracker).
pub(super) fn ollama_fleet_route(
    shared: &Arc<Shared>,
    operation: &Operation,
    mut tracker: Tracker,
) -> Result<Response, Tracker> {
    match operation {
        Operation::Show { model } => {
            tracker.finish();
            Ok(match lock(&shared.shows).get(model) {
                Some(show) => respond(StatusCode::OK, "application/json", show.to_string()),
                None => {
                    let body = json!({"error": format!("model '{model}' not found")});
                    respond(StatusCode::NOT_FOUND, "application/json", body.to_string())
                }
            })
        }
        Operation::Pull { model } => {
            let pull = lock(&shared.pulls)
                .get_mut(model)
                .and_then(VecDeque::pop_front)
                .unwrap_or_else(|| Pull {
                    lines: vec![
                        json!({"status": "pulling manifest"}),
                        json!({"error": "pull model manifest: file does not exist"}),
                    ],
                    line_delay: Duration::ZERO,
                    error: None,
                    adds_model: false,
                });
            if let Some((status, body)) = &pull.error {
                tracker.finish();
                let status =
                    StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                return Ok(respond(status, "application/json", body.clone()));
            }
            Ok(respond(
                StatusCode::OK,
                "application/x-ndjson",
                pull_stream(shared.clone(), model.clone(), pull, tracker),
            ))
        }
        _ => Err(tracker),
    }
}

/// Counts the pull as streaming until its body ends or is dropped.
struct PullInFlight(Arc<Shared>);

impl PullInFlight {
    fn new(shared: Arc<Shared>) -> Self {
        let now = shared.pulls_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_pulls_in_flight.fetch_max(now, Ordering::SeqCst);
        PullInFlight(shared)
    }
}

impl Drop for PullInFlight {
    fn drop(&mut self) {
        self.0.pulls_in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

fn pull_stream(shared: Arc<Shared>, model: String, pull: Pull, tracker: Tracker) -> Body {
    let in_flight = PullInFlight::new(shared.clone());
    let lines: VecDeque<Value> = pull.lines.into_iter().collect();
    let state = (lines, Some((tracker, in_flight)));
    let stream = futures::stream::unfold(state, move |(mut lines, mut guards)| {
        let (shared, model) = (shared.clone(), model.clone());
        async move {
            tokio::time::sleep(pull.line_delay).await;
            if let Some(line) = lines.pop_front() {
                if line["status"] == "success" && pull.adds_model {
                    let mut models = lock(&shared.models);
                    if !models.contains(&model) {
                        models.push(model);
                    }
                }
                let frame = Bytes::from(format!("{line}\n"));
                return Some((Ok::<_, std::io::Error>(frame), (lines, guards)));
            }
            let (mut tracker, _in_flight) = guards.take()?;
            tracker.finish();
            None
        }
    });
    Body::from_stream(stream)
}

/// Merges each model's scripted details into its listing entry.
pub(super) fn with_model_details(mut body: Value, details: &HashMap<String, Value>) -> Value {
    for list in ["models", "data"] {
        let Some(entries) = body[list].as_array_mut() else {
            continue;
        };
        for entry in entries {
            let name = entry["id"]
                .as_str()
                .or_else(|| entry["name"].as_str())
                .unwrap_or_default();
            let name = name.strip_prefix("models/").unwrap_or(name).to_string();
            if let (Some(extra), Some(entry)) = (
                details.get(&name).and_then(Value::as_object),
                entry.as_object_mut(),
            ) {
                for (key, value) in extra {
                    entry.insert(key.clone(), value.clone());
                }
            }
        }
    }
    body
}
