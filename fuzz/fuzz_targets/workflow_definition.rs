//! The workflow's definition parser on any text: it answers Ok or a
//! DefinitionError, never panics, and what it accepts it accepts again
//! from its own transitions.
#![no_main]

use libfuzzer_sys::fuzz_target;
use workflow::asl::{self, Methods};

/// Resolves every well-formed `grpc:pkg.Service/Method`, as the contracts would.
struct AnyMethod;

impl Methods for AnyMethod {
    fn resolve(&self, resource: &str) -> Result<String, String> {
        let name = resource.strip_prefix("grpc:").ok_or("not grpc:")?;
        let (service, method) = name.split_once('/').ok_or("no method")?;
        if service.contains('.') && !method.is_empty() && !method.contains('/') {
            Ok(format!("/{name}"))
        } else {
            Err("not a method".into())
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(machine) = asl::parse(text, &AnyMethod) {
        // Every transition of an accepted machine names a state it has.
        for state in &machine.states {
            for (_, next) in asl::transitions(state) {
                assert!(machine.states.iter().any(|s| s.name == next), "{next} is not a state");
            }
        }
    }
});
