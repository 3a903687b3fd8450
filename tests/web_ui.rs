//! The web UI in a real browser (headless Chromium over WebDriver) against
//! real nodes: log in, register a client, edit it (and see a field's
//! message), find it, switch language; an edit made at another office
//! appears after sync; a conflict from concurrent edits at two offices is
//! resolved on a page and the resolution reaches the other office. Each
//! step leaves a screenshot in `target/screenshots/`.

#[path = "common/browser.rs"]
mod browser;
mod common;

use serde_json::{json, Value};

use browser::Browser;
use common::cluster::{Cluster, Topology};
use common::{create, id_of, TestNode, ADMIN_PASSWORD};

/// The basic accessibility every page must have: a label on every control,
/// text contrast at WCAG AA, and every control reachable by Tab with a
/// visible focus ring.
async fn assert_accessible(browser: &Browser, page: &str) {
    let unlabelled = browser.unlabelled_controls().await;
    assert_eq!(unlabelled, json!([]), "controls without a label on {page}");
    let low = browser.low_contrast_text().await;
    assert_eq!(low, json!([]), "text below WCAG AA contrast on {page}");
    let keyboard = browser.keyboard_unreachable().await;
    assert_eq!(
        keyboard,
        json!({"missed": [], "no_focus_ring": []}),
        "keyboard navigation on {page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_logs_in_registers_edits_finds_a_client_and_switches_language() {
    let Some(browser) = Browser::start("client").await else {
        return;
    };
    let node = TestNode::start().await;
    let base = node.base_url();

    // Signed out, every page leads to the login page; a wrong password
    // says so.
    browser.goto(&format!("{base}/clients")).await;
    assert_eq!(browser.path().await, "/login");
    assert_eq!(
        browser.script("return document.documentElement.lang").await,
        "ru"
    );
    assert_accessible(&browser, "login").await;
    // Keyboard: the login field has the focus, Tab goes to the password.
    assert_eq!(browser.focused().await, "login");
    browser.tab().await;
    assert_eq!(browser.focused().await, "password");
    browser.fill("#login", "admin").await;
    browser.fill("#password", "wrong password").await;
    browser.press_enter("#password").await;
    browser.find("#login-error").await;
    browser.screenshot("login-refused").await;
    browser.login(base, "admin", ADMIN_PASSWORD).await;
    assert_eq!(browser.path().await, "/");
    browser.find("#sync").await;
    assert_accessible(&browser, "desktop").await;
    browser.screenshot("empty-desktop").await;

    // Quick registration, from the clients list.
    browser.click("a[href='/clients']").await;
    browser.click("a[href='/clients/new']").await;
    assert_accessible(&browser, "quick registration").await;
    browser.fill("#f-name", "ООО Ромашка").await;
    browser.choose("#f-client_type", "company").await;
    browser.fill("#f-tax_id", "7707083893").await;
    browser.fill("#f-phone", "8 (912) 345-67-89").await;
    browser.fill("#f-email", "info@romashka.ru").await;
    browser.fill("#f-city", "Казань").await;
    browser.screenshot("quick-registration").await;
    browser.click("#register").await;
    assert_eq!(browser.text("#card-title").await, "ООО Ромашка");
    let path = browser.path().await;
    let id = path
        .strip_prefix("/clients/")
        .expect("on the new card")
        .to_owned();
    assert_accessible(&browser, "card").await;

    // An invalid e-mail is refused with its message next to the field, and
    // the focus goes there.
    browser.fill("#f-email", "not an e-mail").await;
    browser.click("#save").await;
    let message = browser.text("#f-email-error").await;
    assert!(
        message.contains("Неверный адрес e-mail"),
        "the field's message, in Russian: {message}"
    );
    assert_eq!(browser.focused().await, "f-email");
    browser.screenshot("validation").await;

    // Corrected, it saves, and the history says who changed what.
    browser.fill("#f-email", "sales@romashka.ru").await;
    browser.choose("#f-stage", "regular").await;
    browser.fill("#f-tags", "vip, опт").await;
    browser.click("#save").await;
    browser.find("#history").await;
    if browser.exists("#f-email-error").await {
        panic!("still refused: {}", browser.text("#f-email-error").await);
    }
    assert_eq!(browser.value("#f-email").await, "sales@romashka.ru");
    let history = browser.text("#history").await;
    assert!(history.contains("sales@romashka.ru"), "history: {history}");
    assert!(history.contains("Постоянный"), "history: {history}");
    let stored = node.get(&format!("/api/v1/clients/{id}")).await;
    assert_eq!(stored.json["stage"], "regular");
    assert_eq!(stored.json["tags"], json!(["vip", "опт"]));

    // A contact person from the card.
    browser.click_here("#contacts summary").await;
    browser.fill("#c-last_name", "Иванов").await;
    browser.fill("#c-first_name", "Пётр").await;
    browser.click("#add-contact").await;
    let contacts = browser.text("#contacts table").await;
    assert!(contacts.contains("Иванов Пётр"), "contacts: {contacts}");
    browser.screenshot("card").await;

    // The contact's own card: edited in place, with a link to its client.
    browser.click_text("#contacts table a", "Иванов Пётр").await;
    assert_eq!(browser.text("#card-title").await, "Иванов Пётр");
    browser.fill("#f-position", "Директор").await;
    browser.click("#save").await;
    let history = browser.text("#history").await;
    assert!(
        history.contains("Директор"),
        "the contact's history: {history}"
    );
    // Dates are typed as the page's language writes them.
    let contact_path = browser.path().await;
    browser.fill("#f-birthday", "05.03.1985").await;
    browser.click("#save").await;
    browser.find("#history").await;
    assert_eq!(browser.value("#f-birthday").await, "05.03.1985");
    let contact_id = contact_path.rsplit('/').next().expect("the contact's id");
    let stored = node.get(&format!("/api/v1/contacts/{contact_id}")).await;
    assert_eq!(stored.json["birthday"], "1985-03-05");
    browser.screenshot("contact").await;
    browser.click("#client-link a").await;
    assert_eq!(browser.path().await, path);

    // Deleted, the card says so and offers to restore it.
    browser.click_confirmed("#delete").await;
    browser.find("#deleted").await;
    node.get(&format!("/api/v1/clients/{id}"))
        .await
        .expect_status(410, "deleted");
    browser.screenshot("deleted").await;
    browser.click("#restore").await;
    browser.find("#delete").await;
    node.get(&format!("/api/v1/clients/{id}"))
        .await
        .expect_status(200, "restored");

    // The list, filtered.
    browser.goto(&format!("{base}/clients")).await;
    browser.choose("#filter-stage", "regular").await;
    browser.fill("#filter-city", "казань").await;
    browser.click("form.filters button[type=submit]").await;
    let list = browser.text("#list").await;
    assert!(list.contains("ООО Ромашка"), "list: {list}");
    assert_accessible(&browser, "list").await;
    browser.screenshot("list").await;

    // The contacts list finds the contact by the start of the last name.
    browser.click("a[href='/contacts']").await;
    browser.fill("#q", "иван").await;
    browser.click("form.filters button[type=submit]").await;
    browser.click_text("#list a", "Иванов Пётр").await;
    assert_eq!(browser.text("#card-title").await, "Иванов Пётр");

    // The search box at the top of every page finds it.
    browser.fill("#top-q", "ромаш").await;
    browser.press_enter("#top-q").await;
    browser.click_text("#results a", "ООО Ромашка").await;
    assert_eq!(browser.path().await, path);
    browser.goto(&format!("{base}/search?q=иванов")).await;
    let results = browser.text("#results").await;
    assert!(results.contains("Контактное лицо"), "results: {results}");
    browser.screenshot("search").await;

    // English, and back.
    browser.click("#switch-lang").await;
    browser.find("html[lang=en]").await;
    assert_eq!(browser.path().await, "/search");
    let results = browser.text("#results").await;
    assert!(results.contains("Contact person"), "results: {results}");
    browser.goto(&format!("{base}{contact_path}")).await;
    assert_eq!(browser.value("#f-birthday").await, "1985-03-05");
    browser.goto(&format!("{base}{path}")).await;
    assert_eq!(browser.text("label[for=f-stage]").await, "Stage");
    assert_eq!(browser.text("#history-h").await, "History");
    browser.screenshot("english").await;
    browser.click("#switch-lang").await;
    browser.find("html[lang=ru]").await;

    // Users: a taken login is refused next to the field; a new manager is
    // created, then moved to another office and deactivated in place.
    browser.click("a[href='/users']").await;
    assert_accessible(&browser, "users").await;
    browser.fill("#new-login", "admin").await;
    browser
        .fill("#new-password", "a long enough password")
        .await;
    browser.choose("#new-role", "manager").await;
    browser.click("#create-user").await;
    assert!(
        browser.exists("#new-login-error").await,
        "a taken login is refused"
    );
    browser.fill("#new-login", "ivanov").await;
    browser.fill("#new-display_name", "Иванов И.").await;
    browser
        .fill("#new-password", "a long enough password")
        .await;
    browser.click("#create-user").await;
    browser.find("#users").await;
    let users = common::list_all(&node, "users", &[("login", "ivanov")]).await;
    let ivanov = id_of(&users[0]);
    browser
        .fill(&format!("#u-{ivanov}-password"), "a new long password")
        .await;
    browser.fill(&format!("#u-{ivanov}-office"), "kzn").await;
    browser
        .choose(&format!("#u-{ivanov}-active"), "false")
        .await;
    browser
        .click(&format!(
            "form[action='/users/{ivanov}'] button[type=submit]"
        ))
        .await;
    browser.find("#users").await;
    let stored = node.get(&format!("/api/v1/users/{ivanov}")).await;
    assert_eq!(stored.json["office"], "kzn");
    assert_eq!(stored.json["active"], false);
    node.patch_json(
        &format!("/api/v1/users/{ivanov}"),
        &json!({"active": true}),
        None,
    )
    .await
    .expect_status(200, "reactivate");
    node.login("ivanov", "a new long password").await;
    browser.screenshot("users").await;

    // A session ended elsewhere: the next page says so on the login page,
    // and logging in again returns to the page asked for.
    let token = browser.cookie("crm_session").await;
    let ended = node
        .client()
        .post(node.url("/api/v1/auth/logout"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("log the browser's session out");
    assert_eq!(ended.status(), 204, "logout");
    browser.goto(&format!("{base}/clients")).await;
    assert_eq!(browser.path().await, "/login");
    let said = browser.text("#session-expired").await;
    assert!(said.contains("Сеанс"), "the login page says why: {said}");
    browser.screenshot("session-ended").await;
    browser.fill("#login", "admin").await;
    browser.fill("#password", ADMIN_PASSWORD).await;
    browser.click("section.login button[type=submit]").await;
    assert_eq!(browser.path().await, "/clients");

    // Logging out ends the session.
    browser.click("#logout").await;
    browser.find("#login").await;
    browser.goto(&format!("{base}/clients")).await;
    assert_eq!(browser.path().await, "/login");

    // A viewer reads the card but is offered nothing to change.
    create(
        &node,
        "users",
        json!({"login": "petrova", "password": "viewer password", "role": "viewer"}),
    )
    .await;
    browser.login(base, "petrova", "viewer password").await;
    browser.goto(&format!("{base}{path}")).await;
    assert_eq!(browser.value("#f-city").await, "Казань");
    for absent in ["#save", "#delete", "#add-contact", "a[href='/clients/new']"] {
        assert!(
            !browser.exists(absent).await,
            "a viewer is offered {absent}"
        );
    }
    browser.screenshot("viewer").await;
    browser.close().await;
}

/// The first two nodes each write their own value of `field` of client
/// `id`, then sync: a conflict.
async fn edit_at_both_then_sync(cluster: &Cluster, id: &str, field: &str, values: [&str; 2]) {
    for (node, value) in cluster.nodes.iter().zip(values) {
        node.patch_json(
            &format!("/api/v1/clients/{id}"),
            &json!({ field: value }),
            None,
        )
        .await
        .expect_status(200, "concurrent edit");
    }
    cluster.sync_pair(0, 1).await;
}

async fn record(node: &TestNode, id: &str) -> Value {
    node.get(&format!("/api/v1/clients/{id}")).await.json
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_and_conflicts_from_another_office_show_and_resolve_in_the_browser() {
    let Some(browser) = Browser::start("offices").await else {
        return;
    };
    let cluster = Cluster::with_topology(2, Topology::Chain, "auto_sync = false\n").await;
    let (here, there) = (&cluster.nodes[0], &cluster.nodes[1]);
    let client = create(here, "clients", json!({"name": "Ландыш", "city": "Казань"})).await;
    let id = id_of(&client);
    let card = format!("{}/clients/{id}", here.base_url());
    cluster.sync_pair(0, 1).await;

    // Edited at the other office: shows here after a sync.
    there
        .patch_json(
            &format!("/api/v1/clients/{id}"),
            &json!({"city": "Омск"}),
            None,
        )
        .await
        .expect_status(200, "edit at the other office");
    browser
        .login(here.base_url(), "admin", ADMIN_PASSWORD)
        .await;
    browser.goto(&card).await;
    assert_eq!(browser.value("#f-city").await, "Казань");
    cluster.sync_pair(0, 1).await;
    browser.goto(&card).await;
    assert_eq!(browser.value("#f-city").await, "Омск");
    let history = browser.text("#history").await;
    assert!(history.contains("Омск"), "history: {history}");
    assert!(
        history.contains("node1"),
        "the other office by name: {history}"
    );
    browser.screenshot("synced-edit").await;

    // Both offices change the city before syncing: a conflict, shown with
    // each value; choosing one resolves it everywhere.
    edit_at_both_then_sync(&cluster, &id, "city", ["Самара", "Пермь"]).await;
    assert!(record(there, &id).await["conflicts"]["city"].is_array());
    // The desktop lists the conflicted client, the peer, and who changed
    // what where.
    browser.goto(here.base_url()).await;
    let conflicted = browser.text("#conflicted").await;
    assert!(conflicted.contains("Ландыш"), "conflicted: {conflicted}");
    let sync = browser.text("#sync").await;
    assert!(
        sync.contains("node1") && sync.contains("На связи"),
        "sync: {sync}"
    );
    let recent = browser.text("#recent").await;
    assert!(recent.contains("Ландыш"), "recent: {recent}");
    browser.screenshot("desktop").await;
    // The conflicts page lists it too, with the field in conflict.
    browser.click("#nav-conflicts").await;
    let listed = browser.text("#conflicts-list").await;
    assert!(
        listed.contains("Ландыш") && listed.contains("Город"),
        "conflicts page: {listed}"
    );
    assert_accessible(&browser, "conflicts").await;
    browser.screenshot("conflicts-page").await;
    browser.goto(here.base_url()).await;
    browser.click_text("#conflicted a", "Ландыш").await;
    let conflicts = browser.text("#conflicts").await;
    assert!(
        conflicts.contains("Самара") && conflicts.contains("Пермь"),
        "conflicts: {conflicts}"
    );
    assert!(
        conflicts.contains("node0") && conflicts.contains("node1"),
        "each value's office: {conflicts}"
    );
    let writers = browser.text("#conflicts .conflict-user").await;
    assert!(
        writers.contains("Administrator"),
        "each value's user: {writers}"
    );
    browser.screenshot("conflict").await;
    browser.click_text("#conflicts button", "Пермь").await;
    browser.find("#history").await;
    assert!(!browser.exists("#conflicts").await);
    assert_eq!(browser.value("#f-city").await, "Пермь");
    cluster.sync_pair(0, 1).await;
    let resolved = record(there, &id).await;
    assert_eq!(resolved["city"], "Пермь");
    assert!(
        resolved.get("conflicts").is_none(),
        "still conflicted: {resolved}"
    );

    // A second conflict, resolved by typing a third value instead.
    edit_at_both_then_sync(&cluster, &id, "region", ["Татарстан", "Пермский край"]).await;
    browser.goto(&card).await;
    let conflicts = browser.text("#conflicts").await;
    assert!(
        conflicts.contains("Пермский край"),
        "conflicts: {conflicts}"
    );
    browser.fill("#f-region", "Поволжье").await;
    browser.click("#save").await;
    browser.find("#history").await;
    assert!(!browser.exists("#conflicts").await);
    cluster.sync_pair(0, 1).await;
    let resolved = record(there, &id).await;
    assert_eq!(resolved["region"], "Поволжье");
    assert!(
        resolved.get("conflicts").is_none(),
        "still conflicted: {resolved}"
    );

    // The sync page: the peer's state, a round on demand, a token issued
    // for a new laptop (its secret shown once).
    browser.click("a[href='/sync']").await;
    let peers = browser.text("#peers").await;
    assert!(
        peers.contains("node1") && peers.contains("На связи"),
        "peers: {peers}"
    );
    assert_accessible(&browser, "sync").await;
    browser.click("#sync-now").await;
    let rounds = browser.text("#rounds").await;
    assert!(
        rounds.contains("node1") && rounds.contains("получено"),
        "rounds: {rounds}"
    );
    // A peer added by hand and removed again.
    browser.click_here("#peers details summary").await;
    browser.fill("#peer-name", "branch-omsk").await;
    browser.fill("#peer-url", "http://127.0.0.1:9/").await;
    browser.fill("#peer-token", "crmt_not_a_real_token").await;
    browser.click("#add-peer").await;
    let peers = browser.text("#peers").await;
    assert!(peers.contains("branch-omsk"), "peers: {peers}");
    browser
        .click_confirmed("form[action='/sync/peers/branch-omsk/remove'] button")
        .await;
    let peers = browser.text("#peers").await;
    assert!(!peers.contains("branch-omsk"), "peers: {peers}");
    browser.fill("#token-name", "laptop-ivanov").await;
    browser.click("#issue-token").await;
    let secret = browser.text("#new-secret").await;
    assert!(secret.contains("crmt_"), "the new secret: {secret}");
    let tokens = browser.text("#tokens table").await;
    assert!(tokens.contains("laptop-ivanov"), "tokens: {tokens}");
    browser.screenshot("sync").await;
    browser
        .click_confirmed("#tokens form[action='/sync/tokens/laptop-ivanov/remove'] button")
        .await;
    browser.find("#tokens").await;
    assert!(
        !browser
            .exists("#tokens form[action='/sync/tokens/laptop-ivanov/remove']")
            .await
    );

    // And the other office's page shows it resolved.
    browser
        .login(there.base_url(), "admin", ADMIN_PASSWORD)
        .await;
    browser
        .goto(&format!("{}/clients/{id}", there.base_url()))
        .await;
    assert_eq!(browser.value("#f-city").await, "Пермь");
    assert!(!browser.exists("#conflicts").await);
    browser.screenshot("resolved-elsewhere").await;
    browser.close().await;
}

/// No browser needed: the pages' headers, the absence of inline code, HTML
/// escaping, and forms refused without their CSRF token.
#[tokio::test]
async fn pages_are_escaped_carry_security_headers_and_refuse_forms_without_the_csrf_token() {
    let node = TestNode::start().await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client");
    let signed_out = client.get(node.url("/clients")).send().await.expect("GET");
    assert_eq!(signed_out.status(), 303);
    assert_eq!(signed_out.headers()["location"], "/login?next=%2Fclients");

    let login = client
        .post(node.url("/api/v1/auth/login"))
        .json(&json!({"login": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .expect("log in");
    let session: Value = login.json().await.expect("a login answer");
    let csrf = session["csrf_token"]
        .as_str()
        .expect("a CSRF token")
        .to_owned();
    let cookie = format!(
        "crm_session={}",
        session["token"].as_str().expect("a token")
    );
    let hostile = create(
        &node,
        "clients",
        json!({"name": "<script>alert(1)</script>"}),
    )
    .await;
    let card = format!("/clients/{}", id_of(&hostile));

    for path in [
        "/",
        "/clients",
        "/clients/new",
        "/search?q=alert",
        &card,
        "/login",
    ] {
        let page = client
            .get(node.url(path))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("GET a page");
        assert_eq!(page.status(), 200, "{path}");
        let headers = page.headers().clone();
        assert_eq!(
            headers["content-security-policy"], "default-src 'self'",
            "{path}"
        );
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        let html = page.text().await.expect("a page's body");
        assert!(
            !html.contains("<script>"),
            "{path} has an inline script or unescaped text"
        );
        assert!(!html.contains(" style="), "{path} has an inline style");
        assert!(!html.contains(" onclick="), "{path} has an inline handler");
    }
    let page = client
        .get(node.url(&card))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("GET the card");
    let html = page.text().await.expect("the card's body");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "escaped name"
    );

    let post = |form: Vec<(&'static str, String)>| {
        client
            .post(node.url("/clients"))
            .header("cookie", &cookie)
            .form(&form)
            .send()
    };
    let name = || ("name", "Без токена".to_owned());
    let refused = post(vec![name()]).await.expect("POST");
    assert_eq!(refused.status(), 403, "a form without its token");
    let refused = post(vec![name(), ("_csrf", "0".repeat(64))])
        .await
        .expect("POST");
    assert_eq!(refused.status(), 403, "a form with another token");
    let accepted = post(vec![name(), ("_csrf", csrf)]).await.expect("POST");
    assert_eq!(accepted.status(), 303, "a form with the session's token");
}
