//! Self-registration: `GET /api/v2/join/ca/` (the CA certificate, open), `POST /api/v2/join/`
//! (open: the join token is the credential) and `POST /api/v2/join/renew/` (the node's current
//! certificate, over mutual TLS, is the credential). Every refusal says exactly why and stores
//! nothing; tokens and their secrets never reach the log.

use std::net::IpAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use meshrun_shared::join::{
    JoinRequest, JoinResponse, JoinToken, JoinTokenError, RenewRequest, RenewResponse, limits,
};
use meshrun_shared::node_id::NodeId;

use super::{ApiError, AppState};
use crate::https::TlsPeer;
use crate::pki::{IssuedCert, NodeCertRequest, PkiError, inspect};
use crate::store::{JoinOutcome, JoinRecord, NewNodeCert, RenewOutcome, token_hash};

/// `GET /api/v2/join/ca/`: the mesh CA certificate (PEM).
pub async fn ca(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        state.pki.ca.cert_pem().to_string(),
    )
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the {what} is not valid: {e}")))
}

/// The host and port of a `host:port` (`[v6]:port`) address.
pub fn split_host_port(addr: &str) -> Option<(&str, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let host = match host.strip_prefix('[') {
        Some(h) => h.strip_suffix(']')?,
        None if host.contains(':') => return None,
        None => host,
    };
    (!host.is_empty()).then_some((host, port))
}

fn names_of(req: &JoinRequest) -> Result<(Vec<String>, Vec<IpAddr>), ApiError> {
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    for (what, addr) in [("advertise", &req.advertise), ("peer", &req.peer)] {
        if let Some(a) = addr
            && split_host_port(a).is_none()
        {
            return Err(ApiError::bad_request(format!(
                "bad names: {what} {:?} is not host:port",
                a.chars().take(80).collect::<String>()
            )));
        }
    }
    if let Some((host, _)) = req.advertise.as_deref().and_then(split_host_port) {
        match host.parse::<IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) => dns.push(host.to_string()),
        }
    }
    for d in &req.dns_names {
        if !dns.contains(d) {
            dns.push(d.clone());
        }
    }
    for ip in &req.ip_addresses {
        if !ips.contains(ip) {
            ips.push(*ip);
        }
    }
    for d in &dns {
        crate::pki::issue::check_dns_name(d)
            .map_err(|e| ApiError::bad_request(format!("bad names: {e}")))?;
    }
    if dns.len() > limits::MAX_NAMES || ips.len() > limits::MAX_NAMES {
        return Err(ApiError::bad_request(format!(
            "bad names: at most {} DNS names and {} IP addresses",
            limits::MAX_NAMES,
            limits::MAX_NAMES
        )));
    }
    Ok((dns, ips))
}

fn sign(state: &AppState, csr: &str, req: &NodeCertRequest) -> Result<IssuedCert, ApiError> {
    state.pki.ca.sign_csr(csr, req).map_err(|e| match e {
        PkiError::BadCsr(_) => ApiError::bad_request(format!("bad CSR: {e}")),
        PkiError::BadName(_) => ApiError::bad_request(format!("bad names: {e}")),
        other => ApiError::internal(other),
    })
}

fn new_cert(issued: &IssuedCert, req: &NodeCertRequest) -> NewNodeCert {
    NewNodeCert {
        key_sha256: issued.key_sha256.clone(),
        serial: issued.serial.clone(),
        not_after: issued.not_after,
        dns_names: req.dns_names.clone(),
        ip_addresses: req.ip_addresses.clone(),
    }
}

fn work_verification_pem(state: &AppState) -> Result<String, ApiError> {
    let unavailable =
        |detail: String| ApiError::with_status(StatusCode::SERVICE_UNAVAILABLE, detail);
    let Some(path) = &state.pki.work_verification_key else {
        return Err(unavailable(
            "this coordinator cannot take joins: it runs no [control_node] and [pki] \
             work_verification_key is not set, so it has no work-verification key to hand out"
                .into(),
        ));
    };
    std::fs::read_to_string(path).map_err(|e| {
        tracing::error!(path = %path.display(), error = %e, "cannot read the work-verification key for a join");
        unavailable(format!(
            "this coordinator cannot take joins now: its work-verification key {} is unreadable",
            path.display()
        ))
    })
}

