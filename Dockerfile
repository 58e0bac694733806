# syntax=docker/dockerfile:1
# One image per service, from this one file:
#   docker build --build-arg SERVICE=catalog -t ferrymesh/catalog:dev .
# SERVICE is a service crate (catalog, inventory, payments, shipping,
# orders, workflow, apikeys, gateway, tracesink); each has its own binary,
# so an image holds one service's code and no shell. The runtime image runs
# as a non-root user and needs nothing written to its root filesystem:
# state goes to the database (PostgreSQL in a cluster) or a mounted /data.

ARG RUST_VERSION=1.95.0

FROM rust:${RUST_VERSION}-slim-bookworm AS build
ARG SERVICE
WORKDIR /src
COPY . .
# The registry and target directories are build caches, not image layers;
# the binary is copied out of them in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    test -n "${SERVICE}" \
    && cargo build --release --locked --bin "${SERVICE}" \
    && cp "target/release/${SERVICE}" /service

# glibc and CA certificates, nothing else; uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /service /service
WORKDIR /data
USER 65532:65532
ENTRYPOINT ["/service"]
