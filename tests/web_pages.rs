//! The web pages over plain HTTP, without a browser, against real nodes:
//! conflicts that name who wrote each value (API, card, the conflicts page
//! of every kind, the desktop), validation messages in the page's
//! language, dates typed in the page's language, the login page after a
//! session ended (and no open redirect), the users page in pages and with
//! a search, offices named beyond a node's direct peers, and the lists
//! of deals and invoices.

mod common;

use std::collections::BTreeSet;

use common::cluster::{Cluster, Topology};
use common::{create, id_of, TestNode, ADMIN_PASSWORD};
use reqwest::header::{AUTHORIZATION, COOKIE, LOCATION, SET_COOKIE};
use reqwest::Method;
use serde_json::{json, Value};
use tempfile::TempDir;

/// A kind from a company's kinds folder (trade shows the company exhibits
/// at), with field types the built-in kinds have and one they lack
/// (`datetime`).
const SHOWS: &str = "collection = \"trade_shows\"\nlabel = \"TradeShow\"\ntitle = [\"title\"]\n\n\
    [[fields]]\nname = \"title\"\ntype = \"string\"\nrequired = true\nmax_len = 200\n\n\
    [[fields]]\nname = \"amount\"\ntype = \"money\"\n\n\
    [[fields]]\nname = \"units\"\ntype = \"integer\"\n\n\
    [[fields]]\nname = \"closes_on\"\ntype = \"date\"\n\n\
    [[fields]]\nname = \"signed_at\"\ntype = \"datetime\"\n";

/// A kinds folder holding `trade_shows`, and the node config that uses it.
fn shows_folder() -> (TempDir, String) {
    let kinds = TempDir::new().expect("create a kinds folder");
    std::fs::write(kinds.path().join("trade_shows.toml"), SHOWS).expect("write trade_shows.toml");
    let config = format!(
        "auto_sync = false\nkinds_dir = {:?}\n",
        kinds.path().display().to_string()
    );
    (kinds, config)
}

/// A page as a browser would get it, redirects not followed.
struct Page {
    status: u16,
    location: Option<String>,
    set_cookies: Vec<String>,
    html: String,
}

impl Page {
    /// The text of the element with `id` (up to its first child tag).
    fn text_of(&self, id: &str) -> Option<String> {
        let at = self.html.find(&format!("id=\"{id}\""))?;
        let start = at + self.html[at..].find('>')? + 1;
        let end = start + self.html[start..].find('<')?;
        Some(self.html[start..end].to_owned())
    }

    fn has_id(&self, id: &str) -> bool {
        self.html.contains(&format!("id=\"{id}\""))
    }

    /// The texts of the elements of class `class` (up to a child tag).
    fn texts_of_class(&self, class: &str) -> Vec<String> {
        let needle = format!("class=\"{class}\"");
        self.html
            .match_indices(&needle)
            .filter_map(|(at, _)| {
                let start = at + self.html[at..].find('>')? + 1;
                let end = start + self.html[start..].find('<')?;
                Some(self.html[start..end].to_owned())
            })
            .collect()
    }

    /// The element with `id` and all it holds, as text without tags.
    fn block_text(&self, id: &str) -> String {
        let Some(at) = self.html.find(&format!("id=\"{id}\"")) else {
            return String::new();
        };
        let open = self.html[..at].rfind('<').unwrap_or(at);
        let tag: String = self.html[open + 1..]
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect();
        let close = format!("</{tag}>");
        // Nested elements of the same tag are not expected where it is used.
        let end = self.html[at..]
            .find(&close)
            .map_or(self.html.len(), |e| at + e);
        strip_tags(&self.html[open..end])
    }
}

fn strip_tags(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

/// Someone with a browser: a session cookie (or none), a language, and
/// the CSRF token forms carry.
struct Visitor {
    base: String,
    client: reqwest::Client,
    cookie: String,
    csrf: String,
}

impl Visitor {
    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client")
    }

    /// Nobody signed in, reading in `lang`.
    fn anonymous(node: &TestNode, lang: &str) -> Visitor {
        Visitor {
            base: node.base_url().to_owned(),
            client: Visitor::client(),
            cookie: format!("crm_lang={lang}"),
            csrf: String::new(),
        }
    }

    /// Signed in as `login` (a cookie session opened over the API).
    async fn signed_in(node: &TestNode, login: &str, password: &str, lang: &str) -> Visitor {
        let client = Visitor::client();
        let session: Value = client
            .post(node.url("/api/v1/auth/login"))
            .json(&json!({"login": login, "password": password}))
            .send()
            .await
            .expect("log in")
            .json()
            .await
            .expect("a login answer");
        let token = session["token"].as_str().expect("a session token");
        Visitor {
            base: node.base_url().to_owned(),
            client,
            cookie: format!("crm_session={token}; crm_lang={lang}"),
            csrf: session["csrf_token"]
                .as_str()
                .expect("a CSRF token")
                .to_owned(),
        }
    }

    fn token(&self) -> &str {
        self.cookie
            .split("; ")
            .find_map(|c| c.strip_prefix("crm_session="))
            .unwrap_or_default()
    }

    async fn read(response: reqwest::Response) -> Page {
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let set_cookies = response
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        let html = response.text().await.expect("a page's body");
        Page {
            status,
            location,
            set_cookies,
            html,
        }
    }

    async fn get(&self, path: &str) -> Page {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .header(COOKIE, &self.cookie)
            .send()
            .await
            .expect("GET a page");
        Visitor::read(response).await
    }

    /// Submits a form (its CSRF token added).
    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        form.push(("_csrf", &self.csrf));
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header(COOKIE, &self.cookie)
            .form(&form)
            .send()
            .await
            .expect("POST a form");
        Visitor::read(response).await
    }
}

