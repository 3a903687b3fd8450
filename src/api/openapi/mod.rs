//! The OpenAPI 3.1 description of this node's API, built from the schema at
//! start-up: one set of concrete paths per record kind, with the kind's
//! fields as request and response schemas and its indexed fields as filter
//! parameters. Static shapes come from the Rust types (`ToSchema`).

use crm_schema::{FieldDef, FieldType, KindDef, Schema};
use serde_json::json;
use utoipa::openapi::path::{OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, KnownFormat, ObjectBuilder, Schema as OaSchema,
    SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, HttpMethod, InfoBuilder, OpenApiBuilder, PathItem,
    PathsBuilder, Ref, RefOr, Required, ResponseBuilder,
};

mod auth;
mod replication;
mod transfer;

use super::health::Health;
use super::problem::{Problem, PROBLEM_JSON};
use crate::records::history::{FieldChange, HistoryEntry};
use crate::records::query::{MAX_LIMIT, RANGE_OPS};
use crate::records::search::{SearchHit, MAX_LIMIT as SEARCH_MAX_LIMIT};
use crate::records::{ErrorCode, FieldError};

/// The document as JSON text.
pub fn document(schema: &Schema) -> String {
    let mut components = ComponentsBuilder::new()
        .schema_from::<Problem>()
        .schema_from::<FieldError>()
        .schema_from::<ErrorCode>()
        .schema_from::<SearchHit>()
        .schema_from::<HistoryEntry>()
        .schema_from::<FieldChange>()
        .schema_from::<Health>()
        .schema("ConflictValue", conflict_value());
    components = replication::components(components);
    components = auth::components(components);
    components = transfer::components(components);
    let mut paths = PathsBuilder::new()
        .path("/healthz", PathItem::new(HttpMethod::Get, health_op()))
        .path(
            "/api/v1/openapi.json",
            PathItem::new(HttpMethod::Get, openapi_op()),
        )
        .path(
            "/api/v1/search",
            PathItem::new(HttpMethod::Get, search_op(schema)),
        );
    for kind in schema.kinds() {
        let label = schema_name(kind);
        components = components
            .schema(label.clone(), record_schema(kind, RecordShape::Full))
            .schema(
                format!("{label}Item"),
                record_schema(kind, RecordShape::Selected),
            );
        let base = format!("/api/v1/{}", kind.collection);
        if kind.system {
            // Written by the nodes themselves: read-only here.
            paths = paths
                .path(base.clone(), PathItem::new(HttpMethod::Get, list_op(kind)))
                .path(
                    format!("{base}/{{id}}"),
                    PathItem::new(HttpMethod::Get, get_op(kind)),
                )
                .path(
                    format!("{base}/{{id}}/history"),
                    PathItem::new(HttpMethod::Get, history_op(kind)),
                );
            paths = transfer::export_path(paths, kind);
            continue;
        }
        components = components
            .schema(format!("{label}Create"), input_schema(kind, true))
            .schema(format!("{label}Patch"), input_schema(kind, false));
        paths = paths
            .path(
                base.clone(),
                path_item([
                    (HttpMethod::Get, list_op(kind)),
                    (HttpMethod::Post, create_op(kind)),
                ]),
            )
            .path(
                format!("{base}/{{id}}"),
                path_item([
                    (HttpMethod::Get, get_op(kind)),
                    (HttpMethod::Patch, patch_op(kind)),
                    (HttpMethod::Delete, delete_op(kind)),
                ]),
            )
            .path(
                format!("{base}/{{id}}/restore"),
                PathItem::new(HttpMethod::Post, restore_op(kind)),
            )
            .path(
                format!("{base}/{{id}}/history"),
                PathItem::new(HttpMethod::Get, history_op(kind)),
            );
        paths = transfer::paths(paths, kind);
    }
    paths = replication::paths(paths);
    paths = auth::paths(paths);
    let mut api = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("crm-node")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Offline-first CRM node. Records of every kind are Automerge documents replicated \
                     between nodes; this API reads and writes the local copy.",
                ))
                .build(),
        )
        .paths(paths.build())
        .components(Some(components.build()))
        .build();
    auth::apply(&mut api);
    auth::add_to_every_operation(
        &mut api,
        "503",
        "The node did not answer in time (a timed-out write may still have been applied), \
         or its database cannot take writes (disk full, size limit, read-only data folder); \
         retry after the seconds in Retry-After.",
    );
    api.to_pretty_json().unwrap_or_else(|e| {
        tracing::error!(error = %e, "OpenAPI document does not serialize");
        "{}".to_owned()
    })
}

