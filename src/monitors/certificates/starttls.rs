//! STARTTLS dialogues: the plain-text exchange that turns a connection into
//! one that expects the TLS ClientHello next. Each follows its protocol's
//! specification:
//!
//! - SMTP (RFC 3207), IMAP (RFC 9051 §6.2.1), POP3 (RFC 2595 §4), FTP (RFC 4217
//!   `AUTH TLS`): the server greets first, the client asks, the server agrees
//!   with a reply code.
//! - MySQL/MariaDB (client/server protocol, `Protocol::HandshakeV10` and
//!   `Protocol::SSLRequest`): the server's greeting packet advertises
//!   `CLIENT_SSL`; the client answers with a 32-byte SSL request packet.
//! - PostgreSQL (protocol §"SSL Session Encryption"): the client sends the
//!   8-byte `SSLRequest`; the server answers one byte, `S` or `N`.
//! - LDAP (RFC 4511 §4.14.1, RFC 4513 §3): an ExtendedRequest with the
//!   StartTLS OID `1.3.6.1.4.1.1466.20037`; the ExtendedResponse's resultCode
//!   must be success (0).
//! - XMPP (RFC 6120 §5.4): a client stream header for the domain
//!   (`server_name`), `<starttls/>` among the stream features, `<starttls/>`,
//!   then `<proceed/>`.
//!
//! Nothing the server sends is quoted in errors (numeric codes only).

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::config::StartTls;
use super::endpoint::EndpointError;

impl StartTls {
    /// Whether the server sends a greeting before the client says anything.
    pub fn server_speaks_first(self) -> bool {
        match self {
            StartTls::Smtp | StartTls::Imap | StartTls::Pop3 | StartTls::Ftp | StartTls::Mysql => {
                true
            }
            StartTls::Postgres | StartTls::Ldap | StartTls::Xmpp => false,
        }
    }

    /// (the protocol's implicit-TLS port if it has one, the port that offers STARTTLS).
    fn ports(self) -> (Option<&'static str>, &'static str) {
        match self {
            StartTls::Smtp => (Some("465"), "587 or 25"),
            StartTls::Imap => (Some("993"), "143"),
            StartTls::Pop3 => (Some("995"), "110"),
            StartTls::Ftp => (Some("990"), "21"),
            StartTls::Ldap => (Some("636"), "389"),
            StartTls::Xmpp => (Some("5223"), "5222"),
            StartTls::Mysql => (None, "3306"),
            StartTls::Postgres => (None, "5432"),
        }
    }

    /// The STARTTLS error for a port that answers with TLS straight away.
    pub fn direct_tls_message(self) -> String {
        let p = self.as_str();
        let (implicit, plain) = self.ports();
        let implicit = match implicit {
            Some(port) => format!(" (implicit TLS, as on {port})"),
            None => String::new(),
        };
        format!(
            "the server did not answer as {p}: the port speaks TLS directly{implicit}; remove `starttls: {p}`, or use the port that offers STARTTLS ({plain})"
        )
    }
}

/// The error text when the server closes the connection during the dialogue.
pub const CLOSED: &str = "server closed the connection";

const LINE_MAX: u64 = 2048;
const LINES_MAX: usize = 64;
/// Largest MySQL greeting, LDAP response or XMPP preamble read.
const MESSAGE_MAX: usize = 64 * 1024;

type Reader<'a> = BufReader<&'a mut TcpStream>;

async fn read_line(r: &mut Reader<'_>) -> Result<String, String> {
    let mut buf = Vec::new();
    let n = r
        .take(LINE_MAX)
        .read_until(b'\n', &mut buf)
        .await
        .map_err(|e| format!("read failed ({})", e.kind()))?;
    if n == 0 {
        return Err(CLOSED.into());
    }
    if buf.last() != Some(&b'\n') {
        return Err("reply line too long".into());
    }
    Ok(String::from_utf8_lossy(&buf).trim_end().to_string())
}

fn reply_code(line: &str) -> Option<u16> {
    line.get(..3)
        .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|c| c.parse().ok())
}

