//! Rebuild when migrations change: `embed_migrations!` reads ../migrations at compile
//! time, and cargo would not otherwise notice a new migration directory.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