fn path_item<const N: usize>(operations: [(HttpMethod, OperationBuilder); N]) -> PathItem {
    let mut item = PathItem::default();
    for (method, operation) in operations {
        item.merge_operations(PathItem::new(method, operation));
    }
    item
}

/// What the node accepts as an e-mail (or blank, meaning none); the node's
/// own check is stricter, answered with 422.
const EMAIL_PATTERN: &str = r"^(\s*|[^@\s]+@[^@\s]+\.[^@\s]+)$";

/// What a one-line string field accepts: no control characters; a
/// required one needs a non-blank character (blank counts as absent); an
/// INN is digits (its check digits are checked by the node, answered with
/// 422).
fn line_pattern(field: &FieldDef) -> &'static str {
    match (field.check, field.required) {
        (Some(crm_schema::Check::Inn), _) => r"^\s*(\d{10}|\d{12})?\s*$",
        (None, true) => {
            r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
        }
        (None, false) => r"^[^\u0000-\u001F\u007F-\u009F]*$",
    }
}

fn schema_name(kind: &KindDef) -> String {
    kind.label.replace(' ', "")
}

fn schema_ref(name: &str) -> RefOr<OaSchema> {
    RefOr::Ref(Ref::from_schema_name(name))
}

fn nullable(ty: Type) -> SchemaType {
    SchemaType::from_iter([ty, Type::Null])
}

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

fn conflict_value() -> OaSchema {
    ObjectBuilder::new()
        .description(Some(
            "One of several values written concurrently to a field.",
        ))
        .property(
            "value",
            ObjectBuilder::new().description(Some("The value, shaped as the field's values are.")),
        )
        .required("value")
        .property(
            "node",
            ObjectBuilder::new()
                .schema_type(nullable(Type::String))
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))),
        )
        .required("node")
        .property(
            "at",
            string().format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
        )
        .required("at")
        .property(
            "user",
            ObjectBuilder::new()
                .schema_type(nullable(Type::String))
                .description(Some(
                    "The id of the user who wrote the value (`system` for the node itself).",
                )),
        )
        .required("user")
        .property(
            "login",
            ObjectBuilder::new()
                .schema_type(nullable(Type::String))
                .description(Some(
                    "That user's login, when the user's record is known here.",
                )),
        )
        .required("login")
        .property(
            "display_name",
            ObjectBuilder::new()
                .schema_type(nullable(Type::String))
                .description(Some("That user's display name, when known here.")),
        )
        .required("display_name")
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .into()
}

