//! A new document's first change, encoded straight from the tree it puts at
//! the root. Building an Automerge document for it, then collecting the
//! change back out of the document's op set (Automerge keeps no copy), was
//! about a quarter of an import's CPU; the document itself was thrown away.
//!
//! The ops come out exactly as Automerge's own batch insertion
//! (`Transaction::init_root_from_hydrate` on an empty document) numbers
//! them: the root's keys in sorted order, then the containers breadth
//! first, text one character per op. The change is therefore byte for byte
//! the one a transaction would commit, hash included; the tests hold the
//! two paths to that.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU64;

use automerge::legacy::{ElementId, Key, ObjectId, Op, OpId, OpType, SortedVec};
use automerge::{hydrate, ActorId, Change, ExpandedChange, ObjType, ScalarValue};

use crate::writer::ChangeMeta;

/// The first change of a document by `actor` whose root holds `root`, plus
/// `kind` under the key `kind` (which wins over a `kind` in `root`).
pub(crate) fn encode(
    actor: &ActorId,
    meta: &ChangeMeta,
    kind: &str,
    root: &HashMap<String, hydrate::Value>,
) -> Change {
    let kind_value = hydrate::Value::from(kind);
    let mut keys: Vec<(&str, &hydrate::Value)> = root
        .iter()
        .filter(|(key, _)| key.as_str() != "kind")
        .map(|(key, value)| (key.as_str(), value))
        .chain([("kind", &kind_value)])
        .collect();
    keys.sort_unstable_by_key(|(a, _)| *a);

    let mut ops = Ops {
        actor,
        ops: Vec::with_capacity(keys.len() * 2),
    };
    let mut containers = VecDeque::new();
    for (key, value) in keys {
        let id = ops.put(ObjectId::Root, key, value);
        queue_container(&mut containers, id, value);
    }
    while let Some((obj, value)) = containers.pop_front() {
        match value {
            hydrate::Value::Map(map) => {
                let mut keys: Vec<_> = map.iter().collect();
                keys.sort_unstable_by_key(|(a, _)| *a);
                for (key, entry) in keys {
                    let id = ops.put(ObjectId::Id(obj.clone()), key, &entry.value);
                    queue_container(&mut containers, id, &entry.value);
                }
            }
            hydrate::Value::List(list) => {
                let mut after = ElementId::Head;
                for element in list.iter() {
                    let action = action_of(&element.value);
                    let id = ops.insert(&obj, after, action);
                    queue_container(&mut containers, id.clone(), &element.value);
                    after = ElementId::Id(id);
                }
            }
            hydrate::Value::Text(text) => {
                let mut after = ElementId::Head;
                for c in text.to_string().chars() {
                    let id = ops.insert(&obj, after, OpType::Put(ScalarValue::from(c)));
                    after = ElementId::Id(id);
                }
            }
            hydrate::Value::Scalar(_) => {}
        }
    }

    Change::from(ExpandedChange {
        operations: ops.ops,
        actor_id: actor.clone(),
        hash: None,
        seq: 1,
        start_op: NonZeroU64::MIN,
        time: meta.time_ms,
        message: Some(meta.author.clone()),
        deps: Vec::new(),
        extra_bytes: Vec::new(),
        author: None,
    })
}

/// The ops of one change, numbered from 1 as they are added.
struct Ops<'a> {
    actor: &'a ActorId,
    ops: Vec<Op>,
}

impl Ops<'_> {
    fn next_id(&self) -> OpId {
        OpId::new(self.ops.len() as u64 + 1, self.actor)
    }

    fn put(&mut self, obj: ObjectId, key: &str, value: &hydrate::Value) -> OpId {
        let id = self.next_id();
        self.ops.push(Op {
            action: action_of(value),
            obj,
            key: Key::Map(key.into()),
            pred: SortedVec::new(),
            insert: false,
        });
        id
    }

    fn insert(&mut self, obj: &OpId, after: ElementId, action: OpType) -> OpId {
        let id = self.next_id();
        self.ops.push(Op {
            action,
            obj: ObjectId::Id(obj.clone()),
            key: Key::Seq(after),
            pred: SortedVec::new(),
            insert: true,
        });
        id
    }
}

fn action_of(value: &hydrate::Value) -> OpType {
    match value {
        hydrate::Value::Scalar(s) => OpType::Put(s.clone()),
        hydrate::Value::Map(_) => OpType::Make(ObjType::Map),
        hydrate::Value::List(_) => OpType::Make(ObjType::List),
        hydrate::Value::Text(_) => OpType::Make(ObjType::Text),
    }
}

