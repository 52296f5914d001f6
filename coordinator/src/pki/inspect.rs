//! Reading certificates back: the receptor node names bound into them, their expiry, their
//! serial, and whether they belong to a key or were signed by the CA.

use chrono::{DateTime, Utc};
use meshrun_shared::join::RECEPTOR_NAME_OID;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The DER of the first certificate in `pem`.
pub fn first_cert_der(pem: &str) -> Option<Vec<u8>> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .ok()
        .map(|d| d.as_ref().to_vec())
}

fn parse(der: &[u8]) -> Option<X509Certificate<'_>> {
    X509Certificate::from_der(der).ok().map(|(_, c)| c)
}

/// The node ids in a certificate's receptor otherName SANs (`None` if it does not parse).
pub fn receptor_names(der: &[u8]) -> Option<Vec<String>> {
    let cert = parse(der)?;
    let oid = x509_parser::oid_registry::Oid::from(&RECEPTOR_NAME_OID[..]).ok()?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::OtherName(o, value) = name
                && *o == oid
                && let Ok((_, any)) = x509_parser::der_parser::der::parse_der(value)
            {
                // The value is [0] EXPLICIT UTF8String.
                let inner = any
                    .as_slice()
                    .ok()
                    .and_then(|s| x509_parser::der_parser::der::parse_der_utf8string(s).ok())
                    .and_then(|(_, s)| s.as_str().ok().map(str::to_string));
                if let Some(s) = inner {
                    names.push(s);
                }
            }
        }
    }
    Some(names)
}

/// When a certificate expires (`None` if it does not parse).
pub fn not_after(der: &[u8]) -> Option<DateTime<Utc>> {
    let cert = parse(der)?;
    DateTime::<Utc>::from_timestamp(cert.validity().not_after.timestamp(), 0)
}

/// A certificate's serial number in hex.
pub fn serial_hex(pem: &str) -> Option<String> {
    let der = first_cert_der(pem)?;
    parse(&der).map(|c| hex::encode(c.raw_serial()))
}

/// Whether the certificate certifies `key`'s public key.
pub fn public_key_matches(der: &[u8], key: &rcgen::KeyPair) -> bool {
    parse(der)
        .is_some_and(|c| c.public_key().subject_public_key.data.as_ref() == key.public_key_raw())
}

/// Lowercase hex SHA-256 of the certified public key (as [`super::IssuedCert::key_sha256`]).
pub fn key_sha256(der: &[u8]) -> Option<String> {
    use sha2::{Digest, Sha256};
    parse(der).map(|c| {
        hex::encode(Sha256::digest(
            c.public_key().subject_public_key.data.as_ref(),
        ))
    })
}

/// Whether `der` carries a valid signature by the CA certificate `ca_der`.
pub fn verifies_against(der: &[u8], ca_der: &[u8]) -> bool {
    match (parse(der), parse(ca_der)) {
        (Some(cert), Some(ca)) => cert.verify_signature(Some(ca.public_key())).is_ok(),
        _ => false,
    }
}

/// A certificate's DNS and IP SANs, in order (`None` if it does not parse).
pub fn san_names(der: &[u8]) -> Option<(Vec<String>, Vec<std::net::IpAddr>)> {
    let cert = parse(der)?;
    let (mut dns, mut ips) = (Vec::new(), Vec::new());
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => dns.push(d.to_string()),
                GeneralName::IPAddress(raw) => match raw.len() {
                    4 => ips.push(std::net::IpAddr::from(<[u8; 4]>::try_from(*raw).ok()?)),
                    16 => ips.push(std::net::IpAddr::from(<[u8; 16]>::try_from(*raw).ok()?)),
                    _ => return None,
                },
                _ => {}
            }
        }
    }
    Some((dns, ips))
}
