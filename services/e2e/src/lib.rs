//! End-to-end tests across the services live in `tests/`: the write API and
//! redirect replicas wired together through real Postgres, Valkey and NATS,
//! in one process. No service depends on another; only these tests see them
//! all.
