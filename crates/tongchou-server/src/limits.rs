//! What one request may make the server hold, checked before it is believed: bodies by
//! route, uploads streamed to disk and removed whatever happens, form fields, and a
//! memory ceiling past which new work is refused (503) while `/healthz` and the requests
//! already admitted go on. `config/server.toml` may change the defaults:
//!
//! ```toml
//! [limits]
//! memory_mb = 2048    # refuse new requests while the process holds more
//! upload_mb = 4096    # a department file, streamed to disk
//! workbook_mb = 64    # a file read whole: a catalog workbook, a sample to infer from
//! json_kb = 8192      # a JSON body: a catalog batch, a statement, a request
//! field_kb = 64       # one text field of a form
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::multipart::Field;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::{ApiError, AppState};

pub const LIMITS_FILE: &str = "server.toml";

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerLimits {
    pub memory_mb: u64,
    pub upload_mb: u64,
    pub workbook_mb: u64,
    pub json_kb: u64,
    pub field_kb: u64,
}

impl Default for ServerLimits {
    fn default() -> ServerLimits {
        ServerLimits {
            memory_mb: 2_048,
            upload_mb: 4_096,
            workbook_mb: 64,
            json_kb: 8_192,
            field_kb: 64,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    limits: ServerLimits,
}

impl ServerLimits {
    /// The limits in `config/server.toml`, or the defaults when there is none.
    pub fn read(config: &Path) -> Result<ServerLimits, String> {
        let path = config.join(LIMITS_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str::<File>(&text)
                .map(|f| f.limits)
                .map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ServerLimits::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// What the engine's kept tables may hold, and their masked views as much again: a
    /// quarter of the ceiling each.
    pub fn cache_bytes(&self) -> usize {
        ((self.memory_mb << 20) / 4) as usize
    }

    pub fn upload_bytes(&self) -> u64 {
        self.upload_mb << 20
    }

    pub fn workbook_bytes(&self) -> usize {
        (self.workbook_mb << 20) as usize
    }

    pub fn json_bytes(&self) -> usize {
        (self.json_kb << 10) as usize
    }

    pub fn field_bytes(&self) -> usize {
        (self.field_kb << 10) as usize
    }

    /// A form with one file: the file, its fields and their framing.
    pub fn form_bytes(&self) -> usize {
        (self.upload_bytes() as usize).saturating_add(64 * self.field_bytes())
    }
}

/// The most a request to `path` may send: a file read whole, a form with an upload
/// (its parts bounded again as they stream), or JSON and form fields.
pub fn body_limit(limits: &ServerLimits, path: &str) -> usize {
    match path {
        "/api/catalog/workbook" | "/api/catalog/infer" | "/inspect/scan" => limits.workbook_bytes(),
        "/api/exchange/ingest" | "/load/data" | "/load/workbook" | "/load/sample" => {
            limits.form_bytes()
        }
        _ => limits.json_bytes(),
    }
}

/// Bounds every request body by its route before anything reads it: a declared length
/// over the limit is refused at once, and a body that streams past it fails as it is read
/// (413 either way).
pub async fn bound_body(State(s): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let limit = body_limit(&s.limits, request.uri().path());
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large(
            &format!("a body of {} bytes", declared.unwrap_or(0)),
            limit as u64,
        )
        .into_response();
    }
    let request =
        request.map(|body| axum::body::Body::new(http_body_util::Limited::new(body, limit)));
    next.run(request).await
}

/// Runs CPU-heavy reading (a workbook, a sample) off the server's async workers, so that
/// one request's parsing never keeps `/healthz` and everyone else waiting.
pub async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(done) => done,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// The resident memory of this process, where the system tells it.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb << 10)
}

/// The resident memory as last sampled: `/proc` is read at most every 50 ms, not on
/// every request.
fn recent_resident_bytes() -> Option<u64> {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    static SAMPLED_AT_MS: AtomicU64 = AtomicU64::new(0);
    static HELD: AtomicU64 = AtomicU64::new(0);
    let now = jiff::Timestamp::now().as_millisecond() as u64;
    if now.saturating_sub(SAMPLED_AT_MS.load(Relaxed)) >= 50 {
        SAMPLED_AT_MS.store(now, Relaxed);
        HELD.store(resident_bytes()?, Relaxed);
    }
    Some(HELD.load(Relaxed))
}

/// Refuses new requests while the process holds more than its ceiling, so that the
/// requests already running finish (or fail by their own bounds) and memory comes back;
/// `/healthz` always answers.
pub async fn memory_ceiling(
    State(s): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let ceiling = s.limits.memory_mb << 20;
    match recent_resident_bytes() {
        Some(held) if held > ceiling && request.uri().path() != "/healthz" => {
            let mut refusal = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the server is at its memory ceiling ({} MiB held, {} MiB allowed); try again in a few seconds",
                    held >> 20,
                    s.limits.memory_mb
                ),
            )
            .into_response();
            refusal
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            refusal
        }
        _ => next.run(request).await,
    }
}

