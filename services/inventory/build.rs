fn main() -> Result<(), build_support::Error> {
    build_support::Contracts::serve(&["ferrymesh.inventory.v1"]).compile()
}
