//! The portal as people use it: Debian's Chromium, driven over the DevTools protocol,
//! against a real `tongchou serve` on the tiny demo. A steward registers a resource from a
//! sample, loads data, corrects the quarantined row and resubmits; an analyst searches in
//! Chinese, requests access, the steward approves with masks, the analyst queries and
//! exports XLSX; the bureau's ledger page shows the query; the inspector's phone-sized
//! page flags a planted fake licence, typed and scanned from a QR code. Every page is
//! screenshotted (under `target/tmp/portal/`), checked for console errors, unlabelled form
//! controls and raw values of masked fields.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chromiumoxide::cdp::browser_protocol::browser::{
    SetDownloadBehaviorBehavior, SetDownloadBehaviorParams,
};
use chromiumoxide::cdp::browser_protocol::dom::SetFileInputFilesParams;
use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
use chromiumoxide::cdp::browser_protocol::input::InsertTextParams;
use chromiumoxide::cdp::browser_protocol::log::{EnableParams, EventEntryAdded};
use chromiumoxide::cdp::js_protocol::runtime::{EventConsoleApiCalled, EventExceptionThrown};
use chromiumoxide::page::ScreenshotParams;
use chromiumoxide::{Browser, BrowserConfig, Page};
use common::*;
use futures::StreamExt;
use serde_json::Value;

const CHROMIUM: &str = "/usr/bin/chromium";

/// One browser tab with everything it complained about collected.
struct Tab {
    page: Page,
    base: String,
    shots: PathBuf,
    complaints: Arc<Mutex<Vec<String>>>,
    /// Raw values that must never reach a page (values of masked fields).
    secrets: Vec<String>,
    /// A phone's screen, when emulating one (a full-page screenshot resets it).
    phone: Option<(i64, i64)>,
}

