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
//!
//! [`decode`] goes the other way for a first sync: a received document of
//! one change that is exactly such a change gives back its root, and the
//! record is rendered from there instead of loading the document
//! (`Automerge::load` was three fifths of a first sync's preparing).

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU64;

use automerge::legacy::{ElementId, Key, ObjectId, Op, OpId, OpType, SortedVec};
use automerge::{hydrate, ActorId, Change, ExpandedChange, ObjType, ScalarValue, TextEncoding};

use crate::writer::ChangeMeta;

/// The first change of a document by `actor` whose root holds `root`, plus
/// `kind` under the key `kind` (which wins over a `kind` in `root`).
pub(crate) fn encode(
    actor: &ActorId,
    meta: &ChangeMeta,
    kind: &str,
    root: &HashMap<String, hydrate::Value>,
) -> Change {
    Change::from(expand(actor, meta, kind, root))
}

/// [`encode`]'s change before it is encoded.
fn expand(
    actor: &ActorId,
    meta: &ChangeMeta,
    kind: &str,
    root: &HashMap<String, hydrate::Value>,
) -> ExpandedChange {
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

    ExpandedChange {
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
    }
}

/// What a document's first change put, read back by [`decode`].
pub(crate) struct DecodedRoot {
    /// The root's `kind`.
    pub kind: String,
    /// The whole root, `kind` included.
    pub root: HashMap<String, hydrate::Value>,
    pub meta: ChangeMeta,
}

/// Containers nested deeper than this are left to `Automerge::load`:
/// records nest one level (sets, texts), and the conversion below must not
/// be led into a deep recursion (dropping a deep `hydrate::Value` recurses).
const MAX_DEPTH: usize = 8;

/// The root that `change` puts, when `change` is exactly the one [`encode`]
/// makes of that root for its actor, author and time: the first change of
/// a document created or imported by any node of this version. `None` for
/// any other change (a document built by separate puts, one with more than
/// one change), which the caller loads as a document instead.
///
/// The root is rebuilt from the ops loosely, then encoded again and the two
/// op lists compared, so a root is only answered when it is the document's
/// whole state: whatever the rebuilding overlooks fails the comparison.
pub(crate) fn decode(change: &Change) -> Option<DecodedRoot> {
    if change.seq() != 1 || !change.deps().is_empty() || change.start_op() != NonZeroU64::MIN {
        return None;
    }
    let expanded = change.decode();
    // `ExpandedChange`'s equality ignores the author footer.
    if expanded.author.is_some() || !expanded.extra_bytes.is_empty() {
        return None;
    }
    let root = rebuild_root(&expanded.operations)?;
    let kind = match root.get("kind")? {
        hydrate::Value::Scalar(ScalarValue::Str(kind)) => kind.to_string(),
        _ => return None,
    };
    let meta = ChangeMeta {
        author: expanded.message.clone()?,
        time_ms: expanded.time,
    };
    (expand(&expanded.actor_id, &meta, &kind, &root) == expanded).then_some(DecodedRoot {
        kind,
        root,
        meta,
    })
}

/// A value being rebuilt: a scalar, or the index of a container.
enum Slot {
    Scalar(ScalarValue),
    Container(usize),
}

enum Building {
    Map(Vec<(String, Slot)>),
    List(Vec<Slot>),
    Text(String),
}

/// The root the ops of a first change build, read in op order: puts into
/// maps, inserts appended to lists and texts. Ops that [`encode`] never
/// makes answer `None`.
fn rebuild_root(ops: &[Op]) -> Option<HashMap<String, hydrate::Value>> {
    let mut root: Vec<(String, Slot)> = Vec::new();
    // Containers in the order they were made, with their depth; the op
    // counter (from 1) of each one's making.
    let mut containers: Vec<(Building, usize)> = Vec::new();
    let mut made_by: HashMap<u64, usize> = HashMap::new();
    for (counter, op) in (1u64..).zip(ops) {
        if !op.pred.is_empty() {
            return None;
        }
        let (parent, depth) = match &op.obj {
            ObjectId::Root => (None, 1),
            ObjectId::Id(obj) => {
                let index = *made_by.get(&obj.counter())?;
                (Some(index), containers[index].1 + 1)
            }
        };
        let slot = match &op.action {
            OpType::Put(scalar) => Slot::Scalar(scalar.clone()),
            OpType::Make(obj_type) => {
                let building = match obj_type {
                    ObjType::Map => Building::Map(Vec::new()),
                    ObjType::List => Building::List(Vec::new()),
                    ObjType::Text => Building::Text(String::new()),
                    ObjType::Table => return None,
                };
                if depth > MAX_DEPTH {
                    return None;
                }
                made_by.insert(counter, containers.len());
                containers.push((building, depth));
                Slot::Container(containers.len() - 1)
            }
            _ => return None,
        };
        let into = match parent {
            None => {
                let Key::Map(key) = &op.key else {
                    return None;
                };
                root.push((key.to_string(), slot));
                continue;
            }
            Some(index) => &mut containers[index].0,
        };
        match (into, &op.key, op.insert) {
            (Building::Map(entries), Key::Map(key), false) => entries.push((key.to_string(), slot)),
            (Building::List(items), Key::Seq(_), true) => items.push(slot),
            (Building::Text(text), Key::Seq(_), true) => match slot {
                Slot::Scalar(ScalarValue::Str(piece)) => text.push_str(&piece),
                _ => return None,
            },
            _ => return None,
        }
    }
    // A container's contents are made after it, so converting from the
    // last one made to the first finds every child already converted.
    let mut done: Vec<Option<hydrate::Value>> = Vec::new();
    done.resize_with(containers.len(), || None);
    for (index, (building, _)) in containers.into_iter().enumerate().rev() {
        let value = match building {
            Building::Map(entries) => hydrate::Value::Map(map_of(entries, &mut done)?.into()),
            Building::List(items) => {
                let mut values = Vec::with_capacity(items.len());
                for slot in items {
                    values.push(take(slot, &mut done)?);
                }
                hydrate::Value::List(values.into())
            }
            Building::Text(text) => hydrate::Value::text(TextEncoding::platform_default(), &text),
        };
        done[index] = Some(value);
    }
    map_of(root, &mut done)
}

