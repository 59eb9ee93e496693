//! HTTP plumbing shared by the providers: base URLs, auth headers, the
//! per-call deadline, error classification and redaction, and readers for
//! NDJSON and server-sent-event streams. Calls go through the outbound
//! [`HttpClient`]: no redirects (a key never crosses to another origin) and
//! the outbound address policy.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};
use reqwest::{Method, RequestBuilder, Response};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::mpsc;

use super::{EmbedRequest, EmbedResponse, ProviderError, TokenUsage};
use crate::outbound::{self, HttpClient};

/// What [`super::provider_for`] was given.
pub(crate) struct Settings<'a> {
    pub client: HttpClient,
    pub base_url: &'a str,
    pub api_key: Option<&'a str>,
    pub timeout: Duration,
    pub options: super::ProviderOptions,
}

/// Where a provider expects its API key.
pub(crate) enum Auth {
    /// `Authorization: Bearer KEY`.
    Bearer,
    /// The key as the whole value of this header.
    Header(&'static str),
}

/// Listing pages followed at most (each of up to 1000 models).
const MAX_PAGES: usize = 20;

/// Longest stream line we accept.
const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// One backend's base URL, credentials and deadline.
pub(crate) struct Endpoint {
    /// Names the backend type in error messages.
    pub provider: &'static str,
    client: HttpClient,
    /// Scheme and authority plus any path prefix, without a trailing slash
    /// or API version.
    base: String,
    auth_header: Option<(HeaderName, HeaderValue)>,
    /// Sent with every request (a preset's conventions).
    fixed_headers: Vec<(HeaderName, HeaderValue)>,
    api_key: Option<String>,
    timeout: Duration,
}

impl Endpoint {
    /// `default_base` is used when the configured base URL is empty;
    /// `version` (e.g. `/v1`) is stripped from the configured URL because
    /// request paths carry it.
    pub fn new(
        provider: &'static str,
        settings: Settings<'_>,
        default_base: Option<&str>,
        version: &str,
        auth: Auth,
    ) -> Result<Self, ProviderError> {
        let configured = settings.base_url.trim().trim_end_matches('/');
        let base = match (configured, default_base) {
            ("", Some(default)) => default,
            ("", None) => {
                return Err(ProviderError::fatal(format!(
                    "{provider}: a base URL is required"
                )));
            }
            (configured, _) => configured,
        };
        let base = base.strip_suffix(version).unwrap_or(base).to_string();
        let parsed = url::Url::parse(&base).map_err(|error| {
            ProviderError::fatal(format!("{provider}: invalid base URL {base:?}: {error}"))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
            return Err(ProviderError::fatal(format!(
                "{provider}: base URL {base:?} must be an http(s) URL with a host"
            )));
        }
        // Request paths only append to the base, so the host checked here is
        // the host of every request; names are checked again on resolution.
        settings
            .client
            .check_url(&parsed)
            .map_err(|refused| ProviderError::fatal(format!("{provider}: {refused}")))?;

        let api_key = settings.api_key.filter(|key| !key.is_empty());
        let auth_header = api_key
            .map(|key| {
                let (name, value) = match auth {
                    Auth::Bearer => (AUTHORIZATION, format!("Bearer {key}")),
                    Auth::Header(name) => (HeaderName::from_static(name), key.to_string()),
                };
                let mut value = HeaderValue::from_str(&value).map_err(|_| {
                    ProviderError::fatal(format!(
                        "{provider}: the API key contains characters not allowed in an HTTP header"
                    ))
                })?;
                // Keeps the key out of reqwest's and hyper's debug output.
                value.set_sensitive(true);
                Ok((name, value))
            })
            .transpose()?;

        Ok(Endpoint {
            provider,
            client: settings.client,
            base,
            auth_header,
            fixed_headers: Vec::new(),
            api_key: api_key.map(str::to_string),
            timeout: settings.timeout,
        })
    }

    /// Sends `name: value` with every request.
    pub fn with_header(mut self, name: &'static str, value: &'static str) -> Self {
        self.fixed_headers.push((
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        ));
        self
    }

    /// A request to `base + path`, with the auth header when a key is set.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let mut builder = self
            .client
            .checked()
            .request(method, format!("{}{path}", self.base));
        for (name, value) in &self.fixed_headers {
            builder = builder.header(name.clone(), value.clone());
        }
        match &self.auth_header {
            Some((name, value)) => builder.header(name.clone(), value.clone()),
            None => builder,
        }
    }

    /// Runs a whole call under the deadline and scrubs the key from its
    /// error. Nothing is spawned: dropping this future drops the request.
    pub async fn bounded<T>(
        &self,
        call: impl Future<Output = Result<T, ProviderError>>,
    ) -> Result<T, ProviderError> {
        let result = match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(ProviderError::retryable(format!(
                "{}: no complete answer within {:?}",
                self.provider, self.timeout
            ))),
        };
        self.scrubbed(result)
    }

    /// The result with the key scrubbed from its error.
    pub fn scrubbed<T>(&self, result: Result<T, ProviderError>) -> Result<T, ProviderError> {
        result.map_err(|mut error| {
            error.message = outbound::redact(&error.message, self.secrets());
            error
        })
    }

