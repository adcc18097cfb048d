//! Abuse at the doors (issue 39), against the real binary and server on loopback: a
//! read-only token in the portal, redirects off-site, CSRF with the portal's session,
//! formulas in CSV exports, inputs and statements that would take gigabytes, parallel
//! password guessing — with the server's memory watched throughout.

mod common;

use std::path::Path;
use std::sync::Barrier;

use common::{
    agent, bearer, ledger_search, ok_json, password_of, serve, tiny_demo, token, tongchou_ok,
    unit_name_of,
};

const STEWARD: &str = "exit_entry_steward";
const TABLE: &str = r#""佛山市公安局南海分局出入境管理大队"."出入境记录""#;
const CODE: &str = "308001003/000003";
const PURPOSE: &str = "procuratorial_supervision";
const BOUNDARY: &str = "tongchou-abuse-1f3";

/// The portal's session of `user`, as its sign-in form sets it: the `Cookie` header value.
fn portal_cookie(http: &ureq::Agent, base: &str, data: &Path, user: &str) -> String {
    let r = http
        .post(format!("{base}/signin"))
        .send_form([("name", user), ("password", &password_of(data, user))])
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    cookie.split(';').next().unwrap().to_string()
}

/// A form with text `fields` and one CSV `file`, as a browser sends it.
fn multipart(fields: &[(&str, &str)], file: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend(format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"rows.csv\"\r\nContent-Type: text/csv\r\n\r\n").as_bytes());
    body.extend(file);
    body.extend(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

fn post_multipart(
    http: &ureq::Agent,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut request = http.post(url).header(
        "content-type",
        format!("multipart/form-data; boundary={BOUNDARY}"),
    );
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut r = request.send(body).unwrap();
    let status = r.status().as_u16();
    (status, r.body_mut().read_to_string().unwrap())
}

/// One row of the steward's own resource as CSV, to load again.
fn own_rows(data: &Path) -> Vec<u8> {
    let sql = format!("SELECT * FROM {TABLE} LIMIT 1");
    let args = ["query", "--as", STEWARD, "--purpose", PURPOSE];
    tongchou_ok(
        data,
        &[&args[..], &["--format", "csv", "--raw", &sql]].concat(),
    )
    .stdout
}

#[test]
fn a_read_only_token_and_other_sites_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_demo(tmp.path());
    let rows = own_rows(&data);
    let read_only = bearer(&token(&data, STEWARD, "read"));
    let querying = bearer(&token(&data, STEWARD, "read,query"));
    let (_server, base) = serve(&data);
    let http = common::plain_agent();
    let upload = multipart(&[("resource", CODE), ("mode", "append")], &rows);

    // 3. The token's scopes hold in the portal as over REST.
    let (status, html) = post_multipart(
        &http,
        &format!("{base}/load/data"),
        &[("authorization", &read_only)],
        &upload,
    );
    assert_eq!(status, 403, "a read-only token loads nothing: {html}");
    let register = |auth: &str| {
        http.post(format!("{base}/register"))
            .header("authorization", auth)
            .send_form([("name", "只读令牌登记的资源"), ("code", "")])
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(
        register(&read_only),
        403,
        "a read-only token registers nothing"
    );
    let console = |auth: &str| {
        let sql = format!("SELECT count(*) AS n FROM {TABLE}");
        http.post(format!("{base}/console"))
            .header("authorization", auth)
            .send_form([
                ("purpose", PURPOSE),
                ("sql", sql.as_str()),
                ("format", "csv"),
            ])
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(
        console(&read_only),
        403,
        "a statement needs the query scope"
    );
    assert_eq!(console(&querying), 200, "which is enough for the console");

    // 7. A change sent with the portal's session from another site is refused over REST.
    let cookie = portal_cookie(&http, &base, &data, STEWARD);
    let other_port = base.rsplit_once(':').unwrap().0.to_string() + ":1";
    let ingest = format!(
        "{base}/api/exchange/ingest?resource={}",
        CODE.replace('/', "%2F")
    );
    for (name, value) in [
        ("origin", other_port.as_str()),
        ("origin", "https://evil.example"),
        ("sec-fetch-site", "same-site"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let (status, text) = post_multipart(
            &http,
            &ingest,
            &[("cookie", &cookie), (name, value)],
            &upload,
        );
        assert_eq!(status, 403, "ingest with {name}: {value}: {text}");
        let r = http
            .post(format!("{base}/api/catalog/resources"))
            .header("cookie", &cookie)
            .header(name, value)
            .content_type("text/plain")
            .send(r#"{"name": "跨站登记的资源"}"#)
            .unwrap();
        assert_eq!(r.status().as_u16(), 403, "register with {name}: {value}");
    }
    let own_origin = base.as_str();
    let (status, text) = post_multipart(
        &http,
        &ingest,
        &[("cookie", &cookie), ("origin", own_origin)],
        &upload,
    );
    assert_eq!(status, 200, "from the server's own origin: {text}");
    let writer = bearer(&token(&data, STEWARD, "read,write"));
    let (status, text) = post_multipart(
        &http,
        &ingest,
        &[
            ("authorization", &writer),
            ("origin", "https://evil.example"),
        ],
        &upload,
    );
    assert_eq!(
        status, 200,
        "a bearer token carries no ambient credential: {text}"
    );

    // Login CSRF: the sign-in form answers only this site.
    let r = http
        .post(format!("{base}/signin"))
        .header("origin", "https://evil.example")
        .send_form([
            ("name", STEWARD),
            ("password", &password_of(&data, STEWARD)),
        ])
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert!(r.headers().get("set-cookie").is_none(), "no session is set");
}

#[test]
fn redirects_stay_here_and_csv_for_people_runs_no_formulas() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_demo(tmp.path());
    let insurer = unit_name_of(&data, "social_insurance_steward");
    let sql = format!(
        "SELECT '=HYPERLINK(\"http://localhost:19999/\")' AS cell, '@SUM(1+1)' AS at, -5 AS n \
         FROM (SELECT count(*) AS c FROM \"{insurer}\".\"社会保险费欠缴明细\")"
    );
    let cli = |raw: &[&str]| {
        let args = [
            "query",
            "--as",
            "science_analyst",
            "--purpose",
            "subsidy_review",
        ];
        let args = [&args[..], &["--format", "csv"], raw, &[sql.as_str()]].concat();
        String::from_utf8(tongchou_ok(&data, &args).stdout).unwrap()
    };
    let safe = "cell,at,n\n\"'=HYPERLINK(\"\"http://localhost:19999/\"\")\",'@SUM(1+1),-5\n";
    let raw = "cell,at,n\n\"=HYPERLINK(\"\"http://localhost:19999/\"\")\",@SUM(1+1),-5\n";
    assert_eq!(cli(&[]), safe, "5. the CLI's CSV");
    assert_eq!(cli(&["--raw"]), raw, "the CLI's raw CSV");
    let analyst = bearer(&token(&data, "science_analyst", "read,query"));
    let (_server, base) = serve(&data);
    let http = common::plain_agent();

    for (raw_flag, expected) in [(None, safe), (Some(false), safe), (Some(true), raw)] {
        let mut body =
            serde_json::json!({"sql": sql, "purpose": "subsidy_review", "format": "csv"});
        if let Some(flag) = raw_flag {
            body["raw"] = flag.into();
        }
        let (status, text) = common::post_query(&agent(), &base, &analyst, &body);
        assert_eq!(
            (status, text.as_str()),
            (200, expected),
            "REST, raw: {raw_flag:?}"
        );
    }
    let cookie = portal_cookie(&http, &base, &data, "science_analyst");
    let mut r = http
        .post(format!("{base}/console"))
        .header("cookie", &cookie)
        .send_form([
            ("purpose", "subsidy_review"),
            ("sql", sql.as_str()),
            ("format", "csv"),
        ])
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.body_mut().read_to_string().unwrap(),
        safe,
        "the console's CSV"
    );

    // 4. `back` and `next` lead only to paths of this server.
    let location = |r: ureq::http::Response<ureq::Body>| {
        assert_eq!(r.status().as_u16(), 303);
        r.headers()["location"].to_str().unwrap().to_string()
    };
    for (back, to) in [
        ("/%09/localhost:19999/pwned.html", "/"),
        ("/%2509/localhost:19999/pwned.html", "/"),
        ("/%5Clocalhost:19999/", "/"),
        ("%2F%2Flocalhost:19999/", "/"),
        ("/catalog", "/catalog"),
    ] {
        let r = http
            .get(format!("{base}/lang/en?back={back}"))
            .call()
            .unwrap();
        assert_eq!(location(r), to, "back={back}");
    }
    let password = password_of(&data, "science_analyst");
    for (next, to) in [
        ("/\t/localhost:19999/pwned.html", "/"),
        ("/console", "/console"),
    ] {
        let r = http
            .post(format!("{base}/signin"))
            .send_form([
                ("name", "science_analyst"),
                ("password", &password),
                ("next", next),
            ])
            .unwrap();
        assert_eq!(location(r), to, "next={next:?}");
    }
}

const GIB: u64 = 1 << 30;

/// A workbook whose only cells are its corners: 4.9 KB that claims 17 billion cells.
fn corner_workbook() -> Vec<u8> {
    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet();
    sheet.write_string(0, 0, "姓名").unwrap();
    sheet.write_string(1_048_575, 16_383, "远").unwrap();
    book.save_to_buffer().unwrap()
}

/// A POST on a connection of its own (a pooled one may have been closed by a refusal).
/// A workbook whose one shared string is `text`, used by `cells` cells of its second row
/// (a writer refuses a text longer than a cell, so it is put in by hand).
fn shared_string_workbook(text: &str, cells: u16) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet();
    sheet.write_string(0, 0, "姓名").unwrap();
    sheet.write_string(0, 1, "备注").unwrap();
    for col in 0..cells {
        sheet.write_string(1, col, "MARK").unwrap();
    }
    let bytes = book.save_to_buffer().unwrap();
    let mut from = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut to = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for i in 0..from.len() {
        let mut entry = from.by_index(i).unwrap();
        let mut content = String::new();
        entry.read_to_string(&mut content).unwrap();
        to.start_file(
            entry.name().unwrap().to_string(),
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
        to.write_all(content.replace("MARK", text).as_bytes())
            .unwrap();
    }
    to.finish().unwrap().into_inner()
}

fn post_bytes(url: &str, auth: &str, body: &[u8]) -> (u16, String) {
    let mut r = common::plain_agent()
        .post(url)
        .header("authorization", auth)
        .send(body)
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = r.status().as_u16();
    let text = r
        .body_mut()
        .with_config()
        .limit(1 << 20)
        .read_to_string()
        .unwrap_or_default();
    (status, text)
}

/// Sends only the headers of a POST declaring `length` bytes and reads the answer: a
/// body over the route's limit is refused before it is sent.
fn declare_post(base: &str, path: &str, auth: &str, length: usize) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(base.trim_start_matches("http://")).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nhost: x\r\nauthorization: {auth}\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\r\n["
    )
    .unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut answer = vec![0u8; 4096];
    let n = stream.read(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
    let status = answer[9..12].parse().unwrap();
    (status, answer)
}

fn uploads_left(data: &Path) -> Vec<String> {
    std::fs::read_dir(data.join("uploads"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn one_request_cannot_take_the_server_down() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_demo(tmp.path());
    std::fs::write(data.join("config/server.toml"), "[limits]\nupload_mb = 1\n").unwrap();
    let read_only = bearer(&token(&data, "inspector", "read"));
    let writer = bearer(&token(&data, STEWARD, "read,write"));
    let (server, base) = serve(&data);
    let watchdog = server.watch_memory(3 * GIB);
    let http = common::plain_agent();
    let healthy = || {
        http.get(format!("{base}/healthz"))
            .call()
            .is_ok_and(|r| r.status() == 200)
    };

    // 1. A sparse workbook is read by its cells: refused for its width, at once.
    let (status, text) = post_bytes(
        &format!("{base}/api/catalog/infer?name=a.xlsx"),
        &read_only,
        &corner_workbook(),
    );
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("XFD1048576"), "{text}");
    assert!(healthy());

    // A cell's text past what a cell holds, and a long text shared by many cells.
    for (text, cells) in [("长".repeat(2 << 20), 1), ("长".repeat(30_000), 300)] {
        let (status, text) = post_bytes(
            &format!("{base}/api/catalog/infer?name=a.xlsx"),
            &read_only,
            &shared_string_workbook(&text, cells),
        );
        assert_eq!(status, 400, "{text}");
    }
    assert!(healthy());

    // 6. A sample of four million columns, a batch too big to parse, a read-only
    // token's batch (refused before its body is parsed).
    let wide = "a,".repeat(4 << 20);
    let (status, text) = post_bytes(
        &format!("{base}/api/catalog/infer?name=x.csv"),
        &read_only,
        wide.as_bytes(),
    );
    assert_eq!(status, 400, "{text}");
    assert!(
        text.len() < 4096,
        "the refusal is short: {} bytes",
        text.len()
    );
    let (status, text) = declare_post(&base, "/api/catalog/resources", &read_only, 16 << 20);
    assert_eq!(status, 413, "refused before the body is sent: {text}");
    let many = format!("[{}{{}}]", "{},".repeat(6_000));
    let (status, text) = post_bytes(
        &format!("{base}/api/catalog/resources"),
        &read_only,
        many.as_bytes(),
    );
    assert_eq!(status, 403, "scope before parsing: {text}");
    let (status, text) = post_bytes(
        &format!("{base}/api/catalog/resources"),
        &writer,
        many.as_bytes(),
    );
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("at most 5000"), "{text}");

    // Uploads past the limit, a second file, a form field past its limit: refused, and
    // nothing left behind.
    let ingest = format!(
        "{base}/api/exchange/ingest?resource={}",
        CODE.replace('/', "%2F")
    );
    let big = vec![b'x'; (1 << 20) + 4096];
    let (status, text) = post_multipart(
        &http,
        &ingest,
        &[("authorization", &writer)],
        &multipart(&[], &big),
    );
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("1 MiB"), "{text}");
    let mut two_files = multipart(&[], b"a,b\n");
    two_files.truncate(two_files.len() - format!("--{BOUNDARY}--\r\n").len());
    two_files.extend(&multipart(&[], b"c,d\n"));
    let (status, text) = post_multipart(&http, &ingest, &[("authorization", &writer)], &two_files);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("one file per load"), "{text}");
    let long_field = "长".repeat(100_000);
    let (status, html) = post_multipart(
        &http,
        &format!("{base}/load/data"),
        &[("authorization", &writer)],
        &multipart(
            &[("resource", CODE), ("mode", long_field.as_str())],
            b"a,b\n",
        ),
    );
    assert!(
        (400..500).contains(&status),
        "{status}: {}",
        &html[..html.len().min(300)]
    );
    assert!(html.contains("64 KiB"));
    assert_eq!(
        uploads_left(&data),
        Vec::<String>::new(),
        "no upload is left behind"
    );

    // 8. A file that cannot be read is named as sent, not where the server kept it.
    let (status, text) = post_multipart(
        &http,
        &ingest,
        &[("authorization", &writer)],
        &multipart(&[], b"not a workbook"),
    );
    assert!((400..500).contains(&status), "{text}");
    assert!(!text.contains(&*data.to_string_lossy()), "{text}");

    assert!(healthy(), "the server answers after every refusal");
    eprintln!("peak RSS {} MiB", watchdog.peak() >> 20);
    assert!(
        watchdog.peak() < 2 * GIB,
        "peak RSS {} MiB",
        watchdog.peak() >> 20
    );
}

