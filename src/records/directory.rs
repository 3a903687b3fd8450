//! The directory of nodes: every node keeps a record of itself (its id
//! and name) in the system kind `nodes`, written at start-up when missing
//! or when the name changed. The records replicate like any other (every
//! scope takes them whole), so every node can name every office whose
//! changes it shows, not only its direct peers.

use serde_json::{Map, Value as Json};

use super::{Author, RecordError, Records};

/// The system kind of the directory.
pub const NODES: &str = "nodes";
/// Its fields.
pub const NODE_ID: &str = "node_id";
pub const NODE_NAME: &str = "name";

impl Records {
    /// Makes this node's record in the directory of nodes hold its id and
    /// name: created when there is none, renamed when the name changed. A
    /// schema without the directory (replaced by a kinds folder without
    /// its fields) has nothing to write.
    pub async fn record_this_node(&self) -> Result<(), RecordError> {
        let Some(kind) = self
            .schema
            .shared_kind(NODES)
            .cloned()
            .filter(|k| k.system && k.field(NODE_ID).is_some() && k.field(NODE_NAME).is_some())
        else {
            return Ok(());
        };
        let identity = self.identity();
        let node_id = identity.node_id.to_string();
        let name = identity.name.clone();
        let params = vec![
            (NODE_ID.to_owned(), node_id.clone()),
            ("limit".to_owned(), "10".to_owned()),
        ];
        let mine = self.list(NODES, params).await?.records();
        let author = Author::system();
        if mine.is_empty() {
            let body = Map::from_iter([
                (NODE_ID.to_owned(), Json::from(node_id)),
                (NODE_NAME.to_owned(), Json::from(name.as_str())),
            ]);
            self.insert(kind.clone(), body, &author).await?;
            tracing::info!(%name, "this node is in the directory of nodes");
            return Ok(());
        }
        // A node restored from an old backup may have written a second
        // record elsewhere; each one gets the name.
        for record in mine.iter().filter(|r| r[NODE_NAME] != name.as_str()) {
            let id = record["id"].as_str().unwrap_or_default();
            let patch = Map::from_iter([(NODE_NAME.to_owned(), Json::from(name.as_str()))]);
            self.change(kind.clone(), id, patch, None, &author).await?;
            tracing::info!(%name, was = %record[NODE_NAME], "this node's name changed in the directory of nodes");
        }
        Ok(())
    }
}
