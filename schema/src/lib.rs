//! The CRM's record kinds as data: every kind is a TOML file in `kinds/`, and
//! the node's own SQL migrations live in `migrations/`. Both are embedded at
//! build time. This crate only parses and checks the definitions; what the node
//! builds from them (validation, projection tables, OpenAPI) lives in the node.

use std::collections::HashSet;
use std::sync::Arc;

use serde::Deserialize;

/// Kind files embedded in the binary, in the order the API lists them.
const KIND_FILES: &[(&str, &str)] = &[
    ("clients.toml", include_str!("../kinds/clients.toml")),
    ("contacts.toml", include_str!("../kinds/contacts.toml")),
    ("deals.toml", include_str!("../kinds/deals.toml")),
    ("invoices.toml", include_str!("../kinds/invoices.toml")),
    (
        "invoice_lines.toml",
        include_str!("../kinds/invoice_lines.toml"),
    ),
    ("users.toml", include_str!("../kinds/users.toml")),
    ("nodes.toml", include_str!("../kinds/nodes.toml")),
];

/// SQL migrations of the node (beyond the store's own), numbered and
/// append-only: never edit one that has shipped, add the next number.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "search index and kind fingerprints",
        sql: include_str!("../migrations/0001_search_index.sql"),
    },
    Migration {
        version: 2,
        name: "login sessions",
        sql: include_str!("../migrations/0002_sessions.sql"),
    },
    Migration {
        version: 3,
        name: "search index merged by the node, in small shares",
        sql: include_str!("../migrations/0003_search_merge.sql"),
    },
    Migration {
        version: 4,
        name: "search index optimized after bulk writes",
        sql: include_str!("../migrations/0004_search_upkeep.sql"),
    },
    Migration {
        version: 5,
        name: "search index optimized by its layout after bulk writes",
        sql: include_str!("../migrations/0005_search_upkeep_by_layout.sql"),
    },
];

/// One numbered SQL migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Names the node uses for record metadata; a field may not take them.
pub const RESERVED_NAMES: &[&str] = &[
    "id",
    "kind",
    "created_at",
    "updated_at",
    "version",
    "conflicts",
    "deleted",
    "sort",
    "limit",
    "cursor",
    "fields",
    "q",
];

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("{file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: {source}")]
    Parse {
        file: String,
        source: Box<toml::de::Error>,
    },
    #[error("kind {kind}: {message}")]
    Invalid { kind: String, message: String },
}

/// All record kinds the node knows.
#[derive(Debug, Clone)]
pub struct Schema {
    /// Shared, so that a request holds its kind without copying it.
    kinds: Vec<Arc<KindDef>>,
}

impl Schema {
    /// The kinds compiled into this binary.
    pub fn builtin() -> Result<Schema, SchemaError> {
        Schema::from_kinds(builtin_kinds()?)
    }

    /// The built-in kinds, then every `*.toml` file of `dir` (in name
    /// order): a file whose collection is built in replaces that kind (e.g.
    /// to add a company's own fields), any other adds a kind.
    pub fn with_kinds_dir(dir: &std::path::Path) -> Result<Schema, SchemaError> {
        let mut kinds = builtin_kinds()?;
        let read_error = |file: &std::path::Path, source| SchemaError::Read {
            file: file.display().to_string(),
            source,
        };
        let mut files = std::fs::read_dir(dir)
            .map_err(|e| read_error(dir, e))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|x| x == "toml"))
            .collect::<Vec<_>>();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file).map_err(|e| read_error(&file, e))?;
            let kind: KindDef = toml::from_str(&text).map_err(|e| SchemaError::Parse {
                file: file.display().to_string(),
                source: Box::new(e),
            })?;
            match kinds.iter_mut().find(|k| k.collection == kind.collection) {
                Some(existing) => *existing = kind,
                None => kinds.push(kind),
            }
        }
        Schema::from_kinds(kinds)
    }

    /// Checks a set of kind definitions for consistency.
    pub fn from_kinds(kinds: Vec<KindDef>) -> Result<Schema, SchemaError> {
        let names: HashSet<&str> = kinds.iter().map(|k| k.collection.as_str()).collect();
        if names.len() != kinds.len() {
            return Err(SchemaError::Invalid {
                kind: "*".into(),
                message: "two kinds share a collection name".into(),
            });
        }
        for kind in &kinds {
            kind.check(&names)?;
        }
        Ok(Schema {
            kinds: kinds.into_iter().map(Arc::new).collect(),
        })
    }

    pub fn kinds(&self) -> &[Arc<KindDef>] {
        &self.kinds
    }

    pub fn kind(&self, collection: &str) -> Option<&KindDef> {
        self.shared_kind(collection).map(|k| &**k)
    }

    /// The kind, for holding beyond a borrow of the schema.
    pub fn shared_kind(&self, collection: &str) -> Option<&Arc<KindDef>> {
        self.kinds.iter().find(|k| k.collection == collection)
    }
}