/// SMTP reply: (code, lines). Multi-line replies use `NNN-`, the last `NNN `.
async fn smtp_reply(r: &mut Reader<'_>) -> Result<(u16, Vec<String>), String> {
    let mut lines = Vec::new();
    for _ in 0..LINES_MAX {
        let line = read_line(r).await?;
        let code = reply_code(&line).ok_or_else(|| "reply is not SMTP".to_string())?;
        let last = line.as_bytes().get(3) != Some(&b'-');
        lines.push(line.get(4..).unwrap_or("").to_string());
        if last {
            return Ok((code, lines));
        }
    }
    Err("reply has too many lines".into())
}

/// FTP reply code (RFC 959 §4.2): a multi-line reply starts `NNN-` and ends
/// with a line starting `NNN `; the lines between may be any text.
async fn ftp_reply(r: &mut Reader<'_>) -> Result<u16, String> {
    let first = read_line(r).await?;
    let code = reply_code(&first).ok_or_else(|| "reply is not FTP".to_string())?;
    if first.as_bytes().get(3) != Some(&b'-') {
        return Ok(code);
    }
    let end = format!("{code:03} ");
    for _ in 0..LINES_MAX {
        let line = read_line(r).await?;
        if line.starts_with(&end) || line == end.trim_end() {
            return Ok(code);
        }
    }
    Err("reply has too many lines".into())
}

async fn write(r: &mut Reader<'_>, bytes: &[u8]) -> Result<(), String> {
    r.get_mut()
        .write_all(bytes)
        .await
        .map_err(|e| format!("write failed ({})", e.kind()))
}

/// The first byte the server sends, without consuming it.
async fn peek_byte(r: &mut Reader<'_>) -> Result<u8, String> {
    let buf = r
        .fill_buf()
        .await
        .map_err(|e| format!("read failed ({})", e.kind()))?;
    buf.first()
        .copied()
        .ok_or_else(|| CLOSED.to_string())
}

/// A TLS record starts with content type 21 (alert) or 22 (handshake): the
/// answer of a TLS server to bytes that are not a ClientHello.
fn is_tls_record(b: u8) -> bool {
    b == 0x15 || b == 0x16
}

/// Run the `proto` dialogue on `stream`; afterwards the server expects the ClientHello.
pub async fn upgrade(
    stream: &mut TcpStream,
    proto: StartTls,
    endpoint: &str,
    server_name: &str,
) -> Result<(), EndpointError> {
    let err = |what: String| EndpointError::StartTls {
        endpoint: endpoint.to_string(),
        protocol: proto.as_str(),
        what,
    };
    let mut r = BufReader::new(stream);
    let result = match proto {
        StartTls::Smtp => smtp(&mut r).await,
        StartTls::Imap => imap(&mut r).await,
        StartTls::Pop3 => pop3(&mut r).await,
        StartTls::Ftp => ftp(&mut r).await,
        StartTls::Mysql => mysql(&mut r).await,
        StartTls::Postgres => postgres(&mut r).await,
        StartTls::Ldap => ldap(&mut r).await,
        StartTls::Xmpp => xmpp(&mut r, server_name).await,
    };
    match result {
        Ok(()) => {}
        Err(Failure::DirectTls) => return Err(err(proto.direct_tls_message())),
        Err(Failure::Other(what)) => return Err(err(what)),
    }
    if !r.buffer().is_empty() {
        // Bytes after the upgrade reply would be mixed into TLS (STARTTLS injection).
        return Err(err("server sent data before the TLS handshake".into()));
    }
    Ok(())
}

enum Failure {
    /// The server answered with a TLS record.
    DirectTls,
    Other(String),
}

impl From<String> for Failure {
    fn from(s: String) -> Self {
        Failure::Other(s)
    }
}

impl From<&str> for Failure {
    fn from(s: &str) -> Self {
        Failure::Other(s.to_string())
    }
}

async fn smtp(r: &mut Reader<'_>) -> Result<(), Failure> {
    let (code, _) = smtp_reply(r).await?;
    if code != 220 {
        return Err(format!("greeting code {code}, expected 220").into());
    }
    write(r, b"EHLO homelab-monitor\r\n").await?;
    let (code, caps) = smtp_reply(r).await?;
    if code != 250 {
        return Err(format!("EHLO answered {code}, expected 250").into());
    }
    if !caps.iter().any(|c| {
        c.eq_ignore_ascii_case("STARTTLS") || c.to_ascii_uppercase().starts_with("STARTTLS ")
    }) {
        return Err("server does not offer STARTTLS".into());
    }
    write(r, b"STARTTLS\r\n").await?;
    let (code, _) = smtp_reply(r).await?;
    if code != 220 {
        return Err(format!("STARTTLS answered {code}, expected 220").into());
    }
    Ok(())
}

