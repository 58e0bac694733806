//! The public contracts as the console's reference draws them: services,
//! methods and fields with their proto comments, and where each is served.

use prost_reflect::{Cardinality, FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Value, json};

use crate::Shared;

pub(super) fn routed(shared: &Shared, package: &str) -> bool {
    let routes = shared.routes();
    routes
        .stages
        .get(&routes.default_stage)
        .is_some_and(|stage| stage.routes.contains_key(package))
}

/// Which packages each stage serves.
pub(super) fn served(shared: &Shared) -> Value {
    let routes = shared.routes();
    let mut stages = serde_json::Map::new();
    for (name, stage) in &routes.stages {
        let mut packages: Vec<&str> = stage.routes.keys().map(String::as_str).collect();
        packages.sort_unstable();
        stages.insert(name.clone(), json!(packages));
    }
    json!({ "default_stage": routes.default_stage, "stages": stages })
}

/// The leading comment of the element at `path` in its file.
fn comment(file: &prost_types::FileDescriptorProto, path: &[i32]) -> String {
    file.source_code_info
        .as_ref()
        .and_then(|info| info.location.iter().find(|l| l.path == path))
        .and_then(|l| l.leading_comments.clone())
        .map(|c| {
            c.lines()
                .map(str::trim)
                .collect::<Vec<_>>()
                .join("\n")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

fn field_type(field: &FieldDescriptor) -> String {
    match field.kind() {
        Kind::Message(m) => m.full_name().to_string(),
        Kind::Enum(e) => e.full_name().to_string(),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// The public contracts as the reference pages show them.
pub(super) fn reference(shared: &Shared) -> Value {
    let Ok(pool) = crate::web::contracts() else {
        return json!({ "services": [], "messages": {}, "enums": {} });
    };
    let routes = shared.routes();
    let mut services = Vec::new();
    let mut pending: Vec<MessageDescriptor> = Vec::new();
    for service in pool.services() {
        let file = service.parent_file();
        let methods: Vec<Value> = service
            .methods()
            .filter(|m| routes.is_public(&format!("/{}/{}", service.full_name(), m.name())))
            .map(|m| {
                pending.push(m.input());
                pending.push(m.output());
                let path = format!("/{}/{}", service.full_name(), m.name());
                json!({
                    "name": m.name(),
                    "path": path,
                    "input": m.input().full_name(),
                    "output": m.output().full_name(),
                    "client_streaming": m.is_client_streaming(),
                    "server_streaming": m.is_server_streaming(),
                    "comment": comment(file.file_descriptor_proto(), m.path()),
                    "deprecated": m.method_descriptor_proto().options.as_ref().and_then(|o| o.deprecated).unwrap_or(false),
                    "anonymous": routes.is_anonymous(&path),
                })
            })
            .collect();
        if methods.is_empty() {
            continue;
        }
        services.push(json!({
            "name": service.full_name(),
            "package": service.package_name(),
            "version": service.package_name().rsplit('.').next().unwrap_or_default(),
            "comment": comment(file.file_descriptor_proto(), service.path()),
            "deprecated": service.service_descriptor_proto().options.as_ref().and_then(|o| o.deprecated).unwrap_or(false),
            "methods": methods,
        }));
    }
    let mut messages = serde_json::Map::new();
    let mut enums = serde_json::Map::new();
    while let Some(message) = pending.pop() {
        if messages.contains_key(message.full_name()) {
            continue;
        }
        let file = message.parent_file();
        let fields: Vec<Value> = message
            .fields()
            .map(|f| {
                match f.kind() {
                    Kind::Message(m) => pending.push(m),
                    Kind::Enum(e) if !enums.contains_key(e.full_name()) => {
                        {
                            let efile = e.parent_file();
                            let values: Vec<Value> = e
                                .values()
                                .map(|v| json!({
                                    "name": v.name(),
                                    "number": v.number(),
                                    "comment": comment(efile.file_descriptor_proto(), v.path()),
                                }))
                                .collect();
                            enums.insert(
                                e.full_name().to_string(),
                                json!({ "comment": comment(efile.file_descriptor_proto(), e.path()), "values": values }),
                            );
                        }
                    }
                    _ => {}
                }
                json!({
                    "name": f.name(),
                    "json_name": f.json_name(),
                    "number": f.number(),
                    "type": field_type(&f),
                    "repeated": f.cardinality() == Cardinality::Repeated && !f.is_map(),
                    "map": f.is_map(),
                    "oneof": f.containing_oneof().map(|o| o.name().to_string()),
                    "comment": comment(file.file_descriptor_proto(), f.path()),
                    "deprecated": f.field_descriptor_proto().options.as_ref().and_then(|o| o.deprecated).unwrap_or(false),
                })
            })
            .collect();
        messages.insert(
            message.full_name().to_string(),
            json!({
                "comment": comment(file.file_descriptor_proto(), message.path()),
                "fields": fields,
            }),
        );
    }
    json!({ "services": services, "messages": messages, "enums": enums })
}
