//! crm-node as a library: the node, its HTTP API and its command-line
//! tools. The binary in `main.rs` only parses arguments and runs them; the
//! library form lets fuzz targets and benchmarks reach the record checks
//! without HTTP.

pub mod access;
pub mod api;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod node;
pub mod records;
pub mod replication;
pub mod running;
pub mod tls;
pub mod web;