/// `POST /api/v2/join/`: checks the token and the request, signs the node's CSR and registers
/// the node, or refuses saying why.
pub async fn join(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<JoinResponse>), ApiError> {
    let req: JoinRequest = parse_body(&body, "join request")?;
    let token = JoinToken::decode(&req.token).map_err(|e| match e {
        JoinTokenError::NotAJoinToken => ApiError::bad_request(format!("not a join token: {e}")),
        other => ApiError::bad_request(other.to_string()),
    })?;
    if token.ca_fingerprint != state.pki.ca.fingerprint() {
        return Err(ApiError::forbidden(
            "unknown join token: it names another mesh CA (made by another coordinator?)",
        ));
    }
    let Some(row) = state
        .store
        .join_token_by_hash(&token_hash(&token.encode()))
        .await?
    else {
        tracing::info!(node = %req.node_id.chars().take(63).collect::<String>(), "join refused: unknown token");
        return Err(ApiError::forbidden(
            "unknown join token: this coordinator never made it (forged or mistyped)",
        ));
    };
    let refuse = |detail: String| {
        tracing::info!(token = row.id, node = %req.node_id.chars().take(63).collect::<String>(), reason = %detail, "join refused");
        ApiError::forbidden(detail)
    };
    if row.revoked {
        return Err(refuse(format!("join token {} was revoked", row.id)));
    }
    if row.expired_at(chrono::Utc::now()) {
        return Err(refuse(format!(
            "join token {} expired at {}",
            row.id, row.expires_at
        )));
    }
    if let Some(asked) = req.node_type
        && asked != row.node_type
    {
        return Err(refuse(format!(
            "wrong node type: join token {} is for {} nodes, but the node asked to join as {asked}",
            row.id, row.node_type
        )));
    }
    let node_id = NodeId::new(req.node_id.as_str()).map_err(|e| {
        ApiError::bad_request(format!(
            "bad node id {:?}: {e}",
            req.node_id.chars().take(80).collect::<String>()
        ))
    })?;
    let (dns_names, ip_addresses) = names_of(&req)?;
    let work_pem = work_verification_pem(&state)?;
    let cert_req = NodeCertRequest {
        node_id: Some(node_id.clone()),
        dns_names,
        ip_addresses,
        validity: state.pki.node_validity,
    };
    let issued = sign(&state, &req.csr_pem, &cert_req)?;
    let outcome = state
        .store
        .record_join(&JoinRecord {
            token_id: row.id,
            hostname: node_id.to_string(),
            node_type: row.node_type,
            listener_address: req.advertise.clone(),
            cert: new_cert(&issued, &cert_req),
        })
        .await?;
    match outcome {
        JoinOutcome::Joined { instance_id } => {
            tracing::info!(node = %node_id, instance = instance_id, node_type = %row.node_type, token = row.id, not_after = %issued.not_after, "node joined");
        }
        JoinOutcome::Rejoined { instance_id } => {
            tracing::info!(node = %node_id, instance = instance_id, "node joined again with its current key: certificate refreshed");
        }
        JoinOutcome::Revoked => return Err(refuse(format!("join token {} was revoked", row.id))),
        JoinOutcome::Expired => return Err(refuse(format!("join token {} expired", row.id))),
        JoinOutcome::UnknownToken => return Err(refuse("unknown join token".into())),
        JoinOutcome::BeingRemoved => {
            return Err(ApiError::conflict(format!(
                "node {node_id} is being removed (meshrun instances remove); wait until it is \
                 gone, then join it again with a fresh token"
            )));
        }
        JoinOutcome::UsedUp => {
            return Err(refuse(format!(
                "join token {} is used up: it allowed {} join(s) and all were made (replayed?)",
                row.id, row.uses
            )));
        }
        JoinOutcome::Taken {
            registered_by,
            has_cert,
        } => {
            let why = if has_cert {
                "whose certificate holds another key"
            } else {
                "that has no certificate from a join"
            };
            tracing::info!(node = %node_id, token = row.id, "join refused: id taken");
            return Err(ApiError::conflict(format!(
                "node id {node_id} is taken by another key: an instance of that name \
                 (registered by {registered_by}) exists {why}; remove it first or choose another id"
            )));
        }
    }
    state.scheduler_wake.notify_one();
    let peers = match &req.peer {
        Some(p) => vec![p.clone()],
        None => state.pki.join_peer.iter().cloned().collect(),
    };
    Ok((
        StatusCode::CREATED,
        Json(JoinResponse {
            node_id: node_id.to_string(),
            node_type: row.node_type,
            ca_pem: state.pki.ca.cert_pem().to_string(),
            cert_pem: issued.cert_pem,
            not_after: issued.not_after.to_rfc3339(),
            work_verification_pem: work_pem,
            peers,
        }),
    ))
}

