//! Talking to the update server: what to install next, and reports.
//!
//! The bundle protocol is asked first (`POST /api/v1/update/request`):
//! it knows the update strategies (compulsory and optional updates,
//! rollbacks) and serves delta bundles. A server without it (404, 405,
//! 501), or one that does not know the installed version, is asked with
//! the package API (`GET /maxVersion`) for a full package instead. Either
//! way the destination's content.json is fetched with its `Ota-Signature`
//! and verified before anything else is believed: its SHA-256 is what the
//! download must have, its hooks are what runs.

use crate::config::{parse_dependencies, Hooks, PackageConfig};
use crate::deps::Constraint;
use ota_core::content::Content;
use ota_core::signing::{PublicKey, SIGNATURE_HEADER};
use ota_core::Version;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The longest a check, a content.json, a confirm's headers or a report may
/// take in all (a server dripping a byte at a time is cut).
pub const REQUEST_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

/// A server answer could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// Network trouble, a 5xx, a timeout: try again later.
    #[error("{0}")]
    Transient(String),
    /// The answer is refused (bad signature, malformed, wrong package).
    #[error("{0}")]
    Refused(String),
}

/// The destination's content.json, signature verified.
#[derive(Clone, Debug)]
pub struct Target {
    /// Its version.
    pub version: Version,
    /// SHA-256 of the full package.
    pub sha256: String,
    /// Where the full package is downloaded from.
    pub url: String,
    /// Its hooks.
    pub hooks: Hooks,
    /// Its dependencies.
    pub dependencies: BTreeMap<String, Constraint>,
}

/// How to get there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// A delta bundle through the bundle protocol (full package if the
    /// delta cannot apply).
    Bundle {
        /// `Update` or `Rollback`.
        action: String,
        /// `Compulsory` or `Optional`.
        strategy: String,
    },
    /// The full package.
    Full,
}

/// What the server offers one package.
#[derive(Debug)]
pub enum Offer {
    /// Nothing to do.
    UpToDate,
    /// An optional update the config does not take.
    Declined(Version),
    /// Go to `target`.
    Install {
        /// The destination.
        target: Target,
        /// How.
        route: Route,
    },
}

/// A server of one package.
pub struct Server<'a> {
    /// HTTP client.
    pub client: &'a reqwest::Client,
    /// The pinned key (none only when unsigned answers are allowed).
    pub key: Option<&'a PublicKey>,
    /// Accept answers without a signature.
    pub allow_unsigned: bool,
}

fn transient(what: &str, e: impl std::fmt::Display) -> CheckError {
    CheckError::Transient(format!("{what}: {e}"))
}

