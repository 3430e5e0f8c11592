//! Certificate test set-up shared by tests/certificates.rs,
//! tests/certificates_servers.rs and tests/revocation.rs: the monitor's
//! config block, and a CA run by the real `openssl ca`.

use std::path::Path;

use homelab_monitor::core::config::{parse, CertificateConfig};

use super::tools::openssl;

/// `custom_monitors.certificate_expiry` from its body (`yaml`, unindented).
pub fn config(yaml: &str) -> CertificateConfig {
    let indented: String = yaml.lines().map(|l| format!("    {l}\n")).collect();
    let text = format!("custom_monitors:\n  certificate_expiry:\n{indented}");
    parse(&text, Path::new("test.yaml"))
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
        .custom_monitors
        .certificate_expiry
        .unwrap()
}

/// The load error of a `certificate_expiry` body (`yaml`, unindented).
pub fn config_error(yaml: &str) -> String {
    let indented: String = yaml.lines().map(|l| format!("    {l}\n")).collect();
    let text = format!("custom_monitors:\n  certificate_expiry:\n{indented}");
    match parse(&text, Path::new("cfg.yaml")) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

/// `openssl req` arguments for a new, unencrypted P-256 key.
pub const EC_P256: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
];

/// An `openssl ca` folder in `dir`: `ca.cnf` (CA `ca.pem`/`ca.key`, database
/// `index.txt`, serials from 1000, sha256, 90 days, any subject; sections
/// `v3_ca` for the CA and `crl_ext` for a CRL key id) with `ca_default`
/// appended to its `[ CA_default ]` section and `sections` at its end, and
/// the empty database.
pub fn ca_folder(dir: &Path, ca_default: &str, sections: &str) {
    std::fs::write(
        dir.join("ca.cnf"),
        format!(
            "[ ca ]\ndefault_ca = CA_default\n[ CA_default ]\ndir = .\ndatabase = index.txt\nnew_certs_dir = newcerts\ncertificate = ca.pem\nprivate_key = ca.key\nserial = serial\ncrlnumber = crlnumber\ndefault_md = sha256\ndefault_days = 90\npolicy = policy_any\nunique_subject = no\n{ca_default}[ policy_any ]\ncommonName = supplied\n[ v3_ca ]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\nsubjectKeyIdentifier = hash\n[ crl_ext ]\nauthorityKeyIdentifier = keyid\n{sections}"
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("newcerts")).unwrap();
    std::fs::write(dir.join("index.txt"), "").unwrap();
    std::fs::write(dir.join("serial"), "1000\n").unwrap();
    std::fs::write(dir.join("crlnumber"), "01\n").unwrap();
}

/// The CA's self-signed certificate (`v3_ca` of `cnf`): `key` and `pem`,
/// subject `CN=cn`, valid 365 days.
pub fn ca_cert(dir: &Path, cnf: &str, key: &str, pem: &str, cn: &str) {
    let subj = format!("/CN={cn}");
    let mut args = vec!["req", "-x509", "-config", cnf, "-extensions", "v3_ca"];
    args.extend(EC_P256);
    args.extend(["-keyout", key, "-out", pem, "-days", "365", "-subj", &subj]);
    openssl(dir, &args);
}

/// A certificate signed by the CA of `ca.cnf`: `name.key`, `name.pem`
/// (subject `CN=name.lan`), with the extensions section `ext` if given.
pub fn ca_signed(dir: &Path, name: &str, ext: Option<&str>) {
    let (key, csr, pem, subj) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
        format!("/CN={name}.lan"),
    );
    let mut args = vec!["req", "-new"];
    args.extend(EC_P256);
    args.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
    openssl(dir, &args);
    let mut args = vec!["ca", "-batch", "-config", "ca.cnf"];
    if let Some(ext) = ext {
        args.extend(["-extensions", ext]);
    }
    args.extend(["-notext", "-in", &csr, "-out", &pem]);
    openssl(dir, &args);
}

/// The CRL `pem` in DER as `der`.
pub fn crl_der(dir: &Path, pem: &str, der: &str) {
    openssl(dir, &["crl", "-in", pem, "-outform", "DER", "-out", der]);
}
