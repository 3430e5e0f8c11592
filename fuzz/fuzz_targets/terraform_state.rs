#![no_main]
//! The state parser (streaming JSON reader, digests, version sniffing): any
//! bytes give a summary or an error, never a panic; errors never quote input.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = homelab_monitor::monitors::terraform::state::parse_state(data) {
        let msg = e.to_string();
        assert!(!msg.contains("FUZZSECRET"), "error quotes input: {msg}");
    }
});
