-- FTS5 writes each commit's new terms as a segment and by default merges
-- segments inside the commit that adds one: every 64 leaf pages written,
-- 64 pages per level of the index. Under a stream of creates at
-- 1,000,000 clients that was 12 ms of the writer's commit every 90 ms,
-- and it set the create p99; with larger levels (`automerge` 16) the
-- crisis merge at 16 segments merged a whole level in one commit (4.5 s).
-- So FTS5 no longer merges by itself: the node merges a few pages for
-- every record it indexes, in the same transaction
-- (`search::merge_step`), from levels of 16 segments. The crisis merge
-- stays as a backstop, at 64 segments. BENCHMARKS.md, tenth round.
INSERT INTO search_index(search_index, rank) VALUES ('automerge', 0);
INSERT INTO search_index(search_index, rank) VALUES ('usermerge', 16);
INSERT INTO search_index(search_index, rank) VALUES ('crisismerge', 64);
