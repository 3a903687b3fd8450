//! The OpenAPI description of CSV import and export, one pair of paths per
//! record kind.

use crm_schema::KindDef;
use utoipa::openapi::path::{OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, HttpMethod, PathItem, PathsBuilder, Required,
    ResponseBuilder,
};

use super::{json_response, problem, query, schema_ref, string};
use crate::api::transfer::{ImportResult, CSV_MEDIA_TYPE};
use crate::records::csv_io::RowError;

pub fn components(components: ComponentsBuilder) -> ComponentsBuilder {
    components
        .schema_from::<ImportResult>()
        .schema_from::<RowError>()
}

pub fn paths(paths: PathsBuilder, kind: &KindDef) -> PathsBuilder {
    export_path(paths, kind).path(
        format!("/api/v1/import/{}", kind.collection),
        PathItem::new(HttpMethod::Post, import(kind)),
    )
}

/// The export alone, for a kind nobody imports (a system kind).
pub fn export_path(paths: PathsBuilder, kind: &KindDef) -> PathsBuilder {
    paths.path(
        format!("/api/v1/export/{}", kind.collection),
        PathItem::new(HttpMethod::Get, export(kind)),
    )
}

fn csv_content() -> utoipa::openapi::Content {
    ContentBuilder::new().schema(Some(string())).build()
}

fn import(kind: &KindDef) -> OperationBuilder {
    OperationBuilder::new()
        .operation_id(Some(format!("import_{}", kind.collection)))
        .tag(kind.collection.clone())
        .summary(Some(format!("Import {} from CSV", kind.collection)))
        .description(Some(
            "The first row names the columns; a column maps to the field of the same name \
             unless `map` says otherwise. Every row is checked first; then all are written in \
             one transaction, or none when a row fails (422 lists the rows). Empty cells leave \
             a field unset; sets are `;`-separated; money is `<minor units> <currency>`.",
        ))
        .parameter(
            ParameterBuilder::new()
                .name("map")
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some(
                    "`column:field`, or `column:-` to skip a column; repeatable.",
                ))
                .schema(Some(ArrayBuilder::new().items(string()))),
        )
        .parameter(query(
            "dry_run",
            ObjectBuilder::new()
                .schema_type(utoipa::openapi::schema::Type::String)
                .enum_values(Some(["true", "false"])),
            "Check every row but write nothing.",
        ))
        .request_body(Some(
            RequestBodyBuilder::new()
                .required(Some(Required::True))
                .content(CSV_MEDIA_TYPE, csv_content())
                .content("application/csv", csv_content())
                .build(),
        ))
        .response(
            "200",
            json_response("Imported.", schema_ref("ImportResult")),
        )
        .response(
            "400",
            problem("The CSV does not parse, a column is not a field, or a parameter is bad."),
        )
        .response("413", problem("The file is larger than max_import_bytes."))
        .response("415", problem("The body is not text/csv."))
        .response(
            "422",
            problem(
                "Rows do not pass validation (`rejected`, `rejected_count`); nothing was imported.",
            ),
        )
}

fn export(kind: &KindDef) -> OperationBuilder {
    OperationBuilder::new()
        .operation_id(Some(format!("export_{}", kind.collection)))
        .tag(kind.collection.clone())
        .summary(Some(format!("Export the live {} as CSV", kind.collection)))
        .response(
            "200",
            ResponseBuilder::new()
                .description("id, every field, created_at, updated_at; one row per record.")
                .content("text/csv; charset=utf-8", csv_content())
                .build(),
        )
}
