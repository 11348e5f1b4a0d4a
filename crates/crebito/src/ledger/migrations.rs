//! Versioned SQL migrations embedded in the binary.
//!
//! The files under `crates/crebito/migrations/` are the only copy of the
//! schema and seed data; the deployment gets them through the API, which
//! applies the pending ones at start.

/// One migration: applied once, in `version` order, inside a transaction.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Strictly increasing version number (the file's numeric prefix).
    pub version: i32,
    /// Short name, recorded alongside the version.
    pub name: &'static str,
    /// The SQL script.
    pub sql: &'static str,
}

/// One entry of [`POSTGRES`] or [`SQLITE`], its SQL read from
/// `crates/crebito/migrations/<file>` at compile time.
macro_rules! migration {
    ($version:literal, $name:literal, $file:literal) => {
        Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!("../../migrations/", $file)),
        }
    };
}

/// Name of the table that records applied migrations (both ledgers).
pub const TABLE: &str = "schema_migrations";

/// The seed migration of `list` (the five accounts of docs/contract.md
/// §2.3), as `crebito reset` re-applies it.
pub fn seed(list: &[Migration]) -> &'static str {
    list.iter()
        .find(|m| m.name == "seed")
        .map(|m| m.sql)
        .expect("both migration lists have a seed")
}

/// PostgreSQL migrations.
pub const POSTGRES: &[Migration] = &[
    migration!(1, "schema", "postgres/0001_schema.sql"),
    migration!(2, "seed", "0002_seed.sql"),
    migration!(3, "idempotency_keys", "postgres/0003_idempotency_keys.sql"),
    migration!(5, "history_index", "postgres/0005_history_index.sql"),
    migration!(6, "post_batch", "postgres/0006_post_batch.sql"),
    migration!(
        7,
        "post_batch_revised",
        "postgres/0007_post_batch_revised.sql"
    ),
    migration!(8, "posting_domains", "postgres/0008_posting_domains.sql"),
];

/// SQLite migrations.
pub const SQLITE: &[Migration] = &[
    migration!(1, "schema", "sqlite/0001_schema.sql"),
    migration!(2, "seed", "0002_seed.sql"),
    migration!(3, "idempotency_keys", "sqlite/0003_idempotency_keys.sql"),
    migration!(4, "health_probe", "sqlite/0004_health_probe.sql"),
    migration!(5, "history_index", "sqlite/0005_history_index.sql"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_strictly_increase() {
        // The lists may differ in length and skip versions: SQLite has
        // its health probe table (0004), PostgreSQL the batch function
        // (0006), which SQLite does in Rust.
        for list in [POSTGRES, SQLITE] {
            assert!(list.windows(2).all(|w| w[0].version < w[1].version));
        }
    }
}
