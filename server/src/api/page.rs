//! Pages of a listing (AIP-158): `page_size` and page tokens bound to the
//! listing they came from, pages bounded in bytes, and the list requests
//! and responses of every service, so a handler names its listing, how to
//! fetch it and how to encode an item.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use prost::Message;
use sha2::{Digest, Sha256};

use super::error::{ApiError, ApiResult};
use super::request::{hex, require};
use crate::proto::taskloom::v1 as pb;
use crate::store::{Page, PageQuery};

/// Default and maximum `page_size`.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 1000;

/// A request for one page of a listing.
pub trait ListRequest {
    fn page_size(&self) -> i32;
    fn page_token(&self) -> &str;
}

/// One page of a listing's items and the token of the next page.
pub trait ListResponse {
    type Item: Message;
    fn page(items: Vec<Self::Item>, next_page_token: String) -> Self;
}

macro_rules! list_requests {
    ($($request:ident),* $(,)?) => {$(
        impl ListRequest for pb::$request {
            fn page_size(&self) -> i32 {
                self.page_size
            }
            fn page_token(&self) -> &str {
                &self.page_token
            }
        }
    )*};
}

macro_rules! list_responses {
    ($($response:ident { $items:ident: $item:ident }),* $(,)?) => {$(
        impl ListResponse for pb::$response {
            type Item = pb::$item;
            fn page($items: Vec<pb::$item>, next_page_token: String) -> Self {
                pb::$response { $items, next_page_token }
            }
        }
    )*};
}

list_requests!(
    ListBackendsRequest,
    ListPoolsRequest,
    ListPoolBackendsRequest,
    ListBackendPoolsRequest,
    ListPoolModelsRequest,
    ListModelPoolsRequest,
    ListModelsRequest,
    ListHooksRequest,
    ListChainsRequest,
    ListChainVersionsRequest,
    ListRunsRequest,
    ListRunEventsRequest,
    ListRunAttemptsRequest,
    ListWorkersRequest,
    ListDeadLettersRequest,
);

list_responses!(
    ListBackendsResponse { backends: Backend },
    ListPoolsResponse { pools: Pool },
    ListModelsResponse { models: Model },
    ListHooksResponse { hooks: Hook },
    ListChainsResponse { chains: Chain },
    ListChainVersionsResponse { chains: Chain },
    ListRunsResponse { runs: Run },
    ListRunEventsResponse { events: RunEvent },
    ListRunAttemptsResponse {
        attempts: TaskAttempt
    },
    ListWorkersResponse {
        workers: WorkerSession
    },
    ListDeadLettersResponse {
        attempts: TaskAttempt
    },
);

/// An item encoding that cannot fail, as [`list_page`] takes it.
pub fn infallible<T, M>(encode: impl Fn(T) -> M) -> impl FnMut(T) -> ApiResult<M> {
    move |item| Ok(encode(item))
}

/// The page a request asks for in the listing `scope`.
pub fn request_query(request: &impl ListRequest, scope: &str) -> ApiResult<PageQuery> {
    page_query(request.page_size(), request.page_token(), scope)
}

/// The scope of a listing of the items under one parent (a chain's
/// versions, a pool's backends, …): the parent's key (`field` of the
/// request) is required and binds the page tokens, with the listing's name.
pub fn child_scope(listing: &str, field: &str, key: &str) -> ApiResult<String> {
    require(field, key)?;
    Ok(format!("{listing}/{key}"))
}

/// One page of a keyset listing: decodes the request's page token (bound to
/// `scope`), fetches, encodes the items up to [`MAX_PAGE_BYTES`] and the
/// token of the next page.
pub async fn list_page<T, R, E, Fut>(
    request: &impl ListRequest,
    scope: &str,
    fetch: impl FnOnce(PageQuery) -> Fut,
    encode: impl FnMut(T) -> ApiResult<R::Item>,
) -> ApiResult<R>
where
    R: ListResponse,
    ApiError: From<E>,
    Fut: std::future::Future<Output = Result<Page<T>, E>>,
{
    let page = fetch(request_query(request, scope)?).await?;
    encode_page(page, scope, encode)
}

/// Decodes `page_size`/`page_token`. `scope` binds a token to the listing
/// (and its filters) it came from, so a token cannot be replayed elsewhere.
pub fn page_query(page_size: i32, page_token: &str, scope: &str) -> ApiResult<PageQuery> {
    let limit = match page_size {
        size if size < 0 => {
            return Err(ApiError::invalid("page_size", "must not be negative"));
        }
        0 => DEFAULT_PAGE_SIZE,
        size => (size as u32).min(MAX_PAGE_SIZE),
    };
    let after = if page_token.is_empty() {
        None
    } else {
        Some(decode_page_token(page_token, scope).ok_or_else(|| {
            ApiError::invalid(
                "page_token",
                "is not a token returned by this listing with the same filters",
            )
        })?)
    };
    Ok(PageQuery { limit, after })
}

/// Most encoded bytes of the items of one list page: clients refuse
/// messages over 4 MiB by default, so a page ends before this (a single
/// larger item still goes, alone) and its token continues after the last
/// item sent.
pub const MAX_PAGE_BYTES: usize = 3 * 1024 * 1024;

/// Encodes a fetched page's items up to [`MAX_PAGE_BYTES`]; the token
/// continues after the last item encoded.
pub fn encode_page<T, R: ListResponse>(
    page: Page<T>,
    scope: &str,
    mut encode: impl FnMut(T) -> ApiResult<R::Item>,
) -> ApiResult<R> {
    let Page {
        items,
        mut next_after,
        keys,
    } = page;
    let mut messages = Vec::with_capacity(items.len());
    let mut bytes = 0;
    for item in items {
        let message = encode(item)?;
        // The field tag and length prefix of a repeated entry.
        bytes += message.encoded_len() + 6;
        if bytes > MAX_PAGE_BYTES && !messages.is_empty() {
            next_after = keys.get(messages.len() - 1).cloned();
            break;
        }
        messages.push(message);
    }
    Ok(R::page(messages, next_page_token(next_after, scope)))
}

/// Encodes the token for the page after `next_after` (empty on the last page).
pub fn next_page_token(next_after: Option<String>, scope: &str) -> String {
    match next_after {
        None => String::new(),
        Some(after) => {
            let payload = serde_json::json!({ "s": scope_digest(scope), "a": after });
            URL_SAFE_NO_PAD.encode(payload.to_string())
        }
    }
}

fn decode_page_token(token: &str, scope: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    let payload: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    if payload.get("s")?.as_str()? != scope_digest(scope) {
        return None;
    }
    Some(payload.get("a")?.as_str()?.to_string())
}

fn scope_digest(scope: &str) -> String {
    let digest = Sha256::digest(scope.as_bytes());
    hex(&digest[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_are_bound_to_their_scope() {
        let token = next_page_token(Some("abc".into()), "ListBackends");
        let query = page_query(10, &token, "ListBackends").unwrap();
        assert_eq!(query.after.as_deref(), Some("abc"));
        assert_eq!(query.limit, 10);
        assert!(page_query(10, &token, "ListPools").is_err());
        assert!(page_query(10, "garbage!", "ListBackends").is_err());
        assert!(page_query(-1, "", "ListBackends").is_err());
        assert_eq!(page_query(0, "", "x").unwrap().limit, DEFAULT_PAGE_SIZE);
        assert_eq!(page_query(5000, "", "x").unwrap().limit, MAX_PAGE_SIZE);
        assert_eq!(next_page_token(None, "x"), "");
    }
}
