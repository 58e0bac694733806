//! `ferrymesh keys`: operators' commands for usage plans, developers and API
//! keys, usage and invoices, over apikeys' admin service.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use apikeys::pb::ferrymesh::apikeys::v1 as pb;
use apikeys::pb::ferrymesh::apikeys::v1::api_keys_service_client::ApiKeysServiceClient;
use clap::{Subcommand, ValueEnum};
use tonic::transport::Channel;

/// Flags of `ferrymesh keys`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct KeysArgs {
    /// Where the apikeys service listens.
    #[arg(
        long,
        value_name = "URL",
        default_value = "http://127.0.0.1:50057",
        env = "FERRYMESH_APIKEYS_URL",
        global = true
    )]
    address: String,
    /// The admin token [default: the one in the data directory].
    #[arg(long, value_name = "TOKEN", env = "FERRYMESH_ADMIN_TOKEN", global = true)]
    admin_token: Option<String>,
    /// The data directory holding `admin-token`.
    #[arg(
        long,
        value_name = "DIR",
        default_value = ".ferrymesh",
        env = "FERRYMESH_DATA_DIR",
        global = true
    )]
    data_dir: PathBuf,
    #[command(flatten)]
    certs: crate::mesh::OperatorCerts,
    #[command(subcommand)]
    command: KeysCommand,
}

/// Flags of `create-plan`.
#[derive(Debug, Clone, clap::Args)]
struct CreatePlanArgs {
    /// Its id: lowercase letters, digits and '-'.
    plan_id: String,
    /// Requests per second per key (0: none).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Requests at once above the rate.
    #[arg(long, default_value_t = 0)]
    burst: i32,
    /// Requests per period per developer (0: no quota).
    #[arg(long, default_value_t = 0)]
    quota: i64,
    /// The quota's period.
    #[arg(long, value_enum, default_value = "day")]
    period: Period,
    /// Price per 1000 weighted calls, e.g. 2.50.
    #[arg(long, default_value = "0")]
    price: String,
    /// Currency of the price.
    #[arg(long, default_value = "USD")]
    currency: String,
    /// Weighted calls a month free of charge.
    #[arg(long, default_value_t = 0)]
    free: i64,
    /// Methods the plan allows (patterns such as ferrymesh.catalog.v1.*); repeatable.
    #[arg(long = "allow", value_name = "PATTERN")]
    allowed: Vec<String>,
    /// A method's weight on the invoice, PATTERN=WEIGHT; repeatable.
    #[arg(long = "weight", value_name = "PATTERN=N")]
    weights: Vec<String>,
    /// A tighter rate for some methods, PATTERN=RATE/BURST; repeatable.
    #[arg(long = "method-rate", value_name = "PATTERN=RATE/BURST")]
    method_rates: Vec<String>,
    /// Stages the plan may call; repeatable (none: all).
    #[arg(long = "stage")]
    stages: Vec<String>,
}

/// Flags of `issue`.
#[derive(Debug, Clone, clap::Args)]
struct IssueArgs {
    /// The developer's id.
    developer_id: String,
    /// Their email address.
    #[arg(long)]
    email: String,
    /// Their plan.
    #[arg(long, default_value = "free")]
    plan: String,
    /// The key's id [default: DEVELOPER-1].
    #[arg(long)]
    key_id: Option<String>,
    /// Issue this many keys (DEVELOPER-1 ... DEVELOPER-N), one secret per
    /// line, for load tests and bulk provisioning.
    #[arg(long, default_value_t = 1, conflicts_with = "key_id")]
    count: u32,
}

/// Flags of `invoice`.
#[derive(Debug, Clone, clap::Args)]
struct InvoiceArgs {
    /// The developer.
    developer_id: String,
    /// The month, YYYY-MM [default: this month].
    #[arg(long)]
    month: Option<String>,
}

/// Flags of `usage`.
#[derive(Debug, Clone, clap::Args)]
struct UsageArgs {
    /// The developer.
    developer_id: String,
    /// How many days back, today included.
    #[arg(long, default_value_t = 7)]
    days: i64,
}

/// Flags of `rotate`.
#[derive(Debug, Clone, clap::Args)]
struct RotateArgs {
    /// The key's id.
    key_id: String,
    /// The new key's id.
    new_key_id: String,
    /// How long the old key keeps working.
    #[arg(long, default_value = "24h", value_parser = kit::duration::parse_duration)]
    grace: Duration,
}

