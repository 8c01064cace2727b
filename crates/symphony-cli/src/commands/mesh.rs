//! `symphony mesh id|serve|status|peers`: the node key, a running node, and its diagnostics
//! (docs/mesh.md, "CLI").
//!
//! `serve` runs a node from the `mesh:` block of WORKFLOW.md (or flags), serves its
//! diagnostics as JSON at `http://127.0.0.1:<port>/api/v1/mesh` and writes that address to
//! `.symphony/mesh.endpoint` at the repository root, where `status` and `peers` find it.

mod report;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use symphony_mesh::config::DEFAULT_KEY_PATH;
use symphony_mesh::{BootstrapPeer, Identity, Mesh, MeshConfig, NodeId, TrustConfig};

/// Where `serve` records the diagnostics address, relative to the repository root.
const ENDPOINT_FILE: &str = ".symphony/mesh.endpoint";
/// The diagnostics route.
const API_PATH: &str = "/api/v1/mesh";

/// `symphony mesh …`
#[derive(Debug, Args)]
pub struct MeshArgs {
    #[command(subcommand)]
    command: MeshCommand,
}

#[derive(Debug, Subcommand)]
enum MeshCommand {
    /// Print this node's NodeId, creating the key (mode 0600) if it is missing.
    Id {
        /// Key file [default: .symphony/node.key at the repository root].
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// Run a mesh node and serve its diagnostics on 127.0.0.1.
    Serve(ServeArgs),
    /// Summarise a running node's diagnostics.
    Status(ReadArgs),
    /// List a running node's peers.
    Peers(ReadArgs),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// WORKFLOW.md whose `mesh:` block configures the node; flags override it.
    #[arg(long, value_name = "WORKFLOW.md")]
    config: Option<PathBuf>,
    /// Key file [default: `mesh.key_path`, else .symphony/node.key at the repository root].
    #[arg(long)]
    key: Option<PathBuf>,
    /// UDP address to listen on [default: `mesh.listen`, else 127.0.0.1:7400].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Address other nodes should dial [default: `mesh.advertise`, else the bound address].
    #[arg(long)]
    advertise: Option<SocketAddr>,
    /// A node to join through, `host:port` or `<node id>@host:port`; repeatable, added to
    /// `mesh.bootstrap`.
    #[arg(long = "bootstrap", value_name = "[ID@]ADDR")]
    bootstrap: Vec<BootstrapPeer>,
    /// A trusted NodeId, repeatable, or `open` to trust any node; replaces `mesh.trust`.
    #[arg(long = "trust", value_name = "ID|open")]
    trust: Vec<String>,
    /// Port of the diagnostics API on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    api_port: u16,
}

#[derive(Debug, Args)]
struct ReadArgs {
    /// Base URL of the node's API [default: read from .symphony/mesh.endpoint].
    #[arg(long, value_name = "URL")]
    api: Option<String>,
    /// Print the JSON document instead of the human summary.
    #[arg(long)]
    json: bool,
}

/// Runs a `symphony mesh` subcommand.
///
/// # Errors
/// Anything that prevents the command from running (unreadable key or workflow, bind
/// failure, no running node); the caller prints it and exits 2.
pub fn run(args: MeshArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        MeshCommand::Id { key } => id(key),
        MeshCommand::Serve(args) => serve(args),
        MeshCommand::Status(args) => read(args, report::status),
        MeshCommand::Peers(args) => read(args, report::peers),
    }
}

/// The repository root: the nearest ancestor of `start` holding `.git`, else `start`.
fn repo_root(start: &Path) -> PathBuf {
    start
        .ancestors()
        .find(|dir| dir.join(".git").exists())
        .unwrap_or(start)
        .to_path_buf()
}

fn cwd_root() -> anyhow::Result<PathBuf> {
    let cwd = std::env::current_dir().context("cannot determine the working directory")?;
    Ok(repo_root(&cwd))
}

