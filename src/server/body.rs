//! The response body of the server: a few shared chunks.
//!
//! A `/metrics` answer is the cached monitors' part (one refcounted
//! [`Bytes`], the same for every scrape until the next collection) followed
//! by the small per-scrape part. Sending them as two frames of one body
//! avoids copying the cached part into each answer (170 MB per concurrent
//! uncompressed scrape on a 100,000-state fleet). The exact length is known,
//! so the answer carries a `Content-Length`, as with a single buffer.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::body::{Body, Bytes, Frame, SizeHint};

/// A body made of whole chunks, sent in order without copying.
#[derive(Debug, Default)]
pub struct Chunks {
    parts: VecDeque<Bytes>,
    len: u64,
}

impl Chunks {
    /// A body of `parts` in order (empty parts are skipped).
    pub fn new(parts: impl IntoIterator<Item = Bytes>) -> Self {
        let parts: VecDeque<Bytes> = parts.into_iter().filter(|b| !b.is_empty()).collect();
        let len = parts.iter().map(|b| b.len() as u64).sum();
        Chunks { parts, len }
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
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        Poll::Ready(this.parts.pop_front().map(|b| {
            this.len -= b.len() as u64;
            Ok(Frame::data(b))
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.parts.is_empty()
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
