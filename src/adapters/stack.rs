//! A lane's adapter stack as every front end resolves it: the registry's static pins for the
//! lane's model first (at scale 1), then the adapters the user chose. The window, `run`, `eval`,
//! `diverge`, `bench` and `serve` all build their stacks here, so a pin applies everywhere.

use std::path::Path;

use crate::protocol::AdapterSpec;

use super::registry::Registry;

/// The stack for a lane on `model`: static pins (when `statics`), then `user`.
pub fn lane_stack(registry: &Registry, model: &Path, user: &[AdapterSpec], statics: bool) -> Vec<AdapterSpec> {
    let mut stack: Vec<AdapterSpec> = if statics {
        registry
            .static_for(model)
            .into_iter()
            .map(|path| AdapterSpec { path, scale: 1.0 })
            .collect()
    } else {
        Vec::new()
    };
    stack.extend(user.iter().cloned());
    stack
}
