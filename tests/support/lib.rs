//! Support for the cross-crate integration tests: locating the `symphony` binary and building
//! scratch git repositories.
