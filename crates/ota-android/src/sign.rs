//! Whole-file signatures as `signapk -w` writes them, and their check as
//! recovery's `verifier.c` does it.
//!
//! The zip is written without an archive comment; the signature becomes the
//! comment: `"signed by SignApk\0"`, a DER PKCS#7 `SignedData` (detached,
//! no signed attributes: a direct RSA PKCS#1 v1.5 signature over the
//! digest), then a 6-byte footer `u16 signature_start, 0xff 0xff,
//! u16 comment_size`. The signed bytes are the file up to the end of the
//! end-of-central-directory record minus its 2-byte comment length. SHA-1
//! is used when the certificate is signed with SHA-1, SHA-256 otherwise
//! (signapk's choice). [`verify`] accepts SHA-1 only from such a SHA-1
//! certificate and only when the caller allows it
//! ([`VerifyOptions::allow_sha1`]). Only RSA keys are supported (the only
//! kind KitKat's recovery verifies).

use crate::error::{io, AndroidError, Result};
use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use der::asn1::{OctetString, SetOfVec};
use der::oid::ObjectIdentifier;
use der::{Any, Decode, DecodePem, Encode};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::{Pkcs1v15Sign, RsaPrivateKey, RsaPublicKey};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use spki::AlgorithmIdentifierOwned;
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use x509_cert::Certificate;

const ID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const SHA1_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.5");
const ID_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
const ID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const MESSAGE: &[u8] = b"signed by SignApk\0";

fn sig_err(msg: impl Into<String>) -> AndroidError {
    AndroidError::Signature(msg.into())
}

/// The digest a signature uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DigestAlg {
    /// SHA-1 (certificates signed with SHA-1).
    Sha1,
    /// SHA-256.
    Sha256,
}

impl DigestAlg {
    fn oid(self) -> ObjectIdentifier {
        match self {
            DigestAlg::Sha1 => ID_SHA1,
            DigestAlg::Sha256 => ID_SHA256,
        }
    }
    fn padding(self) -> Pkcs1v15Sign {
        match self {
            DigestAlg::Sha1 => Pkcs1v15Sign::new::<Sha1>(),
            DigestAlg::Sha256 => Pkcs1v15Sign::new::<Sha256>(),
        }
    }
    /// Digest of `data`.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            DigestAlg::Sha1 => Sha1::digest(data).to_vec(),
            DigestAlg::Sha256 => Sha256::digest(data).to_vec(),
        }
    }
    /// The jar manifest attribute name (`SHA1-Digest`, `SHA-256-Digest`).
    fn jar_name(self) -> &'static str {
        match self {
            DigestAlg::Sha1 => "SHA1-Digest",
            DigestAlg::Sha256 => "SHA-256-Digest",
        }
    }
    /// Hashes the first `len` bytes of `file`.
    fn hash_prefix(self, file: &mut std::fs::File, len: u64) -> Result<Vec<u8>> {
        file.seek(SeekFrom::Start(0))
            .map_err(io("seeking the package"))?;
        let mut rd = std::io::BufReader::with_capacity(1 << 20, file.take(len));
        let mut buf = vec![0u8; 1 << 20];
        let mut h1 = Sha1::new();
        let mut h2 = Sha256::new();
        let mut seen = 0u64;
        loop {
            let n = rd.read(&mut buf).map_err(io("reading the package"))?;
            if n == 0 {
                break;
            }
            seen += n as u64;
            match self {
                DigestAlg::Sha1 => h1.update(&buf[..n]),
                DigestAlg::Sha256 => h2.update(&buf[..n]),
            }
        }
        if seen != len {
            return Err(sig_err("the package shrank while it was being hashed"));
        }
        Ok(match self {
            DigestAlg::Sha1 => h1.finalize().to_vec(),
            DigestAlg::Sha256 => h2.finalize().to_vec(),
        })
    }
}

fn read_cert(path: &Path) -> Result<Certificate> {
    let bytes =
        std::fs::read(path).map_err(io(format!("reading certificate {}", path.display())))?;
    let cert = if bytes.starts_with(b"-----BEGIN") {
        Certificate::from_pem(&bytes)
    } else {
        Certificate::from_der(&bytes)
    };
    cert.map_err(|e| {
        sig_err(format!(
            "{}: not an X.509 certificate (PEM or DER): {e}",
            path.display()
        ))
    })
}

fn public_key(cert: &Certificate) -> Result<RsaPublicKey> {
    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| sig_err(e.to_string()))?;
    RsaPublicKey::from_public_key_der(&spki)
        .map_err(|e| sig_err(format!("the certificate's key is not an RSA key: {e}")))
}

fn null_params(oid: ObjectIdentifier) -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid,
        parameters: Some(Any::null()),
    }
}

