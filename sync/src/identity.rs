//! The node's identity: made on first start, reused afterwards.

use rusqlite::{params, Connection, OptionalExtension};
use uuid::Uuid;

use crate::ids::{actor_for, Epoch, NodeId};
use crate::StoreError;

/// Who this node is: its permanent id, its current epoch and its human name.
#[derive(Debug, Clone)]
pub struct NodeIdentity {
    pub node_id: NodeId,
    pub epoch: Epoch,
    pub name: String,
}

impl NodeIdentity {
    /// The Automerge actor this node writes with.
    pub fn actor(&self) -> automerge::ActorId {
        actor_for(self.node_id, self.epoch)
    }
}

fn get(conn: &Connection, key: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
            r.get(0)
        })
        .optional()?)
}

fn put(conn: &Connection, key: &str, value: &str) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

pub(crate) fn load_or_create(
    conn: &Connection,
    name: Option<&str>,
) -> Result<NodeIdentity, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt {
        id: "meta".into(),
        message: format!("stored {what} does not parse"),
    };
    let node_id = match get(conn, "node_id")? {
        Some(s) => NodeId(Uuid::try_parse(&s).map_err(|_| corrupt("node_id"))?),
        None => {
            let id = NodeId(Uuid::new_v4());
            put(conn, "node_id", &id.to_string())?;
            put(conn, "epoch", "1")?;
            tracing::info!(node_id = %id, "created node identity");
            id
        }
    };
    let epoch = match get(conn, "epoch")? {
        Some(s) => Epoch(s.parse().map_err(|_| corrupt("epoch"))?),
        None => Epoch(1),
    };
    let name = match name {
        Some(name) => {
            put(conn, "name", name)?;
            name.to_owned()
        }
        None => get(conn, "name")?.unwrap_or_else(|| "crm-node".to_owned()),
    };
    Ok(NodeIdentity {
        node_id,
        epoch,
        name,
    })
}

/// Gives the node a new epoch: after its database was restored from a
/// backup, changes it makes must not reuse an actor (node id + epoch) whose
/// later changes already exist at other nodes. Returns the new epoch.
pub fn bump_epoch(conn: &Connection) -> Result<Epoch, StoreError> {
    let current: u32 = get(conn, "epoch")?
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let next = Epoch(current + 1);
    put(conn, "epoch", &next.0.to_string())?;
    Ok(next)
}
