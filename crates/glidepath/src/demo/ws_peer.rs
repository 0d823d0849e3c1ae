//! A small realtime server for the WebSocket probes' tests: on 127.0.0.1,
//! it answers `{"type":"hello"}` with `{"type":"welcome","caps":[…]}`, or,
//! as configured, late, never, with another type, or by closing the
//! connection with a code. Anything else gets `{"type":"error"}`.

use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// What the peer does when it gets `hello`.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// `{"type":"welcome","caps":[…]}`.
    Welcome,
    /// A reply of this `type`, with the caps.
    Type(String),
    /// Nothing: the connection stays open, silent.
    Never,
    /// A close frame with this code and reason.
    Close(u16, String),
}

#[derive(Debug, Clone)]
pub struct WsPeerCfg {
    pub caps: Vec<String>,
    pub answer: Answer,
    /// Wait this long before answering.
    pub delay: Duration,
    /// Send a ping and a binary frame before the answer (which a probe
    /// must skip).
    pub noise: bool,
}

impl Default for WsPeerCfg {
    fn default() -> Self {
        WsPeerCfg {
            caps: vec!["chat".into(), "presence".into()],
            answer: Answer::Welcome,
            delay: Duration::ZERO,
            noise: false,
        }
    }
}

/// The running peer; it stops when dropped.
pub struct WsPeer {
    pub addr: SocketAddr,
    /// `hello` messages received so far.
    pub hellos: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl WsPeer {
    /// Listen on an ephemeral port of 127.0.0.1 (on the current runtime).
    pub async fn start(cfg: WsPeerCfg) -> std::io::Result<WsPeer> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let hellos = Arc::new(AtomicUsize::new(0));
        let cfg = Arc::new(cfg);
        let count = hellos.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (cfg, count) = (cfg.clone(), count.clone());
                tokio::spawn(async move {
                    let _ = serve(tcp, &cfg, &count).await;
                });
            }
        });
        Ok(WsPeer { addr, hellos, task })
    }

    /// `ws://127.0.0.1:PORT/rt`.
    pub fn url(&self) -> String {
        format!("ws://{}/rt", self.addr)
    }

    pub fn hellos(&self) -> usize {
        self.hellos.load(Ordering::SeqCst)
    }
}

impl Drop for WsPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    tcp: tokio::net::TcpStream,
    cfg: &WsPeerCfg,
    hellos: &AtomicUsize,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    let mut ws = tokio_tungstenite::accept_async(tcp).await?;
    while let Some(msg) = ws.next().await {
        let Message::Text(text) = msg? else {
            continue;
        };
        let hello = serde_json::from_str::<serde_json::Value>(text.as_str())
            .is_ok_and(|v| v["type"] == "hello");
        if !hello {
            let reply = serde_json::json!({"type": "error", "error": "expected hello"});
            ws.send(Message::text(reply.to_string())).await?;
            continue;
        }
        hellos.fetch_add(1, Ordering::SeqCst);
        if !cfg.delay.is_zero() {
            tokio::time::sleep(cfg.delay).await;
        }
        if cfg.noise {
            ws.send(Message::Ping(vec![1, 2, 3].into())).await?;
            ws.send(Message::Binary(vec![0xff; 16].into())).await?;
        }
        let kind = match &cfg.answer {
            Answer::Welcome => "welcome",
            Answer::Type(t) => t.as_str(),
            Answer::Never => {
                // Silent, until the client goes away.
                while let Some(Ok(_)) = ws.next().await {}
                return Ok(());
            }
            Answer::Close(code, reason) => {
                let frame = CloseFrame {
                    code: CloseCode::from(*code),
                    reason: reason.as_str().into(),
                };
                ws.close(Some(frame)).await?;
                return Ok(());
            }
        };
        let reply = serde_json::json!({"type": kind, "caps": cfg.caps});
        ws.send(Message::text(reply.to_string())).await?;
    }
    Ok(())
}