/// A PATCH over the API as the user of session `token`.
async fn patch_as(node: &TestNode, token: &str, path: &str, body: Value) {
    node.send(
        node.request(Method::PATCH, path)
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .json(&body),
    )
    .await
    .expect_status(200, &format!("PATCH {path} {body}"));
}

async fn user(node: &TestNode, login: &str, display_name: &str) -> Value {
    create(
        node,
        "users",
        json!({"login": login, "display_name": display_name, "role": "admin",
               "password": format!("password-of-{login}")}),
    )
    .await
}

// ---------------------------------------------------------------------------
// 1, 2. Conflicts name their writer; every kind's are listed.

#[tokio::test]
async fn conflicts_name_who_wrote_each_value_and_every_kinds_are_listed_in_pages() {
    let (_kinds, config) = shows_folder();
    let cluster = Cluster::with_topology(2, Topology::Chain, &config).await;
    let (here, there) = (&cluster.nodes[0], &cluster.nodes[1]);
    let ivanov = user(here, "ivanov", "Иванов И.").await;
    let petrov = user(here, "petrov", "Петров П.").await;
    let sidorov = user(here, "sidorov", "Сидоров С.").await;
    let mut clients = Vec::new();
    for n in 0..27 {
        clients.push(id_of(
            &create(here, "clients", json!({"name": format!("Клиент {n:02}")})).await,
        ));
    }
    let contact = id_of(
        &create(
            here,
            "contacts",
            json!({"client_id": clients[0], "last_name": "Кузнецов"}),
        )
        .await,
    );
    let show = id_of(&create(here, "trade_shows", json!({"title": "Поставка"})).await);
    cluster.sync_pair(0, 1).await;
    let ivanov_token = here.login("ivanov", "password-of-ivanov").await;
    let petrov_token = there.login("petrov", "password-of-petrov").await;

    // Each conflict: one value written here by Ivanov, one there by Petrov.
    let mut edits = vec![
        (
            format!("/api/v1/contacts/{contact}"),
            json!({"position": "Директор"}),
            json!({"position": "Бухгалтер"}),
        ),
        (
            format!("/api/v1/users/{}", id_of(&sidorov)),
            json!({"display_name": "Сидоров Семён"}),
            json!({"display_name": "Сидоров Сергей"}),
        ),
        (
            format!("/api/v1/trade_shows/{show}"),
            json!({"title": "Поставка труб"}),
            json!({"title": "Поставка угля"}),
        ),
    ];
    for id in &clients {
        edits.push((
            format!("/api/v1/clients/{id}"),
            json!({"city": "Пермь"}),
            json!({"city": "Омск"}),
        ));
    }
    for (path, mine, theirs) in &edits {
        patch_as(here, &ivanov_token, path, mine.clone()).await;
        patch_as(there, &petrov_token, path, theirs.clone()).await;
    }
    let states = cluster.quiesce().await;
    assert!(states[0] == states[1], "{}", states[0].diff(&states[1]));

    // The API: each value with its user's id, login and name, the same on
    // both nodes.
    for node in [here, there] {
        let client = node.get(&format!("/api/v1/clients/{}", clients[0])).await;
        let values = client.json["conflicts"]["city"]
            .as_array()
            .unwrap_or_else(|| panic!("a conflict on city: {}", client.text))
            .clone();
        let mut seen: Vec<(String, String, String, String)> = values
            .iter()
            .map(|v| {
                let text = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
                (
                    text("value"),
                    text("user"),
                    text("login"),
                    text("display_name"),
                )
            })
            .collect();
        seen.sort();
        assert_eq!(
            seen,
            vec![
                (
                    "Омск".to_owned(),
                    id_of(&petrov),
                    "petrov".to_owned(),
                    "Петров П.".to_owned()
                ),
                (
                    "Пермь".to_owned(),
                    id_of(&ivanov),
                    "ivanov".to_owned(),
                    "Иванов И.".to_owned()
                ),
            ]
        );
    }
    // Lists name them too.
    let listed = here
        .get(&common::with_query(
            "/api/v1/clients",
            &[("name", "Клиент 00"), ("fields", "name,conflicts")],
        ))
        .await;
    let item = &listed.json["items"][0];
    let logins: BTreeSet<&str> = item["conflicts"]["city"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["login"].as_str())
        .collect();
    assert_eq!(logins, BTreeSet::from(["ivanov", "petrov"]), "{item}");
    // The OpenAPI document describes the shape.
    let openapi = here.get("/api/v1/openapi.json").await.json;
    let conflict = &openapi["components"]["schemas"]["ConflictValue"];
    for key in ["value", "node", "at", "user", "login", "display_name"] {
        assert!(
            conflict["required"]
                .as_array()
                .is_some_and(|r| r.contains(&json!(key))),
            "ConflictValue requires {key}: {conflict}"
        );
    }

    // The card: "Пермь — node0, Иванов И., <time>".
    let admin = Visitor::signed_in(here, "admin", ADMIN_PASSWORD, "ru").await;
    let card = admin.get(&format!("/clients/{}", clients[0])).await;
    assert_eq!(card.status, 200);
    let users = card.texts_of_class("conflict-user");
    assert!(
        users.contains(&"Иванов И.".to_owned()) && users.contains(&"Петров П.".to_owned()),
        "{users:?}"
    );
    let shown = card.block_text("conflicts");
    assert!(shown.contains("Пермь — node0, Иванов И., "), "{shown}");
    assert!(shown.contains("Омск — node1, Петров П., "), "{shown}");
    // A viewer sees the same values and who wrote them, with nothing to
    // press.
    create(
        here,
        "users",
        json!({"login": "smirnova", "password": "viewer password", "role": "viewer"}),
    )
    .await;
    let viewer = Visitor::signed_in(here, "smirnova", "viewer password", "ru").await;
    let seen = viewer.get(&format!("/clients/{}", clients[0])).await;
    let shown = seen.block_text("conflicts");
    assert!(shown.contains("Пермь — node0, Иванов И., "), "{shown}");
    assert!(shown.contains("Омск — node1, Петров П., "), "{shown}");
    assert!(
        !seen.html.contains("/resolve"),
        "a viewer is offered a resolution"
    );

    // The conflicts page: every kind, 25 to a page, each once.
    let page = admin.get("/conflicts").await;
    assert_eq!(page.status, 200);
    assert!(page.has_id("conflicts-list"), "{}", page.html);
    assert!(!page.has_id("first-page"));
    let rows = |page: &Page| -> Vec<(String, String)> {
        page.html
            .match_indices("<tr data-kind=\"")
            .map(|(at, _)| {
                let rest = &page.html[at + 15..];
                let kind = rest[..rest.find('"').unwrap_or(0)].to_owned();
                let id_at = rest.find("data-id=\"").map_or(0, |i| i + 9);
                let id = rest[id_at..id_at + rest[id_at..].find('"').unwrap_or(0)].to_owned();
                (kind, id)
            })
            .collect()
    };
    let first = rows(&page);
    assert_eq!(first.len(), 25, "{first:?}");
    let next = page
        .html
        .split("id=\"next-page\" href=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a link to the next page")
        .replace("&amp;", "&");
    let second_page = admin.get(&next).await;
    assert!(second_page.has_id("first-page"));
    assert!(!second_page.has_id("next-page"));
    let second = rows(&second_page);
    let all: Vec<(String, String)> = first.iter().chain(&second).cloned().collect();
    let unique: BTreeSet<(String, String)> = all.iter().cloned().collect();
    assert_eq!(all.len(), 30, "{all:?}");
    assert_eq!(unique.len(), 30, "a record listed twice: {all:?}");
    for (kind, id) in [
        ("contacts", contact.clone()),
        ("users", id_of(&sidorov)),
        ("trade_shows", show.clone()),
        ("clients", clients[26].clone()),
    ] {
        assert!(
            unique.contains(&(kind.to_owned(), id.clone())),
            "{kind} {id}"
        );
    }
    // Each row links its card; kinds without a page of their own have the
    // generic one.
    let html = format!("{}{}", page.html, second_page.html);
    for href in [
        format!("/contacts/{contact}"),
        format!("/records/users/{}", id_of(&sidorov)),
        format!("/records/trade_shows/{show}"),
        format!("/clients/{}", clients[0]),
    ] {
        assert!(
            html.contains(&format!("href=\"{href}\"")),
            "no link to {href}"
        );
    }
    assert!(html.contains("Пользователь"), "the users' kind is named");
    assert!(
        admin.get("/conflicts?cursor=garbage").await.status == 400,
        "a foreign cursor is refused"
    );

    // The desktop's box: the first ten, and a link to the page.
    let desktop = admin.get("/").await;
    assert!(desktop.has_id("all-conflicts"), "{}", desktop.html);
    let boxed = desktop
        .html
        .split("id=\"conflicted\"")
        .nth(1)
        .and_then(|rest| rest.split("</section>").next())
        .unwrap_or_default();
    assert_eq!(boxed.matches("<li>").count(), 10, "{boxed}");
    assert!(
        desktop.has_id("nav-conflicts"),
        "the top bar links the page"
    );

    // The generic card resolves a user's conflict like a client's.
    let user_card = admin
        .get(&format!("/records/users/{}", id_of(&sidorov)))
        .await;
    assert_eq!(user_card.status, 200);
    assert!(user_card
        .block_text("conflicts")
        .contains("Сидоров Семён — node0, Иванов И., "));
    let resolved = admin
        .post(
            &format!("/records/users/{}/resolve", id_of(&sidorov)),
            &[("field", "display_name"), ("value", "Сидоров Семён")],
        )
        .await;
    assert_eq!(resolved.status, 303, "{}", resolved.html);
    let after = here
        .get(&format!("/api/v1/users/{}", id_of(&sidorov)))
        .await;
    assert_eq!(after.json["display_name"], json!("Сидоров Семён"));
    assert_eq!(after.json["conflicts"], Value::Null, "{}", after.text);
    let show_card = admin.get(&format!("/records/trade_shows/{show}")).await;
    assert_eq!(show_card.status, 200);
    assert!(show_card.has_id("conflicts"));
}

