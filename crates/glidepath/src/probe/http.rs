//! `http = URL`: GET, the status (any 2xx unless `status`), a body
//! substring, and JSON fields by JSON pointer. The body is read through
//! `drivers::http::read_text`, at most `SMALL_MAX`.

use super::{quote, show, HttpProbe, ProbeOutcome};
use crate::drivers::http::{read_text, SMALL_MAX};
use crate::drivers::{http_client, DriverError};
use std::time::Duration;

pub(super) async fn run(p: &HttpProbe, limit: Duration) -> ProbeOutcome {
    let what = format!("GET {}", p.url);
    let client = http_client(limit);
    let resp = match client.get(&p.url).send().await {
        Ok(r) => r,
        Err(e) if e.is_connect() => {
            let why = if e.is_timeout() {
                format!("no connection within {}", show(limit))
            } else {
                "connection failed".to_string()
            };
            return ProbeOutcome::infra(format!("{what}: {why}"));
        }
        Err(e) if e.is_timeout() => {
            return ProbeOutcome::fail(format!("{what}: no answer within {}", show(limit)), None)
        }
        Err(e) => return ProbeOutcome::fail(format!("{what}: {e}"), None),
    };
    let status = resp.status();
    let body = match read_text(resp, SMALL_MAX, &what, DriverError::Failed).await {
        Ok(b) => b,
        Err(e) => return ProbeOutcome::fail(e.to_string(), None),
    };
    let status_ok = match p.status {
        Some(want) => status.as_u16() == want,
        None => status.is_success(),
    };
    if !status_ok {
        let want = p.status.map_or("2xx".to_string(), |c| c.to_string());
        return ProbeOutcome::fail(
            format!(
                "{what}: HTTP {}, expected {want} (body {})",
                status.as_u16(),
                quote(&body)
            ),
            Some(body),
        );
    }
    if let Some(want) = &p.body {
        if !body.contains(want.as_str()) {
            return ProbeOutcome::fail(
                format!("{what}: body {} does not contain {want:?}", quote(&body)),
                Some(body),
            );
        }
    }
    if p.json.is_empty() {
        return ProbeOutcome::pass(format!("{what}: HTTP {}", status.as_u16()), Some(body));
    }
    let doc: serde_json::Value = match serde_json::from_str(&body) {
        Ok(d) => d,
        Err(e) => {
            return ProbeOutcome::fail(
                format!("{what}: the body is not JSON ({e}): {}", quote(&body)),
                Some(body),
            )
        }
    };
    let mut seen = serde_json::Map::new();
    let mut shown = Vec::new();
    for (ptr, want) in &p.json {
        match doc.pointer(ptr) {
            None => {
                return ProbeOutcome::fail(
                    format!("{what}: no field {ptr} in the answer, expected {want}"),
                    Some(body),
                )
            }
            Some(got) if !same(got, want) => {
                return ProbeOutcome::fail(
                    format!(
                        "{what}: {ptr} is {}, expected {want}",
                        super::clip(&got.to_string(), 200)
                    ),
                    Some(got.to_string()),
                )
            }
            Some(got) => {
                shown.push(format!("{ptr} = {}", super::clip(&got.to_string(), 200)));
                seen.insert(ptr.clone(), got.clone());
            }
        }
    }
    // One field: its value (a string as it is); several: an object by pointer.
    let value = match seen.values().next() {
        Some(serde_json::Value::String(s)) if seen.len() == 1 => s.clone(),
        Some(v) if seen.len() == 1 => v.to_string(),
        _ => serde_json::Value::Object(seen).to_string(),
    };
    ProbeOutcome::pass(
        format!("{what}: HTTP {}, {}", status.as_u16(), shown.join(", ")),
        Some(value),
    )
}

/// JSON equality, numbers compared by value (`1` is `1.0`).
fn same(got: &serde_json::Value, want: &serde_json::Value) -> bool {
    match (got.as_f64(), want.as_f64()) {
        (Some(a), Some(b)) if got.is_number() && want.is_number() => a == b,
        _ => got == want,
    }
}

#[cfg(test)]
mod tests {
    use super::same;
    use serde_json::json;

    #[test]
    fn numbers_compare_by_value() {
        assert!(same(&json!(1), &json!(1.0)));
        assert!(!same(&json!(1), &json!(2)));
        assert!(!same(&json!("1"), &json!(1)));
        assert!(same(&json!({"a": [true]}), &json!({"a": [true]})));
    }
}
