//! `tongchou-bench portal [WORK_DIR]`: every portal page's time on the `small` demo, with
//! real requests from signed-in users over loopback HTTP to a release `tongchou serve`,
//! measured at the client (an upper bound of the server's time). Beside each page: the
//! REST call that reads the same thing, and `/healthz` as the floor of one round trip.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::pg_lookup::{Server, demo_account_field, demo_password, free_port, wait_for_port};
use crate::{ms, percentile};

const RUNS: usize = 200;

struct Client {
    http: ureq::Agent,
    base: String,
    cookie: String,
}

impl Client {
    fn sign_in(http: &ureq::Agent, base: &str, data: &Path, user: &str) -> Result<Client> {
        let password = demo_password(data, user)?;
        let r = http
            .post(format!("{base}/signin"))
            .send_form([("name", user), ("password", password.as_str())])?;
        let cookie = r
            .headers()
            .get("set-cookie")
            .with_context(|| format!("{user} was not signed in ({})", r.status()))?
            .to_str()?
            .split(';')
            .next()
            .unwrap_or_default()
            .to_string();
        Ok(Client {
            http: http.clone(),
            base: base.into(),
            cookie,
        })
    }

    /// One request; fails unless it answers 200.
    fn call(&self, request: &Request) -> Result<Duration> {
        let url = format!("{}{}", self.base, request.path);
        let started = Instant::now();
        let mut r = match &request.form {
            None => self.http.get(&url).header("cookie", &self.cookie).call()?,
            Some(form) => self
                .http
                .post(&url)
                .header("cookie", &self.cookie)
                .send_form(form.iter().map(|(k, v)| (*k, v.as_str())))?,
        };
        let body = r.body_mut().read_to_vec()?;
        let took = started.elapsed();
        if r.status() != 200 {
            bail!(
                "{} answered {}: {}",
                request.path,
                r.status(),
                String::from_utf8_lossy(&body)
            );
        }
        Ok(took)
    }

    fn measure(&self, request: &Request) -> Result<(f64, f64)> {
        for _ in 0..5 {
            self.call(request)?;
        }
        let mut times: Vec<Duration> = (0..RUNS)
            .map(|_| self.call(request))
            .collect::<Result<_>>()?;
        times.sort();
        Ok((ms(percentile(&times, 0.5)), ms(percentile(&times, 0.95))))
    }
}

