//! The services of the mesh, their default ports, and how to run each.

use std::ffi::OsString;
use std::process::ExitCode;

/// What a service is to the rest of the mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Behind the gateway: mutual TLS under `up --tls`, traced, its metrics
    /// scraped by the console.
    Backend,
    /// The way in: its clients connect plaintext; `up` writes its routes
    /// and gives it the console's targets. Started last.
    Gateway,
    /// Takes OTLP plaintext, as collectors do; its own spans are not traced.
    TraceSink,
}

/// One service of the mesh.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MeshService {
    /// Its name, as in `ferrymesh serve NAME`.
    pub(crate) name: &'static str,
    /// Its default port.
    pub(crate) port: u16,
    /// What it is to the others.
    pub(crate) role: Role,
    /// Whether it keeps a database.
    pub(crate) has_database: bool,
    /// The services it calls: (its flag naming the address, the service).
    pub(crate) calls: &'static [(&'static str, &'static str)],
    /// Runs it in this process: its flags (the first is the program name) to an exit code.
    pub(crate) run: fn(Vec<OsString>) -> ExitCode,
}

const fn service(name: &'static str, port: u16, run: fn(Vec<OsString>) -> ExitCode) -> MeshService {
    MeshService {
        name,
        port,
        role: Role::Backend,
        has_database: true,
        calls: &[],
        run,
    }
}

/// Every service `ferrymesh up` starts, in start order: a service starts
/// after the services it calls, but for orders and workflow, which call
/// each other (both connect lazily and retry).
pub(crate) const SERVICES: &[MeshService] = &[
    service("catalog", catalog::DEFAULT_PORT, |argv| {
        kit::server::main::<catalog::Config, _, _>(argv, catalog::service)
    }),
    service("inventory", inventory::DEFAULT_PORT, |argv| {
        kit::server::main::<inventory::Config, _, _>(argv, inventory::service)
    }),
    service("payments", payments::DEFAULT_PORT, |argv| {
        kit::server::main::<payments::Config, _, _>(argv, payments::service)
    }),
    service("shipping", shipping::DEFAULT_PORT, |argv| {
        kit::server::main::<shipping::Config, _, _>(argv, shipping::service)
    }),
    MeshService {
        calls: &[
            ("--endpoint=ferrymesh.inventory.v1=", "inventory"),
            ("--endpoint=ferrymesh.payments.v1=", "payments"),
            ("--endpoint=ferrymesh.shipping.v1=", "shipping"),
            ("--endpoint=ferrymesh.orders.v2=", "orders"),
            ("--endpoint=ferrymesh.catalog.v1=", "catalog"),
        ],
        ..service("workflow", workflow::DEFAULT_PORT, |argv| {
            kit::server::main::<workflow::Config, _, _>(argv, workflow::service)
        })
    },
    MeshService {
        calls: &[
            ("--catalog-url", "catalog"),
            ("--payments-url", "payments"),
            ("--workflow-url", "workflow"),
        ],
        ..service("orders", orders::DEFAULT_PORT, |argv| {
            kit::server::main::<orders::Config, _, _>(argv, orders::service)
        })
    },
    service("apikeys", apikeys::DEFAULT_PORT, |argv| {
        kit::server::main::<apikeys::Config, _, _>(argv, apikeys::service)
    }),
    // Last: it is the way in, so it opens when everything behind it serves.
    MeshService {
        role: Role::Gateway,
        has_database: false,
        calls: &[("--apikeys-url", "apikeys")],
        ..service("gateway", gateway::DEFAULT_PORT, gateway::main)
    },
];

/// The trace sink `up --trace-sink` starts first, so it takes the first spans.
pub(crate) const TRACE_SINK: MeshService = MeshService {
    role: Role::TraceSink,
    has_database: false,
    ..service("tracesink", tracesink::DEFAULT_PORT, |argv| {
        kit::server::main::<tracesink::Config, _, _>(argv, tracesink::service)
    })
};

impl MeshService {
    /// Whether it answers only mutual TLS under `up --tls`.
    pub(crate) fn serves_mesh_tls(&self) -> bool {
        self.role == Role::Backend
    }

    /// Whether its telemetry is exported (the sink's own is not).
    pub(crate) fn traced(&self) -> bool {
        self.role != Role::TraceSink
    }

