//! How the keys that are not plain whole numbers are read and checked; each
//! reader takes the merged sources and its key's name, and names the key in
//! its error.

use std::net::SocketAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use url::Url;

use super::table::Source;
use super::{
    BrandLogo, ConfigError, LogFormat, MAX_BRAND_LOGO_BYTES, MAX_BRAND_NAME_CHARS, Theme, invalid, is_loopback_host,
};

type Read<T> = Result<T, ConfigError>;

pub fn issuer(source: &Source, key: &str) -> Read<Url> {
    let text = source.get(key).unwrap_or_default();
    let issuer = Url::parse(&text).map_err(|e| invalid(key, e.to_string()))?;
    if !matches!(issuer.scheme(), "http" | "https") {
        return Err(invalid(key, "must be an http or https URL"));
    }
    if issuer.query().is_some() || issuer.fragment().is_some() {
        return Err(invalid(key, "must not have a query or fragment"));
    }
    if issuer.scheme() == "http" && !is_loopback_host(&issuer) {
        return Err(invalid(key, "must be https unless the host is loopback"));
    }
    Ok(issuer)
}

pub fn address(source: &Source, key: &str) -> Read<SocketAddr> {
    let text = source.get(key).unwrap_or_default();
    text.parse().map_err(|_| invalid(key, format!("`{text}` is not an address:port")))
}

pub fn optional_address(source: &Source, key: &str) -> Read<Option<SocketAddr>> {
    match source.get(key).filter(|s| !s.is_empty()) {
        Some(_) => address(source, key).map(Some),
        None => Ok(None),
    }
}

pub fn path(source: &Source, key: &str) -> Read<PathBuf> {
    Ok(PathBuf::from(source.get(key).unwrap_or_default()))
}

pub fn text(source: &Source, key: &str) -> Read<String> {
    Ok(source.get(key).unwrap_or_default())
}

/// Unset: the embedded database under `data_dir`.
pub fn database_url(source: &Source, key: &str) -> Read<String> {
    let url = source
        .get(key)
        .unwrap_or_else(|| format!("sqlite://{}/coop-idp.db", path(source, "data_dir").unwrap_or_default().display()));
    if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(invalid(key, "must start with sqlite:, postgres:// or postgresql://"));
    }
    Ok(url)
}

pub fn redis_url(source: &Source, key: &str) -> Read<Option<String>> {
    let url = source.get(key).filter(|s| !s.is_empty());
    if let Some(r) = &url
        && !(r.starts_with("redis://") || r.starts_with("rediss://"))
    {
        return Err(invalid(key, "must start with redis:// or rediss://"));
    }
    Ok(url)
}

pub fn smtp_url(source: &Source, key: &str) -> Read<Option<String>> {
    let url = source.get(key).filter(|s| !s.is_empty());
    if let Some(s) = &url {
        let u = Url::parse(s).map_err(|e| invalid(key, e.to_string()))?;
        if !matches!(u.scheme(), "smtp" | "smtps") {
            return Err(invalid(key, "must start with smtp:// or smtps://"));
        }
    }
    Ok(url)
}

/// A mailbox, `Name <address>` or the address alone.
pub fn mailbox(source: &Source, key: &str) -> Read<String> {
    let mailbox = source.get(key).unwrap_or_default();
    if !mailbox.contains('@') {
        return Err(invalid(key, "must contain an email address"));
    }
    Ok(mailbox)
}

/// Unset: the address of `mail_from`.
pub fn accessibility_contact(source: &Source, key: &str) -> Read<String> {
    match source.get(key).filter(|s| !s.trim().is_empty()) {
        Some(c) if c.contains('@') && !c.contains(['<', '>', '"']) => Ok(c.trim().to_string()),
        Some(_) => Err(invalid(key, "must be an email address")),
        None => Ok(address_of(&mailbox(source, "mail_from")?)),
    }
}

/// The address of a mailbox written `Name <address>` (or the text itself).
fn address_of(mailbox: &str) -> String {
    match (mailbox.rfind('<'), mailbox.rfind('>')) {
        (Some(a), Some(b)) if a < b => mailbox[a + 1..b].trim().to_string(),
        _ => mailbox.trim().to_string(),
    }
}