/// A slot's value; a container's is taken from `done`, where it was put
/// once converted.
fn take(slot: Slot, done: &mut [Option<hydrate::Value>]) -> Option<hydrate::Value> {
    match slot {
        Slot::Scalar(scalar) => Some(hydrate::Value::Scalar(scalar)),
        Slot::Container(index) => done.get_mut(index)?.take(),
    }
}

/// A map's entries (the root's or a nested map's) as a map of values.
fn map_of(
    entries: Vec<(String, Slot)>,
    done: &mut [Option<hydrate::Value>],
) -> Option<HashMap<String, hydrate::Value>> {
    let mut map = HashMap::with_capacity(entries.len());
    for (key, slot) in entries {
        map.insert(key, take(slot, done)?);
    }
    Some(map)
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

    /// A root with a value of every type, nested containers included.
    fn every_kind_of_value() -> HashMap<String, hydrate::Value> {
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
        root
    }

    #[test]
    fn every_kind_of_value_encodes_as_automerge_commits_it() {
        assert_same_change(every_kind_of_value());
    }

    #[test]
    fn decode_reads_back_the_root_and_meta_that_encode_wrote() {
        for root in [every_kind_of_value(), HashMap::new()] {
            let change = encode(&ActorId::random(), &meta(), "things", &root);
            let decoded = decode(&change).expect("a change as encode makes it");
            assert_eq!(decoded.kind, "things");
            assert_eq!(decoded.meta.author, meta().author);
            assert_eq!(decoded.meta.time_ms, meta().time_ms);
            let mut expected = root.clone();
            expected.insert("kind".to_owned(), "things".into());
            assert_eq!(decoded.root, expected);
        }
    }

    /// The change `build` commits on a new document.
    fn committed(build: impl FnOnce(&mut automerge::transaction::Transaction<'_>)) -> Change {
        committed_on(&mut Automerge::new().with_actor(ActorId::random()), build)
    }

    fn committed_on(
        doc: &mut Automerge,
        build: impl FnOnce(&mut automerge::transaction::Transaction<'_>),
    ) -> Change {
        let mut tx = doc.transaction();
        build(&mut tx);
        let (hash, _) = tx.commit_with(meta().options());
        hash.and_then(|h| doc.get_change_by_hash(&h))
            .expect("a change")
    }

    #[test]
    fn decode_leaves_every_other_change_to_the_document_loader() {
        // The same values as separate puts, not in batch insertion's order.
        let puts = committed(|tx| {
            tx.put(ROOT, "kind", "things").expect("put");
            tx.put(ROOT, "a", 1).expect("put");
        });
        assert!(decode(&puts).is_none());
        // A value put twice: the second op overwrites the first.
        let twice = committed(|tx| {
            tx.put(ROOT, "a", 1).expect("put");
            tx.put(ROOT, "a", 2).expect("put");
            tx.put(ROOT, "kind", "things").expect("put");
        });
        assert!(decode(&twice).is_none());
        // A text with a character deleted.
        let edited_text = committed(|tx| {
            let notes = tx.put_object(ROOT, "a", ObjType::Text).expect("put text");
            tx.splice_text(&notes, 0, 0, "ab").expect("splice");
            tx.splice_text(&notes, 1, 1, "").expect("delete");
            tx.put(ROOT, "kind", "things").expect("put");
        });
        assert!(decode(&edited_text).is_none());
        // Batch insertion's ops, but no string `kind`.
        let mut root = HashMap::new();
        root.insert("kind".to_owned(), ScalarValue::Int(1).into());
        let unkinded = committed(|tx| {
            tx.init_root_from_hydrate(&root.into())
                .expect("batch insertion");
        });
        assert!(decode(&unkinded).is_none());
        // A document's second change.
        let mut doc = Automerge::new().with_actor(ActorId::random());
        let mut tx = doc.transaction();
        tx.init_root_from_hydrate(
            &HashMap::from([("kind", hydrate::Value::from("things"))]).into(),
        )
        .expect("batch insertion");
        tx.commit_with(meta().options());
        let second = committed_on(&mut doc, |tx| {
            tx.put(ROOT, "a", 1).expect("put");
        });
        assert!(decode(&second).is_none());
        // Nested deeper than records nest.
        let mut deep = hydrate::Value::from(1i64);
        for _ in 0..=MAX_DEPTH {
            deep = hydrate::Value::Map(HashMap::from([("x".to_owned(), deep)]).into());
        }
        let nested = encode(
            &ActorId::random(),
            &meta(),
            "things",
            &HashMap::from([("deep".to_owned(), deep)]),
        );
        assert!(decode(&nested).is_none());
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
