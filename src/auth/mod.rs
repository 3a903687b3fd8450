//! Who is calling: users' logins, sessions and the first admin. Users are
//! records of the `users` kind (replicated like any record, with their
//! password hash inside); sessions are node-local rows keyed by the digest
//! of a 256-bit token. Every request's session is re-checked against the
//! user's record as it is now, so deactivating or deleting a user ends
//! their sessions at once. Knows nothing of HTTP.

mod known_sessions;
pub mod rate_limit;
pub mod sessions;

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crm_sync::{tokens, Store, StoreError};
use serde::Serialize;
use serde_json::Value as Json;

use crate::records::{password, Author, RecordError, Records, USERS};
use known_sessions::KnownSessions;
use rate_limit::RateLimiter;
use sessions::Purpose;

/// Session tokens start with this, so a peer token or a typo is told
/// apart without a lookup.
const TOKEN_PREFIX: &str = "crms_";
/// The login of the admin user a node creates when it has none.
pub const ADMIN_LOGIN: &str = "admin";
/// The field of a user record holding the password hash.
const PASSWORD_FIELD: &str = "password";
/// Users that may share one login (after replication, each office's first
/// admin is `admin`): login tries each of them.
const MAX_SAME_LOGIN: &str = "50";
/// How long the node's own session for its tools lasts: as long as a node
/// may run. It is removed at a clean stop and at the next start.
const NODE_SESSION_TTL: Duration = Duration::from_secs(366 * 24 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Manager,
    Viewer,
}

impl Role {
    fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "manager" => Some(Role::Manager),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
}

/// The user a request acts for, read from their record at this request.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Principal {
    /// The user's record id.
    pub id: String,
    pub login: String,
    pub display_name: Option<String>,
    pub role: Role,
    pub office: Option<String>,
}

impl Principal {
    /// The author of the changes this user makes.
    pub fn author(&self) -> Author {
        Author(self.id.clone())
    }

    /// The principal of an active user record; `None` for an inactive one
    /// or one without a known role.
    fn from_record(record: &Json) -> Option<Principal> {
        if record["active"] == Json::Bool(false) {
            return None;
        }
        let text = |key: &str| record[key].as_str().map(str::to_owned);
        Some(Principal {
            id: text("id")?,
            login: text("login")?,
            display_name: text("display_name"),
            role: Role::parse(record["role"].as_str()?)?,
            office: text("office"),
        })
    }
}

/// A new login's session.
#[derive(Debug)]
pub struct Session {
    pub token: String,
    pub expires_at_ms: i64,
    pub user: Principal,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("wrong login or password")]
    WrongCredentials,
    #[error("no valid session: log in with POST /api/v1/auth/login")]
    NoSession,
    #[error("too many failed logins; try again in {} s", .0.as_secs())]
    RateLimited(Duration),
    #[error("no secure random source: {0}")]
    Random(String),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<tokens::TokenError> for AuthError {
    fn from(e: tokens::TokenError) -> Self {
        match e {
            tokens::TokenError::Store(e) => AuthError::Store(e),
            other => AuthError::Random(other.to_string()),
        }
    }
}

/// The CSRF token that goes with a session: derived from the session token,
/// so it needs no storage and is worthless without the session.
pub fn csrf_token(session_token: &str) -> String {
    hex_digest(&format!("csrf:{session_token}"))
}

