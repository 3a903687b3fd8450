//! The lists of deals and invoices. Their cards and edits are the generic
//! card's (`card.rs`, at `/records/<collection>/<id>`); records are created
//! through the API or an import.

use super::lists::ListSpec;

pub const DEALS: ListSpec = ListSpec {
    collection: "deals",
    title: "deals.title",
    search: "title",
    filters: &["stage", "manager", "source", "office"],
    columns: &["stage", "amount", "expected_close", "manager"],
    sorts: &[
        ("-updated_at", "list.sort_updated_desc"),
        ("expected_close", "deals.sort_expected_close"),
        ("-amount", "deals.sort_amount_desc"),
        ("-created_at", "list.sort_created_desc"),
    ],
    new: None,
};

pub const INVOICES: ListSpec = ListSpec {
    collection: "invoices",
    title: "invoices.title",
    search: "number",
    filters: &["status", "manager", "office"],
    columns: &["issued_on", "status", "total", "due_on", "manager"],
    sorts: &[
        ("-issued_on", "invoices.sort_issued_desc"),
        ("due_on", "invoices.sort_due"),
        ("-updated_at", "list.sort_updated_desc"),
        ("-total", "invoices.sort_total_desc"),
    ],
    new: None,
};
