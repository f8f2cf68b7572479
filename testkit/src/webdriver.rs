//! A headless Chromium driven over the W3C WebDriver protocol (Debian's `chromium` and
//! `chromium-driver`). The protocol is JSON over HTTP on loopback, so the workspace's
//! `http-client` speaks it; a client crate would bring a TLS stack and a second HTTP
//! client for the dozen calls the tests make.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use http_client::{Method, Request};
use serde_json::{Value, json};

/// The W3C element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A browser session; the driver and the browser end when it is dropped.
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
}

/// Why the browser could not start: the binaries, or the driver's answer.
pub fn chromium_paths() -> Result<(String, String), String> {
    let find = |names: &[&str]| {
        names
            .iter()
            .find(|p| std::path::Path::new(p).exists())
            .map(|p| (*p).to_owned())
    };
    let browser = find(&["/usr/bin/chromium", "/usr/bin/chromium-browser"])
        .ok_or("no /usr/bin/chromium (Debian's chromium package)")?;
    let driver = find(&["/usr/bin/chromedriver"])
        .ok_or("no /usr/bin/chromedriver (Debian's chromium-driver package)")?;
    Ok((browser, driver))
}

impl Browser {
    /// Starts chromedriver on a port of its choosing and a headless browser window of
    /// `width` x `height` CSS pixels.
    pub fn start(width: u32, height: u32) -> Result<Self, String> {
        let (browser, driver) = chromium_paths()?;
        let mut child = Command::new(driver)
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting chromedriver: {e}"))?;
        let stdout = child.stdout.take().ok_or("no chromedriver stdout")?;
        let mut port = None;
        for line in BufReader::new(stdout).lines().take(20) {
            let line = line.map_err(|e| format!("reading chromedriver: {e}"))?;
            if let Some(rest) = line.split("started successfully on port ").nth(1) {
                port = rest.trim_end_matches('.').parse::<u16>().ok();
                break;
            }
        }
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            return Err("chromedriver did not say which port it listens on".into());
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": browser,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--no-first-run",
                         format!("--window-size={width},{height}")],
            }
        }}});
        let mut me = Self {
            driver: child,
            addr,
            session: String::new(),
        };
        let answer = me.call(Method::POST, "/session", Some(caps))?;
        me.session = answer["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no session id in {answer}"))?
            .to_owned();
        me.set_size(width, height)?;
        Ok(me)
    }

    fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let mut req = Request::to(method.clone(), self.addr, path.to_owned())
            .timeout(Duration::from_secs(60));
        if let Some(body) = body {
            req = req.json(body.to_string());
        }
        let resp = http_client::blocking::request(req)
            .map_err(|e| format!("WebDriver {method} {path}: {e}"))?;
        let v: Value = serde_json::from_slice(&resp.body)
            .map_err(|e| format!("WebDriver {method} {path}: {e}: {}", resp.text()))?;
        if resp.status != 200 {
            return Err(format!(
                "WebDriver {method} {path}: {} {}",
                resp.status, v["value"]
            ));
        }
        Ok(v["value"].clone())
    }

    fn session_call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    /// Resizes the window (the page's layout width).
    pub fn set_size(&self, width: u32, height: u32) -> Result<(), String> {
        self.session_call(
            Method::POST,
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .map(|_| ())
    }

    /// Opens `url` and waits for it to load.
    pub fn goto(&self, url: &str) -> Result<(), String> {
        self.session_call(Method::POST, "/url", Some(json!({ "url": url })))
            .map(|_| ())
    }

    /// The current URL.
    pub fn url(&self) -> Result<String, String> {
        Ok(self
            .session_call(Method::GET, "/url", None)?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// The page's title.
    pub fn title(&self) -> Result<String, String> {
        Ok(self
            .session_call(Method::GET, "/title", None)?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// Every element matching a CSS selector.
    pub fn find_all(&self, css: &str) -> Result<Vec<String>, String> {
        let v = self.session_call(
            Method::POST,
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        )?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The first element matching a CSS selector.
    pub fn find(&self, css: &str) -> Result<String, String> {
        self.find_all(css)?
            .into_iter()
            .next()
            .ok_or_else(|| format!("no element matches {css:?}"))
    }

    /// Clicks an element.
    pub fn click(&self, element: &str) -> Result<(), String> {
        self.session_call(
            Method::POST,
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .map(|_| ())
    }

    /// Clicks an element that leads to another page, and waits (up to 15 s) until the
    /// browser is at a new URL and has loaded it: a click can return before the navigation
    /// it starts (a form's POST and redirect). Returns the new URL.
    pub fn click_to_navigate(&self, element: &str) -> Result<String, String> {
        let before = self.url()?;
        self.click(element)?;
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let now = self.url()?;
            let ready = self.script("return document.readyState")?;
            if now != before && ready == "complete" {
                return Ok(now);
            }
            if std::time::Instant::now() > deadline {
                return Err(format!("the click did not leave {before} within 15 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Types `text` into an element.
    pub fn type_into(&self, element: &str, text: &str) -> Result<(), String> {
        self.session_call(
            Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        )
        .map(|_| ())
    }

    /// An element's rendered text.
    pub fn text(&self, element: &str) -> Result<String, String> {
        Ok(self
            .session_call(Method::GET, &format!("/element/{element}/text"), None)?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// Presses keys on whatever has the focus (WebDriver key codes: `\u{E004}` is Tab,
    /// `\u{E007}` Enter).
    pub fn keys(&self, keys: &str) -> Result<(), String> {
        let mut actions = Vec::new();
        for k in keys.chars() {
            actions.push(json!({"type": "keyDown", "value": k.to_string()}));
            actions.push(json!({"type": "keyUp", "value": k.to_string()}));
        }
        self.session_call(
            Method::POST,
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})),
        )
        .map(|_| ())
    }

    /// Runs a script in the page and returns its value.
    pub fn script(&self, body: &str) -> Result<Value, String> {
        self.session_call(
            Method::POST,
            "/execute/sync",
            Some(json!({"script": body, "args": []})),
        )
    }

    /// The page's HTML as the browser has it.
    pub fn source(&self) -> Result<String, String> {
        Ok(self
            .session_call(Method::GET, "/source", None)?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// A PNG of the whole page (Chromium's full-page capture where it has one).
    pub fn screenshot(&self) -> Result<Vec<u8>, String> {
        let b64 = self.session_call(Method::GET, "/screenshot", None)?;
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap_or_default())
            .map_err(|e| format!("screenshot: {e}"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call(Method::DELETE, &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
