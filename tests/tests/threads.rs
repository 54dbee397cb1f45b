//! Output is bit-identical for every thread count (docs/design.md §Threads), for prefill and for
//! decode, with every storage scheme.

use std::sync::Arc;

use saguaro_engine::convert::{convert, Quant};
use saguaro_engine::format::CactFile;
use saguaro_engine::parallel::{Serial, Threads};
use saguaro_engine::storage::AlignedBytes;
use saguaro_engine::{LogitsMode, Model};
use saguaro_host::loader::HfFolder;
use saguaro_host::threads::{spin_pool, Pool};
use saguaro_tests::{fixture_path, Reference};

fn model(name: &str, quant: Quant) -> Model {
    let folder = HfFolder::open(&fixture_path(name)).unwrap();
    let bytes = convert(&folder.config, &folder.source().unwrap(), quant, &folder.extras(), Vec::new(), &mut |_, _, _| {}).unwrap();
    let mut m = Model::from_cact(&CactFile::parse(AlignedBytes::copy_from(&bytes).into_blob()).unwrap()).unwrap();
    m.set_kernels(saguaro_host::kernels::best());
    m
}

fn run(m: &Model, prompt: &[u32], extra: &[u32]) -> Vec<u32> {
    let mut state = m.new_state();
    let mut bits: Vec<u32> = m.forward(&mut state, prompt, LogitsMode::All).unwrap().iter().map(|v| v.to_bits()).collect();
    for &t in extra {
        bits.extend(m.forward(&mut state, &[t], LogitsMode::All).unwrap().iter().map(|v| v.to_bits()));
    }
    bits
}

#[test]
fn every_thread_count_gives_the_same_bits() {
    for name in ["conv-heavy", "realistic-hybrid"] {
        let r = Reference::load(name);
        for quant in [Quant::F32, Quant::Int8, Quant::Int4] {
            let mut m = model(name, quant);
            let want = run(&m, &r.prompt, &r.greedy[..4]);
            for n in [2usize, 3, 4, 7] {
                let pool: Arc<Pool> = Arc::new(Pool::new(n).unwrap());
                m.set_threads(Threads { prefill: pool.clone(), decode: pool.clone() });
                assert!(run(&m, &r.prompt, &r.greedy[..4]) == want, "{name} {quant:?} with {n} threads");
                // The decode pool the host uses (make_threads): spinning workers.
                m.set_threads(Threads { prefill: pool, decode: Arc::new(spin_pool(n).unwrap()) });
                assert!(run(&m, &r.prompt, &r.greedy[..4]) == want, "{name} {quant:?} with {n} decode threads (SpinPool)");
            }
            m.set_threads(Threads { prefill: Arc::new(Serial), decode: Arc::new(Serial) });
            assert!(run(&m, &r.prompt, &r.greedy[..4]) == want);
        }
    }
}
