-- The replicated document store.

-- Node identity and other single values (node_id, epoch, name).
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- One row per document: the compacted Automerge document plus the changes
-- appended since (concatenated change chunks), so that a load is one row read
-- and a write appends a few hundred bytes instead of re-saving the document.
-- rid is the document's local key, stable for its life; projections use it.
CREATE TABLE docs (
    rid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    snapshot BLOB NOT NULL,
    tail BLOB NOT NULL DEFAULT x'',
    tail_changes INTEGER NOT NULL DEFAULT 0,
    heads BLOB NOT NULL
);
CREATE INDEX docs_kind ON docs(kind, rid);

-- The change feed: every change applied here, local or received, gets the
-- next seq in causal order. A peer reads it by range scan.
CREATE TABLE changes (
    seq INTEGER PRIMARY KEY,
    doc_id TEXT NOT NULL,
    hash BLOB NOT NULL,
    bytes BLOB NOT NULL,
    UNIQUE (doc_id, hash)
);
