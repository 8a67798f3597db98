//! Headless Chromium driven through chromedriver (WebDriver) with
//! `fantoccini`: a fresh profile per test, each page checked by axe-core
//! and kept as a PNG screenshot under `target/screenshots/<theme>/`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use coop_idp::config::Theme;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// axe-core, vendored (tests/assets/axe.min.js, MPL-2.0, see its licence file).
const AXE: &str = include_str!("../assets/axe.min.js");

/// What axe checks: WCAG 2.0 and 2.1, levels A and AA (RGAA 4 follows them).
const AXE_RUN: &str = r#"
const done = arguments[arguments.length - 1];
axe.run(document, {
  runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] },
  resultTypes: ['violations']
}).then(r => done(r.violations.map(v => ({
  id: v.id, impact: v.impact, help: v.help,
  nodes: v.nodes.map(n => n.target.join(' ') + ' — ' + n.failureSummary)
})))).catch(e => done({ error: String(e) }));
"#;

/// Fonts loaded, and every resource the page fetched, as seen by the page.
const PAGE_FACTS: &str = r#"
const done = arguments[arguments.length - 1];
document.fonts.ready.then(() => done({
  marianne: [...document.fonts].some(f => f.family.replace(/"/g, '') === 'Marianne' && f.status === 'loaded'),
  foreign: performance.getEntriesByType('resource').map(e => e.name)
    .filter(n => !n.startsWith(location.origin) && !n.startsWith('data:')),
  dsfr: performance.getEntriesByType('resource').map(e => e.name)
    .filter(n => n.startsWith(location.origin + '/static/dsfr/') || n === location.origin + '/favicon.ico'),
  stylesheets: [...document.styleSheets].map(s => s.href ? new URL(s.href).pathname : 'inline'),
  lang: document.documentElement.lang,
  firstLink: (document.querySelector('a[href]') || {}).hash || ''
}));
"#;

/// The chromedriver process, stopped when dropped — also when a test fails
/// before its session exists (its Chromium follows).
struct DriverProcess(Child);

impl Drop for DriverProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct Browser {
    pub client: Client,
    pub theme: Theme,
    _driver: DriverProcess,
    _profile: tempfile::TempDir,
    shots: PathBuf,
    pub pages_checked: Vec<String>,
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// Starts chromedriver and a Chromium session, or says the tests are
/// skipped when chromedriver is absent — unless `COOP_IDP_TEST_BROWSER` is
/// `required` (as in .ci/run), when its absence fails the test.
pub async fn start(test: &str, theme: Theme) -> Option<Browser> {
    let required = std::env::var("COOP_IDP_TEST_BROWSER").is_ok_and(|v| v == "required");
    let Some(chromedriver) = on_path("chromedriver") else {
        assert!(
            !required,
            "COOP_IDP_TEST_BROWSER=required but chromedriver is not installed (apt-get install chromium chromium-driver)"
        );
        eprintln!(
            "skipped: {test}: chromedriver not found (apt-get install chromium chromium-driver; COOP_IDP_TEST_BROWSER=required makes this a failure)"
        );
        return None;
    };
    let port = free_port();
    let driver = DriverProcess(
        Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts"),
    );
    let url = format!("http://127.0.0.1:{port}");
    let status = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while status.get(format!("{url}/status")).send().await.is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not answer on {url}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let profile = tempfile::tempdir().expect("profile dir");
    let args = vec![
        "--headless".to_string(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--no-first-run".into(),
        "--window-size=1280,1024".into(),
        "--lang=fr-FR".into(),
        "--accept-lang=fr-FR,fr".into(),
        format!("--user-data-dir={}", profile.path().display()),
    ];
    // A French agent's browser: the pages choose their language from it.
    let mut options = json!({ "args": args, "prefs": { "intl.accept_languages": "fr-FR,fr" } });
    // Debian's /usr/bin/chromium is a shell wrapper; the browser itself is here.
    let real = Path::new("/usr/lib/chromium/chromium");
    if real.is_file() {
        options["binary"] = json!(real.display().to_string());
    }
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), json!("chrome"));
    caps.insert("goog:chromeOptions".into(), options);
    // Already installed by an earlier test of this binary: fine.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut builder = ClientBuilder::rustls().expect("TLS set-up for the WebDriver client");
    builder.capabilities(caps);
    let client = builder.connect(&url).await.expect("a Chromium session through chromedriver");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let shots = target.join("screenshots").join(theme.code());
    std::fs::create_dir_all(&shots).expect("target/screenshots/<theme>");
    Some(Browser { client, theme, _driver: driver, _profile: profile, shots, pages_checked: Vec::new() })
}

impl Browser {
    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// Types into the field `#id`, replacing what it held.
    pub async fn fill(&self, id: &str, value: &str) {
        let field = self.client.find(Locator::Id(id)).await.unwrap_or_else(|e| panic!("field #{id}: {e}"));
        field.clear().await.unwrap_or_else(|e| panic!("clear #{id}: {e}"));
        field.send_keys(value).await.unwrap_or_else(|e| panic!("type into #{id}: {e}"));
    }

    /// Clicks the form's submit button and waits for a page whose title
    /// contains `title`.
    pub async fn submit(&self, title: &str) {
        // Marks this document, so that a title check cannot be satisfied by
        // the page being left (some answers keep the same title).
        self.client.execute("window.coopLeft = true;", vec![]).await.expect("mark the page");
        let button = self.client.find(Locator::Css("main form button[type=submit]")).await.expect("submit button");
        button.click().await.expect("click");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let old = self.client.execute("return window.coopLeft === true;", vec![]).await;
            if matches!(old, Ok(Value::Bool(false))) {
                break;
            }
            assert!(Instant::now() < deadline, "the form was not answered with a new page");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.wait_title(title).await;
    }

    /// Chooses `path` in the file field `#id` (the browser reads the file
    /// from this machine, as a person picking it would).
    pub async fn choose_file(&self, id: &str, path: &Path) {
        let field = self.client.find(Locator::Id(id)).await.unwrap_or_else(|e| panic!("field #{id}: {e}"));
        field.send_keys(&path.display().to_string()).await.unwrap_or_else(|e| panic!("choose a file in #{id}: {e}"));
    }

    /// Follows the link `css` and waits for a page whose title contains `title`.
    pub async fn follow(&self, css: &str, title: &str) {
        let link = self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("link {css}: {e}"));
        link.click().await.unwrap_or_else(|e| panic!("click {css}: {e}"));
        self.wait_title(title).await;
    }

    /// The text of the page's `main` element.
    pub async fn main_text(&self) -> String {
        let main = self.client.find(Locator::Css("main")).await.expect("main");
        main.text().await.expect("text of main")
    }

    /// This browser's cookies for the current site, as a `Cookie` header:
    /// what a download started from the page would send.
    pub async fn cookie_header(&self) -> String {
        let cookies = self.client.get_all_cookies().await.expect("cookies");
        cookies.iter().map(|c| format!("{}={}", c.name(), c.value())).collect::<Vec<_>>().join("; ")
    }

    pub async fn wait_title(&self, title: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let now = self.client.title().await.unwrap_or_default();
            if now.contains(title) {
                return;
            }
            assert!(Instant::now() < deadline, "expected a page titled {title:?}, still on {now:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn url(&self) -> url::Url {
        self.client.current_url().await.expect("current URL")
    }

    pub async fn exists(&self, css: &str) -> bool {
        self.client.find_all(Locator::Css(css)).await.is_ok_and(|v| !v.is_empty())
    }

    pub async fn attr(&self, css: &str, name: &str) -> Option<String> {
        let el = self.client.find(Locator::Css(css)).await.ok()?;
        el.attr(name).await.ok().flatten()
    }

    /// The checks every page gets: a screenshot, the page's language, its
    /// theme's stylesheet and fonts only (the DSFR's and Marianne in `dsfr`,
    /// nothing of them in `neutral`), from this origin only, the skip link
    /// first, and axe-core with no serious or critical WCAG 2.1 A/AA
    /// violation.
    pub async fn check_page(&mut self, name: &str, lang: &str) {
        let name = &format!("{name} ({})", self.theme.code());
        let png = self.client.screenshot().await.expect("screenshot");
        let file = name.split(' ').next().unwrap_or(name);
        std::fs::write(self.shots.join(format!("{file}.png")), png).expect("write screenshot");

        let facts = self.client.execute_async(PAGE_FACTS, vec![]).await.expect("page facts");
        assert_eq!(facts["lang"], json!(lang), "{name}: <html lang>");
        match self.theme {
            Theme::Dsfr => {
                assert_eq!(facts["marianne"], json!(true), "{name}: the Marianne font did not load");
                assert_eq!(facts["stylesheets"], json!(["/static/dsfr/1.15.3/dsfr.min.css", "/static/style.css"]));
            }
            Theme::Neutral => {
                assert_eq!(facts["marianne"], json!(false), "{name}: the Marianne font loaded");
                assert_eq!(facts["dsfr"], json!([]), "{name}: DSFR assets loaded");
                assert_eq!(facts["stylesheets"], json!(["/static/neutral.css"]), "{name}");
            }
        }
        assert_eq!(facts["foreign"], json!([]), "{name}: requests to another origin");
        assert_eq!(facts["firstLink"], json!("#content"), "{name}: the first link is the skip link");

        self.client.execute(AXE, vec![]).await.expect("inject axe-core");
        let violations = self.client.execute_async(AXE_RUN, vec![]).await.expect("axe.run");
        assert!(violations.get("error").is_none(), "{name}: axe failed: {violations}");
        let list = violations.as_array().cloned().unwrap_or_default();
        let blocking: Vec<&Value> =
            list.iter().filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical"))).collect();
        for v in &list {
            eprintln!("axe {name}: {} ({}): {}", v["id"], v["impact"], v["help"]);
        }
        assert!(
            blocking.is_empty(),
            "{name}: {} serious or critical accessibility violation(s):\n{}",
            blocking.len(),
            serde_json::to_string_pretty(&blocking).unwrap_or_default()
        );
        self.pages_checked.push(name.to_string());
    }

    /// Ends the session (Chromium quits); chromedriver stops on drop.
    pub async fn finish(self) -> Vec<String> {
        let _ = self.client.clone().close().await;
        self.pages_checked
    }
}
