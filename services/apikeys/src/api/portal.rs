//! The developers' own service: sign-up and, with their key, their keys, usage and invoice.

use super::*;

#[tonic::async_trait]
impl pb::developer_portal_service_server::DeveloperPortalService for PortalApi {
    async fn register_developer(
        &self,
        request: Request<pb::RegisterDeveloperRequest>,
    ) -> Result<Response<pb::RegisterDeveloperResponse>, Status> {
        let r = request.into_inner();
        let mut v = Violations::new();
        check_email("email", &r.email, &mut v);
        check_name("name", &r.name, &mut v);
        if !v.is_empty() {
            return Err(ApiKeysError::from(v).into());
        }
        let (developer, key, secret) = self.store.register(&r.email, &r.name, &self.default_plan).await?;
        Ok(Response::new(pb::RegisterDeveloperResponse {
            key: Some(key_to_pb(&key, &developer.plan_id)),
            developer: Some(developer_to_pb(&developer)),
            secret,
        }))
    }

    async fn list_my_keys(
        &self,
        request: Request<pb::ListMyKeysRequest>,
    ) -> Result<Response<pb::ListMyKeysResponse>, Status> {
        let (_, developer) = self.caller(&request).await?;
        let mut keys = Vec::new();
        let mut after: Option<String> = None;
        // A developer's keys are few; read them all, a page at a time.
        loop {
            let page = self
                .store
                .list_keys(Some(&developer.developer_id), after.as_deref(), 100)
                .await?;
            let done = page.len() < 100;
            after = page.last().map(|k| k.key_id.clone());
            keys.extend(page.iter().map(|k| key_to_pb(k, &developer.plan_id)));
            if done || keys.len() >= 1000 {
                break;
            }
        }
        Ok(Response::new(pb::ListMyKeysResponse { keys }))
    }

    async fn rotate_my_key(
        &self,
        request: Request<pb::RotateMyKeyRequest>,
    ) -> Result<Response<pb::RotateMyKeyResponse>, Status> {
        let (key, developer) = self.caller(&request).await?;
        let mut v = Violations::new();
        let grace = grace("grace_period", request.get_ref().grace_period.as_ref(), &mut v);
        if !v.is_empty() {
            return Err(ApiKeysError::from(v).into());
        }
        let new_key_id = format!("key_{}", uuid::Uuid::new_v4().simple());
        let (old, new, secret) = self.store.rotate(&key.key_id, &new_key_id, grace).await?;
        Ok(Response::new(pb::RotateMyKeyResponse {
            new_key: Some(key_to_pb(&new, &developer.plan_id)),
            secret: secret.unwrap_or_default(),
            old_key: Some(key_to_pb(&old, &developer.plan_id)),
        }))
    }

    async fn revoke_my_key(
        &self,
        request: Request<pb::RevokeMyKeyRequest>,
    ) -> Result<Response<pb::RevokeMyKeyResponse>, Status> {
        let (_, developer) = self.caller(&request).await?;
        let r = request.into_inner();
        let mut v = Violations::new();
        check_id("key_id", &r.key_id, &mut v);
        if !v.is_empty() {
            return Err(ApiKeysError::from(v).into());
        }
        // Someone else's key is NOT_FOUND, as a missing one: no developer
        // learns which key ids exist.
        let key = self.store.key(&self.store.reader(), &r.key_id).await?;
        if key.developer_id != developer.developer_id {
            return Err(ApiKeysError::NotFound {
                kind: crate::store::KEY,
                id: r.key_id,
            }
            .into());
        }
        let key = self.store.revoke(&r.key_id, true).await?;
        Ok(Response::new(pb::RevokeMyKeyResponse {
            key: Some(key_to_pb(&key, &developer.plan_id)),
        }))
    }

    async fn get_my_invoice(
        &self,
        request: Request<pb::GetMyInvoiceRequest>,
    ) -> Result<Response<pb::GetMyInvoiceResponse>, Status> {
        let (_, developer) = self.caller(&request).await?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let bounds = month("period", &r.period, &mut v);
        let Some(bounds) = bounds.filter(|_| v.is_empty()) else {
            return Err(ApiKeysError::from(v).into());
        };
        let invoice = invoice(&self.store, &developer.developer_id, &r.period, bounds).await?;
        Ok(Response::new(pb::GetMyInvoiceResponse {
            invoice: Some(invoice),
        }))
    }

    async fn get_my_usage(
        &self,
        request: Request<pb::GetMyUsageRequest>,
    ) -> Result<Response<pb::GetMyUsageResponse>, Status> {
        let (_, developer) = self.caller(&request).await?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let range = usage_range(r.start_time.as_ref(), r.end_time.as_ref(), r.granularity, &mut v);
        let Some((range, bucket)) = range.filter(|_| v.is_empty()) else {
            return Err(ApiKeysError::from(v).into());
        };
        let (buckets, total) = buckets_to_pb(
            self.store
                .usage(&developer.developer_id, None, range, bucket)
                .await?,
        );
        let (quota_used, quota_limit) = self.store.quota(&developer).await?;
        Ok(Response::new(pb::GetMyUsageResponse {
            buckets,
            total,
            quota_used,
            quota_limit,
        }))
    }
}