fn builtin_kinds() -> Result<Vec<KindDef>, SchemaError> {
    let mut kinds = Vec::new();
    for (file, text) in KIND_FILES {
        let kind: KindDef = toml::from_str(text).map_err(|e| SchemaError::Parse {
            file: (*file).to_owned(),
            source: Box::new(e),
        })?;
        kinds.push(kind);
    }
    Ok(kinds)
}

/// One record kind: its collection name in the API and its fields.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindDef {
    /// Plural, lower case; the API path segment and the document `kind`.
    pub collection: String,
    /// Singular human name.
    pub label: String,
    /// Fields joined with spaces make the record's title in search hits.
    pub title: Vec<String>,
    /// A bool field that, when false, makes a record inactive: an inactive
    /// record does not hold its `unique` values (a deactivated user frees
    /// their login).
    #[serde(default)]
    pub active_field: Option<String>,
    /// A kind the node writes itself (the directory of nodes): never
    /// written through the API, left out of full-text search, and sent to
    /// every peer whatever its token's scope, so it must hold no customer
    /// data.
    #[serde(default)]
    pub system: bool,
    pub fields: Vec<FieldDef>,
}

impl KindDef {
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|f| f.name == name)
    }

    pub fn searchable_fields(&self) -> impl Iterator<Item = &FieldDef> {
        self.fields.iter().filter(|f| f.searchable)
    }

    /// The fields the API shows: all but secret ones.
    pub fn shown_fields(&self) -> impl Iterator<Item = &FieldDef> {
        self.fields.iter().filter(|f| !f.is_secret())
    }

    fn check(&self, kinds: &HashSet<&str>) -> Result<(), SchemaError> {
        let fail = |message: String| SchemaError::Invalid {
            kind: self.collection.clone(),
            message,
        };
        if !is_identifier(&self.collection) {
            return Err(fail(
                "collection must be lower-case letters, digits and _".into(),
            ));
        }
        let mut seen = HashSet::new();
        for field in &self.fields {
            if !seen.insert(field.name.as_str()) {
                return Err(fail(format!("field {} is declared twice", field.name)));
            }
            field
                .check()
                .map_err(|m| fail(format!("field {}: {m}", field.name)))?;
            if let Some(target) = &field.to {
                if !kinds.contains(target.as_str()) {
                    return Err(fail(format!(
                        "field {} refers to unknown kind {target}",
                        field.name
                    )));
                }
            }
        }
        if self.title.is_empty() {
            return Err(fail("title names no field".into()));
        }
        for name in &self.title {
            match self.field(name) {
                None => return Err(fail(format!("title names unknown field {name}"))),
                Some(f) if f.is_secret() => {
                    return Err(fail(format!("title names secret field {name}")))
                }
                Some(_) => {}
            }
        }
        if let Some(name) = &self.active_field {
            match self.field(name) {
                Some(f) if f.ty == FieldType::Bool && f.indexed => {}
                _ => {
                    return Err(fail(format!(
                        "active_field {name} must name an indexed bool field"
                    )))
                }
            }
        }
        Ok(())
    }
}

