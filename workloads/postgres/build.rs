// `sqlx::migrate!` embeds schemas/postgres at build time; a migration file added there must
// rebuild this crate (and everything that embeds the migrator), which Cargo cannot know by itself.
fn main() {
    println!("cargo:rerun-if-changed=../../schemas/postgres");
}
