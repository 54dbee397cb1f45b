//! Any bytes given to the .cact reader: an error or a model, never a panic or an
//! out-of-bounds read; a model that opens must also run a forward pass without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use saguaro_engine::format::CactFile;
use saguaro_engine::storage::AlignedBytes;
use saguaro_engine::{LogitsMode, Model};

fuzz_target!(|data: &[u8]| {
    let Ok(file) = CactFile::parse(AlignedBytes::copy_from(data).into_blob()) else { return };
    let Ok(model) = Model::from_cact(&file) else { return };
    // Bound the work: tiny models only.
    if model.config.hidden_size * model.config.vocab_size > 1 << 20 {
        return;
    }
    let _ = model.forward(&mut model.new_state(), &[1, 2], LogitsMode::Last);
});
