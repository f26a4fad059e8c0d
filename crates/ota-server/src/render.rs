//! Download URLs, built when answering rather than stored at publish time.
//!
//! A content.json is stored as the publisher sent it. When it has no
//! `remote`, the answer gets `remote = BASE/otafiles/<sha256>`, where BASE is
//! the configured public URL (or, only when the operator allows it, the
//! request's `Host`/`X-Forwarded-*`). Changing `--public-url` therefore
//! changes every answer, including versions published before.
//!
//! Answers stay precomputed for the hot path: with a fixed base the whole
//! body is rendered once per cache fill; with a per-request base it is kept
//! as two slices around the URL, joined with one copy per answer.
//!
//! Every answer is signed: [`SIGNATURE_HEADER`] carries the server's
//! Ed25519 signature over the exact body bytes, so a device that pins the
//! server's public key trusts the `sha256` it then downloads against. A
//! fixed body is signed once, when it is cached; a per-request body (its
//! URL differs by `Host`) is signed per request.

use axum::http::{HeaderMap, HeaderValue};
use bytes::{Bytes, BytesMut};
use ota_core::signing::SecretKey;
pub use ota_core::signing::SIGNATURE_HEADER;
use serde_json::{Map, Value};

/// How the base of download URLs is chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DownloadBase {
    /// A fixed base such as `https://ota.example.com` (no trailing slash).
    Fixed(String),
    /// From each request's `X-Forwarded-Proto`/`X-Forwarded-Host`/`Host`
    /// (the operator asked for it: only safe behind a proxy that sets them);
    /// `fallback` when they are absent or malformed.
    FromRequest {
        /// Used when the request names no usable host.
        fallback: String,
    },
}

/// Why a public URL was refused.
#[derive(Debug, thiserror::Error)]
#[error("invalid public URL {url:?}: {why}")]
pub struct PublicUrlError {
    url: String,
    why: String,
}

impl DownloadBase {
    /// Checks and normalises a configured public URL: `http`/`https`, a host,
    /// an optional path prefix, no query, fragment or credentials.
    pub fn fixed(url: &str) -> Result<Self, PublicUrlError> {
        let err = |why: &str| PublicUrlError {
            url: url.to_owned(),
            why: why.to_owned(),
        };
        let parsed = url::Url::parse(url).map_err(|e| err(&e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(err("use http:// or https://"));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(err("no host"));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(err("no query or fragment allowed"));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(err("no credentials allowed"));
        }
        Ok(DownloadBase::Fixed(
            parsed.as_str().trim_end_matches('/').to_owned(),
        ))
    }

    /// The base for one request.
    pub fn for_request(&self, headers: &HeaderMap) -> String {
        match self {
            DownloadBase::Fixed(base) => base.clone(),
            DownloadBase::FromRequest { fallback } => {
                request_base(headers).unwrap_or_else(|| fallback.clone())
            }
        }
    }
}

/// `proto://host` from `X-Forwarded-Proto`, `X-Forwarded-Host` or `Host`;
/// `None` when the host has characters a host cannot have (so nothing a
/// client sends can break out of the JSON string or the URL's authority).
fn request_base(headers: &HeaderMap) -> Option<String> {
    let first = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let host = first("x-forwarded-host").or_else(|| first("host"))?;
    let charset_ok = host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    // It must also be a host (and port) a URL parser reads back unchanged.
    let parsed = url::Url::parse(&format!("http://{host}/")).ok()?;
    let name_ok = match parsed.host() {
        Some(url::Host::Domain(d)) => d
            .split('.')
            .all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-')),
        Some(_) => true, // an IP address
        None => false,
    };
    if !name_ok {
        return None;
    }
    let round_trip = match (parsed.host_str(), parsed.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => return None,
    };
    if !charset_ok || !round_trip.eq_ignore_ascii_case(host.trim_end_matches(":80")) {
        return None;
    }
    let proto = match first("x-forwarded-proto") {
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        _ => "http",
    };
    Some(format!("{proto}://{host}"))
}

/// A ready answer: the content.json bytes, or two slices around the URL.
#[derive(Clone, Debug)]
pub struct Answer {
    head: Bytes,
    /// With a per-request base: (path after the base, bytes after the URL).
    tail: Option<(String, Bytes)>,
    /// The signature of `head` when it is the whole body.
    signature: Option<HeaderValue>,
}

/// One answer's body and the value of its [`SIGNATURE_HEADER`].
pub struct SignedBody {
    /// The exact bytes sent.
    pub body: Bytes,
    /// Base64 Ed25519 signature over `body`.
    pub signature: HeaderValue,
}

fn signature_of(key: &SecretKey, body: &[u8]) -> HeaderValue {
    // Base64 is always a valid header value.
    HeaderValue::from_str(&key.sign_base64(body)).unwrap_or(HeaderValue::from_static(""))
}

impl Answer {
    /// Prepares (and, when the body is fixed, signs) the answer for a stored content.json.
    pub fn new(content: &str, sha256: &str, base: &DownloadBase, key: &SecretKey) -> Self {
        let Ok(Value::Object(mut map)) = serde_json::from_str::<Value>(content) else {
            // Stored content is validated at publish; serve it as it is.
            return Answer::whole(Bytes::from(content.to_owned()), key);
        };
        if map.contains_key("remote") {
            return Answer::whole(Bytes::from(content.to_owned()), key);
        }
        let path = format!("/otafiles/{sha256}");
        match base {
            DownloadBase::Fixed(b) => {
                map.insert("remote".into(), Value::String(format!("{b}{path}")));
                Answer::whole(Bytes::from(to_json(&map)), key)
            }
            DownloadBase::FromRequest { .. } => {
                // `{…,"remote":"` + URL + `"}`: the URL is checked to need no escaping.
                let mut head = to_json(&map);
                head.pop(); // the closing brace
                if !map.is_empty() {
                    head.push(',');
                }
                head.push_str("\"remote\":\"");
                Answer {
                    head: Bytes::from(head),
                    tail: Some((path, Bytes::from_static(b"\"}"))),
                    signature: None,
                }
            }
        }
    }

