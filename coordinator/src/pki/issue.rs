//! Certificates for nodes and for the API. The coordinator decides every field: a CSR supplies
//! only its public key (its subject and requested extensions are ignored), so a node can never
//! ask for another node's id, a CA bit or a longer life.
//!
//! Receptor checks both extended key usages (server auth when it dials, client auth when it is
//! dialled), so every certificate carries both.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use meshrun_shared::join::{RECEPTOR_NAME_OID, limits};
use meshrun_shared::node_id::NodeId;
use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use super::{MeshCa, PkiError};

/// What a certificate is issued for.
#[derive(Debug, Clone)]
pub struct NodeCertRequest {
    /// The node id, bound into receptor's otherName SAN (and the subject's common name).
    /// `None` for the API's own certificate, which names only hosts.
    pub node_id: Option<NodeId>,
    /// DNS names it is reached at.
    pub dns_names: Vec<String>,
    /// IP addresses it is reached at.
    pub ip_addresses: Vec<IpAddr>,
    /// How long it is valid.
    pub validity: std::time::Duration,
}

/// A certificate the CA made.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// When it expires.
    pub not_after: DateTime<Utc>,
    /// Its serial number (hex).
    pub serial: String,
    /// Lowercase hex SHA-256 of the certified public key (identifies the node's key pair).
    pub key_sha256: String,
}

impl MeshCa {
    /// Signs a certificate for `req` holding the public key of `csr_pem` (whose self-signature
    /// is checked).
    pub fn sign_csr(&self, csr_pem: &str, req: &NodeCertRequest) -> Result<IssuedCert, PkiError> {
        if csr_pem.len() > limits::MAX_CSR_LEN {
            return Err(PkiError::BadCsr(format!(
                "{} bytes long; at most {} are accepted",
                csr_pem.len(),
                limits::MAX_CSR_LEN
            )));
        }
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| PkiError::BadCsr(csr_reason(e)))?;
        let key_sha256 = hex::encode(Sha256::digest(rcgen::PublicKeyData::der_bytes(
            &csr.public_key,
        )));
        let signed = CertificateSigningRequestParams {
            params: self.params_for(req)?,
            public_key: csr.public_key,
        }
        .signed_by(&self.issuer, &self.key)
        .map_err(|e| PkiError::crypto("sign the node certificate", e))?;
        Ok(self.issued(signed.pem(), &signed.params().not_after, key_sha256))
    }

    /// Makes a key pair and a certificate for `req` (for the control node, the API and
    /// hand-configured nodes). Returns the certificate and the key (PKCS#8 PEM).
    pub fn issue_with_new_key(
        &self,
        req: &NodeCertRequest,
    ) -> Result<(IssuedCert, String), PkiError> {
        let key = KeyPair::generate().map_err(|e| PkiError::crypto("generate a key", e))?;
        let key_sha256 = hex::encode(Sha256::digest(key.public_key_raw()));
        let cert = self
            .params_for(req)?
            .signed_by(&key, &self.issuer, &self.key)
            .map_err(|e| PkiError::crypto("sign the certificate", e))?;
        let issued = self.issued(cert.pem(), &cert.params().not_after, key_sha256);
        Ok((issued, key.serialize_pem()))
    }

    fn issued(
        &self,
        cert_pem: String,
        not_after: &OffsetDateTime,
        key_sha256: String,
    ) -> IssuedCert {
        let serial = super::inspect::serial_hex(&cert_pem).unwrap_or_default();
        IssuedCert {
            cert_pem,
            not_after: DateTime::<Utc>::from_timestamp(not_after.unix_timestamp(), 0)
                .unwrap_or_default(),
            serial,
            key_sha256,
        }
    }

    fn params_for(&self, req: &NodeCertRequest) -> Result<CertificateParams, PkiError> {
        if req.dns_names.len() > limits::MAX_NAMES || req.ip_addresses.len() > limits::MAX_NAMES {
            return Err(PkiError::BadName(format!(
                "at most {} DNS names and {} IP addresses may be asked for",
                limits::MAX_NAMES,
                limits::MAX_NAMES
            )));
        }
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "meshrun");
        let mut sans = Vec::new();
        if let Some(id) = &req.node_id {
            dn.push(DnType::CommonName, id.as_str());
            sans.push(SanType::OtherName((
                RECEPTOR_NAME_OID.to_vec(),
                id.as_str().into(),
            )));
        } else if let Some(first) = req.dns_names.first() {
            dn.push(DnType::CommonName, first.as_str());
        }
        for name in &req.dns_names {
            check_dns_name(name)?;
            let name = name
                .clone()
                .try_into()
                .map_err(|_| PkiError::BadName(format!("{name:?} is not a valid DNS name")))?;
            sans.push(SanType::DnsName(name));
        }
        sans.extend(req.ip_addresses.iter().copied().map(SanType::IpAddress));
        params.distinguished_name = dn;
        params.subject_alt_names = sans;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let mut serial = [0u8; 16];
        getrandom::getrandom(&mut serial).map_err(|e| PkiError::crypto("draw a serial", e))?;
        serial[0] &= 0x7f;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        let now = OffsetDateTime::now_utc();
        let secs = i64::try_from(req.validity.as_secs()).unwrap_or(i64::MAX / 2);
        // A little slack for clocks that run behind the coordinator's: at most 5 minutes and a
        // tenth of the life, so that "a third of its life left" still means what it says.
        params.not_before = now - Duration::seconds((secs / 10).min(300));
        params.not_after = now + Duration::seconds(secs.min(super::ca::CA_VALIDITY_DAYS * 86_400));
        Ok(params)
    }
}

