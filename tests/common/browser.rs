//! A real browser for the web UI tests: Debian's Chromium, headless,
//! driven over WebDriver (chromedriver, fantoccini) on loopback. Each
//! [`Browser`] runs its own chromedriver, in its own process group, and its
//! own profile; dropping it (a passing test or a panicking one) kills the
//! group, so no Chromium outlives its test. Every wait is bounded.
//!
//! A click or key that leaves the page ([`Browser::click`],
//! [`Browser::press_enter`]) waits until the next page has loaded: the old
//! document is stamped first and the wait ends when a document without the
//! stamp is complete. Reading the new page can then never race the old
//! one. Clicks that stay on the page use [`Browser::click_here`].
//!
//! Screenshots go to `target/screenshots/`, at a laptop (1366x768) and a
//! desktop (1920x1080) size.
//!
//! Only `tests/web_ui.rs` includes this file, so that the other test
//! binaries do not link a WebDriver client.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::elements::Element;
use fantoccini::error::CmdError;
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
/// How long a page element, or the next page, may take to appear.
const ELEMENT_WAIT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(50);
pub const LAPTOP: (u32, u32) = (1366, 768);
pub const DESKTOP: (u32, u32) = (1920, 1080);

/// Enter, for submitting a form from the keyboard.
pub const ENTER: &str = "\u{e007}";
/// Tab, to move the focus.
pub const TAB: &str = "\u{e004}";