#[derive(Debug, Clone, Subcommand)]
enum KeysCommand {
    /// Create a usage plan.
    CreatePlan(CreatePlanArgs),
    /// List the usage plans.
    Plans,
    /// Register a developer on a plan and issue their first key.
    Issue(IssueArgs),
    /// Keys, optionally of one developer (prefixes only; secrets are never shown again).
    List {
        /// Only this developer's.
        #[arg(long)]
        developer: Option<String>,
    },
    /// Revoke a key.
    Revoke {
        /// The key's id.
        key_id: String,
    },
    /// Replace a key; the old one works for the grace period.
    Rotate(RotateArgs),
    /// A developer's calls per method and day.
    Usage(UsageArgs),
    /// A developer's invoice for a month.
    Invoice(InvoiceArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Period {
    Day,
    Week,
    Month,
}

struct Admin {
    client: ApiKeysServiceClient<Channel>,
    bearer: tonic::metadata::AsciiMetadataValue,
}

impl Admin {
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(message);
        r.metadata_mut().insert("authorization", self.bearer.clone());
        r.set_timeout(Duration::from_secs(10));
        r
    }
}

fn price(text: &str, currency: &str) -> Result<kit_values::pb::ferrymesh::common::v1::Money, String> {
    let bad = || format!("--price {text:?} is not an amount such as 2.50");
    let (units, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 9 || !fraction.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    let units: i64 = units.parse().map_err(|_| bad())?;
    let nanos: i32 = format!("{fraction:0<9}").parse().map_err(|_| bad())?;
    Ok(kit_values::pb::ferrymesh::common::v1::Money {
        currency_code: currency.to_string(),
        units,
        nanos,
    })
}

/// `2.50 USD`: at least two decimals, more only when they are not zero.
fn money(m: &kit_values::pb::ferrymesh::common::v1::Money) -> String {
    let fraction = format!("{:09}", m.nanos.unsigned_abs());
    let fraction = fraction.trim_end_matches('0');
    format!("{}.{fraction:0<2} {}", m.units, m.currency_code)
}

fn pairs(flag: &str, items: &[String]) -> Result<Vec<(String, String)>, String> {
    items
        .iter()
        .map(|i| {
            i.rsplit_once('=')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| format!("--{flag} {i:?} must be PATTERN=VALUE"))
        })
        .collect()
}

fn show_key(k: &pb::ApiKey) -> String {
    let status = pb::ApiKeyStatus::try_from(k.status)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("API_KEY_STATUS_")
                .to_lowercase()
        })
        .unwrap_or_default();
    let expires = k
        .expire_time
        .map(|t| format!(" expires {}", kit_values::rfc3339(t.seconds * 1_000_000)))
        .unwrap_or_default();
    format!(
        "{:<24} {:<16} {:<12} {:<14} {status}{expires}",
        k.key_id,
        k.developer_id,
        k.plan_id,
        format!("{}…", k.prefix)
    )
}

