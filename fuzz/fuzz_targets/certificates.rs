#![no_main]
//! Certificate parsers: PEM bundles, DER, PKCS#12, kubeconfig, CRLs.
use homelab_monitor::monitors::certificates::{crl, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse::parse_pem(data);
    let _ = parse::cert_from_der(data, 0);
    let _ = parse::parse_kubeconfig(data);
    let _ = crl::parse_crls(data);
    if data.len() < 4096 {
        let _ = parse::parse_pkcs12(data, Some("fuzz"));
    }
});
