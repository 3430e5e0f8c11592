#![no_main]
//! The config loader: YAML in, typed config or one clear error out.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = homelab_monitor::core::config::parse(text, std::path::Path::new("fuzz.yaml"));
    }
});