/// A file uploaded for one request, kept in a directory of its own under `uploads/` (so
/// it keeps the name it was sent with) and removed when dropped, whatever happened.
pub struct Upload {
    /// The file's own name, any directory dropped.
    pub name: String,
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Upload {
    /// The file's bytes, when it is small enough to be read whole.
    pub async fn read_whole(&self, limit: usize) -> Result<Vec<u8>, ApiError> {
        let size = tokio::fs::metadata(&self.path)
            .await
            .map_err(not_stored)?
            .len();
        if size > limit as u64 {
            return Err(too_large(&self.name, limit as u64));
        }
        tokio::fs::read(&self.path).await.map_err(not_stored)
    }
}

/// Removes what requests of an earlier run left in `uploads/` (a server killed mid-upload
/// cannot remove its own): every upload belongs to one request of a running server.
pub fn clear_leftover_uploads(uploads: &Path) {
    let Ok(entries) = std::fs::read_dir(uploads) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with("upload-") {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Streams one multipart file field into `uploads`, refusing it (and leaving nothing)
/// past `limit` bytes.
pub async fn store_upload(
    uploads: &Path,
    mut field: Field<'_>,
    limit: u64,
) -> Result<Upload, ApiError> {
    let name = field
        .file_name()
        .unwrap_or("upload.csv")
        .rsplit(['/', '\\'])
        .next()
        .filter(|n| !n.is_empty() && *n != "." && *n != "..")
        .unwrap_or("upload.csv")
        .chars()
        .take(200)
        .collect::<String>();
    tokio::fs::create_dir_all(uploads)
        .await
        .map_err(not_stored)?;
    let dir = tempfile::Builder::new()
        .prefix("upload-")
        .tempdir_in(uploads)
        .map_err(not_stored)?;
    let path = dir.path().join(&name);
    let mut file = tokio::fs::File::create(&path).await.map_err(not_stored)?;
    let mut written = 0u64;
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|e| bad_form(format!("the upload broke off: {e}")))?
    {
        written += chunk.len() as u64;
        if written > limit {
            return Err(too_large(&name, limit));
        }
        tokio::io::AsyncWriteExt::write_all(&mut file, &chunk)
            .await
            .map_err(not_stored)?;
    }
    // tokio hands writes to a blocking thread: without this the last chunk may still be in
    // flight when the file is read back, and the load would see a truncated upload.
    tokio::io::AsyncWriteExt::flush(&mut file)
        .await
        .map_err(not_stored)?;
    Ok(Upload {
        name,
        path,
        _dir: dir,
    })
}

/// A form's text field, refused past `limit` bytes before it is held whole.
pub async fn field_text(mut field: Field<'_>, limit: usize) -> Result<String, ApiError> {
    let name = field
        .name()
        .unwrap_or("")
        .chars()
        .take(64)
        .collect::<String>();
    let mut bytes = Vec::new();
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|e| bad_form(format!("the form broke off: {e}")))?
    {
        if bytes.len() + chunk.len() > limit {
            return Err(too_large(&format!("field '{name}'"), limit as u64));
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes).map_err(|_| bad_form(format!("field '{name}' is not UTF-8 text")))
}

fn too_large(what: &str, limit: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "{what} is over the limit of {}; split it, or ask the bureau to raise [limits] in config/server.toml",
            human(limit)
        ),
    )
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 => format!("{} MiB", b >> 20),
        b => format!("{} KiB", b >> 10),
    }
}

fn bad_form(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

fn not_stored(e: std::io::Error) -> ApiError {
    ApiError::new(
        StatusCode::INSUFFICIENT_STORAGE,
        format!("cannot store the upload: {e}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_read_from_the_config() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(ServerLimits::read(dir.path()).unwrap().memory_mb, 2_048);
        std::fs::write(dir.path().join(LIMITS_FILE), "[limits]\nupload_mb = 10\n").unwrap();
        let limits = ServerLimits::read(dir.path()).unwrap();
        assert_eq!((limits.upload_bytes(), limits.json_kb), (10 << 20, 8_192));
        std::fs::write(dir.path().join(LIMITS_FILE), "[limits]\nupload = 10\n").unwrap();
        assert!(
            ServerLimits::read(dir.path())
                .unwrap_err()
                .contains("unknown field")
        );
    }

    #[test]
    fn sizes_read_as_people_say_them() {
        assert_eq!(human(4 << 30), "4 GiB");
        assert_eq!(human(64 << 20), "64 MiB");
        assert_eq!(human(64 << 10), "64 KiB");
    }

    #[test]
    fn this_process_knows_its_memory() {
        if cfg!(target_os = "linux") {
            assert!(resident_bytes().unwrap() > 1 << 20);
        }
    }
}
