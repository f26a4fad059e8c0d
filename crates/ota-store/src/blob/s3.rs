//! The S3 backend: objects `[PREFIX/]blobs/<sha256>` in one bucket, through
//! `object_store`'s S3 client.
//!
//! Two clients share the configuration. `ops` bounds every request (HEAD,
//! PUT, parts, LIST, DELETE: a store that hangs is an error after
//! [`OPS_TIMEOUT`]); `data` streams GETs of any length with a read-idle
//! timeout instead, so a long download to a slow device is not cut while a
//! store that stops sending is. Both retry a bounded number of times with
//! backoff, so a store that is down fails within seconds, never hangs.

use super::url::S3Config;
use super::BlobError;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::client::{HttpClient, HttpConnector};
use object_store::path::Path as ObjectPath;
use object_store::signer::Signer;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload,
    RetryConfig,
};
use ota_core::Sha256Hex;
use std::ops::Range;
use std::time::{Duration, SystemTime};
use tokio::io::AsyncReadExt;

/// Longest a bounded request (anything but a streamed GET) may take.
pub const OPS_TIMEOUT: Duration = Duration::from_secs(120);
/// A streamed GET that receives nothing for this long fails.
pub const READ_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Connecting to the store.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Parts of one multipart upload in flight at once (memory: this many
/// parts plus the one being read).
const PARTS_IN_FLIGHT: usize = 2;

/// Credentials from the standard environment variables.
#[derive(Clone)]
pub(crate) struct Credentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret, not even in debug output.
        f.write_str("Credentials { .. }")
    }
}

impl Credentials {
    /// Reads `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and the optional
    /// `AWS_SESSION_TOKEN`; names what is missing.
    pub(crate) fn from_env() -> Result<Credentials, BlobError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`Credentials::from_env`] over any variable lookup.
    fn from_vars(lookup: impl Fn(&str) -> Option<String>) -> Result<Credentials, BlobError> {
        let var = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let missing: Vec<&str> = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
            .into_iter()
            .filter(|n| var(n).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(BlobError::Config(format!(
                "the S3 blob store needs credentials: {} not set in the environment \
                 (they are never read from the --blobs URL)",
                missing.join(" and ")
            )));
        }
        Ok(Credentials {
            access_key_id: var("AWS_ACCESS_KEY_ID").unwrap_or_default(),
            secret_access_key: var("AWS_SECRET_ACCESS_KEY").unwrap_or_default(),
            session_token: var("AWS_SESSION_TOKEN"),
        })
    }
}

/// Streamed GETs: no overall deadline, a read-idle one.
#[derive(Debug)]
struct StreamingConnector;

impl HttpConnector for StreamingConnector {
    fn connect(&self, _: &ClientOptions) -> object_store::Result<HttpClient> {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_IDLE_TIMEOUT)
            .build()
            .map_err(|e| object_store::Error::Generic {
                store: "S3",
                source: Box::new(e),
            })?;
        Ok(HttpClient::new(client))
    }
}

/// One bucket (and prefix) holding blobs.
#[derive(Debug, Clone)]
pub(crate) struct S3Blobs {
    ops: AmazonS3,
    data: AmazonS3,
    prefix: String,
    pub(crate) config: S3Config,
}

/// What the store holds under a hash.
#[derive(Debug, Clone)]
pub struct ObjectInfo {
    /// Size in bytes.
    pub size: u64,
    /// When it was last written.
    pub modified: SystemTime,
}

