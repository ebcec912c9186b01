//! Sending over DICOMweb: STOW-RS (PS3.18 §10.5), a batch of instances in one
//! `multipart/related; type="application/dicom"` POST, over HTTPS (rustls, the system's trust
//! store and Mozilla's roots) with an optional bearer token read from the environment.

use std::time::Duration;

use crate::scu::SendError;

/// A STOW-RS endpoint: the `…/studies` URL and the environment variable holding its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StowDestination {
    pub url: String,
    /// Name of the environment variable with the bearer token (the token never sits in the
    /// configuration file).
    pub token_env: Option<String>,
}

impl StowDestination {
    /// Checks a URL: `https://…`, or `http://` to this machine only (a token or an instance
    /// never crosses a network in clear).
    pub fn new(url: &str, token_env: Option<String>) -> Result<StowDestination, String> {
        check_http_url(url, "a STOW-RS …/studies endpoint")?;
        Ok(StowDestination {
            url: url.to_string(),
            token_env,
        })
    }

    fn unavailable(&self, message: String) -> SendError {
        SendError::Unavailable {
            destination: self.url.clone(),
            message,
        }
    }

    /// Stores a batch of Part 10 instances; per instance (same order) whether the server
    /// stored it. `Err`: the server is unavailable and nothing is known to be stored.
    pub fn store(
        &self,
        instances: &[(&str, &[u8])],
    ) -> Result<Vec<Result<(), SendError>>, SendError> {
        // A random boundary: it cannot be chosen to occur in an instance.
        let boundary = format!("veil-{:032x}", rand::random::<u128>());
        let mut body = Vec::with_capacity(instances.iter().map(|(_, b)| b.len() + 100).sum());
        for (_, part10) in instances {
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").as_bytes(),
            );
            body.extend_from_slice(part10);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let mut request = ureq::post(&self.url)
            .timeout(Duration::from_secs(300))
            .set(
                "Content-Type",
                &format!("multipart/related; type=\"application/dicom\"; boundary={boundary}"),
            )
            .set("Accept", "application/dicom+json");
        if let Some(auth) = bearer(self.token_env.as_deref()).map_err(|m| self.unavailable(m))? {
            request = request.set("Authorization", &auth);
        }
        let (status, text) = match request.send_bytes(&body) {
            Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
            // 409: every instance failed; the body says which and why.
            Err(ureq::Error::Status(409, r)) => (409, r.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(code, _)) => {
                return Err(self.unavailable(format!("HTTP status {code}")))
            }
            Err(e) => return Err(self.unavailable(format!("{e}"))),
        };
        let failed = failed_instances(&text);
        Ok(instances
            .iter()
            .map(|(uid, _)| match failed.iter().find(|(u, _)| u == uid) {
                None if status == 409 => Err(SendError::Refused {
                    destination: self.url.clone(),
                    status: 0xC000,
                }),
                None => Ok(()),
                Some((_, reason)) => Err(SendError::Refused {
                    destination: self.url.clone(),
                    status: *reason,
                }),
            })
            .collect())
    }
}

/// Checks that `url` is `https://…`, or `http://` to this machine only: a token or an instance
/// never crosses a network in clear. `what` names the endpoint in errors.
pub(crate) fn check_http_url(url: &str, what: &str) -> Result<(), String> {
    let (secure, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        _ => return Err(format!("{url}: not an http(s) URL of {what}")),
    };
    let authority = rest.split('/').next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    if host.is_empty() {
        return Err(format!("{url}: no host"));
    }
    if !secure && !matches!(host, "127.0.0.1" | "localhost" | "::1") {
        return Err(format!(
            "{url}: plain http only to this machine (127.0.0.1, localhost); use https"
        ));
    }
    Ok(())
}

/// The bearer token named by `token_env`, as an Authorization header value.
pub(crate) fn bearer(token_env: Option<&str>) -> Result<Option<String>, String> {
    match token_env {
        None => Ok(None),
        Some(var) => std::env::var(var)
            .map(|t| Some(format!("Bearer {t}")))
            .map_err(|_| format!("the token variable {var} is not set")),
    }
}

/// The Failed SOP Sequence (0008,1198) of a STOW-RS response in DICOM JSON: each failed
/// instance's Referenced SOP Instance UID (0008,1155) and Failure Reason (0008,1197).
fn failed_instances(text: &str) -> Vec<(String, u16)> {
    let Ok(json) = serde_json::from_str::<serde_json::Value>(text) else {
        return Vec::new();
    };
    let items = json["00081198"]["Value"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    items
        .iter()
        .filter_map(|item| {
            let uid = item["00081155"]["Value"][0].as_str()?.to_string();
            let reason = item["00081197"]["Value"][0].as_u64().unwrap_or(0xC000) as u16;
            Some((uid, reason))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_leaves_the_machine() {
        assert!(StowDestination::new("https://pacs.example.org/dicom-web/studies", None).is_ok());
        assert!(StowDestination::new("http://127.0.0.1:8042/dicom-web/studies", None).is_ok());
        assert!(StowDestination::new("http://localhost/dicom-web/studies", None).is_ok());
        let e = StowDestination::new("http://pacs.example.org/dicom-web/studies", None);
        assert!(e.unwrap_err().contains("use https"));
        assert!(StowDestination::new("ftp://x/studies", None).is_err());
    }

    #[test]
    fn failed_instances_are_read_from_the_response() {
        let text = r#"{"00081198": {"vr": "SQ", "Value": [{"00081155": {"vr": "UI", "Value": ["1.2.3"]}, "00081197": {"vr": "US", "Value": [272]}}]}}"#;
        assert_eq!(failed_instances(text), vec![("1.2.3".to_string(), 272)]);
        assert!(failed_instances("{}").is_empty());
    }
}
