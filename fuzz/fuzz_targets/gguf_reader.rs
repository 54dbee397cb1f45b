//! Any bytes given to the GGUF reader: parse, build the config, read every tensor under
//! every name it serves, rebuild and load the tokenizer of its metadata; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use saguaro_engine::weights::TensorSource;
use saguaro_host::gguf::GgufFile;

fuzz_target!(|data: &[u8]| {
    let Ok(gguf) = GgufFile::parse(data) else { return };
    if let Ok(tok) = gguf.tokenizer() {
        if let Ok(t) = tok.load() {
            let _ = t.encode_special("Hello <|im_start|> wörld 🌵");
        }
    }
    if let Ok(config) = gguf.model_config() {
        if let Ok(config) = saguaro_engine::Lfm2Config::from_json(&config) {
            for spec in saguaro_engine::convert::required_tensors(&config).iter().take(64) {
                let _ = gguf.tensor(&spec.name);
            }
        }
    }
});
