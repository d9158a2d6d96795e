//! A server's certificate: `Get-CsCertificate`, `Request-CsCertificate` (a new key made
//! here, signed by the deployment's CA for the names the current certificate holds) and
//! `Set-CsCertificate` (the requested certificate put in place; every listener presents it
//! from the next handshake on, without a restart). The dispatcher has already brought the
//! call to the server `-ComputerName` names.

use std::time::Duration;

use cmdlet::{Field, Output, Record};
use pki::{CertInfo, Installed, SignRequest, SignResponse};

use crate::Refused;
use crate::call::{Call, Reply};

/// How long the CA may take to answer.
const CA_TIMEOUT: Duration = Duration::from_secs(10);

/// `Get-CsCertificate`: the certificate in use and those requested.
pub async fn list(call: &Call<'_>) -> Reply {
    let node = call.node();
    let now = node.clock.now_ms() / 1000;
    let mut rows = vec![record(&node.certs.info(), "Assigned", now)];
    rows.extend(
        Installed::requested(&node.data_dir)
            .iter()
            .map(|info| record(info, "Requested", now)),
    );
    Ok(api::InvokeResponse::records(rows))
}

/// `Request-CsCertificate -New -Type Default`: a renewal of the certificate in use.
pub async fn request(call: &Call<'_>) -> Reply {
    let node = call.node();
    let Some(ca) = &node.certificate_authority else {
        return Err(Refused::Unavailable(format!(
            "{} knows no certificate authority to ask (tandem server --certificate-authority); `tandem lab up` starts servers with the lab's",
            node.fqdn
        ))
        .into());
    };
    let validity_days = match call.inv.get("ValidityDays") {
        Some(cmdlet::BoundValue::Int(days)) => u32::try_from(*days)
            .ok()
            .filter(|d| (1..=pki::MAX_VALIDITY_DAYS).contains(d))
            .ok_or_else(|| {
                Refused::BadRequest(format!(
                    "-ValidityDays must be 1 to {}",
                    pki::MAX_VALIDITY_DAYS
                ))
            })?,
        _ => pki::SERVER_VALIDITY_DAYS,
    };
    let current = node.certs.info();
    let key = pki::NewKey::generate().map_err(|e| Refused::Unavailable(e.to_string()))?;
    let addresses = current
        .addresses
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect();
    let wanted = SignRequest {
        names: current.names.clone(),
        addresses,
        public_key: key.public_key,
        validity_days,
    };
    let signed: SignResponse = node
        .api
        .post(ca, pki::SIGN_PATH, &wanted, CA_TIMEOUT)
        .await
        .map_err(|e| {
            Refused::Unavailable(format!(
                "the certificate authority at {ca} did not sign: {}",
                e.reason()
            ))
        })?;
    let issued = pki::Issued {
        cert_pem: signed.certificate,
        key_pem: key.key_pem,
        info: signed.info,
    };
    Installed::stage(&node.data_dir, &issued).map_err(|e| Refused::Unavailable(e.to_string()))?;
    tracing::info!(thumbprint = %issued.info.thumbprint, "certificate requested");
    let now = node.clock.now_ms() / 1000;
    Ok(api::InvokeResponse::records(vec![record(
        &issued.info,
        "Requested",
        now,
    )]))
}

/// `Set-CsCertificate -Type Default -Thumbprint T`: the requested certificate in use.
pub async fn assign(call: &Call<'_>) -> Reply {
    let node = call.node();
    let thumbprint = call.inv.text("Thumbprint").unwrap_or_default();
    if thumbprint.eq_ignore_ascii_case(&node.certs.info().thumbprint) {
        return Ok(api::InvokeResponse::of(Output::None));
    }
    let assigned = Installed::assign(&node.data_dir, &thumbprint)
        .map_err(|e| Refused::Unavailable(e.to_string()))?;
    if assigned.is_none() {
        return Err(Refused::NotFound(format!(
            "{} has requested no certificate with thumbprint {thumbprint}; Get-CsCertificate -ComputerName {} lists them, Request-CsCertificate -New -Type Default requests one",
            node.fqdn, node.fqdn
        ))
        .into());
    }
    let info = node
        .certs
        .reload()
        .map_err(|e| Refused::Unavailable(e.to_string()))?;
    tracing::info!(thumbprint = %info.thumbprint, not_after = info.not_after, "certificate assigned");
    Ok(api::InvokeResponse::of(Output::None))
}

fn record(info: &CertInfo, r#use: &str, now: i64) -> Record {
    let names: Vec<&str> = info
        .names
        .iter()
        .chain(info.addresses.iter())
        .map(String::as_str)
        .collect();
    Record::new()
        .with("Type", "Default")
        .with("Use", r#use)
        .with("Thumbprint", info.thumbprint.clone())
        .with("Subject", format!("CN={}", info.subject))
        .with("AlternativeNames", names.join(", "))
        .with("Issuer", format!("CN={}", info.issuer))
        .with("SerialNumber", info.serial.clone())
        .with("NotBefore", clock::format_timestamp(info.not_before * 1000))
        .with("NotAfter", clock::format_timestamp(info.not_after * 1000))
        .with(
            "DaysLeft",
            Field::Int((info.not_after - now).div_euclid(86_400)),
        )
}