struct Request {
    path: String,
    form: Option<Vec<(&'static str, String)>>,
}

fn get(path: impl Into<String>) -> Request {
    Request {
        path: path.into(),
        form: None,
    }
}

fn small_demo(work: &Path) -> Result<std::path::PathBuf> {
    let data = work.join("small-data");
    if !data.join("demo-accounts.json").exists() {
        let _ = std::fs::remove_dir_all(&data);
        std::fs::create_dir_all(work)?;
        let status = Command::new("target/release/tongchou")
            .arg("--data-dir")
            .arg(&data)
            .args(["demo", "--scale", "small", "--no-serve"])
            .stdout(Stdio::null())
            .status()
            .context("run target/release/tongchou demo")?;
        if !status.success() {
            bail!("demo --scale small failed");
        }
    }
    Ok(data)
}

fn first_code(data: &Path, name: &str) -> Result<String> {
    let out = Command::new("target/release/tongchou")
        .arg("--data-dir")
        .arg(data)
        .args(["catalog", "search", name, "--json"])
        .output()?;
    let hits: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    hits[0]["code"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("no resource {name}"))
}

pub fn run(work: &Path) -> Result<()> {
    let data = small_demo(work)?;
    let arrears = first_code(&data, "社会保险费欠缴明细")?;
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let _server = Server(
        Command::new("target/release/tongchou")
            .arg("--data-dir")
            .arg(&data)
            .args(["serve", "--http", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .spawn()
            .context("start target/release/tongchou serve")?,
    );
    wait_for_port(port)?;
    let http: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let admin = Client::sign_in(&http, &base, &data, "admin")?;
    let analyst = Client::sign_in(&http, &base, &data, "science_analyst")?;
    let steward = Client::sign_in(&http, &base, &data, "social_insurance_steward")?;
    let inspector = Client::sign_in(&http, &base, &data, "inspector")?;
    let encoded = arrears.replace('/', "%2F");
    let truth: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        data.join("district").join("ground_truth.json"),
    )?)?;
    let registered = truth["scenarios"]["fake_licences"]
        .as_array()
        .and_then(|cases| cases.iter().find_map(|c| c["true_code"].as_str()))
        .context("no mistyped licence with its true code in the ground truth")?;
    let insurer = demo_account_field(&data, "social_insurance_steward", "unit_name")?;
    let query = vec![
        ("purpose", "subsidy_review".to_string()),
        (
            "sql",
            format!("SELECT * FROM \"{insurer}\".\"社会保险费欠缴明细\" LIMIT 100"),
        ),
        ("format", "html".to_string()),
    ];
    let pages: Vec<(&str, &Client, Request, Option<Request>)> = vec![
        ("登录 sign-in page", &admin, get("/signin"), None),
        (
            "首页 home (inventory, charts)",
            &admin,
            get("/"),
            Some(get("/api/catalog/stats")),
        ),
        (
            "目录检索 catalog search",
            &analyst,
            get("/catalog?q=%E7%A4%BE%E4%BF%9D+%E6%AC%A0%E8%B4%B9"),
            Some(get(
                "/api/catalog/search?q=%E7%A4%BE%E4%BF%9D+%E6%AC%A0%E8%B4%B9",
            )),
        ),
        (
            "资源页+预览 resource page with preview",
            &analyst,
            get(format!("/resource?code={encoded}&purpose=subsidy_review")),
            Some(get(format!("/api/catalog/resource?code={encoded}"))),
        ),
        (
            "登记与上传 register and load",
            &steward,
            get("/load"),
            Some(get("/api/catalog/resources")),
        ),
        (
            "隔离区 quarantine",
            &steward,
            get(format!("/quarantine?resource={encoded}")),
            Some(get(format!("/api/exchange/quarantine?resource={encoded}"))),
        ),
        (
            "申请与审批 requests",
            &steward,
            get("/requests"),
            Some(get("/api/access/requests?view=queue")),
        ),
        (
            "申请表 request form",
            &analyst,
            get(format!("/requests/new?resource={encoded}")),
            None,
        ),
        (
            "查询控制台 console",
            &analyst,
            get("/console?purpose=subsidy_review"),
            None,
        ),
        (
            "查询 100 行 console, 100-row statement",
            &analyst,
            Request {
                path: "/console".into(),
                form: Some(query),
            },
            None,
        ),
        (
            "账本 ledger (bureau)",
            &admin,
            get("/ledger"),
            Some(get("/api/ledger/entries?limit=100")),
        ),
        (
            "账本 ledger (steward)",
            &steward,
            get("/ledger"),
            Some(get("/api/ledger/usage")),
        ),
        (
            "谁查看了此人 who looked at this person",
            &admin,
            get("/ledger/subject?id=440605198001011231"),
            Some(get("/api/ledger/subject?id=440605198001011231")),
        ),
        (
            "巡查核验 inspector lookup (registered licence)",
            &inspector,
            get(format!("/inspect?licence={registered}")),
            None,
        ),
    ];
    let (floor50, floor95) = admin.measure(&get("/healthz"))?;
    println!(
        "{RUNS} requests per page after 5 warm-up ones, one at a time; client-side times in ms (upper bounds of server time)."
    );
    println!("/healthz round trip: p50 {floor50:.2}, p95 {floor95:.2}");
    println!(
        "{:<44} {:>8} {:>8}   {:>10} {:>10}",
        "page", "p50", "p95", "API p95", "page÷API"
    );
    let mut worst: f64 = 0.0;
    for (name, client, page, api) in &pages {
        let (p50, p95) = client.measure(page)?;
        worst = worst.max(p95);
        match api {
            Some(api) => {
                let (_, a95) = client.measure(api)?;
                println!(
                    "{name:<44} {p50:>8.2} {p95:>8.2}   {a95:>10.2} {:>10.2}",
                    p95 / a95
                );
            }
            None => println!("{name:<44} {p50:>8.2} {p95:>8.2}"),
        }
    }
    println!("worst page p95: {worst:.2} ms (target < 50 ms)");
    Ok(())
}
