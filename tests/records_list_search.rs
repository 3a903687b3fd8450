//! List and search over the HTTP API against a real node: equality, prefix,
//! range and set filters, sorting, cursor pagination, field selection, limit
//! bounds; full-text search by word prefix in Cyrillic and Latin, kind filter,
//! ranking and absence of deleted records. See the API section of README.md.

mod common;

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, FixedOffset};
use serde_json::{json, Value};

use common::{create, id_of, list_all, list_ids, search, search_ids, sorted, with_query, TestNode};

/// A handful of clients with distinct names; returns name -> record.
async fn seed_clients(node: &TestNode) -> BTreeMap<String, Value> {
    let rows = [
        json!({"name": "Alpha Trading", "city": "Moscow", "stage": "regular", "client_type": "company",
               "tags": ["vip", "b2b"], "email": "sales@alpha.ru", "phone": "+7 (912) 111-22-33"}),
        json!({"name": "Alpine Foods", "city": "moscow", "client_type": "company",
               "email": "info@alpine.ru", "phone": "+7 912 444 55 66"}),
        json!({"name": "Beta Logistics", "city": "Kazan", "client_type": "company", "tags": ["b2b"],
               "email": "sales@beta.ru", "phone": "+7 495 123-45-67"}),
        json!({"name": "Gamma Service", "city": "Moscow", "stage": "lost", "client_type": "person", "tags": ["vip"]}),
        json!({"name": "Delta Retail", "city": "Saint Petersburg", "stage": "one_time"}),
        json!({"name": "ООО Ромашка", "city": "Moscow", "stage": "regular", "client_type": "company",
               "tags": ["vip", "b2b", "retail"]}),
    ];
    let mut by_name = BTreeMap::new();
    for row in rows {
        let name = row["name"].as_str().expect("literal name").to_owned();
        let record = create(node, "clients", row).await;
        by_name.insert(name, record);
    }
    by_name
}

/// A list query and the names (or labels) of the records it must return.
type FilterCase = (
    &'static [(&'static str, &'static str)],
    &'static [&'static str],
);

/// Filters over the clients of [`seed_clients`], by name.
#[rustfmt::skip]
const CLIENT_FILTERS: &[FilterCase] = &[
    (&[("city", "moscow")], &["Alpha Trading", "Alpine Foods", "Gamma Service", "ООО Ромашка"]),
    (&[("city", "MOSCOW"), ("stage", "regular")], &["Alpha Trading", "ООО Ромашка"]),
    (&[("stage", "potential")], &["Alpine Foods", "Beta Logistics"]),
    (&[("client_type", "person")], &["Gamma Service"]),
    (&[("name", "alpha trading")], &["Alpha Trading"]),
    (&[("name", "ооо ромашка")], &["ООО Ромашка"]),
    (&[("city", "Novosibirsk")], &[]),
    (&[("name.prefix", "Alp")], &["Alpha Trading", "Alpine Foods"]),
    (&[("email.prefix", "sales@")], &["Alpha Trading", "Beta Logistics"]),
    (&[("phone.prefix", "+7 912")], &["Alpha Trading", "Alpine Foods"]),
    (&[("stage.prefix", "one")], &["Delta Retail"]),
    (&[("tags", "vip")], &["Alpha Trading", "Gamma Service", "ООО Ромашка"]),
    (&[("tags", "vip"), ("tags", "b2b")], &["Alpha Trading", "ООО Ромашка"]),
    (&[("tags", "retail"), ("city", "moscow")], &["ООО Ромашка"]),
    (&[("tags", "nothing")], &[]),
];

/// Filters over contacts A..E born 1980-01-01, 1985-06-15, 1990-12-31,
/// 2000-02-29 and never (E), by last name.
#[rustfmt::skip]
const BIRTHDAY_FILTERS: &[FilterCase] = &[
    (&[("birthday.gte", "1985-06-15"), ("birthday.lt", "2000-02-29")], &["B", "C"]),
    (&[("birthday.gt", "1990-12-31")], &["D"]),
    (&[("birthday.lte", "1980-01-01")], &["A"]),
    (&[("birthday.lt", "1970-01-01")], &[]),
    (&[("birthday", "1990-12-31")], &["C"]),
];

