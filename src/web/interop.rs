//! Conversions between JavaScript values and the core's types, errors with codes, and the
//! worker's event loop.

use image::RgbaImage;
use js_sys::{Function, Promise};
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::data::EFFICIENTNET_LITE;
use crate::error::GraftError;

/// A JavaScript `Error` carrying the core error's stable `code` (see `pkg/graft.d.ts`).
pub fn js_error(error: GraftError) -> JsValue {
    let js = js_sys::Error::new(&error.to_string());
    let _ = js_sys::Reflect::set(&js, &"code".into(), &error.code().into());
    js.into()
}

pub fn to_js<T: Serialize>(value: &T) -> Result<JsValue, JsValue> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| js_error(GraftError::option("value", e.to_string())))
}

/// Splits concatenated RGBA `pixels` by `dims` (`[w0, h0, w1, h1, ...]`) into images.
pub fn rgba_images(pixels: &[u8], dims: &[u32]) -> Result<Vec<RgbaImage>, GraftError> {
    if !dims.len().is_multiple_of(2) {
        return Err(GraftError::option(
            "dims",
            "must hold a width and a height per image",
        ));
    }
    let mut images = Vec::with_capacity(dims.len() / 2);
    let mut offset = 0usize;
    for (i, size) in dims.chunks(2).enumerate() {
        let (width, height) = (size[0], size[1]);
        let len = width as usize * height as usize * 4;
        let bytes = pixels
            .get(offset..offset + len)
            .filter(|_| len > 0)
            .ok_or_else(|| {
                GraftError::option(
                    "pixels",
                    format!("image {i} ({width}x{height}) is incomplete"),
                )
            })?;
        offset += len;
        let rgba = RgbaImage::from_raw(width, height, bytes.to_vec())
            .ok_or_else(|| GraftError::option("pixels", format!("image {i} has a wrong size")))?;
        images.push(rgba);
    }
    if offset != pixels.len() {
        return Err(GraftError::option(
            "pixels",
            "more pixel data than the sizes describe",
        ));
    }
    Ok(images)
}

/// [`rgba_images`], preprocessed for the backbone.
pub fn prepare_images(pixels: &[u8], dims: &[u32]) -> Result<Vec<Vec<f32>>, GraftError> {
    Ok(rgba_images(pixels, dims)?
        .iter()
        .map(|rgba| EFFICIENTNET_LITE.prepare(rgba))
        .collect())
}

/// Resolves after a macrotask, so the worker can handle messages (a cancel) mid-training.
pub async fn yield_to_event_loop() {
    let promise = Promise::new(&mut |resolve, _reject| {
        let set_timeout = js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str("setTimeout"))
            .ok()
            .and_then(|f| f.dyn_into::<Function>().ok());
        match set_timeout {
            Some(set_timeout) => {
                let _ = set_timeout.call2(&JsValue::NULL, &resolve, &JsValue::from(0));
            }
            None => {
                let _ = resolve.call0(&JsValue::NULL);
            }
        }
    });
    let _ = JsFuture::from(promise).await;
}

/// Asks the worker for decoded images: `load(ids)` gets an array of example ids and resolves
/// to `{ pixels: Uint8Array, dims: Uint32Array }`.
pub async fn load_images(load: &Function, ids: &[&str]) -> Result<Vec<RgbaImage>, GraftError> {
    let failed = |reason: String| GraftError::BadImage {
        path: "fine-tuning".into(),
        reason,
    };
    let array = js_sys::Array::new();
    ids.iter().for_each(|id| {
        array.push(&JsValue::from_str(id));
    });
    let promise: Promise = load
        .call1(&JsValue::NULL, &array)
        .map_err(|e| failed(describe_js(&e)))?
        .dyn_into()
        .map_err(|_| failed("the image loader did not return a promise".into()))?;
    let value = JsFuture::from(promise)
        .await
        .map_err(|e| failed(describe_js(&e)))?;
    let field = |name: &str| js_sys::Reflect::get(&value, &JsValue::from_str(name));
    let pixels = field("pixels")
        .ok()
        .and_then(|v| v.dyn_into::<js_sys::Uint8Array>().ok())
        .ok_or_else(|| failed("the image loader gave no pixels".into()))?;
    let dims = field("dims")
        .ok()
        .and_then(|v| v.dyn_into::<js_sys::Uint32Array>().ok())
        .ok_or_else(|| failed("the image loader gave no dims".into()))?;
    rgba_images(&pixels.to_vec(), &dims.to_vec())
}

/// The message of a thrown JavaScript value.
fn describe_js(value: &JsValue) -> String {
    value
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| value.as_string())
        .unwrap_or_else(|| "unknown error".to_string())
}
