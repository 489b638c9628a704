//! The public API, `/api/v1/*`: one module per resource.

pub mod account;
pub mod organizations;
pub mod personal_keys;
pub mod projects;
pub mod write_keys;
