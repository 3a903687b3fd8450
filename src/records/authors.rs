//! Who wrote a change: every change carries its user's id as its message
//! (see `Author`); this names that user from the users' records as they
//! are now, for history entries and for the values of a conflict. Names
//! are read when a record is served, not stored with it, so a renamed user
//! shows by the new name and converged nodes show the same names.

use std::collections::HashMap;

use crm_schema::KindDef;
use crm_sync::DocId;
use serde_json::Value as Json;

use super::{stored_row, RecordError};

/// A user's login and display name, when their record is known here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    pub login: Option<String>,
    pub display_name: Option<String>,
}

/// Names user ids, reading each user's record once.
pub struct Authors<'c> {
    conn: &'c rusqlite::Connection,
    users: Option<&'c KindDef>,
    known: HashMap<String, Names>,
}

impl<'c> Authors<'c> {
    /// `users` is the users' kind, if the schema has one.
    pub fn new(conn: &'c rusqlite::Connection, users: Option<&'c KindDef>) -> Authors<'c> {
        Authors {
            conn,
            users,
            known: HashMap::new(),
        }
    }

    /// The names of user `id`; empty when no such user is known here (the
    /// node's own `system`, or a user not replicated here yet).
    pub fn names(&mut self, id: &str) -> Result<Names, RecordError> {
        if let Some(names) = self.known.get(id) {
            return Ok(names.clone());
        }
        let record = match (self.users, id.parse::<DocId>()) {
            (Some(users), Ok(doc)) => match stored_row(self.conn, users, &doc) {
                Ok((record, _)) => Some(record),
                Err(RecordError::NotFound { .. }) => None,
                Err(e) => return Err(e),
            },
            _ => None,
        };
        let names = record
            .map(|record| {
                let text = |key: &str| record[key].as_str().map(str::to_owned);
                Names {
                    login: text("login"),
                    display_name: text("display_name"),
                }
            })
            .unwrap_or_default();
        self.known.insert(id.to_owned(), names.clone());
        Ok(names)
    }

    /// Fills in `login` and `display_name` of each conflicting value of a
    /// record as served; a record without conflicts is left as it is.
    pub fn name_conflicts(&mut self, record: &mut Json) -> Result<(), RecordError> {
        let Some(conflicts) = record.get_mut("conflicts").and_then(Json::as_object_mut) else {
            return Ok(());
        };
        for value in conflicts
            .values_mut()
            .filter_map(Json::as_array_mut)
            .flatten()
        {
            let Some(user) = value["user"].as_str().map(str::to_owned) else {
                continue;
            };
            let names = self.names(&user)?;
            if let Some(entry) = value.as_object_mut() {
                entry.insert("login".into(), names.login.into());
                entry.insert("display_name".into(), names.display_name.into());
            }
        }
        Ok(())
    }
}
