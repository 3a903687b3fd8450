//! Scoped replication: a head office and three sales reps' laptops, each
//! laptop's token scoped to its rep's clients. Each laptop ends with
//! exactly its rep's clients and their contacts, its edits reach the head
//! office, a change to a record outside its scope is refused while the rest
//! of the batch applies, and reassigned records move between laptops.
//! Every laptop still learns every office's name: the directory of nodes
//! comes whole with any scope.

mod common;

use std::collections::BTreeSet;

use common::cluster::{add_peer, issue_scoped_token, run_sync, NodeState};
use common::{create, id_of, list_all, list_ids, TestNode};
use serde_json::{json, Value};

const REPS: [&str; 3] = ["ivanov", "petrov", "sidorov"];

struct Office {
    head: TestNode,
    laptops: Vec<TestNode>,
}

/// The head office's records: per rep, three clients with one contact
/// each; two clients nobody manages.
async fn head_office() -> (TestNode, Vec<(String, Value)>) {
    let head = TestNode::start_with_config("head", "auto_sync = false\n").await;
    let mut clients = Vec::new();
    for (r, rep) in REPS.iter().chain(["nobody", "nobody"].iter()).enumerate() {
        for n in 0..if *rep == "nobody" { 1 } else { 3 } {
            let client = create(
                &head,
                "clients",
                json!({"name": format!("{rep} client {r}{n}"), "manager": rep}),
            )
            .await;
            if *rep != "nobody" {
                create(
                    &head,
                    "contacts",
                    json!({"client_id": id_of(&client), "last_name": format!("Contact {rep} {n}")}),
                )
                .await;
            }
            clients.push((rep.to_string(), client));
        }
    }
    (head, clients)
}

async fn office() -> (Office, Vec<(String, Value)>) {
    let (head, clients) = head_office().await;
    let mut laptops = Vec::new();
    for rep in REPS {
        let filter = format!("manager={rep}");
        let token = issue_scoped_token(
            &head,
            &format!("laptop-{rep}"),
            &[
                "--kinds",
                "clients,contacts",
                "--filter",
                &filter,
                "--whole",
                "users",
            ],
        )
        .await;
        let laptop = TestNode::start_with_config(rep, "auto_sync = false\n").await;
        add_peer(&laptop, "head", head.base_url(), &token).await;
        laptops.push(laptop);
    }
    (Office { head, laptops }, clients)
}

/// What a laptop of `rep` must hold: the rep's clients and the contacts
/// of those clients, read from the head office.
fn oracle(head: &NodeState, rep: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let clients: BTreeSet<String> = head.records["clients"]
        .iter()
        .filter(|(_, c)| c["manager"] == json!(rep))
        .map(|(id, _)| id.clone())
        .collect();
    let contacts = head.records["contacts"]
        .iter()
        .filter(|(_, c)| {
            c["client_id"]
                .as_str()
                .is_some_and(|id| clients.contains(id))
        })
        .map(|(id, _)| id.clone())
        .collect();
    (clients, contacts)
}

fn held(state: &NodeState) -> (BTreeSet<String>, BTreeSet<String>) {
    (
        state.ids("clients").into_iter().collect(),
        state.ids("contacts").into_iter().collect(),
    )
}

