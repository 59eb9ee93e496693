//! Token counts for answers whose server reported none: llama.cpp's server
//! sends no usage in streams, and a server that rejects `stream_options`
//! cannot be asked for it. The server's tokenize endpoint counts the
//! prompt and the answer when it has one; otherwise they are estimated at
//! four characters a token. The model itself is never called again.

use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::http::Endpoint;
use super::{ChatMessage, TokenUsage};

/// Everything spent on counting, at most: a server slow to tokenize costs
/// the exact count, never the answer.
const COUNTING_BUDGET: Duration = Duration::from_secs(5);

/// The estimate's ratio (the resolver's context check uses the same).
const CHARS_PER_TOKEN: usize = 4;

/// Tokenize endpoints of OpenAI-compatible servers, tried in order:
/// llama.cpp's server (`{"content"}`) and vLLM (`{"model", "prompt"}`) at
/// `/tokenize`, llama-cpp-python (`{"input"}`) at `/extras/tokenize`. Each
/// answers `{"tokens": [...]}` (vLLM adds `count`).
const TOKENIZE_PATHS: &[&str] = &["/tokenize", "/extras/tokenize"];

/// The usage of an answer that carried none. The prompt is the messages'
/// text: the chat template's own few tokens are not counted.
pub(crate) async fn count(
    http: &Endpoint,
    model: &str,
    messages: &[ChatMessage],
    answer: &str,
) -> TokenUsage {
    let prompt: String = messages
        .iter()
        .map(|message| message.content.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let tokenized = tokio::time::timeout(COUNTING_BUDGET, async {
        for path in TOKENIZE_PATHS {
            let Some(input_tokens) = tokenize(http, path, model, &prompt).await else {
                continue;
            };
            if let Some(output_tokens) = tokenize(http, path, model, answer).await {
                return Some((
                    *path,
                    TokenUsage {
                        input_tokens,
                        output_tokens,
                    },
                ));
            }
        }
        None
    })
    .await
    .ok()
    .flatten();
    match tokenized {
        Some((path, usage)) => {
            tracing::debug!(
                provider = http.provider,
                model,
                path,
                input_tokens = usage.input_tokens,
                output_tokens = usage.output_tokens,
                "the answer carried no token usage: counted with the server's tokenize endpoint"
            );
            usage
        }
        None => {
            let usage = TokenUsage {
                input_tokens: estimate(&prompt),
                output_tokens: estimate(answer),
            };
            tracing::debug!(
                provider = http.provider,
                model,
                input_tokens = usage.input_tokens,
                output_tokens = usage.output_tokens,
                "the answer carried no token usage and the server tokenizes nothing: estimated at 4 characters a token"
            );
            usage
        }
    }
}

/// Four characters a token, rounded up.
pub(crate) fn estimate(text: &str) -> u64 {
    text.chars().count().div_ceil(CHARS_PER_TOKEN) as u64
}

#[derive(Deserialize)]
struct Tokenized {
    count: Option<u64>,
    tokens: Option<Vec<Value>>,
}

/// The number of tokens in `text` by the server's tokenizer at `path`;
/// `None` when the server has no such endpoint or its answer does not say.
async fn tokenize(http: &Endpoint, path: &str, model: &str, text: &str) -> Option<u64> {
    if text.is_empty() {
        return Some(0);
    }
    let body = if path == "/extras/tokenize" {
        json!({"model": model, "input": text})
    } else {
        json!({"model": model, "prompt": text, "content": text})
    };
    let request = http.request(Method::POST, path).json(&body);
    match http.send_json::<Tokenized>(request).await {
        Ok(Tokenized {
            count: Some(count), ..
        }) => Some(count),
        Ok(Tokenized {
            tokens: Some(tokens),
            ..
        }) => Some(tokens.len() as u64),
        Ok(_) => None,
        Err(error) => {
            tracing::debug!(provider = http.provider, path, error = %error, "no token count from this tokenize endpoint");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_is_four_characters_a_token_rounded_up() {
        assert_eq!(estimate(""), 0);
        assert_eq!(estimate("abc"), 1);
        assert_eq!(estimate("abcd"), 1);
        assert_eq!(estimate("abcde"), 2);
        // Characters, not bytes.
        assert_eq!(estimate("éééé"), 1);
    }
}
