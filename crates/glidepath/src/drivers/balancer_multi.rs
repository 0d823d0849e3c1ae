//! Several balancers per node (an LB pair, an internal and an external
//! pool): drain and enable act on every one, and the node counts as drained
//! only when all of them say so.

use super::{Balancer, DResult, Target};
use async_trait::async_trait;
use std::sync::Arc;

pub struct MultiBalancer(pub Vec<Arc<dyn Balancer>>);

#[async_trait]
impl Balancer for MultiBalancer {
    async fn drain(&self, t: &Target) -> DResult<String> {
        let mut out = Vec::new();
        for b in &self.0 {
            out.push(b.drain(t).await?);
        }
        Ok(out.join("; "))
    }
    async fn active(&self, t: &Target) -> DResult<u64> {
        let mut sum = 0;
        for b in &self.0 {
            sum += b.active(t).await?;
        }
        Ok(sum)
    }
    async fn enable(&self, t: &Target) -> DResult<String> {
        let mut out = Vec::new();
        for b in &self.0 {
            out.push(b.enable(t).await?);
        }
        Ok(out.join("; "))
    }
    async fn check_in_rotation(&self, t: &Target) -> DResult<String> {
        let mut out = Vec::new();
        for b in &self.0 {
            out.push(b.check_in_rotation(t).await?);
        }
        Ok(out.join("; "))
    }
    async fn preflight(&self, t: &Target) -> DResult<String> {
        let mut out = Vec::new();
        for b in &self.0 {
            out.push(b.preflight(t).await?);
        }
        Ok(out.join("; "))
    }
    async fn out_before(&self, t: &Target) -> DResult<Option<String>> {
        let mut out = Vec::new();
        for b in &self.0 {
            out.extend(b.out_before(t).await?);
        }
        Ok((!out.is_empty()).then(|| out.join("; ")))
    }
}
