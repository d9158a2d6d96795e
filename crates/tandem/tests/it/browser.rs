//! A real browser for the console's tests: Debian's `chromium`, headless, driven by its
//! `chromedriver` over the W3C WebDriver protocol.
//!
//! The client is the dozen calls the tests make (new session, go to, find, click, type,
//! run a script, screenshot), written on reqwest: a WebDriver client crate (fantoccini)
//! would bring the `webdriver` crate with second copies of `http`, `cookie` and
//! `thiserror` and the ICU segmenter into the build for that.
//!
//! Without a browser the tests say so and pass as skipped, unless the run requires one
//! (`TANDEM_TEST_BROWSER_REQUIRED=1`, as in CI, which installs it).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The W3C name of an element reference in a WebDriver answer.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A headless Chromium with its driver, closed (both processes) when dropped.
pub(crate) struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

/// Where the tests keep their screenshots: `TANDEM_TEST_ARTIFACTS`, or
/// `target/test-artifacts` of the checkout (whatever `CARGO_TARGET_DIR` says).
pub(crate) fn artifacts() -> PathBuf {
    let dir = std::env::var_os("TANDEM_TEST_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts")
        })
        .join("console");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Browser {
    /// A new headless browser, or `None` (after saying why) where `chromium` and
    /// `chromedriver` are not installed and the run does not require them.
    pub(crate) fn start() -> Option<Browser> {
        if !installed("chromedriver") || !installed("chromium") {
            assert!(
                std::env::var("TANDEM_TEST_BROWSER_REQUIRED").as_deref() != Ok("1"),
                "TANDEM_TEST_BROWSER_REQUIRED=1 but chromium or chromedriver is missing (apt-get install chromium chromium-driver)"
            );
            eprintln!("skipped: chromium and chromium-driver are not installed");
            return None;
        }
        // A free port for the driver: taken from the system, then handed over.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut browser = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            http: reqwest::Client::new(),
            rt,
        };
        // The driver is ready when its status says so.
        crate::eventually(20, "chromedriver to say it is ready", || {
            browser
                .rt
                .block_on(async {
                    browser
                        .http
                        .get(format!("{}/status", browser.base))
                        .timeout(Duration::from_secs(1))
                        .send()
                        .await
                        .ok()?
                        .json::<Value>()
                        .await
                        .ok()
                })
                .filter(|v| v["value"]["ready"] == true)
                .map(|_| ())
        });
        let session = browser.call(
            "POST",
            "/session",
            Some(json!({"capabilities": {"alwaysMatch": {
                // The lab's certificates come from the lab's own CA.
                "acceptInsecureCerts": true,
                "goog:chromeOptions": {"args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--window-size=1400,1800"
                ]}
            }}})),
        );
        browser.session = session["sessionId"].as_str().unwrap().to_string();
        Some(browser)
    }

    /// One WebDriver command; panics with the driver's message if it fails.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let reply: Value = self.rt.block_on(async {
            let request = match method {
                "GET" => self.http.get(&url),
                "DELETE" => self.http.delete(&url),
                _ => self
                    .http
                    .post(&url)
                    .json(&body.unwrap_or_else(|| json!({}))),
            };
            request
                .timeout(Duration::from_secs(60))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        });
        let value = reply["value"].clone();
        if let Some(error) = value.get("error").and_then(Value::as_str) {
            panic!("WebDriver {method} {path}: {error}: {}", value["message"]);
        }
        value
    }

    fn in_session(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    pub(crate) fn goto(&self, url: &str) {
        self.in_session("POST", "/url", Some(json!({ "url": url })));
    }

    /// The element `css` selects (the first).
    pub(crate) fn find(&self, css: &str) -> String {
        let found = self.in_session(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("{css}: {found}"))
            .to_string()
    }

    pub(crate) fn click(&self, css: &str) {
        let e = self.find(css);
        self.in_session("POST", &format!("/element/{e}/click"), None);
    }

    /// Types `text` into the element `css` selects (`\n` presses Enter).
    pub(crate) fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.in_session(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// What `script` (a function body) returns, run in the page with `args`.
    pub(crate) fn eval(&self, script: &str, args: Value) -> Value {
        self.in_session(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// The text of the element `css` selects, or "" when there is none.
    pub(crate) fn text(&self, css: &str) -> String {
        self.eval(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : '';",
            json!([css]),
        )
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    pub(crate) fn title(&self) -> String {
        self.in_session("GET", "/title", None)
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Waits until `script` returns true in the page (checked again at once after each
    /// check, 20 ms to 200 ms apart, as `crate::eventually` does); how long it took. Panics
    /// after `limit`, with `what` and a screenshot of the page.
    pub(crate) fn wait_until(
        &self,
        what: &str,
        script: &str,
        args: Value,
        limit: Duration,
    ) -> Duration {
        let start = Instant::now();
        let mut pause = Duration::from_millis(20);
        loop {
            if self.eval(script, args.clone()) == Value::Bool(true) {
                return start.elapsed();
            }
            if start.elapsed() > limit {
                let shot = self.screenshot(&format!("timeout-{}", what.replace(' ', "-")));
                panic!(
                    "the page did not show {what} within {limit:?} (screenshot: {})",
                    shot.display()
                );
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    /// Scrolls the element `css` selects to the top of the window.
    pub(crate) fn scroll_to(&self, css: &str) {
        self.eval(
            "document.querySelector(arguments[0]).scrollIntoView();",
            json!([css]),
        );
    }

    /// A screenshot of the window, saved as `<name>.png` among the artifacts.
    pub(crate) fn screenshot(&self, name: &str) -> PathBuf {
        use base64::Engine as _;
        let png = self.in_session("GET", "/screenshot", None);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        let path = artifacts().join(format!("{name}.png"));
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let url = format!("{}/session/{}", self.base, self.session);
            let _ = self.rt.block_on(async {
                self.http
                    .delete(url)
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await
            });
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