/// A private key and its certificate.
pub struct Signer {
    key: RsaPrivateKey,
    cert: Certificate,
    /// The digest the signatures use.
    pub digest: DigestAlg,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key.
        f.debug_struct("Signer")
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Loads a key (PKCS#8 DER as in `testkey.pk8`, or PEM PKCS#8/PKCS#1)
    /// and its certificate (PEM or DER), and checks that they match.
    pub fn load(key_path: &Path, cert_path: &Path) -> Result<Signer> {
        let kb =
            std::fs::read(key_path).map_err(io(format!("reading key {}", key_path.display())))?;
        let text = std::str::from_utf8(&kb).ok();
        let key = match text {
            Some(t) if t.contains("ENCRYPTED PRIVATE KEY") => {
                return Err(sig_err(format!(
                    "{}: encrypted keys are not supported; decrypt it with `openssl pkcs8 -in KEY -out KEY.pem`",
                    key_path.display()
                )))
            }
            Some(t) if t.contains("-----BEGIN PRIVATE KEY") => RsaPrivateKey::from_pkcs8_pem(t).map_err(|e| e.to_string()),
            Some(t) if t.contains("-----BEGIN RSA PRIVATE KEY") => RsaPrivateKey::from_pkcs1_pem(t).map_err(|e| e.to_string()),
            _ => RsaPrivateKey::from_pkcs8_der(&kb).map_err(|e| e.to_string()),
        }
        .map_err(|e| sig_err(format!("{}: not an unencrypted RSA private key (PKCS#8 DER/PEM or PKCS#1 PEM): {e}", key_path.display())))?;
        let cert = read_cert(cert_path)?;
        if RsaPublicKey::from(&key) != public_key(&cert)? {
            return Err(sig_err(format!(
                "{} is not the certificate of {}",
                cert_path.display(),
                key_path.display()
            )));
        }
        let digest = if cert.signature_algorithm.oid == SHA1_WITH_RSA {
            DigestAlg::Sha1
        } else {
            DigestAlg::Sha256
        };
        Ok(Signer { key, cert, digest })
    }

    /// The certificate in PEM (`META-INF/com/android/otacert`).
    pub fn cert_pem(&self) -> String {
        use der::EncodePem;
        self.cert
            .to_pem(der::pem::LineEnding::LF)
            .unwrap_or_default()
    }

    /// The jar signature files signapk writes: `MANIFEST.MF` (a digest per
    /// entry), `CERT.SF` (digests of the manifest and of each of its
    /// sections) and `CERT.RSA` (PKCS#7 over `CERT.SF`).
    pub fn jar_signature(
        &self,
        digests: &BTreeMap<String, Vec<u8>>,
    ) -> Result<(Vec<u8>, Vec<u8>, Vec<u8>)> {
        use base64::Engine;
        let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
        let attr = self.digest.jar_name();
        let mut manifest =
            b"Manifest-Version: 1.0\r\nCreated-By: 1.0 (Android SignApk)\r\n\r\n".to_vec();
        let mut sf_sections = Vec::new();
        for (name, d) in digests {
            let mut section = manifest_line(&format!("Name: {name}"));
            section.extend(manifest_line(&format!("{attr}: {}", b64(d))));
            section.extend_from_slice(b"\r\n");
            sf_sections.extend(manifest_line(&format!("Name: {name}")));
            sf_sections.extend(manifest_line(&format!(
                "{attr}: {}",
                b64(&self.digest.digest(&section))
            )));
            sf_sections.extend_from_slice(b"\r\n");
            manifest.extend(section);
        }
        let mut sf = b"Signature-Version: 1.0\r\nCreated-By: 1.0 (Android SignApk)\r\n".to_vec();
        sf.extend(manifest_line(&format!(
            "{attr}-Manifest: {}",
            b64(&self.digest.digest(&manifest))
        )));
        sf.extend_from_slice(b"\r\n");
        sf.extend(sf_sections);
        let rsa = self.pkcs7(&self.digest.digest(&sf))?;
        Ok((manifest, sf, rsa))
    }

    fn pkcs7(&self, digest: &[u8]) -> Result<Vec<u8>> {
        let sig = self
            .key
            .sign(self.digest.padding(), digest)
            .map_err(|e| sig_err(format!("RSA signing failed: {e}")))?;
        let tbs = &self.cert.tbs_certificate;
        let signer = SignerInfo {
            version: CmsVersion::V1,
            sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
                issuer: tbs.issuer.clone(),
                serial_number: tbs.serial_number.clone(),
            }),
            digest_alg: null_params(self.digest.oid()),
            signed_attrs: None,
            signature_algorithm: null_params(RSA_ENCRYPTION),
            signature: OctetString::new(sig).map_err(|e| sig_err(e.to_string()))?,
            unsigned_attrs: None,
        };
        let der_err = |e: der::Error| sig_err(format!("encoding PKCS#7: {e}"));
        let mut certs = SetOfVec::new();
        certs
            .insert(CertificateChoices::Certificate(self.cert.clone()))
            .map_err(der_err)?;
        let mut algs = SetOfVec::new();
        algs.insert(null_params(self.digest.oid()))
            .map_err(der_err)?;
        let mut infos = SetOfVec::new();
        infos.insert(signer).map_err(der_err)?;
        let sd = SignedData {
            version: CmsVersion::V1,
            digest_algorithms: algs,
            encap_content_info: EncapsulatedContentInfo {
                econtent_type: ID_DATA,
                econtent: None,
            },
            certificates: Some(CertificateSet(certs)),
            crls: None,
            signer_infos: SignerInfos(infos),
        };
        let ci = ContentInfo {
            content_type: ID_SIGNED_DATA,
            content: Any::encode_from(&sd).map_err(der_err)?,
        };
        ci.to_der().map_err(der_err)
    }

    /// Signs the zip at `path` in place: hashes the signed range and
    /// replaces the empty comment with the signature block.
    pub fn sign_whole_file(&self, path: &Path) -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io(format!("opening {}", path.display())))?;
        let len = f.metadata().map_err(io("reading the package size"))?.len();
        let mut eocd = [0u8; 22];
        if len < 22 {
            return Err(sig_err("the package is too short to be a zip"));
        }
        f.seek(SeekFrom::Start(len - 22))
            .map_err(io("reading the end record"))?;
        f.read_exact(&mut eocd)
            .map_err(io("reading the end record"))?;
        if &eocd[..4] != b"PK\x05\x06" || eocd[20..22] != [0, 0] {
            return Err(sig_err("zip data already has an archive comment (the end record is not 22 bytes from the end)"));
        }
        let signed_len = len - 2;
        let digest = self.digest.hash_prefix(&mut f, signed_len)?;
        let pkcs7 = self.pkcs7(&digest)?;
        let total = MESSAGE.len() + pkcs7.len() + 6;
        let total16 = u16::try_from(total)
            .map_err(|_| sig_err(format!("signature block of {total} bytes is over 65535")))?;
        let signature_start = total16 - MESSAGE.len() as u16;
        let mut comment = Vec::with_capacity(total + 2);
        comment.extend_from_slice(&total16.to_le_bytes());
        comment.extend_from_slice(MESSAGE);
        comment.extend_from_slice(&pkcs7);
        comment.extend_from_slice(&signature_start.to_le_bytes());
        comment.extend_from_slice(&[0xff, 0xff]);
        comment.extend_from_slice(&total16.to_le_bytes());
        if comment[2..].windows(4).any(|w| w == b"PK\x05\x06") {
            return Err(sig_err(
                "the signature block contains an end-of-central-directory marker; sign again",
            ));
        }
        f.seek(SeekFrom::Start(signed_len))
            .map_err(io("writing the signature"))?;
        f.write_all(&comment).map_err(io("writing the signature"))?;
        f.sync_all().map_err(io("syncing the signed package"))
    }
}

