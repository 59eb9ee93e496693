//! The web UI listener (`--http-listen`): the API over gRPC-Web for the
//! browser, and the UI's files. The UI is built into `ui/dist` (committed)
//! and embedded in the binary, so serving it needs no Node and no files on
//! disk.
//!
//! The browser reaches the API only from the UI's own origin: no CORS
//! headers are ever sent, a request whose `Origin` names another site is
//! refused, and on a loopback address only loopback host names are
//! accepted, so a web page the user visits cannot reach an open-mode local
//! server through DNS rebinding.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tonic::service::Routes;
use tonic_web::GrpcWebLayer;

use crate::drain::DrainLayer;
use crate::traces::RpcLayer;

#[derive(rust_embed::RustEmbed)]
#[folder = "../ui/dist"]
struct Assets;

/// Long-lived caching is safe for the bundler's content-hashed files only.
const HASHED_PREFIX: &str = "assets/";

/// `api` (the gRPC services) over gRPC-Web, behind the same tracing and
/// drain as gRPC, with the UI's files for every other path.
pub fn routes(api: Routes, drain: DrainLayer, loopback_only: bool) -> Routes {
    // Layers apply to the routes present, not to the fallback set after.
    let router = api
        .into_axum_router()
        .layer(drain)
        .layer(RpcLayer)
        .layer(GrpcWebLayer::new())
        .fallback(asset)
        .layer(middleware::from_fn(move |request, next| {
            same_origin(request, next, loopback_only)
        }));
    Routes::from(router)
}

async fn same_origin(request: Request, next: Next, loopback_only: bool) -> Response {
    let host = request
        .uri()
        .authority()
        .map(|authority| authority.as_str().to_string())
        .or_else(|| {
            request
                .headers()
                .get(header::HOST)
                .and_then(|value| value.to_str().ok())
                .map(str::to_string)
        });
    let Some(host) = host else {
        return refuse("the request names no host");
    };
    if loopback_only && !is_loopback_host(&host) {
        return refuse(
            "this server answers loopback host names only (localhost, 127.0.0.1, [::1])",
        );
    }
    if let Some(origin) = request.headers().get(header::ORIGIN) {
        let same = origin
            .to_str()
            .ok()
            .and_then(|origin| origin.split_once("://"))
            .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(&host));
        if !same {
            return refuse("cross-origin requests are not served");
        }
    }
    next.run(request).await
}

fn refuse(why: &'static str) -> Response {
    (StatusCode::FORBIDDEN, why).into_response()
}

/// `localhost`, `*.localhost` or a loopback IP, with or without a port.
fn is_loopback_host(authority: &str) -> bool {
    let name = match authority.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => authority
            .rsplit_once(':')
            .map_or(authority, |(name, _port)| name),
    };
    let name = name.to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A file of the UI; any other page path gets `index.html`, whose script
/// routes it. Other methods are gRPC calls to no known service.
async fn asset(method: Method, uri: axum::http::Uri) -> Response {
    if method != Method::GET && method != Method::HEAD {
        let (parts, ()) = tonic::Status::unimplemented("no such service or method")
            .into_http::<()>()
            .into_parts();
        return Response::from_parts(parts, Body::empty());
    }
    let path = uri.path().trim_start_matches('/');
    let (path, file) = match Assets::get(path) {
        Some(file) if !path.is_empty() => (path, file),
        // A missing hashed file is a stale page, not a route.
        _ if path.starts_with(HASHED_PREFIX) => {
            return (StatusCode::NOT_FOUND, "no such file").into_response();
        }
        _ => match Assets::get("index.html") {
            Some(file) => ("index.html", file),
            None => return (StatusCode::NOT_FOUND, "this build has no web UI").into_response(),
        },
    };
    let cache = if path.starts_with(HASHED_PREFIX) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut response = Response::new(if method == Method::HEAD {
        Body::empty()
    } else {
        Body::from(file.data.into_owned())
    });
    let headers = response.headers_mut();
    if let Ok(mime) = HeaderValue::from_str(file.metadata.mimetype()) {
        headers.insert(header::CONTENT_TYPE, mime);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; connect-src 'self'; img-src 'self' data:; \
             style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; \
             form-action 'self'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_host_names() {
        for host in [
            "localhost",
            "localhost:8233",
            "LOCALHOST:1",
            "ui.localhost:8233",
            "127.0.0.1:8233",
            "127.1.2.3",
            "[::1]:8233",
            "[::1]",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "evil.example:8233",
            "localhost.evil.example",
            "10.0.0.1:8233",
            "[::2]:8233",
            "",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }
}
