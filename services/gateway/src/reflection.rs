//! Server reflection merged from every public contract and cut to what the
//! caller's plan allows, so `grpcurl -H 'x-api-key: …' gateway list` shows
//! exactly the services and methods the key can call.

use std::collections::HashMap;
use std::sync::Mutex;

use prost::Message;
use prost_types::FileDescriptorSet;
use std::convert::Infallible;

use http::{Request, Response};
use tonic::body::Body;
use tower::util::BoxCloneService;

/// The reflection services of one plan.
pub type Reflection = (ReflectionService, ReflectionService);

/// One reflection service (v1 or v1alpha).
pub type ReflectionService = BoxCloneService<Request<Body>, Response<Body>, Infallible>;

/// Reflection services per (configuration generation, plan).
#[derive(Default)]
pub struct ReflectionCache {
    built: Mutex<HashMap<(u64, String), Reflection>>,
}

impl std::fmt::Debug for ReflectionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReflectionCache")
    }
}

/// The descriptor set with only the methods `show` accepts; services left
/// with none are dropped, and the comments (source info, addressed by
/// index) follow their services and methods to their new places.
fn visible(set: &FileDescriptorSet, show: &dyn Fn(&str) -> bool) -> FileDescriptorSet {
    let mut set = set.clone();
    for file in &mut set.file {
        let package = file.package.clone().unwrap_or_default();
        // old service index -> (new index, old method index -> new index)
        let mut kept: HashMap<i32, (i32, HashMap<i32, i32>)> = HashMap::new();
        let services = std::mem::take(&mut file.service);
        for (s, mut service) in services.into_iter().enumerate() {
            let name = service.name.clone().unwrap_or_default();
            let mut methods = HashMap::new();
            let all = std::mem::take(&mut service.method);
            for (m, method) in all.into_iter().enumerate() {
                if show(&format!(
                    "/{package}.{name}/{}",
                    method.name.as_deref().unwrap_or_default()
                )) {
                    methods.insert(m as i32, service.method.len() as i32);
                    service.method.push(method);
                }
            }
            if !service.method.is_empty() {
                kept.insert(s as i32, (file.service.len() as i32, methods));
                file.service.push(service);
            }
        }
        // 6 is FileDescriptorProto.service; 2 is ServiceDescriptorProto.method.
        if let Some(info) = &mut file.source_code_info {
            info.location.retain_mut(|loc| {
                let path = &mut loc.path;
                if path.first() != Some(&6) || path.len() < 2 {
                    return true;
                }
                let Some((new_s, methods)) = kept.get(&path[1]) else {
                    return false;
                };
                path[1] = *new_s;
                if path.len() >= 4 && path[2] == 2 {
                    match methods.get(&path[3]) {
                        Some(new_m) => path[3] = *new_m,
                        None => return false,
                    }
                }
                true
            });
        }
    }
    set
}

impl ReflectionCache {
    /// The reflection of the methods `show` accepts, built once per plan
    /// (`""` for callers without a key) and configuration `generation`.
    pub fn for_plan(
        &self,
        generation: u64,
        plan_id: &str,
        show: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<Reflection, tonic_reflection::server::Error> {
        let id = (generation, plan_id.to_string());
        if let Some(found) = self.built.lock().ok().and_then(|b| b.get(&id).cloned()) {
            return Ok(found);
        }
        let every = FileDescriptorSet::decode(crate::EVERY_DESCRIPTOR_SET)
            .map_err(tonic_reflection::server::Error::DecodeError)?;
        let mine = visible(&every, show);
        let health = FileDescriptorSet::decode(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .map_err(tonic_reflection::server::Error::DecodeError)?;
        let details = FileDescriptorSet::decode(tonic_types::pb::FILE_DESCRIPTOR_SET)
            .map_err(tonic_reflection::server::Error::DecodeError)?;
        let build = |b: tonic_reflection::server::Builder<'static>| {
            b.register_file_descriptor_set(health.clone())
                .register_file_descriptor_set(details.clone())
                .register_file_descriptor_set(mine.clone())
        };
        let v1 = build(tonic_reflection::server::Builder::configure()).build_v1()?;
        let v1alpha = build(tonic_reflection::server::Builder::configure()).build_v1alpha()?;
        let reflection: Reflection = (BoxCloneService::new(v1), BoxCloneService::new(v1alpha));
        if let Ok(mut built) = self.built.lock() {
            built.retain(|(g, _), _| *g == generation);
            built.insert(id, reflection.clone());
        }
        Ok(reflection)
    }
}

/// How many methods an encoded descriptor set declares.
#[cfg(test)]
fn method_count(set: &[u8]) -> usize {
    FileDescriptorSet::decode(set)
        .map(|s| {
            s.file
                .iter()
                .flat_map(|f| &f.service)
                .map(|s| s.method.len())
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_visible_methods_remain() {
        let every = FileDescriptorSet::decode(crate::EVERY_DESCRIPTOR_SET).unwrap();
        let catalog_get = visible(&every, &|m| {
            m == "/ferrymesh.catalog.v1.CatalogService/GetProduct"
        });
        let methods: Vec<_> = catalog_get
            .file
            .iter()
            .flat_map(|f| {
                f.service
                    .iter()
                    .flat_map(|s| s.method.iter().map(|m| m.name.clone().unwrap_or_default()))
            })
            .collect();
        assert_eq!(methods, ["GetProduct"]);
        // Its comment moved with it: the first (and only) method of the first service.
        let file = catalog_get.file.iter().find(|f| !f.service.is_empty()).unwrap();
        let comment = file
            .source_code_info
            .as_ref()
            .and_then(|i| i.location.iter().find(|l| l.path == [6, 0, 2, 0]))
            .and_then(|l| l.leading_comments.clone())
            .unwrap_or_default();
        assert!(comment.to_lowercase().contains("product"), "{comment:?}");
        assert!(method_count(crate::EVERY_DESCRIPTOR_SET) > 40);
    }
}