impl Server<'_> {
    /// Asks what `p` should install next.
    pub async fn check(
        &self,
        p: &PackageConfig,
        client_type: &str,
        take_optional: bool,
    ) -> Result<Offer, CheckError> {
        let url = format!("{}/api/v1/update/request", p.remote);
        let body = json!({"Request": "Yes", "name": p.name, "version": p.version.as_str(),
                          "type": client_type, "branch": p.branch});
        let r = self
            .client
            .post(&url)
            .timeout(REQUEST_DEADLINE)
            .json(&body)
            .send()
            .await
            .map_err(|e| transient(&format!("contacting {url}"), e))?;
        match r.status().as_u16() {
            200 => {}
            404 | 405 | 501 => return self.check_full(p).await,
            s if s >= 500 || s == 429 || s == 408 => {
                return Err(CheckError::Transient(format!("{url} answered {s}")))
            }
            s => {
                let text = r.text().await.unwrap_or_default();
                return Err(CheckError::Refused(format!(
                    "{url} answered {s}: {}",
                    text.chars().take(300).collect::<String>()
                )));
            }
        }
        let answer: Value = r
            .json()
            .await
            .map_err(|e| CheckError::Refused(format!("{url}: not a protocol answer: {e}")))?;
        if answer["Response"] != "Yes" {
            return Ok(Offer::UpToDate);
        }
        let field = |k: &str| answer[k].as_str().unwrap_or_default().to_owned();
        let (action, strategy) = (field("Action"), field("Strategy"));
        let dest = Version::parse(&field("Destination"))
            .map_err(|e| CheckError::Refused(format!("{url}: Destination: {e}")))?;
        if !matches!(action.as_str(), "Update" | "Rollback")
            || !matches!(strategy.as_str(), "Compulsory" | "Optional")
        {
            return Err(CheckError::Refused(format!(
                "{url}: unexpected Action {action:?} / Strategy {strategy:?}"
            )));
        }
        let order = dest.cmp_precedence(&p.version);
        let sane = match action.as_str() {
            "Update" => order.is_gt(),
            _ => order.is_lt(),
        };
        if !sane {
            return Err(CheckError::Refused(format!(
                "{url}: {action} from {} to {} is not one (refused)",
                p.version.as_str(),
                dest.as_str()
            )));
        }
        if strategy == "Optional" && !take_optional {
            return Ok(Offer::Declined(dest));
        }
        let target = self.content(p, Some(dest.as_str())).await?.ok_or_else(|| {
            CheckError::Transient(format!("{} {dest} is no longer published", p.name))
        })?;
        Ok(Offer::Install {
            target,
            route: Route::Bundle { action, strategy },
        })
    }

    async fn check_full(&self, p: &PackageConfig) -> Result<Offer, CheckError> {
        match self.content(p, None).await? {
            Some(t) if t.version.cmp_precedence(&p.version).is_gt() => Ok(Offer::Install {
                target: t,
                route: Route::Full,
            }),
            _ => Ok(Offer::UpToDate),
        }
    }

    /// The signed content.json of `version` (newest when `None`); `None`
    /// when the server has no such version.
    pub async fn content(
        &self,
        p: &PackageConfig,
        version: Option<&str>,
    ) -> Result<Option<Target>, CheckError> {
        let mut url = reqwest::Url::parse(&p.remote)
            .map_err(|e| CheckError::Refused(format!("remote {:?}: {e}", p.remote)))?;
        url.set_path(&format!(
            "{}/{}",
            url.path().trim_end_matches('/'),
            if version.is_some() {
                "getVersion"
            } else {
                "maxVersion"
            }
        ));
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("package", &p.name)
                .append_pair("branch", &p.branch);
            if let Some(v) = version {
                q.append_pair("version", v);
            }
        }
        let shown = url.to_string();
        let r = self
            .client
            .get(url)
            .timeout(REQUEST_DEADLINE)
            .send()
            .await
            .map_err(|e| transient(&format!("contacting {shown}"), e))?;
        match r.status().as_u16() {
            200 => {}
            404 => return Ok(None),
            s if s >= 500 || s == 429 || s == 408 => {
                return Err(CheckError::Transient(format!("{shown} answered {s}")))
            }
            s => return Err(CheckError::Refused(format!("{shown} answered {s}"))),
        }
        let signature = r
            .headers()
            .get(SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = r
            .bytes()
            .await
            .map_err(|e| transient(&format!("reading {shown}"), e))?;
        self.verify(&body, signature.as_deref(), &shown)?;
        let content =
            Content::from_slice(&body).map_err(|e| CheckError::Refused(format!("{shown}: {e}")))?;
        if content.package() != p.name || content.branch() != p.branch {
            return Err(CheckError::Refused(format!(
                "{shown} answered for {} on {}, not {} on {}",
                content.package(),
                content.branch(),
                p.name,
                p.branch
            )));
        }
        if let Some(v) = version {
            if content.version().as_str() != v {
                return Err(CheckError::Refused(format!(
                    "{shown} answered version {}, not {v}",
                    content.version().as_str()
                )));
            }
        }
        let url = content
            .remote()
            .ok_or_else(|| CheckError::Refused(format!("{shown}: no download URL (remote)")))?
            .to_owned();
        let dependencies =
            parse_dependencies(content.as_map().get("dependencies").unwrap_or(&Value::Null))
                .map_err(|e| CheckError::Refused(format!("{shown}: dependencies: {e}")))?;
        Ok(Some(Target {
            version: content.version().clone(),
            sha256: content.sha256().to_string(),
            url,
            hooks: Hooks::from_map(content.as_map()),
            dependencies,
        }))
    }

    fn verify(&self, body: &[u8], signature: Option<&str>, what: &str) -> Result<(), CheckError> {
        match (self.key, signature) {
            (Some(key), Some(sig)) => key.verify_base64(body, sig).map_err(|e| {
                CheckError::Refused(format!(
                    "{what}: the answer's signature does not verify with the pinned key ({e})"
                ))
            }),
            // With a key pinned, a missing signature is an attack, not a choice.
            (None, _) if self.allow_unsigned => Ok(()),
            _ => Err(CheckError::Refused(format!(
                "{what}: the answer is not signed (set \"allow_unsigned\": true to accept that)"
            ))),
        }
    }

    /// Confirms a bundle offer; returns the open response (the bundle's
    /// body), the bundle's own URL and its SHA-256 (from its name).
    pub async fn confirm(
        &self,
        p: &PackageConfig,
        client_type: &str,
        route: &Route,
        dest: &str,
    ) -> Result<(reqwest::Response, String, String), CheckError> {
        let Route::Bundle { action, strategy } = route else {
            return Err(CheckError::Refused("not a bundle offer".into()));
        };
        let url = format!("{}/api/v1/update/confirm", p.remote);
        let body = json!({"Confirm": "Yes", "Action": action, "Strategy": strategy,
                          "From": p.version.as_str(), "Destination": dest, "name": p.name,
                          "type": client_type, "branch": p.branch});
        let r = self
            .client
            .post(&url)
            .json(&body)
            .send()
            .await
            .map_err(|e| transient(&format!("contacting {url}"), e))?;
        let s = r.status().as_u16();
        if s != 200 {
            let text = r.text().await.unwrap_or_default();
            let msg = format!(
                "{url} answered {s}: {}",
                text.chars().take(300).collect::<String>()
            );
            return Err(if s >= 500 || s == 429 || s == 408 || s == 409 {
                CheckError::Transient(msg)
            } else {
                CheckError::Refused(msg)
            });
        }
        let location = r
            .headers()
            .get("content-location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| CheckError::Refused(format!("{url}: no Content-Location")))?;
        let sha = location.rsplit('/').next().unwrap_or_default().to_owned();
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(CheckError::Refused(format!(
                "{url}: the bundle's location {location:?} does not name its SHA-256"
            )));
        }
        let base = reqwest::Url::parse(&p.remote)
            .map_err(|e| CheckError::Refused(format!("remote {:?}: {e}", p.remote)))?;
        let bundle_url = base
            .join(location)
            .map_err(|e| CheckError::Refused(format!("{location:?}: {e}")))?
            .to_string();
        Ok((r, bundle_url, sha))
    }

    /// Sends one report; Ok(false) when the server refused it for good
    /// (it is then dropped rather than retried forever).
    pub async fn report(
        &self,
        remote: &str,
        device: &str,
        token: &str,
        body: &[u8],
    ) -> Result<bool, CheckError> {
        let url = format!("{remote}/api/v1/devices/{device}/report");
        let r = self
            .client
            .post(&url)
            .timeout(REQUEST_DEADLINE)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| transient(&format!("contacting {url}"), e))?;
        match r.status().as_u16() {
            200..=299 => Ok(true),
            s if s >= 500 || s == 429 || s == 408 || s == 401 => {
                Err(CheckError::Transient(format!("{url} answered {s}")))
            }
            s => {
                let text = r.text().await.unwrap_or_default();
                tracing::warn!("{url} refused a report ({s}): {text}");
                Ok(false)
            }
        }
    }
}
