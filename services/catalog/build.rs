fn main() -> Result<(), build_support::Error> {
    build_support::Contracts::serve(&["ferrymesh.catalog.v1"]).compile()
}
