//! The password policy (R2, convention art. 3.4), in the one module every
//! path that sets a password goes through.
//!
//! The convention asks for at least 8 characters with an uppercase letter, a
//! lowercase letter, a digit and a special character. We add, as stricter
//! rules that do not contradict it: no part of the user's email or names, and
//! nothing that the zxcvbn estimator (which ships the well-known lists of
//! common and breached passwords) rates guessable in under 10^6 attempts.
//!
//! Characters are counted after Unicode NFKC normalisation ([`normalize`]),
//! which is also what is hashed and what a typed password is verified as,
//! so the same password typed on another keyboard matches.
//! - uppercase / lowercase: Unicode letters with that case (É, ß…);
//! - digit: any Unicode numeric character (0–9, ², ٣…);
//! - special: a visible character of the general categories P
//!   (punctuation: Pc Pd Ps Pe Pi Pf Po) or S (symbols: Sm Sc Sk So, emoji
//!   included). Marks (Mn Mc Me: a combining accent alone, a variation
//!   selector) and separators (Zs Zl Zp) do not count.
//! - refused outright: the general categories C — control (Cc), format (Cf:
//!   zero-width space, U+202E and other direction overrides, soft hyphen),
//!   private use (Co) and unassigned (Cn) — which cannot be seen, so cannot
//!   be typed back with confidence.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;
use unicode_properties::{GeneralCategoryGroup, UnicodeGeneralCategory};

pub const MIN_LENGTH: usize = 8;
/// Long passphrases are welcome; this only bounds the work per request.
pub const MAX_LENGTH: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    TooShort,
    TooLong,
    NoUppercase,
    NoLowercase,
    NoDigit,
    NoSpecial,
    Invisible,
    ContainsPersonalData,
    TooCommon,
    Mismatch,
    /// A reset to the password the account already has (`auth::links`).
    SameAsCurrent,
}

impl Violation {
    /// The message key shown next to the field (see `web::i18n`).
    pub fn key(self) -> &'static str {
        match self {
            Violation::TooShort => "pw_too_short",
            Violation::TooLong => "pw_too_long",
            Violation::NoUppercase => "pw_no_uppercase",
            Violation::NoLowercase => "pw_no_lowercase",
            Violation::NoDigit => "pw_no_digit",
            Violation::NoSpecial => "pw_no_special",
            Violation::Invisible => "pw_invisible",
            Violation::ContainsPersonalData => "pw_personal",
            Violation::TooCommon => "pw_common",
            Violation::Mismatch => "pw_mismatch",
            Violation::SameAsCurrent => "pw_same_as_current",
        }
    }
}

/// What the password must not contain: the user's own identity.
pub struct PersonalData<'a> {
    pub email: &'a str,
    pub given_name: &'a str,
    pub family_name: &'a str,
}

/// A password that satisfies the policy, NFKC-normalised. Only [`check`]
/// builds one, so a function taking a `Password` cannot get another kind.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(…)")
    }
}

/// NFKC: the one form of a password, used for the policy checks, for
/// hashing and for verifying a typed password (`auth::check_password`).
pub fn normalize(raw: &str) -> String {
    raw.nfkc().collect()
}

/// Lower case without accents, for "contains" comparisons.
fn fold(s: &str) -> String {
    s.nfkd().filter(|c| !is_combining_mark(*c)).flat_map(char::to_lowercase).collect()
}

/// Checks every rule and returns all that are broken, in display order.
pub fn check(raw: &str, confirmation: &str, personal: &PersonalData) -> Result<Password, Vec<Violation>> {
    let password = normalize(raw);
    let mut broken = Vec::new();
    let length = password.chars().count();
    if length < MIN_LENGTH {
        broken.push(Violation::TooShort);
    }
    if length > MAX_LENGTH {
        broken.push(Violation::TooLong);
    }
    if !password.chars().any(char::is_uppercase) {
        broken.push(Violation::NoUppercase);
    }
    if !password.chars().any(char::is_lowercase) {
        broken.push(Violation::NoLowercase);
    }
    if !password.chars().any(char::is_numeric) {
        broken.push(Violation::NoDigit);
    }
    if !password.chars().any(is_special) {
        broken.push(Violation::NoSpecial);
    }
    if password.chars().any(is_invisible) {
        broken.push(Violation::Invisible);
    }
    let folded = fold(&password);
    if personal_fragments(personal).iter().any(|f| folded.contains(f.as_str())) {
        broken.push(Violation::ContainsPersonalData);
    }
    if broken.is_empty() && is_common(&password, personal) {
        broken.push(Violation::TooCommon);
    }
    if normalize(confirmation) != password {
        broken.push(Violation::Mismatch);
    }
    if broken.is_empty() { Ok(Password(password)) } else { Err(broken) }
}

pub fn is_special(c: char) -> bool {
    matches!(c.general_category_group(), GeneralCategoryGroup::Punctuation | GeneralCategoryGroup::Symbol)
}

