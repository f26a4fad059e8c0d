//! `--blobs URL`: which backend holds the blobs.
//!
//! `local` (the default) keeps them in the data directory. An S3-compatible
//! object store is named `s3://BUCKET[/PREFIX]?endpoint=…&region=…`; its
//! credentials come only from the standard environment variables
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`),
//! never from the URL, so the URL can be logged and shown in `ps`.

use std::fmt;
use std::time::Duration;

/// Where blobs are kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum BlobBackend {
    /// Files in the data directory (`blobs/<aa>/<sha256>`).
    #[default]
    Local,
    /// An S3-compatible object store; the data directory is a cache.
    S3(S3Config),
}

/// An S3 bucket as the blob store. Holds no credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Config {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix inside the bucket (no leading or trailing `/`); objects
    /// are `PREFIX/blobs/<sha256>`.
    pub prefix: Option<String>,
    /// Endpoint URL (`http://127.0.0.1:3900`); `None` is AWS itself.
    pub endpoint: Option<String>,
    /// Region (`garage` for Garage; AWS default `us-east-1`).
    pub region: String,
    /// Plain `http://` endpoints allowed (default: when the endpoint is one).
    pub allow_http: bool,
    /// Path-style requests (`ENDPOINT/BUCKET/KEY`), as Garage and MinIO
    /// expect (default: when an endpoint is given).
    pub path_style: bool,
    /// An object no catalogue row references is deleted by start-up
    /// cleanup only once it is older than this (another instance may be
    /// uploading it and not have written its row yet).
    pub orphan_grace: Duration,
    /// Uploads larger than this go up in parts of this size (≥ 5 MiB, the
    /// S3 minimum).
    pub part_size: u64,
}

/// Default grace period before an unreferenced object may be deleted.
pub const DEFAULT_ORPHAN_GRACE: Duration = Duration::from_secs(24 * 3600);
/// Default multipart part size.
pub const DEFAULT_PART_SIZE: u64 = 16 << 20;
/// The smallest part S3 accepts (except the last).
pub const MIN_PART_SIZE: u64 = 5 << 20;

/// A `--blobs` value that cannot be used; the message says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--blobs {url:?}: {reason}")]
pub struct BadBlobsUrl {
    /// The URL as given, with any user information removed.
    pub url: String,
    /// What is wrong with it.
    pub reason: String,
}

