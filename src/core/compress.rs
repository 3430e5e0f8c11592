//! Content codings of scrape answers (`Accept-Encoding`): gzip or identity.
//!
//! A `/metrics` body is a large part that only changes when a collection
//! lands (the monitors' series) followed by a small part made per scrape
//! (self metrics). The large part is compressed once into a [`GzipPrefix`]:
//! raw deflate blocks ended by a sync flush (byte-aligned, not final), with
//! the CRC-32 and length of its input. Each scrape then compresses only its
//! small tail as a fresh deflate stream (no back-references into the prefix)
//! and closes one ordinary gzip member (RFC 1952) with the combined CRC and
//! length, so every gzip decoder reads it, and warm scrapes never recompress
//! the large part.
//!
//! The prefix is compressed as the encoder writes ([`PrefixWriter`]), so the
//! whole text is never held for it. A large text is not kept at all
//! ([`SpillWriter`]): uncompressed answers then inflate the prefix chunk by
//! chunk as they are sent ([`Inflated`]).
//!
//! zstd is not offered: Prometheus asks for gzip only, and the `zstd` crate
//! builds the C library (a minute of CI compile on 2 cores) for no scraper
//! that would use it.

use std::io::Write;

use flate2::write::DeflateEncoder;
use flate2::{Compression, Crc, Decompress, FlushDecompress};
use hyper::body::Bytes;

/// The content coding of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
}

impl Encoding {
    /// The `Content-Encoding` value, `None` for identity.
    pub fn header(self) -> Option<&'static str> {
        match self {
            Encoding::Identity => None,
            Encoding::Gzip => Some("gzip"),
        }
    }

    /// Choose from an `Accept-Encoding` header (RFC 9110 §12.5.3): gzip when
    /// it is acceptable (named, as `x-gzip`, or through `*`, with q > 0) and
    /// identity is not explicitly preferred with a higher q. No header, an
    /// empty one, or nothing acceptable: identity (the RFC's "respond without
    /// a content coding").
    pub fn negotiate(header: Option<&str>) -> Encoding {
        let Some(header) = header else {
            return Encoding::Identity;
        };
        let mut gzip: Option<f64> = None;
        let mut identity: Option<f64> = None;
        let mut star: Option<f64> = None;
        for item in header.split(',') {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or("");
            if coding.is_empty() {
                continue;
            }
            let q = parts
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                .map(|(_, v)| match v.trim().parse::<f64>() {
                    Ok(q) if q.is_finite() => q.clamp(0.0, 1.0),
                    _ => 0.0,
                })
                .unwrap_or(1.0);
            let slot =
                if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                    &mut gzip
                } else if coding.eq_ignore_ascii_case("identity") {
                    &mut identity
                } else if coding == "*" {
                    &mut star
                } else {
                    continue;
                };
            // A coding listed twice: the higher weight counts.
            *slot = Some(slot.map_or(q, |old: f64| old.max(q)));
        }
        let gzip = gzip.or(star).unwrap_or(0.0);
        // Identity unnamed (and no `*`) is acceptable but not preferred.
        let identity = identity.or(star);
        match identity {
            _ if gzip <= 0.0 => Encoding::Identity,
            Some(id) if id > gzip => Encoding::Identity,
            _ => Encoding::Gzip,
        }
    }
}

/// The compressed, cacheable start of a gzip member (see the module doc).
#[derive(Debug)]
pub struct GzipPrefix {
    /// The gzip header, then raw deflate blocks, sync-flushed (no final
    /// block): shared by every answer, never copied into one.
    head: Bytes,
    /// CRC-32 and length (modulo 2^32, as gzip keeps it) of the
    /// uncompressed prefix.
    crc: Crc,
    /// The exact length of the uncompressed prefix.
    text_len: u64,
}

/// The fixed 10-byte gzip header: deflate, no name/time/extra, OS unknown.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// Size of the pieces fed to the compressor and of the chunks of an
/// inflated answer.
pub const CHUNK: usize = 64 * 1024;

impl GzipPrefix {
    /// Compress `data` as the start of a gzip member.
    pub fn new(data: &[u8]) -> GzipPrefix {
        let mut w = PrefixWriter::new();
        for piece in data.chunks(CHUNK) {
            w.write_bytes(piece);
        }
        w.finish()
    }