#[test]
fn notices_come_from_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_demo(tmp.path());
    let (_server, base) = serve(&data);
    let http = common::plain_agent();
    let cookie = portal_cookie(&http, &base, &data, STEWARD);
    let mut page = http
        .get(format!(
            "{base}/requests?done=%E4%BD%A0%E4%B8%AD%E5%A5%96%E4%BA%86"
        ))
        .header("cookie", &cookie)
        .call()
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let html = page.body_mut().read_to_string().unwrap();
    assert!(
        !html.contains("你中奖了"),
        "text from the URL is not shown as a notice"
    );
}

#[test]
fn a_statement_that_would_build_gigabytes_is_refused_and_the_server_answers_on() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_demo(tmp.path());
    let analyst = bearer(&token(&data, "science_analyst", "read,query"));
    let (server, base) = serve(&data);
    let watchdog = server.watch_memory(3 * GIB);
    let http = common::plain_agent();
    let query = |sql: &str| {
        let body = serde_json::json!({"sql": sql, "purpose": "subsidy_review", "format": "csv"});
        common::post_query(&http, &base, &analyst, &body)
    };

    let started = std::time::Instant::now();
    let (status, text) = query("SELECT length(repeat('x', 1500000000))");
    let took = started.elapsed();
    let resident = watchdog.peak();
    eprintln!(
        "refused in {took:?}; server resident {} MiB",
        resident >> 20
    );
    assert!((400..500).contains(&status), "{status} {text}");
    assert!(text.contains("repeat would build"), "{text}");
    assert!(resident < 2 << 30, "{resident}");
    let (status, text) = query("SELECT repeat('x', 1000000) FROM generate_series(1, 300)");
    assert_eq!(status, 413, "an answer too big to hold: {text}");
    assert!(text.contains("the answer holds over 256 MiB"), "{text}");
    assert_eq!(
        query("SELECT repeat('ab', 3) AS r"),
        (200, "r\nababab\n".into())
    );
    let health = http.get(format!("{base}/healthz")).call().unwrap();
    assert_eq!(health.status().as_u16(), 200);
}