// ---------------------------------------------------------------------------
// 3. Validation messages in the page's language.

#[tokio::test]
async fn validation_messages_follow_the_pages_language_and_the_api_gives_codes() {
    let (_kinds, config) = shows_folder();
    let node = TestNode::start_with_config("office", &config).await;
    let bad_client: &[(&str, &str)] = &[
        ("name", ""),
        ("client_type", "company"),
        ("tax_id", "7707083894"),
        ("phone", "12"),
        ("email", "not an e-mail"),
    ];
    let ru = Visitor::signed_in(&node, "admin", ADMIN_PASSWORD, "ru").await;
    let refused = ru.post("/clients", bad_client).await;
    assert_eq!(refused.status, 422, "{}", refused.html);
    for (field, message) in [
        ("f-name-error", "Обязательное поле."),
        ("f-email-error", "Неверный адрес e-mail."),
        (
            "f-tax_id-error",
            "Неверные контрольные цифры ИНН: проверьте номер.",
        ),
        ("f-phone-error", "Неверный номер телефона."),
    ] {
        assert_eq!(refused.text_of(field).as_deref(), Some(message), "{field}");
    }
    let en = Visitor::signed_in(&node, "admin", ADMIN_PASSWORD, "en").await;
    let refused = en.post("/clients", bad_client).await;
    assert_eq!(
        refused.text_of("f-email-error").as_deref(),
        Some("Not a valid e-mail address.")
    );
    assert_eq!(
        refused.text_of("f-name-error").as_deref(),
        Some("This field is required.")
    );

    // A company's INN has 10 digits; a name has at most 300 characters.
    let refused = ru
        .post(
            "/clients",
            &[
                ("name", "Ромашка"),
                ("client_type", "company"),
                ("tax_id", "500100732259"),
            ],
        )
        .await;
    assert_eq!(
        refused.text_of("f-tax_id-error").as_deref(),
        Some("Для этого вида клиента в ИНН 10 цифр.")
    );
    let long = "Я".repeat(301);
    let refused = ru.post("/clients", &[("name", &long)]).await;
    assert_eq!(
        refused.text_of("f-name-error").as_deref(),
        Some("Не больше 300 символов.")
    );

    // On a card: a choice that is not offered.
    let client = create(&node, "clients", json!({"name": "Ромашка"})).await;
    let card = format!("/clients/{}", id_of(&client));
    let refused = ru.post(&card, &[("stage", "flying")]).await;
    assert_eq!(refused.status, 422);
    assert_eq!(
        refused.text_of("f-stage-error").as_deref(),
        Some("Выберите одно из значений списка.")
    );

    // A kind from the kinds folder: number, date, date-time, money.
    let show = create(&node, "trade_shows", json!({"title": "Выставка"})).await;
    let refused = ru
        .post(
            &format!("/records/trade_shows/{}", id_of(&show)),
            &[
                ("units", "много"),
                ("closes_on", "31.02.2026"),
                ("signed_at", "вчера"),
                ("amount", "сто рублей"),
            ],
        )
        .await;
    assert_eq!(refused.status, 422, "{}", refused.html);
    for (field, message) in [
        ("f-units-error", "Нужно целое число."),
        ("f-closes_on-error", "Неверная дата: введите ДД.ММ.ГГГГ."),
        (
            "f-signed_at-error",
            "Неверные дата и время: введите ДД.ММ.ГГГГ ЧЧ:ММ (UTC).",
        ),
        ("f-amount-error", "Неверная сумма."),
    ] {
        assert_eq!(refused.text_of(field).as_deref(), Some(message), "{field}");
    }
    let refused = en
        .post(
            &format!("/records/trade_shows/{}", id_of(&show)),
            &[("closes_on", "01.13.2026")],
        )
        .await;
    assert_eq!(
        refused.text_of("f-closes_on-error").as_deref(),
        Some("Not a date: type it as YYYY-MM-DD.")
    );

    // The users page: a login that is taken, a password too short.
    let refused = ru
        .post(
            "/users",
            &[
                ("login", "admin"),
                ("role", "viewer"),
                ("password", "secret-password"),
            ],
        )
        .await;
    assert_eq!(refused.status, 422, "{}", refused.html);
    assert_eq!(
        refused.text_of("new-login-error").as_deref(),
        Some("Такое значение уже есть у другой записи.")
    );
    let refused = ru
        .post(
            "/users",
            &[
                ("login", "kozlov"),
                ("role", "viewer"),
                ("password", "short"),
            ],
        )
        .await;
    assert_eq!(
        refused.text_of("new-password-error").as_deref(),
        Some("Не меньше 8 символов.")
    );

    // The API keeps its English and gains the codes.
    let resp = node
        .post_json("/api/v1/clients", &json!({"email": "x", "tax_id": "1"}))
        .await;
    resp.expect_problem(422, "a bad client");
    let codes: BTreeSet<(String, String)> = resp.json["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["field"].as_str().unwrap_or_default().to_owned(),
                e["code"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        codes,
        BTreeSet::from([
            ("email".to_owned(), "email".to_owned()),
            ("name".to_owned(), "required".to_owned()),
            ("tax_id".to_owned(), "inn_length".to_owned()),
        ]),
        "{}",
        resp.text
    );
    assert!(
        resp.text.contains("is not a valid e-mail address"),
        "{}",
        resp.text
    );
    let openapi = node.get("/api/v1/openapi.json").await.json;
    let codes = &openapi["components"]["schemas"]["ErrorCode"]["enum"];
    for code in [
        "required",
        "email",
        "phone",
        "inn_checksum",
        "date",
        "unique",
    ] {
        assert!(
            codes.as_array().is_some_and(|c| c.contains(&json!(code))),
            "{code} in {codes}"
        );
    }
}

// ---------------------------------------------------------------------------
// 7. Dates are typed in the page's language.

#[tokio::test]
async fn dates_are_shown_and_read_in_the_pages_language() {
    let (_kinds, config) = shows_folder();
    let node = TestNode::start_with_config("office", &config).await;
    let client = create(&node, "clients", json!({"name": "Ромашка"})).await;
    let contact = create(
        &node,
        "contacts",
        json!({"client_id": id_of(&client), "last_name": "Иванов", "birthday": "1980-05-01"}),
    )
    .await;
    let card = format!("/contacts/{}", id_of(&contact));
    let api = format!("/api/v1/contacts/{}", id_of(&contact));
    let birthday = |html: &str| -> String {
        let at = html.find("id=\"f-birthday\"").expect("a birthday field");
        let tag =
            &html[html[..at].rfind('<').unwrap_or(at)..at + html[at..].find('>').unwrap_or(0)];
        tag.to_owned()
    };

    let ru = Visitor::signed_in(&node, "admin", ADMIN_PASSWORD, "ru").await;
    let shown = birthday(&ru.get(&card).await.html);
    for part in [
        "type=\"text\"",
        "value=\"01.05.1980\"",
        "placeholder=\"ДД.ММ.ГГГГ\"",
    ] {
        assert!(shown.contains(part), "{part} in {shown}");
    }
    let saved = ru.post(&card, &[("birthday", "02.05.1980")]).await;
    assert_eq!(saved.status, 303, "{}", saved.html);
    assert_eq!(node.get(&api).await.json["birthday"], json!("1980-05-02"));
    // Unchanged, nothing is written.
    let history = node.get(&format!("{api}/history")).await.json["items"].clone();
    ru.post(&card, &[("birthday", "02.05.1980")]).await;
    assert_eq!(
        node.get(&format!("{api}/history")).await.json["items"],
        history
    );

    let en = Visitor::signed_in(&node, "admin", ADMIN_PASSWORD, "en").await;
    let shown = birthday(&en.get(&card).await.html);
    for part in ["value=\"1980-05-02\"", "placeholder=\"YYYY-MM-DD\""] {
        assert!(shown.contains(part), "{part} in {shown}");
    }
    en.post(&card, &[("birthday", "1980-05-03")]).await;
    assert_eq!(node.get(&api).await.json["birthday"], json!("1980-05-03"));
    let refused = en.post(&card, &[("birthday", "05/04/1980")]).await;
    assert_eq!(refused.status, 422);
    assert_eq!(node.get(&api).await.json["birthday"], json!("1980-05-03"));
    // The typed text is shown again as typed.
    assert!(birthday(&refused.html).contains("value=\"05/04/1980\""));

    // Date and time, in UTC.
    let show = create(&node, "trade_shows", json!({"title": "Выставка"})).await;
    let show_card = format!("/records/trade_shows/{}", id_of(&show));
    let saved = ru
        .post(
            &show_card,
            &[
                ("signed_at", "27.11.2026 10:05"),
                ("closes_on", "31.12.2026"),
            ],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.html);
    let stored = node
        .get(&format!("/api/v1/trade_shows/{}", id_of(&show)))
        .await
        .json;
    assert_eq!(stored["signed_at"], json!("2026-11-27T10:05:00.000Z"));
    assert_eq!(stored["closes_on"], json!("2026-12-31"));
    let page = en.get(&show_card).await.html;
    assert!(page.contains("value=\"2026-11-27 10:05\""), "{page}");
    assert!(page.contains("placeholder=\"YYYY-MM-DD HH:MM (UTC)\""));
}

// ---------------------------------------------------------------------------
// 4. An ended session.

fn cookie_value(page: &Page, name: &str) -> Option<String> {
    page.set_cookies.iter().find_map(|c| {
        c.strip_prefix(&format!("{name}="))
            .map(|rest| rest.split(';').next().unwrap_or_default().to_owned())
    })
}

#[tokio::test]
async fn an_ended_session_sends_to_the_login_page_which_says_so_and_comes_back() {
    let node = TestNode::start().await;

    // No cookie at all: no message, but the way back.
    let nobody = Visitor::anonymous(&node, "ru");
    let page = nobody.get("/clients?stage=regular").await;
    assert_eq!(page.status, 303);
    assert_eq!(
        page.location.as_deref(),
        Some("/login?next=%2Fclients%3Fstage%3Dregular")
    );
    let login = nobody.get("/login?next=%2Fclients%3Fstage%3Dregular").await;
    assert!(!login.has_id("session-expired"));
    assert!(
        login
            .html
            .contains("name=\"next\" value=\"/clients?stage=regular\""),
        "{}",
        login.html
    );

    // Logged out elsewhere: the cookie no longer names a session.
    let ended = Visitor::signed_in(&node, "admin", ADMIN_PASSWORD, "ru").await;
    assert_eq!(ended.get("/contacts").await.status, 200);
    node.send(
        node.request(Method::POST, "/api/v1/auth/logout")
            .header(AUTHORIZATION, format!("Bearer {}", ended.token())),
    )
    .await
    .expect_status(204, "log out");
    let page = ended.get("/contacts").await;
    assert_eq!(page.status, 303);
    assert_eq!(
        page.location.as_deref(),
        Some("/login?expired=1&next=%2Fcontacts")
    );
    assert_eq!(
        cookie_value(&page, "crm_session").as_deref(),
        Some(""),
        "the dead cookie is removed: {:?}",
        page.set_cookies
    );
    let login = nobody.get("/login?expired=1&next=%2Fcontacts").await;
    assert_eq!(
        login.text_of("session-expired").as_deref(),
        Some("Сеанс истёк, войдите снова.")
    );
    let login = Visitor::anonymous(&node, "en")
        .get("/login?expired=1&next=%2Fcontacts")
        .await;
    assert_eq!(
        login.text_of("session-expired").as_deref(),
        Some("Your session has expired; please sign in again.")
    );

    // A deactivated user's session ends at once.
    let kozlov = create(
        &node,
        "users",
        json!({"login": "kozlov", "password": "kozlov-password", "role": "viewer"}),
    )
    .await;
    let deactivated = Visitor::signed_in(&node, "kozlov", "kozlov-password", "ru").await;
    node.patch_json(
        &format!("/api/v1/users/{}", id_of(&kozlov)),
        &json!({"active": false}),
        None,
    )
    .await
    .expect_status(200, "deactivate");
    let page = deactivated.get("/").await;
    assert_eq!(page.location.as_deref(), Some("/login?expired=1"));

    // Logging in on the page goes back to `next`, and marks the browser,
    // so that a session whose cookie the browser dropped says so too.
    let form = Visitor::anonymous(&node, "ru").get("/login").await;
    let form_cookie = cookie_value(&form, "crm_form").expect("a form token cookie");
    let browser = Visitor {
        base: node.base_url().to_owned(),
        client: Visitor::client(),
        cookie: format!("crm_form={form_cookie}; crm_lang=ru"),
        csrf: form_cookie.clone(),
    };
    let signed = browser
        .post(
            "/login",
            &[
                ("login", "admin"),
                ("password", ADMIN_PASSWORD),
                ("next", "/contacts?q=x"),
            ],
        )
        .await;
    assert_eq!(signed.status, 303, "{}", signed.html);
    assert_eq!(signed.location.as_deref(), Some("/contacts?q=x"));
    assert_eq!(cookie_value(&signed, "crm_signed_in").as_deref(), Some("1"));
    let dropped = Visitor {
        cookie: "crm_signed_in=1; crm_lang=ru".to_owned(),
        ..Visitor::anonymous(&node, "ru")
    };
    assert_eq!(
        dropped.get("/sync").await.location.as_deref(),
        Some("/login?expired=1&next=%2Fsync")
    );

    // Never to another site.
    for foreign in [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
        "/\t/evil.example",
        "evil.example",
    ] {
        let signed = browser
            .post(
                "/login",
                &[
                    ("login", "admin"),
                    ("password", ADMIN_PASSWORD),
                    ("next", foreign),
                ],
            )
            .await;
        assert_eq!(signed.status, 303, "{foreign:?}");
        assert_eq!(signed.location.as_deref(), Some("/"), "{foreign:?}");
    }
    let login = nobody.get("/login?next=%2F%2Fevil.example").await;
    assert!(!login.html.contains("name=\"next\""), "{}", login.html);
    // Switching the language on the login page keeps its message and the
    // way back.
    let switched = browser
        .post(
            "/lang",
            &[
                ("lang", "en"),
                ("back", "/login?expired=1&next=%2Fcontacts"),
            ],
        )
        .await;
    assert_eq!(
        switched.location.as_deref(),
        Some("/login?expired=1&next=%2Fcontacts")
    );
    // A wrong password keeps the way back.
    let wrong = browser
        .post(
            "/login",
            &[("login", "admin"), ("password", "wrong"), ("next", "/sync")],
        )
        .await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.html.contains("name=\"next\" value=\"/sync\""));
}

