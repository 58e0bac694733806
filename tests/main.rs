//! End-to-end tests: the mesh run as users run it, through the real
//! `ferrymesh` binary, the real grpcurl and buf, and an OTLP receiver.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod architecture;
mod audit;
mod authz_matrix;
mod bounded_input;
mod chaos;
mod console;
mod contracts;
mod contributing;
mod database;
mod docs;
mod fixture;
mod gateway;
mod hostile_input;
mod layering;
mod manifests;
mod mesh_security;
mod mesh_up;
mod observability;
mod own_postgres;
mod postgres_mesh;
mod protocols;
mod replicas;
mod rollout;
mod saga;
mod saga_outage;
mod security;
mod security_abuse;
mod shape;
mod shutdown;
mod support;
mod tracing_export;
mod transport_faults;
