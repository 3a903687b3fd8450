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
    /// Access tokens that let peers replicate with this node.
    #[command(subcommand)]
    Token(TokenCommand),
    /// The peers this node replicates with.
    #[command(subcommand)]
    Peer(PeerCommand),
    /// Run one sync round now and print what moved (through the running
    /// node if there is one, else directly on the data folder).
    Sync(SyncArgs),
    /// Import records from a CSV file: every row is checked first, then all
    /// are written in one transaction (or none).
    Import(ImportArgs),
    /// Export the live records of a kind to a CSV file.
    Export(ExportArgs),
    /// Take a consistent copy of the database while the node runs.
    Backup(BackupArgs),
    /// Replace the node's database with a backup and give the node a new
    /// epoch. The node must be stopped.
    Restore(RestoreArgs),
    /// Certificates for serving HTTPS.
    #[command(subcommand)]
    Tls(TlsCommand),
}

#[derive(Debug, Clone, clap::Args)]
pub struct DataArg {
    /// Data folder (database, config file); created if missing.
    #[arg(long, env = "CRM_DATA", default_value = "./crm-data")]
    pub data: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub data: DataArg,
    /// Address to listen on, e.g. 127.0.0.1:8640 (port 0 picks a free one).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Human name of this node (office or laptop).
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue a token; its secret is printed once, alone on the last line.
    Create {
        /// Who the token is for, e.g. the peer's office name.
        name: String,
        /// Limit the peer to these kinds (comma-separated), e.g. for a
        /// laptop: `clients,contacts`. Default: every kind.
        #[arg(long)]
        kinds: Option<String>,
        /// Limit the peer to records whose FIELD has VALUE
        /// (`--filter manager=ivanov`; repeat for more values or fields).
        /// A kind without the field follows its reference (contacts follow
        /// their client).
        #[arg(long = "filter", value_name = "FIELD=VALUE")]
        filters: Vec<String>,
        /// Kinds sent whole whatever the filter (comma-separated), e.g.
        /// `users` so that reps can log in on their laptop.
        #[arg(long)]
        whole: Option<String>,
        #[command(flatten)]
        data: DataArg,
    },
    /// List tokens (names and dates; secrets are not stored).
    List {
        #[command(flatten)]
        data: DataArg,
    },
    /// Revoke a token: the peer holding it is refused from now on.
    Revoke {
        name: String,
        #[command(flatten)]
        data: DataArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum PeerCommand {
    /// Add a peer to replicate with.
    Add {
        /// A name for the peer here, e.g. `hq`.
        name: String,
        /// The peer's base URL, e.g. https://hq.example.com:8640
        url: String,
        /// The secret `crm-node token create` printed on the peer.
        #[arg(long, env = "CRM_PEER_TOKEN")]
        token: String,
        #[command(flatten)]
        data: DataArg,
    },
    /// List peers and their checkpoints.
    List {
        #[command(flatten)]
        data: DataArg,
    },
    /// Stop replicating with a peer.
    Remove {
        name: String,
        #[command(flatten)]
        data: DataArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// Make a private CA and a node certificate signed by it in DATA/tls/,
    /// and print the config lines that use them. For trying HTTPS; in
    /// production use the company's CA or a reverse proxy.
    SelfSigned {
        /// A DNS name the node is reached by (repeatable); `localhost` is
        /// always included.
        #[arg(long)]
        name: Vec<String>,
        /// An IP address the node is reached by (repeatable); 127.0.0.1 is
        /// always included.
        #[arg(long)]
        ip: Vec<std::net::IpAddr>,
        #[command(flatten)]
        data: DataArg,
    },
}

#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    /// Only this peer (every peer by default).
    #[arg(long)]
    pub peer: Option<String>,
    #[command(flatten)]
    pub data: DataArg,
}

#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// The file to write; must not exist.
    pub dest: PathBuf,
    #[command(flatten)]
    pub data: DataArg,
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// A file made by `crm-node backup`.
    pub src: PathBuf,
    #[command(flatten)]
    pub data: DataArg,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The kind (collection) to import into, e.g. `clients`.
    pub kind: String,
    /// A UTF-8 CSV file whose first row names the columns.
    pub file: PathBuf,
    /// Map a column to a field: `--map "Название:name"`; `--map "Column:-"`
    /// skips a column. Columns named like fields map by themselves.
    #[arg(long)]
    pub map: Vec<String>,
    /// Check every row and report, but write nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub data: DataArg,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The kind (collection) to export, e.g. `clients`.
    pub kind: String,
    /// The CSV file to write.
    pub file: PathBuf,
    #[command(flatten)]
    pub data: DataArg,
}
