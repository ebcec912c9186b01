//! Pulling a cohort over DICOMweb (PS3.18): QIDO-RS finds the studies of each row
//! (`GET {base}/studies?AccessionNumber=…`), WADO-RS retrieves each study as it is stored
//! (`GET {base}/studies/{uid}`, `multipart/related; type="application/dicom"`,
//! `transfer-syntax=*`), and every instance of the response goes into the spool as it is read,
//! so memory holds one instance at a time, not a study.

use std::io::Read;
use std::time::Duration;

use crate::pull::CohortKey;
use crate::scu::SendError;
use crate::spool::Spool;
use crate::stow::{bearer, check_http_url};

/// A DICOMweb service root, such as `https://pacs.example.org/dicom-web`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DicomWebSource {
    pub base: String,
    /// Name of the environment variable with the bearer token.
    pub token_env: Option<String>,
}

/// Bytes read from the network at a time.
const CHUNK: usize = 1 << 20;

impl DicomWebSource {
    /// Checks the root URL (https, or http to this machine only).
    pub fn new(base: &str, token_env: Option<String>) -> Result<DicomWebSource, String> {
        check_http_url(base, "a DICOMweb service root")?;
        Ok(DicomWebSource {
            base: base.trim_end_matches('/').to_string(),
            token_env,
        })
    }

    fn unavailable(&self, message: String) -> SendError {
        SendError::Unavailable {
            destination: self.base.clone(),
            message,
        }
    }

    fn get(&self, path: &str, accept: &str) -> Result<ureq::Request, SendError> {
        let mut request = ureq::get(&format!("{}{path}", self.base))
            .timeout(Duration::from_secs(600))
            .set("Accept", accept);
        if let Some(auth) = bearer(self.token_env.as_deref()).map_err(|m| self.unavailable(m))? {
            request = request.set("Authorization", &auth);
        }
        Ok(request)
    }

    fn call(&self, request: ureq::Request) -> Result<ureq::Response, SendError> {
        request.call().map_err(|e| match e {
            ureq::Error::Status(code, _) => self.unavailable(format!("HTTP status {code}")),
            e => self.unavailable(e.to_string()),
        })
    }

    /// The Study Instance UIDs the service has for `key` (QIDO-RS).
    pub fn find_studies(&self, key: &CohortKey) -> Result<Vec<String>, SendError> {
        let (parameter, value) = match key {
            CohortKey::AccessionNumber(v) => ("AccessionNumber", v),
            CohortKey::PatientId(v) => ("PatientID", v),
            CohortKey::StudyInstanceUid(v) => ("StudyInstanceUID", v),
        };
        let request = self
            .get("/studies", "application/dicom+json")?
            .query(parameter, value)
            .query("includefield", "0020000D");
        let response = self.call(request)?;
        // No match: 204 and an empty body.
        if response.status() == 204 {
            return Ok(Vec::new());
        }
        let text = response
            .into_string()
            .map_err(|e| self.unavailable(format!("unreadable QIDO-RS answer: {e}")))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| self.unavailable(format!("QIDO-RS answer is not DICOM JSON: {e}")))?;
        let mut studies: Vec<String> = Vec::new();
        for study in json.as_array().into_iter().flatten() {
            if let Some(uid) = study["0020000D"]["Value"][0].as_str() {
                if !studies.iter().any(|s| s == uid) {
                    studies.push(uid.to_string());
                }
            }
        }
        Ok(studies)
    }

    /// Retrieves one study (WADO-RS) into `spool`; returns how many instances were spooled.
    pub fn retrieve_study(&self, study_uid: &str, spool: &Spool) -> Result<u32, SendError> {
        let accept = "multipart/related; type=\"application/dicom\"; transfer-syntax=*";
        let response = self.call(self.get(&format!("/studies/{study_uid}"), accept)?)?;
        let content_type = response.header("Content-Type").unwrap_or("").to_string();
        let boundary = boundary(&content_type).ok_or_else(|| {
            self.unavailable(format!(
                "WADO-RS answer is not multipart/related with a boundary (Content-Type {content_type:?})"
            ))
        })?;
        let mut spooled = 0;
        read_parts(response.into_reader(), &boundary, |headers, body| {
            let kind = header(headers, "content-type").unwrap_or_default();
            if !kind.to_ascii_lowercase().starts_with("application/dicom") {
                return Err(format!("a part is {kind:?}, not application/dicom"));
            }
            spool.put(body).map_err(|e| e.to_string())?;
            spooled += 1;
            Ok(())
        })
        .map_err(|m| self.unavailable(m))?;
        Ok(spooled)
    }
}

