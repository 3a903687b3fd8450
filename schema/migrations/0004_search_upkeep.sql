-- A bulk write (an import) leaves full-text segments of its own, large
-- size on low levels of the index. Ordinary writes then fill those levels
-- with small segments, and the merge that follows rewrites the bulk data:
-- at 1,000,000 clients 74,000 pages, starting some 20,000 creates after
-- an import. So the node optimizes the index (one segment) inside a bulk
-- transaction once the records bulk writes indexed since the last
-- optimize reach a share of the index (`search::upkeep`). This row counts
-- them. An existing index counts as optimized at its present size, so an
-- upgrade costs nothing until imports grow it by that share.
-- BENCHMARKS.md, thirteenth round.
CREATE TABLE search_upkeep (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    -- Records in the index when it was last optimized.
    optimized_records INTEGER NOT NULL,
    -- Records that bulk transactions indexed since.
    bulk_records INTEGER NOT NULL
);
INSERT INTO search_upkeep (id, optimized_records, bulk_records)
    VALUES (1, (SELECT count(*) FROM search_index_docsize), 0);
