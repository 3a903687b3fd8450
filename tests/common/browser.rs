//! A real browser for the web UI tests: Debian's Chromium, headless,
//! driven over WebDriver (chromedriver, fantoccini) on loopback. Each
//! [`Browser`] runs its own chromedriver and profile; both go away when it
//! is closed or dropped. Every wait is bounded. Screenshots go to
//! `target/screenshots/`, at a laptop (1366x768) and a desktop (1920x1080)
//! size.
//!
//! Only `tests/web_ui.rs` includes this file, so that the other test
//! binaries do not link a WebDriver client.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::wd::TimeoutConfiguration;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::process::{Child, Command};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long chromedriver may take to answer its status.
const DRIVER_START: Duration = Duration::from_secs(30);
/// How long a page element may take to appear.
const ELEMENT_WAIT: Duration = Duration::from_secs(15);
pub const LAPTOP: (u32, u32) = (1366, 768);
pub const DESKTOP: (u32, u32) = (1920, 1080);

pub struct Browser {
    client: Client,
    driver: Child,
    _profile: TempDir,
    test: String,
}

/// Makes sure Chromium and chromedriver are installed, with the same
/// script CI runs. `false` (and a loud reason on stderr) only when the
/// script cannot install them (not root, no network) outside CI.
fn ensure_installed() -> bool {
    if std::path::Path::new(CHROMEDRIVER).exists() && std::path::Path::new(CHROMIUM).exists() {
        return true;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/install-browser");
    let status = std::process::Command::new("bash").arg(script).status();
    if matches!(status, Ok(s) if s.success()) {
        return true;
    }
    let reason = format!(
        "\n\n!!!!! BROWSER TESTS SKIPPED: {script} could not install chromium and \
         chromedriver ({status:?}). Run it as root (apt-get install -y chromium chromium-driver).\n\n"
    );
    assert!(std::env::var_os("CI").is_none(), "{reason}");
    eprintln!("{reason}");
    false
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral loopback port")
        .port()
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target")));
    target.join("screenshots")
}

impl Browser {
    /// A headless Chromium whose pages ask for Russian first; `None` when
    /// the browser cannot be installed here (see [`ensure_installed`]).
    pub async fn start(test: &str) -> Option<Browser> {
        if !ensure_installed() {
            return None;
        }
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + DRIVER_START;
        loop {
            let ready = reqwest::get(format!("{url}/status"))
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not answer within {DRIVER_START:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = TempDir::new().expect("a temporary browser profile");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--no-first-run",
                    format!("--window-size={},{}", LAPTOP.0, LAPTOP.1),
                    format!("--user-data-dir={}", profile.path().display()),
                ],
                "prefs": {"intl.accept_languages": "ru-RU,ru"},
            }),
        );
        // chromedriver is on loopback: plain HTTP, no TLS stack.
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&url)
            .await
            .expect("open a Chromium session");
        client
            .update_timeouts(TimeoutConfiguration::new(
                Some(Duration::from_secs(10)),
                Some(Duration::from_secs(20)),
                Some(Duration::ZERO),
            ))
            .await
            .expect("set the WebDriver timeouts");
        Some(Browser {
            client,
            driver,
            _profile: profile,
            test: test.to_owned(),
        })
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigate");
    }

    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.expect("the current URL");
        url.path().to_owned()
    }

    /// The element `css` selects, waiting for it to appear.
    pub async fn find(&self, css: &str) -> Element {
        self.client
            .wait()
            .at_most(ELEMENT_WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css} within {ELEMENT_WAIT:?}: {e}"))
    }

    pub async fn exists(&self, css: &str) -> bool {
        !self
            .client
            .find_all(Locator::Css(css))
            .await
            .expect("query the page")
            .is_empty()
    }

    pub async fn text(&self, css: &str) -> String {
        self.find(css)
            .await
            .text()
            .await
            .expect("an element's text")
    }

    pub async fn value(&self, css: &str) -> String {
        self.find(css)
            .await
            .prop("value")
            .await
            .expect("an input's value")
            .unwrap_or_default()
    }

    /// Replaces what an input holds.
    pub async fn fill(&self, css: &str, text: &str) {
        let input = self.find(css).await;
        input.clear().await.expect("clear an input");
        input.send_keys(text).await.expect("type into an input");
    }

    /// Chooses `value` in the `<select>` `css`.
    pub async fn choose(&self, css: &str, value: &str) {
        self.click(&format!("{css} option[value=\"{value}\"]"))
            .await;
    }

    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.expect("click");
    }

    /// Clicks the button or link `css` whose text contains `text`.
    pub async fn click_text(&self, css: &str, text: &str) {
        let candidates = self
            .client
            .find_all(Locator::Css(css))
            .await
            .expect("query the page");
        for element in candidates {
            if element
                .text()
                .await
                .expect("an element's text")
                .contains(text)
            {
                element.click().await.expect("click");
                return;
            }
        }
        panic!("no {css} with text {text:?}");
    }

    /// Clicks `css`, a button whose form asks for confirmation first, and
    /// confirms.
    pub async fn click_confirmed(&self, css: &str) {
        self.click(css).await;
        self.client
            .accept_alert()
            .await
            .expect("confirm the dialog");
    }

    /// Runs a script in the page and returns its result.
    pub async fn script(&self, source: &str) -> Value {
        self.client
            .execute(source, Vec::new())
            .await
            .expect("run a script in the page")
    }

    /// Form controls a person can reach that have no label: none may.
    pub async fn unlabelled_controls(&self) -> Value {
        self.script(
            "return [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
                .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
                .map(e => e.name || e.id);",
        )
        .await
    }

    /// Saves the page as `<test>-<step>-<w>x<h>.png` at the laptop and the
    /// desktop size.
    pub async fn screenshot(&self, step: &str) {
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("create target/screenshots");
        for (width, height) in [DESKTOP, LAPTOP] {
            self.client
                .set_window_size(width, height)
                .await
                .expect("resize the window");
            let png = self.client.screenshot().await.expect("take a screenshot");
            let file = dir.join(format!("{}-{step}-{width}x{height}.png", self.test));
            std::fs::write(&file, png).expect("save a screenshot");
        }
    }

    /// Logs in through the login page.
    pub async fn login(&self, base_url: &str, login: &str, password: &str) {
        self.goto(&format!("{base_url}/login")).await;
        self.fill("#login", login).await;
        self.fill("#password", password).await;
        self.click("section.login button[type=submit]").await;
        self.find("#logout").await;
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill().await;
    }
}
