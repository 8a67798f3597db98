//! How a session was opened, and what the ID token says of it: the `amr`
//! values (RFC 8176) and the `acr` level, from one table so that the
//! sign-in use cases, the console's step-up and the README agree.
//!
//! | sign-in                         | `amr`                         | `acr`                        |
//! |---------------------------------|-------------------------------|------------------------------|
//! | password                        | `pwd`                         | `urn:coop-idp:acr:password`  |
//! | password, then TOTP or recovery | `pwd` `otp` `mfa`             | `urn:coop-idp:acr:mfa`       |
//! | passkey alone (agents)          | `pop` `user`                  | `urn:coop-idp:acr:passkey`   |
//! | password, then passkey          | `pwd` `pop` `user` `mfa`      | `urn:coop-idp:acr:mfa`       |
//!
//! A passkey is always asked with user verification (its PIN, fingerprint
//! or face, checked by the authenticator): `pop` says the key was proven,
//! `user` that its holder was verified. `mfa` marks two independent
//! factors given to coop-idp; it is what the console's step-up asks for.

use super::session::{ACR_MFA, ACR_PASSWORD, AMR_OTP, AMR_PASSWORD};

/// Proof of possession of a key (RFC 8176 `pop`).
pub const AMR_POP: &str = "pop";
/// The user verified by the authenticator (RFC 8176 `user`).
pub const AMR_USER: &str = "user";
/// Two factors were given (RFC 8176 `mfa`).
pub const AMR_MFA: &str = "mfa";
/// A passkey with user verification, alone.
pub const ACR_PASSKEY: &str = "urn:coop-idp:acr:passkey";

/// What a sign-in was made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Factors {
    Password,
    /// A TOTP code or a recovery code after the password.
    PasswordAndOtp,
    /// An agent's passkey, with user verification, instead of the password.
    Passkey,
    /// An administrator's passkey as the second factor.
    PasswordAndPasskey,
}

impl Factors {
    pub fn amr(self) -> &'static [&'static str] {
        match self {
            Factors::Password => &[AMR_PASSWORD],
            Factors::PasswordAndOtp => &[AMR_PASSWORD, AMR_OTP, AMR_MFA],
            Factors::Passkey => &[AMR_POP, AMR_USER],
            Factors::PasswordAndPasskey => &[AMR_PASSWORD, AMR_POP, AMR_USER, AMR_MFA],
        }
    }

    pub fn acr(self) -> &'static str {
        match self {
            Factors::Password => ACR_PASSWORD,
            Factors::Passkey => ACR_PASSKEY,
            Factors::PasswordAndOtp | Factors::PasswordAndPasskey => ACR_MFA,
        }
    }

    /// Whether two factors were given (`acr` `urn:coop-idp:acr:mfa`).
    pub fn is_mfa(self) -> bool {
        matches!(self, Factors::PasswordAndOtp | Factors::PasswordAndPasskey)
    }

    /// The sign-in's method as its `signin` record names it.
    pub fn method(self) -> &'static str {
        match self {
            Factors::Password => "password",
            Factors::PasswordAndOtp => "password_otp",
            Factors::Passkey => "passkey",
            Factors::PasswordAndPasskey => "password_passkey",
        }
    }
}

/// Whether a session's `amr` holds a second factor (the console's step-up).
/// Sessions opened before `mfa` was written say `pwd otp`.
pub fn has_second_factor(amr: &[String]) -> bool {
    amr.iter().any(|m| m == AMR_MFA || m == AMR_OTP)
}

/// Whether a relying party's `acr_values` (the values we know, see
/// `ACR_VALUES_SUPPORTED`) ask for a second factor: `urn:coop-idp:acr:mfa`
/// alone. Several values are a preference among them, which any sign-in
/// answers (OIDC Core §3.1.2.1: `acr_values` is a voluntary request).
pub fn mfa_requested(acr_values: &[String]) -> bool {
    matches!(acr_values, [only] if only == ACR_MFA)
}

