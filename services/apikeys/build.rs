fn main() -> Result<(), build_support::Error> {
    build_support::Contracts::serve(&["ferrymesh.apikeys.v1"]).compile()
}
