//! Graceful shutdown at the HTTP layer. Once the server starts draining:
//!
//! - calls that arrive are answered `UNAVAILABLE` at once, without reaching
//!   a handler, so clients retry elsewhere (a GOAWAY alone makes some
//!   clients report `CANCELLED` for a call that raced it);
//! - open response streams (watches, worker sessions, health watches) end
//!   with `UNAVAILABLE`, telling their clients to reconnect elsewhere
//!   instead of hanging until the connection is cut;
//! - unary calls in flight finish; [`DrainLayer::idle`] says when none is
//!   left, and only then does the server close its connections.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::sync::{Notify, watch};
use tower::{Layer, Service};

use crate::api::ApiError;

/// Wraps every response body of a service in a [`DrainBody`] and refuses
/// calls once draining has begun.
#[derive(Clone)]
pub struct DrainLayer {
    draining: watch::Receiver<bool>,
    calls: Arc<Calls>,
}

impl DrainLayer {
    /// `draining` flips to `true` when shutdown begins.
    pub fn new(draining: watch::Receiver<bool>) -> Self {
        DrainLayer {
            draining,
            calls: Arc::default(),
        }
    }

    /// Resolves when no call is in flight (a stream ended by the drain
    /// counts as over).
    pub async fn idle(&self) {
        self.calls.idle().await;
    }
}

impl<S> Layer<S> for DrainLayer {
    type Service = DrainService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DrainService {
            inner,
            draining: self.draining.clone(),
            calls: self.calls.clone(),
        }
    }
}

/// Calls whose responses have not ended.
#[derive(Default)]
struct Calls {
    count: AtomicUsize,
    idle: Notify,
    /// The most calls in flight since memory was last handed back.
    high_water: AtomicUsize,
}

/// When calls in flight fall to half of a high-water mark of at least this
/// many, the memory they held is handed back to the system (see
/// [`crate::memory`]), once the rest of the burst has ended too.
const RELEASE_AFTER_CALLS: usize = 256;

impl Calls {
    fn begin(self: &Arc<Self>) -> CallGuard {
        let count = self.count.fetch_add(1, Ordering::SeqCst) + 1;
        self.high_water.fetch_max(count, Ordering::Relaxed);
        CallGuard(self.clone())
    }

    fn end(&self) {
        let count = self.count.fetch_sub(1, Ordering::SeqCst) - 1;
        if count == 0 {
            self.idle.notify_waiters();
        }
        let high_water = self.high_water.load(Ordering::Relaxed);
        if high_water >= RELEASE_AFTER_CALLS && count <= high_water / 2 {
            // Every end of the burst's second half asks again: the trim
            // runs after the last one, not after the first.
            crate::memory::release_freed_soon();
            if count <= RELEASE_AFTER_CALLS / 4 {
                // The burst is over; a new one starts counting from here.
                let _ = self.high_water.compare_exchange(
                    high_water,
                    count,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
        }
    }

    async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// One call in flight, until dropped with its response body.
struct CallGuard(Arc<Calls>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.0.end();
    }
}

#[derive(Clone)]
pub struct DrainService<S> {
    inner: S,
    draining: watch::Receiver<bool>,
    calls: Arc<Calls>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for DrainService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Body<Data = Bytes> + Default + Send + 'static,
{
    type Response = http::Response<DrainBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let draining = self.draining.clone();
        if *draining.borrow() {
            let refused = tonic::Status::from(ApiError::ShuttingDown).into_http::<ResBody>();
            return Box::pin(async move {
                Ok(refused.map(|body| DrainBody::new(body, draining, None)))
            });
        }
        let call = self.calls.begin();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|inner| DrainBody::new(inner, draining, Some(call))))
        })
    }
}

pin_project! {
    /// A response body that ends with `grpc-status: UNAVAILABLE` trailers
    /// once draining begins, if it has not ended by itself.
    pub struct DrainBody<B> {
        #[pin]
        inner: B,
        drained: BoxFuture<()>,
        state: State,
        // Counts the call as in flight until the body is gone.
        call: Option<CallGuard>,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Streaming,
    /// The drain trailers were sent; the body is over.
    Cut,
    /// The inner body ended by itself.
    Ended,
}

impl<B> DrainBody<B> {
    fn new(inner: B, mut draining: watch::Receiver<bool>, call: Option<CallGuard>) -> Self {
        DrainBody {
            inner,
            drained: Box::pin(async move {
                // A dropped sender means the server is gone: drain too.
                let _ = draining.wait_for(|draining| *draining).await;
            }),
            state: State::Streaming,
            call,
        }
    }
}

fn unavailable_trailers() -> HeaderMap {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("14"));
    trailers.insert(
        "grpc-message",
        HeaderValue::from_static("the server is shutting down; reconnect elsewhere"),
    );
    trailers
}

impl<B> Body for DrainBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        match *this.state {
            State::Cut | State::Ended => return Poll::Ready(None),
            State::Streaming => {}
        }
        // What the handler already produced goes out first.
        match this.inner.poll_frame(cx) {
            Poll::Ready(None) => {
                *this.state = State::Ended;
                Poll::Ready(None)
            }
            Poll::Ready(Some(frame)) => {
                if frame.as_ref().is_ok_and(Frame::is_trailers) {
                    *this.state = State::Ended;
                }
                Poll::Ready(Some(frame))
            }
            Poll::Pending => match this.drained.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    *this.state = State::Cut;
                    Poll::Ready(Some(Ok(Frame::trailers(unavailable_trailers()))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.state != State::Streaming || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.state == State::Streaming {
            self.inner.size_hint()
        } else {
            SizeHint::with_exact(0)
        }
    }
}
