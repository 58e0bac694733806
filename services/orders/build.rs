fn main() -> Result<(), build_support::Error> {
    build_support::Contracts::serve(&["ferrymesh.orders.v1", "ferrymesh.orders.v2"])
        .call(&[
            "ferrymesh.catalog.v1",
            "ferrymesh.payments.v1",
            "ferrymesh.workflow.v1",
        ])
        .compile()
}
