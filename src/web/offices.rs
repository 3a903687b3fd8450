//! Which office a change came from: node ids to the names people know
//! them by (this node's own name, and its peers' names as added here).

use std::collections::HashMap;

use crate::api::AppState;
use crate::replication::ReplicationError;

pub struct Offices(HashMap<String, String>);

impl Offices {
    pub async fn load(state: &AppState) -> Result<Offices, ReplicationError> {
        let identity = state.records.identity();
        let mut names = HashMap::from([(identity.node_id.to_string(), identity.name.clone())]);
        for peer in state.replication.status().await? {
            if let Some(node) = peer.node_id {
                names.insert(node, peer.name);
            }
        }
        Ok(Offices(names))
    }

    /// The node's name when known here, else the first characters of its
    /// id.
    pub fn name<'a>(&'a self, node: Option<&'a str>) -> &'a str {
        let node = node.unwrap_or_default();
        self.0
            .get(node)
            .map_or_else(|| node.get(..8).unwrap_or(node), String::as_str)
    }
}
