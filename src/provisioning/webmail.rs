//! Public webmail domains: when a partner has declared no email domain, an
//! address at one of these is not a professional address (R8).

const PUBLIC_WEBMAIL: &[&str] = &[
    "gmail.com",
    "googlemail.com",
    "yahoo.fr",
    "yahoo.com",
    "ymail.com",
    "hotmail.fr",
    "hotmail.com",
    "outlook.fr",
    "outlook.com",
    "live.fr",
    "live.com",
    "msn.com",
    "icloud.com",
    "me.com",
    "mac.com",
    "aol.com",
    "aol.fr",
    "orange.fr",
    "wanadoo.fr",
    "free.fr",
    "sfr.fr",
    "neuf.fr",
    "numericable.fr",
    "bbox.fr",
    "laposte.net",
    "gmx.fr",
    "gmx.com",
    "gmx.net",
    "protonmail.com",
    "proton.me",
    "pm.me",
    "tutanota.com",
    "yandex.com",
    "mail.com",
    "club-internet.fr",
    "aliceadsl.fr",
    "noos.fr",
    "voila.fr",
    "caramail.com",
    "netcourrier.com",
];

pub fn is_public_webmail(domain: &str) -> bool {
    let d = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    PUBLIC_WEBMAIL.contains(&d.as_str())
}

#[cfg(test)]
mod tests {
    #[test]
    fn public_and_professional_domains() {
        assert!(super::is_public_webmail("Gmail.com"));
        assert!(super::is_public_webmail("orange.fr"));
        assert!(!super::is_public_webmail("cc-girou.fr"));
        assert!(!super::is_public_webmail("caf.fr"));
    }
}
