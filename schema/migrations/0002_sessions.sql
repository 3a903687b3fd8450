-- Login sessions of this node's API users. Node-local, never replicated:
-- a session is a login at this office. Only the SHA-256 digest of the
-- 256-bit session token is stored, so the table reveals no usable token.
-- `purpose` tells a user's login ('login') from the session the running
-- node opens for its own command-line tools ('node'), which is dropped at
-- every start and clean stop.
CREATE TABLE sessions (
    digest     BLOB PRIMARY KEY,
    user_id    TEXT NOT NULL,
    purpose    TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expiry ON sessions (expires_at);
