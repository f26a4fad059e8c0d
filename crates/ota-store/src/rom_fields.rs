//! The rules ROM fields follow: codenames, channels, incrementals,
//! versions and file names go into URL paths, file names on phones and
//! SQL binds, so each is a short run of safe characters, checked wherever
//! one enters (publishing, every client request).

/// Why a ROM field was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value:?}: {rule}")]
pub struct BadRomField {
    /// Which field.
    pub what: &'static str,
    /// The value (cut to 80 characters).
    pub value: String,
    /// What it must look like.
    pub rule: &'static str,
}

fn check_charset(
    what: &'static str,
    value: &str,
    max: usize,
    extra: &[u8],
    rule: &'static str,
) -> Result<(), BadRomField> {
    let ok = !value.is_empty()
        && value.len() <= max
        && value.as_bytes()[0].is_ascii_alphanumeric()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b));
    if ok {
        Ok(())
    } else {
        Err(BadRomField {
            what,
            value: value.chars().take(80).collect(),
            rule,
        })
    }
}

/// A device codename (`ro.product.device`): 1–64 of `A-Z a-z 0-9 _ . -`,
/// starting with a letter or digit. These go into URL paths and SQL binds.
pub fn check_codename(value: &str) -> Result<(), BadRomField> {
    check_charset(
        "device codename",
        value,
        64,
        b"_.-",
        "1-64 letters, digits, '_', '.', '-', starting with a letter or digit",
    )
}

/// A channel or romtype: 1–32 of `A-Z a-z 0-9 _ . -`, starting with a
/// letter or digit.
pub fn check_channel(what: &'static str, value: &str) -> Result<(), BadRomField> {
    check_charset(
        what,
        value,
        32,
        b"_.-",
        "1-32 letters, digits, '_', '.', '-', starting with a letter or digit",
    )
}

/// An incremental (`ro.build.version.incremental`): 1–128 of
/// `A-Z a-z 0-9 _ . + -`, starting with a letter or digit.
pub fn check_incremental(what: &'static str, value: &str) -> Result<(), BadRomField> {
    check_charset(
        what,
        value,
        128,
        b"_.+-",
        "1-128 letters, digits, '_', '.', '+', '-', starting with a letter or digit",
    )
}

/// A ROM version (`ro.lineage.build.version`): 1–32 of `A-Z a-z 0-9 _ . + -`.
pub fn check_rom_version(value: &str) -> Result<(), BadRomField> {
    check_charset(
        "ROM version",
        value,
        32,
        b"_.+-",
        "1-32 letters, digits, '_', '.', '+', '-', starting with a letter or digit",
    )
}

/// A file name clients save a build as: 1–200 of `A-Z a-z 0-9 _ . + -`,
/// starting with a letter or digit, ending in `.zip` (no path, no `..`).
pub fn check_filename(value: &str) -> Result<(), BadRomField> {
    const RULE: &str =
        "a plain file name: 1-200 letters, digits, '_', '.', '+', '-', starting with a letter or digit, ending in .zip";
    check_charset("file name", value, 200, b"_.+-", RULE)?;
    if !value.ends_with(".zip") || value.contains("..") {
        return Err(BadRomField {
            what: "file name",
            value: value.chars().take(80).collect(),
            rule: RULE,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_rules() {
        for good in ["hammerhead", "A0001", "kiwi_lte", "m8.d"] {
            assert!(check_codename(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "../x",
            "a/b",
            "-x",
            ".x",
            "a b",
            "<b>",
            "x';--",
            "é",
            &"a".repeat(65),
        ] {
            assert!(check_codename(bad).is_err(), "{bad:?}");
        }
        assert!(check_incremental("incremental", "eng.user.20240101+1").is_ok());
        assert!(check_incremental("incremental", "1 OR 1=1").is_err());
        assert!(check_channel("channel", "RC").is_ok());
        assert!(check_channel("channel", "nightly\n").is_err());
        assert!(check_filename("lineage-21.0-20240101-nightly-hammerhead-signed.zip").is_ok());
        for bad in [
            "update.zip/..",
            "../update.zip",
            "a..zip",
            "update.txt",
            "up date.zip",
            ".zip",
        ] {
            assert!(check_filename(bad).is_err(), "{bad:?}");
        }
        let e = check_codename("a/b").unwrap_err();
        assert!(
            e.to_string().starts_with("invalid device codename \"a/b\""),
            "{e}"
        );
    }
}
