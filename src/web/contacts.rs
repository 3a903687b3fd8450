//! The list of contact persons (each opens its card, `card.rs`; new ones
//! are added from their client's card).

use super::card::CONTACTS;
use super::lists::ListSpec;

pub const LIST: ListSpec = ListSpec {
    collection: CONTACTS,
    title: "contacts.title",
    search: "last_name",
    filters: &["position", "preferred_channel"],
    columns: &["first_name", "position", "phone", "email"],
    sorts: &[
        ("last_name", "contacts.sort_last_name"),
        ("-updated_at", "list.sort_updated_desc"),
        ("-created_at", "list.sort_created_desc"),
    ],
    new: None,
};
