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

use crate::keys::CachedKey;

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

/// The full method names a reflection request may see.
fn visible(set: &FileDescriptorSet, show: &dyn Fn(&str) -> bool) -> FileDescriptorSet {
    let mut set = set.clone();
    for file in &mut set.file {
        let package = file.package.clone().unwrap_or_default();
        for service in &mut file.service {
            let name = service.name.clone().unwrap_or_default();
            service
                .method
                .retain(|m| show(&format!("/{package}.{name}/{}", m.name.as_deref().unwrap_or_default())));
        }
        file.service.retain(|s| !s.method.is_empty());
    }
    set
}

impl ReflectionCache {
    /// The reflection of what `key` may call, where `public` says what the
    /// gateway exposes; `generation` changes on every configuration reload.
    pub fn for_key(
        &self,
        generation: u64,
        key: &CachedKey,
        public: &dyn Fn(&str) -> bool,
    ) -> Result<Reflection, tonic_reflection::server::Error> {
        let id = (generation, key.plan_id.clone());
        if let Some(found) = self.built.lock().ok().and_then(|b| b.get(&id).cloned()) {
            return Ok(found);
        }
        let every = FileDescriptorSet::decode(crate::EVERY_DESCRIPTOR_SET)
            .map_err(|e| tonic_reflection::server::Error::DecodeError(e))?;
        let mine = visible(&every, &|m| public(m) && key.allows(m));
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
        .map(|s| s.file.iter().flat_map(|f| &f.service).map(|s| s.method.len()).sum())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_visible_methods_remain() {
        let every = FileDescriptorSet::decode(crate::EVERY_DESCRIPTOR_SET).unwrap();
        let catalog_get = visible(&every, &|m| m == "/ferrymesh.catalog.v1.CatalogService/GetProduct");
        let methods: Vec<_> = catalog_get
            .file
            .iter()
            .flat_map(|f| f.service.iter().flat_map(|s| s.method.iter().map(|m| m.name.clone().unwrap_or_default())))
            .collect();
        assert_eq!(methods, ["GetProduct"]);
        assert!(method_count(crate::EVERY_DESCRIPTOR_SET) > 40);
    }
}
