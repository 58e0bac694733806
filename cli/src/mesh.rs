//! The services of the mesh, their default ports, and how to run each.

use std::ffi::OsString;
use std::process::ExitCode;

/// One service of the mesh.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MeshService {
    /// Its name, as in `ferrymesh serve NAME`.
    pub(crate) name: &'static str,
    /// Its default port.
    pub(crate) port: u16,
    /// Whether it keeps a database.
    pub(crate) has_database: bool,
}

/// Every service `ferrymesh up` starts, in start order.
pub(crate) const SERVICES: &[MeshService] = &[MeshService {
    name: "catalog",
    port: catalog::DEFAULT_PORT,
    has_database: true,
}];

/// The service names.
pub(crate) fn names() -> Vec<&'static str> {
    SERVICES.iter().map(|s| s.name).collect()
}

/// Runs one service in this process with its own flags.
pub(crate) fn serve(name: &str, args: Vec<OsString>) -> ExitCode {
    let argv: Vec<OsString> = std::iter::once(OsString::from(name)).chain(args).collect();
    match name {
        "catalog" => kit::server::main::<catalog::Config, _, _>(argv, catalog::service),
        other => {
            eprintln!(
                "ferrymesh: no service named {other}; the services are {}",
                names().join(", ")
            );
            ExitCode::from(2)
        }
    }
}