/// A DNS name as certificates and receptor accept it: labels of `[A-Za-z0-9-]` (a leading `*.`
/// is refused), at most 253 characters.
pub fn check_dns_name(name: &str) -> Result<(), PkiError> {
    let ok = !name.is_empty()
        && name.len() <= limits::MAX_DNS_LEN
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        let shown: String = name.chars().take(80).collect();
        Err(PkiError::BadName(format!(
            "{shown:?} is not a DNS name (labels of letters, digits and '-', at most {} characters)",
            limits::MAX_DNS_LEN
        )))
    }
}

fn csr_reason(e: rcgen::Error) -> String {
    match e {
        rcgen::Error::CouldNotParseCertificationRequest => "not a PEM PKCS#10 request".into(),
        rcgen::Error::RingUnspecified => "its signature does not verify".into(),
        rcgen::Error::UnsupportedExtension => {
            "it asks for an extension meshrun does not sign".into()
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::inspect;

    fn ca() -> (tempfile::TempDir, MeshCa) {
        let dir = tempfile::tempdir().unwrap();
        let (ca, _) = MeshCa::load_or_create(&dir.path().join("pki")).unwrap();
        (dir, ca)
    }

    fn req(id: &str) -> NodeCertRequest {
        NodeCertRequest {
            node_id: Some(id.parse().unwrap()),
            dns_names: vec!["exec1.example.com".into()],
            ip_addresses: vec!["10.0.0.7".parse().unwrap()],
            validity: std::time::Duration::from_secs(7 * 86_400),
        }
    }

    fn csr(key: &KeyPair, claimed_id: &str) -> String {
        let mut params = CertificateParams::new(vec![claimed_id.to_string()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, claimed_id);
        params.serialize_request(key).unwrap().pem().unwrap()
    }

    #[test]
    fn a_csr_becomes_a_certificate_bound_to_the_node_id_the_coordinator_chose() {
        let (_d, ca) = ca();
        let key = KeyPair::generate().unwrap();
        // The CSR claims another name; only its key is used.
        let issued = ca
            .sign_csr(&csr(&key, "someone-else"), &req("exec1"))
            .unwrap();
        let der = inspect::first_cert_der(&issued.cert_pem).unwrap();
        assert_eq!(
            inspect::receptor_names(&der).unwrap(),
            vec!["exec1".to_string()]
        );
        assert!(inspect::public_key_matches(&der, &key));
        assert_eq!(
            issued.key_sha256,
            hex::encode(Sha256::digest(key.public_key_raw()))
        );
        let left = issued.not_after - Utc::now();
        assert!(left > chrono::Duration::days(6) && left <= chrono::Duration::days(7));
        assert!(inspect::verifies_against(&der, ca.cert_der()));
    }

    #[test]
    fn garbage_and_tampered_csrs_are_refused() {
        let (_d, ca) = ca();
        assert!(matches!(
            ca.sign_csr("hello", &req("a")),
            Err(PkiError::BadCsr(_))
        ));
        let key = KeyPair::generate().unwrap();
        let good = csr(&key, "a");
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(good.as_bytes())
            .map(|d: rustls_pki_types::CertificateSigningRequestDer<'static>| d.as_ref().to_vec())
            .unwrap();
        let mut bad = der.clone();
        let n = bad.len();
        bad[n - 10] ^= 0xff; // inside the signature
        let pem = format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &bad)
        );
        let err = ca.sign_csr(&pem, &req("a")).unwrap_err().to_string();
        assert!(
            err.contains("signature") || err.contains("PKCS#10"),
            "{err}"
        );
        let huge = "A".repeat(limits::MAX_CSR_LEN + 1);
        assert!(
            ca.sign_csr(&huge, &req("a"))
                .unwrap_err()
                .to_string()
                .contains("bytes long")
        );
    }

    #[test]
    fn bad_names_are_refused() {
        let (_d, ca) = ca();
        let mut r = req("a");
        r.dns_names = vec!["bad name".into()];
        assert!(ca.issue_with_new_key(&r).is_err());
        r.dns_names = vec!["*.example.com".into()];
        assert!(ca.issue_with_new_key(&r).is_err());
        r.dns_names = (0..17).map(|i| format!("h{i}.example")).collect();
        assert!(ca.issue_with_new_key(&r).is_err());
    }
}