// ---------------------------------------------------------------------------
// 5. The users page beyond one page.

fn logins_on(page: &Page) -> Vec<String> {
    page.html
        .split("data-login=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

fn href_of(page: &Page, id: &str) -> Option<String> {
    page.html
        .split(&format!("id=\"{id}\" href=\""))
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .map(|href| href.replace("&amp;", "&"))
}

#[tokio::test]
async fn the_users_page_pages_and_searches_by_login_or_name() {
    let node = TestNode::start().await;
    for n in 0..59 {
        create(
            &node,
            "users",
            json!({"login": format!("u{n:03}"), "display_name": format!("Сотрудник {n}"),
                   "password": "a long password", "role": "viewer"}),
        )
        .await;
    }
    create(
        &node,
        "users",
        json!({"login": "petrov", "display_name": "Пётр Петров",
               "password": "a long password", "role": "manager"}),
    )
    .await;
    let admin = Visitor::signed_in(&node, "admin", ADMIN_PASSWORD, "ru").await;
    let first = admin.get("/users").await;
    assert_eq!(first.status, 200);
    let mut seen = logins_on(&first);
    assert_eq!(seen.len(), 50, "{seen:?}");
    let next = href_of(&first, "next-page").expect("a next page");
    let second = admin.get(&next).await;
    assert!(second.has_id("first-page"));
    assert!(!second.has_id("next-page"));
    let rest = logins_on(&second);
    assert_eq!(rest.len(), 11, "{rest:?}");
    seen.extend(rest);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, seen, "in login order, each once");
    assert!(seen.contains(&"u058".to_owned()) && seen.contains(&"petrov".to_owned()));

    // Search by a login, by a word of a name.
    assert_eq!(logins_on(&admin.get("/users?q=u007").await), vec!["u007"]);
    assert_eq!(
        logins_on(&admin.get("/users?q=петров").await),
        vec!["petrov"]
    );
    let many = admin.get("/users?q=Сотрудник").await;
    assert_eq!(logins_on(&many).len(), 50);
    assert!(many.has_id("users-first-matches"));
    assert!(admin.get("/users?q=nobody").await.has_id("no-users"));

    // A refused change on the second page shows that page again, the
    // message next to the user's field.
    let u058 = common::list_all(&node, "users", &[("login", "u058")]).await;
    let id = id_of(&u058[0]);
    let long = "Я".repeat(201);
    let refused = admin
        .post(
            &format!("/users/{id}"),
            &[("display_name", &long), ("_back", &next)],
        )
        .await;
    assert_eq!(refused.status, 422, "{}", refused.html);
    assert!(logins_on(&refused).contains(&"u058".to_owned()));
    assert_eq!(
        refused
            .text_of(&format!("u-{id}-display_name-error"))
            .as_deref(),
        Some("Не больше 200 символов.")
    );
    let saved = admin
        .post(
            &format!("/users/{id}"),
            &[("display_name", "Новое имя"), ("_back", &next)],
        )
        .await;
    assert_eq!(saved.status, 303);
    assert_eq!(saved.location.as_deref(), Some(next.as_str()));
}

// ---------------------------------------------------------------------------
// 6. Offices beyond direct peers.

#[tokio::test]
async fn every_node_names_every_office_even_beyond_its_peers() {
    let cluster = Cluster::with_topology(3, Topology::Chain, "auto_sync = false\n").await;
    let far = create(
        &cluster.nodes[2],
        "clients",
        json!({"name": "Далёкий клиент"}),
    )
    .await;
    cluster.quiesce().await;
    let here = &cluster.nodes[0];
    // node0 syncs with node1 only; node2's name came through it.
    let names: BTreeSet<String> = common::list_all(here, "nodes", &[])
        .await
        .iter()
        .filter_map(|n| n["name"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["node0".to_owned(), "node1".to_owned(), "node2".to_owned()])
    );
    let admin = Visitor::signed_in(here, "admin", ADMIN_PASSWORD, "ru").await;
    let card = admin.get(&format!("/clients/{}", id_of(&far))).await;
    assert!(
        card.block_text("history").contains("node2"),
        "{}",
        card.block_text("history")
    );
    // The directory is the nodes' own: read-only over the API, not searched.
    here.post_json("/api/v1/nodes", &json!({"node_id": "x", "name": "fake"}))
        .await
        .expect_problem(405, "create a node record");
    let record = common::list_all(here, "nodes", &[("name", "node2")]).await;
    here.patch_json(
        &format!("/api/v1/nodes/{}", id_of(&record[0])),
        &json!({"name": "renamed"}),
        None,
    )
    .await
    .expect_problem(405, "rename a node record");
    assert!(common::search_ids(here, "node2").await.is_empty());
    let openapi = here.get("/api/v1/openapi.json").await.json;
    assert!(openapi["paths"]["/api/v1/nodes"]["get"].is_object());
    assert!(openapi["paths"]["/api/v1/nodes"]["post"].is_null());
    assert!(openapi["paths"]["/api/v1/import/nodes"].is_null());
    assert!(openapi["components"]["schemas"]["NodeCreate"].is_null());
    assert!(openapi["components"]["schemas"]["Node"].is_object());
}

/// A node writes its record once, and again when its name changes.
#[tokio::test]
async fn a_node_keeps_one_record_of_itself_and_renames_it() {
    use crm_node::config::Config;
    use crm_node::node::Node;

    let data = TempDir::new().expect("a data folder");
    let records_of = |node: &Node| {
        let records = node.records().clone();
        async move {
            records
                .list("nodes", vec![])
                .await
                .expect("list the directory")
                .records()
        }
    };
    let config = Config {
        name: "Казань".to_owned(),
        ..Config::default()
    };
    let node = Node::open(data.path(), config.clone(), true)
        .await
        .expect("open the node");
    node.records().record_this_node().await.expect("write it");
    node.records()
        .record_this_node()
        .await
        .expect("nothing to write");
    let mine = records_of(&node).await;
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert_eq!(mine[0]["name"], json!("Казань"));
    let id = id_of(&mine[0]);
    let changes = |node: &Node| {
        let records = node.records().clone();
        let id = id.clone();
        async move {
            records
                .history("nodes", &id)
                .await
                .expect("the record's history")
                .len()
        }
    };
    assert_eq!(changes(&node).await, 1, "the second start wrote nothing");
    node.close().await;

    let renamed = Config {
        name: "Казань, офис 2".to_owned(),
        ..config
    };
    let node = Node::open(data.path(), renamed, true)
        .await
        .expect("open the node again");
    node.records().record_this_node().await.expect("rename it");
    let mine = records_of(&node).await;
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert_eq!(mine[0]["name"], json!("Казань, офис 2"));
    assert_eq!(changes(&node).await, 2);
    node.close().await;
}

#[tokio::test]
async fn deals_and_invoices_are_listed_filtered_and_open_their_cards() {
    let node = TestNode::start().await;
    let client = id_of(&create(&node, "clients", json!({"name": "Acme"})).await);
    let amount = json!({"minor": 1_250_000, "currency": "RUB"});
    let won = create(
        &node,
        "deals",
        json!({"client_id": client, "title": "Поставка серверов", "stage": "won", "amount": amount}),
    )
    .await;
    let open = create(
        &node,
        "deals",
        json!({"client_id": client, "title": "Пилотный проект"}),
    )
    .await;
    let invoice = create(
        &node,
        "invoices",
        json!({"client_id": client, "deal_id": id_of(&won), "number": "СЧ-0000007",
               "issued_on": "2026-11-27", "status": "paid", "total": amount}),
    )
    .await;
    let ru = Visitor::signed_in(&node, "admin", ADMIN_PASSWORD, "ru").await;
    let deals = ru.get("/deals").await;
    assert_eq!(deals.status, 200);
    let card = |record: &Value, collection: &str| {
        format!("href=\"/records/{collection}/{}\"", id_of(record))
    };
    assert!(deals.html.contains(&card(&won, "deals")), "{}", deals.html);
    assert!(deals.html.contains(&card(&open, "deals")));
    assert!(deals.html.contains("Выиграна"), "the stage in Russian");
    let filtered = ru.get("/deals?stage=won").await;
    assert!(filtered.html.contains(&card(&won, "deals")));
    assert!(!filtered.html.contains(&card(&open, "deals")));
    let searched = ru.get("/deals?q=Пилот").await;
    assert!(searched.html.contains(&card(&open, "deals")));
    assert!(!searched.html.contains(&card(&won, "deals")));

    let invoices = ru.get("/invoices?status=paid").await;
    assert_eq!(invoices.status, 200);
    assert!(invoices.html.contains(&card(&invoice, "invoices")));
    assert!(invoices.html.contains("Оплачен"));
    assert!(!ru
        .get("/invoices?status=draft")
        .await
        .html
        .contains(&card(&invoice, "invoices")));
    let opened = ru
        .get(&format!("/records/invoices/{}", id_of(&invoice)))
        .await;
    assert_eq!(opened.status, 200);
    assert!(opened.html.contains("СЧ-0000007"));
    // The form bounds the probability as the schema does.
    let deal_card = ru.get(&format!("/records/deals/{}", id_of(&open))).await;
    let input = deal_card
        .html
        .split("<input")
        .find(|tag| tag.contains("name=\"probability\""))
        .and_then(|tag| tag.split('>').next())
        .expect("a probability input");
    assert!(
        input.contains("min=\"0\"") && input.contains("max=\"100\""),
        "{input}"
    );
    let nav = ru.get("/").await;
    assert!(nav.html.contains("href=\"/deals\"") && nav.html.contains("href=\"/invoices\""));
}