fn hex_digest(text: &str) -> String {
    tokens::digest(text)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The login service; cheap to clone.
#[derive(Clone)]
pub struct Auth {
    store: Store,
    records: Records,
    ttl: Duration,
    limiter: Arc<RateLimiter>,
    known: Arc<KnownSessions>,
}

impl Auth {
    pub fn new(store: Store, records: Records, ttl: Duration) -> Auth {
        Auth {
            store,
            records,
            ttl,
            limiter: Arc::new(RateLimiter::default()),
            known: Arc::new(KnownSessions::default()),
        }
    }

    /// Checks a login and password and opens a session. Every active user
    /// with this login is tried (offices each create their own `admin`).
    pub async fn login(
        &self,
        login: &str,
        password: &str,
        address: IpAddr,
    ) -> Result<Session, AuthError> {
        self.limiter
            .check(login, address, Instant::now())
            .map_err(AuthError::RateLimited)?;
        match self.matching_user(login, password).await? {
            Some(user) => {
                self.limiter.succeeded(login);
                let (token, expires_at_ms) = self
                    .open_session(&user.id, Purpose::Login, self.ttl)
                    .await?;
                Ok(Session {
                    token,
                    expires_at_ms,
                    user,
                })
            }
            None => {
                self.limiter.failed(login, address, Instant::now());
                Err(AuthError::WrongCredentials)
            }
        }
    }

    async fn matching_user(
        &self,
        login: &str,
        password: &str,
    ) -> Result<Option<Principal>, AuthError> {
        let login = login.trim();
        let candidates = if login.is_empty() {
            Vec::new()
        } else {
            self.active_users(&[("login", login), ("limit", MAX_SAME_LOGIN)])
                .await?
        };
        if candidates.is_empty() {
            // Verify anyway, so an unknown login takes as long as a wrong
            // password and does not reveal that it is unknown.
            let password = password.to_owned();
            let _ = tokio::task::spawn_blocking(move || {
                password::verify(&password, dummy_hash());
            })
            .await;
            return Ok(None);
        }
        for user in candidates {
            let Some(hash) = self.records.secret(USERS, &user.id, PASSWORD_FIELD).await? else {
                continue;
            };
            let attempt = password.to_owned();
            let matches = tokio::task::spawn_blocking(move || password::verify(&attempt, &hash))
                .await
                .map_err(|e| RecordError::Internal(e.to_string()))?;
            if matches {
                return Ok(Some(user));
            }
        }
        Ok(None)
    }

    /// Active users matching list filters, as principals.
    async fn active_users(&self, filters: &[(&str, &str)]) -> Result<Vec<Principal>, AuthError> {
        let mut params: Vec<(String, String)> = filters
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        params.push(("active".into(), "true".into()));
        params.push(("sort".into(), "created_at".into()));
        let page = self.records.list(USERS, params).await?;
        Ok(page
            .items
            .iter()
            .filter_map(|raw| serde_json::from_str::<Json>(raw.get()).ok())
            .filter_map(|record| Principal::from_record(&record))
            .collect())
    }

    async fn open_session(
        &self,
        user_id: &str,
        purpose: Purpose,
        ttl: Duration,
    ) -> Result<(String, i64), AuthError> {
        let token = tokens::new_secret(TOKEN_PREFIX)?;
        let now = crate::clock::now_ms();
        let expires_at = now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        let digest = tokens::digest(&token);
        let user_id = user_id.to_owned();
        // Through the writer: a session is durable once login answers.
        self.store
            .write(move |txn| {
                sessions::insert(txn.conn(), &digest, &user_id, purpose, now, expires_at)
                    .map_err(StoreError::from)
            })
            .await?;
        Ok((token, expires_at))
    }

    /// Ends the session of `token` (no error when there is none).
    pub async fn logout(&self, token: &str) -> Result<(), AuthError> {
        let digest = tokens::digest(token);
        self.known.forget(&digest);
        self.store
            .write(move |txn| sessions::delete(txn.conn(), &digest).map_err(StoreError::from))
            .await?;
        Ok(())
    }

    /// The user of a live session, as their record says now.
    pub async fn principal(&self, token: &str) -> Result<Principal, AuthError> {
        if !token.starts_with(TOKEN_PREFIX) {
            return Err(AuthError::NoSession);
        }
        let digest = tokens::digest(token);
        let now = crate::clock::now_ms();
        // Read before the checks below: a user record committed meanwhile
        // moves it, so what is remembered under this position is never
        // newer than the state it was checked against.
        let seq = self.store.kind_seq(USERS);
        if let Some(known) = self.known.get(&digest, seq, now) {
            return Ok(known);
        }
        let lookup = digest.clone();
        let (user_id, expires_at) = self
            .store
            .read(move |conn| sessions::user_of(conn, &lookup, now).map_err(StoreError::from))
            .await?
            .ok_or(AuthError::NoSession)?;
        let record = match self.records.get(USERS, &user_id).await {
            Ok(user) => user.record,
            Err(RecordError::NotFound { .. } | RecordError::Gone { .. }) => {
                return Err(AuthError::NoSession)
            }
            Err(e) => return Err(e.into()),
        };
        let principal = Principal::from_record(&record).ok_or(AuthError::NoSession)?;
        self.known
            .remember(digest, principal.clone(), expires_at, seq);
        Ok(principal)
    }

    /// Creates the `admin` user when the node has no active admin. Returns
    /// the password when it was generated (to be shown once).
    pub async fn ensure_admin(
        &self,
        configured: Option<&str>,
    ) -> Result<Option<String>, AuthError> {
        if self.local_admin().await?.is_some() {
            return Ok(None);
        }
        let generated = match configured {
            Some(_) => None,
            // 128 random bits, as 32 hex digits: typed once, then changed.
            None => Some(tokens::new_secret("")?[..32].to_owned()),
        };
        let password = configured.or(generated.as_deref()).unwrap_or_default();
        let body = [
            ("login", ADMIN_LOGIN),
            ("display_name", "Administrator"),
            ("role", "admin"),
            ("password", password),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), Json::from(value)))
        .collect();
        self.records.create(USERS, body, &Author::system()).await?;
        Ok(generated)
    }

    /// An active admin user of this node (the oldest), if any.
    pub async fn local_admin(&self) -> Result<Option<Principal>, AuthError> {
        let admins = self
            .active_users(&[("role", "admin"), ("limit", "1")])
            .await?;
        Ok(admins.into_iter().next())
    }

    /// Opens the node's own admin session for its command-line tools,
    /// first dropping any left by a crashed run. `None` when the node has
    /// no active admin.
    pub async fn open_node_session(&self) -> Result<Option<String>, AuthError> {
        self.close_node_sessions().await?;
        let Some(admin) = self.local_admin().await? else {
            return Ok(None);
        };
        let (token, _) = self
            .open_session(&admin.id, Purpose::Node, NODE_SESSION_TTL)
            .await?;
        Ok(Some(token))
    }

    pub async fn close_node_sessions(&self) -> Result<(), AuthError> {
        self.known.forget_all();
        self.store
            .write(|txn| {
                sessions::delete_purpose(txn.conn(), Purpose::Node).map_err(StoreError::from)
            })
            .await?;
        Ok(())
    }

    pub fn session_ttl(&self) -> Duration {
        self.ttl
    }
}

/// A valid hash of no one's password, for timing-equal failed logins.
fn dummy_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| password::hash("not anyone's password").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn inactive_users_and_unknown_roles_have_no_principal() {
        let user = json!({"id": "u1", "login": "ivanov", "display_name": null,
                          "role": "manager", "office": "spb", "active": true});
        let principal = Principal::from_record(&user).expect("an active manager");
        assert_eq!(principal.role, Role::Manager);
        assert_eq!(principal.office.as_deref(), Some("spb"));
        let mut inactive = user.clone();
        inactive["active"] = json!(false);
        assert!(Principal::from_record(&inactive).is_none());
        let mut odd = user;
        odd["role"] = json!("owner");
        assert!(Principal::from_record(&odd).is_none());
    }

    #[test]
    fn csrf_tokens_belong_to_one_session() {
        assert_eq!(csrf_token("crms_a"), csrf_token("crms_a"));
        assert_ne!(csrf_token("crms_a"), csrf_token("crms_b"));
        assert_eq!(csrf_token("crms_a").len(), 64);
    }
}
