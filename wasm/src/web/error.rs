//! Engine errors as JS `Error`s with a `code`, and JS values to and from serde types.

use saguaro_engine::Error;
use serde::de::DeserializeOwned;
use serde::Serialize;
use wasm_bindgen::JsValue;

/// `new Error(message)` with `code` set to the engine error's code.
pub fn js_error(err: &Error) -> JsValue {
    with_code(&err.to_string(), err.code())
}

/// `new Error(message)` with `code`.
pub fn with_code(message: &str, code: &str) -> JsValue {
    let e = js_sys::Error::new(message);
    // Setting a property on a fresh Error object cannot fail.
    let _ = js_sys::Reflect::set(&e, &JsValue::from_str("code"), &JsValue::from_str(code));
    e.into()
}

/// Maps an engine result to a JS result.
pub fn js<T>(r: saguaro_engine::Result<T>) -> Result<T, JsValue> {
    r.map_err(|e| js_error(&e))
}

/// A serde value as a plain JS value (objects, arrays, numbers, `null` for `None`).
pub fn to_js<T: Serialize + ?Sized>(value: &T) -> Result<JsValue, JsValue> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| with_code(&format!("internal error: could not convert a result to JS: {e}"), "io"))
}

/// A plain JS value as a serde type; a mismatch is an `input` error naming `what`.
pub fn from_js<T: DeserializeOwned>(value: JsValue, what: &str) -> Result<T, JsValue> {
    serde_wasm_bindgen::from_value(value).map_err(|e| js_error(&Error::Input(format!("{what}: {e}"))))
}

/// A JS number used as a byte count or offset: a non-negative integer below 2^53.
pub fn js_u64(x: f64, what: &str) -> Result<u64, JsValue> {
    if x.is_finite() && x >= 0.0 && x.fract() == 0.0 && x <= 9_007_199_254_740_991.0 {
        Ok(x as u64)
    } else {
        Err(js_error(&Error::Input(format!("{what} must be a non-negative integer, got {x}"))))
    }
}
