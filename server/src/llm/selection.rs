//! Which backend and model combinations may serve a call, decided from what
//! the store holds (the pool, its backends with their observed state, the
//! declared models) without calling anyone. Pure: the resolver loads the
//! inputs and orders the backends of each model by the pool's policy.
//!
//! The rules, in order:
//! - the task's models in its order of preference (or, when it names none,
//!   the declared models with the capability, then — with discovery — the
//!   models the pool's backends report);
//! - a backend is skipped while it is unhealthy;
//! - a backend that has listed its models serves only those (`name` also
//!   matches a listed `name:latest`); one that has not listed them yet is
//!   assumed to serve the models it is asked for;
//! - a model must have the capability and a context window that fits the
//!   prompt, by its declaration, else by what its backend reports; a model
//!   found by discovery that its backend says nothing of is judged by its
//!   name (an `embed` model embeds, any other chats).
//!
//! When nothing is left, the error names, model by model, which rule
//! refused it.

use super::resolver::Capability;
use crate::store::{BackendRecord, ModelRecord, ObservedModel};

/// What the resolver knows for one call.
pub struct Inputs<'a> {
    pub pool: &'a str,
    /// The pool's backends (already narrowed to the task's providers).
    pub backends: &'a [BackendRecord],
    /// Models the task names, in its order of preference.
    pub preferred: &'a [String],
    /// Declared models the call may use: the pool's, or every declared one
    /// when the pool has none.
    pub declared: &'a [ModelRecord],
    /// Whether models the backends report may be used undeclared.
    pub discover: bool,
    pub capability: Capability,
    /// The prompt's size in tokens, estimated.
    pub prompt_tokens: usize,
}

/// One model and the backends, in pool order, that may serve it.
#[derive(Debug, Clone)]
pub struct Choice {
    pub model: String,
    pub backends: Vec<BackendRecord>,
}

/// Nothing can serve the call, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub message: String,
    /// Whether the state that refused may change by itself (a backend that
    /// recovers, a model that gets pulled) — as opposed to a model that
    /// lacks the capability or whose context is too small.
    pub may_change: bool,
}

/// The models to try, in order, each with the backends that may serve it.
pub fn choose(inputs: &Inputs<'_>) -> Result<Vec<Choice>, Refusal> {
    let capability = inputs.capability.name();
    let healthy: Vec<&BackendRecord> = inputs
        .backends
        .iter()
        .filter(|backend| backend.state.health != "unhealthy")
        .collect();
    let mut reasons: Vec<String> = Vec::new();
    let mut may_change = false;
    for backend in inputs
        .backends
        .iter()
        .filter(|b| b.state.health == "unhealthy")
    {
        may_change = true;
        let error = match backend.state.last_error.as_str() {
            "" => String::new(),
            error => format!(": {error}"),
        };
        reasons.push(format!("backend {:?} is unhealthy{error}", backend.name));
    }
    if inputs.backends.is_empty() {
        return Err(Refusal {
            message: format!("pool {:?} has no backends", inputs.pool),
            may_change: true,
        });
    }

    let models = wanted_models(inputs, &healthy);
    if models.is_empty() {
        let discovered = if inputs.discover {
            " and its backends report none"
        } else {
            " (model discovery is off for it)"
        };
        return Err(Refusal {
            message: format!(
                "pool {:?} declares no model with the {capability} capability{discovered}",
                inputs.pool
            ),
            may_change: true,
        });
    }

    let mut choices = Vec::new();
    for model in &models {
        let declared = inputs.declared.iter().find(|m| &m.name == model);
        if let Some(record) = declared {
            if !record.capabilities.iter().any(|c| c == capability) {
                reasons.push(format!(
                    "{model:?} is declared without the {capability} capability"
                ));
                continue;
            }
            if too_small(record.context_length, inputs.prompt_tokens) {
                reasons.push(format!(
                    "{model:?} has a context of {} tokens, the prompt needs about {}",
                    record.context_length, inputs.prompt_tokens
                ));
                continue;
            }
        }
        let mut serving = Vec::new();
        let mut refused_here = Vec::new();
        for backend in &healthy {
            let Some(observed) = served(backend, model) else {
                continue;
            };
            if declared.is_none() {
                if !reported_can(observed.as_ref(), capability) {
                    refused_here.push(format!(
                        "{model:?} on {:?} lacks the {capability} capability",
                        backend.name
                    ));
                    continue;
                }
                let context = observed.as_ref().map_or(0, |m| m.context_length);
                if too_small(context, inputs.prompt_tokens) {
                    refused_here.push(format!(
                        "{model:?} on {:?} has a context of {context} tokens, the prompt needs about {}",
                        backend.name, inputs.prompt_tokens
                    ));
                    continue;
                }
            }
            serving.push((*backend).clone());
        }
        if serving.is_empty() {
            if refused_here.is_empty() {
                may_change = true;
                reasons.push(format!(
                    "no healthy backend of pool {:?} serves {model:?}",
                    inputs.pool
                ));
            } else {
                reasons.extend(refused_here);
            }
            continue;
        }
        choices.push(Choice {
            model: model.clone(),
            backends: serving,
        });
    }
    if choices.is_empty() {
        return Err(Refusal {
            message: format!(
                "no backend in pool {:?} can serve the call: {}",
                inputs.pool,
                reasons.join("; ")
            ),
            may_change,
        });
    }
    Ok(choices)
}

