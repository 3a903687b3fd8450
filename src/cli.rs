//! The command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "crm-node",
    version,
    about = "Offline-first CRM node with multi-master replication"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the node: the CRM API on the listen address, data in the data folder.
    Serve(ServeArgs),
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Data folder (database, config file); created if missing.
    #[arg(long, env = "CRM_DATA", default_value = "./crm-data")]
    pub data: PathBuf,
    /// Address to listen on, e.g. 127.0.0.1:8640 (port 0 picks a free one).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Human name of this node (office or laptop).
    #[arg(long)]
    pub name: Option<String>,
}
