//! Who may do what. Every role decision of the API is one function here,
//! called by the handlers with the request's [`Principal`]:
//! - admin: everything (users, peers, sync rounds);
//! - manager: reads everything; creates records of every kind but users;
//!   changes (edit, delete, restore) a record they are responsible for:
//!   its `manager` is their login or its `office` is their office, or, for
//!   a kind without those fields (contacts), the record it references
//!   (the contact's client) is theirs; imports, exports, runs sync rounds;
//! - viewer: reads (records, lists, search, history, export, sync status).

use crm_schema::KindDef;
use serde_json::{Map, Value as Json};

use crate::auth::{Principal, Role};
use crate::records::{RecordError, Records, USERS};

/// The field naming the user (login) responsible for a record.
pub const MANAGER_FIELD: &str = "manager";
/// The field naming the office a record belongs to.
pub const OFFICE_FIELD: &str = "office";

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("{0}")]
    Denied(&'static str),
    #[error(transparent)]
    Record(#[from] RecordError),
}

type Decision = Result<(), AccessError>;

const READ_ONLY: &str = "your role (viewer) can only read";
const USERS_ADMIN: &str = "only an admin manages users";
const ADMIN_ONLY: &str = "only an admin may do this";
const NOT_YOURS: &str =
    "a manager may change only records they manage or of their office (field manager or office)";

/// Reading records, lists, search, history, export and sync status:
/// every role.
pub fn read(_: &Principal) -> Decision {
    Ok(())
}

pub fn create(principal: &Principal, collection: &str) -> Decision {
    match principal.role {
        Role::Admin => Ok(()),
        Role::Manager if collection == USERS => Err(AccessError::Denied(USERS_ADMIN)),
        Role::Manager => Ok(()),
        Role::Viewer => Err(AccessError::Denied(READ_ONLY)),
    }
}

/// A CSV import creates records: the rules of [`create`].
pub fn import(principal: &Principal, collection: &str) -> Decision {
    create(principal, collection)
}

/// Editing, deleting or restoring a record whose ownership is `owner`.
pub fn modify(principal: &Principal, collection: &str, owner: &Ownership) -> Decision {
    match principal.role {
        Role::Admin => Ok(()),
        Role::Manager if collection == USERS => Err(AccessError::Denied(USERS_ADMIN)),
        Role::Manager if owner.belongs_to(principal) => Ok(()),
        Role::Manager => Err(AccessError::Denied(NOT_YOURS)),
        Role::Viewer => Err(AccessError::Denied(READ_ONLY)),
    }
}

/// Running a sync round now: admins and managers (a rep on a hotel
/// network syncs their laptop).
pub fn sync_run(principal: &Principal) -> Decision {
    match principal.role {
        Role::Admin | Role::Manager => Ok(()),
        Role::Viewer => Err(AccessError::Denied(READ_ONLY)),
    }
}

/// Listing, adding and removing peers: they hold secrets and decide where
/// the data goes.
pub fn peers(principal: &Principal) -> Decision {
    match principal.role {
        Role::Admin => Ok(()),
        Role::Manager | Role::Viewer => Err(AccessError::Denied(ADMIN_ONLY)),
    }
}

/// Whom a record belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ownership {
    pub manager: Option<String>,
    pub office: Option<String>,
}

impl Ownership {
    pub fn of(record: &Json) -> Ownership {
        let text = |key: &str| record[key].as_str().map(str::to_owned);
        Ownership {
            manager: text(MANAGER_FIELD),
            office: text(OFFICE_FIELD),
        }
    }

    /// Logins and offices compare case-insensitively, as lists filter them.
    fn belongs_to(&self, principal: &Principal) -> bool {
        let same = |a: &Option<String>, b: Option<&str>| matches!((a, b), (Some(a), Some(b)) if a.to_lowercase() == b.to_lowercase());
        same(&self.manager, Some(&principal.login))
            || same(&self.office, principal.office.as_deref())
    }
}

fn has_owner_fields(kind: &KindDef) -> bool {
    kind.field(MANAGER_FIELD).is_some() || kind.field(OFFICE_FIELD).is_some()
}

/// A manager's new record is theirs unless the body says otherwise: its
/// `manager` is their login and its `office` their office.
pub fn fill_owner(principal: &Principal, kind: &KindDef, body: &mut Map<String, Json>) {
    if principal.role != Role::Manager {
        return;
    }
    if kind.field(MANAGER_FIELD).is_some() && !body.contains_key(MANAGER_FIELD) {
        body.insert(MANAGER_FIELD.into(), Json::from(principal.login.as_str()));
    }
    if let Some(office) = &principal.office {
        if kind.field(OFFICE_FIELD).is_some() && !body.contains_key(OFFICE_FIELD) {
            body.insert(OFFICE_FIELD.into(), Json::from(office.as_str()));
        }
    }
}