async fn imap(r: &mut Reader<'_>) -> Result<(), Failure> {
    let greet = read_line(r).await?;
    if !greet.starts_with("* OK") {
        return Err("greeting is not \"* OK\"".into());
    }
    write(r, b"a1 STARTTLS\r\n").await?;
    for _ in 0..LINES_MAX {
        let line = read_line(r).await?;
        if let Some(rest) = line.strip_prefix("a1 ") {
            if rest.starts_with("OK") {
                return Ok(());
            }
            return Err("STARTTLS refused".into());
        }
    }
    Err("no tagged answer to STARTTLS".into())
}

async fn pop3(r: &mut Reader<'_>) -> Result<(), Failure> {
    let greet = read_line(r).await?;
    if !greet.starts_with("+OK") {
        return Err("greeting is not \"+OK\"".into());
    }
    write(r, b"STLS\r\n").await?;
    let line = read_line(r).await?;
    if !line.starts_with("+OK") {
        return Err("STLS refused".into());
    }
    Ok(())
}

async fn ftp(r: &mut Reader<'_>) -> Result<(), Failure> {
    let code = ftp_reply(r).await?;
    if code != 220 {
        return Err(format!("greeting code {code}, expected 220").into());
    }
    write(r, b"AUTH TLS\r\n").await?;
    match ftp_reply(r).await? {
        234 => Ok(()),
        c @ (500 | 502 | 504) => Err(format!(
            "AUTH TLS answered {c}: the server does not offer TLS (vsftpd: ssl_enable=YES; proftpd: TLSEngine on)"
        )
        .into()),
        c => Err(format!("AUTH TLS answered {c}, expected 234").into()),
    }
}

// MySQL capability flags (include/mysql_com.h names).
const CLIENT_LONG_PASSWORD: u32 = 0x0000_0001;
const CLIENT_PROTOCOL_41: u32 = 0x0000_0200;
const CLIENT_SSL: u32 = 0x0000_0800;
const CLIENT_SECURE_CONNECTION: u32 = 0x0000_8000;

/// One MySQL packet: 3-byte little-endian payload length, sequence id, payload.
async fn mysql_packet(r: &mut Reader<'_>) -> Result<(u8, Vec<u8>), String> {
    let mut head = [0u8; 4];
    r.read_exact(&mut head).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => CLOSED.to_string(),
        k => format!("read failed ({k})"),
    })?;
    let len = usize::from(head[0]) | usize::from(head[1]) << 8 | usize::from(head[2]) << 16;
    if len > MESSAGE_MAX {
        return Err("greeting packet too large: not MySQL".into());
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)
        .await
        .map_err(|_| "greeting packet truncated".to_string())?;
    Ok((head[3], payload))
}

/// The capability flags of a `HandshakeV10` greeting payload.
fn mysql_capabilities(p: &[u8]) -> Result<u32, String> {
    match p.first() {
        Some(10) => {}
        Some(0xff) => {
            let code = p.get(1..3).map(|c| u16::from_le_bytes([c[0], c[1]]));
            return Err(match code {
                Some(c) => format!("server refused the connection (MySQL error {c})"),
                None => "server refused the connection".into(),
            });
        }
        Some(v @ 1..=9) => {
            return Err(format!(
                "greeting is protocol version {v}, which has no TLS"
            ))
        }
        _ => return Err("greeting is not a MySQL handshake".into()),
    }
    // protocol version, server version (NUL-terminated), thread id (4),
    // auth-plugin-data part 1 (8), filler (1), capabilities low (2),
    // then optionally charset (1), status (2), capabilities high (2).
    let nul = p
        .iter()
        .skip(1)
        .position(|b| *b == 0)
        .ok_or("greeting is not a MySQL handshake")?;
    let at = 1 + nul + 1 + 4 + 8 + 1;
    let low = p
        .get(at..at + 2)
        .ok_or("greeting is truncated")?;
    let mut caps = u32::from(u16::from_le_bytes([low[0], low[1]]));
    if let Some(high) = p.get(at + 5..at + 7) {
        caps |= u32::from(u16::from_le_bytes([high[0], high[1]])) << 16;
    }
    Ok(caps)
}