impl BlobBackend {
    /// Parses `local` or `s3://BUCKET[/PREFIX]?endpoint=URL&region=R`
    /// (optional `allow_http`, `path_style` = `true|false`, `orphan_grace`
    /// = a duration such as `24h` or seconds, `part_size` = a size such as
    /// `16MiB`). Unknown parameters and credentials in the URL are refused.
    pub fn parse(text: &str) -> Result<BlobBackend, BadBlobsUrl> {
        let text = text.trim();
        if text.is_empty() || text == "local" {
            return Ok(BlobBackend::Local);
        }
        let bad = |reason: String| BadBlobsUrl {
            url: redact(text),
            reason,
        };
        let url = url::Url::parse(text).map_err(|e| {
            bad(format!(
                "not a URL ({e}); expected `local` or s3://BUCKET[/PREFIX]?endpoint=http://HOST:PORT&region=REGION"
            ))
        })?;
        if url.scheme() != "s3" {
            return Err(bad(format!(
                "unsupported scheme {:?}: expected `local` or s3://BUCKET…",
                url.scheme()
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad(
                "credentials do not belong in the URL: set AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY in the environment"
                    .into(),
            ));
        }
        if url.port().is_some() {
            return Err(bad(
                "a port after the bucket name: the endpoint goes in ?endpoint=http://HOST:PORT"
                    .into(),
            ));
        }
        let bucket = url.host_str().unwrap_or_default().to_owned();
        check_bucket(&bucket).map_err(bad)?;
        let prefix = url.path().trim_matches('/');
        let prefix = if prefix.is_empty() {
            None
        } else {
            check_prefix(prefix).map_err(bad)?;
            Some(prefix.to_owned())
        };
        let mut endpoint = None;
        let mut region = None;
        let mut allow_http = None;
        let mut path_style = None;
        let mut orphan_grace = DEFAULT_ORPHAN_GRACE;
        let mut part_size = DEFAULT_PART_SIZE;
        for (k, v) in url.query_pairs() {
            match k.as_ref() {
                "endpoint" => {
                    let e = url::Url::parse(&v)
                        .map_err(|e| bad(format!("endpoint {v:?} is not a URL: {e}")))?;
                    if !matches!(e.scheme(), "http" | "https") || e.host_str().is_none() {
                        return Err(bad(format!(
                            "endpoint {v:?} must be http://HOST[:PORT] or https://HOST[:PORT]"
                        )));
                    }
                    if !e.username().is_empty() || e.password().is_some() {
                        return Err(bad("credentials do not belong in the endpoint: set \
                             AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                            .into()));
                    }
                    endpoint = Some(v.trim_end_matches('/').to_owned());
                }
                "region" => {
                    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                        return Err(bad(format!("region {v:?}: letters, digits and '-' only")));
                    }
                    region = Some(v.into_owned());
                }
                "allow_http" => allow_http = Some(boolean(&k, &v).map_err(bad)?),
                "path_style" => path_style = Some(boolean(&k, &v).map_err(bad)?),
                "orphan_grace" => orphan_grace = duration(&v).map_err(bad)?,
                "part_size" => {
                    part_size = ota_core::size::parse_size(&v)
                        .map_err(|e| bad(format!("part_size {v:?}: {e}")))?;
                    if part_size < MIN_PART_SIZE {
                        return Err(bad(format!(
                            "part_size {v:?} is below S3's minimum part of 5MiB"
                        )));
                    }
                }
                k if looks_secret(k) => {
                    return Err(bad(format!(
                        "parameter {k:?}: credentials do not belong in the URL; set \
                         AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN)"
                    )))
                }
                other => {
                    return Err(bad(format!(
                        "unknown parameter {other:?} (known: endpoint, region, allow_http, \
                         path_style, orphan_grace, part_size)"
                    )))
                }
            }
        }
        let plain_http = endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("http://"));
        let allow_http = allow_http.unwrap_or(plain_http);
        if plain_http && !allow_http {
            return Err(bad(
                "the endpoint is plain http:// but allow_http=false".into()
            ));
        }
        Ok(BlobBackend::S3(S3Config {
            bucket,
            prefix,
            path_style: path_style.unwrap_or(endpoint.is_some()),
            region: region.unwrap_or_else(|| "us-east-1".into()),
            endpoint,
            allow_http,
            orphan_grace,
            part_size,
        }))
    }
}

impl std::str::FromStr for BlobBackend {
    type Err = BadBlobsUrl;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BlobBackend::parse(s)
    }
}

impl fmt::Display for BlobBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlobBackend::Local => f.write_str("the data directory"),
            BlobBackend::S3(c) => write!(f, "{c}"),
        }
    }
}

impl fmt::Display for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}", self.bucket)?;
        if let Some(p) = &self.prefix {
            write!(f, "/{p}")?;
        }
        match &self.endpoint {
            Some(e) => write!(f, " at {e}"),
            None => write!(f, " (AWS, {})", self.region),
        }
    }
}

/// The URL with any `user:password@` removed (for error messages).
fn redact(text: &str) -> String {
    let Some(start) = text.find("://").map(|i| i + 3) else {
        return text.to_owned();
    };
    let end = text[start..]
        .find(['/', '?', '#'])
        .map_or(text.len(), |i| start + i);
    match text[start..end].rfind('@') {
        Some(at) => format!("{}{}", &text[..start], &text[start + at + 1..]),
        None => text.to_owned(),
    }
}

fn looks_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["key", "secret", "token", "password", "credential"]
        .iter()
        .any(|s| k.contains(s))
}

fn boolean(key: &str, v: &str) -> Result<bool, String> {
    match v {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(format!("{key}={v:?}: expected true or false")),
    }
}

fn duration(v: &str) -> Result<Duration, String> {
    if let Ok(secs) = v.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(v)
        .map_err(|e| format!("orphan_grace={v:?}: {e} (e.g. 24h, 30m, or seconds)"))
}