/// The `boundary` parameter of a multipart Content-Type, unquoted.
fn boundary(content_type: &str) -> Option<String> {
    if !content_type
        .to_ascii_lowercase()
        .starts_with("multipart/related")
    {
        return None;
    }
    content_type.split(';').find_map(|p| {
        let (name, value) = p.trim().split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"').to_string())
    })
}

/// A header's value from a part's header block.
fn header(headers: &str, name: &str) -> Option<String> {
    headers.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// Reads a multipart body part by part (RFC 2046 §5.1), calling `each` with a part's headers
/// and body as soon as the part is complete.
fn read_parts(
    mut reader: impl Read,
    boundary: &str,
    mut each: impl FnMut(&str, &[u8]) -> Result<(), String>,
) -> Result<(), String> {
    let delimiter = format!("\r\n--{boundary}").into_bytes();
    let finder = memchr::memmem::Finder::new(&delimiter);
    // A leading CRLF lets the first delimiter be found like the others.
    let mut buf = b"\r\n".to_vec();
    let mut at_end = false;
    let mut fill = |buf: &mut Vec<u8>, at_end: &mut bool| -> Result<(), String> {
        let old = buf.len();
        buf.resize(old + CHUNK, 0);
        let n = reader
            .read(&mut buf[old..])
            .map_err(|e| format!("the answer broke off: {e}"))?;
        buf.truncate(old + n);
        *at_end = n == 0;
        Ok(())
    };
    // Preamble: up to the first delimiter.
    let mut start = loop {
        if let Some(i) = finder.find(&buf) {
            break i + delimiter.len();
        }
        if at_end {
            return Err("no part in the multipart answer".into());
        }
        fill(&mut buf, &mut at_end)?;
    };
    loop {
        // After a delimiter: "--" closes the body; else the rest of the line, then a part.
        while buf.len() < start + 2 && !at_end {
            fill(&mut buf, &mut at_end)?;
        }
        if buf.get(start..start + 2) == Some(b"--") {
            return Ok(());
        }
        let mut searched = start;
        let end = loop {
            if let Some(i) = finder.find(&buf[searched..]) {
                break searched + i;
            }
            if at_end {
                return Err("the multipart answer ends inside a part".into());
            }
            searched = buf.len().saturating_sub(delimiter.len()).max(start);
            fill(&mut buf, &mut at_end)?;
        };
        let part = &buf[start..end];
        // The rest of the delimiter line (transport padding), then the part.
        let line_end =
            memchr::memmem::find(part, b"\r\n").ok_or("a delimiter line without its end")?;
        let part = &part[line_end + 2..];
        let split =
            memchr::memmem::find(part, b"\r\n\r\n").ok_or("a part without a header block")?;
        let headers = String::from_utf8_lossy(&part[..split]).into_owned();
        each(&headers, &part[split + 4..])?;
        buf.drain(..end);
        start = delimiter.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(body: &[u8], boundary: &str, chunk_reader: bool) -> Result<Vec<Vec<u8>>, String> {
        let mut out = Vec::new();
        let collect = |_: &str, b: &[u8]| {
            out.push(b.to_vec());
            Ok(())
        };
        if chunk_reader {
            // One byte per read: every split point of the delimiter is crossed.
            struct OneByte<'a>(&'a [u8]);
            impl Read for OneByte<'_> {
                fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                    let Some((first, rest)) = self.0.split_first() else {
                        return Ok(0);
                    };
                    buf[0] = *first;
                    self.0 = rest;
                    Ok(1)
                }
            }
            read_parts(OneByte(body), boundary, collect)?;
        } else {
            read_parts(body, boundary, collect)?;
        }
        Ok(out)
    }

    #[test]
    fn parts_are_split_however_the_answer_arrives() {
        let a = b"DICM\r\n--not-the-boundary\r\n\x00\x01".to_vec();
        let b = vec![0xABu8; 3000];
        let mut body = b"preamble\r\n--B1\r\nContent-Type: application/dicom\r\n\r\n".to_vec();
        body.extend_from_slice(&a);
        body.extend_from_slice(b"\r\n--B1\r\nContent-Type: application/dicom\r\n\r\n");
        body.extend_from_slice(&b);
        body.extend_from_slice(b"\r\n--B1--\r\n");
        for chunked in [false, true] {
            assert_eq!(
                parts(&body, "B1", chunked).unwrap(),
                vec![a.clone(), b.clone()]
            );
        }
        let cut = &body[..body.len() - 20];
        assert!(parts(cut, "B1", false)
            .unwrap_err()
            .contains("ends inside a part"));
    }

    #[test]
    fn boundary_is_read_from_the_content_type() {
        let ct = "multipart/related; type=\"application/dicom\"; boundary=\"abc 1\"";
        assert_eq!(boundary(ct).as_deref(), Some("abc 1"));
        assert_eq!(boundary("application/dicom+json"), None);
    }
}
