//! The login identifier: a professional email address.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("adresse vide / empty address")]
    Empty,
    #[error("adresse trop longue / address too long")]
    TooLong,
    #[error("adresse mal formée / malformed address")]
    Malformed,
}

/// An address as the user gave it, with its normalised form (trimmed,
/// lower-case) used for uniqueness and look-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfessionalEmail {
    display: String,
    normalized: String,
}

impl ProfessionalEmail {
    pub fn parse(input: &str) -> Result<Self, EmailError> {
        let display = input.trim();
        if display.is_empty() {
            return Err(EmailError::Empty);
        }
        // RFC 5321 path limit.
        if display.len() > 254 {
            return Err(EmailError::TooLong);
        }
        let (local, domain) = display.rsplit_once('@').ok_or(EmailError::Malformed)?;
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local.chars().all(|c| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars().all(|c| c.is_alphanumeric() || c == '-')
            });
        if !local_ok || !domain_ok {
            return Err(EmailError::Malformed);
        }
        Ok(ProfessionalEmail { display: display.to_string(), normalized: display.to_lowercase() })
    }

    pub fn as_str(&self) -> &str {
        &self.display
    }

    pub fn normalized(&self) -> &str {
        &self.normalized
    }

    pub fn domain(&self) -> &str {
        self.normalized.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
    }

    pub fn local_part(&self) -> &str {
        self.normalized.rsplit_once('@').map(|(l, _)| l).unwrap_or("")
    }
}

impl fmt::Display for ProfessionalEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_and_normalises_case() {
        let e = ProfessionalEmail::parse("  Marie.Dupont@CC-Girou.fr ").expect("valid");
        assert_eq!(e.as_str(), "Marie.Dupont@CC-Girou.fr");
        assert_eq!(e.normalized(), "marie.dupont@cc-girou.fr");
        assert_eq!(e.domain(), "cc-girou.fr");
    }

    #[test]
    fn refuses_malformed() {
        for bad in [
            "",
            "  ",
            "a",
            "a@b",
            "@x.fr",
            "a@.fr",
            "a..b@x.fr",
            ".a@x.fr",
            "a b@x.fr",
            "a@x..fr",
            "a@-x.fr",
            "a@x_y.fr",
        ] {
            assert!(ProfessionalEmail::parse(bad).is_err(), "{bad:?}");
        }
        // Surrounding whitespace (a pasted line end) is trimmed, not refused.
        assert_eq!(ProfessionalEmail::parse("a@x.fr\n").map(|e| e.as_str().to_string()), Ok("a@x.fr".to_string()));
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,300}") {
            let _ = ProfessionalEmail::parse(&s);
        }

        #[test]
        fn parsed_addresses_have_one_domain(s in "[a-z.]{1,20}@[a-z]{1,10}\\.[a-z]{2,4}") {
            if let Ok(e) = ProfessionalEmail::parse(&s) {
                prop_assert!(e.domain().contains('.'));
                prop_assert_eq!(e.normalized(), s.to_lowercase());
            }
        }
    }
}
