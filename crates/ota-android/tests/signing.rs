//! Signatures of OTA packages, checked by openssl (an independent
//! implementation): signapk's whole-file and jar signatures, tampering,
//! and SHA-1 only where allowed.

mod common;
use common::*;
use ota_android::package::BuildOptions;
use ota_android::sign::VerifyOptions;
use ota_android::{full, sign};
use std::io::Read;
use std::path::Path;
use std::process::Command;

fn openssl(args: &[&str]) -> std::process::Output {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl (apt install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Whether `openssl cms -verify` accepts the detached PKCS#7 `sig` over
/// `content`, with `cert` as the trusted certificate.
fn cms_verify(sig: &Path, content: &Path, cert: &Path) -> bool {
    let (sig, content, cert) = (
        sig.to_str().unwrap(),
        content.to_str().unwrap(),
        cert.to_str().unwrap(),
    );
    Command::new("openssl")
        .args([
            "cms", "-verify", "-binary", "-inform", "DER", "-in", sig, "-content", content,
        ])
        .args(["-CAfile", cert, "-purpose", "any", "-out", "/dev/null"])
        .output()
        .expect("openssl (apt install openssl)")
        .status
        .success()
}

/// Base64 of the SHA-256 of `data`, computed by openssl.
fn openssl_b64_sha256(b: &Builds, data: &[u8]) -> String {
    let p = b.path("digest-input");
    std::fs::write(&p, data).unwrap();
    let bin = b.path("digest.bin");
    openssl(&[
        "dgst",
        "-sha256",
        "-binary",
        "-out",
        bin.to_str().unwrap(),
        p.to_str().unwrap(),
    ]);
    let out = openssl(&["base64", "-A", "-in", bin.to_str().unwrap()]);
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn signature_is_accepted_by_openssl_and_tampering_is_caught() {
    let b = Builds::new();
    let (key, cert, pk8) = (b.path("key.pem"), b.path("cert.pem"), b.path("key.pk8"));
    let ks = key.to_str().unwrap();
    let cs = cert.to_str().unwrap();
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        ks,
        "-out",
        cs,
        "-days",
        "3650",
        "-subj",
        "/CN=ota test key",
        "-sha256",
    ]);
    openssl(&[
        "pkcs8",
        "-topk8",
        "-outform",
        "DER",
        "-nocrypt",
        "-in",
        ks,
        "-out",
        pk8.to_str().unwrap(),
    ]);
    let signer = sign::Signer::load(&pk8, &cert).unwrap();
    let signed = b.path("signed.zip");
    full::write_full(
        &b.tf(1),
        &signed,
        &BuildOptions {
            signer: Some(signer),
            ..Default::default()
        },
    )
    .unwrap();

    let v = sign::verify(&signed, &cert, VerifyOptions::default()).unwrap();
    assert!(v.embedded_cert_matches);
    // Independently: openssl checks the PKCS#7 over the signed range.
    let (signed_len, pkcs7) = sign::signature_block(&signed).unwrap();
    let all = std::fs::read(&signed).unwrap();
    assert_eq!(
        &all[signed_len as usize - 20..signed_len as usize - 16],
        b"PK\x05\x06"
    );
    let (content, sig) = (b.path("content"), b.path("sig.der"));
    std::fs::write(&content, &all[..signed_len as usize]).unwrap();
    std::fs::write(&sig, &pkcs7).unwrap();
    assert!(
        cms_verify(&sig, &content, &cert),
        "openssl refused the whole-file signature"
    );
    // The comment starts with signapk's message and the footer is ff ff.
    let n = all.len();
    assert_eq!(&all[n - 4..n - 2], &[0xff, 0xff]);
    let comment_len = u16::from_le_bytes([all[n - 2], all[n - 1]]) as usize;
    assert_eq!(
        &all[n - comment_len..n - comment_len + 18],
        b"signed by SignApk\0"
    );
    // The signed package is still a zip with the cert inside.
    let mut z = zip::ZipArchive::new(std::fs::File::open(&signed).unwrap()).unwrap();
    assert!(z.by_name("META-INF/com/android/otacert").is_ok());

    // The jar signature: CERT.RSA signs CERT.SF (openssl checks it), and
    // MANIFEST.MF holds each entry's digest.
    let mut read = |name: &str| {
        let mut v = Vec::new();
        z.by_name(name).unwrap().read_to_end(&mut v).unwrap();
        v
    };
    let (manifest, sf, rsa) = (
        read("META-INF/MANIFEST.MF"),
        read("META-INF/CERT.SF"),
        read("META-INF/CERT.RSA"),
    );
    let script = read("META-INF/com/google/android/updater-script");
    let (sf_path, rsa_path) = (b.path("CERT.SF"), b.path("CERT.RSA"));
    std::fs::write(&sf_path, &sf).unwrap();
    std::fs::write(&rsa_path, &rsa).unwrap();
    assert!(
        cms_verify(&rsa_path, &sf_path, &cert),
        "openssl refused CERT.RSA"
    );
    let manifest = String::from_utf8(manifest).unwrap();
    let b64 = openssl_b64_sha256(&b, &script);
    assert!(
        manifest.contains(&format!(
            "Name: META-INF/com/google/android/updater-script\r\nSHA-256-Digest: {b64}\r\n"
        )),
        "{manifest}"
    );
    assert!(manifest.contains("Name: META-INF/com/android/otacert\r\n"));
    assert!(manifest.lines().all(|l| l.len() <= 72));

    // One byte changed anywhere in the signed range: refused, by us and openssl.
    let mut bad = all.clone();
    bad[100] ^= 1;
    let tampered = b.path("tampered.zip");
    std::fs::write(&tampered, &bad).unwrap();
    let e = sign::verify(&tampered, &cert, VerifyOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("signature verification failed"), "{e}");
    std::fs::write(&content, &bad[..signed_len as usize]).unwrap();
    let accepted = cms_verify(&sig, &content, &cert);
    assert!(!accepted, "openssl accepted a tampered package");
    // Another key's certificate: refused.
    let (k2, c2) = (b.path("k2.pem"), b.path("c2.pem"));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        k2.to_str().unwrap(),
        "-out",
        c2.to_str().unwrap(),
        "-days",
        "1",
        "-subj",
        "/CN=other",
    ]);
    assert!(sign::verify(&signed, &c2, VerifyOptions::default()).is_err());
    // An unsigned package: a clear error.
    let unsigned = b.path("full-v1.zip");
    full::write_full(&b.tf(1), &unsigned, &BuildOptions::default()).unwrap();
    assert!(sign::verify(&unsigned, &cert, VerifyOptions::default())
        .unwrap_err()
        .to_string()
        .contains("not signed"));
    // Key and certificate that do not belong together.
    assert!(sign::Signer::load(&key, &c2)
        .unwrap_err()
        .to_string()
        .contains("is not the certificate of"));

    // SHA-1: a SHA-256 certificate never vouches for it, allowed or not.
    let mut sha1_signer = sign::Signer::load(&pk8, &cert).unwrap();
    sha1_signer.digest = sign::DigestAlg::Sha1;
    let forged = b.path("sha1-with-sha256-cert.zip");
    full::write_full(
        &b.tf(1),
        &forged,
        &BuildOptions {
            signer: Some(sha1_signer),
            ..Default::default()
        },
    )
    .unwrap();
    let e = sign::verify(&forged, &cert, VerifyOptions { allow_sha1: true })
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a SHA-1 certificate"), "{e}");
}

/// A KitKat-era key (certificate signed with SHA-1) signs with SHA-1, as
/// signapk does; verification accepts that only when allowed.
#[test]
fn sha1_signatures_need_a_sha1_certificate_and_permission() {
    let b = Builds::new();
    let (key, cert) = (b.path("key.pem"), b.path("cert.pem"));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
        "-days",
        "30",
        "-subj",
        "/CN=kitkat-era key",
        "-sha1",
    ]);
    let signer = sign::Signer::load(&key, &cert).unwrap();
    assert_eq!(signer.digest, sign::DigestAlg::Sha1);
    let signed = b.path("sha1.zip");
    full::write_full(
        &b.tf(1),
        &signed,
        &BuildOptions {
            signer: Some(signer),
            ..Default::default()
        },
    )
    .unwrap();
    let e = sign::verify(&signed, &cert, VerifyOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("accepted only when allowed explicitly"), "{e}");
    let v = sign::verify(&signed, &cert, VerifyOptions { allow_sha1: true }).unwrap();
    assert_eq!(v.digest, sign::DigestAlg::Sha1);
}