/// Checks that `principal` may edit, delete or restore record `id`,
/// reading its ownership only when the role makes it matter.
pub async fn modify_record(
    records: &Records,
    principal: &Principal,
    collection: &str,
    id: &str,
) -> Decision {
    if principal.role != Role::Manager {
        return modify(principal, collection, &Ownership::default());
    }
    let owner = owner_of(records, collection, id).await?;
    modify(principal, collection, &owner)
}

/// The ownership of a stored record (deleted ones too, for restore): its
/// own fields, or for a kind without them those of the first record it
/// references whose kind has them.
async fn owner_of(records: &Records, collection: &str, id: &str) -> Result<Ownership, RecordError> {
    let kind = records.kind_def(collection)?;
    let record = records.get_any(collection, id).await?;
    if has_owner_fields(&kind) {
        return Ok(Ownership::of(&record));
    }
    for field in &kind.fields {
        let (Some(target), Some(target_id)) = (&field.to, record[&field.name].as_str()) else {
            continue;
        };
        let Ok(target_kind) = records.kind_def(target) else {
            continue;
        };
        if !has_owner_fields(&target_kind) {
            continue;
        }
        return match records.get_any(target, target_id).await {
            Ok(parent) => Ok(Ownership::of(&parent)),
            Err(RecordError::NotFound { .. }) => Ok(Ownership::default()),
            Err(e) => Err(e),
        };
    }
    Ok(Ownership::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(role: Role) -> Principal {
        Principal {
            id: "u".into(),
            login: "ivanov".into(),
            display_name: None,
            role,
            office: Some("spb".into()),
        }
    }

    fn owned(manager: Option<&str>, office: Option<&str>) -> Ownership {
        Ownership {
            manager: manager.map(str::to_owned),
            office: office.map(str::to_owned),
        }
    }

    #[test]
    fn decisions_per_role() {
        let (admin, manager, viewer) = (
            principal(Role::Admin),
            principal(Role::Manager),
            principal(Role::Viewer),
        );
        let theirs = owned(Some("Ivanov"), None);
        let their_office = owned(Some("petrov"), Some("SPB"));
        let others = owned(Some("petrov"), Some("msk"));
        let nobodys = Ownership::default();
        // (decision, allowed for admin, manager, viewer)
        type Row = (&'static str, fn(&Principal) -> Decision, [bool; 3]);
        let table: Vec<Row> = vec![
            ("read", read, [true, true, true]),
            (
                "create client",
                |p| create(p, "clients"),
                [true, true, false],
            ),
            ("create user", |p| create(p, USERS), [true, false, false]),
            (
                "import clients",
                |p| import(p, "clients"),
                [true, true, false],
            ),
            ("import users", |p| import(p, USERS), [true, false, false]),
            ("sync run", sync_run, [true, true, false]),
            ("peers", peers, [true, false, false]),
        ];
        for (name, decide, expected) in table {
            for (p, allowed) in [&admin, &manager, &viewer].into_iter().zip(expected) {
                assert_eq!(decide(p).is_ok(), allowed, "{name} as {:?}", p.role);
            }
        }
        for (owner, manager_may) in [
            (&theirs, true),
            (&their_office, true),
            (&others, false),
            (&nobodys, false),
        ] {
            assert!(modify(&admin, "clients", owner).is_ok());
            assert_eq!(
                modify(&manager, "clients", owner).is_ok(),
                manager_may,
                "{owner:?}"
            );
            assert!(modify(&viewer, "clients", owner).is_err());
        }
        assert!(modify(&manager, USERS, &theirs).is_err());
        assert!(modify(&admin, USERS, &nobodys).is_ok());
    }

    #[test]
    fn a_managers_new_record_is_theirs_unless_the_body_says_otherwise() {
        let kind: KindDef = toml::from_str(
            "collection = \"clients\"\nlabel = \"Client\"\ntitle = [\"name\"]\n\
             [[fields]]\nname = \"name\"\ntype = \"string\"\n\
             [[fields]]\nname = \"manager\"\ntype = \"string\"\n\
             [[fields]]\nname = \"office\"\ntype = \"string\"\n",
        )
        .expect("kind parses");
        let mut body = Map::new();
        fill_owner(&principal(Role::Manager), &kind, &mut body);
        assert_eq!(body["manager"], "ivanov");
        assert_eq!(body["office"], "spb");
        let mut given = Map::new();
        given.insert("manager".into(), Json::from("petrov"));
        fill_owner(&principal(Role::Manager), &kind, &mut given);
        assert_eq!(given["manager"], "petrov");
        let mut admins = Map::new();
        fill_owner(&principal(Role::Admin), &kind, &mut admins);
        assert!(admins.is_empty());
    }
}
