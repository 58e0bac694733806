fn main() -> Result<(), build_support::Error> {
    build_support::Contracts::serve(&["ferrymesh.shipping.v1"]).compile()
}