fn id(key: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let path = match key {
        Some(path) => path,
        None => cwd_root()?.join(DEFAULT_KEY_PATH),
    };
    let existed = path.exists();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create the key directory", dir.display()))?;
    }
    let identity = Identity::load_or_create(&path)?;
    writeln!(std::io::stdout().lock(), "{}", identity.node_id())?;
    if !existed {
        let _ = writeln!(
            std::io::stderr().lock(),
            "created node key {} (mode 0600)",
            path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The node configuration: the workflow's `mesh:` block (or defaults), then the flags.
fn serve_config(args: &ServeArgs, root: &Path) -> anyhow::Result<MeshConfig> {
    let mut config = match &args.config {
        Some(path) => {
            let workflow = symphony_orchestrator::workflow::load_workflow(path)?;
            let mut config = match workflow.definition.config.get("mesh") {
                Some(block) => serde_yaml::from_value::<MeshConfig>(block.clone())
                    .with_context(|| format!("{}: mesh: invalid block", path.display()))?,
                None => MeshConfig::default(),
            };
            if config.key_path.is_relative() {
                config.key_path = workflow.definition.dir().join(&config.key_path);
            }
            config
        }
        None => MeshConfig {
            key_path: root.join(DEFAULT_KEY_PATH),
            ..MeshConfig::default()
        },
    };
    if let Some(key) = &args.key {
        config.key_path.clone_from(key);
    }
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if args.advertise.is_some() {
        config.advertise = args.advertise;
    }
    config.bootstrap.extend(args.bootstrap.iter().copied());
    if !args.trust.is_empty() {
        config.trust = trust(&args.trust)?;
    }
    config.validate()?;
    Ok(config)
}

fn trust(values: &[String]) -> anyhow::Result<TrustConfig> {
    if values.iter().any(|v| v == "open") {
        if values.len() > 1 {
            bail!("--trust open cannot be combined with node ids");
        }
        return Ok(TrustConfig::Open);
    }
    let ids = values
        .iter()
        .map(|v| v.parse::<NodeId>())
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TrustConfig::Allow(ids))
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let root = match &args.config {
        Some(path) => repo_root(path.parent().unwrap_or(Path::new("."))),
        None => cwd_root()?,
    };
    let config = serve_config(&args, &root)?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(serve_node(config, args.api_port, &root))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve_node(config: MeshConfig, api_port: u16, root: &Path) -> anyhow::Result<()> {
    let mesh = Mesh::start(config).await?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", api_port))
        .await
        .with_context(|| format!("cannot bind the diagnostics API to 127.0.0.1:{api_port}"))?;
    let url = format!("http://{}", listener.local_addr()?);
    let endpoint = root.join(ENDPOINT_FILE);
    write_endpoint(&endpoint, &url)?;
    tracing::info!(node = %mesh.node_id(), addr = %mesh.advertised_addr(), api = %url,
        "mesh node serving diagnostics at {url}{API_PATH}");
    let app = axum::Router::new()
        .route(API_PATH, axum::routing::get(diagnostics))
        .with_state(mesh.clone());
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await;
    mesh.shutdown().await;
    // Only remove the file if it still names this node's API (another node may own it now).
    if std::fs::read_to_string(&endpoint).is_ok_and(|s| s.trim() == url) {
        let _ = std::fs::remove_file(&endpoint);
    }
    served.context("diagnostics API failed")
}

async fn diagnostics(
    axum::extract::State(mesh): axum::extract::State<Mesh>,
) -> Result<axum::Json<symphony_mesh::Diagnostics>, (axum::http::StatusCode, String)> {
    mesh.diagnostics()
        .await
        .map(axum::Json)
        .map_err(|err| (axum::http::StatusCode::SERVICE_UNAVAILABLE, err.to_string()))
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => return std::future::pending::<()>().await,
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

/// Writes the API address atomically (temporary sibling, then rename).
fn write_endpoint(path: &Path, url: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create directory", dir.display()))?;
    }
    let tmp = path.with_extension("endpoint.tmp");
    std::fs::write(&tmp, format!("{url}\n"))
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| format!("{}: cannot write the API address", path.display()))
}

fn read(
    args: ReadArgs,
    render: fn(&serde_json::Value, bool) -> anyhow::Result<String>,
) -> anyhow::Result<ExitCode> {
    let base = match args.api {
        Some(url) => url,
        None => {
            let path = cwd_root()?.join(ENDPOINT_FILE);
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "{}: no running node recorded (start one with `symphony mesh serve`, \
                     or pass --api URL)",
                    path.display()
                )
            })?;
            text.trim().to_string()
        }
    };
    let url = format!("{}{API_PATH}", base.trim_end_matches('/'));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let document = runtime.block_on(fetch(&url))?;
    print!("{}", render(&document, args.json)?);
    Ok(ExitCode::SUCCESS)
}

async fn fetch(url: &str) -> anyhow::Result<serde_json::Value> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()?;
    let response = client.get(url).send().await.with_context(|| {
        format!("{url}: cannot reach the node (is `symphony mesh serve` running?)")
    })?;
    let status = response.status();
    if !status.is_success() {
        bail!("{url}: the node answered {status}");
    }
    response
        .json()
        .await
        .with_context(|| format!("{url}: the answer is not a diagnostics document"))
}
