//! Records in and out as CSV: an import checks every row first and then
//! writes all of them in one transaction (nothing half-imported); an export
//! writes every live record of a kind, page by page.
//!
//! Cells: the first row names the columns; a column maps to the field of the
//! same name unless mapped otherwise. An empty cell leaves the field unset.
//! Sets are `;`-separated, money is `<minor units> <currency>` (e.g.
//! `150000 RUB`), booleans `true`/`false`.

use std::collections::HashMap;

use crm_schema::{FieldDef, FieldType, KindDef};
use serde::Serialize;
use serde_json::{json, Map, Value as Json};

use super::input::{check_new, Assignments, FieldError};
use super::RecordError;

/// Rejected rows reported at most; the count covers all of them.
const REPORTED_ROWS: usize = 100;

/// A row that did not pass, by its line in the file (the header is line 1).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RowError {
    pub row: u64,
    pub errors: Vec<FieldError>,
}

/// How the file's columns map to fields.
#[derive(Debug, Clone, Default)]
pub struct ColumnMap {
    /// Header -> field name, or `None` to skip the column.
    explicit: HashMap<String, Option<String>>,
}

impl ColumnMap {
    /// Parses `header:field` entries; `header:-` skips a column.
    pub fn parse(entries: &[String]) -> Result<ColumnMap, RecordError> {
        let mut explicit = HashMap::new();
        for entry in entries {
            let (header, field) = entry.rsplit_once(':').ok_or_else(|| {
                RecordError::BadQuery(format!(
                    "map `{entry}`: write it as `column:field` (or `column:-` to skip the column)"
                ))
            })?;
            let field = (field != "-").then(|| field.to_owned());
            explicit.insert(header.to_owned(), field);
        }
        Ok(ColumnMap { explicit })
    }

    /// The field index of every column (`None`: skipped).
    fn resolve(
        &self,
        kind: &KindDef,
        headers: &[String],
    ) -> Result<Vec<Option<usize>>, RecordError> {
        let mut out = Vec::with_capacity(headers.len());
        let mut unknown = Vec::new();
        let mut seen: HashMap<usize, &str> = HashMap::new();
        for header in headers {
            let name = match self.explicit.get(header) {
                Some(None) => {
                    out.push(None);
                    continue;
                }
                Some(Some(field)) => field.as_str(),
                None => header.trim(),
            };
            let Some(index) = kind
                .fields
                .iter()
                .position(|f| f.name.eq_ignore_ascii_case(name))
            else {
                unknown.push(header.clone());
                out.push(None);
                continue;
            };
            if let Some(previous) = seen.insert(index, header) {
                return Err(RecordError::BadQuery(format!(
                    "columns `{previous}` and `{header}` both map to field {}",
                    kind.fields[index].name
                )));
            }
            out.push(Some(index));
        }
        if !unknown.is_empty() {
            return Err(RecordError::BadQuery(format!(
                "columns that are not fields of {}: {}; map them with map=column:field or skip them with map=column:-",
                kind.collection,
                unknown.join(", ")
            )));
        }
        Ok(out)
    }
}

/// A cell as the JSON the create endpoint would take for the field.
fn cell_json(field: &FieldDef, cell: &str) -> Json {
    match field.ty {
        FieldType::Integer => cell
            .parse::<i64>()
            .map_or_else(|_| json!(cell), |n| json!(n)),
        FieldType::Bool => match cell.to_lowercase().as_str() {
            "true" | "1" | "yes" | "да" => json!(true),
            "false" | "0" | "no" | "нет" => json!(false),
            _ => json!(cell),
        },
        FieldType::Set => json!(cell
            .split(';')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .collect::<Vec<_>>()),
        FieldType::Money => match cell.split_once(' ') {
            Some((minor, currency)) => match minor.trim().parse::<i64>() {
                Ok(minor) => json!({"minor": minor, "currency": currency.trim()}),
                Err(_) => json!(cell),
            },
            None => json!(cell),
        },
        _ => json!(cell),
    }
}

