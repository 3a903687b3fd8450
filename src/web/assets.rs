//! The stylesheet and the script, compiled into the binary and served
//! under `/assets/`; a changed file gets a new URL (its content hash), so
//! browsers may cache them for good.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

const CSS: &str = include_str!("assets/app.css");
const JS: &str = include_str!("assets/app.js");

/// `app.<hash>.css` and `app.<hash>.js`: the URLs pages link to.
pub static CSS_URL: LazyLock<String> = LazyLock::new(|| url("css", CSS));
pub static JS_URL: LazyLock<String> = LazyLock::new(|| url("js", JS));

fn url(ext: &str, text: &str) -> String {
    let digest = crm_sync::tokens::digest(text);
    let hash: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("/assets/app.{hash}.{ext}")
}

pub async fn serve(Path(file): Path<String>) -> Response {
    let path = format!("/assets/{file}");
    let (body, content_type) = if path == *CSS_URL {
        (CSS, "text/css; charset=utf-8")
    } else if path == *JS_URL {
        (JS, "text/javascript; charset=utf-8")
    } else {
        return StatusCode::NOT_FOUND.into_response();
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        body,
    )
        .into_response()
}
