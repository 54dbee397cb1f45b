//! Any bytes given to the safetensors reader (one shard): never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use saguaro_engine::weights::safetensors::SafetensorsSource;
use saguaro_engine::weights::TensorSource;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = SafetensorsSource::new(&[("fuzz.safetensors".to_string(), data)]) else { return };
    for name in src.names() {
        if let Ok(Some(t)) = src.tensor(name) {
            let _ = t.to_f32();
        }
    }
});
