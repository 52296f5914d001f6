//! `run(config, shutdown)`: the coordinator service.

use std::time::Duration;

use meshrun_shared::control_socket::ControlClient;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState};
use crate::config::CoordinatorConfig;
use crate::control_node::{ControlNode, ControlNodeError};
use crate::events_bus::EventsBus;
use crate::projects::ProjectStore;
use crate::runner::JobRunner;
use crate::store::{Store, StoreError};

/// How long start-up waits for the control node's receptor socket.
const RECEPTOR_WAIT: Duration = Duration::from_secs(30);

/// Why the service stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A directory could not be created.
    #[error("cannot create {path}: {source}")]
    Dir {
        /// The directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// receptor's control socket never answered.
    #[error("the control node's receptor did not answer on {socket} within {secs} s: {last}")]
    Receptor {
        /// The socket path.
        socket: String,
        /// How long we waited.
        secs: u64,
        /// The last error.
        last: String,
    },
    /// The control node's own receptor could not be started.
    #[error(transparent)]
    ControlNode(#[from] ControlNodeError),
    /// The mesh CA or the API's certificate is unusable.
    #[error(transparent)]
    Pki(#[from] crate::pki::PkiError),
    /// TLS for the API could not be set up.
    #[error(transparent)]
    Https(#[from] crate::https::HttpsError),
    /// The API address could not be bound or serving failed.
    #[error("cannot serve the API on {addr}: {source}")]
    Api {
        /// The address.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

async fn control_node_id(config: &CoordinatorConfig) -> Result<String, ServeError> {
    let deadline = tokio::time::Instant::now() + RECEPTOR_WAIT;
    loop {
        match ControlClient::connect_unix(&config.receptor_socket).await {
            Ok(c) => return Ok(c.node_id().to_string()),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(ServeError::Receptor {
                    socket: config.receptor_socket.display().to_string(),
                    secs: RECEPTOR_WAIT.as_secs(),
                    last: e.to_string(),
                });
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Runs the coordinator until `shutdown` is cancelled. With `[control_node]` configured, the
/// coordinator first starts the control node's receptor and stops it last.
pub async fn run(
    mut config: CoordinatorConfig,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let pki = std::sync::Arc::new(crate::pki::PkiContext::load(&config)?);
    let control_node = match &config.control_node {
        Some(settings) => {
            let mesh_tls = settings.mesh_tls.then(|| control_node_tls(&config, &pki));
            Some(
                ControlNode::start(
                    settings,
                    &config.receptor_socket,
                    &config.data_dir,
                    mesh_tls,
                )
                .await?,
            )
        }
        None => None,
    };
    // A managed control node with mesh TLS has the renderer's tls-client: remote nodes whose
    // control service is TLS are reached with it.
    if config.control_node.as_ref().is_some_and(|c| c.mesh_tls) && config.tls_client.is_none() {
        config.tls_client = Some(meshrun_shared::receptor_conf::TLS_CLIENT_NAME.to_string());
    }
    let served = serve(config, pki, shutdown).await;
    if let Some(node) = control_node {
        node.stop().await;
    }
    served
}

/// The names the control node's certificate carries: where nodes dial it (the join peer and its
/// bind address) plus the API's names and addresses.
fn control_node_tls(
    config: &CoordinatorConfig,
    pki: &std::sync::Arc<crate::pki::PkiContext>,
) -> crate::control_node::MeshTls {
    use std::net::IpAddr;
    let mut dns = crate::pki::context::api_names(config);
    let mut ips = crate::pki::context::api_ips(config);
    let hosts = pki
        .join_peer
        .as_deref()
        .and_then(|p| crate::api::split_host_port(p).map(|(h, _)| h.to_string()))
        .into_iter()
        .chain(
            config
                .control_node
                .as_ref()
                .and_then(|c| c.listen_bind.clone()),
        );
    for host in hosts {
        match host.parse::<IpAddr>() {
            Ok(ip) if ip.is_unspecified() => {}
            Ok(ip) => {
                if !ips.contains(&ip) {
                    ips.push(ip);
                }
            }
            Err(_) => {
                if crate::pki::issue::check_dns_name(&host).is_ok() && !dns.contains(&host) {
                    dns.push(host);
                }
            }
        }
    }
    crate::control_node::MeshTls {
        pki: pki.clone(),
        dns_names: dns,
        ip_addresses: ips,
    }
}

async fn serve(
    config: CoordinatorConfig,
    pki: std::sync::Arc<crate::pki::PkiContext>,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    for dir in [&config.data_dir, &config.data_dir.join("jobs")] {
        std::fs::create_dir_all(dir).map_err(|source| ServeError::Dir {
            path: dir.display().to_string(),
            source,
        })?;
    }
    if let Some(parent) = config.database.parent() {
        std::fs::create_dir_all(parent).map_err(|source| ServeError::Dir {
            path: parent.display().to_string(),
            source,
        })?;
    }
    let store = Store::open(&config.database).await?;
    let projects_dir = config.data_dir.join("projects");
    let projects = ProjectStore::new(
        projects_dir.clone(),
        crate::project_archive::UnpackLimits::default(),
    )
    .map_err(|source| ServeError::Dir {
        path: projects_dir.display().to_string(),
        source,
    })?;
    let node_id = control_node_id(&config).await?;
    tracing::info!(node_id = %node_id, socket = %config.receptor_socket.display(), "connected to the control node's receptor");
    let bus = EventsBus::default();
    let scheduler_wake = std::sync::Arc::new(tokio::sync::Notify::new());
    let runner = JobRunner::new(
        &config,
        store.clone(),
        projects.clone(),
        bus.clone(),
        shutdown.clone(),
        scheduler_wake.clone(),
    );
    runner.resume_all().await?;
    crate::scheduler::Scheduler::new(store.clone(), runner.clone(), scheduler_wake.clone())
        .spawn(shutdown.clone());
    let node_loss_task = crate::node_loss::start(
        &config,
        crate::node_loss::NodeLossDeps {
            store: store.clone(),
            bus: bus.clone(),
            scheduler_wake: scheduler_wake.clone(),
            shutdown: shutdown.clone(),
        },
    );
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::default());
    let health_wakeup = std::sync::Arc::new(tokio::sync::Notify::new());
    let (checker, health_task) = crate::health::start(
        &config,
        crate::health::HealthDeps {
            store: store.clone(),
            metrics: metrics.clone(),
            control_node: node_id.clone(),
            wakeup: health_wakeup.clone(),
            shutdown: shutdown.clone(),
        },
    );
    let discovery_task = crate::discovery::start(
        &config,
        crate::discovery::DiscoveryDeps {
            store: store.clone(),
            metrics: metrics.clone(),
            checker,
            shutdown: shutdown.clone(),
        },
    );
    let reaper_task = crate::reaper::start(
        &config,
        crate::reaper::ReaperDeps {
            store: store.clone(),
            metrics: metrics.clone(),
            shutdown: shutdown.clone(),
        },
    );
    let deprovision_task = crate::deprovision::start(
        &config,
        crate::deprovision::DeprovisionDeps {
            store: store.clone(),
            runner: runner.clone(),
            shutdown: shutdown.clone(),
        },
    );
    let state = AppState {
        store: store.clone(),
        projects,
        runner,
        bus,
        node_id,
        metrics,
        health_wakeup,
        scheduler_wake,
        ad_hoc_modules: std::sync::Arc::new(crate::ad_hoc_modules::AllowedModules::new(
            &config.ad_hoc_commands,
        )),
        allow_file_scm_urls: config.projects.allow_file_urls,
        api_auth: config.api.auth,
        pki: pki.clone(),
    };
    if !config.api.auth {
        tracing::warn!(
            "API authentication is OFF ([api] auth = false): anyone who can reach {} can run jobs",
            config.api_listen
        );
    }
    let listener = tokio::net::TcpListener::bind(config.api_listen)
        .await
        .map_err(|source| ServeError::Api {
            addr: config.api_listen.to_string(),
            source,
        })?;
    let app = api::router(state, config.max_upload_bytes)
        .into_make_service_with_connect_info::<crate::https::TlsPeer>();
    let stop = shutdown.clone();
    let served = if config.api.tls {
        let (cert, key) = pki.api_cert(&config)?;
        let tls = crate::https::server_config(&cert, &key, pki.ca.cert_der())?;
        let listener =
            crate::https::TlsListener::new(listener, tls, shutdown.clone()).map_err(|source| {
                ServeError::Api {
                    addr: config.api_listen.to_string(),
                    source,
                }
            })?;
        tracing::info!(addr = %config.api_listen, url = %pki.public_url, "API listening (HTTPS)");
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
    } else {
        tracing::warn!(addr = %config.api_listen, "API serves plain HTTP ([api] tls = false): tokens cross the network in clear and nodes cannot join");
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
    };
    served.map_err(|source| ServeError::Api {
        addr: config.api_listen.to_string(),
        source,
    })?;
    // The API stops only on shutdown; let the loops finish their last writes first.
    let _ = discovery_task.await;
    let _ = health_task.await;
    let _ = node_loss_task.await;
    let _ = reaper_task.await;
    let _ = deprovision_task.await;
    store.close().await;
    Ok(())
}
