//! Consumer-level tests: the project README's examples compile and run here as doctests.
#![doc = include_str!("../../README.md")]

pub mod postgres;
