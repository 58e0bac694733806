fn main() -> Result<(), build_support::Error> {
    // Every contract's descriptors: a Task names any method of the mesh.
    build_support::Contracts::serve(&["ferrymesh.workflow.v1"])
        .with_every_descriptor()
        .compile()
}
