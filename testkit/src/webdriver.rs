//! A headless Chromium driven through W3C WebDriver (`chromedriver`), both running inside a
//! test namespace so the browser reaches the panel as a laptop on the LAN does. The client
//! is a few blocking HTTP/1.1 calls made from a thread that entered the namespace: tests
//! only, no crate needed for it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use serde_json::{json, Value};

use crate::{Netns, Proc, Scratch};

/// WebDriver's key for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A browser session.
pub struct Browser {
    ns: String,
    port: u16,
    session: String,
    driver: Proc,
}

impl Browser {
    /// Starts chromedriver on `port` in `ns` and a headless Chromium session with its
    /// profile in `dir`.
    pub fn start(ns: &Netns, dir: &Scratch, port: u16) -> Result<Browser> {
        let log = dir.join(&format!("chromedriver-{port}.log"));
        let mut driver = ns.spawn(
            &[
                "chromedriver",
                &format!("--port={port}"),
                "--log-level=WARNING",
            ],
            &log,
        )?;
        driver.wait_for_log("started successfully", Duration::from_secs(15))?;
        let profile = dir.join(&format!("chrome-{port}"));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--no-proxy-server", "--no-first-run",
                         "--disable-background-networking", "--disable-component-update",
                         "--disable-sync", "--window-size=1280,900",
                         format!("--user-data-dir={}", profile.display())]
            }
        }}});
        let mut b = Browser {
            ns: ns.name().to_string(),
            port,
            session: String::new(),
            driver,
        };
        let v = b.call("POST", "/session", Some(caps))?;
        b.session = v["sessionId"]
            .as_str()
            .context("no session id from chromedriver")?
            .to_string();
        Ok(b)
    }

    /// One WebDriver command: the answer's `value`, or the WebDriver error as an error.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        let (ns, port) = (self.ns.clone(), self.port);
        let (method, target) = (method.to_string(), path.to_string());
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let text = crate::in_netns(&ns, move || -> Result<String> {
            let mut s = TcpStream::connect(("127.0.0.1", port))?;
            s.set_read_timeout(Some(Duration::from_secs(60)))?;
            write!(
                s,
                "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )?;
            // chromedriver keeps the connection open: read the head, then Content-Length bytes.
            let mut out = Vec::new();
            let mut buf = [0u8; 65536];
            let mut want: Option<usize> = None;
            loop {
                if let Some(end) = find(&out, b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&out[..end]).to_ascii_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok());
                    want = len.map(|l| end + 4 + l);
                }
                if want.is_some_and(|w| out.len() >= w) {
                    break;
                }
                let n = s.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..n]);
            }
            Ok(String::from_utf8_lossy(&out).into_owned())
        })??;
        let (head, body) = text.split_once("\r\n\r\n").context("no HTTP answer")?;
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_string()
        };
        let v: Value = serde_json::from_str(&body).with_context(|| format!("not JSON: {body}"))?;
        if v["value"]["error"].is_string() {
            bail!(
                "webdriver {path}: {}: {}",
                v["value"]["error"],
                v["value"]["message"]
            );
        }
        Ok(v["value"].clone())
    }

    fn at(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    /// Opens `url`.
    pub fn goto(&self, url: &str) -> Result<()> {
        self.call("POST", &self.at("/url"), Some(json!({ "url": url })))?;
        Ok(())
    }

    /// The first element matching `css`.
    pub fn find(&self, css: &str) -> Result<String> {
        let v = self.call(
            "POST",
            &self.at("/element"),
            Some(json!({"using": "css selector", "value": css})),
        )?;
        v[ELEMENT]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("no element for {css}: {v}"))
    }

    /// Clicks the first element matching `css`.
    pub fn click(&self, css: &str) -> Result<()> {
        let e = self.find(css)?;
        self.call(
            "POST",
            &self.at(&format!("/element/{e}/click")),
            Some(json!({})),
        )?;
        Ok(())
    }

    /// Replaces the text of the input matching `css` with `text`.
    pub fn fill(&self, css: &str, text: &str) -> Result<()> {
        let e = self.find(css)?;
        self.call(
            "POST",
            &self.at(&format!("/element/{e}/clear")),
            Some(json!({})),
        )?;
        self.call(
            "POST",
            &self.at(&format!("/element/{e}/value")),
            Some(json!({ "text": text })),
        )?;
        Ok(())
    }

    /// Runs `script` (a function body; `arguments` are `args`) and returns its value.
    pub fn exec(&self, script: &str, args: Value) -> Result<Value> {
        self.call(
            "POST",
            &self.at("/execute/sync"),
            Some(json!({"script": script, "args": args})),
        )
    }

    /// The visible text of the first element matching `css` ("" when there is none).
    pub fn text(&self, css: &str) -> Result<String> {
        let v = self.exec(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';",
            json!([css]),
        )?;
        Ok(v.as_str().unwrap_or("").to_string())
    }

    /// Whether the element matching `css` exists and is not hidden.
    pub fn visible(&self, css: &str) -> Result<bool> {
        let v = self.exec(
            "const e = document.querySelector(arguments[0]); return !!e && !e.closest('[hidden]');",
            json!([css]),
        )?;
        Ok(v.as_bool().unwrap_or(false))
    }

    /// Polls `f` every 20 ms until it returns `Some` or `timeout` passes.
    pub fn wait<T>(
        &self,
        timeout: Duration,
        what: &str,
        mut f: impl FnMut(&Browser) -> Result<Option<T>>,
    ) -> Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(t) = f(self)? {
                return Ok(t);
            }
            if Instant::now() > deadline {
                bail!("timed out after {timeout:?} waiting for {what}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Saves a PNG screenshot of the page to `path`.
    pub fn screenshot(&self, path: &Path) -> Result<()> {
        let v = self.call("GET", &self.at("/screenshot"), None)?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().context("no screenshot")?)?;
        std::fs::write(path, png)?;
        Ok(())
    }

    /// The chromedriver process (its pid, for footprint figures).
    pub fn driver_pid(&self) -> u32 {
        self.driver.pid()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let path = self.at("");
        let _ = self.call("DELETE", &path, None);
        let _ = self.driver.stop(Duration::from_secs(5));
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}
