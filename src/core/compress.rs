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
//! zstd is not offered: Prometheus asks for gzip only, and the `zstd` crate
//! builds the C library (a minute of CI compile on 2 cores) for no scraper
//! that would use it.

use std::io::Write;

use flate2::write::DeflateEncoder;
use flate2::{Compression, Crc};
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
    /// CRC-32 and length of the uncompressed prefix.
    crc: Crc,
}

/// The fixed 10-byte gzip header: deflate, no name/time/extra, OS unknown.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

impl GzipPrefix {
    /// Compress `data` as the start of a gzip member.
    pub fn new(data: &[u8]) -> GzipPrefix {
        let mut crc = Crc::new();
        crc.update(data);
        let mut out = Vec::with_capacity(GZIP_HEADER.len() + data.len() / 4 + 64);
        out.extend_from_slice(&GZIP_HEADER);
        let mut enc = DeflateEncoder::new(out, Compression::default());
        // Writing to a Vec cannot fail.
        let _ = enc.write_all(data);
        // Sync flush: byte-aligned, not final; dropping the encoder then only
        // writes its final block into the emptied Vec.
        let _ = enc.flush();
        let mut head = std::mem::take(enc.get_mut());
        // Kept until the next collection: the buffer was sized for a quarter
        // of the input, metrics usually compress to a few percent of it.
        head.shrink_to_fit();
        GzipPrefix {
            head: Bytes::from(head),
            crc,
        }
    }

    /// Bytes of compressed output held.
    pub fn compressed_len(&self) -> usize {
        self.head.len()
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
