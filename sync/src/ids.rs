//! Identifiers: documents, nodes, epochs, and the Automerge actor made of them.

use std::fmt;
use std::str::FromStr;

use automerge::ActorId;
use uuid::Uuid;

/// A document (record) id: a UUIDv7 made on the node that created it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocId(Uuid);

impl DocId {
    pub fn new() -> DocId {
        DocId(Uuid::now_v7())
    }

    pub fn from_uuid(uuid: Uuid) -> DocId {
        DocId(uuid)
    }

    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl Default for DocId {
    fn default() -> Self {
        DocId::new()
    }
}

impl fmt::Display for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// A string that is not a document id in canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a record id (expected a lower-case hyphenated UUID)")]
pub struct InvalidDocId;

impl FromStr for DocId {
    type Err = InvalidDocId;

    /// Accepts only the canonical hyphenated form, so that one document has
    /// one spelling in URLs, references and the database.
    fn from_str(s: &str) -> Result<DocId, InvalidDocId> {
        let uuid = Uuid::try_parse(s).map_err(|_| InvalidDocId)?;
        if uuid.hyphenated().to_string() != s {
            return Err(InvalidDocId);
        }
        Ok(DocId(uuid))
    }
}

/// A node's permanent id, made on its first start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeId(pub Uuid);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// Incremented when a node's data is restored from a backup, so that the
/// restored copy never writes with an actor that exists elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Epoch(pub u32);

/// The Automerge actor of a node in an epoch: 16 bytes of node id, then the
/// epoch big-endian.
pub fn actor_for(node: NodeId, epoch: Epoch) -> ActorId {
    let mut bytes = node.0.as_bytes().to_vec();
    bytes.extend_from_slice(&epoch.0.to_be_bytes());
    ActorId::from(bytes)
}

/// The node that wrote with `actor`, when the actor is one of ours.
pub fn node_of_actor(actor: &ActorId) -> Option<NodeId> {
    let bytes = actor.to_bytes();
    let id: [u8; 16] = bytes.get(..16)?.try_into().ok()?;
    Some(NodeId(Uuid::from_bytes(id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doc_ids_parse_only_canonically() {
        let id = DocId::new();
        assert_eq!(id.to_string().parse::<DocId>().ok(), Some(id));
        assert!(id.to_string().to_uppercase().parse::<DocId>().is_err());
        assert!("not-an-id".parse::<DocId>().is_err());
        assert!(id.to_string().replace('-', "").parse::<DocId>().is_err());
    }

    #[test]
    fn actor_round_trips_node() {
        let node = NodeId(Uuid::new_v4());
        let actor = actor_for(node, Epoch(3));
        assert_eq!(node_of_actor(&actor), Some(node));
        assert_ne!(actor, actor_for(node, Epoch(4)));
    }
}