/// The models worth trying, in order: the task's, else the declared ones
/// with the capability, then (with discovery) the ones the backends report.
fn wanted_models(inputs: &Inputs<'_>, healthy: &[&BackendRecord]) -> Vec<String> {
    if !inputs.preferred.is_empty() {
        return inputs.preferred.to_vec();
    }
    let capability = inputs.capability.name();
    let mut names: Vec<String> = inputs
        .declared
        .iter()
        .filter(|m| m.capabilities.iter().any(|c| c == capability))
        .map(|m| m.name.clone())
        .collect();
    if inputs.discover {
        for backend in healthy {
            for observed in &backend.state.observed_models {
                let name = &observed.name;
                if !names.iter().any(|known| same_model(known, name))
                    && observed_can(Some(observed), name, capability)
                {
                    names.push(name.clone());
                }
            }
        }
    }
    names
}

/// Whether `backend` may serve `model`: `None` if it listed its models and
/// `model` is not among them; otherwise what it reported of the model, if
/// anything.
fn served(backend: &BackendRecord, model: &str) -> Option<Option<ObservedModel>> {
    let state = &backend.state;
    if state.models_at.is_none() && state.observed_models.is_empty() && state.models.is_empty() {
        // Never listed: assume it serves what it is asked for; a "model
        // not found" answer moves the call on.
        return Some(None);
    }
    if let Some(observed) = state
        .observed_models
        .iter()
        .find(|m| same_model(&m.name, model))
    {
        return Some(Some(observed.clone()));
    }
    state
        .models
        .iter()
        .any(|name| same_model(name, model))
        .then_some(None)
}

/// `llama3` and `llama3:latest` are one Ollama model.
fn same_model(a: &str, b: &str) -> bool {
    a == b || a.strip_suffix(":latest") == Some(b) || b.strip_suffix(":latest") == Some(a)
}

/// Whether an undeclared model the task names can do `capability`: as its
/// backend reported; a backend that did not say is trusted (the task asked
/// for the model by name).
fn reported_can(observed: Option<&ObservedModel>, capability: &str) -> bool {
    observed.is_none_or(|model| {
        model.capabilities.is_empty() || model.capabilities.iter().any(|c| c == capability)
    })
}

/// Whether a discovered model can do `capability`: as its backend
/// reported, else by its name (embedding models say so in their names).
fn observed_can(observed: Option<&ObservedModel>, name: &str, capability: &str) -> bool {
    match observed {
        Some(model) if !model.capabilities.is_empty() => {
            model.capabilities.iter().any(|c| c == capability)
        }
        _ => {
            let embeds = name.to_ascii_lowercase().contains("embed");
            match capability {
                "embed" => embeds,
                _ => !embeds,
            }
        }
    }
}

