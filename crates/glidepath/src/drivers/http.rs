//! Bounded reads of HTTP answers. Every body glidepath reads from the
//! network goes through [`read_body`]: a `Content-Length` above the cap is
//! refused before anything is read, and a body without one (chunked, or
//! until close) is read chunk by chunk and dropped as soon as it passes the
//! cap. Memory stays within the cap whatever the other side sends.

use super::{http_err, DResult, DriverError};

/// A node's `/metrics` (`source = "scrape"`).
pub const METRICS_MAX: usize = 16 << 20;
/// A Prometheus query answer.
pub const PROMETHEUS_MAX: usize = 16 << 20;
/// A health body, a served version, a balancer's state.
pub const SMALL_MAX: usize = 1 << 20;
/// An HAProxy runtime API answer (`show stat`, `show servers state`).
pub const HAPROXY_MAX: usize = 16 << 20;

/// `16 MiB`, `1 MiB`, `512 bytes`.
pub fn show_size(n: usize) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} bytes")
    }
}

/// The message of an answer over its cap.
pub fn too_large(what: &str, cap: usize) -> String {
    format!(
        "{what}: answer larger than {} ({cap} bytes), the limit for this answer; refused without reading the rest",
        show_size(cap)
    )
}

/// Read the body of `resp`, at most `cap` bytes. Over the cap (announced by
/// `Content-Length`, or seen while reading) the answer is refused with
/// `on_large(too_large(what, cap))`; a broken transfer is `http_err`'s.
pub async fn read_body(
    mut resp: reqwest::Response,
    cap: usize,
    what: &str,
    on_large: fn(String) -> DriverError,
) -> DResult<Vec<u8>> {
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(on_large(too_large(what, cap)));
    }
    let mut body = Vec::with_capacity(
        resp.content_length()
            .map_or(8 << 10, |n| n as usize)
            .min(cap),
    );
    while let Some(chunk) = resp.chunk().await.map_err(|e| http_err(what, e))? {
        if body.len() + chunk.len() > cap {
            return Err(on_large(too_large(what, cap)));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// [`read_body`] as text (invalid UTF-8 replaced).
pub async fn read_text(
    resp: reqwest::Response,
    cap: usize,
    what: &str,
    on_large: fn(String) -> DriverError,
) -> DResult<String> {
    let b = read_body(resp, cap, what, on_large).await?;
    Ok(match String::from_utf8(b) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}