pub(crate) async fn run(args: KeysArgs) -> ExitCode {
    match execute(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ferrymesh keys: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(args: KeysArgs) -> Result<(), String> {
    let token = match args.admin_token {
        Some(t) => t,
        None => std::fs::read_to_string(args.data_dir.join("admin-token"))
            .map(|t| t.trim().to_string())
            .map_err(|e| {
                format!(
                    "no --admin-token and cannot read {}: {e}",
                    args.data_dir.join("admin-token").display()
                )
            })?,
    };
    let channel = crate::mesh::connect(&args.address, &args.certs.certs).await?;
    let admin = Admin {
        client: ApiKeysServiceClient::new(channel),
        bearer: format!("Bearer {token}")
            .parse()
            .map_err(|_| "the admin token is not printable ASCII".to_string())?,
    };
    let status = |s: tonic::Status| format!("{:?}: {}", s.code(), s.message());
    let mut client = admin.client.clone();
    match args.command {
        KeysCommand::CreatePlan(args) => create_plan(&admin, args).await?,
        KeysCommand::Plans => {
            let plans = client
                .list_usage_plans(admin.request(pb::ListUsagePlansRequest {
                    page_size: 100,
                    page_token: String::new(),
                }))
                .await
                .map_err(status)?
                .into_inner()
                .plans;
            println!(
                "{:<16} {:>8} {:>6} {:>10} {:<7} PRICE/1000",
                "PLAN", "RATE", "BURST", "QUOTA", "PERIOD"
            );
            for p in plans {
                let period = pb::QuotaPeriod::try_from(p.quota_period)
                    .map(|q| q.as_str_name().trim_start_matches("QUOTA_PERIOD_").to_lowercase())
                    .unwrap_or_default();
                println!(
                    "{:<16} {:>8} {:>6} {:>10} {:<7} {}",
                    p.plan_id,
                    p.rate_limit,
                    p.burst_limit,
                    p.quota_limit,
                    period,
                    money(&p.price_per_thousand.unwrap_or_default())
                );
            }
        }
        KeysCommand::Issue(args) => issue(&admin, args).await?,
        KeysCommand::List { developer } => {
            let mut token = String::new();
            println!(
                "{:<24} {:<16} {:<12} {:<14} STATUS",
                "KEY", "DEVELOPER", "PLAN", "PREFIX"
            );
            loop {
                let page = client
                    .list_api_keys(admin.request(pb::ListApiKeysRequest {
                        developer_id: developer.clone().unwrap_or_default(),
                        page_size: 100,
                        page_token: token,
                    }))
                    .await
                    .map_err(status)?
                    .into_inner();
                for k in &page.keys {
                    println!("{}", show_key(k));
                }
                if page.next_page_token.is_empty() {
                    break;
                }
                token = page.next_page_token;
            }
        }
        KeysCommand::Revoke { key_id } => {
            let key = client
                .revoke_api_key(admin.request(pb::RevokeApiKeyRequest { key_id }))
                .await
                .map_err(status)?
                .into_inner()
                .key
                .unwrap_or_default();
            println!("{}", show_key(&key));
        }
        KeysCommand::Rotate(args) => rotate(&admin, args).await?,
        KeysCommand::Usage(args) => usage(&admin, args).await?,
        KeysCommand::Invoice(args) => invoice(&admin, args).await?,
    }
    Ok(())
}

async fn create_plan(
    admin: &Admin,
    CreatePlanArgs {
        plan_id,
        rate,
        burst,
        quota,
        period,
        price: price_text,
        currency,
        free,
        allowed,
        weights,
        method_rates,
        stages,
    }: CreatePlanArgs,
) -> Result<(), String> {
    let status = |s: tonic::Status| format!("{:?}: {}", s.code(), s.message());
    let mut client = admin.client.clone();
    let method_weights = pairs("weight", &weights)?
        .into_iter()
        .map(|(m, w)| {
            Ok(pb::MethodWeight {
                method: m,
                weight: w.parse().map_err(|_| format!("--weight {w:?} is not a number"))?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let method_rate_limits = pairs("method-rate", &method_rates)?
        .into_iter()
        .map(|(m, rb)| {
            let (r, b) = rb
                .split_once('/')
                .ok_or(format!("--method-rate {rb:?} must be RATE/BURST"))?;
            Ok(pb::MethodRateLimit {
                method: m,
                rate_limit: r.parse().map_err(|_| format!("{r:?} is not a rate"))?,
                burst_limit: b.parse().map_err(|_| format!("{b:?} is not a burst"))?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let plan = pb::UsagePlan {
        plan_id: plan_id.clone(),
        name: plan_id,
        rate_limit: rate,
        burst_limit: burst,
        quota_limit: quota,
        quota_period: if quota > 0 {
            let period = match period {
                Period::Day => pb::QuotaPeriod::Day,
                Period::Week => pb::QuotaPeriod::Week,
                Period::Month => pb::QuotaPeriod::Month,
            };
            period as i32
        } else {
            0
        },
        price_per_thousand: Some(price(&price_text, &currency)?),
        stages,
        method_rate_limits,
        allowed_methods: allowed,
        free_calls_per_month: free,
        method_weights,
        create_time: None,
    };
    let plan = client
        .create_usage_plan(admin.request(pb::CreateUsagePlanRequest { plan: Some(plan) }))
        .await
        .map_err(status)?
        .into_inner()
        .plan
        .unwrap_or_default();
    println!("plan {} created", plan.plan_id);
    Ok(())
}

async fn issue(
    admin: &Admin,
    IssueArgs {
        developer_id,
        email,
        plan,
        key_id,
        count,
    }: IssueArgs,
) -> Result<(), String> {
    let status = |s: tonic::Status| format!("{:?}: {}", s.code(), s.message());
    let mut client = admin.client.clone();
    client
        .create_developer(admin.request(pb::CreateDeveloperRequest {
            developer_id: developer_id.clone(),
            email,
            name: developer_id.clone(),
            plan_id: plan,
        }))
        .await
        .map_err(status)?;
    if count > 1 {
        let ids: Vec<String> = (1..=count).map(|i| format!("{developer_id}-{i}")).collect();
        for chunk in ids.chunks(32) {
            let made = futures_util::future::join_all(chunk.iter().map(|id| {
                let mut client = client.clone();
                let request = admin.request(pb::CreateApiKeyRequest {
                    key_id: id.clone(),
                    developer_id: developer_id.clone(),
                    name: String::new(),
                });
                async move { client.create_api_key(request).await }
            }))
            .await;
            for m in made {
                let secret = m.map_err(status)?.into_inner().secret;
                if !secret.is_empty() {
                    println!("{secret}");
                }
            }
        }
        return Ok(());
    }
    let created = client
        .create_api_key(admin.request(pb::CreateApiKeyRequest {
            key_id: key_id.unwrap_or_else(|| format!("{developer_id}-1")),
            developer_id,
            name: String::new(),
        }))
        .await
        .map_err(status)?
        .into_inner();
    let key = created.key.unwrap_or_default();
    if created.secret.is_empty() {
        println!("key {} exists; its secret was shown when it was made", key.key_id);
    } else {
        println!("key {} issued; its secret, shown this once:", key.key_id);
        println!("{}", created.secret);
    }
    Ok(())
}

async fn invoice(admin: &Admin, InvoiceArgs { developer_id, month }: InvoiceArgs) -> Result<(), String> {
    let status = |s: tonic::Status| format!("{:?}: {}", s.code(), s.message());
    let mut client = admin.client.clone();
    let month = month.unwrap_or_else(|| {
        let (y, m) = kit_values::current_year_month();
        format!("{y:04}-{m:02}")
    });
    let invoice = client
        .get_invoice(admin.request(pb::GetInvoiceRequest {
            developer_id,
            period: month,
        }))
        .await
        .map_err(status)?
        .into_inner()
        .invoice
        .unwrap_or_default();
    println!(
        "invoice of {} for {} on plan {}",
        invoice.developer_id, invoice.period, invoice.plan_id
    );
    println!("{:>10} {:>6} {:>10}  METHOD", "CALLS", "WEIGHT", "WEIGHTED");
    for l in &invoice.lines {
        println!(
            "{:>10} {:>6} {:>10}  {}",
            l.calls, l.weight, l.weighted_calls, l.method
        );
    }
    println!(
        "weighted {}, free {}, billable {}; total {}",
        invoice.weighted_calls,
        invoice.free_calls,
        invoice.billable_calls,
        money(&invoice.total.unwrap_or_default())
    );
    Ok(())
}

async fn usage(admin: &Admin, UsageArgs { developer_id, days }: UsageArgs) -> Result<(), String> {
    let status = |s: tonic::Status| format!("{:?}: {}", s.code(), s.message());
    let mut client = admin.client.clone();
    let now = kit_values::now_micros();
    let day = 86_400_000_000;
    let today = now - now.rem_euclid(day);
    let usage = client
        .get_usage(admin.request(pb::GetUsageRequest {
            developer_id,
            key_id: String::new(),
            start_time: Some(kit_values::timestamp(today - (days.clamp(1, 366) - 1) * day)),
            end_time: Some(kit_values::timestamp(today + day)),
            granularity: pb::UsageGranularity::Day as i32,
        }))
        .await
        .map_err(status)?
        .into_inner();
    println!("{:<10}  {:>10}  METHOD", "DAY", "CALLS");
    for b in &usage.buckets {
        let start = b.window_start.map_or(0, |t| t.seconds * 1_000_000);
        println!(
            "{:<10}  {:>10}  {}",
            &kit_values::rfc3339(start)[..10],
            b.count,
            b.method
        );
    }
    println!("{:<10}  {:>10}", "total", usage.total);
    Ok(())
}

async fn rotate(
    admin: &Admin,
    RotateArgs {
        key_id,
        new_key_id,
        grace,
    }: RotateArgs,
) -> Result<(), String> {
    let status = |s: tonic::Status| format!("{:?}: {}", s.code(), s.message());
    let mut client = admin.client.clone();
    let rotated = client
        .rotate_api_key(admin.request(pb::RotateApiKeyRequest {
            key_id,
            new_key_id,
            grace_period: Some(prost_types::Duration {
                seconds: i64::try_from(grace.as_secs()).unwrap_or(i64::MAX),
                nanos: 0,
            }),
        }))
        .await
        .map_err(status)?
        .into_inner();
    println!("{}", show_key(&rotated.old_key.unwrap_or_default()));
    println!("{}", show_key(&rotated.new_key.unwrap_or_default()));
    if !rotated.secret.is_empty() {
        println!("the new key's secret, shown this once:\n{}", rotated.secret);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{money, price};

    #[test]
    fn prices_are_read_exactly() {
        let p = price("2.5", "USD").unwrap();
        assert_eq!((p.units, p.nanos), (2, 500_000_000));
        let p = price("0.000000001", "EUR").unwrap();
        assert_eq!((p.units, p.nanos), (0, 1));
        assert_eq!(money(&price("0.136", "USD").unwrap()), "0.136 USD");
        assert_eq!(money(&price("4", "USD").unwrap()), "4.00 USD");
        for bad in ["x", "1.2.3", "1.0000000001", "1.-5"] {
            assert!(price(bad, "USD").is_err(), "{bad}");
        }
    }
}
