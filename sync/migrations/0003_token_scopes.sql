-- A token may carry a scope: which documents the peer presenting it may
-- read and change. The store keeps it as the node wrote it (JSON); what it
-- means is the node's business (see `DocScope`). NULL: everything.
ALTER TABLE access_tokens ADD COLUMN scope TEXT;
