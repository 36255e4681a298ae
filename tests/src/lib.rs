//! Consumer-level tests: the project README's examples compile and run here as doctests.
#![doc = include_str!("../../README.md")]

pub mod postgres;

/// The gateway guide's examples compile here as doctests.
#[doc = include_str!("../../docs/gateway.md")]
pub mod gateway_guide {}
