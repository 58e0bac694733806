fn main() -> Result<(), build_support::Error> {
    // The shared value types, generated once here and reused by every service.
    build_support::Contracts::serve(&[])
        .call(&["ferrymesh.common.v1"])
        .generate_common()
        .compile()
}