/// Every row of `csv` checked against `kind`: the rows' assignments when all
/// pass, else [`RecordError::ImportRejected`] with the rejected rows (at most
/// [`REPORTED_ROWS`]) and their count.
pub fn parse_rows(
    kind: &KindDef,
    csv: &[u8],
    map: &ColumnMap,
) -> Result<Vec<Assignments>, RecordError> {
    let file = CsvRows::read(kind, csv, map)?;
    let mut rows = Vec::with_capacity(file.len());
    let mut rejections = Rejections::default();
    for index in 0..file.len() {
        match check_new(kind, &file.body(kind, index)) {
            Ok(assignments) => rows.push(assignments),
            Err(errors) => rejections.add(index, errors),
        }
        if (index + 1) % 50_000 == 0 {
            tracing::info!(kind = %kind.collection, rows = index + 1, "import: rows checked");
        }
    }
    rejections.into_result()?;
    Ok(rows)
}

/// The data rows of a CSV file as read, with the field each column goes
/// to; nothing is checked yet but the CSV itself and its header. Rows stay
/// CSV records (one buffer each) until they are checked: as JSON bodies,
/// a 100,000-row file took a quarter of a gigabyte.
pub struct CsvRows {
    columns: Vec<Option<usize>>,
    records: Vec<csv::StringRecord>,
}