    /// Bytes of compressed output held.
    pub fn compressed_len(&self) -> usize {
        self.head.len()
    }

    /// Bytes of the uncompressed text this prefix holds.
    pub fn text_len(&self) -> u64 {
        self.text_len
    }

    /// The uncompressed text, to be inflated chunk by chunk when sent.
    pub fn inflated(&self) -> Inflated {
        Inflated {
            deflate: self.head.slice(GZIP_HEADER.len().min(self.head.len())..),
            len: self.text_len,
        }
    }

    /// One complete gzip member as two chunks: this prefix (shared, not
    /// copied), then `tail` compressed now with the member's trailer.
    pub fn finish_parts(&self, tail: &[u8]) -> [Bytes; 2] {
        let mut tail_crc = Crc::new();
        tail_crc.update(tail);
        let mut crc = Crc::new();
        crc.combine(&self.crc);
        crc.combine(&tail_crc);
        let mut enc =
            DeflateEncoder::new(Vec::with_capacity(tail.len() / 3 + 64), Compression::fast());
        let _ = enc.write_all(tail);
        let mut out = enc.finish().unwrap_or_default();
        out.extend_from_slice(&crc.sum().to_le_bytes());
        out.extend_from_slice(&crc.amount().to_le_bytes());
        [self.head.clone(), Bytes::from(out)]
    }

    /// One complete gzip member in one buffer: this prefix, then `tail`.
    pub fn finish(&self, tail: &[u8]) -> Vec<u8> {
        self.finish_parts(tail).concat()
    }
}

/// Builds a [`GzipPrefix`] from text written piece by piece (an encoder's
/// output as it comes): only the compressed output is held.
pub struct PrefixWriter {
    enc: DeflateEncoder<Vec<u8>>,
    crc: Crc,
    len: u64,
}

impl Default for PrefixWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl PrefixWriter {
    pub fn new() -> Self {
        let mut out = Vec::with_capacity(CHUNK);
        out.extend_from_slice(&GZIP_HEADER);
        PrefixWriter {
            enc: DeflateEncoder::new(out, Compression::default()),
            crc: Crc::new(),
            len: 0,
        }
    }

    fn write_bytes(&mut self, data: &[u8]) {
        self.crc.update(data);
        self.len += data.len() as u64;
        // Writing to a Vec cannot fail.
        let _ = self.enc.write_all(data);
    }

    /// Bytes of text written so far.
    pub fn text_len(&self) -> u64 {
        self.len
    }

    /// Sync-flush (byte-aligned, not final) and keep the output.
    pub fn finish(mut self) -> GzipPrefix {
        let _ = self.enc.flush();
        // Dropping the encoder then only writes its final block into the
        // emptied Vec.
        let mut head = std::mem::take(self.enc.get_mut());
        // Kept until the next collection: give back the growth's slack.
        head.shrink_to_fit();
        GzipPrefix {
            head: Bytes::from(head),
            crc: self.crc,
            text_len: self.len,
        }
    }
}

impl std::fmt::Write for PrefixWriter {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.write_bytes(s.as_bytes());
        Ok(())
    }
}

/// An encoding's output: the text while it stays within a limit, else only
/// its gzip prefix (the text written so far is compressed and dropped the
/// moment the limit is passed, the rest compressed as it comes).
pub enum Spilled {
    Text(String),
    Gzip(GzipPrefix),
}

/// The writer behind [`Spilled`].
pub struct SpillWriter {
    text: String,
    limit: usize,
    gzip: Option<PrefixWriter>,
}

impl SpillWriter {
    pub fn new(limit: usize) -> Self {
        SpillWriter {
            text: String::with_capacity(CHUNK.min(limit)),
            limit,
            gzip: None,
        }
    }

    pub fn finish(self) -> Spilled {
        match self.gzip {
            Some(w) => Spilled::Gzip(w.finish()),
            None => {
                let mut text = self.text;
                // Kept until the next collection: give back the slack of
                // the doubling growth (at most the limit).
                text.shrink_to_fit();
                Spilled::Text(text)
            }
        }
    }
}

