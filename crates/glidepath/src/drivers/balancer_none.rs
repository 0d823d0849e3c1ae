//! `kind = "none"`: nodes without a load balancer in front. Drain and enable
//! do nothing; there is never an active connection to wait for.

use super::{Balancer, DResult, Target};
use async_trait::async_trait;

pub struct NoBalancer;

#[async_trait]
impl Balancer for NoBalancer {
    async fn drain(&self, _: &Target) -> DResult<String> {
        Ok("no balancer: nothing to drain".into())
    }
    async fn active(&self, _: &Target) -> DResult<u64> {
        Ok(0)
    }
    async fn enable(&self, _: &Target) -> DResult<String> {
        Ok("no balancer: nothing to enable".into())
    }
    async fn check_in_rotation(&self, _: &Target) -> DResult<String> {
        Ok("no balancer".into())
    }
    async fn preflight(&self, _: &Target) -> DResult<String> {
        Ok("no balancer".into())
    }
    fn exists(&self) -> bool {
        false
    }
}