/// S3 bucket naming rules (the common subset every implementation takes).
fn check_bucket(b: &str) -> Result<(), String> {
    if b.is_empty() {
        return Err("no bucket: expected s3://BUCKET[/PREFIX]".into());
    }
    let ok = (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.')
        && b.as_bytes()[0].is_ascii_alphanumeric()
        && b.as_bytes()[b.len() - 1].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "bucket {b:?}: 3 to 63 lower-case letters, digits, '-' and '.', starting and ending \
             with a letter or digit"
        ))
    }
}

fn check_prefix(p: &str) -> Result<(), String> {
    let ok = p.split('/').all(|seg| {
        !seg.is_empty()
            && seg != "."
            && seg != ".."
            && seg
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "prefix {p:?}: segments of letters, digits, '-', '_' and '.' separated by single '/'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(text: &str) -> S3Config {
        match BlobBackend::parse(text).unwrap() {
            BlobBackend::S3(c) => c,
            BlobBackend::Local => panic!("local"),
        }
    }

    fn refused(text: &str) -> String {
        BlobBackend::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn garage_url() {
        let c = s3("s3://ota-test/fleet/a?endpoint=http://127.0.0.1:3900&region=garage");
        assert_eq!(c.bucket, "ota-test");
        assert_eq!(c.prefix.as_deref(), Some("fleet/a"));
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:3900"));
        assert_eq!(c.region, "garage");
        assert!(c.allow_http && c.path_style);
        assert_eq!(c.orphan_grace, DEFAULT_ORPHAN_GRACE);
        assert_eq!(c.part_size, DEFAULT_PART_SIZE);
        assert_eq!(
            c.to_string(),
            "s3://ota-test/fleet/a at http://127.0.0.1:3900"
        );
    }

    #[test]
    fn defaults_and_options() {
        assert_eq!(BlobBackend::parse("local").unwrap(), BlobBackend::Local);
        assert_eq!(BlobBackend::parse("").unwrap(), BlobBackend::Local);
        let aws = s3("s3://bucket");
        assert!(!aws.allow_http && !aws.path_style && aws.endpoint.is_none());
        assert_eq!(aws.region, "us-east-1");
        let c = s3("s3://b.b1?endpoint=https://s3.example.com/&path_style=false&orphan_grace=0&part_size=5MiB");
        assert_eq!(c.endpoint.as_deref(), Some("https://s3.example.com"));
        assert!(!c.path_style && !c.allow_http);
        assert_eq!(c.orphan_grace, Duration::ZERO);
        assert_eq!(c.part_size, 5 << 20);
        assert_eq!(
            s3("s3://bbb?orphan_grace=2h").orphan_grace,
            Duration::from_secs(7200)
        );
    }

    #[test]
    fn refusals_say_why() {
        assert!(refused("s3://AK:hunter2@bucket").contains("credentials"));
        assert!(!refused("s3://AK:hunter2@bucket").contains("hunter2"));
        assert!(refused("s3://bucket?access_key_id=x").contains("credentials"));
        assert!(refused("s3://bucket?secret=x").contains("credentials"));
        assert!(refused("s3://bucket?endpont=http://x").contains("unknown parameter"));
        assert!(refused("gs://bucket").contains("scheme"));
        assert!(refused("/var/lib/blobs").contains("not a URL"));
        assert!(refused("s3://Bucket_1").contains("bucket"));
        assert!(refused("s3://bucket:3900").contains("endpoint"));
        assert!(refused("s3://bucket/a//b").contains("prefix"));
        assert!(refused("s3://bucket/a b").contains("prefix"));
        assert!(refused("s3://bucket?endpoint=ftp://x").contains("endpoint"));
        assert!(refused("s3://bucket?endpoint=http://h&allow_http=false").contains("allow_http"));
        assert!(refused("s3://bucket?part_size=1MiB").contains("minimum"));
        assert!(refused("s3://bucket?orphan_grace=soon").contains("orphan_grace"));
        assert!(refused("s3://bucket?path_style=maybe").contains("true or false"));
    }
}