/// A field's value schema. `null_ok` allows `null` (unset, or "clear").
fn field_schema(field: &FieldDef, null_ok: bool) -> RefOr<OaSchema> {
    let ty = |t: Type| -> SchemaType {
        if null_ok {
            nullable(t)
        } else {
            SchemaType::Type(t)
        }
    };
    let format = |f: KnownFormat| Some(SchemaFormat::KnownFormat(f));
    let schema: OaSchema = match field.ty {
        FieldType::String | FieldType::Phone => ObjectBuilder::new()
            .schema_type(ty(Type::String))
            .max_length(field.max_len.or(Some(1000)))
            .pattern(Some(line_pattern(field)))
            .into(),
        FieldType::Text => ObjectBuilder::new()
            .schema_type(ty(Type::String))
            .max_length(field.max_len.or(Some(1000)))
            .into(),
        FieldType::Email => ObjectBuilder::new()
            .schema_type(ty(Type::String))
            .pattern(Some(EMAIL_PATTERN))
            .max_length(Some(254))
            .description(Some("An e-mail address; an empty string counts as none."))
            .into(),
        FieldType::Integer => ObjectBuilder::new()
            .schema_type(ty(Type::Integer))
            .format(format(KnownFormat::Int64))
            .minimum(field.min)
            .maximum(field.max)
            .into(),
        FieldType::Bool => ObjectBuilder::new().schema_type(ty(Type::Boolean)).into(),
        FieldType::Date => ObjectBuilder::new()
            .schema_type(ty(Type::String))
            .format(format(KnownFormat::Date))
            .into(),
        FieldType::Datetime => ObjectBuilder::new()
            .schema_type(ty(Type::String))
            .format(format(KnownFormat::DateTime))
            .into(),
        FieldType::Reference => ObjectBuilder::new()
            .schema_type(ty(Type::String))
            .format(format(KnownFormat::Uuid))
            .description(Some(format!(
                "Id of a {} record.",
                field.to.as_deref().unwrap_or("?")
            )))
            .into(),
        FieldType::Enum => {
            let mut values: Vec<serde_json::Value> =
                field.values.iter().map(|v| json!(v)).collect();
            if null_ok {
                values.push(serde_json::Value::Null);
            }
            ObjectBuilder::new()
                .schema_type(ty(Type::String))
                .enum_values(Some(values))
                .into()
        }
        FieldType::Money => ObjectBuilder::new()
            .schema_type(ty(Type::Object))
            .property(
                "minor",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(format(KnownFormat::Int64)),
            )
            .required("minor")
            .property("currency", string().pattern(Some("^[A-Z]{3}$")))
            .required("currency")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .description(Some(
                "Amount in minor units (kopecks, cents) and an ISO 4217 currency.",
            ))
            .into(),
        FieldType::Password => ObjectBuilder::new()
            .schema_type(ty(Type::String))
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Password)))
            .min_length(Some(crate::records::password::MIN_LEN))
            .max_length(field.max_len.or(Some(1000)))
            .write_only(Some(true))
            .description(Some(
                "Write-only: stored as an argon2id hash, never returned.",
            ))
            .into(),
        FieldType::Set => ArrayBuilder::new()
            .schema_type(ty(Type::Array))
            .items(
                string()
                    .max_length(field.max_len.or(Some(1000)))
                    .min_length(Some(1)),
            )
            .max_items(Some(100))
            .into(),
    };
    RefOr::T(schema)
}

#[derive(Clone, Copy, PartialEq)]
enum RecordShape {
    /// As GET returns it: every key present.
    Full,
    /// As a list returns it when `fields` selects some keys.
    Selected,
}

fn record_schema(kind: &KindDef, shape: RecordShape) -> OaSchema {
    let mut object = ObjectBuilder::new()
        .description(Some(format!("A {} record.", kind.label.to_lowercase())))
        .property(
            "id",
            string().format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))),
        )
        .required("id");
    let mut keys = Vec::new();
    for field in kind.shown_fields() {
        object = object.property(
            field.name.clone(),
            field_schema(field, field.ty != FieldType::Set),
        );
        keys.push(field.name.clone());
    }
    let datetime = || string().format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)));
    object = object
        .property("created_at", datetime())
        .property("updated_at", datetime())
        .property(
            "version",
            ArrayBuilder::new().items(string()).description(Some(
                "The document's heads: changes here make a new version.",
            )),
        )
        .property(
            "conflicts",
            ObjectBuilder::new()
                .description(Some(
                    "Fields holding concurrent values; present only when there are some.",
                ))
                .additional_properties(Some(
                    ArrayBuilder::new().items(schema_ref("ConflictValue")),
                )),
        );
    keys.extend(["created_at", "updated_at", "version"].map(str::to_owned));
    if shape == RecordShape::Full {
        for key in keys {
            object = object.required(key);
        }
    }
    object
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .into()
}

fn input_schema(kind: &KindDef, create: bool) -> OaSchema {
    let mut object = ObjectBuilder::new().description(Some(if create {
        format!(
            "A new {}; absent fields take their defaults.",
            kind.label.to_lowercase()
        )
    } else {
        "A JSON merge patch: only the fields sent change; null clears a field.".to_owned()
    }));
    for field in &kind.fields {
        object = object.property(field.name.clone(), field_schema(field, !field.required));
        if create && field.required {
            object = object.required(field.name.clone());
        }
    }
    object
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .into()
}

