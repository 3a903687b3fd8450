-- Migration 4's counter of records that bulk transactions indexed never
-- reached its threshold in an import (whose transaction runs its
-- full-text writes in shares of 1,000 records), and could not count a
-- first sync or a peer's backlog. The node now reads the index's layout
-- (FTS5's structure record) at the end of each bulk write and optimizes
-- when the pages outside its largest segment reach half of it
-- (`search_upkeep`), so the counter goes. BENCHMARKS.md, fourteenth round.
DROP TABLE search_upkeep;