impl Tab {
    async fn open(browser: &Browser, base: &str, shots: &Path) -> Tab {
        let page = browser.new_page("about:blank").await.unwrap();
        page.execute(EnableParams::default()).await.unwrap();
        let complaints = Arc::new(Mutex::new(Vec::new()));
        let mut logs = page.event_listener::<EventEntryAdded>().await.unwrap();
        let sink = complaints.clone();
        tokio::spawn(async move {
            while let Some(e) = logs.next().await {
                sink.lock()
                    .unwrap()
                    .push(format!("log {:?}: {}", e.entry.level, e.entry.text));
            }
        });
        let mut thrown = page.event_listener::<EventExceptionThrown>().await.unwrap();
        let sink = complaints.clone();
        tokio::spawn(async move {
            while let Some(e) = thrown.next().await {
                sink.lock()
                    .unwrap()
                    .push(format!("exception: {:?}", e.exception_details.text));
            }
        });
        let mut console = page
            .event_listener::<EventConsoleApiCalled>()
            .await
            .unwrap();
        let sink = complaints.clone();
        tokio::spawn(async move {
            while let Some(e) = console.next().await {
                sink.lock().unwrap().push(format!("console {:?}", e.r#type));
            }
        });
        Tab {
            page,
            base: base.to_string(),
            shots: shots.to_path_buf(),
            complaints,
            secrets: Vec::new(),
            phone: None,
        }
    }

    async fn go(&self, path: &str) -> String {
        self.page
            .goto(format!("{}{path}", self.base))
            .await
            .unwrap();
        self.page.wait_for_navigation().await.unwrap();
        self.html().await
    }

    async fn html(&self) -> String {
        self.page.content().await.unwrap()
    }

    /// Types `text` into the field, as a keyboard (or an input method) would.
    async fn fill(&self, selector: &str, text: &str) {
        let js = format!(
            "document.querySelector({}).value = ''",
            serde_json::to_string(selector).unwrap()
        );
        self.page.evaluate(js).await.unwrap();
        self.page
            .find_element(selector)
            .await
            .unwrap()
            .focus()
            .await
            .unwrap();
        self.page
            .execute(InsertTextParams::new(text))
            .await
            .unwrap();
    }

    async fn choose(&self, selector: &str, value: &str) {
        let js = format!(
            "(() => {{ const s = document.querySelector({}); s.value = {}; return s.value; }})()",
            serde_json::to_string(selector).unwrap(),
            serde_json::to_string(value).unwrap()
        );
        let chosen: String = self.page.evaluate(js).await.unwrap().into_value().unwrap();
        assert_eq!(chosen, value, "{selector} has no option {value}");
    }

    async fn attach(&self, selector: &str, file: &Path) {
        let input = self.page.find_element(selector).await.unwrap();
        self.page
            .execute(
                SetFileInputFilesParams::builder()
                    .file(file.display().to_string())
                    .backend_node_id(input.backend_node_id)
                    .build()
                    .unwrap(),
            )
            .await
            .unwrap();
    }

    /// Clicks and waits until the page the click leads to has loaded.
    async fn click(&self, selector: &str) -> String {
        self.page
            .evaluate("window.beforeClick = true")
            .await
            .unwrap();
        self.page
            .find_element(selector)
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        for _ in 0..400 {
            let loaded = self
                .page
                .evaluate("window.beforeClick === undefined && document.readyState === 'complete'")
                .await
                .ok()
                .and_then(|v| v.into_value::<bool>().ok())
                .unwrap_or(false);
            if loaded {
                return self.html().await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("clicking {selector} led nowhere");
    }

    /// Screenshots the page and checks it: no complaint in the console, no raw value of
    /// a masked field in the HTML.
    async fn check(&self, name: &str) -> String {
        self.check_answering(name, 200).await
    }

    /// `check` for a page that answers with an error status on purpose (a refused form):
    /// the browser's note of that status is expected, nothing else.
    async fn check_answering(&self, name: &str, status: u16) -> String {
        let html = self.html().await;
        self.page
            .save_screenshot(
                ScreenshotParams::builder().full_page(true).build(),
                self.shots.join(format!("{name}.png")),
            )
            .await
            .unwrap();
        if let Some((width, height)) = self.phone {
            self.emulate_phone(width, height).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let expected = format!("the server responded with a status of {status} ");
        let complaints: Vec<String> = std::mem::take(&mut *self.complaints.lock().unwrap())
            .into_iter()
            .filter(|c| status == 200 || !c.contains(&expected))
            .collect();
        assert!(
            complaints.is_empty(),
            "{name}: the browser complained: {complaints:?}"
        );
        let unlabelled: Vec<String> = self
            .page
            .evaluate(
                "Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea'))\
                 .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))\
                 .map(e => e.name || e.id || e.outerHTML)",
            )
            .await
            .unwrap()
            .into_value()
            .unwrap();
        assert!(
            unlabelled.is_empty(),
            "{name}: form controls without a label: {unlabelled:?}"
        );
        for secret in &self.secrets {
            assert!(
                !html.contains(secret.as_str()),
                "{name}: the raw value {secret} of a masked field is in the page"
            );
        }
        html
    }

    async fn emulate_phone(&self, width: i64, height: i64) {
        self.page
            .execute(SetDeviceMetricsOverrideParams::new(
                width, height, 3.0, true,
            ))
            .await
            .unwrap();
    }

    async fn sign_in(&self, data: &Path, user: &str) {
        let html = self.go("/").await;
        assert!(
            html.contains("登录统筹"),
            "an anonymous visitor is sent to sign in: {html}"
        );
        self.fill("#name", user).await;
        self.fill("#password", &password_of(data, user)).await;
        let html = self.click("form[action='/signin'] button").await;
        assert!(html.contains(user), "{user} is signed in: {html}");
    }

    async fn sign_out(&self) {
        let html = self.click("form[action='/signout'] button").await;
        assert!(html.contains("登录统筹"), "signed out: {html}");
    }
}

async fn browser(downloads: &Path) -> Browser {
    let profile = downloads.parent().unwrap().join("chromium-profile");
    let config = BrowserConfig::builder()
        .chrome_executable(CHROMIUM)
        .no_sandbox()
        .arg("--disable-dev-shm-usage")
        .user_data_dir(profile)
        .window_size(1280, 900)
        .build()
        .unwrap();
    let (browser, mut handler) = Browser::launch(config)
        .await
        .unwrap_or_else(|e| panic!("cannot start {CHROMIUM} (.ci/run installs it): {e}"));
    tokio::spawn(async move { while handler.next().await.is_some() {} });
    browser
        .execute(
            SetDownloadBehaviorParams::builder()
                .behavior(SetDownloadBehaviorBehavior::Allow)
                .download_path(downloads.display().to_string())
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    browser
}

fn artefacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("portal");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const SAMPLE: &str = "姓名,公民身份号码,救助金额,发放日期\n陈小明,440605198001011231,1200.50,2026-10-01\n李红,440605199002021233,800,2026-10-01\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steward_an_analyst_the_bureau_and_an_inspector_do_their_work_in_the_browser() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_demo(tmp.path());
    let (_server, base) = serve(&data);
    let shots = artefacts();
    let downloads = tmp.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let browser = browser(&downloads).await;
    let mut tab = Tab::open(&browser, &base, &shots).await;
    let html = tab.go("/").await;
    assert!(html.contains("登录统筹"));
    tab.check("signin").await;

    // A steward of the civil affairs bureau registers a resource from a sample …
    tab.sign_in(&data, "civil_affairs_steward").await;
    let home = tab.check("home").await;
    assert!(
        home.contains("个单位") && home.contains("<svg"),
        "the inventory with its charts: {home}"
    );
    tab.go("/load").await;
    tab.check("load").await;
    // A workbook naming resources the unit already has is refused row by row.
    let workbook = tmp.path().join("民政局目录.xlsx");
    let civil_affairs = unit_code(&data, "civil_affairs");
    tongchou_ok(
        &data,
        &[
            "catalog",
            "export",
            "--out",
            workbook.to_str().unwrap(),
            "--unit",
            &civil_affairs,
        ],
    );
    tab.attach("#workbook", &workbook).await;
    let report = tab.click("form[action='/load/workbook'] button").await;
    assert!(
        report.contains("未登记任何资源") && report.contains("already has a resource named"),
        "{report}"
    );
    tab.check_answering("load-workbook-refused", 422).await;
    let sample = tmp.path().join("救助样例.csv");
    std::fs::write(&sample, SAMPLE).unwrap();
    tab.fill("#resource_name", "困难群众救助发放名单").await;
    tab.attach("#sample", &sample).await;
    let confirm = tab.click("form[action='/load/sample'] button").await;
    assert!(
        confirm.contains("公民身份号码") && confirm.contains("class=\"pii\""),
        "the ID column is flagged as personal data: {confirm}"
    );
    tab.check("load-confirm").await;
    tab.fill("#abstract", "南海区困难群众救助金发放名单。")
        .await;
    let refused = tab.click("form[action='/register'] button").await;
    assert!(
        refused.contains("2 处问题") && refused.contains("share_condition"),
        "a conditional share without its condition and basis is refused, row by row: {refused}"
    );
    tab.check_answering("load-refused", 422).await;
    tab.go("/load").await;
    tab.fill("#resource_name", "困难群众救助发放名单").await;
    tab.attach("#sample", &sample).await;
    tab.click("form[action='/load/sample'] button").await;
    tab.fill("#abstract", "南海区困难群众救助金发放名单。")
        .await;
    tab.fill("#share_condition", "用于社会救助和补贴资格核对")
        .await;
    tab.fill("#legal_basis", "《社会救助暂行办法》").await;
    let registered = tab.click("form[action='/register'] button").await;
    assert!(registered.contains("已登记 1 项资源"), "{registered}");
    // … loads data with one bad ID number, which is quarantined …
    let code = registered
        .split("/resource?code=")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .replace("%2F", "/");
    let rows = tmp.path().join("救助名单.csv");
    std::fs::write(
        &rows,
        format!("{SAMPLE}王五,440605199913131234,500,2026-10-02\n"),
    )
    .unwrap();
    tab.choose("#data-resource", &code).await;
    tab.attach("#datafile", &rows).await;
    let report = tab.click("form[action='/load/data'] button").await;
    assert!(report.contains("装载完成"), "{report}");
    assert!(
        report.contains("隔离</dt><dd>1</dd>"),
        "one row quarantined: {report}"
    );
    tab.check("load-report").await;
    // … and corrects it in the browser.
    let quarantine = tab.go(&format!("/quarantine?resource={code}")).await;
    assert!(quarantine.contains("440605199913131234"), "{quarantine}");
    tab.check("quarantine").await;
    tab.fill("input[name$='.公民身份号码']", "440605199912131239")
        .await;
    let fixed = tab.click("form[action='/quarantine'] button").await;
    assert!(fixed.contains("已关闭原隔离行 1"), "{fixed}");
    assert!(
        fixed.contains("· 0 行待更正"),
        "nothing is left to correct: {fixed}"
    );
    tab.sign_out().await;

    // An analyst searches in Chinese and asks for it.
    tab.sign_in(&data, "science_analyst").await;
    tab.secrets = vec![
        "440605198001011231".into(),
        "440605199002021233".into(),
        "440605199912131239".into(),
    ];
    tab.go("/catalog").await;
    tab.fill("#q", "救助 发放").await;
    let hits = tab.click("form.search button").await;
    assert!(hits.contains("困难群众救助发放名单"), "{hits}");
    tab.check("catalog").await;
    let resource = tab.click("ol.hits li a").await;
    assert!(resource.contains("申请使用"), "{resource}");
    tab.check("resource").await;
    tab.click("a.button").await;
    tab.check("request-form").await;
    tab.choose("#purpose", "subsidy_review").await;
    tab.fill("#purpose_detail", "核对补贴申请人是否已领取救助")
        .await;
    tab.fill("#legal_basis", "《社会救助暂行办法》").await;
    let filed = tab.click("form[action='/requests'] button").await;
    assert!(
        filed.contains("已提交申请") && filed.contains("待审批"),
        "{filed}"
    );
    tab.check("requests-mine").await;
    tab.sign_out().await;

    // The providing steward approves, the ID pseudonymised.
    tab.sign_in(&data, "civil_affairs_steward").await;
    let queue = tab.go("/requests").await;
    assert!(
        queue.contains("待我单位审批") && queue.contains("science_analyst"),
        "{queue}"
    );
    tab.check("requests-queue").await;
    tab.choose("select[name='mask:person_id']", "pseudonym")
        .await;
    tab.choose("select[name='to']", "unit").await;
    let approved = tab.click("form[action$='/approve'] button").await;
    assert!(approved.contains("已批准申请"), "{approved}");
    let grants = ok_json(
        &data,
        &["access", "list", "--view", "all", "--grants", "--json"],
    );
    let grant = grants
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["resource"] == code.as_str())
        .expect("the approval made a grant");
    assert!(
        grant["user"].is_null(),
        "granted to the whole unit: {grant}"
    );
    let person_id = grant["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "person_id")
        .unwrap();
    assert_eq!(person_id["mask"], "pseudonym");
    tab.sign_out().await;

    // The analyst queries it and exports XLSX.
    tab.sign_in(&data, "science_analyst").await;
    tab.go("/console").await;
    tab.choose("#list-purpose", "subsidy_review").await;
    let console = tab.click("aside form button").await;
    assert!(
        console.contains("困难群众救助发放名单"),
        "the new grant is listed beside the editor: {console}"
    );
    tab.check("console").await;
    let unit = unit_name_of(&data, "civil_affairs_steward");
    tab.fill(
        "#sql",
        &format!("SELECT * FROM \"{unit}\".\"困难群众救助发放名单\""),
    )
    .await;
    let result = tab.click("button[value='html']").await;
    assert!(result.contains("共 3 行"), "{result}");
    tab.check("console-result").await;
    tab.page
        .find_element("button[value='xlsx']")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let mut exported = None;
    for _ in 0..100 {
        exported = std::fs::read_dir(&downloads)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "xlsx"));
        if exported.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let exported = exported.expect("the XLSX export was downloaded");
    let bytes = std::fs::read(&exported).unwrap();
    assert!(bytes.starts_with(b"PK"), "an XLSX is a zip");
    let preview = tab.go(&format!("/resource?code={code}")).await;
    assert!(
        preview.contains("共 3 行") && preview.contains("陈**"),
        "the preview shows the rows masked as granted: {preview}"
    );
    tab.check("resource-preview").await;
    tab.sign_out().await;
    tab.secrets.clear();

    // The bureau's ledger page shows that query.
    tab.sign_in(&data, "admin").await;
    let english = tab.click("a[href^='/lang/en']").await;
    assert!(
        english.contains("<h1>Inventory</h1>") && english.contains("lang=\"en\""),
        "{english}"
    );
    tab.check("home-english").await;
    let chinese = tab.click("a[href^='/lang/zh']").await;
    assert!(chinese.contains("<h1>数据家底</h1>"), "{chinese}");
    let ledger = tab.go("/ledger?user=science_analyst&kind=statement").await;
    assert!(
        ledger.contains(&code) && ledger.contains("subsidy_review"),
        "the analyst's statement is in the ledger: {ledger}"
    );
    tab.check("ledger").await;
    let newest = tab.go("/ledger?limit=5").await;
    let older = tab.click("a.older").await;
    let (shown, then) = (listed_seqs(&newest), listed_seqs(&older));
    assert!(
        shown.len() == 5 && !then.is_empty() && then.iter().all(|s| !shown.contains(s)),
        "the older page goes on after the last entry shown: {shown:?} then {then:?}"
    );
    tab.fill("#id", "440605198001011231").await;
    let looked = tab.click("form[action='/ledger/subject'] button").await;
    assert!(
        looked.contains("science_analyst") && !looked.contains("440605198001011231"),
        "who looked at this person, without the number in clear: {looked}"
    );
    tab.check("ledger-subject").await;
    tab.sign_out().await;

    // The inspector, on a phone, checks a planted fake licence.
    let truth: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(data.join("district/ground_truth.json")).unwrap(),
    )
    .unwrap();
    let cases = truth["scenarios"]["fake_licences"].as_array().unwrap();
    let of_kind = |kind: &str| cases.iter().find(|c| c["kind"] == kind).unwrap();
    let fake = of_kind("unregistered")["licence_no_typed"]
        .as_str()
        .unwrap()
        .to_string();
    let bad_check = of_kind("bad_checksum")["licence_no_typed"]
        .as_str()
        .unwrap()
        .to_string();
    let real = of_kind("typo")["true_code"].as_str().unwrap().to_string();
    tab.phone = Some((390, 844));
    tab.emulate_phone(390, 844).await;
    tab.sign_in(&data, "inspector").await;
    tab.go("/inspect").await;
    tab.check("inspect").await;
    tab.fill("#licence", &fake).await;
    let verdict = tab.click("form[action='/inspect'] button").await;
    assert!(
        verdict.contains("疑似假证"),
        "the fake licence {fake} is flagged: {verdict}"
    );
    tab.check("inspect-fake").await;
    let width: f64 = tab
        .page
        .evaluate("document.documentElement.scrollWidth")
        .await
        .unwrap()
        .into_value()
        .unwrap();
    assert!(
        width <= 390.0,
        "the page fits a 390-px phone (is {width} px wide)"
    );
    // The same fake, scanned: a photo of a QR code carrying it in a URL.
    let photo = tmp.path().join("licence-qr.png");
    qrcode::QrCode::new(format!("http://www.gsxt.gov.cn/index.html?uniscid={fake}").as_bytes())
        .unwrap()
        .render::<image::Luma<u8>>()
        .min_dimensions(400, 400)
        .build()
        .save(&photo)
        .unwrap();
    tab.attach("#photo", &photo).await;
    let scanned = tab.click("form[action='/inspect/scan'] button").await;
    assert!(
        scanned.contains("疑似假证") && scanned.contains(&fake),
        "the scanned fake is flagged: {scanned}"
    );
    tab.check("inspect-scanned").await;
    tab.fill("#licence", &bad_check).await;
    let verdict = tab.click("form[action='/inspect'] button").await;
    assert!(
        verdict.contains("疑似假证") && verdict.contains("校验位"),
        "{bad_check}: {verdict}"
    );
    tab.fill("#licence", &real).await;
    let verdict = tab.click("form[action='/inspect'] button").await;
    assert!(
        !verdict.contains("疑似假证") && verdict.contains("登记库中有此执照"),
        "{real} is in the register: {verdict}"
    );
    tab.check("inspect-registered").await;
    tab.fill("#licence", &fake).await;
    tab.click("form[action='/inspect'] button").await;
    tab.fill("#shop_name", "某某商行").await;
    let reported = tab.click("form[action='/inspect/report'] button").await;
    assert!(
        reported.contains("已上报") && reported.contains(&fake),
        "{reported}"
    );
    tab.check("inspect-reported").await;
    tab.sign_out().await;

    // The finding reaches the unit that keeps the licence register.
    tab.sign_in(&data, "market_steward").await;
    let fed_back = tab.go("/load").await;
    assert!(
        fed_back.contains("巡查员上报的执照问题")
            && fed_back.contains(&fake)
            && fed_back.contains("某某商行"),
        "{fed_back}"
    );
    tab.check("load-findings").await;
}

/// Signs in through the portal's form; returns the `Cookie` header value.
fn portal_cookie(http: &ureq::Agent, base: &str, data: &Path, user: &str) -> String {
    let r = http
        .post(format!("{base}/signin"))
        .send_form([
            ("name", user),
            ("password", &password_of(data, user)),
            ("next", "//evil.example/"),
        ])
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(
        r.headers()["location"],
        "/",
        "an off-site `next` is not followed"
    );
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    cookie.split(';').next().unwrap().to_string()
}

fn get(http: &ureq::Agent, url: &str, cookie: &str) -> (u16, String) {
    let mut r = http.get(url).header("cookie", cookie).call().unwrap();
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
}

#[test]
fn the_portal_keeps_its_doors_shut_and_records_every_page() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_demo(tmp.path());
    let (_server, base) = serve(&data);
    let http = common::plain_agent();

    let r = http.get(format!("{base}/console")).call().unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(r.headers()["location"], "/signin?next=/console");
    let css = http
        .get(format!("{base}/static/portal.css"))
        .call()
        .unwrap();
    assert_eq!(css.status().as_u16(), 200, "assets need no sign-in");
    let mut wrong = http
        .post(format!("{base}/signin"))
        .send_form([
            ("name", "science_analyst"),
            ("password", "not-the-password"),
        ])
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    assert!(
        wrong
            .body_mut()
            .read_to_string()
            .unwrap()
            .contains("用户名或密码不对")
    );

    let analyst = portal_cookie(&http, &base, &data, "science_analyst");
    let r = http
        .get(format!("{base}/"))
        .header("cookie", &analyst)
        .call()
        .unwrap();
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    for (path, status) in [
        ("/ledger", 403),
        ("/ledger/subject?id=440605198001011231", 403),
        ("/load", 403),
        ("/inspect", 403),
        ("/resource?code=000/000000", 404),
    ] {
        let (got, html) = get(&http, &format!("{base}{path}"), &analyst);
        assert_eq!(got, status, "{path}: {html}");
        assert!(html.contains("role=\"alert\""), "{path} says why: {html}");
    }
    // A form posted from another site is refused, even with the session cookie.
    for (name, value) in [
        ("origin", "https://evil.example"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let r = http
            .post(format!("{base}/console"))
            .header("cookie", &analyst)
            .header(name, value)
            .send_form([("purpose", "subsidy_review"), ("sql", "SELECT 1")])
            .unwrap();
        assert_eq!(r.status().as_u16(), 403, "{name}: {value}");
    }
    // A steward cannot load or correct another unit's resource.
    let steward = portal_cookie(&http, &base, &data, "civil_affairs_steward");
    let hits = ok_json(&data, &["catalog", "search", "户籍人口", "--json"]);
    let foreign = hits[0]["code"].as_str().unwrap().to_string();
    let (status, html) = get(
        &http,
        &format!("{base}/quarantine?resource={foreign}"),
        &steward,
    );
    assert_eq!(status, 403, "{html}");
    let r = http
        .post(format!("{base}/quarantine"))
        .header("cookie", &steward)
        .send_form([("resource", foreign.as_str())])
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    // A statement from the console runs under the grant and is recorded as the portal's.
    let insurer = unit_name_of(&data, "social_insurance_steward");
    let sql = format!("SELECT count(*) AS n FROM \"{insurer}\".\"社会保险费欠缴明细\"");
    let mut r = http
        .post(format!("{base}/console"))
        .header("cookie", &analyst)
        .send_form([
            ("purpose", "subsidy_review"),
            ("sql", sql.as_str()),
            ("format", "csv"),
        ])
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.headers()["content-disposition"],
        "attachment; filename=\"query.csv\""
    );
    let csv = r.body_mut().read_to_string().unwrap();
    assert!(
        csv.starts_with("n\n") && csv.trim_end().lines().count() == 2,
        "{csv}"
    );
    let mut r = http
        .post(format!("{base}/console"))
        .header("cookie", &analyst)
        .send_form([
            ("purpose", "subsidy_review"),
            ("sql", "DROP TABLE x"),
            ("format", "html"),
        ])
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert!(
        r.body_mut()
            .read_to_string()
            .unwrap()
            .contains("查询未执行")
    );

    let seen: Vec<Value> = ledger_search(&data, &["--user", "science_analyst", "--limit", "200"])
        .into_iter()
        .filter(|e| e["front_door"] == "portal")
        .collect();
    assert!(
        seen.len() >= 10,
        "every page the analyst asked for is recorded: {seen:?}"
    );
    assert!(
        seen.iter().any(|e| e["kind"] == "catalog_read"),
        "page views are recorded: {seen:?}"
    );
    assert!(
        seen.iter()
            .any(|e| e["kind"] == "statement" && e["outcome"] == "denied"),
        "the refused statement is recorded: {seen:?}"
    );
    assert!(
        seen.iter()
            .any(|e| e["kind"] == "subject_lookup" && e["outcome"] == "denied"),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|e| e["kind"] == "sign_in"),
        "the sign-in through the portal is the portal's: {seen:?}"
    );

    // A steward's decision in the portal is recorded as the portal's too.
    let requests = ok_json(&data, &["access", "list", "--view", "all", "--json"]);
    let pending = requests
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["state"] == "pending" && r["requester"] == "leader")
        .expect("the demo's leader request waits for the tax steward");
    let tax_steward = portal_cookie(&http, &base, &data, "tax_steward");
    let r = http
        .post(format!("{base}/requests/{}/approve", pending["id"]))
        .header("cookie", &tax_steward)
        .send_form([("field", "period"), ("field", "revenue")])
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let decisions: Vec<Value> =
        ledger_search(&data, &["--user", "tax_steward", "--kind", "decision"]);
    assert_eq!(decisions.len(), 1, "{decisions:?}");
    assert_eq!(decisions[0]["front_door"], "portal");
}

/// The entry numbers of a ledger page's table (its first column).
fn listed_seqs(page: &str) -> Vec<i64> {
    page.split("<tr")
        .filter_map(|row| {
            row.split("<td>")
                .nth(1)?
                .split("</td>")
                .next()?
                .parse()
                .ok()
        })
        .collect()
}