/// A required JSON request body of the named component schema.
fn json_request(schema: &str) -> utoipa::openapi::request_body::RequestBody {
    json_body(schema, true)
}

/// A JSON request body of the named component schema.
fn json_body(schema: &str, required: bool) -> utoipa::openapi::request_body::RequestBody {
    RequestBodyBuilder::new()
        .required(Some(if required {
            Required::True
        } else {
            Required::False
        }))
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(schema_ref(schema)))
                .build(),
        )
        .build()
}

fn json_response(description: &str, schema: RefOr<OaSchema>) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new().schema(Some(schema)).build(),
        )
        .build()
}

fn problem(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(schema_ref("Problem")))
                .build(),
        )
        .build()
}

/// What every write may answer when the storage refuses it.
const STORAGE_UNAVAILABLE: &str = "The database cannot take writes (disk full, size limit \
    reached, read-only data folder); nothing changed. Reads still work; retry after the \
    seconds in Retry-After.";

fn record_response(kind: &KindDef, description: &str) -> utoipa::openapi::Response {
    let mut response = json_response(description, schema_ref(&schema_name(kind)));
    response.headers.insert(
        "ETag".into(),
        utoipa::openapi::HeaderBuilder::new()
            .schema(string())
            .description(Some("The record's version, for If-Match."))
            .build(),
    );
    response
}

fn query(
    name: &str,
    schema: impl Into<RefOr<OaSchema>>,
    description: &str,
) -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .schema(Some(schema))
        .description(Some(description))
        .build()
}

fn limit_param(max: usize, description: &str) -> utoipa::openapi::path::Parameter {
    let schema = ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(1))
        .maximum(Some(i32::try_from(max).unwrap_or(i32::MAX)));
    query("limit", schema, description)
}

fn id_param() -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name("id")
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .schema(Some(
            string().format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))),
        ))
        .build()
}

fn with_id(kind: &KindDef, op: OperationBuilder) -> OperationBuilder {
    op.tag(kind.collection.clone())
        .parameter(id_param())
        .response("400", problem("The id is not a record id."))
        .response("404", problem("No record of this kind has this id."))
}

fn health_op() -> OperationBuilder {
    OperationBuilder::new()
        .operation_id(Some("health"))
        .summary(Some("Answers when the node is ready"))
        .response("200", json_response("Ready.", schema_ref("Health")))
}

fn openapi_op() -> OperationBuilder {
    OperationBuilder::new()
        .operation_id(Some("openapi"))
        .summary(Some("This document"))
        .response(
            "200",
            json_response(
                "The OpenAPI description.",
                RefOr::T(ObjectBuilder::new().into()),
            ),
        )
}

fn search_op(schema: &Schema) -> OperationBuilder {
    let kinds: Vec<serde_json::Value> =
        schema.kinds().iter().map(|k| json!(k.collection)).collect();
    let page = ObjectBuilder::new()
        .property("items", ArrayBuilder::new().items(schema_ref("SearchHit")))
        .required("items")
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    OperationBuilder::new()
        .operation_id(Some("search"))
        .tag("search")
        .summary(Some("Full-text search over all kinds"))
        .description(Some(
            "Every word must match the start of a word in a searchable field; best hits first.",
        ))
        .parameter(
            ParameterBuilder::new()
                .name("q")
                .parameter_in(ParameterIn::Query)
                .required(Required::True)
                .schema(Some(string().min_length(Some(1)).pattern(Some("\\S"))))
                .description(Some("What to look for.")),
        )
        .parameter(query(
            "kind",
            string().enum_values(Some(kinds)),
            "Only hits of this collection.",
        ))
        .parameter(limit_param(
            SEARCH_MAX_LIMIT,
            "Most hits to return (default 20).",
        ))
        .response(
            "200",
            json_response("Hits, best first.", RefOr::T(page.into())),
        )
        .response(
            "400",
            problem("q is missing or has no words, or a parameter is unknown or out of range."),
        )
        .response("404", problem("Unknown kind."))
}

