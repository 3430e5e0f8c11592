//! Java keystores, JKS (magic `FEEDFEED`) and JCEKS (`CECECECE`), as keytool
//! writes them: big-endian counts and lengths, entries tagged 1 (private key
//! with its certificate chain) or 2 (trusted certificate), and a trailing
//! SHA-1 over the password (UTF-16BE), the words "Mighty Aphrodite" and every
//! preceding byte. Certificates are stored in the clear; private keys stay
//! encrypted and are skipped. With a store password the integrity hash is
//! checked; without one the certificates are read unchecked (as `keytool
//! -list` does). JCEKS secret-key entries (tag 3, Java serialized objects)
//! cannot be skipped safely: such a store is an error, never a partial read.
//!
//! No maintained crate reads both formats without pulling duplicate
//! dependency versions (the `jks` crate: JKS only, sha1 0.10, thiserror 1,
//! an older p12-keystore); this reader is bounds-checked and small.

use sha1::{Digest, Sha1};

pub const JKS_MAGIC: [u8; 4] = [0xfe, 0xed, 0xfe, 0xed];
pub const JCEKS_MAGIC: [u8; 4] = [0xce, 0xce, 0xce, 0xce];

/// Whether `bytes` start like a Java keystore.
pub fn is_keystore(bytes: &[u8]) -> bool {
    bytes.starts_with(&JKS_MAGIC) || bytes.starts_with(&JCEKS_MAGIC)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JksError {
    #[error("{0}")]
    Malformed(&'static str),
    #[error("wrong store password (integrity check failed)")]
    WrongPassword,
}

/// What a keystore holds: certificates (DER, in file order) and how many keys were skipped.
#[derive(Debug, Default)]
pub struct Keystore {
    pub certs: Vec<Vec<u8>>,
    pub keys: usize,
}

struct Reader<'a> {
    d: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], JksError> {
        if self.d.len() < n {
            return Err(JksError::Malformed("truncated"));
        }
        let (a, b) = self.d.split_at(n);
        self.d = b;
        Ok(a)
    }
    fn u16(&mut self) -> Result<usize, JksError> {
        let b = self.take(2)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }
    fn u32(&mut self) -> Result<u32, JksError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn len(&mut self) -> Result<usize, JksError> {
        let n = self.u32()? as usize;
        if n > self.d.len() {
            return Err(JksError::Malformed("length beyond the end of the file"));
        }
        Ok(n)
    }
    /// A Java modified-UTF-8 string (alias, certificate type): skipped.
    fn utf(&mut self) -> Result<(), JksError> {
        let n = self.u16()?;
        self.take(n).map(|_| ())
    }
    fn cert(&mut self, version: u32) -> Result<Vec<u8>, JksError> {
        if version == 2 {
            self.utf()?; // certificate type, "X.509"
        }
        let n = self.len()?;
        Ok(self.take(n)?.to_vec())
    }
}

/// Read a JKS or JCEKS store; `password` checks the integrity hash when given.
pub fn parse(bytes: &[u8], password: Option<&str>) -> Result<Keystore, JksError> {
    if !is_keystore(bytes) {
        return Err(JksError::Malformed("not a Java keystore"));
    }
    if bytes.len() < 12 + 20 {
        return Err(JksError::Malformed("truncated"));
    }
    let (body, digest) = bytes.split_at(bytes.len() - 20);
    if let Some(pw) = password {
        let mut h = Sha1::new();
        for unit in pw.encode_utf16() {
            h.update(unit.to_be_bytes());
        }
        h.update(b"Mighty Aphrodite");
        h.update(body);
        if h.finalize().as_slice() != digest {
            return Err(JksError::WrongPassword);
        }
    }
    let mut r = Reader { d: &body[4..] };
    let version = r.u32()?;
    if version != 1 && version != 2 {
        return Err(JksError::Malformed("unknown keystore version"));
    }
    let count = r.u32()?;
    let mut out = Keystore::default();
    for _ in 0..count {
        let tag = r.u32()?;
        r.utf()?; // alias
        r.take(8)?; // creation time
        match tag {
            1 => {
                let n = r.len()?;
                r.take(n)?; // the encrypted private key, never decrypted
                out.keys += 1;
                let chain = r.u32()?;
                for _ in 0..chain {
                    out.certs.push(r.cert(version)?);
                }
            }
            2 => out.certs.push(r.cert(version)?),
            3 => {
                return Err(JksError::Malformed(
                    "holds a JCEKS secret-key entry, which cannot be read past",
                ))
            }
            _ => return Err(JksError::Malformed("unknown entry type")),
        }
    }
    if !r.d.is_empty() {
        return Err(JksError::Malformed("data after the last entry"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store with one trusted certificate entry, written per the format above.
    fn store(magic: [u8; 4], cert: &[u8], password: &str) -> Vec<u8> {
        let mut b = magic.to_vec();
        b.extend_from_slice(&2u32.to_be_bytes());
        b.extend_from_slice(&1u32.to_be_bytes());
        b.extend_from_slice(&2u32.to_be_bytes());
        b.extend_from_slice(&[0, 2, b'c', b'a']);
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&[0, 5]);
        b.extend_from_slice(b"X.509");
        b.extend_from_slice(&(cert.len() as u32).to_be_bytes());
        b.extend_from_slice(cert);
        let mut h = Sha1::new();
        for u in password.encode_utf16() {
            h.update(u.to_be_bytes());
        }
        h.update(b"Mighty Aphrodite");
        h.update(&b);
        b.extend_from_slice(&h.finalize());
        b
    }

    #[test]
    fn integrity_and_bounds() {
        let s = store(JKS_MAGIC, b"\x30\x00", "changeit");
        assert_eq!(parse(&s, Some("changeit")).unwrap().certs, vec![b"\x30\x00".to_vec()]);
        assert_eq!(parse(&s, None).unwrap().certs.len(), 1);
        assert_eq!(parse(&s, Some("wrong")).unwrap_err(), JksError::WrongPassword);
        let s = store(JCEKS_MAGIC, b"\x30\x00", "");
        assert!(parse(&s, Some("")).is_ok());
        for cut in [4, 13, 20, s.len() - 21] {
            assert!(parse(&s[..cut], None).is_err(), "{cut}");
        }
        let mut big = store(JKS_MAGIC, b"\x30\x00", "x");
        big[8..12].copy_from_slice(&u32::MAX.to_be_bytes()); // count
        assert!(parse(&big, None).is_err());
    }
}
