//! HTTP health probe: a 2xx from the health URL and, when the plan names a
//! version URL, the node reporting the release it should serve.

use super::{http_client, http_err, DResult, DriverError, HealthProbe, Target};
use crate::plan::render;
use async_trait::async_trait;
use std::time::Duration;

pub struct HttpHealth {
    url: String,
    version_url: Option<String>,
    client: reqwest::Client,
}

impl HttpHealth {
    pub fn new(url: &str, version_url: Option<&str>, timeout: Duration) -> Self {
        HttpHealth {
            url: url.into(),
            version_url: version_url.map(str::to_string),
            client: http_client(timeout),
        }
    }
}

#[async_trait]
impl HealthProbe for HttpHealth {
    async fn probe(&self, t: &Target, expect: Option<&str>) -> DResult<String> {
        let vars = [("node", t.name.as_str()), ("address", t.address.as_str())];
        let url = render(&self.url, &vars);
        let resp = self
            .client
            .get(&url)
            .send()
            .await
            .map_err(|e| http_err(&format!("GET {url}"), e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(DriverError::Failed(format!("GET {url}: HTTP {status}")));
        }
        let (Some(vt), Some(expect)) = (&self.version_url, expect) else {
            return Ok(format!("HTTP {status}"));
        };
        let vurl = render(vt, &vars);
        let body = self
            .client
            .get(&vurl)
            .send()
            .await
            .map_err(|e| http_err(&format!("GET {vurl}"), e))?
            .text()
            .await
            .map_err(|e| http_err(&format!("GET {vurl}"), e))?;
        let serving = body.trim();
        if serving != expect {
            return Err(DriverError::Failed(format!(
                "serving {serving}, expected {expect}"
            )));
        }
        Ok(format!("HTTP {status}, serving {serving}"))
    }
}