async fn mysql(r: &mut Reader<'_>) -> Result<(), Failure> {
    let (seq, greeting) = mysql_packet(r).await?;
    if seq != 0 {
        return Err("greeting is not a MySQL handshake".into());
    }
    let caps = mysql_capabilities(&greeting)?;
    if caps & CLIENT_SSL == 0 {
        return Err(
            "server does not offer TLS (MySQL/MariaDB: set ssl_cert and ssl_key)".into(),
        );
    }
    let flags = CLIENT_LONG_PASSWORD | CLIENT_PROTOCOL_41 | CLIENT_SSL | CLIENT_SECURE_CONNECTION;
    let mut packet = Vec::with_capacity(36);
    packet.extend_from_slice(&[32, 0, 0, 1]);
    packet.extend_from_slice(&flags.to_le_bytes());
    packet.extend_from_slice(&(16u32 << 20).to_le_bytes()); // max packet size
    packet.push(45); // utf8mb4_general_ci
    packet.extend_from_slice(&[0u8; 23]);
    write(r, &packet).await?;
    Ok(())
}

/// `SSLRequest`: length 8, code 80877103.
const PG_SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

async fn postgres(r: &mut Reader<'_>) -> Result<(), Failure> {
    write(r, &PG_SSL_REQUEST).await?;
    let b = peek_byte(r).await?;
    if is_tls_record(b) {
        return Err(Failure::DirectTls);
    }
    r.consume(1);
    match b {
        b'S' => Ok(()),
        b'N' => Err("server does not accept TLS (PostgreSQL: ssl = on)".into()),
        b'E' => Err("server answered the SSLRequest with an error".into()),
        _ => Err("answer is not PostgreSQL".into()),
    }
}

/// The ExtendedRequest for StartTLS, message id 1 (RFC 4511 §4.12, BER).
fn ldap_starttls_request() -> Vec<u8> {
    const OID: &[u8] = b"1.3.6.1.4.1.1466.20037";
    let mut req = vec![0x80, OID.len() as u8]; // requestName [0]
    req.extend_from_slice(OID);
    let mut op = vec![0x77, req.len() as u8]; // [APPLICATION 23]
    op.extend_from_slice(&req);
    let mut body = vec![0x02, 0x01, 0x01]; // messageID 1
    body.extend_from_slice(&op);
    let mut msg = vec![0x30, body.len() as u8];
    msg.extend_from_slice(&body);
    msg
}

/// Read one BER element (definite length, as LDAP requires) from the stream.
async fn ber_element(r: &mut Reader<'_>) -> Result<(u8, Vec<u8>), String> {
    let closed = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => CLOSED.to_string(),
        k => format!("read failed ({k})"),
    };
    let mut head = [0u8; 2];
    r.read_exact(&mut head).await.map_err(closed)?;
    let len = if head[1] < 0x80 {
        usize::from(head[1])
    } else {
        let n = usize::from(head[1] & 0x7f);
        if n == 0 || n > 4 {
            return Err("answer is not LDAP (bad length)".into());
        }
        let mut l = [0u8; 4];
        r.read_exact(&mut l[..n]).await.map_err(closed)?;
        l[..n].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    if len > MESSAGE_MAX {
        return Err("answer is too large for a StartTLS response".into());
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await.map_err(closed)?;
    Ok((head[0], body))
}

/// Split one element from the front of `d`: (tag, contents, rest).
fn ber_split(d: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = d.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

fn ber_uint(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 8 {
        return None;
    }
    Some(b.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x)))
}

