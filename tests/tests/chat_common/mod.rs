//! Shared by the chat tests: the chat fixture model (tests/fixtures/chat, made by
//! make_chat_fixtures.py) and its transformers references.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use saguaro_engine::session::{ChatModel, Clock, Hooks};
use saguaro_engine::Model;
use saguaro_host::loader::HfFolder;
use serde_json::Value;

pub fn chat_dir() -> PathBuf {
    saguaro_tests::fixtures_dir().join("chat")
}

pub fn model_dir() -> PathBuf {
    chat_dir().join("model")
}

pub fn read_json(name: &str) -> Value {
    let path = chat_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The chat fixture model (HF folder -> in-memory .cact), loaded once per test binary.
pub fn chat_model() -> Arc<ChatModel> {
    static MODEL: OnceLock<Arc<ChatModel>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let model = saguaro_host::loader::load_model_portable(&model_dir()).unwrap();
            ChatModel::new(Arc::new(model)).unwrap()
        })
        .clone()
}

/// The fixture model with config.json edited by `edit` (e.g. a smaller context).
pub fn chat_model_with(edit: impl FnOnce(&mut Value)) -> Arc<ChatModel> {
    let mut folder = HfFolder::open(&model_dir()).unwrap();
    edit(&mut folder.config);
    let source = folder.source().unwrap();
    let model = Model::from_source(&folder.config, &source, &folder.extras()).unwrap();
    ChatModel::new(Arc::new(model)).unwrap()
}

/// The fixture model with `generation_config` as its generation_config.json (none when null),
/// loaded the way a Hugging Face folder is (the config travels in the .cact manifest).
pub fn chat_model_with_generation_config(generation_config: &Value) -> Arc<ChatModel> {
    let mut folder = HfFolder::open(&model_dir()).unwrap();
    folder.generation_config = (!generation_config.is_null()).then(|| generation_config.clone());
    let source = folder.source().unwrap();
    let model = Model::from_source(&folder.config, &source, &folder.extras()).unwrap();
    ChatModel::new(Arc::new(model)).unwrap()
}

/// The references whose requests leave options to the model and the engine's rules, each with
/// the generation_config.json it was made with (reference.json `default_generations`).
pub fn default_generations() -> Vec<Value> {
    read_json("reference.json")["default_generations"].as_array().unwrap().clone()
}

/// A clock over `Instant` with a fixed wall-clock date (the fixtures' 2025-06-01T12:00:00Z).
pub struct TestClock(pub Instant);

impl Clock for TestClock {
    fn now_ms(&self) -> f64 {
        self.0.elapsed().as_secs_f64() * 1000.0
    }
    fn unix_seconds(&self) -> Option<i64> {
        Some(1_748_779_200)
    }
}

pub fn test_hooks() -> Hooks {
    Hooks { clock: Some(Arc::new(TestClock(Instant::now()))), ram_usage_mb: Some(Arc::new(|| 42.0)) }
}

/// The generation references of reference.json.
pub fn generations() -> Vec<Value> {
    read_json("reference.json")["generations"].as_array().unwrap().clone()
}

pub fn u32s(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}
