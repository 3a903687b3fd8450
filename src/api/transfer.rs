//! `/api/v1/import/{collection}` and `/api/v1/export/{collection}`: records
//! in and out as CSV.

use axum::body::Body;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde::Serialize;

use super::body::{query_pairs, read_body, require_media_type};
use super::problem::ApiError;
use super::AppState;
use crate::access;
use crate::auth::Principal;
use crate::records::csv_io::{self, ColumnMap};

/// Records read per exported chunk.
const EXPORT_PAGE: usize = 5000;
pub const CSV_MEDIA_TYPE: &str = "text/csv";

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ImportResult {
    pub collection: String,
    /// Rows imported (or that would be, with dry_run).
    pub imported: u64,
    pub dry_run: bool,
}

pub async fn import(
    State(state): State<AppState>,
    principal: Principal,
    Path(collection): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ImportResult>, ApiError> {
    state.records.kind_exists(&collection)?;
    access::import(&principal, &collection)?;
    let mut map = Vec::new();
    let mut dry_run = false;
    for (name, value) in query_pairs(raw)? {
        match name.as_str() {
            "map" => map.push(value),
            "dry_run" => {
                dry_run = match value.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(ApiError::bad_request("dry_run is true or false")),
                }
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter `{other}`"
                )))
            }
        }
    }
    let map = ColumnMap::parse(&map)?;
    require_media_type(
        &headers,
        &[CSV_MEDIA_TYPE, "application/csv"],
        "send the file as text/csv (UTF-8, comma-separated, first row = column names)",
    )?;
    let body = read_body(
        body,
        "file",
        "the file is larger than this node accepts (max_import_bytes); split it",
    )?;
    let imported = state
        .records
        .import_csv(&collection, body, map, dry_run, &principal.author())
        .await?;
    Ok(Json(ImportResult {
        collection,
        imported,
        dry_run,
    }))
}

pub async fn export(
    State(state): State<AppState>,
    principal: Principal,
    Path(collection): Path<String>,
) -> Result<Response, ApiError> {
    access::read(&principal)?;
    let kind = state.records.kind_def(&collection)?;
    let header = csv_io::export_rows(&kind, &[], true)?;
    let records = state.records.clone();
    // The file streams page by page, so a million records never sit in
    // memory at once.
    let pages = futures_util::stream::unfold(Some(0i64), move |after| {
        let records = records.clone();
        let kind = kind.clone();
        async move {
            let after = after?;
            let chunk = match records
                .export_page(&kind.collection, after, EXPORT_PAGE)
                .await
            {
                Ok((page, _)) if page.is_empty() => return None,
                Ok((page, last)) => {
                    csv_io::export_rows(&kind, &page, false).map(|b| (b, Some(last)))
                }
                Err(e) => Err(e),
            };
            Some(match chunk {
                Ok((bytes, next)) => (Ok::<_, std::io::Error>(Bytes::from(bytes)), next),
                Err(e) => {
                    tracing::error!(error = %e, "export failed mid-way");
                    (Err(std::io::Error::other(e.to_string())), None)
                }
            })
        }
    });
    let head = futures_util::stream::once(async move { Ok(Bytes::from(header)) });
    let body = Body::from_stream(futures_util::StreamExt::chain(head, pages));
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{collection}.csv\""),
            ),
        ],
        body,
    )
        .into_response())
}