impl S3Blobs {
    /// Builds the clients (no request is made yet).
    pub(crate) fn new(config: &S3Config, creds: Credentials) -> Result<S3Blobs, BlobError> {
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(2),
                base: 2.0,
            },
            max_retries: 3,
            retry_timeout: Duration::from_secs(20),
        };
        let builder = || {
            let mut b = AmazonS3Builder::new()
                .with_bucket_name(&config.bucket)
                .with_region(&config.region)
                .with_access_key_id(&creds.access_key_id)
                .with_secret_access_key(&creds.secret_access_key)
                .with_allow_http(config.allow_http)
                .with_virtual_hosted_style_request(!config.path_style)
                .with_retry(retry.clone());
            if let Some(t) = &creds.session_token {
                b = b.with_token(t);
            }
            if let Some(e) = &config.endpoint {
                b = b.with_endpoint(e);
            }
            b
        };
        let build_err = |e: object_store::Error| {
            BlobError::Config(format!("configuring the S3 client for {config}: {e}"))
        };
        let ops = builder()
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(config.allow_http)
                    .with_timeout(OPS_TIMEOUT)
                    .with_connect_timeout(CONNECT_TIMEOUT),
            )
            .build()
            .map_err(build_err)?;
        let data = builder()
            .with_client_options(ClientOptions::new().with_allow_http(config.allow_http))
            .with_http_connector(StreamingConnector)
            .build()
            .map_err(build_err)?;
        let prefix = match &config.prefix {
            Some(p) => format!("{p}/blobs/"),
            None => "blobs/".to_owned(),
        };
        Ok(S3Blobs {
            ops,
            data,
            prefix,
            config: config.clone(),
        })
    }

    fn key(&self, hash: &Sha256Hex) -> ObjectPath {
        ObjectPath::from(format!("{}{}", self.prefix, hash.as_str()))
    }

    /// The object's size and age; `None` when absent.
    pub(crate) async fn head(&self, hash: &Sha256Hex) -> Result<Option<ObjectInfo>, BlobError> {
        match self.ops.head(&self.key(hash)).await {
            Ok(m) => Ok(Some(ObjectInfo {
                size: m.size,
                modified: m.last_modified.into(),
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(remote("asking the object store for a blob", e)),
        }
    }

    /// Uploads `size` bytes read from `file` as the object of `hash`: one
    /// PUT up to the part size, a multipart upload above it (aborted on any
    /// failure, so no part is left behind). Memory: at most
    /// `PARTS_IN_FLIGHT + 1` parts.
    pub(crate) async fn upload(
        &self,
        file: std::fs::File,
        hash: &Sha256Hex,
        size: u64,
    ) -> Result<(), BlobError> {
        let key = self.key(hash);
        let part = self.config.part_size;
        let mut file = tokio::fs::File::from_std(file);
        if size <= part {
            let bytes = read_part(&mut file, size as usize).await?;
            check_len(bytes.len() as u64, size)?;
            self.ops
                .put(&key, PutPayload::from(bytes))
                .await
                .map_err(|e| remote("uploading a blob to the object store", e))?;
            return Ok(());
        }
        let mut upload = self
            .ops
            .put_multipart(&key)
            .await
            .map_err(|e| remote("starting a multipart upload", e))?;
        let parts = async {
            let mut inflight = tokio::task::JoinSet::new();
            let mut sent = 0u64;
            while sent < size {
                let want = part.min(size - sent) as usize;
                let bytes = read_part(&mut file, want).await?;
                if bytes.len() < want {
                    check_len(sent + bytes.len() as u64, size)?;
                }
                sent += bytes.len() as u64;
                inflight.spawn(upload.put_part(PutPayload::from(bytes)));
                while inflight.len() >= PARTS_IN_FLIGHT {
                    join_part(inflight.join_next().await)?;
                }
            }
            while let Some(r) = inflight.join_next().await {
                join_part(Some(r))?;
            }
            Ok::<(), BlobError>(())
        }
        .await;
        let done = match parts {
            Ok(()) => upload
                .complete()
                .await
                .map(|_| ())
                .map_err(|e| remote("completing a multipart upload", e)),
            Err(e) => Err(e),
        };
        if let Err(e) = done {
            if let Err(abort) = upload.abort().await {
                tracing::warn!("aborting a failed multipart upload: {abort}");
            }
            return Err(e);
        }
        Ok(())
    }

    /// The object's bytes in `range` (all of it with `None`), streamed.
    pub(crate) async fn read(
        &self,
        hash: &Sha256Hex,
        range: Option<Range<u64>>,
    ) -> Result<BoxStream<'static, std::io::Result<Bytes>>, BlobError> {
        let opts = GetOptions {
            range: range.map(GetRange::Bounded),
            ..GetOptions::default()
        };
        let got = self
            .data
            .get_opts(&self.key(hash), opts)
            .await
            .map_err(|e| remote("reading a blob from the object store", e))?;
        Ok(got
            .into_stream()
            .map_err(|e| std::io::Error::other(remote("reading a blob from the object store", e)))
            .boxed())
    }

    /// Deletes the object (absent is fine).
    pub(crate) async fn delete(&self, hash: &Sha256Hex) -> Result<(), BlobError> {
        match self.ops.delete(&self.key(hash)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(remote("deleting a blob from the object store", e)),
        }
    }

    /// Every object under the prefix whose name is a SHA-256.
    pub(crate) async fn list(&self) -> Result<Vec<(Sha256Hex, ObjectInfo)>, BlobError> {
        let prefix = ObjectPath::from(self.prefix.trim_end_matches('/'));
        let mut out = Vec::new();
        let mut listing = self.ops.list(Some(&prefix));
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| remote("listing the object store", e))?;
            if let Some(h) = meta
                .location
                .filename()
                .and_then(|n| Sha256Hex::parse(n).ok())
            {
                out.push((
                    h,
                    ObjectInfo {
                        size: meta.size,
                        modified: meta.last_modified.into(),
                    },
                ));
            }
        }
        Ok(out)
    }

    /// A URL that lets its holder GET the object for `expires`.
    pub(crate) async fn presign(
        &self,
        hash: &Sha256Hex,
        expires: Duration,
    ) -> Result<String, BlobError> {
        self.data
            .signed_url(reqwest::Method::GET, &self.key(hash), expires)
            .await
            .map(|u| u.to_string())
            .map_err(|e| remote("signing a download URL", e))
    }
}