/// Containers get their contents after every op of their level, as in
/// Automerge's batch insertion.
fn queue_container<'v>(
    queue: &mut VecDeque<(OpId, &'v hydrate::Value)>,
    id: OpId,
    value: &'v hydrate::Value,
) {
    if !matches!(value, hydrate::Value::Scalar(_)) {
        queue.push_back((id, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;
    use automerge::{Automerge, ReadDoc, TextEncoding, ROOT};

    fn meta() -> ChangeMeta {
        ChangeMeta {
            author: "user-7".into(),
            time_ms: 1_764_000_000_123,
        }
    }

    /// The change Automerge's own batch insertion commits for the same root.
    fn committed_by_automerge(
        actor: &ActorId,
        kind: &str,
        root: &HashMap<String, hydrate::Value>,
    ) -> Change {
        let mut root = root.clone();
        root.insert("kind".to_owned(), kind.into());
        let mut doc = Automerge::new().with_actor(actor.clone());
        let mut tx = doc.transaction();
        tx.init_root_from_hydrate(&root.into())
            .expect("batch insertion");
        let (hash, _) = tx.commit_with(meta().options());
        hash.and_then(|h| doc.get_change_by_hash(&h))
            .expect("a change")
    }

    fn text(s: &str) -> hydrate::Value {
        hydrate::Value::text(TextEncoding::platform_default(), s)
    }

    fn set(members: &[&str]) -> hydrate::Value {
        hydrate::Value::Map(
            members
                .iter()
                .map(|m| (m.to_string(), ScalarValue::Boolean(true).into()))
                .collect::<HashMap<String, hydrate::Value>>()
                .into(),
        )
    }

    fn assert_same_change(root: HashMap<String, hydrate::Value>) {
        let actor = ActorId::random();
        let ours = encode(&actor, &meta(), "things", &root);
        let theirs = committed_by_automerge(&actor, "things", &root);
        assert_eq!(ours.raw_bytes(), theirs.raw_bytes());
        assert_eq!(ours.hash(), theirs.hash());
    }

    #[test]
    fn every_kind_of_value_encodes_as_automerge_commits_it() {
        let mut root = HashMap::new();
        root.insert("name".to_owned(), ScalarValue::Str("Ромашка".into()).into());
        root.insert("count".to_owned(), ScalarValue::Int(-42).into());
        root.insert("big".to_owned(), ScalarValue::Uint(u64::MAX).into());
        root.insert("ratio".to_owned(), ScalarValue::F64(0.25).into());
        root.insert("on".to_owned(), ScalarValue::Boolean(true).into());
        root.insert(
            "when".to_owned(),
            ScalarValue::Timestamp(1_700_000_000_000).into(),
        );
        root.insert(
            "blob".to_owned(),
            ScalarValue::Bytes(vec![0, 1, 255]).into(),
        );
        root.insert("nothing".to_owned(), ScalarValue::Null.into());
        root.insert("counter".to_owned(), ScalarValue::counter(5).into());
        root.insert("notes".to_owned(), text("Звонить после 10:00 🙂 e\u{301}"));
        root.insert("empty_notes".to_owned(), text(""));
        root.insert("tags".to_owned(), set(&["vip", "опт", "b2b"]));
        root.insert("no_tags".to_owned(), set(&[]));
        let mut nested: HashMap<String, hydrate::Value> = HashMap::new();
        nested.insert("street".to_owned(), text("Тверская, 1"));
        nested.insert("geo".to_owned(), set(&["msk"]));
        root.insert("address".to_owned(), hydrate::Value::Map(nested.into()));
        root.insert(
            "phones".to_owned(),
            hydrate::Value::List(
                vec![
                    hydrate::Value::from("+7 495 000-00-00"),
                    text("доб. 12"),
                    set(&["work"]),
                    hydrate::Value::List(vec![hydrate::Value::from(1i64)].into()),
                ]
                .into(),
            ),
        );
        assert_same_change(root);
    }

    #[test]
    fn an_empty_root_and_a_root_naming_kind_encode_as_automerge_commits_them() {
        assert_same_change(HashMap::new());
        let mut root = HashMap::new();
        root.insert("kind".to_owned(), ScalarValue::Str("other".into()).into());
        root.insert("a".to_owned(), ScalarValue::Int(1).into());
        assert_same_change(root);
    }

    #[test]
    fn the_change_loads_into_the_document_it_describes() {
        let mut root = HashMap::new();
        root.insert("notes".to_owned(), text("two words"));
        root.insert("tags".to_owned(), set(&["x", "y"]));
        let change = encode(&ActorId::random(), &meta(), "things", &root);
        let doc = Automerge::load(change.raw_bytes()).expect("loads");
        let (_, notes) = doc.get(ROOT, "notes").ok().flatten().expect("notes");
        assert_eq!(doc.text(&notes).ok().as_deref(), Some("two words"));
        let (_, tags) = doc.get(ROOT, "tags").ok().flatten().expect("tags");
        assert_eq!(doc.keys(&tags).collect::<Vec<_>>(), ["x", "y"]);
        assert_eq!(doc.get_heads(), [change.hash()]);
    }
}