/// Filter parameters of a kind's list, derived from its indexed fields.
fn filter_params(kind: &KindDef) -> Vec<utoipa::openapi::path::Parameter> {
    let mut params = Vec::new();
    let datetime = || string().format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)));
    for meta in ["created_at", "updated_at"] {
        for (op, _) in RANGE_OPS {
            params.push(query(
                &format!("{meta}.{op}"),
                datetime(),
                &format!("{meta} {op} this instant."),
            ));
        }
    }
    for field in kind.fields.iter().filter(|f| f.indexed) {
        let operand: RefOr<OaSchema> = match field.ty {
            FieldType::Integer | FieldType::Money => RefOr::T(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                    .into(),
            ),
            FieldType::Set => RefOr::T(string().into()),
            _ => field_schema(field, false),
        };
        let eq_desc = if field.ty == FieldType::Set {
            format!("Records whose {} contain this member.", field.name)
        } else {
            format!(
                "Records whose {} equals this (case-insensitive for text).",
                field.name
            )
        };
        params.push(query(&field.name, operand.clone(), &eq_desc));
        if field.ty.is_textual() {
            params.push(query(
                &format!("{}.prefix", field.name),
                string(),
                &format!("{} starts with this.", field.name),
            ));
        }
        if field.ty.is_ordered() {
            for (op, _) in RANGE_OPS {
                params.push(query(
                    &format!("{}.{op}", field.name),
                    operand.clone(),
                    &format!("{} {op} this.", field.name),
                ));
            }
        }
    }
    params
}

fn sort_values(kind: &KindDef) -> Vec<serde_json::Value> {
    let mut names = vec!["created_at".to_owned(), "updated_at".to_owned()];
    names.extend(
        kind.fields
            .iter()
            .filter(|f| f.indexed && f.ty != FieldType::Set)
            .map(|f| f.name.clone()),
    );
    names
        .iter()
        .flat_map(|n| [json!(n), json!(format!("-{n}"))])
        .collect()
}

fn list_op(kind: &KindDef) -> OperationBuilder {
    let label = schema_name(kind);
    let page = ObjectBuilder::new()
        .property(
            "items",
            ArrayBuilder::new().items(schema_ref(&format!("{label}Item"))),
        )
        .required("items")
        .property(
            "next_cursor",
            ObjectBuilder::new()
                .schema_type(nullable(Type::String))
                .description(Some("Pass as cursor for the next page; null on the last.")),
        )
        .required("next_cursor")
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    OperationBuilder::new()
        .operation_id(Some(format!("list_{}", kind.collection)))
        .tag(kind.collection.clone())
        .summary(Some(format!("List {}", kind.collection)))
        .parameter(query(
            "sort",
            string().enum_values(Some(sort_values(kind))),
            "Sort key; - for descending (default -updated_at).",
        ))
        .parameter(limit_param(MAX_LIMIT, "Page size (default 50)."))
        .parameter(query(
            "cursor",
            string(),
            "next_cursor of the previous page.",
        ))
        .parameter(query(
            "fields",
            string(),
            "Comma-separated keys to return (id is always returned).",
        ))
        .parameters(Some(filter_params(kind)))
        .response(
            "200",
            json_response("A page of records.", RefOr::T(page.into())),
        )
        .response(
            "400",
            problem(
                "A parameter is unknown, not filterable, or has a bad value; or the cursor is bad.",
            ),
        )
}

fn create_op(kind: &KindDef) -> OperationBuilder {
    let label = schema_name(kind);
    let mut created = record_response(kind, "Created.");
    created.headers.insert(
        "Location".into(),
        utoipa::openapi::HeaderBuilder::new()
            .schema(string())
            .description(Some("The new record's URL."))
            .build(),
    );
    let op = OperationBuilder::new()
        .operation_id(Some(format!("create_{}", kind.collection)))
        .tag(kind.collection.clone())
        .summary(Some(format!("Create a {}", kind.label.to_lowercase())))
        .request_body(Some(json_request(&format!("{label}Create"))))
        .response("201", created)
        .response("400", problem("The body is not a JSON object."))
        .response("413", problem("The body is too large."))
        .response("415", problem("The body is not JSON."))
        .response("422", problem("Fields fail validation (see errors)."))
        .response("503", problem(STORAGE_UNAVAILABLE));
    with_unique(kind, op)
}

