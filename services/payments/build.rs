fn main() -> Result<(), build_support::Error> {
    build_support::Contracts::serve(&["ferrymesh.payments.v1"]).compile()
}
