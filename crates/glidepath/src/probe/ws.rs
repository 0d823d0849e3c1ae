//! `websocket = "ws://…"`: connect (plain TCP: glidepath is built without
//! TLS), the WebSocket handshake, `send` (one JSON text message), then the
//! first text reply must have `type` = `expect_type` and a `caps_field`
//! array holding every declared capability, all before the deadline.
//! Binary, ping and pong frames are skipped; a message is at most
//! [`MESSAGE_MAX`]; a close frame from the server is reported with its
//! code and reason.

use super::{quote, show, ProbeOutcome, WsProbe};
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::time::{timeout_at, Instant};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// The largest WebSocket message (and frame) a probe reads.
pub const MESSAGE_MAX: usize = 64 << 10;

pub(super) async fn run(p: &WsProbe, limit: Duration, deadline: Instant) -> ProbeOutcome {
    let what = format!("websocket {}", p.url);
    let url = match reqwest::Url::parse(&p.url) {
        Ok(u) if u.scheme() == "ws" => u,
        Ok(u) => {
            return ProbeOutcome::fail(
                format!(
                    "{what}: scheme {}:// is not supported, use ws://",
                    u.scheme()
                ),
                None,
            )
        }
        Err(e) => return ProbeOutcome::fail(format!("{what}: not a URL ({e})"), None),
    };
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return ProbeOutcome::fail(format!("{what}: the URL has no host"), None);
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let tcp = match timeout_at(deadline, tokio::net::TcpStream::connect((host, port))).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return ProbeOutcome::infra(format!("{what}: cannot connect: {e}")),
        Err(_) => {
            return ProbeOutcome::infra(format!("{what}: no connection within {}", show(limit)))
        }
    };
    let config = WebSocketConfig::default()
        .max_message_size(Some(MESSAGE_MAX))
        .max_frame_size(Some(MESSAGE_MAX));
    let handshake = tokio_tungstenite::client_async_with_config(p.url.as_str(), tcp, Some(config));
    let mut ws = match timeout_at(deadline, handshake).await {
        Ok(Ok((ws, _))) => ws,
        Ok(Err(WsError::Http(resp))) => {
            return ProbeOutcome::fail(
                format!(
                    "{what}: the handshake was refused with HTTP {}",
                    resp.status().as_u16()
                ),
                None,
            )
        }
        Ok(Err(e)) => return ProbeOutcome::fail(format!("{what}: handshake failed: {e}"), None),
        Err(_) => {
            return ProbeOutcome::fail(
                format!("{what}: no handshake answer within {}", show(limit)),
                None,
            )
        }
    };
    let outcome = exchange(p, &what, limit, deadline, &mut ws).await;
    // Say goodbye, briefly: the verdict is already made.
    let _ = tokio::time::timeout(Duration::from_millis(200), ws.close(None)).await;
    outcome
}

async fn exchange<S>(
    p: &WsProbe,
    what: &str,
    limit: Duration,
    deadline: Instant,
    ws: &mut tokio_tungstenite::WebSocketStream<S>,
) -> ProbeOutcome
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if let Some(msg) = &p.send {
        match timeout_at(deadline, ws.send(Message::text(msg.as_str()))).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return ProbeOutcome::fail(format!("{what}: sending failed: {e}"), None),
            Err(_) => {
                return ProbeOutcome::fail(
                    format!("{what}: could not send within {}", show(limit)),
                    None,
                )
            }
        }
    }
    let Some(want) = &p.expect_type else {
        return ProbeOutcome::pass(format!("{what}: handshake done"), None);
    };
    let mut skipped = 0usize;
    loop {
        let next = match timeout_at(deadline, ws.next()).await {
            Err(_) => {
                let also = if skipped > 0 {
                    format!(" ({skipped} non-text frame(s) skipped)")
                } else {
                    String::new()
                };
                return ProbeOutcome::fail(
                    format!(
                        "{what}: no reply within {} (expected type {want:?}){also}",
                        show(limit)
                    ),
                    None,
                );
            }
            Ok(n) => n,
        };
        let text = match next {
            None => {
                return ProbeOutcome::fail(
                    format!("{what}: the connection ended without a reply or a close frame"),
                    None,
                )
            }
            Some(Err(WsError::Capacity(e))) => {
                return ProbeOutcome::fail(
                    format!(
                        "{what}: reply refused, over the limit of {} ({e})",
                        crate::drivers::http::show_size(MESSAGE_MAX)
                    ),
                    None,
                )
            }
            Some(Err(e)) => return ProbeOutcome::fail(format!("{what}: {e}"), None),
            Some(Ok(Message::Close(frame))) => {
                let how = match frame {
                    Some(f) if f.reason.is_empty() => format!("with code {}", u16::from(f.code)),
                    Some(f) => format!(
                        "with code {} (reason {})",
                        u16::from(f.code),
                        quote(f.reason.as_str())
                    ),
                    None => "without a close code".to_string(),
                };
                return ProbeOutcome::fail(
                    format!("{what}: server closed the connection {how} before a reply of type {want:?}"),
                    None,
                );
            }
            Some(Ok(Message::Text(t))) => t.as_str().to_string(),
            Some(Ok(_)) => {
                skipped += 1;
                continue;
            }
        };
        return judge(p, want, what, text);
    }
}

/// The first text reply: its `type`, then its capabilities.
fn judge(p: &WsProbe, want: &str, what: &str, text: String) -> ProbeOutcome {
    let doc: serde_json::Value = match serde_json::from_str(&text) {
        Ok(d) => d,
        Err(_) => {
            return ProbeOutcome::fail(
                format!("{what}: the reply is not JSON: {}", quote(&text)),
                Some(text),
            )
        }
    };
    let Some(kind) = doc.get("type").and_then(|t| t.as_str()) else {
        return ProbeOutcome::fail(
            format!(
                "{what}: the reply has no string `type`, expected {want:?}: {}",
                quote(&text)
            ),
            Some(text),
        );
    };
    if kind != want {
        return ProbeOutcome::fail(
            format!("{what}: reply type was {}, expected {want:?}", quote(kind)),
            Some(text),
        );
    }
    if p.caps.is_empty() {
        return ProbeOutcome::pass(format!("{what}: reply {want:?}"), Some(text));
    }
    let field = p.caps_field.as_str();
    let got: Vec<String> = match doc.get(field).and_then(|c| c.as_array()) {
        Some(a) => a
            .iter()
            .map(|c| match c.as_str() {
                Some(s) => s.to_string(),
                None => c.to_string(),
            })
            .collect(),
        None => {
            return ProbeOutcome::fail(
                format!(
                    "{what}: reply {want:?} has no `{field}` array, expected [{}]",
                    p.caps.join(", ")
                ),
                Some(text),
            )
        }
    };
    let missing: Vec<&str> = p
        .caps
        .iter()
        .filter(|c| !got.contains(c))
        .map(String::as_str)
        .collect();
    let shown = super::clip(&got.join(", "), 300);
    if !missing.is_empty() {
        let which = if missing.len() == 1 {
            "capability"
        } else {
            "capabilities"
        };
        return ProbeOutcome::fail(
            format!(
                "{what}: missing {which} {} (got [{shown}])",
                missing.join(", ")
            ),
            Some(text),
        );
    }
    ProbeOutcome::pass(
        format!("{what}: reply {want:?} with {field} [{shown}]"),
        Some(text),
    )
}