/// Adds the 409 of a kind with unique fields (a user's login).
fn with_unique(kind: &KindDef, op: OperationBuilder) -> OperationBuilder {
    let unique: Vec<&str> = kind
        .fields
        .iter()
        .filter(|f| f.unique)
        .map(|f| f.name.as_str())
        .collect();
    if unique.is_empty() {
        return op;
    }
    op.response(
        "409",
        problem(&format!(
            "Another active record has this {}.",
            unique.join(" or ")
        )),
    )
}

fn get_op(kind: &KindDef) -> OperationBuilder {
    with_id(kind, OperationBuilder::new())
        .operation_id(Some(format!("get_{}", kind.collection)))
        .summary(Some(format!("Read a {}", kind.label.to_lowercase())))
        .response("200", record_response(kind, "The record."))
        .response("410", problem("The record was deleted."))
}

fn patch_op(kind: &KindDef) -> OperationBuilder {
    let label = schema_name(kind);
    let op = with_id(kind, OperationBuilder::new())
        .operation_id(Some(format!("update_{}", kind.collection)))
        .summary(Some(format!(
            "Change a {} (JSON merge patch)",
            kind.label.to_lowercase()
        )))
        .parameter(
            ParameterBuilder::new()
                .name("If-Match")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .schema(Some(string()))
                .description(Some(
                    "The ETag the change is based on; 412 if the record changed since.",
                )),
        )
        .request_body(Some(
            RequestBodyBuilder::new()
                .required(Some(Required::True))
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(schema_ref(&format!("{label}Patch"))))
                        .build(),
                )
                .content(
                    "application/merge-patch+json",
                    ContentBuilder::new()
                        .schema(Some(schema_ref(&format!("{label}Patch"))))
                        .build(),
                )
                .build(),
        ))
        .response("200", record_response(kind, "The changed record."))
        .response("410", problem("The record was deleted."))
        .response(
            "412",
            problem("The record changed since the If-Match version."),
        )
        .response("413", problem("The body is too large."))
        .response("415", problem("The body is not JSON."))
        .response("422", problem("Fields fail validation (see errors)."))
        .response("503", problem(STORAGE_UNAVAILABLE));
    with_unique(kind, op)
}

fn delete_op(kind: &KindDef) -> OperationBuilder {
    with_id(kind, OperationBuilder::new())
        .operation_id(Some(format!("delete_{}", kind.collection)))
        .summary(Some(format!(
            "Delete a {} (soft: restore brings it back)",
            kind.label.to_lowercase()
        )))
        .response(
            "204",
            ResponseBuilder::new().description("Deleted.").build(),
        )
        .response("410", problem("Already deleted."))
        .response("503", problem(STORAGE_UNAVAILABLE))
}

fn restore_op(kind: &KindDef) -> OperationBuilder {
    let op = with_id(kind, OperationBuilder::new())
        .operation_id(Some(format!("restore_{}", kind.collection)))
        .summary(Some(format!(
            "Restore a deleted {}",
            kind.label.to_lowercase()
        )))
        .response("200", record_response(kind, "The restored record."))
        .response("503", problem(STORAGE_UNAVAILABLE));
    with_unique(kind, op)
}

fn history_op(kind: &KindDef) -> OperationBuilder {
    let page = ObjectBuilder::new()
        .property(
            "items",
            ArrayBuilder::new().items(schema_ref("HistoryEntry")),
        )
        .required("items")
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    with_id(kind, OperationBuilder::new())
        .operation_id(Some(format!("history_{}", kind.collection)))
        .summary(Some("Every change of the record: when, where, who, what"))
        .response(
            "200",
            json_response("Changes, oldest first.", RefOr::T(page.into())),
        )
}