/// Control, format, private-use and unassigned characters (Cs cannot occur
/// in a Rust string).
pub fn is_invisible(c: char) -> bool {
    c.general_category_group() == GeneralCategoryGroup::Other
}

/// Parts of the identity long enough to be meaningful (3+ characters).
fn personal_fragments(p: &PersonalData) -> Vec<String> {
    let local = p.email.rsplit_once('@').map(|(l, _)| l).unwrap_or(p.email);
    let mut parts = vec![fold(local)];
    for name in [p.given_name, p.family_name, local] {
        parts.extend(fold(name).split(|c: char| !c.is_alphanumeric()).map(str::to_string));
    }
    parts.retain(|s| s.chars().count() >= 3);
    parts.sort();
    parts.dedup();
    parts
}

/// zxcvbn score 0–1: found in (or a trivial variant of) the common and
/// breached password lists it ships. Only the first 64 characters are
/// estimated: its matching is super-linear and long passphrases are not
/// "common" anyway.
fn is_common(password: &str, p: &PersonalData) -> bool {
    let head: String = password.chars().take(64).collect();
    let inputs = [p.email, p.given_name, p.family_name];
    (zxcvbn::zxcvbn(&head, &inputs).score() as u8) < 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ME: PersonalData =
        PersonalData { email: "jean-eric.ndiaye@cc-girou.fr", given_name: "Jean-Éric", family_name: "N'Diaye" };
    const GOOD: &str = "Tuile-Verte-7-Basalte";

    fn broken(p: &str) -> Vec<Violation> {
        check(p, p, &ME).err().unwrap_or_default()
    }

    #[test]
    fn a_compliant_password_passes() {
        assert!(check(GOOD, GOOD, &ME).is_ok());
    }

    #[test]
    fn each_convention_rule_breaks_alone() {
        assert_eq!(broken("Tv-7ba!"), vec![Violation::TooShort]);
        assert_eq!(broken("tuile-verte-7-basalte"), vec![Violation::NoUppercase]);
        assert_eq!(broken("TUILE-VERTE-7-BASALTE"), vec![Violation::NoLowercase]);
        assert_eq!(broken("Tuile-Verte-sept-Basalte"), vec![Violation::NoDigit]);
        assert_eq!(broken("TuileVerte7Basalte"), vec![Violation::NoSpecial]);
        assert_eq!(broken(&format!("A{}", "b1-".repeat(90))), vec![Violation::TooLong]);
    }

    #[test]
    fn personal_data_is_refused_case_and_accent_insensitively() {
        assert_eq!(broken("Ndiaye-Tuile-7!"), vec![Violation::ContainsPersonalData]);
        assert_eq!(broken("ERIC-tuile-7-Verte"), vec![Violation::ContainsPersonalData]);
        assert_eq!(broken("Tuile-7-JEAN-ERIC!x"), vec![Violation::ContainsPersonalData]);
    }

    #[test]
    fn common_passwords_are_refused_even_when_compliant() {
        assert_eq!(broken("Password1!"), vec![Violation::TooCommon]);
        assert_eq!(broken("Azerty123!"), vec![Violation::TooCommon]);
    }

    #[test]
    fn confirmation_must_match() {
        assert_eq!(check(GOOD, "other", &ME).err(), Some(vec![Violation::Mismatch]));
    }

    #[test]
    fn unicode_classes_and_nfkc() {
        assert!(is_special('€') && is_special('!') && is_special('🙂'));
        assert!(!is_special('é') && !is_special('7') && !is_special(' '));
        // Fullwidth letters normalise to ASCII under NFKC.
        assert_eq!(normalize("Ｔuile"), "Tuile");
        assert!(check("Écluse-Ôtée-9-Brume", "Écluse-Ôtée-9-Brume", &ME).is_ok());
        // 128 characters are accepted, without truncation.
        let long = format!("Aa1!{}", "x-Y".repeat(41));
        assert_eq!(long.chars().count(), 127);
        assert_eq!(check(&long, &long, &ME).map(|p| p.expose().len()).ok(), Some(long.len()));
    }

    #[test]
    fn invisible_characters_are_refused_and_marks_are_not_special() {
        // Each would otherwise be the only "special" character.
        for c in ['\u{200B}', '\u{202E}', '\u{00AD}', '\u{E000}'] {
            let p = format!("TuileVerte7Basalte{c}");
            assert_eq!(broken(&p), vec![Violation::NoSpecial, Violation::Invisible], "U+{:04X}", c as u32);
        }
        // A variation selector or a combining accent alone is allowed but
        // is not the special character.
        for c in ['\u{FE0F}', '\u{0301}'] {
            assert!(!is_special(c) && !is_invisible(c));
            let p = format!("TuileVerte7Basalte{c}");
            assert_eq!(broken(&p), vec![Violation::NoSpecial], "U+{:04X}", c as u32);
        }
        // The same characters beside a visible special one: still refused.
        assert_eq!(broken("Tuile-Verte-7-Basalte\u{200B}"), vec![Violation::Invisible]);
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,300}") {
            let _ = check(&s, &s, &ME);
        }
    }
}