async fn read_part(file: &mut tokio::fs::File, want: usize) -> Result<Bytes, BlobError> {
    let mut buf = Vec::with_capacity(want);
    (&mut *file)
        .take(want as u64)
        .read_to_end(&mut buf)
        .await
        .map_err(|e| {
            BlobError::Io(std::io::Error::new(
                e.kind(),
                format!("reading an upload: {e}"),
            ))
        })?;
    Ok(Bytes::from(buf))
}

fn check_len(got: u64, want: u64) -> Result<(), BlobError> {
    if got == want {
        Ok(())
    } else {
        Err(BlobError::Io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("the upload's temporary file holds {got} bytes, {want} were written"),
        )))
    }
}

fn join_part(
    r: Option<Result<object_store::Result<()>, tokio::task::JoinError>>,
) -> Result<(), BlobError> {
    match r {
        None | Some(Ok(Ok(()))) => Ok(()),
        Some(Ok(Err(e))) => Err(remote("uploading a part", e)),
        Some(Err(e)) => Err(BlobError::Remote(format!("uploading a part: {e}"))),
    }
}

/// An `object_store` error as ours. Its text names the bucket and object
/// (never credentials).
fn remote(context: &str, e: object_store::Error) -> BlobError {
    match e {
        object_store::Error::NotFound { .. } => BlobError::NotFound,
        e => BlobError::Remote(format!("{context}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_credentials_are_named_and_secrets_never_shown() {
        let none = Credentials::from_vars(|_| None).unwrap_err().to_string();
        assert!(
            none.contains("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
            "{none}"
        );
        let only_id = Credentials::from_vars(|n| (n == "AWS_ACCESS_KEY_ID").then(|| "GK1".into()))
            .unwrap_err()
            .to_string();
        assert!(
            only_id.contains("AWS_SECRET_ACCESS_KEY") && !only_id.contains("AWS_ACCESS_KEY_ID"),
            "{only_id}"
        );
        let c = Credentials::from_vars(|n| Some(format!("value-of-{n}"))).unwrap();
        assert_eq!(
            c.session_token.as_deref(),
            Some("value-of-AWS_SESSION_TOKEN")
        );
        assert!(!format!("{c:?}").contains("value-of"));
    }
}