fn too_small(context_length: i32, prompt_tokens: usize) -> bool {
    context_length > 0 && prompt_tokens > context_length as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn backend(name: &str, health: &str, models: &[&str]) -> BackendRecord {
        let listed = !models.is_empty() || health == "healthy";
        BackendRecord {
            id: format!("id-{name}"),
            name: name.to_string(),
            backend_type: "ollama".to_string(),
            base_url: String::new(),
            api_key: None,
            priority: 0,
            max_concurrency: 0,
            requests_per_minute: 0,
            tokens_per_minute: 0,
            model_limits: Default::default(),
            omit_stream_options: false,
            request_timeout_ms: 0,
            labels: Default::default(),
            state: crate::store::BackendState {
                health: health.to_string(),
                models: models.iter().map(|m| m.to_string()).collect(),
                observed_models: models
                    .iter()
                    .map(|m| ObservedModel {
                        name: m.to_string(),
                        ..ObservedModel::default()
                    })
                    .collect(),
                models_at: listed.then(Utc::now),
                last_error: if health == "unhealthy" {
                    "connection refused".to_string()
                } else {
                    String::new()
                },
                last_sync_at: None,
                latency_ms: None,
            },
            revision: 1,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    fn declared(name: &str, capabilities: &[&str], context_length: i32) -> ModelRecord {
        ModelRecord {
            id: name.to_string(),
            name: name.to_string(),
            context_length,
            capabilities: capabilities.iter().map(|c| c.to_string()).collect(),
            created_at: Utc::now(),
        }
    }

    fn inputs<'a>(
        backends: &'a [BackendRecord],
        preferred: &'a [String],
        declared: &'a [ModelRecord],
    ) -> Inputs<'a> {
        Inputs {
            pool: "p",
            backends,
            preferred,
            declared,
            discover: false,
            capability: Capability::Chat,
            prompt_tokens: 10,
        }
    }

    fn names(choices: &[Choice]) -> Vec<(String, Vec<String>)> {
        choices
            .iter()
            .map(|c| {
                (
                    c.model.clone(),
                    c.backends.iter().map(|b| b.name.clone()).collect(),
                )
            })
            .collect()
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn preference_order_skips_models_no_backend_lists() {
        let backends = [backend("b", "healthy", &["m-a", "m-b"])];
        let preferred = strings(&["m-missing", "m-b", "m-a"]);
        let chosen = choose(&inputs(&backends, &preferred, &[])).unwrap();
        assert_eq!(
            names(&chosen),
            [
                ("m-b".to_string(), strings(&["b"])),
                ("m-a".to_string(), strings(&["b"]))
            ]
        );
    }

    #[test]
    fn a_backend_that_never_listed_is_asked_for_anything() {
        let backends = [backend("fresh", "", &[]), backend("b", "healthy", &["m-a"])];
        let preferred = strings(&["m-x", "m-a"]);
        let chosen = choose(&inputs(&backends, &preferred, &[])).unwrap();
        assert_eq!(
            names(&chosen),
            [
                ("m-x".to_string(), strings(&["fresh"])),
                ("m-a".to_string(), strings(&["fresh", "b"]))
            ]
        );
    }

    #[test]
    fn latest_tags_match_short_names_both_ways() {
        let backends = [backend("b", "healthy", &["llama3:latest", "qwen"])];
        let preferred = strings(&["llama3", "qwen:latest"]);
        let chosen = choose(&inputs(&backends, &preferred, &[])).unwrap();
        assert_eq!(chosen.len(), 2);
    }

    #[test]
    fn unhealthy_backends_are_skipped_and_named() {
        let backends = [
            backend("down", "unhealthy", &["m-a"]),
            backend("up", "healthy", &["m-a"]),
        ];
        let preferred = strings(&["m-a"]);
        let chosen = choose(&inputs(&backends, &preferred, &[])).unwrap();
        assert_eq!(names(&chosen), [("m-a".to_string(), strings(&["up"]))]);

        let only_down = [backend("down", "unhealthy", &["m-a"])];
        let refusal = choose(&inputs(&only_down, &preferred, &[])).unwrap_err();
        assert!(refusal.may_change);
        assert!(
            refusal
                .message
                .contains("backend \"down\" is unhealthy: connection refused"),
            "{}",
            refusal.message
        );
    }

    #[test]
    fn refusals_name_the_filter_that_held() {
        let backends = [backend("b", "healthy", &["m-embed", "m-small"])];
        let declared = [
            declared("m-embed", &["embed"], 8192),
            declared("m-small", &["chat"], 4),
        ];
        let preferred = strings(&["m-embed", "m-small", "m-gone"]);
        let refusal = choose(&inputs(&backends, &preferred, &declared)).unwrap_err();
        let message = refusal.message;
        assert!(
            message.contains("\"m-embed\" is declared without the chat capability"),
            "{message}"
        );
        assert!(
            message.contains("\"m-small\" has a context of 4 tokens, the prompt needs about 10"),
            "{message}"
        );
        assert!(
            message.contains("no healthy backend of pool \"p\" serves \"m-gone\""),
            "{message}"
        );
        assert!(refusal.may_change);

        let only_fixed = strings(&["m-embed", "m-small"]);
        let refusal = choose(&inputs(&backends, &only_fixed, &declared)).unwrap_err();
        assert!(!refusal.may_change, "capability and context do not change");
    }

    #[test]
    fn discovery_adds_reported_models_with_their_capabilities() {
        let mut reporting = backend("b", "healthy", &[]);
        reporting.state.observed_models = vec![
            ObservedModel {
                name: "declared-chat".to_string(),
                ..ObservedModel::default()
            },
            ObservedModel {
                name: "nomic-embed-text".to_string(),
                ..ObservedModel::default()
            },
            ObservedModel {
                name: "tiny".to_string(),
                context_length: 2,
                capabilities: strings(&["chat"]),
                size_bytes: 0,
            },
            ObservedModel {
                name: "qwen".to_string(),
                capabilities: strings(&["chat", "embed"]),
                ..ObservedModel::default()
            },
        ];
        let backends = [reporting];
        let declared = [declared("declared-chat", &["chat"], 8192)];
        let mut call = inputs(&backends, &[], &declared);
        assert_eq!(
            names(&choose(&call).unwrap())
                .iter()
                .map(|(m, _)| m.as_str())
                .collect::<Vec<_>>(),
            ["declared-chat"],
            "without discovery only declared models are chosen"
        );
        call.discover = true;
        let chosen = choose(&call).unwrap();
        let models: Vec<String> = chosen.iter().map(|c| c.model.clone()).collect();
        // "tiny" is too small for the prompt; the embedding model cannot chat.
        assert_eq!(models, strings(&["declared-chat", "qwen"]));
        call.capability = Capability::Embed;
        let models: Vec<String> = choose(&call)
            .unwrap()
            .iter()
            .map(|c| c.model.clone())
            .collect();
        assert_eq!(models, strings(&["nomic-embed-text", "qwen"]));
    }

    #[test]
    fn an_empty_pool_says_so() {
        let refusal = choose(&inputs(&[], &[], &[])).unwrap_err();
        assert_eq!(refusal.message, "pool \"p\" has no backends");
    }
}
