//! `/healthz`: answers once the node is ready to serve.

use axum::extract::State;
use axum::Json;
use serde::Serialize;

use super::AppState;

#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    pub status: &'static str,
    pub node_id: String,
    pub epoch: u32,
    pub name: String,
    /// The full-text index is being optimized after a bulk write (an
    /// import, a first sync): writes may wait for its steps until it ends.
    pub optimizing_search_index: bool,
}

pub async fn health(State(state): State<AppState>) -> Json<Health> {
    let identity = state.records.identity();
    Json(Health {
        status: "ok",
        node_id: identity.node_id.to_string(),
        epoch: identity.epoch.0,
        name: identity.name.clone(),
        optimizing_search_index: crate::records::search_upkeep::optimizing(),
    })
}
