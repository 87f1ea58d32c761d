//! Reading what is left of a request body after the answer.
//!
//! A handler may answer before it has read the body it was sent (a bad
//! parameter, a missing container, a body over its cap, a refused entry
//! mid-upload). If the connection then closed with the client still
//! sending, the client's write failed with a broken pipe, which the docker
//! CLI (Go's HTTP client) reports instead of the answer it had been sent,
//! now and then. So every request body reaches its handler through a
//! [`KeptBody`], which hands what the handler left unread back to the
//! server when the handler drops it; the server reads and throws away the
//! rest while hyper sends the answer (hyper closes or reuses the
//! connection only once the body is read or let go): at most
//! [`DRAIN_BYTES`] and [`DRAIN_TIME`], then it lets go and the connection
//! closes as before.

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

/// Most bytes read and thrown away after an answer.
pub const DRAIN_BYTES: u64 = 1 << 30;

/// Longest time spent reading them.
pub const DRAIN_TIME: Duration = Duration::from_secs(30);

/// A request body left unread by its handler.
pub(crate) struct Leftover {
    body: Incoming,
    /// Whether the handler read any of it. A request that asked to be
    /// told to continue (`Expect: 100-continue`) and was never read has
    /// no body on its way: nothing to wait for.
    polled: bool,
}

/// Where a [`KeptBody`] leaves its unread rest.
pub(crate) type Slot = Arc<Mutex<Option<Leftover>>>;

/// A request body as handlers see it: hyper's, which it hands to its
/// [`Slot`] when dropped before its end.
pub(crate) struct KeptBody {
    inner: Option<Incoming>,
    polled: bool,
    slot: Slot,
}

impl KeptBody {
    pub fn new(body: Incoming, slot: Slot) -> KeptBody {
        KeptBody {
            inner: Some(body),
            polled: false,
            slot,
        }
    }
}

impl HttpBody for KeptBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        this.polled = true;
        match this.inner.as_mut() {
            Some(b) => Pin::new(b).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}

impl Drop for KeptBody {
    fn drop(&mut self) {
        if let Some(body) = self.inner.take() {
            if !body.is_end_stream() {
                if let Ok(mut s) = self.slot.lock() {
                    *s = Some(Leftover {
                        body,
                        polled: self.polled,
                    });
                }
            }
        }
    }
}

impl Leftover {
    /// Whether anything may still come (see [`Leftover::polled`]).
    pub fn worth_draining(&self, expect_continue: bool) -> bool {
        self.polled || !expect_continue
    }

    /// Reads and drops the rest, within the bounds.
    pub async fn drain(mut self) {
        use http_body_util::BodyExt;
        let mut n = 0u64;
        let read = async {
            while let Some(Ok(f)) = self.body.frame().await {
                if let Some(d) = f.data_ref() {
                    n += d.len() as u64;
                    if n > DRAIN_BYTES {
                        break;
                    }
                }
            }
        };
        let _ = tokio::time::timeout(DRAIN_TIME, read).await;
        log::debug!("read {n} bytes of a request body its handler left unread");
    }
}
