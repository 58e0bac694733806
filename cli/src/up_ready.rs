//! What `ferrymesh up` makes ready before it starts anything (each
//! service's own PostgreSQL database, with `--postgres`) and what it tells
//! a person once every service is SERVING.

use std::net::SocketAddr;

use crate::UpArgs;
use crate::mesh::MeshService;

/// One started service, as the table shows it.
pub(crate) struct Ready {
    pub(crate) service: MeshService,
    pub(crate) addr: SocketAddr,
    /// The database it was given, when not its SQLite file.
    pub(crate) database_url: Option<String>,
}

/// With `--postgres`, each service's own database on that server, made
/// when missing: service name to URL.
pub(crate) async fn postgres_databases(
    args: &UpArgs,
    plan: &[(MeshService, SocketAddr)],
) -> Result<std::collections::HashMap<&'static str, String>, String> {
    let mut databases = std::collections::HashMap::new();
    let Some(server) = &args.postgres else {
        return Ok(databases);
    };
    for (service, _) in plan.iter().filter(|(s, _)| s.has_database) {
        let name = format!("{}_{}", args.postgres_prefix, service.name);
        let url = kit_store::ensure_postgres_database(server, &name)
            .await
            .map_err(|e| format!("cannot make {}'s database: {e}", service.name))?;
        databases.insert(service.name, url);
    }
    Ok(databases)
}

/// The table and the first steps, once every service is SERVING.
pub(crate) fn print(started: &[Ready], args: &UpArgs) {
    println!();
    println!(
        "{:<10} {:<18} {:<9} {:<34} DATABASE",
        "SERVICE", "ADDRESS", "HEALTH", "METRICS"
    );
    for s in started {
        let database = if s.service.has_database {
            s.database_url
                .as_deref()
                .map(kit_store::db::redact)
                .unwrap_or_else(|| format!("sqlite://{}/{}.db", args.data_dir.display(), s.service.name))
        } else {
            "-".to_string()
        };
        let metrics = crate::mesh::admin_port(s.addr.port())
            .map(|p| format!("http://{}:{p}/metrics", s.addr.ip()))
            .unwrap_or_default();
        println!(
            "{:<10} {:<18} {:<9} {metrics:<34} {database}",
            s.service.name, s.addr, "SERVING"
        );
    }
    println!();
    println!(
        "The gateway is the way in: send x-api-key (sign up with\n  \
         grpcurl -plaintext -d '{{\"email\": \"you@example.com\", \"name\": \"You\"}}' {} ferrymesh.apikeys.v1.DeveloperPortalService/RegisterDeveloper)",
        started
            .iter()
            .find(|s| s.service.name == "gateway")
            .map(|s| s.addr.to_string())
            .unwrap_or_default()
    );
    println!(
        "Operators' admin token: {}",
        args.data_dir.join("admin-token").display()
    );
    if args.tls {
        let certs = args.data_dir.join("certs");
        let catalog = started
            .iter()
            .find(|s| s.service.name == "catalog")
            .map(|s| s.addr.to_string())
            .unwrap_or_default();
        println!(
            "Inside the mesh every hop is mutual TLS; certificates in {dir} (rotate with \
             ferrymesh certs issue {dir} SERVICE). Call a service as the operator:\n  \
             grpcurl -cacert {dir}/ca.pem -cert {dir}/operator.pem -key {dir}/operator.key {catalog} list",
            dir = certs.display()
        );
    }
    if let Some(sink) = started.iter().find(|s| s.service.name == "tracesink") {
        println!(
            "Traces: ferrymesh trace ORDER_ID (or a trace or correlation id), ferrymesh trace map{}",
            if sink.addr.port() == tracesink::DEFAULT_PORT {
                String::new()
            } else {
                format!(" (add --sink http://{})", sink.addr)
            }
        );
    }
    println!("ferrymesh: all services are SERVING; Ctrl-C stops them.");
}