/// The type of a field's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// One line of text.
    String,
    /// Long text, co-edited character by character (Automerge `Text`).
    Text,
    Integer,
    /// Integer minor units plus an ISO 4217 currency code.
    Money,
    Bool,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// An instant, RFC 3339.
    Datetime,
    /// One of `values`.
    Enum,
    /// The id of a record of kind `to`.
    Reference,
    /// A set of short strings (tags).
    Set,
    Email,
    /// Shown as entered, stored and compared as digits with country code.
    Phone,
    /// Write-only: the API takes the plain password (at least 8
    /// characters) and the document keeps only its argon2id hash, which is
    /// never shown (not in records, lists, history, export or OpenAPI).
    Password,
}

impl FieldType {
    pub fn name(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Text => "text",
            FieldType::Integer => "integer",
            FieldType::Money => "money",
            FieldType::Bool => "bool",
            FieldType::Date => "date",
            FieldType::Datetime => "datetime",
            FieldType::Enum => "enum",
            FieldType::Reference => "reference",
            FieldType::Set => "set",
            FieldType::Email => "email",
            FieldType::Phone => "phone",
            FieldType::Password => "password",
        }
    }

    /// Types whose values order meaningfully, so range filters apply.
    pub fn is_ordered(self) -> bool {
        matches!(
            self,
            FieldType::Integer | FieldType::Money | FieldType::Date | FieldType::Datetime
        )
    }

    /// Types filtered by prefix.
    pub fn is_textual(self) -> bool {
        matches!(
            self,
            FieldType::String | FieldType::Email | FieldType::Phone | FieldType::Enum
        )
    }
}

/// A domain rule beyond the type, implemented by the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Check {
    /// Russian taxpayer number: 10 digits (company) or 12 (person) with
    /// check digits; the length must agree with `client_type` when set.
    Inn,
}

/// A default value as written in a kind file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum DefaultValue {
    Bool(bool),
    Integer(i64),
    String(String),
}

/// One field of a kind.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldDef {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: FieldType,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub default: Option<DefaultValue>,
    /// Characters for strings and text; per member for sets.
    #[serde(default)]
    pub max_len: Option<usize>,
    /// Allowed values of an enum.
    #[serde(default)]
    pub values: Vec<String>,
    /// Target kind of a reference.
    #[serde(default)]
    pub to: Option<String>,
    /// Filterable and sortable in lists (a projection column with an index).
    #[serde(default)]
    pub indexed: bool,
    /// Part of the full-text index.
    #[serde(default)]
    pub searchable: bool,
    /// Used by duplicate search to find the same client twice.
    #[serde(default)]
    pub natural_key: bool,
    #[serde(default)]
    pub check: Option<Check>,
    /// No two live, active records of the kind may share the value on the
    /// node that writes it (checked on create and update; replication can
    /// still bring two, as a record is created on one node only).
    #[serde(default)]
    pub unique: bool,
    /// Smallest value an integer may hold.
    #[serde(default)]
    pub min: Option<i64>,
    /// Largest value an integer may hold.
    #[serde(default)]
    pub max: Option<i64>,
}

impl FieldDef {
    /// Secret fields are kept in the document but never leave the node
    /// through the API.
    pub fn is_secret(&self) -> bool {
        self.ty == FieldType::Password
    }