    /// The per-call deadline.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn secrets(&self) -> &[String] {
        self.api_key.as_slice()
    }

    /// Sends a request; an error status becomes a classified error carrying
    /// the provider's own explanation.
    pub async fn send(&self, request: RequestBuilder) -> Result<Response, ProviderError> {
        let response = request
            .send()
            .await
            .map_err(|error| transport_error(self.provider, &error))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        if status.is_redirection() {
            return Err(ProviderError {
                status: Some(status.as_u16()),
                ..ProviderError::fatal(format!(
                    "{}: {}",
                    self.provider,
                    outbound::redirect_description(&response)
                ))
            });
        }
        let retry_after = match status.as_u16() {
            429 | 503 => retry_after(&response, chrono::Utc::now()),
            _ => None,
        };
        // The status alone decides the kind; an unreadable body only costs
        // the detail. The body may echo the request (and its key): it is
        // redacted before anything is cut from it.
        let body = outbound::read_error_body(response).await;
        let body = outbound::redact(&body, self.secrets());
        Err(ProviderError {
            retry_after,
            ..ProviderError::from_status(
                status.as_u16(),
                format!("{}: HTTP {status}: {}", self.provider, error_detail(&body)),
            )
        })
    }

    /// The items of a paged listing, following at most [`MAX_PAGES`] pages:
    /// `request` builds the request for a page from the cursor the previous
    /// one returned (`None` for the first), `read` takes a page's items and
    /// the next cursor (`None` on the last page).
    pub async fn pages<Page: DeserializeOwned, Item>(
        &self,
        request: impl Fn(Option<&str>) -> RequestBuilder,
        read: impl Fn(Page) -> (Vec<Item>, Option<String>),
    ) -> Result<Vec<Item>, ProviderError> {
        let mut names = vec![];
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let page: Page = self.send_json(request(cursor.as_deref())).await?;
            let (page_names, next) = read(page);
            names.extend(page_names);
            cursor = next;
            if cursor.is_none() {
                break;
            }
        }
        Ok(names)
    }

    /// Embeds one input on a server that takes `{model, input}` at `path`
    /// (Ollama, OpenAI): `read` takes from the answer its first vector, the
    /// model it names (the requested one when it names none) and its token
    /// counts.
    pub async fn embed_input<Reply: DeserializeOwned>(
        &self,
        path: &str,
        request: &EmbedRequest,
        read: impl FnOnce(Reply) -> (Option<Vec<f32>>, Option<String>, TokenUsage),
    ) -> Result<EmbedResponse, ProviderError> {
        let reply: Reply = self
            .send_json(self.request(Method::POST, path).json(request))
            .await?;
        let (vector, model, usage) = read(reply);
        Ok(EmbedResponse {
            vector: vector.ok_or_else(|| self.malformed("no embedding in the answer"))?,
            model: model.unwrap_or_else(|| request.model.clone()),
            usage,
        })
    }

    /// Sends a request and decodes its JSON answer.
    pub async fn send_json<T: DeserializeOwned>(
        &self,
        request: RequestBuilder,
    ) -> Result<T, ProviderError> {
        let response = self.send(request).await?;
        let body = response
            .bytes()
            .await
            .map_err(|error| transport_error(self.provider, &error))?;
        serde_json::from_slice(&body).map_err(|error| self.malformed(error))
    }

    /// Decodes one stream event or line.
    pub fn parse<T: DeserializeOwned>(&self, text: &str) -> Result<T, ProviderError> {
        serde_json::from_str(text).map_err(|error| self.malformed(error))
    }

    pub fn malformed(&self, detail: impl Display) -> ProviderError {
        ProviderError::fatal(format!("{}: malformed response: {detail}", self.provider))
    }

    /// The stream ended (cleanly) before the provider's final event.
    pub fn truncated(&self) -> ProviderError {
        ProviderError::retryable(format!(
            "{}: the response stream ended before its final event",
            self.provider
        ))
    }

    /// The provider accepted the request (2xx), then reported a failure in
    /// its answer or stream: a server-side problem, so worth retrying.
    pub fn reported_error(&self, detail: impl Display) -> ProviderError {
        ProviderError::retryable(format!(
            "{}: error reported after the request was accepted: {detail}",
            self.provider
        ))
    }
}

/// Connection-level failures (refused, reset, timed out, body cut short)
/// are retryable; failing to even build the request is a configuration bug,
/// and so is an address the outbound policy refuses.
/// A response's `Retry-After`: delay seconds or an HTTP date (a date in the
/// past is no wait at all).
fn retry_after(response: &Response, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?;
    parse_retry_after(value, now)
}

fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or_default(),
    )
}

fn transport_error(provider: &str, error: &reqwest::Error) -> ProviderError {
    if let Some(refused) = outbound::refusal(error) {
        return ProviderError::fatal(format!("{provider}: {refused}"));
    }
    let mut message = format!("{provider}: {error}");
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    if error.is_builder() {
        ProviderError::fatal(message)
    } else {
        ProviderError::retryable(message)
    }
}

