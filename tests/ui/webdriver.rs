//! A small W3C WebDriver client over the tests' HTTP client: enough to
//! drive Debian's headless Chromium through `chromedriver`.
//!
//! The driver runs in a process group of its own, so dropping [`Driver`]
//! also ends the browser it started, even when a test panics.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// W3C's key for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// A running `chromedriver`.
pub struct Driver {
    child: Child,
    url: String,
    http: reqwest::Client,
}

impl Driver {
    /// Starts chromedriver on a free port.
    ///
    /// # Panics
    /// When chromedriver is not installed: the portal's tests need a real
    /// browser and do not skip without one.
    pub async fn start() -> Self {
        assert!(
            Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists(),
            "{CHROMEDRIVER} or {CHROMIUM} is missing: the portal's browser tests need them. \
             Install Debian's chromium and chromium-driver: \
             `apt-get install -y chromium chromium-driver` (scripts/test does)"
        );
        let port = crate::common::free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .expect("client");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = http
                .get(format!("{url}/status"))
                .send()
                .await
                .ok()
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self { child, url, http }
    }

    /// A new headless browser session.
    pub async fn session(&self) -> Session {
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,900",
                         "--disable-dev-shm-usage", "--no-first-run", "--disable-extensions"],
            },
        }}});
        let r = self
            .http
            .post(format!("{}/session", self.url))
            .json(&caps)
            .send()
            .await
            .expect("new session");
        let v: Value = r.json().await.expect("session json");
        let id = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        Session {
            base: format!("{}/session/{id}", self.url),
            http: self.http.clone(),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The whole group: chromedriver and the browsers it started.
        let pgid = self.child.id();
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{pgid}")])
            .status();
        let _ = self.child.wait();
    }
}

/// One browser window.
pub struct Session {
    base: String,
    http: reqwest::Client,
}

/// A reference to an element of the page.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Session {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => self.http.get(&url),
            "POST" => self.http.post(&url).json(&body.unwrap_or(json!({}))),
            "DELETE" => self.http.delete(&url),
            m => panic!("{m}"),
        };
        let r = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert!(
            status.is_success(),
            "webdriver {method} {path}: {status} {}",
            v["value"]
        );
        v["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({"url": url}))).await;
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    pub async fn find(&self, css: &str) -> Option<Element> {
        let url = format!("{}/element", self.base);
        let r = self
            .http
            .post(url)
            .json(&json!({"using": "css selector", "value": css}))
            .send()
            .await
            .expect("find element");
        if !r.status().is_success() {
            return None;
        }
        let v: Value = r.json().await.ok()?;
        v["value"][ELEMENT].as_str().map(|s| Element(s.to_string()))
    }

    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        let v = self
            .call(
                "POST",
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT].as_str().map(|s| Element(s.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub async fn click(&self, e: &Element) {
        self.call("POST", &format!("/element/{}/click", e.0), None)
            .await;
    }

    /// Clicks `e` unless the page replaced it since it was found (a table
    /// that polls re-renders its rows): false then, to find it again.
    pub async fn try_click(&self, e: &Element) -> bool {
        let path = format!("/element/{}/click", e.0);
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&json!({}))
            .send()
            .await
            .unwrap_or_else(|err| panic!("POST {path}: {err}"));
        let status = r.status();
        if status.is_success() {
            return true;
        }
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert!(
            v["value"]["error"] == "stale element reference",
            "webdriver POST {path}: {status} {}",
            v["value"]
        );
        false
    }

    /// Types into an element, as a person would (W3C key codes for specials).
    pub async fn send_keys(&self, e: &Element, text: &str) {
        self.call(
            "POST",
            &format!("/element/{}/value", e.0),
            Some(json!({"text": text})),
        )
        .await;
    }

    /// Waits up to `secs` for an element matching `css`.
    pub async fn wait(&self, css: &str, secs: u64) -> Element {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(e) = self.find(css).await {
                return e;
            }
            if Instant::now() > deadline {
                panic!(
                    "no element {css:?} after {secs} s; the page says: {}",
                    self.page_text().await
                );
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    /// Waits up to `secs` until no element matches `css` (a row the page
    /// removed, a button it no longer offers).
    pub async fn wait_gone(&self, css: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while self.find(css).await.is_some() {
            if Instant::now() > deadline {
                panic!(
                    "{css:?} still there after {secs} s; the page says: {}",
                    self.page_text().await
                );
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    /// Waits up to `secs` for a user prompt (`window.confirm`) and returns
    /// its message. While it is open the page runs nothing else.
    pub async fn wait_prompt(&self, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let r = self
                .http
                .get(format!("{}/alert/text", self.base))
                .send()
                .await
                .expect("prompt text");
            if r.status().is_success() {
                let v: Value = r.json().await.expect("prompt json");
                return v["value"].as_str().unwrap_or_default().to_string();
            }
            assert!(
                Instant::now() < deadline,
                "no prompt after {secs} s; the page says: {}",
                self.page_text().await
            );
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    /// Answers the open prompt: OK (`accept`) or Cancel.
    pub async fn answer_prompt(&self, accept: bool) {
        let verb = if accept { "accept" } else { "dismiss" };
        self.call("POST", &format!("/alert/{verb}"), None).await;
    }

    /// Waits up to `secs` until the text of `css` satisfies `ok`; returns it.
    pub async fn wait_text(&self, css: &str, secs: u64, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let t = self
                .execute(
                    "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;",
                    vec![json!(css)],
                )
                .await;
            if let Some(t) = t.as_str().filter(|t| ok(t)) {
                return t.to_string();
            }
            if Instant::now() > deadline {
                panic!(
                    "{css:?} never showed what was expected after {secs} s (it says {t}); the page says: {}",
                    self.page_text().await
                );
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    /// The visible text of the page (for failure messages), cut to 3,000 characters.
    pub async fn page_text(&self) -> String {
        let v = self
            .execute("return document.body.innerText;", vec![])
            .await;
        v.as_str().unwrap_or_default().chars().take(3000).collect()
    }

    /// Saves a PNG of the window to `dir/name.png` when `dir` is set.
    pub async fn screenshot(&self, dir: Option<&Path>, name: &str) {
        let Some(dir) = dir else { return };
        // Let charts paint (they draw on the next animation frame).
        tokio::time::sleep(Duration::from_millis(400)).await;
        let v = self.call("GET", "/screenshot", None).await;
        let png = base64_decode(v.as_str().expect("base64 screenshot"));
        std::fs::create_dir_all(dir).expect("screenshot dir");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
    }

    pub async fn quit(self) {
        let _ = self.http.delete(&self.base).send().await;
    }
}

/// Standard base64 (the screenshot's encoding), padding and whitespace ignored.
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in s.bytes().filter_map(val) {
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}
