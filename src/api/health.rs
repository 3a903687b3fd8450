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
}

pub async fn health(State(state): State<AppState>) -> Json<Health> {
    let identity = state.records.identity();
    Json(Health {
        status: "ok",
        node_id: identity.node_id.to_string(),
        epoch: identity.epoch.0,
        name: identity.name.clone(),
    })
}