/// Whether a sign-in, or a live session, must still give a second factor
/// before it answers a request: the request asks for `mfa`, the session
/// lacks it, and the account holds a second factor it can give (TOTP or a
/// passkey). An account holding none is answered with the `acr` it reached,
/// which the relying party reads in the ID token.
pub fn step_up_needed(mfa_requested: bool, session_has_mfa: bool, second_factor_held: bool) -> bool {
    mfa_requested && !session_has_mfa && second_factor_held
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_sign_in_says_its_factors() {
        assert_eq!(Factors::Password.amr(), ["pwd"]);
        assert_eq!(Factors::Password.acr(), "urn:coop-idp:acr:password");
        assert_eq!(Factors::PasswordAndOtp.amr(), ["pwd", "otp", "mfa"]);
        assert_eq!(Factors::PasswordAndOtp.acr(), "urn:coop-idp:acr:mfa");
        assert_eq!(Factors::Passkey.amr(), ["pop", "user"]);
        assert_eq!(Factors::Passkey.acr(), "urn:coop-idp:acr:passkey");
        assert_eq!(Factors::PasswordAndPasskey.amr(), ["pwd", "pop", "user", "mfa"]);
        assert_eq!(Factors::PasswordAndPasskey.acr(), "urn:coop-idp:acr:mfa");
    }

    #[test]
    fn mfa_is_said_exactly_when_two_factors_were_given() {
        for f in [Factors::Password, Factors::PasswordAndOtp, Factors::Passkey, Factors::PasswordAndPasskey] {
            let two = matches!(f, Factors::PasswordAndOtp | Factors::PasswordAndPasskey);
            assert_eq!(f.amr().contains(&AMR_MFA), two, "{f:?}");
            let amr: Vec<String> = f.amr().iter().map(|s| s.to_string()).collect();
            assert_eq!(has_second_factor(&amr), two, "{f:?}");
            assert_eq!(f.acr() == ACR_MFA, two, "{f:?}");
        }
    }

    #[test]
    fn a_session_from_before_mfa_keeps_its_second_factor() {
        assert!(has_second_factor(&["pwd".into(), "otp".into()]));
        assert!(!has_second_factor(&["pwd".into()]));
        assert!(!has_second_factor(&["pop".into(), "user".into()]));
    }

    #[test]
    fn only_mfa_alone_is_a_request_for_a_second_factor() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(mfa_requested(&v(&[ACR_MFA])));
        assert!(!mfa_requested(&v(&[])));
        assert!(!mfa_requested(&v(&[ACR_PASSWORD])));
        assert!(!mfa_requested(&v(&[ACR_PASSKEY])));
        assert!(!mfa_requested(&v(&[ACR_PASSWORD, ACR_MFA])), "several values are a preference");
        assert!(!mfa_requested(&v(&[ACR_PASSWORD, ACR_MFA, ACR_PASSKEY])));
    }

    #[test]
    fn a_step_up_is_needed_only_when_it_can_be_given() {
        assert!(step_up_needed(true, false, true));
        assert!(!step_up_needed(true, true, true), "the session already has two factors");
        assert!(!step_up_needed(true, false, false), "no second factor to give: the acr reached is said");
        assert!(!step_up_needed(false, false, true), "not asked");
        for f in [Factors::Password, Factors::PasswordAndOtp, Factors::Passkey, Factors::PasswordAndPasskey] {
            assert_eq!(step_up_needed(true, f.is_mfa(), true), !f.is_mfa(), "{f:?}");
        }
    }

    #[test]
    fn methods_are_distinct() {
        let all = [Factors::Password, Factors::PasswordAndOtp, Factors::Passkey, Factors::PasswordAndPasskey];
        let names: std::collections::BTreeSet<_> = all.iter().map(|f| f.method()).collect();
        assert_eq!(names.len(), all.len());
    }
}