async fn ldap(r: &mut Reader<'_>) -> Result<(), Failure> {
    write(r, &ldap_starttls_request()).await?;
    if is_tls_record(peek_byte(r).await?) {
        return Err(Failure::DirectTls);
    }
    let (tag, msg) = ber_element(r).await?;
    if tag != 0x30 {
        return Err("answer is not LDAP".into());
    }
    let not_ldap = || Failure::from("answer is not an LDAP ExtendedResponse");
    let (t, id, rest) = ber_split(&msg).ok_or_else(not_ldap)?;
    if t != 0x02 {
        return Err(not_ldap());
    }
    let id = ber_uint(id).ok_or_else(not_ldap)?;
    let (t, op, _) = ber_split(rest).ok_or_else(not_ldap)?;
    if t != 0x78 {
        return Err(not_ldap());
    }
    let (t, code, _) = ber_split(op).ok_or_else(not_ldap)?;
    if t != 0x0a {
        return Err(not_ldap());
    }
    let code = ber_uint(code).ok_or_else(not_ldap)?;
    if id == 0 {
        // Unsolicited notification (RFC 4511 §4.4): the server is closing.
        return Err(format!("server sent a notice of disconnection (LDAP result code {code})").into());
    }
    if id != 1 {
        return Err("answer is for another LDAP message".into());
    }
    match code {
        0 => Ok(()),
        2 => Err("StartTLS refused (LDAP result code 2, protocolError): the server does not offer StartTLS (no TLS certificate configured? slapd: olcTLSCertificateFile)".into()),
        52 => Err("StartTLS refused (LDAP result code 52, unavailable): TLS is not available on the server".into()),
        c => Err(format!("StartTLS refused (LDAP result code {c})").into()),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Read more bytes into `acc` (bounded); Err when the server closed.
async fn read_more(r: &mut Reader<'_>, acc: &mut Vec<u8>) -> Result<(), String> {
    if acc.len() >= MESSAGE_MAX {
        return Err("answer is too large for a stream preamble".into());
    }
    let mut buf = [0u8; 4096];
    let n = r
        .read(&mut buf)
        .await
        .map_err(|e| format!("read failed ({})", e.kind()))?;
    if n == 0 {
        return Err(CLOSED.into());
    }
    acc.extend_from_slice(&buf[..n]);
    Ok(())
}

/// A defined stream error condition (RFC 6120 §4.9.3) named in `xml`, if any.
fn xmpp_stream_error(xml: &[u8]) -> Option<&'static str> {
    const CONDITIONS: &[&str] = &[
        "bad-format",
        "bad-namespace-prefix",
        "conflict",
        "connection-timeout",
        "host-gone",
        "host-unknown",
        "improper-addressing",
        "internal-server-error",
        "invalid-from",
        "invalid-namespace",
        "invalid-xml",
        "not-authorized",
        "not-well-formed",
        "policy-violation",
        "remote-connection-failed",
        "reset",
        "resource-constraint",
        "restricted-xml",
        "see-other-host",
        "system-shutdown",
        "undefined-condition",
        "unsupported-encoding",
        "unsupported-feature",
        "unsupported-stanza-type",
        "unsupported-version",
    ];
    let at = find(xml, b"stream:error")?;
    let tail = &xml[at..];
    CONDITIONS
        .iter()
        .find(|c| find(tail, format!("<{c}").as_bytes()).is_some())
        .copied()
        .or(Some("undefined-condition"))
}

const XMPP_TLS_NS: &[u8] = b"urn:ietf:params:xml:ns:xmpp-tls";

async fn xmpp(r: &mut Reader<'_>, domain: &str) -> Result<(), Failure> {
    // `domain` passed ServerName parsing (DNS name or IP): no quote or markup.
    let domain: String = domain
        .chars()
        .filter(|c| !matches!(c, '\'' | '"' | '<' | '>' | '&'))
        .collect();
    let header = format!(
        "<?xml version='1.0'?><stream:stream to='{domain}' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
    );
    write(r, header.as_bytes()).await?;
    if is_tls_record(peek_byte(r).await?) {
        return Err(Failure::DirectTls);
    }
    let mut acc = Vec::new();
    loop {
        read_more(r, &mut acc).await?;
        if acc.trim_ascii_start().first() != Some(&b'<') {
            return Err("answer is not XMPP".into());
        }
        if let Some(cond) = xmpp_stream_error(&acc) {
            if cond == "host-unknown" {
                return Err(format!(
                    "stream error host-unknown: the server does not serve the domain {domain} (set server_name to the XMPP domain)"
                )
                .into());
            }
            if find(&acc, b"</stream:error>").is_some() || find(&acc, b"</stream:stream>").is_some()
            {
                return Err(format!("stream error {cond}").into());
            }
            continue;
        }
        if find(&acc, b"</stream:features>").is_some() || find(&acc, b"<stream:features/>").is_some()
        {
            break;
        }
    }
    if find(&acc, XMPP_TLS_NS).is_none() {
        return Err("server does not offer STARTTLS (no <starttls/> among the stream features)".into());
    }
    write(r, b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>").await?;
    let mut acc = Vec::new();
    loop {
        read_more(r, &mut acc).await?;
        if find(&acc, b"<failure").is_some() {
            return Err("STARTTLS refused (<failure/>)".into());
        }
        let Some(at) = find(&acc, b"<proceed") else {
            if find(&acc, b"stream:error").is_some() {
                return Err("STARTTLS refused (stream error)".into());
            }
            continue;
        };
        let tail = &acc[at..];
        let Some(gt) = tail.iter().position(|b| *b == b'>') else {
            continue;
        };
        let end = if gt > 0 && tail[gt - 1] == b'/' {
            at + gt + 1
        } else if let Some(close) = find(tail, b"</proceed>") {
            at + close + b"</proceed>".len()
        } else {
            continue;
        };
        if end != acc.len() {
            return Err("server sent data before the TLS handshake".into());
        }
        return Ok(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldap_request_is_the_rfc_4511_encoding() {
        let mut want = vec![0x30, 0x1d, 0x02, 0x01, 0x01, 0x77, 0x18, 0x80, 0x16];
        want.extend_from_slice(b"1.3.6.1.4.1.1466.20037");
        assert_eq!(ldap_starttls_request(), want);
    }

    #[test]
    fn mysql_greeting_capabilities() {
        let mut g = vec![10];
        g.extend_from_slice(b"10.11.6-MariaDB\0");
        g.extend_from_slice(&[1, 0, 0, 0]); // thread id
        g.extend_from_slice(&[0x41; 8]); // auth data
        g.push(0); // filler
        g.extend_from_slice(&[0x00, 0x08]); // caps low: CLIENT_SSL
        g.extend_from_slice(&[45, 2, 0]); // charset, status
        g.extend_from_slice(&[0x01, 0x00]); // caps high
        assert_eq!(mysql_capabilities(&g), Ok(0x0001_0800));
        g[1 + 16 + 4 + 8 + 1 + 1] = 0; // CLIENT_SSL (0x0800) off
        assert_eq!(mysql_capabilities(&g).map(|c| c & CLIENT_SSL), Ok(0));
        assert!(mysql_capabilities(&[0xff, 0x13, 0x04, b'#'])
            .unwrap_err()
            .contains("1043"));
        assert!(mysql_capabilities(&[10, b'x']).is_err());
        assert!(mysql_capabilities(&[]).is_err());
        assert!(mysql_capabilities(b"HTTP/1.1 400").is_err());
    }

    #[test]
    fn ber_reader_is_bounded() {
        assert_eq!(ber_split(&[0x02, 0x01, 0x07, 0xaa]), Some((0x02, &[7u8][..], &[0xaa][..])));
        assert_eq!(ber_split(&[0x02, 0x05, 0x07]), None);
        assert_eq!(ber_split(&[0x02, 0x85, 0, 0, 0, 0, 1]), None);
        assert_eq!(ber_split(&[0x02]), None);
        assert_eq!(ber_uint(&[]), None);
        assert_eq!(ber_uint(&[0x34]), Some(52));
    }

    #[test]
    fn xmpp_stream_errors_are_named_not_quoted() {
        assert_eq!(
            xmpp_stream_error(b"<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text>secret</text></stream:error>"),
            Some("host-unknown")
        );
        assert_eq!(xmpp_stream_error(b"<stream:features/>"), None);
        assert_eq!(
            xmpp_stream_error(b"<stream:error><x-made-up/></stream:error>"),
            Some("undefined-condition")
        );
    }

    #[test]
    fn direct_tls_messages_name_the_ports() {
        let m = StartTls::Ldap.direct_tls_message();
        assert!(m.contains("636") && m.contains("389") && m.contains("speaks TLS directly"), "{m}");
        let m = StartTls::Postgres.direct_tls_message();
        assert!(!m.contains("implicit") && m.contains("5432"), "{m}");
    }
}
