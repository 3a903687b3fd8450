-- Full-text index over the searchable fields of every record kind.
-- One table for all kinds so that a single query ranks hits across kinds;
-- rowid is the document's local key (docs.rid), so a refresh replaces one row
-- without scanning. unicode61 folds case for Cyrillic and Latin alike.
CREATE VIRTUAL TABLE search_index USING fts5(
    title,
    body,
    kind UNINDEXED,
    doc_id UNINDEXED,
    tokenize = 'unicode61 remove_diacritics 2',
    prefix = '2 3'
);

-- The field list of every kind as the node last saw it, so that a start-up
-- with a schema that drops or retypes a field is refused instead of silently
-- hiding data, and a changed kind gets its projection rebuilt.
CREATE TABLE kind_fingerprints (
    kind TEXT PRIMARY KEY,
    fields TEXT NOT NULL,
    projection TEXT NOT NULL
);