/// `POST /api/v2/join/renew/`: a new certificate, for the node named by the client certificate,
/// with the names of its current one, for the key of the CSR.
pub async fn renew(
    State(state): State<AppState>,
    request: Request,
) -> Result<Json<RenewResponse>, ApiError> {
    let peer_cert = request
        .extensions()
        .get::<ConnectInfo<TlsPeer>>()
        .and_then(|ConnectInfo(p)| p.cert.clone());
    let Some(der) = peer_cert else {
        return Err(ApiError::with_status(
            StatusCode::UNAUTHORIZED,
            "renewal needs the node's current certificate as a TLS client certificate",
        ));
    };
    if !inspect::verifies_against(&der, state.pki.ca.cert_der()) {
        return Err(ApiError::with_status(
            StatusCode::UNAUTHORIZED,
            "the client certificate was not issued by this mesh CA",
        ));
    }
    let names = inspect::receptor_names(&der).unwrap_or_default();
    let [name] = names.as_slice() else {
        return Err(ApiError::forbidden(
            "the client certificate is not bound to exactly one node id",
        ));
    };
    let node_id = NodeId::new(name.as_str())
        .map_err(|e| ApiError::forbidden(format!("the client certificate's node id: {e}")))?;
    let body = axum::body::to_bytes(request.into_body(), limits::MAX_BODY)
        .await
        .map_err(|e| ApiError::bad_request(format!("cannot read the renewal request: {e}")))?;
    let req: RenewRequest = parse_body(&body, "renewal request")?;
    let Some(instance) = state.store.instance_by_hostname(node_id.as_str()).await? else {
        tracing::warn!(node = %node_id, "renewal refused: the node is no longer registered");
        return Err(ApiError::forbidden(format!(
            "node {node_id} is no longer registered (removed): its certificate is not renewed"
        )));
    };
    if instance.node_state == crate::store::NodeState::Deprovisioning {
        tracing::warn!(node = %node_id, "renewal refused: the node is being removed");
        return Err(ApiError::forbidden(format!(
            "node {node_id} is being removed (deprovisioning): its certificate is not renewed"
        )));
    }
    let (dns_names, ip_addresses) = match state.store.current_node_cert(node_id.as_str()).await? {
        Some(c) => (c.dns_names, c.ip_addresses),
        None => inspect::san_names(&der).unwrap_or_default(),
    };
    let cert_req = NodeCertRequest {
        node_id: Some(node_id.clone()),
        dns_names,
        ip_addresses,
        validity: state.pki.node_validity,
    };
    let issued = sign(&state, &req.csr_pem, &cert_req)?;
    match state
        .store
        .record_renewal(node_id.as_str(), &new_cert(&issued, &cert_req))
        .await?
    {
        RenewOutcome::Renewed => {}
        RenewOutcome::Gone => {
            return Err(ApiError::forbidden(format!(
                "node {node_id} is no longer registered (removed): its certificate is not renewed"
            )));
        }
        RenewOutcome::Deprovisioning => {
            return Err(ApiError::forbidden(format!(
                "node {node_id} is being removed (deprovisioning): its certificate is not renewed"
            )));
        }
    }
    tracing::info!(node = %node_id, not_after = %issued.not_after, "node certificate renewed");
    Ok(Json(RenewResponse {
        ca_pem: state.pki.ca.cert_pem().to_string(),
        cert_pem: issued.cert_pem,
        not_after: issued.not_after.to_rfc3339(),
    }))
}
