//! `sqlx::migrate!` in `db.rs` embeds the workspace's `migrations/` at compile
//! time, but cargo only rebuilds a crate when its own sources change: without
//! this, a new migration file would not be embedded until a clean build.

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