/// Ids of the named records, sorted.
fn ids_of(by_name: &BTreeMap<String, Value>, names: &[&str]) -> Vec<String> {
    sorted(names.iter().map(|n| id_of(&by_name[*n])).collect())
}

fn created_at(record: &Value) -> DateTime<FixedOffset> {
    let text = record["created_at"]
        .as_str()
        .expect("created_at is a string");
    DateTime::parse_from_rfc3339(text).expect("created_at is RFC 3339")
}

#[tokio::test]
async fn equality_prefix_and_set_filters() {
    let node = TestNode::start().await;
    let clients = seed_clients(&node).await;
    let cases = CLIENT_FILTERS;
    let mut failures = Vec::new();
    for (params, names) in cases {
        let got = sorted(list_ids(&node, "clients", params).await);
        if got != ids_of(&clients, names) {
            failures.push(format!("{params:?}: want {names:?}, got ids {got:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "filters disagree:\n{}",
        failures.join("\n")
    );
}

#[tokio::test]
async fn range_filters_on_created_at_and_birthday() {
    let node = TestNode::start().await;
    let clients: Vec<Value> = seed_clients(&node).await.into_values().collect();
    let mut by_time = clients.clone();
    by_time.sort_by_key(created_at);
    let pivot = &by_time[by_time.len() / 2];
    let pivot_text = pivot["created_at"]
        .as_str()
        .expect("created_at is a string");
    let expect = |keep: &dyn Fn(DateTime<FixedOffset>) -> bool| -> Vec<String> {
        sorted(
            clients
                .iter()
                .filter(|c| keep(created_at(c)))
                .map(id_of)
                .collect(),
        )
    };
    let p = created_at(pivot);
    let cases: [(&str, Vec<String>); 4] = [
        ("created_at.gt", expect(&|t| t > p)),
        ("created_at.gte", expect(&|t| t >= p)),
        ("created_at.lt", expect(&|t| t < p)),
        ("created_at.lte", expect(&|t| t <= p)),
    ];
    for (param, want) in cases {
        let got = sorted(list_ids(&node, "clients", &[(param, pivot_text)]).await);
        assert_eq!(got, want, "{param}={pivot_text}");
    }

    let owner = id_of(&clients[0]);
    let mut by_birthday = BTreeMap::new();
    for (last_name, birthday) in [
        ("A", json!("1980-01-01")),
        ("B", json!("1985-06-15")),
        ("C", json!("1990-12-31")),
        ("D", json!("2000-02-29")),
        ("E", Value::Null),
    ] {
        let body = json!({"client_id": owner, "last_name": last_name, "birthday": birthday});
        by_birthday.insert(last_name, id_of(&create(&node, "contacts", body).await));
    }
    let cases = BIRTHDAY_FILTERS;
    for (params, names) in cases {
        let want = sorted(names.iter().map(|n| by_birthday[n].clone()).collect());
        assert_eq!(
            sorted(list_ids(&node, "contacts", params).await),
            want,
            "{params:?}"
        );
    }
}

#[tokio::test]
async fn sorting_ascending_descending_and_default() {
    let node = TestNode::start().await;
    let clients = seed_clients(&node).await;
    let names_in = |items: &[Value]| -> Vec<String> {
        items
            .iter()
            .map(|i| i["name"].as_str().expect("name is a string").to_owned())
            .collect()
    };
    let mut ascending: Vec<String> = clients.keys().cloned().collect();
    assert_eq!(
        names_in(&list_all(&node, "clients", &[("sort", "name")]).await),
        ascending,
        "sort=name"
    );
    ascending.reverse();
    assert_eq!(
        names_in(&list_all(&node, "clients", &[("sort", "-name")]).await),
        ascending,
        "sort=-name"
    );

    let all: HashSet<String> = clients.values().map(id_of).collect();
    for (sort, rising) in [("created_at", true), ("-created_at", false)] {
        let items = list_all(&node, "clients", &[("sort", sort)]).await;
        assert_eq!(
            items.iter().map(id_of).collect::<HashSet<_>>(),
            all,
            "sort={sort} lists every record"
        );
        let times: Vec<_> = items.iter().map(created_at).collect();
        for pair in times.windows(2) {
            assert!(
                if rising {
                    pair[0] <= pair[1]
                } else {
                    pair[0] >= pair[1]
                },
                "sort={sort}: {times:?}"
            );
        }
    }

    // Default order is most recently updated first.
    let beta = id_of(&clients["Beta Logistics"]);
    let path = format!("/api/v1/clients/{beta}");
    node.patch_json(&path, &json!({"stage": "regular"}), None)
        .await
        .expect_status(200, "patch");
    assert_eq!(
        list_ids(&node, "clients", &[]).await.first(),
        Some(&beta),
        "default sort is -updated_at"
    );
}

#[tokio::test]
async fn cursor_pagination_limits_and_field_selection() {
    let node = TestNode::start().await;
    let mut all = Vec::new();
    for i in 0..55 {
        let city = if i % 2 == 0 { "Even" } else { "Odd" };
        let record = create(
            &node,
            "clients",
            json!({"name": format!("Client {i:02}"), "city": city}),
        )
        .await;
        all.push(record);
    }
    let all_ids: HashSet<String> = all.iter().map(id_of).collect();

    // Walk by hand to check page sizes, duplicates and omissions.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(pages <= 20, "pagination did not end");
        let mut params = vec![("limit", "7")];
        if let Some(c) = &cursor {
            params.push(("cursor", c.as_str()));
        }
        let resp = node.get(&with_query("/api/v1/clients", &params)).await;
        resp.expect_status(200, "page");
        let items = resp.json["items"].as_array().expect("items array");
        let next = resp.json["next_cursor"].as_str().map(str::to_owned);
        if next.is_some() {
            assert_eq!(items.len(), 7, "a page before the last is full");
        } else {
            assert!(
                items.len() <= 7 && !items.is_empty(),
                "last page has 1..=7 items"
            );
        }
        seen.extend(items.iter().map(id_of));
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(pages, 8, "55 records in pages of 7");
    assert_eq!(seen.len(), 55, "no duplicates or omissions");
    assert_eq!(seen.iter().cloned().collect::<HashSet<_>>(), all_ids);

    let names: Vec<String> = list_all(&node, "clients", &[("sort", "name"), ("limit", "10")])
        .await
        .iter()
        .map(|i| i["name"].as_str().expect("name").to_owned())
        .collect();
    let want: Vec<String> = (0..55).map(|i| format!("Client {i:02}")).collect();
    assert_eq!(names, want, "sorted pages concatenate in order");

    let even = sorted(list_ids(&node, "clients", &[("city", "Even"), ("limit", "4")]).await);
    let want_even = sorted(
        all.iter()
            .filter(|r| r["city"] == "Even")
            .map(id_of)
            .collect(),
    );
    assert_eq!(even, want_even, "filtered pagination");

    let default = node.get("/api/v1/clients").await;
    default.expect_status(200, "default list");
    assert_eq!(
        default.json["items"].as_array().map(Vec::len),
        Some(50),
        "default limit is 50"
    );
    assert!(
        default.json["next_cursor"].is_string(),
        "more after the default page"
    );
    let one = node.get("/api/v1/clients?limit=1").await;
    assert_eq!(
        one.json["items"].as_array().map(Vec::len),
        Some(1),
        "limit=1: {}",
        one.text
    );
    let max = node.get("/api/v1/clients?limit=200").await;
    assert_eq!(
        max.json["items"].as_array().map(Vec::len),
        Some(55),
        "limit=200: {}",
        max.text
    );
    assert_eq!(
        max.json["next_cursor"],
        Value::Null,
        "nothing after everything"
    );
    for bad in ["0", "201", "-1", "ten"] {
        node.get(&format!("/api/v1/clients?limit={bad}"))
            .await
            .expect_problem(400, &format!("limit={bad}"));
    }

    let selected = list_all(
        &node,
        "clients",
        &[("fields", "name,city"), ("limit", "200")],
    )
    .await;
    assert_eq!(selected.len(), 55);
    for item in &selected {
        let keys: HashSet<&str> = item
            .as_object()
            .expect("item is an object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            HashSet::from(["id", "name", "city"]),
            "fields=name,city: {item}"
        );
    }
}

#[tokio::test]
async fn search_by_prefix_in_cyrillic_and_latin() {
    let node = TestNode::start().await;
    let clients = seed_clients(&node).await;
    let romashka = id_of(&clients["ООО Ромашка"]);
    let alpha = id_of(&clients["Alpha Trading"]);
    let ivanov = create(
        &node,
        "contacts",
        json!({"client_id": alpha, "last_name": "Иванов", "first_name": "Иван"}),
    )
    .await;
    let romashov = create(
        &node,
        "contacts",
        json!({"client_id": romashka, "last_name": "Ромашов"}),
    )
    .await;
    let filler = "поставки оборудования и сервисное обслуживание ".repeat(40);
    let notes_only = create(
        &node,
        "clients",
        json!({"name": "Other Co", "notes": format!("{filler} ромашка {filler}")}),
    )
    .await;
    create(
        &node,
        "clients",
        json!({"name": "Web Co", "website": "zebra.example"}),
    )
    .await;

    let hits = search(&node, &[("q", "ромаш")]).await;
    for hit in &hits {
        assert!(
            hit["kind"].is_string() && hit["id"].is_string() && hit["title"].is_string(),
            "hit shape {hit}"
        );
    }
    let hit = hits
        .iter()
        .find(|h| id_of(h) == romashka)
        .expect("ромаш finds ООО Ромашка");
    assert_eq!(hit["kind"], "clients");
    assert_eq!(hit["title"], "ООО Ромашка");
    let ids: Vec<String> = hits.iter().map(id_of).collect();
    assert!(
        ids.contains(&id_of(&romashov)),
        "ромаш finds contact Ромашов: {hits:?}"
    );
    let rank = |id: &String| ids.iter().position(|x| x == id).expect("hit present");
    assert!(
        rank(&romashka) < rank(&id_of(&notes_only)),
        "name hit ranks above a notes mention: {hits:?}"
    );

    assert_eq!(
        sorted(search_ids(&node, "РОМАШКА").await),
        sorted(vec![romashka.clone(), id_of(&notes_only)])
    );
    assert!(
        search_ids(&node, "alp").await.contains(&alpha),
        "Latin prefix"
    );
    assert_eq!(
        search_ids(&node, "ALPHA trad").await,
        vec![alpha.clone()],
        "every word matches by prefix"
    );
    assert!(
        search_ids(&node, "zebra").await.is_empty(),
        "website is not searchable"
    );

    let people = search(&node, &[("q", "иван")]).await;
    let person = people
        .iter()
        .find(|h| id_of(h) == id_of(&ivanov))
        .expect("иван finds Иванов Иван");
    assert_eq!(person["kind"], "contacts");
    assert_eq!(person["title"].as_str().map(str::trim), Some("Иванов Иван"));

    let only_contacts = search(&node, &[("q", "ромаш"), ("kind", "contacts")]).await;
    assert_eq!(
        only_contacts.iter().map(id_of).collect::<Vec<_>>(),
        vec![id_of(&romashov)]
    );
    assert!(only_contacts.iter().all(|h| h["kind"] == "contacts"));
    let only_clients = search(&node, &[("q", "ромаш"), ("kind", "clients")]).await;
    assert!(
        !only_clients.is_empty() && only_clients.iter().all(|h| h["kind"] == "clients"),
        "{only_clients:?}"
    );
    assert_eq!(
        search(&node, &[("q", "ромаш"), ("limit", "1")]).await.len(),
        1,
        "search limit"
    );
}

#[tokio::test]
async fn deleted_records_leave_search() {
    let node = TestNode::start().await;
    let clients = seed_clients(&node).await;
    let romashka = id_of(&clients["ООО Ромашка"]);
    let contact = create(
        &node,
        "contacts",
        json!({"client_id": romashka, "last_name": "Ромашов"}),
    )
    .await;
    let contact_id = id_of(&contact);
    assert!(
        search_ids(&node, "ромаш").await.contains(&contact_id),
        "found before delete"
    );

    node.delete(&format!("/api/v1/contacts/{contact_id}"))
        .await
        .expect_status(204, "delete contact");
    node.delete(&format!("/api/v1/clients/{romashka}"))
        .await
        .expect_status(204, "delete client");
    assert!(
        search_ids(&node, "ромаш").await.is_empty(),
        "deleted records still found"
    );
    assert!(search(&node, &[("q", "ромаш"), ("kind", "contacts")])
        .await
        .is_empty());
    assert!(
        !list_ids(&node, "clients", &[("tags", "vip")])
            .await
            .contains(&romashka),
        "deleted still listed"
    );
    assert!(
        search_ids(&node, "alpha")
            .await
            .contains(&id_of(&clients["Alpha Trading"])),
        "others stay"
    );
}

/// Pages of a sort on a field where most rows tie (and some have no value)
/// list every record once, in order: ties are broken by `updated_at`, then
/// by the order the node stored the records, and the cursor carries both.
#[tokio::test]
async fn field_sort_pages_through_ties_and_missing_values() {
    let node = TestNode::start().await;
    let mut created: Vec<String> = Vec::new();
    for i in 0..14 {
        let mut body = json!({"name": format!("Tie {i:02}")});
        match i % 3 {
            0 => body["city"] = json!("Alpha"),
            1 => body["city"] = json!("Beta"),
            _ => {}
        }
        created.push(id_of(&create(&node, "clients", body).await));
    }
    let ids: HashSet<String> = created.iter().cloned().collect();
    let stored_at = |id: &str| created.iter().position(|c| c == id);
    for sort in ["city", "-city"] {
        let items = list_all(&node, "clients", &[("sort", sort), ("limit", "3")]).await;
        let got: Vec<String> = items.iter().map(id_of).collect();
        assert_eq!(got.len(), 14, "sort={sort}: {got:?}");
        assert_eq!(
            got.iter().cloned().collect::<HashSet<_>>(),
            ids,
            "sort={sort}"
        );
        let keys: Vec<(Option<String>, String, Option<usize>)> = items
            .iter()
            .map(|r| {
                (
                    r["city"].as_str().map(str::to_lowercase),
                    r["updated_at"].as_str().unwrap_or_default().to_owned(),
                    stored_at(&id_of(r)),
                )
            })
            .collect();
        let mut want = keys.clone();
        want.sort();
        if sort.starts_with('-') {
            want.reverse();
        }
        assert_eq!(
            keys, want,
            "sort={sort}: order by city, updated_at, then as stored"
        );
    }
}

/// Records imported together mostly share their `updated_at`: pages of
/// every sort list each of them once, ties in the order the node stored
/// them (the file's, for a file of one import batch), reversed for a
/// descending sort.
#[tokio::test]
async fn imported_records_page_through_shared_timestamps_in_file_order() {
    let node = TestNode::start().await;
    let names: Vec<String> = (0..40).map(|i| format!("Batch {:02}", 39 - i)).collect();
    let csv: String = std::iter::once("name,city\n".to_owned())
        .chain(names.iter().map(|n| format!("{n},Kazan\n")))
        .collect();
    let resp = node
        .send(
            node.request(reqwest::Method::POST, "/api/v1/import/clients")
                .header("content-type", "text/csv")
                .body(csv),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    let in_file = |r: &Value| {
        names
            .iter()
            .position(|n| r["name"].as_str() == Some(n.as_str()))
            .expect("an imported name")
    };
    for sort in ["-updated_at", "updated_at", "created_at", "city", "-city"] {
        let items = list_all(&node, "clients", &[("sort", sort), ("limit", "3")]).await;
        let keys: Vec<(String, usize)> = items
            .iter()
            .map(|r| {
                let at = if sort.ends_with("created_at") {
                    &r["created_at"]
                } else {
                    &r["updated_at"]
                };
                (at.as_str().unwrap_or_default().to_owned(), in_file(r))
            })
            .collect();
        assert_eq!(keys.len(), names.len(), "sort={sort}");
        let mut want = keys.clone();
        want.sort();
        if sort.starts_with('-') {
            want.reverse();
        }
        assert_eq!(keys, want, "sort={sort}: by time, then in file order");
    }
}
