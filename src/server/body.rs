//! The response body of the server: a few shared chunks.
//!
//! A `/metrics` answer is the cached monitors' part (one refcounted
//! [`Bytes`], the same for every scrape until the next collection) followed
//! by the small per-scrape part. Sending them as two frames of one body
//! avoids copying the cached part into each answer (170 MB per concurrent
//! uncompressed scrape on a 100,000-state fleet). The exact length is known,
//! so the answer carries a `Content-Length`, as with a single buffer.
//!
//! An uncompressed answer of a monitors' part too large to cache starts
//! with that part inflated from its cached gzip prefix, one 64 KiB chunk per
//! frame, so a scrape holds one chunk at a time. Its length was recorded
//! when it was compressed, so the `Content-Length` stays exact. A client
//! that goes away drops the body, and with it the inflater.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::body::{Body, Bytes, Frame, SizeHint};

use crate::core::compress::{InflateChunks, Inflated};

/// A body made of whole chunks, sent in order without copying, after an
/// optional inflated start.
#[derive(Default)]
pub struct Chunks {
    streamed: Option<InflateChunks>,
    parts: VecDeque<Bytes>,
    len: u64,
}

impl std::fmt::Debug for Chunks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunks")
            .field("streamed", &self.streamed.is_some())
            .field("parts", &self.parts.len())
            .field("len", &self.len)
            .finish()
    }
}

impl Chunks {
    /// A body of `parts` in order (empty parts are skipped).
    pub fn new(parts: impl IntoIterator<Item = Bytes>) -> Self {
        let parts: VecDeque<Bytes> = parts.into_iter().filter(|b| !b.is_empty()).collect();
        let len = parts.iter().map(|b| b.len() as u64).sum();
        Chunks {
            streamed: None,
            parts,
            len,
        }
    }

    /// `streamed` inflated chunk by chunk, then `parts` in order.
    pub fn streamed(streamed: Option<Inflated>, parts: impl IntoIterator<Item = Bytes>) -> Self {
        let mut body = Chunks::new(parts);
        if let Some(s) = streamed.filter(|s| !s.is_empty()) {
            body.len += s.len();
            body.streamed = Some(s.chunks());
        }
        body
    }

    /// Bytes left to send.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of chunks left (tests: the cached part is not copied).
    pub fn chunk_count(&self) -> usize {
        self.parts.len()
    }
}

impl From<Bytes> for Chunks {
    fn from(b: Bytes) -> Self {
        Chunks::new([b])
    }
}

impl Body for Chunks {
    type Data = Bytes;
    /// Only an inflated start can fail (a prefix shorter than its recorded
    /// length, which the compressor never makes): the connection is closed,
    /// so the client sees a body shorter than its `Content-Length`.
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        if let Some(stream) = &mut this.streamed {
            // One 64 KiB chunk per poll: bounded work and memory.
            match stream.next() {
                Some(Ok(b)) => {
                    this.len = this.len.saturating_sub(b.len() as u64);
                    return Poll::Ready(Some(Ok(Frame::data(b))));
                }
                Some(Err(e)) => {
                    this.streamed = None;
                    this.parts.clear();
                    this.len = 0;
                    return Poll::Ready(Some(Err(e)));
                }
                None => this.streamed = None,
            }
        }
        Poll::Ready(this.parts.pop_front().map(|b| {
            this.len -= b.len() as u64;
            Ok(Frame::data(b))
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.streamed.is_none() && self.parts.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn chunks_are_sent_in_order_with_an_exact_length() {
        let shared = Bytes::from(vec![b'a'; 1000]);
        let body = Chunks::new([shared.clone(), Bytes::new(), Bytes::from_static(b"tail\n")]);
        assert_eq!(body.size_hint().exact(), Some(1005));
        assert_eq!(body.chunk_count(), 2, "empty parts are skipped");
        let mut body = body;
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        // The same allocation, not a copy.
        assert_eq!(first.as_ptr(), shared.as_ptr());
        assert_eq!(body.size_hint().exact(), Some(5));
        let rest = body.collect().await.unwrap().to_bytes();
        assert_eq!(&rest[..], b"tail\n");
        let empty = Chunks::default();
        assert!(empty.is_end_stream());
        assert_eq!(empty.size_hint().exact(), Some(0));
    }
}
