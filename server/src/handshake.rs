//! Closes connections that do not start speaking HTTP/2 in time. hyper's
//! HTTP/2 server waits for the connection preface forever, so a client that
//! connects and sends nothing (or part of the preface) would hold a socket
//! and a task until it left. Every accepted socket is wrapped in a
//! [`HandshakeDeadline`]: reading fails with `TimedOut`, which closes the
//! connection, if the preface's 24 bytes have not arrived within the
//! timeout. Once they have, the wrapper only forwards.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;
use tonic::transport::server::Connected;

/// Length of the HTTP/2 client connection preface (RFC 9113 §3.4).
const PREFACE_LEN: usize = 24;

pin_project! {
    /// A socket that must receive the HTTP/2 preface before its deadline.
    pub struct HandshakeDeadline<IO> {
        #[pin]
        inner: IO,
        // `None` once the preface has arrived.
        deadline: Option<Pin<Box<Sleep>>>,
        received: usize,
    }
}

impl<IO> HandshakeDeadline<IO> {
    /// Starts the clock: call when the connection is accepted.
    pub fn new(inner: IO, timeout: Duration) -> Self {
        HandshakeDeadline {
            inner,
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
            received: 0,
        }
    }
}

impl<IO: AsyncRead> AsyncRead for HandshakeDeadline<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        match this.inner.poll_read(cx, buf) {
            Poll::Ready(result) => {
                *this.received += buf.filled().len() - before;
                if *this.received >= PREFACE_LEN {
                    *this.deadline = None;
                }
                Poll::Ready(result)
            }
            Poll::Pending => {
                let expired = this
                    .deadline
                    .as_mut()
                    .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready());
                if expired {
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no HTTP/2 preface within the handshake timeout",
                    )))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl<IO: AsyncWrite> AsyncWrite for HandshakeDeadline<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl<IO: Connected> Connected for HandshakeDeadline<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn silence_times_out_and_the_preface_disarms_the_clock() {
        let (client, server) = tokio::io::duplex(64);
        let mut server = HandshakeDeadline::new(server, Duration::from_millis(100));
        let mut buffer = [0u8; 64];
        let error = server.read(&mut buffer).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        drop(client);

        let (mut client, server) = tokio::io::duplex(64);
        let mut server = HandshakeDeadline::new(server, Duration::from_millis(100));
        client
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(server.read(&mut buffer).await.unwrap(), PREFACE_LEN);
        // Idle for longer than the timeout after the preface: fine.
        tokio::time::sleep(Duration::from_millis(300)).await;
        client.write_all(b"x").await.unwrap();
        assert_eq!(server.read(&mut buffer).await.unwrap(), 1);
    }
}
