//! The gateway configuration `ferrymesh up` writes for the local mesh: what
//! a key holder may reach, what the operator may call with the admin token,
//! and the limits, as a TOML file a person can read and edit.

/// The configuration `ferrymesh up` writes: every public contract of the
/// mesh on the `prod` stage, at the given addresses.
pub fn local_mesh(addresses: &[(&str, String)]) -> String {
    let mut text = String::from(
        "# The ferrymesh gateway's configuration, written by `ferrymesh up`.\n\
         # Edit a copy and pass it with --pass gateway=--config=FILE; it is\n\
         # reloaded when it changes. Every key is described in the README.\n\n\
         default_stage = \"prod\"\n\n\
         # The only methods reachable through the gateway.\n\
         public = [\n",
    );
    for p in PUBLIC_METHODS {
        text.push_str(&format!("  \"{p}\",\n"));
    }
    text.push_str("]\n\n# Public methods callable without a key.\nanonymous = [\"ferrymesh.apikeys.v1.DeveloperPortalService/RegisterDeveloper\"]\n\n");
    text.push_str("# Packages that authenticate the caller by x-api-key themselves.\npass_api_key = [\"ferrymesh.apikeys.v1\"]\n\n");
    text.push_str("# Methods the console's operations view calls with the admin token\n# (authorization: Bearer TOKEN), never with a key.\noperator = [\n");
    for p in OPERATOR_METHODS {
        text.push_str(&format!("  \"{p}\",\n"));
    }
    text.push_str("]\n\n");
    text.push_str("# A key holder's calls about their own account: not metered, no quota,\n# throttled per developer by limits.self_service_*.\nunmetered = [\"ferrymesh.apikeys.v1.DeveloperPortalService/*\"]\n\n");
    text.push_str("[limits]\nkey_cache_ttl = \"30s\"\nchanges_poll = \"500ms\"\nusage_flush = \"1s\"\nanonymous_rate = 5.0\nanonymous_burst = 20\nself_service_rate = 5.0\nself_service_burst = 20\nkey_lookup_rate = 50.0\nkey_lookup_burst = 100\n\n");
    text.push_str("[stages.prod.routes]\n");
    for (package, url) in addresses {
        text.push_str(&format!("\"{package}\" = \"{url}\"\n"));
    }
    text.push_str("\n[stages.prod.variables]\nname = \"prod\"\n");
    text
}

/// What an operator may call through the gateway with the admin token:
/// reading executions and redriving them, the developers' usage and
/// invoices, the trace sink's traces and service map, and any order (a
/// public method too: with a key instead, a customer's own).
pub const OPERATOR_METHODS: &[&str] = &[
    "ferrymesh.workflow.v1.WorkflowService/ListStateMachines",
    "ferrymesh.workflow.v1.WorkflowService/GetStateMachine",
    "ferrymesh.workflow.v1.WorkflowService/ListExecutions",
    "ferrymesh.workflow.v1.WorkflowService/DescribeExecution",
    "ferrymesh.workflow.v1.WorkflowService/GetExecutionHistory",
    "ferrymesh.workflow.v1.WorkflowService/GetExecutionGraph",
    "ferrymesh.workflow.v1.WorkflowService/RedriveExecution",
    "ferrymesh.workflow.v1.WorkflowService/SummarizeExecutions",
    "ferrymesh.orders.v2.OrdersService/GetOrder",
    "ferrymesh.apikeys.v1.ApiKeysService/ListUsagePlans",
    "ferrymesh.apikeys.v1.ApiKeysService/ListDevelopers",
    "ferrymesh.apikeys.v1.ApiKeysService/GetUsage",
    "ferrymesh.apikeys.v1.ApiKeysService/GetInvoice",
    "ferrymesh.traces.v1.TracesService/*",
];

/// What a key holder may reach in the local mesh. Not here: apikeys'
/// admin service, workflow (its executions hold every customer's data),
/// orders' fulfillment service (the saga's), inventory's and payments'
/// mutations, shipping's shipments.
pub const PUBLIC_METHODS: &[&str] = &[
    "ferrymesh.catalog.v1.CatalogService/*",
    "ferrymesh.orders.v1.OrdersService/*",
    "ferrymesh.orders.v2.OrdersService/*",
    "ferrymesh.inventory.v1.InventoryService/GetStock",
    "ferrymesh.shipping.v1.ShippingService/GetQuote",
    "ferrymesh.apikeys.v1.DeveloperPortalService/*",
];