    fn check(&self) -> Result<(), String> {
        if !is_identifier(&self.name) {
            return Err("name must be lower-case letters, digits and _".into());
        }
        if RESERVED_NAMES.contains(&self.name.as_str()) {
            return Err("name is reserved for record metadata".into());
        }
        if self.name.contains("__") {
            return Err("name may not contain __ (used for derived columns)".into());
        }
        match (self.ty, self.values.is_empty()) {
            (FieldType::Enum, true) => return Err("an enum needs values".into()),
            (FieldType::Enum, false) => {}
            (_, false) => return Err("only an enum takes values".into()),
            _ => {}
        }
        if (self.ty == FieldType::Reference) != self.to.is_some() {
            return Err("a reference, and only a reference, names its target with `to`".into());
        }
        if (self.min.is_some() || self.max.is_some()) && self.ty != FieldType::Integer {
            return Err("only an integer takes min and max".into());
        }
        if let (Some(min), Some(max)) = (self.min, self.max) {
            if min > max {
                return Err("min is larger than max".into());
            }
        }
        if let Some(DefaultValue::Integer(default)) = &self.default {
            if self.min.is_some_and(|min| *default < min)
                || self.max.is_some_and(|max| *default > max)
            {
                return Err("default is outside min and max".into());
            }
        }
        if self.check == Some(Check::Inn) && self.ty != FieldType::String {
            return Err("the inn check applies to a string".into());
        }
        if let Some(default) = &self.default {
            let fits = match (self.ty, default) {
                (FieldType::Enum, DefaultValue::String(s)) => self.values.contains(s),
                (FieldType::String, DefaultValue::String(_)) => true,
                (FieldType::Integer, DefaultValue::Integer(_)) => true,
                (FieldType::Bool, DefaultValue::Bool(_)) => true,
                _ => false,
            };
            if !fits {
                return Err("default does not fit the field's type".into());
            }
        }
        if self.ty == FieldType::Text && self.indexed {
            return Err("text is searchable, not indexed".into());
        }
        if self.is_secret() && (self.indexed || self.searchable || self.natural_key || self.unique)
        {
            return Err("a password is never indexed, searched or compared".into());
        }
        if self.is_secret() && self.default.is_some() {
            return Err("a password has no default".into());
        }
        if self.unique && (!self.indexed || matches!(self.ty, FieldType::Set | FieldType::Text)) {
            return Err("a unique field must be an indexed single value".into());
        }
        Ok(())
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z'))
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_kinds_parse_and_check() {
        let schema = Schema::builtin().expect("embedded kinds are valid");
        let clients = schema.kind("clients").expect("clients declared");
        assert!(clients.field("name").is_some_and(|f| f.required));
        let stage = clients.field("stage").expect("stage declared");
        assert_eq!(
            stage.default,
            Some(DefaultValue::String("potential".into()))
        );
        assert!(schema.kind("nodes").is_some_and(|k| k.system));
        assert!(schema.kinds().iter().filter(|k| k.system).count() == 1);
        let contacts = schema.kind("contacts").expect("contacts declared");
        assert_eq!(
            contacts.field("client_id").and_then(|f| f.to.as_deref()),
            Some("clients")
        );
    }

    fn kind_with(field: &str) -> Result<Schema, SchemaError> {
        let text = format!("collection = \"things\"\nlabel = \"Thing\"\ntitle = [\"a\"]\n[[fields]]\nname = \"a\"\ntype = \"string\"\n{field}");
        let kind: KindDef = toml::from_str(&text).map_err(|e| SchemaError::Parse {
            file: "test".into(),
            source: Box::new(e),
        })?;
        Schema::from_kinds(vec![kind])
    }

    #[test]
    fn inconsistent_definitions_are_refused() {
        let bad = [
            "[[fields]]\nname = \"e\"\ntype = \"enum\"",
            "[[fields]]\nname = \"r\"\ntype = \"reference\"\nto = \"nowhere\"",
            "[[fields]]\nname = \"id\"\ntype = \"string\"",
            "[[fields]]\nname = \"a\"\ntype = \"string\"",
            "[[fields]]\nname = \"x\"\ntype = \"enum\"\nvalues = [\"p\"]\ndefault = \"q\"",
            "[[fields]]\nname = \"x\"\ntype = \"string\"\nbogus = true",
            "[[fields]]\nname = \"Bad\"\ntype = \"string\"",
            "[[fields]]\nname = \"p\"\ntype = \"password\"\nindexed = true",
            "[[fields]]\nname = \"u\"\ntype = \"string\"\nunique = true",
            "[[fields]]\nname = \"s\"\ntype = \"string\"\nmin = 1",
            "[[fields]]\nname = \"n\"\ntype = \"integer\"\nmin = 5\nmax = 4",
            "[[fields]]\nname = \"n\"\ntype = \"integer\"\nmax = 2\ndefault = 3",
        ];
        for field in bad {
            assert!(kind_with(field).is_err(), "accepted: {field}");
        }
        assert!(kind_with("[[fields]]\nname = \"n\"\ntype = \"integer\"\ndefault = 3").is_ok());
    }
}
