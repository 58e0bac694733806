fn main() -> Result<(), build_support::Error> {
    // The gateway calls apikeys, and serves reflection for every public contract.
    build_support::Contracts::serve(&[])
        .call(&["ferrymesh.apikeys.v1"])
        .with_every_descriptor()
        .compile()
}
