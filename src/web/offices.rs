//! Which office a change came from: node ids to the names people know
//! them by. Every node writes its own record in the replicated directory
//! of nodes (the `nodes` kind), so offices two hops away are named too;
//! this node's peers, by the names they were added here with, fill in
//! for nodes whose record has not arrived yet.

use std::collections::HashMap;

use crate::api::AppState;
use crate::records::{NODES, NODE_ID, NODE_NAME};
use crate::replication::ReplicationError;

/// Records read from the directory per page, and pages at most: a company
/// has tens of offices and laptops, not tens of thousands.
const PAGE: usize = 200;
const MAX_PAGES: usize = 50;

pub struct Offices(HashMap<String, String>);

impl Offices {
    pub async fn load(state: &AppState) -> Result<Offices, ReplicationError> {
        let identity = state.records.identity();
        let mut names = HashMap::new();
        for peer in state.replication.status().await? {
            if let Some(node) = peer.node_id {
                names.insert(node, peer.name);
            }
        }
        // A node's own name wins over what a peer was called here; the
        // newest record wins when a node wrote two (restored from an old
        // backup).
        let mut directory = HashMap::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut params = vec![
                ("sort".to_owned(), "updated_at".to_owned()),
                ("limit".to_owned(), PAGE.to_string()),
            ];
            params.extend(cursor.take().map(|c| ("cursor".to_owned(), c)));
            let page = match state.records.list(NODES, params).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the directory of nodes failed");
                    break;
                }
            };
            for record in page.records() {
                if let (Some(node), Some(name)) =
                    (record[NODE_ID].as_str(), record[NODE_NAME].as_str())
                {
                    directory.insert(node.to_owned(), name.to_owned());
                }
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        names.extend(directory);
        names.insert(identity.node_id.to_string(), identity.name.clone());
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