pub struct Browser {
    client: Client,
    _driver: Driver,
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
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        // From here on a panic drops the guard, which kills the group.
        let driver = Driver {
            group: driver
                .id()
                .and_then(|id| rustix::process::Pid::from_raw(id as i32)),
            child: driver,
        };
        let profile = TempDir::new().expect("a temporary browser profile");
        let client = Self::connect(port, &profile).await;
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
            _driver: driver,
            _profile: profile,
            test: test.to_owned(),
        })
    }

    async fn connect(port: u16, profile: &TempDir) -> Client {
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
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--disable-quic",
                    format!("--window-size={},{}", LAPTOP.0, LAPTOP.1),
                    format!("--user-data-dir={}", profile.path().display()),
                ],
                "prefs": {"intl.accept_languages": "ru-RU,ru"},
            }),
        );
        // chromedriver is on loopback: plain HTTP, no TLS stack.
        ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&url)
            .await
            .expect("open a Chromium session")
    }

    /// Opens `url` and waits for it to load.
    pub async fn goto(&self, url: &str) {
        self.leaving(async { self.client.goto(url).await }).await;
    }

    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.expect("the current URL");
        url.path().to_owned()
    }

    /// Does what `action` does, which leaves the current page, and waits
    /// until the next page has loaded.
    async fn leaving(&self, action: impl std::future::Future<Output = Result<(), CmdError>>) {
        self.script("window.__crmLeft = true; return null;").await;
        action.await.expect("an action that leaves the page");
        let deadline = tokio::time::Instant::now() + ELEMENT_WAIT;
        loop {
            // The old page carries the stamp; a new one has none, and is
            // ready once complete.
            let state = self
                .client
                .execute(
                    "return window.__crmLeft === undefined ? document.readyState : 'old';",
                    Vec::new(),
                )
                .await;
            match state {
                Ok(Value::String(s)) if s == "complete" => return,
                Ok(_) => {}
                // A script can fail while a navigation swaps the document.
                Err(CmdError::Standard(_)) => {}
                Err(e) => panic!("waiting for the next page: {e}"),
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the next page did not load within {ELEMENT_WAIT:?} (still on {})",
                self.path().await
            );
            tokio::time::sleep(POLL).await;
        }
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
        self.click_here(&format!("{css} option[value=\"{value}\"]"))
            .await;
    }

    /// Clicks `css`, a link or a submit button, and waits for the page it
    /// leads to.
    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.leaving(async { element.click().await.map(drop) })
            .await;
    }

    /// Clicks `css`, which changes the current page without leaving it.
    pub async fn click_here(&self, css: &str) {
        self.find(css).await.click().await.expect("click");
    }

    /// Presses Enter in the field `css`, submitting its form, and waits for
    /// the page it leads to.
    pub async fn press_enter(&self, css: &str) {
        let element = self.find(css).await;
        self.leaving(async { element.send_keys(ENTER).await }).await;
    }

    /// Clicks the link or button `css` whose text contains `text`, and
    /// waits for the page it leads to.
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
                self.leaving(async { element.click().await.map(drop) })
                    .await;
                return;
            }
        }
        panic!("no {css} with text {text:?}");
    }

    /// Clicks `css`, a button whose form asks for confirmation first,
    /// confirms, and waits for the page it leads to.
    pub async fn click_confirmed(&self, css: &str) {
        let element = self.find(css).await;
        self.leaving(async {
            element.click().await?;
            self.client.accept_alert().await
        })
        .await;
    }

    /// The value of the page's cookie `name`, HttpOnly ones included.
    pub async fn cookie(&self, name: &str) -> String {
        self.client
            .get_named_cookie(name)
            .await
            .unwrap_or_else(|e| panic!("no cookie {name}: {e}"))
            .value()
            .to_owned()
    }

    /// Runs a script in the page and returns its result.
    pub async fn script(&self, source: &str) -> Value {
        self.client
            .execute(source, Vec::new())
            .await
            .expect("run a script in the page")
    }

    /// The id (or name, or tag) of the element that has the focus.
    pub async fn focused(&self) -> Value {
        self.script(
            "const e = document.activeElement;
             return e ? (e.id || e.name || e.tagName.toLowerCase()) : null;",
        )
        .await
    }

    /// Presses Tab, moving the focus on from wherever it is.
    pub async fn tab(&self) {
        self.tabs(1).await;
    }

    /// Presses Tab `times` times, in one WebDriver command.
    async fn tabs(&self, times: u64) {
        let key = TAB.chars().next().unwrap_or_default();
        let mut presses = KeyActions::new("keyboard".to_owned());
        for _ in 0..times {
            presses = presses
                .then(KeyAction::Down { value: key })
                .then(KeyAction::Up { value: key });
        }
        self.client
            .perform_actions(presses)
            .await
            .expect("press Tab");
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

    /// Visible text whose contrast with its background is below WCAG AA
    /// (4.5:1, or 3:1 for large text), as `"selector: ratio"` strings. The
    /// background is the first opaque one among the element and its
    /// ancestors, as the browser computed it.
    pub async fn low_contrast_text(&self) -> Value {
        self.script(CONTRAST_CHECK).await
    }

    /// Tabs through the page from its start and returns what could not be
    /// reached by the keyboard: every visible, enabled link, button and
    /// form control must get the focus, each with a visible focus
    /// indicator.
    ///
    /// The Tabs go twice round the page, so each control is focused at
    /// least twice; it passes when it shows its ring at least once.
    /// Chrome now and then computes no `:focus` style for one focus event
    /// (seen on the skip link of the users page, once in many CI runs),
    /// while a control without a focus style never shows one.
    pub async fn keyboard_unreachable(&self) -> Value {
        self.script(
            "window.__crmFocused = new Set(); window.__crmRinged = new Set();
             window.__crmUnringed = new Set();
             document.addEventListener('focusin', (event) => {
               const e = event.target; window.__crmFocused.add(e);
               const s = getComputedStyle(e);
               if (s.outlineStyle === 'none' && s.boxShadow === 'none') {
                 window.__crmUnringed.add(e);
               } else {
                 window.__crmRinged.add(e);
               }
             }, true);
             document.activeElement && document.activeElement.blur();
             return null;",
        )
        .await;
        let reachable = self.script(REACHABLE).await;
        let count = reachable.as_u64().expect("a count");
        // Tab starts where the focus last was, not at the page's start:
        // twice round (the focus wraps at the end) visits everything.
        self.tabs(2 * count + 2).await;
        self.script(
            "const missed = window.__crmReachable().filter(e => !window.__crmFocused.has(e))
                 .map(e => e.id || e.name || e.getAttribute('href') || e.textContent.trim().slice(0, 20));
             const no_focus_ring = [...window.__crmUnringed].filter(e => !window.__crmRinged.has(e))
                 .map(e => e.id || e.name || e.textContent.trim().slice(0, 20));
             return {missed, no_focus_ring};",
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

    /// Ends the WebDriver session politely; dropping does the rest.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

/// chromedriver, started in a process group of its own, which its Chromium
/// processes join. Killing only chromedriver would leave them running, so
/// dropping this kills the whole group.
struct Driver {
    child: Child,
    group: Option<rustix::process::Pid>,
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(group) = self.group {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
        let _ = self.child.start_kill();
    }
}

/// Defines `window.__crmReachable()` (what the keyboard must reach) and
/// returns how many there are.
const REACHABLE: &str = "
window.__crmReachable = () => [...document.querySelectorAll(
    'a[href], button, input:not([type=hidden]), select, textarea, summary')]
  .filter(e => !e.disabled && e.tabIndex >= 0 && !e.closest('fieldset:disabled'))
  .filter(e => {
    if (e.classList.contains('skip')) return true;
    const r = e.getBoundingClientRect();
    return r.width > 0 && r.height > 0 && getComputedStyle(e).visibility !== 'hidden'
        && !e.closest('details:not([open])') ;
  });
return window.__crmReachable().length;";

/// WCAG relative luminance and contrast, over every element with its own
/// visible text.
const CONTRAST_CHECK: &str = "
const channel = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4); };
const rgba = (s) => { const m = s.match(/[\\d.]+/g).map(Number); return {r: m[0], g: m[1], b: m[2], a: m.length > 3 ? m[3] : 1}; };
const lum = (c) => 0.2126 * channel(c.r) + 0.7152 * channel(c.g) + 0.0722 * channel(c.b);
const background = (e) => {
  for (let n = e; n; n = n.parentElement) {
    const c = rgba(getComputedStyle(n).backgroundColor);
    if (c.a >= 0.99) return c;
  }
  return {r: 255, g: 255, b: 255, a: 1};
};
const name = (e) => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + (e.className && typeof e.className === 'string' ? '.' + e.className.trim().split(/\\s+/).join('.') : '');
const low = [];
for (const e of document.querySelectorAll('body *')) {
  const own = [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
  const isControl = ['INPUT', 'SELECT', 'TEXTAREA'].includes(e.tagName);
  if (!own && !isControl) continue;
  const r = e.getBoundingClientRect();
  const s = getComputedStyle(e);
  if (r.width <= 1 || r.height <= 1 || s.visibility === 'hidden' || e.closest('.visually-hidden')) continue;
  const fg = rgba(s.color);
  const bg = background(e);
  const [hi, lo] = [lum(fg), lum(bg)].sort((a, b) => b - a);
  const ratio = (hi + 0.05) / (lo + 0.05);
  const size = parseFloat(s.fontSize);
  const large = size >= 24 || (size >= 18.66 && Number(s.fontWeight) >= 700);
  if (ratio < (large ? 3 : 4.5)) low.push(name(e) + ': ' + ratio.toFixed(2));
}
return low;";