impl std::fmt::Write for SpillWriter {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if let Some(w) = &mut self.gzip {
            w.write_bytes(s.as_bytes());
        } else if self.text.len() + s.len() > self.limit {
            let mut w = PrefixWriter::new();
            for piece in self.text.as_bytes().chunks(CHUNK) {
                w.write_bytes(piece);
            }
            w.write_bytes(s.as_bytes());
            self.text = String::new();
            self.gzip = Some(w);
        } else {
            self.text.push_str(s);
        }
        Ok(())
    }
}

/// The text of a [`GzipPrefix`], to be inflated when sent: cheap to clone
/// (the compressed bytes are shared), each [`Inflated::chunks`] a fresh pass.
#[derive(Debug, Clone)]
pub struct Inflated {
    /// Raw deflate blocks (the prefix without its gzip header).
    deflate: Bytes,
    len: u64,
}

impl Inflated {
    /// Bytes of text the chunks add up to.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The text in chunks of [`CHUNK`] bytes (the last one shorter): one
    /// inflater (a 32 KiB window) and one chunk held at a time.
    pub fn chunks(&self) -> InflateChunks {
        InflateChunks {
            input: self.deflate.clone(),
            dec: Decompress::new(false),
            remaining: self.len,
        }
    }
}

/// Iterator of [`Inflated::chunks`]. An error (a prefix that ends before
/// its recorded length: never made by [`PrefixWriter`]) ends it.
pub struct InflateChunks {
    input: Bytes,
    dec: Decompress,
    remaining: u64,
}

impl Iterator for InflateChunks {
    type Item = Result<Bytes, std::io::Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        let want = usize::try_from(self.remaining).map_or(CHUNK, |r| r.min(CHUNK));
        let mut out = vec![0u8; want];
        let mut filled = 0;
        while filled < want {
            let (in_before, out_before) = (self.dec.total_in(), self.dec.total_out());
            let pos = usize::try_from(in_before).unwrap_or(usize::MAX);
            let input = self.input.get(pos..).unwrap_or_default();
            let status = self
                .dec
                .decompress(input, &mut out[filled..], FlushDecompress::None);
            let produced = usize::try_from(self.dec.total_out() - out_before).unwrap_or(0);
            filled += produced;
            let stuck = produced == 0 && self.dec.total_in() == in_before;
            if let Err(e) = status {
                self.remaining = 0;
                return Some(Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)));
            }
            if stuck {
                self.remaining = 0;
                return Some(Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the cached gzip prefix ends before its recorded length",
                )));
            }
        }
        self.remaining -= want as u64;
        Some(Ok(Bytes::from(out)))
    }
}