/// One manifest header line, wrapped as `java.util.jar.Manifest` does:
/// a line over 72 bytes (with its CRLF) breaks after 70, continuation
/// lines start with a space and hold 69.
fn manifest_line(line: &str) -> Vec<u8> {
    let b = line.as_bytes();
    let mut out = Vec::with_capacity(b.len() + 8);
    let first = b.len().min(70);
    out.extend_from_slice(&b[..first]);
    out.extend_from_slice(b"\r\n");
    for chunk in b[first..].chunks(69) {
        out.push(b' ');
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// What [`verify`] found.
#[derive(Debug)]
pub struct Verified {
    /// Digest used.
    pub digest: DigestAlg,
    /// Bytes covered by the signature.
    pub signed_len: u64,
    /// Whether the certificate embedded in the package is the one given.
    pub embedded_cert_matches: bool,
}

/// What [`verify`] accepts.
#[derive(Clone, Copy, Debug, Default)]
pub struct VerifyOptions {
    /// Accept SHA-1 signatures. Even then only from a certificate that is
    /// itself signed with SHA-1 (KitKat-era keys, for which signapk signs
    /// with SHA-1); anything else must be SHA-256.
    pub allow_sha1: bool,
}

/// The signature block of a signed package: (signed range length, PKCS#7 DER).
pub fn signature_block(path: &Path) -> Result<(u64, Vec<u8>)> {
    let mut f = std::fs::File::open(path).map_err(io(format!("opening {}", path.display())))?;
    signature_block_of(&mut f)
}

/// As [`signature_block`], for an open package.
fn signature_block_of(f: &mut std::fs::File) -> Result<(u64, Vec<u8>)> {
    let len = f.metadata().map_err(io("reading the package size"))?.len();
    if len < 6 + 22 {
        return Err(sig_err("the package is too short to be signed"));
    }
    let mut footer = [0u8; 6];
    f.seek(SeekFrom::Start(len - 6))
        .map_err(io("reading the footer"))?;
    f.read_exact(&mut footer)
        .map_err(io("reading the footer"))?;
    if footer[2..4] != [0xff, 0xff] {
        return Err(sig_err(
            "no signature footer (the package is not signed, or its comment was changed)",
        ));
    }
    let comment_size = u16::from_le_bytes([footer[4], footer[5]]) as u64;
    let signature_start = u16::from_le_bytes([footer[0], footer[1]]) as u64;
    if signature_start > comment_size || signature_start < 6 {
        return Err(sig_err(format!(
            "signature start {signature_start} is outside the {comment_size}-byte comment"
        )));
    }
    let eocd_size = comment_size + 22;
    if eocd_size > len {
        return Err(sig_err("the comment is longer than the file"));
    }
    let mut eocd = vec![0u8; eocd_size as usize];
    f.seek(SeekFrom::Start(len - eocd_size))
        .map_err(io("reading the end record"))?;
    f.read_exact(&mut eocd)
        .map_err(io("reading the end record"))?;
    if &eocd[..4] != b"PK\x05\x06"
        || u16::from_le_bytes([eocd[20], eocd[21]]) as u64 != comment_size
    {
        return Err(sig_err(
            "the end-of-central-directory record does not hold the signature comment",
        ));
    }
    if eocd[4..].windows(4).any(|w| w == b"PK\x05\x06") {
        return Err(sig_err("EOCD marker occurs after start of EOCD"));
    }
    let sig_at = (eocd_size - signature_start) as usize;
    let pkcs7 = eocd[sig_at..eocd.len() - 6].to_vec();
    Ok((len - comment_size - 2, pkcs7))
}

/// Checks a package's whole-file signature against `cert_path`'s key.
pub fn verify(path: &Path, cert_path: &Path, opts: VerifyOptions) -> Result<Verified> {
    let mut f = std::fs::File::open(path).map_err(io(format!("opening {}", path.display())))?;
    verify_file(&mut f, cert_path, opts)
}

/// As [`verify`], for an open package: a caller that then installs it
/// reads the same file it checked.
pub fn verify_file(
    f: &mut std::fs::File,
    cert_path: &Path,
    opts: VerifyOptions,
) -> Result<Verified> {
    let cert = read_cert(cert_path)?;
    let key = public_key(&cert)?;
    let (signed_len, pkcs7) = signature_block_of(f)?;
    let ci = ContentInfo::from_der(&pkcs7)
        .map_err(|e| sig_err(format!("the signature is not DER PKCS#7: {e}")))?;
    if ci.content_type != ID_SIGNED_DATA {
        return Err(sig_err("the PKCS#7 block is not SignedData"));
    }
    let sd: SignedData = ci
        .content
        .decode_as()
        .map_err(|e| sig_err(format!("bad SignedData: {e}")))?;
    let si = sd
        .signer_infos
        .0
        .iter()
        .next()
        .ok_or_else(|| sig_err("SignedData has no signer"))?;
    let digest = match si.digest_alg.oid {
        o if o == ID_SHA1 => DigestAlg::Sha1,
        o if o == ID_SHA256 => DigestAlg::Sha256,
        o => return Err(sig_err(format!("unsupported digest algorithm {o}"))),
    };
    if digest == DigestAlg::Sha1 {
        // SHA-1 only where signapk itself would have used it, and only
        // when the caller accepts it.
        if cert.signature_algorithm.oid != SHA1_WITH_RSA {
            return Err(sig_err(
                "the package is signed with SHA-1, but the certificate is not a SHA-1 certificate: only SHA-1 (KitKat-era) certificates may sign with SHA-1",
            ));
        }
        if !opts.allow_sha1 {
            return Err(sig_err(
                "the package is signed with SHA-1 (a KitKat-era key): SHA-1 is accepted only when allowed explicitly (--allow-sha1)",
            ));
        }
    }
    if si.signed_attrs.is_some() {
        return Err(sig_err(
            "signed attributes are not used by signapk -w and are not accepted",
        ));
    }
    let hash = digest.hash_prefix(f, signed_len)?;
    key.verify(digest.padding(), &hash, si.signature.as_bytes())
        .map_err(|_| {
            sig_err(
                "signature verification failed: the package was changed or signed with another key",
            )
        })?;
    let embedded_cert_matches = sd.certificates.as_ref().is_some_and(|c| {
        c.0.iter()
            .any(|cc| matches!(cc, CertificateChoices::Certificate(x) if x == &cert))
    });
    Ok(Verified {
        digest,
        signed_len,
        embedded_cert_matches,
    })
}