    fn whole(body: Bytes, key: &SecretKey) -> Self {
        Answer {
            signature: Some(signature_of(key, &body)),
            head: body,
            tail: None,
        }
    }

    /// The body for one request and its signature (signed now only when
    /// the body depends on the request).
    pub fn signed_body(
        &self,
        base: &DownloadBase,
        headers: &HeaderMap,
        key: &SecretKey,
    ) -> SignedBody {
        let body = self.body(base, headers);
        let signature = match &self.signature {
            Some(s) => s.clone(),
            None => signature_of(key, &body),
        };
        SignedBody { body, signature }
    }

    /// The body for one request.
    pub fn body(&self, base: &DownloadBase, headers: &HeaderMap) -> Bytes {
        match &self.tail {
            None => self.head.clone(),
            Some((path, tail)) => {
                let b = base.for_request(headers);
                let mut out = BytesMut::with_capacity(self.head.len() + b.len() + path.len() + 2);
                out.extend_from_slice(&self.head);
                out.extend_from_slice(b.as_bytes());
                out.extend_from_slice(path.as_bytes());
                out.extend_from_slice(tail);
                out.freeze()
            }
        }
    }
}

fn to_json(map: &Map<String, Value>) -> String {
    // Serialising a Map of Values cannot fail.
    serde_json::to_string(map).unwrap_or_default()
}

/// The content.json as a JSON value with its `remote` filled in (for the JSON API).
pub fn content_value(
    content: &str,
    sha256: &str,
    base: &DownloadBase,
    headers: &HeaderMap,
) -> Value {
    match serde_json::from_str::<Value>(content) {
        Ok(Value::Object(mut map)) => {
            if !map.contains_key("remote") {
                let url = format!("{}/otafiles/{sha256}", base.for_request(headers));
                map.insert("remote".into(), Value::String(url));
            }
            Value::Object(map)
        }
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::LazyLock;

    static KEY: LazyLock<SecretKey> = LazyLock::new(SecretKey::generate);

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn fixed_and_per_request_answers() {
        let content = r#"{"package":"a","version":"1","sha256":"ff"}"#;
        let fixed = DownloadBase::fixed("https://ota.example.com/").unwrap();
        let a = Answer::new(content, "ff", &fixed, &KEY);
        let v: Value = serde_json::from_slice(&a.body(&fixed, &HeaderMap::new())).unwrap();
        assert_eq!(v["remote"], "https://ota.example.com/otafiles/ff");

        let dynamic = DownloadBase::FromRequest {
            fallback: "http://127.0.0.1:8080".into(),
        };
        let a = Answer::new(content, "ff", &dynamic, &KEY);
        let h = headers(&[("host", "internal:9"), ("x-forwarded-proto", "https")]);
        let v: Value = serde_json::from_slice(&a.body(&dynamic, &h)).unwrap();
        assert_eq!(v["remote"], "https://internal:9/otafiles/ff");
        assert_eq!(v["package"], "a");
        for odd in ["]]][[:::", "..", "-", ":80", "h:99999"] {
            assert_eq!(
                dynamic.for_request(&headers(&[("host", odd)])),
                "http://127.0.0.1:8080",
                "{odd}"
            );
        }
        let evil = headers(&[("host", "x\",\"remote\":\"http://evil")]);
        let v: Value = serde_json::from_slice(&a.body(&dynamic, &evil)).unwrap();
        assert_eq!(v["remote"], "http://127.0.0.1:8080/otafiles/ff");
        let fwd = headers(&[
            ("host", "inner"),
            ("x-forwarded-host", "ota.example.com, inner"),
        ]);
        assert_eq!(dynamic.for_request(&fwd), "http://ota.example.com");
    }

    #[test]
    fn every_answer_is_signed_over_its_exact_bytes() {
        let key = SecretKey::generate();
        let public = key.public();
        let content = r#"{"package":"a","version":"1"}"#;
        let fixed = DownloadBase::fixed("https://ota.example.com").unwrap();
        let dynamic = DownloadBase::FromRequest {
            fallback: "http://127.0.0.1:8080".into(),
        };
        for base in [fixed, dynamic] {
            let a = Answer::new(content, "ff", &base, &key);
            for host in ["one.example", "two.example"] {
                let s = a.signed_body(&base, &headers(&[("host", host)]), &key);
                let sig = s.signature.to_str().unwrap();
                assert!(public.verify_base64(&s.body, sig).is_ok());
                let mut tampered = s.body.to_vec();
                tampered[2] ^= 1;
                assert!(public.verify_base64(&tampered, sig).is_err());
            }
        }
    }

    #[test]
    fn publisher_remote_is_kept() {
        let content = r#"{"package":"a","remote":"https://cdn.example.com/a.bin"}"#;
        let base = DownloadBase::fixed("http://h").unwrap();
        let a = Answer::new(content, "ff", &base, &KEY);
        assert_eq!(&a.body(&base, &HeaderMap::new())[..], content.as_bytes());
    }

    #[test]
    fn public_url_checks() {
        for bad in [
            "ftp://x",
            "https://u:p@h",
            "https://h/?q=1",
            "not a url",
            "https://h/#f",
        ] {
            assert!(DownloadBase::fixed(bad).is_err(), "{bad}");
        }
        assert_eq!(
            DownloadBase::fixed("https://h/ota/").unwrap(),
            DownloadBase::Fixed("https://h/ota".into())
        );
    }
}