/// One `POST /api/auth/sign-in`: (status, error text, Retry-After).
fn sign_in(http: &ureq::Agent, base: &str, name: &str, password: &str) -> (u16, String, bool) {
    let mut r = http
        .post(format!("{base}/api/auth/sign-in"))
        .header("Content-Type", "application/json")
        .send(serde_json::json!({"name": name, "password": password}).to_string())
        .unwrap();
    let retry_after = r.headers().contains_key("retry-after");
    let text = r.body_mut().read_to_string().unwrap();
    (r.status().as_u16(), text, retry_after)
}

/// Every (name, password) signed in at the same moment, one thread each.
fn sign_ins_at_once(base: &str, attempts: &[(String, String)]) -> Vec<(u16, String, bool)> {
    let start = Barrier::new(attempts.len());
    std::thread::scope(|scope| {
        let threads: Vec<_> = attempts
            .iter()
            .map(|(name, password)| {
                let start = &start;
                scope.spawn(move || {
                    let http = agent();
                    start.wait();
                    sign_in(&http, base, name, password)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    })
}

fn count(answers: &[(u16, String, bool)], status: u16) -> usize {
    answers.iter().filter(|(s, _, _)| *s == status).count()
}

#[test]
fn parallel_guessing_is_counted_before_verifying_and_memory_stays_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_demo(tmp.path());
    let (server, base) = serve(&data);
    let user = "science_analyst";

    // 2. Forty wrong passwords at once: five are verified, the rest wait for the window.
    let guesses: Vec<_> = (0..40)
        .map(|n| (user.to_string(), format!("guess number {n}")))
        .collect();
    let answers = sign_ins_at_once(&base, &guesses);
    let verified = count(&answers, 401);
    eprintln!("wrong passwords verified: {verified} of 40");
    assert!(verified <= 5, "{verified} wrong passwords were verified");
    assert_eq!(count(&answers, 429), 40 - verified, "{answers:?}");
    assert!(answers.iter().all(|(s, _, retry)| *s == 401 || *retry));
    let failed = ledger_search(&data, &["--kind", "sign_in_failed", "--user", user]);
    assert_eq!(
        failed.len(),
        verified,
        "the ledger has each verified attempt"
    );

    // Then the right one is refused: the account is locked, and the bureau sees it.
    let (status, text, retry) = sign_in(&agent(), &base, user, &password_of(&data, user));
    assert_eq!((status, retry), (429, true), "{text}");
    assert!(text.contains("for this account"), "{text}");
    let locked = ok_json(&data, &["user", "locked", "--json"]);
    assert_eq!(locked[0]["user"], user, "{locked}");
    assert_eq!(ledger_search(&data, &["--kind", "account_locked"]).len(), 1);
    // The bureau sees it on the portal's home page and lifts it there; a steward cannot.
    let http = common::plain_agent();
    let home = |cookie: &str| {
        let mut page = http
            .get(format!("{base}/"))
            .header("cookie", cookie)
            .call()
            .unwrap();
        page.body_mut().read_to_string().unwrap()
    };
    let unlock = |cookie: &str| {
        http.post(format!("{base}/accounts/{user}/unlock"))
            .header("cookie", cookie)
            .send_empty()
            .unwrap()
            .status()
            .as_u16()
    };
    let admin = portal_cookie(&http, &base, &data, "admin");
    let steward = portal_cookie(&http, &base, &data, STEWARD);
    assert!(
        home(&admin).contains("被锁定的账号"),
        "the bureau sees the lockout"
    );
    assert!(!home(&steward).contains("被锁定的账号"));
    assert_eq!(unlock(&steward), 403, "only the bureau lifts a lockout");
    assert_eq!(unlock(&admin), 303);
    assert!(!home(&admin).contains("被锁定的账号"));
    assert_eq!(
        ledger_search(&data, &["--kind", "account_unlocked"]).len(),
        1
    );
    let (status, text, _) = sign_in(&agent(), &base, user, &password_of(&data, user));
    assert_eq!(status, 200, "an admin lifted the lockout: {text}");
    tongchou_ok(&data, &["user", "unlock", user]);

    // Sixty made-up names at once cost a bounded amount of memory.
    let before = common::resident_bytes(server.pid()).unwrap() >> 10;
    let watchdog = server.watch_memory(3 * GIB);
    let names: Vec<_> = (0..60)
        .map(|n| (format!("nobody_{n}"), "whatever password".to_string()))
        .collect();
    let answers = sign_ins_at_once(&base, &names);
    let peak = watchdog.peak() >> 10;
    eprintln!(
        "unknown names: RSS {} MiB before, peak {} MiB; {} verified, {} refused",
        before / 1024,
        peak / 1024,
        count(&answers, 401),
        count(&answers, 429)
    );
    assert_eq!(
        count(&answers, 401) + count(&answers, 429),
        60,
        "{answers:?}"
    );
    assert!(peak < 2 * 1024 * 1024, "RSS reached {} MiB", peak / 1024);

    // 8. A name no account can have is refused before anything is stored.
    let huge = "n".repeat(1_900_000);
    let (status, text, _) = sign_in(&agent(), &base, &huge, "whatever password");
    assert_eq!(status, 422);
    assert!(
        text.len() < 1000,
        "the name is not echoed: {} bytes",
        text.len()
    );
}