/// `data` as one gzip member (answers that are not cached, such as `/probe`).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    GzipPrefix::new(b"").finish(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip(data: &[u8]) -> Vec<u8> {
        // GzDecoder reads exactly one member: the whole body must be one.
        let mut d = flate2::read::GzDecoder::new(data);
        let mut out = Vec::new();
        d.read_to_end(&mut out).expect("valid gzip");
        out
    }

    #[test]
    fn prefix_and_tail_are_one_valid_gzip_member() {
        let big: String = (0..20_000)
            .map(|i| format!("terraform_resource_drift{{path=\"s{i}\"}} {}\n", i % 3))
            .collect();
        let p = GzipPrefix::new(big.as_bytes());
        assert!(p.compressed_len() < big.len() / 4, "{}", p.compressed_len());
        for tail in [&b""[..], b"homelab_monitor_cache_age_seconds 3\n# EOF\n"] {
            let z = p.finish(tail);
            let mut want = big.clone().into_bytes();
            want.extend_from_slice(tail);
            assert_eq!(gunzip(&z), want);
            // Exactly one member: the multi-member decoder reads the same.
            let mut m = Vec::new();
            flate2::read::MultiGzDecoder::new(&z[..])
                .read_to_end(&mut m)
                .unwrap();
            assert_eq!(m, want);
        }
        assert_eq!(gunzip(&gzip(b"x 1\n")), b"x 1\n");
        assert_eq!(gunzip(&gzip(b"")), b"");
    }

    fn text(n: usize) -> String {
        (0..n)
            .map(|i| format!("terraform_resource_drift{{path=\"s{i}\"}} {}\n", i % 3))
            .collect()
    }

    #[test]
    fn a_prefix_written_piece_by_piece_is_the_prefix_of_the_whole_text() {
        use std::fmt::Write as _;
        let big = text(20_000);
        let mut w = PrefixWriter::new();
        for line in big.split_inclusive('\n') {
            w.write_str(line).unwrap();
        }
        assert_eq!(w.text_len(), big.len() as u64);
        let p = w.finish();
        assert_eq!(p.text_len(), big.len() as u64);
        assert!(p.compressed_len() < big.len() / 4, "{}", p.compressed_len());
        let tail = b"homelab_monitor_cache_age_seconds 3\n";
        let mut want = big.clone().into_bytes();
        want.extend_from_slice(tail);
        assert_eq!(gunzip(&p.finish(tail)), want);
        // The same bytes as compressing the whole text at once.
        assert_eq!(p.finish(tail), GzipPrefix::new(big.as_bytes()).finish(tail));
    }

    #[test]
    fn inflated_chunks_are_the_text_in_bounded_pieces() {
        let big = text(20_000);
        let p = GzipPrefix::new(big.as_bytes());
        let inflated = p.inflated();
        assert_eq!(inflated.len(), big.len() as u64);
        let chunks: Vec<Bytes> = inflated.chunks().map(|c| c.unwrap()).collect();
        assert_eq!(chunks.len(), big.len().div_ceil(CHUNK));
        assert!(chunks.iter().all(|c| c.len() <= CHUNK && !c.is_empty()));
        assert_eq!(chunks.concat(), big.as_bytes());
        // Each pass starts afresh.
        let again: Vec<Bytes> = inflated.chunks().map(|c| c.unwrap()).collect();
        assert_eq!(again, chunks);
        assert_eq!(GzipPrefix::new(b"").inflated().chunks().count(), 0);
        // A recorded length the prefix does not hold is an error, not a
        // short text taken for the whole.
        let lying = Inflated {
            len: inflated.len() + 10,
            ..inflated
        };
        let last = lying.chunks().last().unwrap();
        assert_eq!(last.unwrap_err().kind(), std::io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn spill_keeps_a_small_text_and_only_the_gzip_prefix_of_a_large_one() {
        use std::fmt::Write as _;
        let big = text(2_000);
        let write = |limit: usize| {
            let mut w = SpillWriter::new(limit);
            for line in big.split_inclusive('\n') {
                w.write_str(line).unwrap();
            }
            w.finish()
        };
        match write(big.len()) {
            Spilled::Text(t) => {
                assert_eq!(t, big);
                assert_eq!(t.capacity(), t.len(), "no slack kept");
            }
            Spilled::Gzip(_) => panic!("a text within the limit is kept"),
        }
        match write(big.len() - 1) {
            Spilled::Gzip(p) => {
                assert_eq!(p.text_len(), big.len() as u64);
                assert_eq!(gunzip(&p.finish(b"")), big.as_bytes());
            }
            Spilled::Text(_) => panic!("a text above the limit is not kept"),
        }
    }

    #[test]
    fn negotiation_follows_q_values_identity_and_star() {
        use Encoding::*;
        let n = |h: &str| Encoding::negotiate(Some(h));
        assert_eq!(Encoding::negotiate(None), Identity);
        assert_eq!(n(""), Identity);
        // Prometheus' own header.
        assert_eq!(n("gzip"), Gzip);
        // curl --compressed.
        assert_eq!(n("deflate, gzip, br, zstd"), Gzip);
        assert_eq!(n("GZIP;Q=0.5"), Gzip);
        assert_eq!(n("x-gzip"), Gzip);
        assert_eq!(n("gzip;q=0"), Identity);
        assert_eq!(n("gzip;q=0.000"), Identity);
        assert_eq!(n("br, deflate"), Identity);
        assert_eq!(n("*"), Gzip);
        assert_eq!(n("*;q=0"), Identity);
        assert_eq!(n("*, gzip;q=0"), Identity);
        assert_eq!(n("identity"), Identity);
        assert_eq!(n("identity;q=1, gzip;q=0.5"), Identity);
        assert_eq!(n("identity;q=0.5, gzip"), Gzip);
        assert_eq!(n("gzip;q=0.5, identity;q=0.5"), Gzip);
        assert_eq!(n("identity;q=0, *"), Gzip);
        assert_eq!(n("gzip;q=bogus"), Identity);
    }
}