#[tokio::test]
async fn each_laptop_holds_exactly_its_reps_records_and_its_edits_reach_the_head_office() {
    let (office, _) = office().await;
    // The rep's user, made at the head office, comes whole to the laptop.
    office
        .head
        .post_json(
            "/api/v1/users",
            &json!({"login": "ivanov", "password": "on-the-road-1", "role": "manager",
                    "display_name": "Иван Иванов", "office": "kazan"}),
        )
        .await
        .expect_status(201, "create the rep's user");
    for laptop in &office.laptops {
        let round = run_sync(laptop, "head", None).await;
        assert_eq!(round["error"], Value::Null, "{round}");
    }
    office.laptops[0].login("ivanov", "on-the-road-1").await;
    let head = NodeState::read(&office.head).await;
    for (rep, laptop) in REPS.iter().zip(&office.laptops) {
        let (clients, contacts) = oracle(&head, rep);
        assert_eq!(clients.len(), 3);
        assert_eq!(contacts.len(), 3);
        let mine = NodeState::read(laptop).await;
        assert_eq!(held(&mine), (clients.clone(), contacts), "{rep}'s laptop");
        // The copies are the head office's records, field for field.
        for id in &clients {
            assert_eq!(mine.records["clients"][id], head.records["clients"][id]);
        }
    }

    // Ivanov edits his client, registers a new one with a contact, and (by
    // mistake) one for Petrov: that one is refused, the rest arrives.
    let ivanov = &office.laptops[0];
    let his = head.records["clients"]
        .iter()
        .find(|(_, c)| c["manager"] == json!("ivanov"))
        .map(|(id, _)| id.clone())
        .expect("ivanov has clients");
    ivanov
        .patch_json(
            &format!("/api/v1/clients/{his}"),
            &json!({"city": "Казань"}),
            None,
        )
        .await
        .expect_status(200, "edit on the laptop");
    let new = create(
        ivanov,
        "clients",
        json!({"name": "New on the road", "manager": "ivanov"}),
    )
    .await;
    let new_contact = create(
        ivanov,
        "contacts",
        json!({"client_id": id_of(&new), "last_name": "Roadside"}),
    )
    .await;
    let stray = create(
        ivanov,
        "clients",
        json!({"name": "Not mine", "manager": "petrov"}),
    )
    .await;
    let round = run_sync(ivanov, "head", None).await;
    assert_eq!(round["pushed"]["rejected"], json!(1), "{round}");
    let head_after = NodeState::read(&office.head).await;
    assert_eq!(head_after.records["clients"][&his]["city"], json!("Казань"));
    assert!(head_after.records["clients"].contains_key(&id_of(&new)));
    assert!(head_after.records["contacts"].contains_key(&id_of(&new_contact)));
    assert!(!head_after.records["clients"].contains_key(&id_of(&stray)));

    // The other laptops see none of it but Petrov's view is unchanged.
    for (rep, laptop) in REPS.iter().zip(&office.laptops).skip(1) {
        run_sync(laptop, "head", None).await;
        let (clients, contacts) = oracle(&head_after, rep);
        assert_eq!(
            held(&NodeState::read(laptop).await),
            (clients, contacts),
            "{rep}"
        );
    }

    // Scoped to clients and contacts, each laptop still learns the name
    // of every office and laptop (each wrote its own record in the
    // directory of nodes, which every scope takes whole), and the head
    // office learns the laptops'.
    for laptop in &office.laptops {
        run_sync(laptop, "head", None).await;
    }
    let everyone: BTreeSet<String> = ["head", "ivanov", "petrov", "sidorov"]
        .map(str::to_owned)
        .into();
    for node in office.laptops.iter().chain([&office.head]) {
        let names: BTreeSet<String> = list_all(node, "nodes", &[])
            .await
            .iter()
            .filter_map(|n| n["name"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(names, everyone, "{}", node.name());
    }
}

#[tokio::test]
async fn reassigned_records_move_between_laptops() {
    let (office, clients) = office().await;
    for laptop in &office.laptops {
        run_sync(laptop, "head", None).await;
    }
    // The head office gives an unmanaged client to Petrov, and one of
    // Ivanov's to Sidorov.
    let unmanaged = clients
        .iter()
        .find(|(rep, _)| rep == "nobody")
        .map(|(_, c)| id_of(c))
        .expect("an unmanaged client");
    let moved = clients
        .iter()
        .find(|(rep, _)| rep == "ivanov")
        .map(|(_, c)| id_of(c))
        .expect("one of ivanov's");
    for (id, to) in [(&unmanaged, "petrov"), (&moved, "sidorov")] {
        office
            .head
            .patch_json(
                &format!("/api/v1/clients/{id}"),
                &json!({"manager": to}),
                None,
            )
            .await
            .expect_status(200, "reassign at the head office");
    }
    for laptop in &office.laptops {
        let round = run_sync(laptop, "head", None).await;
        assert_eq!(round["error"], Value::Null, "{round}");
    }
    let petrov = NodeState::read(&office.laptops[1]).await;
    assert_eq!(
        petrov.records["clients"][&unmanaged]["manager"],
        json!("petrov")
    );
    let sidorov = NodeState::read(&office.laptops[2]).await;
    assert_eq!(
        sidorov.records["clients"][&moved]["manager"],
        json!("sidorov")
    );
    // Ivanov's copy stays as he last saw it; his edits to it are refused.
    let ivanov = &office.laptops[0];
    let stale = NodeState::read(ivanov).await;
    assert_eq!(stale.records["clients"][&moved]["manager"], json!("ivanov"));
    ivanov
        .patch_json(
            &format!("/api/v1/clients/{moved}"),
            &json!({"city": "Тверь"}),
            None,
        )
        .await
        .expect_status(200, "the laptop still edits its copy");
    let round = run_sync(ivanov, "head", None).await;
    assert_eq!(round["pushed"]["rejected"], json!(1), "{round}");
    let head = NodeState::read(&office.head).await;
    assert_ne!(head.records["clients"][&moved]["city"], json!("Тверь"));
}

/// A kind with its own manager that references clients (deals): a deal
/// inside the scope brings its client along, even a client another rep
/// manages.
#[tokio::test]
async fn a_deal_inside_the_scope_brings_its_client() {
    let config = "auto_sync = false\n";
    let head = TestNode::start_with_config("head", config).await;
    let shared = create(
        &head,
        "clients",
        json!({"name": "Shared", "manager": "petrov"}),
    )
    .await;
    let other = create(
        &head,
        "clients",
        json!({"name": "Petrov's", "manager": "petrov"}),
    )
    .await;
    let deal = create(
        &head,
        "deals",
        json!({"title": "Big deal", "manager": "ivanov", "client_id": id_of(&shared)}),
    )
    .await;
    let token = issue_scoped_token(
        &head,
        "laptop-ivanov",
        &["--kinds", "clients,deals", "--filter", "manager=ivanov"],
    )
    .await;
    let laptop = TestNode::start_with_config("ivanov", config).await;
    add_peer(&laptop, "head", head.base_url(), &token).await;
    let round = run_sync(&laptop, "head", None).await;
    assert_eq!(round["error"], Value::Null, "{round}");
    assert_eq!(list_ids(&laptop, "deals", &[]).await, vec![id_of(&deal)]);
    let clients = list_ids(&laptop, "clients", &[]).await;
    assert_eq!(clients, vec![id_of(&shared)], "not {}", id_of(&other));
}
