//! Helpers shared by the end-to-end tests: run the real binary, read its JSON, serve.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// The `tongchou` binary, without the caller's TONGCHOU_DATA.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tongchou"));
    c.env_remove("TONGCHOU_DATA");
    c
}

pub fn tongchou(data: &Path, args: &[&str]) -> Output {
    bin()
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .expect("run tongchou")
}

/// Runs `tongchou` and asserts that it succeeded, showing its stderr if not.
pub fn tongchou_ok(data: &Path, args: &[&str]) -> Output {
    let out = tongchou(data, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A data directory set up by `demo --scale tiny --no-serve`: catalog, data, accounts.
pub fn tiny_demo(tmp: &Path) -> std::path::PathBuf {
    tiny_demo_saying(tmp).0
}

/// The same, with what the demo printed.
pub fn tiny_demo_saying(tmp: &Path) -> (std::path::PathBuf, String) {
    let data = tmp.join("data");
    let out = tongchou(&data, &["demo", "--scale", "tiny", "--no-serve"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("信息资源 resources: 100"), "{text}");
    (data, text)
}

/// Registers the resources of a JSON file (`catalog register --file`); the first's code.
pub fn register(data: &Path, file: &Path) -> String {
    let args = [
        "catalog",
        "register",
        "--file",
        file.to_str().unwrap(),
        "--json",
    ];
    let registered = ok_json(data, &args);
    registered["code"].as_str().unwrap().to_string()
}

/// Runs a command that must succeed and print JSON.
pub fn ok_json(data: &Path, args: &[&str]) -> Value {
    let out = tongchou_ok(data, args);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// A running `tongchou serve`, stopped when dropped.
pub struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Watches the server's memory until dropped, killing it past `kill_at` bytes so that
    /// a failing test cannot take the machine down.
    pub fn watch_memory(&self, kill_at: u64) -> Watchdog {
        Watchdog::on(self.pid(), kill_at)
    }
}

/// The resident memory of process `pid`, in bytes.
pub fn resident_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? << 10)
}

/// Samples a process's resident memory every 20 ms, keeping the peak.
pub struct Watchdog {
    peak: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    pub fn on(pid: u32, kill_at: u64) -> Watchdog {
        use std::sync::atomic::Ordering::Relaxed;
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Relaxed) {
                let Some(held) = resident_bytes(pid) else {
                    break;
                };
                p.fetch_max(held, Relaxed);
                if held > kill_at {
                    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        });
        Watchdog {
            peak,
            stop,
            thread: Some(thread),
        }
    }

    /// The most the process held since the watch began.
    pub fn peak(&self) -> u64 {
        self.peak.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts `tongchou serve` on a free local port and waits for /healthz; returns the base URL.
pub fn serve(data: &Path) -> (Server, String) {
    serve_with(data, &[], "http", &agent())
}

/// `POST /api/query` with `body` as `auth`: (status, response text).
pub fn post_query(
    http: &ureq::Agent,
    base: &str,
    auth: &str,
    body: &serde_json::Value,
) -> (u16, String) {
    let mut r = http
        .post(format!("{base}/api/query"))
        .header("Authorization", auth)
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .unwrap();
    let status = r.status().as_u16();
    (status, r.body_mut().read_to_string().unwrap())
}

/// A self-signed certificate for localhost in `dir`: (certificate PEM, key PEM).
pub fn self_signed(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

/// An HTTPS client that trusts any certificate (the tests' own, self-signed).
pub fn https_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .disable_verification(true)
                .build(),
        )
        .build()
        .into()
}

/// A TCP port on 127.0.0.1 nothing listens on (now).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `serve` with the PostgreSQL protocol on a free port too: (server, HTTP base, PG port).
pub fn serve_pg(data: &Path, client: &ureq::Agent) -> (Server, String, u16) {
    let port = free_port();
    let (server, base) = serve_with(
        data,
        &["--pg", &format!("127.0.0.1:{port}")],
        "http",
        client,
    );
    (server, base, port)
}

/// `psql` on the PostgreSQL port, unaligned and tuples only, running `commands`
/// (statements or meta-commands such as `\! …`) in order in one session.
pub fn psql(port: u16, user: &str, password: &str, database: &str, commands: &[&str]) -> Output {
    let mut psql = Command::new("psql");
    psql.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", user])
        .args(["-d", database, "-X", "-A", "-t", "-F", "|"]);
    for command in commands {
        psql.args(["-c", command]);
    }
    psql.env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("psql is installed (.ci/run installs postgresql-client)")
}

/// Starts `tongchou serve` with extra flags, reached with `client`.
pub fn serve_with(
    data: &Path,
    extra: &[&str],
    scheme: &str,
    client: &ureq::Agent,
) -> (Server, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let server = Server(
        bin()
            .arg("--data-dir")
            .arg(data)
            .args(["serve", "--http", &addr])
            .args(extra)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("{scheme}://{addr}");
    for _ in 0..100 {
        if client
            .get(format!("{base}/healthz"))
            .call()
            .is_ok_and(|r| r.status() == 200)
        {
            return (server, base);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("the server did not come up");
}

/// An HTTP client that returns 4xx/5xx responses instead of failing on them.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// Adds a user through the CLI (password on standard input).
pub fn add_user(data: &Path, name: &str, unit: &str, role: &str, password: &str) {
    use std::io::Write;
    let mut child = bin()
        .arg("--data-dir")
        .arg(data)
        .args(["user", "add", name, "--unit", unit, "--role", role])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Creates an API token for an existing user; returns the secret.
pub fn token(data: &Path, user: &str, scopes: &str) -> String {
    ok_json(
        data,
        &[
            "token", "create", "--as", user, "--scopes", scopes, "--json",
        ],
    )["secret"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The code of the unit with this slug.
pub fn unit_code(data: &Path, slug: &str) -> String {
    ok_json(data, &["catalog", "units", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["slug"] == slug)
        .unwrap_or_else(|| panic!("no unit {slug}"))["code"]
        .as_str()
        .unwrap()
        .to_string()
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The demo's accounts as `demo` wrote them to `demo-accounts.json`.
pub fn accounts(data: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(data.join("demo-accounts.json")).unwrap();
    serde_json::from_str::<Value>(&text)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// A demo account's password.
pub fn password_of(data: &Path, user: &str) -> String {
    accounts(data)
        .iter()
        .find(|a| a["user"] == user)
        .unwrap_or_else(|| panic!("no demo account {user}"))["password"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The Chinese name of a demo account's unit (the schema its unit's resources are in).
pub fn unit_name_of(data: &Path, user: &str) -> String {
    accounts(data)
        .iter()
        .find(|a| a["user"] == user)
        .unwrap_or_else(|| panic!("no demo account {user}"))["unit_name"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `ledger search … --json` as entries.
pub fn ledger_search(data: &Path, filters: &[&str]) -> Vec<Value> {
    let mut args = vec!["ledger", "search", "--json"];
    args.extend_from_slice(filters);
    ok_json(data, &args).as_array().unwrap().clone()
}

/// An HTTP client that neither follows redirects nor fails on 4xx/5xx.
pub fn plain_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into()
}