/// The provider's error message from an error body (`{"error": "…"}`,
/// `{"error": {"message": "…"}}` or `{"message": "…"}`), else the body.
fn error_detail(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let message = parsed.as_ref().and_then(|value| {
        value["error"]["message"]
            .as_str()
            .or_else(|| value["error"].as_str())
            .or_else(|| value["message"].as_str())
    });
    let detail = message.unwrap_or(body).trim();
    if detail.is_empty() {
        "(empty body)".to_string()
    } else {
        outbound::error_excerpt(detail, &[] as &[&str])
    }
}

/// Reads a response body line by line (`\n` or `\r\n`), as it arrives.
pub(crate) struct Lines<'a> {
    endpoint: &'a Endpoint,
    response: Response,
    buffer: Vec<u8>,
    /// How much of `buffer` is known to hold no newline.
    scanned: usize,
    ended: bool,
}

impl<'a> Lines<'a> {
    pub fn new(endpoint: &'a Endpoint, response: Response) -> Self {
        Lines {
            endpoint,
            response,
            buffer: Vec::new(),
            scanned: 0,
            ended: false,
        }
    }

    /// The next line without its terminator; `None` at the end of the body.
    pub async fn next_line(&mut self) -> Result<Option<String>, ProviderError> {
        loop {
            if let Some(offset) = self.buffer[self.scanned..].iter().position(|b| *b == b'\n') {
                let mut line: Vec<u8> = self.buffer.drain(..=self.scanned + offset).collect();
                self.scanned = 0;
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return self.decode(line).map(Some);
            }
            self.scanned = self.buffer.len();
            if self.scanned > MAX_LINE_BYTES {
                return Err(self
                    .endpoint
                    .malformed(format!("a stream line exceeds {MAX_LINE_BYTES} bytes")));
            }
            if self.ended {
                if self.buffer.is_empty() {
                    return Ok(None);
                }
                let rest = std::mem::take(&mut self.buffer);
                self.scanned = 0;
                return self.decode(rest).map(Some);
            }
            match self.response.chunk().await {
                Ok(Some(bytes)) => self.buffer.extend_from_slice(&bytes),
                Ok(None) => self.ended = true,
                Err(error) => return Err(transport_error(self.endpoint.provider, &error)),
            }
        }
    }

    fn decode(&self, line: Vec<u8>) -> Result<String, ProviderError> {
        String::from_utf8(line).map_err(|error| self.endpoint.malformed(error))
    }
}

/// Reads server-sent events, yielding each event's `data` (multi-line data
/// joined with `\n`). Event names are not needed: every provider's payload
/// names its own type.
pub(crate) struct SseEvents<'a> {
    lines: Lines<'a>,
}

impl<'a> SseEvents<'a> {
    pub fn new(endpoint: &'a Endpoint, response: Response) -> Self {
        SseEvents {
            lines: Lines::new(endpoint, response),
        }
    }

    /// The next event's data; `None` at the end of the body.
    pub async fn next_data(&mut self) -> Result<Option<String>, ProviderError> {
        let mut data: Option<String> = None;
        while let Some(line) = self.lines.next_line().await? {
            if line.is_empty() {
                if data.is_some() {
                    return Ok(data);
                }
                continue;
            }
            if let Some(value) = line.strip_prefix("data:") {
                let value = value.strip_prefix(' ').unwrap_or(value);
                match &mut data {
                    Some(data) => {
                        data.push('\n');
                        data.push_str(value);
                    }
                    None => data = Some(value.to_string()),
                }
            }
        }
        Ok(data)
    }
}

/// The text of a streamed answer so far, forwarded delta by delta to an
/// optional listener.
pub(crate) struct Transcript {
    content: String,
    listener: Option<mpsc::Sender<String>>,
}

impl Transcript {
    pub fn new(listener: Option<mpsc::Sender<String>>) -> Self {
        Transcript {
            content: String::new(),
            listener,
        }
    }

    /// Whether the text goes on to a listener as it arrives (the call
    /// streams).
    pub fn streams(&self) -> bool {
        self.listener.is_some()
    }

    pub async fn push(&mut self, delta: &str) {
        if delta.is_empty() {
            return;
        }
        self.content.push_str(delta);
        if let Some(listener) = &self.listener {
            // A listener that went away must not fail the call.
            if listener.send(delta.to_string()).await.is_err() {
                self.listener = None;
            }
        }
    }

    pub fn into_content(self) -> String {
        self.content
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-06T04:36:50Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let cases = [
            ("30", Some(Duration::from_secs(30))),
            (" 0 ", Some(Duration::ZERO)),
            (
                "Sun, 06 Dec 2026 04:36:53 GMT",
                Some(Duration::from_secs(3)),
            ),
            ("Sun, 06 Dec 2026 04:36:40 GMT", Some(Duration::ZERO)),
            ("soon", None),
            ("-5", None),
        ];
        for (value, expected) in cases {
            assert_eq!(parse_retry_after(value, now), expected, "{value:?}");
        }
    }
}