pub fn log_format(source: &Source, key: &str) -> Read<LogFormat> {
    match source.get(key).as_deref() {
        Some("text") => Ok(LogFormat::Text),
        Some("json") => Ok(LogFormat::Json),
        other => Err(invalid(key, format!("`{}`: expected text or json", other.unwrap_or("")))),
    }
}

pub fn theme(source: &Source, key: &str) -> Read<Theme> {
    match source.get(key).as_deref().map(str::trim) {
        Some("neutral") => Ok(Theme::Neutral),
        Some("dsfr") => Ok(Theme::Dsfr),
        other => Err(invalid(key, format!("`{}`: expected neutral or dsfr", other.unwrap_or("")))),
    }
}

pub fn brand_name(source: &Source, key: &str) -> Read<String> {
    let name = source.get(key).unwrap_or_default().trim().to_string();
    if name.is_empty() {
        return Err(invalid(key, "must not be empty"));
    }
    if name.chars().count() > MAX_BRAND_NAME_CHARS {
        return Err(invalid(key, format!("longer than {MAX_BRAND_NAME_CHARS} characters")));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid(key, "must be one line of text"));
    }
    Ok(name)
}

/// The image file named by the key, read now so that a missing, oversized
/// or mislabelled file stops start-up rather than showing a broken image.
pub fn brand_logo(source: &Source, key: &str) -> Read<Option<BrandLogo>> {
    let Some(text) = source.get(key).filter(|s| !s.trim().is_empty()) else { return Ok(None) };
    let path = PathBuf::from(text.trim());
    let shown = path.display().to_string();
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or_default().to_ascii_lowercase();
    let content_type = match extension.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        _ => return Err(invalid(key, format!("{shown}: expected a .png, .jpg, .jpeg, .webp or .svg file"))),
    };
    let too_large = |size: u64| {
        invalid(key, format!("{shown} is {size} bytes, more than the {MAX_BRAND_LOGO_BYTES} (256 KiB) a logo may have"))
    };
    let meta = std::fs::metadata(&path).map_err(|e| invalid(key, format!("{shown}: {e}")))?;
    if !meta.is_file() {
        return Err(invalid(key, format!("{shown} is not a file")));
    }
    if meta.len() > MAX_BRAND_LOGO_BYTES {
        return Err(too_large(meta.len()));
    }
    let bytes = std::fs::read(&path).map_err(|e| invalid(key, format!("{shown}: {e}")))?;
    // The file may have grown between the two looks.
    if bytes.len() as u64 > MAX_BRAND_LOGO_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    if !is_image_of_type(content_type, &bytes) {
        return Err(invalid(key, format!("{shown} is not a {content_type} image, as its name says")));
    }
    Ok(Some(BrandLogo { path, content_type, bytes: bytes.into() }))
}

/// The first bytes every file of the type starts with (an SVG: its tag).
fn is_image_of_type(content_type: &str, bytes: &[u8]) -> bool {
    match content_type {
        "image/png" => bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "image/jpeg" => bytes.starts_with(&[0xFF, 0xD8, 0xFF]),
        "image/webp" => bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP",
        "image/svg+xml" => std::str::from_utf8(bytes).is_ok_and(|text| text.contains("<svg")),
        _ => false,
    }
}

/// Comma-separated addresses and CIDR blocks (a TOML list arrives joined).
pub fn networks(source: &Source, key: &str) -> Read<Vec<IpNet>> {
    source
        .get(key)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| invalid(key, format!("`{s}` is not an address or CIDR block")))
        })
        .collect()
}

/// The fallback of `argon2_max_concurrent`: one hash per CPU.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
}

/// Comma-separated email domains (a TOML list arrives joined), lower case,
/// without a leading `@`; each must be a domain name of at least two labels.
pub fn domains(source: &Source, key: &str) -> Read<Vec<String>> {
    source
        .get(key)
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().trim_start_matches('@').to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .map(|d| {
            let label_ok = |l: &str| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            };
            if d.len() <= 253 && d.contains('.') && d.split('.').all(label_ok) {
                Ok(d)
            } else {
                Err(invalid(key, format!("`{d}` is not an email domain")))
            }
        })
        .collect()
}
