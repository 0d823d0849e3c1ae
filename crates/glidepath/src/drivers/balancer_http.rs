//! `kind = "http"`: a node (or a sidecar) that takes itself out of rotation
//! on a POST, and reports its state as JSON `{"drained": bool, "active": n}`.
//! The demo nodes speak it.

use super::{http_client, send_checked, Balancer, DResult, DriverError, Target};
use async_trait::async_trait;
use std::time::Duration;

pub struct HttpBalancer {
    drain: String,
    ready: String,
    state: String,
    client: reqwest::Client,
}

#[derive(serde::Deserialize)]
struct State {
    drained: bool,
    active: u64,
}

impl HttpBalancer {
    pub fn new(drain: &str, ready: &str, state: &str, timeout: Duration) -> Self {
        HttpBalancer {
            drain: drain.into(),
            ready: ready.into(),
            state: state.into(),
            client: http_client(timeout),
        }
    }

    fn url(&self, tpl: &str, t: &Target) -> String {
        t.url_vars().fill(tpl)
    }

    async fn post(&self, tpl: &str, t: &Target) -> DResult<String> {
        let url = self.url(tpl, t);
        let resp = send_checked(
            self.client.post(&url),
            &format!("POST {url}"),
            DriverError::Failed,
        )
        .await?;
        Ok(format!("POST {url}: {}", resp.status()))
    }

    async fn get_state(&self, t: &Target) -> DResult<State> {
        let url = self.url(&self.state, t);
        let resp = send_checked(
            self.client.get(&url),
            &format!("GET {url}"),
            DriverError::Failed,
        )
        .await?;
        let what = format!("GET {url}");
        let body = super::http::read_body(resp, super::http::SMALL_MAX, &what, DriverError::Failed)
            .await?;
        serde_json::from_slice::<State>(&body).map_err(|e| {
            DriverError::Failed(format!(
                "GET {url}: expected {{\"drained\": bool, \"active\": n}}: {e}"
            ))
        })
    }
}

#[async_trait]
impl Balancer for HttpBalancer {
    async fn drain(&self, t: &Target) -> DResult<String> {
        self.post(&self.drain, t).await
    }
    async fn active(&self, t: &Target) -> DResult<u64> {
        let s = self.get_state(t).await?;
        if !s.drained {
            return Err(DriverError::Failed(format!(
                "{} is not drained at the balancer",
                t.name
            )));
        }
        Ok(s.active)
    }
    async fn enable(&self, t: &Target) -> DResult<String> {
        self.post(&self.ready, t).await
    }
    async fn check_in_rotation(&self, t: &Target) -> DResult<String> {
        let s = self.get_state(t).await?;
        if s.drained {
            return Err(DriverError::Failed(format!(
                "{} still drained after enable",
                t.name
            )));
        }
        Ok("in rotation".into())
    }
    async fn out_before(&self, t: &Target) -> DResult<Option<String>> {
        let s = self.get_state(t).await?;
        Ok(s.drained.then(|| "drained at the balancer".to_string()))
    }
    async fn preflight(&self, t: &Target) -> DResult<String> {
        let s = self.get_state(t).await?;
        Ok(if s.drained {
            "reachable (currently drained)".into()
        } else {
            "reachable, in rotation".into()
        })
    }
}
