#![no_main]
//! The drift report (plan JSON) parser.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = homelab_monitor::monitors::terraform::plan::parse_plan(data) {
        let msg = e.to_string();
        assert!(!msg.contains("FUZZSECRET"), "error quotes input: {msg}");
    }
});