impl CsvRows {
    pub fn read(kind: &KindDef, csv: &[u8], map: &ColumnMap) -> Result<CsvRows, RecordError> {
        let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(csv);
        let headers: Vec<String> = reader
            .headers()
            .map_err(|e| RecordError::BadQuery(format!("the CSV header does not parse: {e}")))?
            .iter()
            .map(str::to_owned)
            .collect();
        let columns = map.resolve(kind, &headers)?;
        let records = reader
            .records()
            .enumerate()
            .map(|(index, record)| {
                record.map_err(|e| {
                    RecordError::BadQuery(format!(
                        "line {} of the CSV does not parse: {e}",
                        line_of(index)
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(CsvRows { columns, records })
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The data row at `index` as a request body (field name -> value).
    pub fn body(&self, kind: &KindDef, index: usize) -> Map<String, Json> {
        let mut body = Map::new();
        let Some(record) = self.records.get(index) else {
            return body;
        };
        for (cell, column) in record.iter().zip(&self.columns) {
            if let (Some(index), false) = (column, cell.trim().is_empty()) {
                let field = &kind.fields[*index];
                body.insert(field.name.clone(), cell_json(field, cell));
            }
        }
        body
    }
}

/// The line of the data row at `index` (the header is line 1).
fn line_of(index: usize) -> u64 {
    index as u64 + 2
}

/// The rows that did not pass, gathered from any number of checkers.
#[derive(Default)]
pub struct Rejections {
    rows: Vec<RowError>,
    count: u64,
}

impl Rejections {
    /// The data row at `index` did not pass.
    pub fn add(&mut self, index: usize, errors: Vec<FieldError>) {
        self.count += 1;
        // Kept whole until the end: checkers report out of order, and the
        // report lists the first rows of the file.
        self.rows.push(RowError {
            row: line_of(index),
            errors,
        });
        if self.rows.len() >= 2 * REPORTED_ROWS {
            self.trim();
        }
    }

    pub fn append(&mut self, other: Rejections) {
        self.count += other.count;
        self.rows.extend(other.rows);
        self.trim();
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn trim(&mut self) {
        self.rows.sort_by_key(|r| r.row);
        self.rows.truncate(REPORTED_ROWS);
    }

    /// `Ok` when no row was rejected, else the import's rejection.
    pub fn into_result(mut self) -> Result<(), RecordError> {
        if self.count == 0 {
            return Ok(());
        }
        self.trim();
        Err(RecordError::ImportRejected {
            rejected: self.rows,
            count: self.count,
        })
    }
}

/// A row refused by a check made while writing (a reference, a unique
/// value), as an import's rejection; `index` counts data rows from 0.
pub fn reject_row(index: usize, error: RecordError) -> RecordError {
    let errors = match error {
        RecordError::Invalid(errors) => errors,
        RecordError::Duplicate { field, value, .. } => vec![super::FieldError::new(
            &field,
            super::Invalid::new(
                super::ErrorCode::Unique,
                format!("{value:?} is taken by another record"),
            ),
        )],
        other => return other,
    };
    RecordError::ImportRejected {
        rejected: vec![RowError {
            row: line_of(index),
            errors,
        }],
        count: 1,
    }
}

/// A cell for an exported value (the record JSON's member).
fn export_cell(value: &Json) -> String {
    match value {
        Json::Null => String::new(),
        Json::String(s) => s.clone(),
        Json::Array(items) => items.iter().map(export_cell).collect::<Vec<_>>().join(";"),
        Json::Object(o) if o.contains_key("minor") => format!(
            "{} {}",
            o.get("minor").map(export_cell).unwrap_or_default(),
            o.get("currency").map(export_cell).unwrap_or_default()
        ),
        other => other.to_string(),
    }
}

/// The export's header: id, every field, then the times.
pub fn export_header(kind: &KindDef) -> Vec<String> {
    let mut header = vec!["id".to_owned()];
    header.extend(kind.shown_fields().map(|f| f.name.clone()));
    header.extend(["created_at".to_owned(), "updated_at".to_owned()]);
    header
}

/// Rows of CSV text for records (JSON as served), with the header first
/// when asked.
pub fn export_rows(
    kind: &KindDef,
    records: &[Json],
    with_header: bool,
) -> Result<Vec<u8>, RecordError> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let header = export_header(kind);
    let internal = |e: csv::Error| RecordError::Internal(format!("writing CSV: {e}"));
    if with_header {
        writer.write_record(&header).map_err(internal)?;
    }
    for record in records {
        writer
            .write_record(header.iter().map(|key| export_cell(&record[key.as_str()])))
            .map_err(internal)?;
    }
    writer
        .into_inner()
        .map_err(|e| RecordError::Internal(format!("writing CSV: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clients() -> KindDef {
        crm_schema::Schema::builtin()
            .expect("schema")
            .kind("clients")
            .expect("clients")
            .clone()
    }

    #[test]
    fn rows_are_checked_all_at_once_with_line_numbers() {
        let csv = "name,client_type,tax_id,tags\n\
                   Alpha,company,7707083893,vip;опт\n\
                   ,company,,\n\
                   Gamma,robot,,\n";
        let Err(RecordError::ImportRejected { rejected, count }) =
            parse_rows(&clients(), csv.as_bytes(), &ColumnMap::default())
        else {
            panic!("two rows fail");
        };
        assert_eq!(count, 2);
        assert_eq!(rejected[0].row, 3);
        assert_eq!(rejected[0].errors[0].field, "name");
        assert_eq!(rejected[1].row, 4);
        assert_eq!(rejected[1].errors[0].field, "client_type");
    }

    #[test]
    fn columns_map_by_name_or_explicitly_and_unknown_ones_are_refused() {
        let csv = "Название,Тип,junk\nAlpha,company,x\n";
        let refused = parse_rows(&clients(), csv.as_bytes(), &ColumnMap::default());
        assert!(matches!(refused, Err(RecordError::BadQuery(m)) if m.contains("Название")));
        let map = ColumnMap::parse(&[
            "Название:name".into(),
            "Тип:client_type".into(),
            "junk:-".into(),
        ])
        .expect("map parses");
        let rows = parse_rows(&clients(), csv.as_bytes(), &map).expect("valid");
        assert_eq!(rows.len(), 1);
    }

    #[test]
    fn export_cells_round_trip_sets_and_blanks() {
        let kind = clients();
        let record = json!({"id": "x", "name": "Alpha, Ltd", "tags": ["a", "b"], "notes": null});
        let text =
            String::from_utf8(export_rows(&kind, &[record], true).expect("writes")).expect("utf-8");
        let mut lines = text.lines();
        assert!(lines.next().is_some_and(|h| h.starts_with("id,name,")));
        let row = lines.next().expect("a row");
        assert!(row.starts_with("x,\"Alpha, Ltd\","), "{row}");
        assert!(row.contains(",a;b,"), "{row}");
    }
}
