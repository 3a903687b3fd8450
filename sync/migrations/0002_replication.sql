-- Replication: what the feed needs to filter without loading documents,
-- changes held for missing dependencies, peers with their checkpoints, and
-- the tokens peers present to reach this node.

-- The kind lets a peer take only the kinds it knows; the actor (node id and
-- epoch of the writer) and the origin (node id and epoch of the peer that
-- sent it here; NULL when made here) let the feed skip what the requester
-- already has.
ALTER TABLE changes ADD COLUMN kind TEXT NOT NULL DEFAULT '';
ALTER TABLE changes ADD COLUMN actor BLOB;
ALTER TABLE changes ADD COLUMN origin BLOB;
UPDATE changes SET kind = (SELECT kind FROM docs WHERE docs.id = changes.doc_id);
-- Before replication every change was made here, by this node's actor.
UPDATE changes SET actor = (
    SELECT unhex(replace(n.value, '-', '')) || unhex(printf('%08x', CAST(e.value AS INTEGER)))
    FROM meta n, meta e WHERE n.key = 'node_id' AND e.key = 'epoch'
);

-- Received changes whose dependencies have not arrived yet. They are applied
-- (and leave this table) as soon as the dependencies are here.
CREATE TABLE held_changes (
    doc_id TEXT NOT NULL,
    hash BLOB NOT NULL,
    kind TEXT NOT NULL,
    bytes BLOB NOT NULL,
    origin BLOB,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (doc_id, hash)
) WITHOUT ROWID;

-- Nodes this node syncs with. pull_since is the last seq of their feed we
-- applied, -1 until a first sync has copied their documents; push_acked our
-- last seq they took. remote_actor is their node id
-- and epoch as last seen: when it changes, both checkpoints restart at zero.
-- snapshot_at / snapshot_after track a first sync by snapshot copy.
CREATE TABLE peers (
    name TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    token TEXT NOT NULL,
    remote_actor BLOB,
    remote_name TEXT,
    kinds TEXT NOT NULL DEFAULT '',
    pull_since INTEGER NOT NULL DEFAULT -1,
    push_acked INTEGER NOT NULL DEFAULT 0,
    remote_latest INTEGER NOT NULL DEFAULT 0,
    snapshot_at INTEGER,
    snapshot_after TEXT,
    last_success INTEGER,
    last_error TEXT,
    last_error_at INTEGER,
    created_at INTEGER NOT NULL
);

-- Secrets that grant a peer access to this node's /sync/v1, stored as
-- SHA-256 digests (the secrets are 256-bit random values).
CREATE TABLE access_tokens (
    name TEXT PRIMARY KEY,
    digest BLOB NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
