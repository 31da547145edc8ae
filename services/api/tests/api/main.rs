//! Integration tests of the write API through its real router, against a
//! real PostgreSQL (one fresh database per test) and, for the outbox, a real
//! NATS JetStream server (`NATS_URL`).

mod auth;
mod domains;
mod edge;
mod errors;
mod events;
mod import;
mod importers;
mod link_management;
mod link_rules;
mod links;
mod openapi;
mod outage;
mod outbox;
mod propagation;
mod qr;
mod stats;
mod support;
mod targets;
mod users;
