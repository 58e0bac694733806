//! Starts apikeys on a fresh database and gives clients for it.

use apikeys::pb::ferrymesh::apikeys::v1 as pb;
use kit_testing::{TestDatabase, TestServer};
use pb::api_keys_service_client::ApiKeysServiceClient;
use pb::developer_portal_service_client::DeveloperPortalServiceClient;
use tonic::transport::Channel;

pub(crate) const TOKEN: &str = "test-admin-token-0123456789";

pub(crate) struct ApiKeys {
    pub(crate) server: TestServer,
    channel: Channel,
}

impl ApiKeys {
    pub(crate) async fn start(db: TestDatabase) -> Self {
        let server = TestServer::start::<apikeys::migrations::Migrator>(db, async |db, args| {
            let config = apikeys::Config {
                server: args.clone(),
                admin_token: Some(TOKEN.into()),
                default_plan: "free".into(),
                secret_hash_key: None,
            };
            apikeys::service_with(db, &config).await
        })
        .await;
        let channel = server.channel().await;
        ApiKeys { server, channel }
    }

    pub(crate) fn admin(
        &self,
    ) -> ApiKeysServiceClient<tonic::service::interceptor::InterceptedService<Channel, Bearer>> {
        ApiKeysServiceClient::with_interceptor(self.channel.clone(), Bearer(TOKEN.into()))
    }

    pub(crate) fn raw(&self) -> ApiKeysServiceClient<Channel> {
        ApiKeysServiceClient::new(self.channel.clone())
    }

    pub(crate) fn portal(&self) -> DeveloperPortalServiceClient<Channel> {
        DeveloperPortalServiceClient::new(self.channel.clone())
    }

    pub(crate) async fn stop(self) {
        self.server.stop().await;
    }

    /// A plan `id` with the given rate and daily quota, and a developer on it.
    pub(crate) async fn plan_and_developer(&self, plan: pb::UsagePlan, developer_id: &str) {
        let plan_id = plan.plan_id.clone();
        self.admin()
            .create_usage_plan(pb::CreateUsagePlanRequest { plan: Some(plan) })
            .await
            .unwrap();
        self.admin()
            .create_developer(pb::CreateDeveloperRequest {
                developer_id: developer_id.into(),
                email: format!("{developer_id}@example.com"),
                name: developer_id.into(),
                plan_id,
            })
            .await
            .unwrap();
    }

    pub(crate) async fn key(&self, key_id: &str, developer_id: &str) -> String {
        self.admin()
            .create_api_key(pb::CreateApiKeyRequest {
                key_id: key_id.into(),
                developer_id: developer_id.into(),
                name: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .secret
    }
}

/// Adds `authorization: Bearer TOKEN`.
#[derive(Clone)]
pub(crate) struct Bearer(pub(crate) String);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {}", self.0).parse().unwrap());
        Ok(request)
    }
}

pub(crate) fn plan(id: &str) -> pb::UsagePlan {
    pb::UsagePlan {
        plan_id: id.into(),
        name: format!("Plan {id}"),
        rate_limit: 100.0,
        burst_limit: 200,
        quota_limit: 1000,
        quota_period: pb::QuotaPeriod::Day as i32,
        price_per_thousand: Some(kit_testing::fixtures::usd(2, 500_000_000)),
        ..Default::default()
    }
}

pub(crate) fn with_key<T>(message: T, secret: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("x-api-key", secret.parse().unwrap());
    request
}

pub(crate) fn record(key_id: &str, method: &str, count: i64, minute_micros: i64) -> pb::UsageRecord {
    pb::UsageRecord {
        key_id: key_id.into(),
        method: method.into(),
        count,
        window_start: Some(kit_values::timestamp(minute_micros)),
        stage: "prod".into(),
    }
}
