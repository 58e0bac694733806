fn main() -> Result<(), build_support::Error> {
    build_support::Contracts::serve(&["ferrymesh.traces.v1"]).compile()
}