    /// Whether the console scrapes its metrics.
    pub(crate) fn scraped(&self) -> bool {
        self.role != Role::TraceSink
    }
}

/// Where a service serves its metrics, given its gRPC port: the port + 1000.
pub(crate) fn admin_port(port: u16) -> Option<u16> {
    port.checked_add(1000)
}

/// The packages the gateway routes, and the service serving each; `up`
/// writes them into the gateway's configuration file.
pub(crate) const GATEWAY_ROUTES: &[(&str, &str)] = &[
    ("ferrymesh.catalog.v1", "catalog"),
    ("ferrymesh.inventory.v1", "inventory"),
    ("ferrymesh.shipping.v1", "shipping"),
    ("ferrymesh.orders.v1", "orders"),
    ("ferrymesh.orders.v2", "orders"),
    ("ferrymesh.apikeys.v1", "apikeys"),
    // For the console's operations view, with the admin token only.
    ("ferrymesh.workflow.v1", "workflow"),
    ("ferrymesh.traces.v1", "tracesink"),
];

/// The service names, the trace sink's last.
pub(crate) fn names() -> Vec<&'static str> {
    SERVICES.iter().chain([&TRACE_SINK]).map(|s| s.name).collect()
}

/// Runs one service in this process with its own flags.
pub(crate) fn serve(name: &str, args: Vec<OsString>) -> ExitCode {
    let argv: Vec<OsString> = std::iter::once(OsString::from(name)).chain(args).collect();
    match SERVICES.iter().chain([&TRACE_SINK]).find(|s| s.name == name) {
        Some(service) => (service.run)(argv),
        None => {
            eprintln!(
                "ferrymesh: no service named {name}; the services are {}",
                names().join(", ")
            );
            ExitCode::from(2)
        }
    }
}

/// Where the operator's certificate is, for commands that call a service
/// directly (`keys`, `workflow`).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct OperatorCerts {
    /// The mesh's certificates, for an https:// address (`up --tls`): the
    /// command calls as the operator.
    #[arg(
        long,
        value_name = "DIR",
        default_value = ".ferrymesh/certs",
        env = "FERRYMESH_CERTS",
        global = true
    )]
    pub(crate) certs: std::path::PathBuf,
}

/// The endpoint of a service of the mesh and how to reach it: plaintext
/// for `http://`, mutual TLS as the operator for `https://` (the mesh under
/// `up --tls`), with the certificates `ferrymesh certs` made in `certs`.
fn endpoint(
    address: &str,
    certs: &std::path::Path,
) -> Result<(tonic::transport::Endpoint, kit::tls::Connector), String> {
    let (plain, tls) = match address.strip_prefix("https://") {
        None => (address.to_string(), None),
        Some(rest) => {
            let files = kit::tls::TlsArgs::from_dir(certs, kit::authz::OPERATOR);
            let tls = kit::tls::MeshTls::load(files).map_err(|e| {
                format!("{e}; pass --certs DIR, the directory `ferrymesh certs init` (or `up --tls`) wrote")
            })?;
            (format!("http://{rest}"), Some(std::sync::Arc::new(tls)))
        }
    };
    let endpoint = tonic::transport::Endpoint::from_shared(plain)
        .map_err(|e| format!("{address} is not a URL: {e}"))?
        .connect_timeout(std::time::Duration::from_secs(3));
    Ok((endpoint, kit::tls::Connector::new(tls)))
}

/// Connects to a service of the mesh now (see [`endpoint`]).
pub(crate) async fn connect(
    address: &str,
    certs: &std::path::Path,
) -> Result<tonic::transport::Channel, String> {
    let (endpoint, connector) = endpoint(address, certs)?;
    endpoint
        .connect_with_connector(connector)
        .await
        .map_err(|e| format!("cannot reach {address}: {e}; is the mesh up?"))
}

/// A channel to a service of the mesh that connects on its first call (see [`endpoint`]).
pub(crate) fn connect_lazy(
    address: &str,
    certs: &std::path::Path,
) -> Result<tonic::transport::Channel, String> {
    let (endpoint, connector) = endpoint(address, certs)?;
    Ok(endpoint.connect_with_connector_lazy(connector))
}
