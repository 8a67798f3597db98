//! The membership convention's life cycle (art. 4; R7): signed for 12 months
//! from its signature, renewed tacitly by 12-month periods, unless a party
//! gives notice of non-renewal at least one month before a term (a later
//! notice takes effect at the following term), or it is terminated.

use time::Date;

use crate::dates::{add_months, parse_iso};
use crate::store::partners::PartnerRow;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Convention {
    pub signed_on: Option<Date>,
    pub non_renewal_notified_on: Option<Date>,
    pub terminated_on: Option<Date>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConventionState {
    NotSigned,
    /// In force; `term` is the end of the current 12-month period.
    InForce {
        term: Date,
    },
    /// Ended at a term after a notice of non-renewal.
    Ended {
        on: Date,
    },
    Terminated {
        on: Date,
    },
}

impl ConventionState {
    /// R7: accesses can be opened only while the convention is in force.
    pub fn allows_openings(self) -> bool {
        matches!(self, ConventionState::InForce { .. })
    }
}

impl Convention {
    /// The partner's convention, from its recorded dates.
    pub fn of(p: &PartnerRow) -> Convention {
        Convention {
            signed_on: p.convention_signed_on.as_deref().and_then(parse_iso),
            non_renewal_notified_on: p.non_renewal_notified_on.as_deref().and_then(parse_iso),
            terminated_on: p.convention_terminated_on.as_deref().and_then(parse_iso),
        }
    }

    /// The end of the 12-month period that contains `day` (a term).
    pub fn term_after(&self, day: Date) -> Option<Date> {
        let signed = self.signed_on?;
        let mut k = 1;
        loop {
            let term = add_months(signed, 12 * k);
            if term > day || k > 1200 {
                return Some(term);
            }
            k += 1;
        }
    }

    /// The term at which a notice given on `notice` ends the convention.
    pub fn end_after_notice(&self, notice: Date) -> Option<Date> {
        let term = self.term_after(notice)?;
        // At least one month before the term; otherwise the following one.
        if add_months(notice, 1) <= term { Some(term) } else { self.term_after(term) }
    }

    pub fn state(&self, today: Date) -> ConventionState {
        let Some(signed) = self.signed_on else { return ConventionState::NotSigned };
        if signed > today {
            return ConventionState::NotSigned;
        }
        if let Some(on) = self.terminated_on
            && on <= today
        {
            return ConventionState::Terminated { on };
        }
        if let Some(end) = self.non_renewal_notified_on.and_then(|n| self.end_after_notice(n))
            && end <= today
        {
            return ConventionState::Ended { on: end };
        }
        match self.term_after(today) {
            Some(term) => ConventionState::InForce { term },
            None => ConventionState::NotSigned,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn signed(d: Date) -> Convention {
        Convention { signed_on: Some(d), ..Default::default() }
    }

    #[test]
    fn not_signed_allows_nothing() {
        assert_eq!(Convention::default().state(date!(2026 - 01 - 01)), ConventionState::NotSigned);
        assert!(!ConventionState::NotSigned.allows_openings());
        // Signed in the future: not yet.
        assert_eq!(signed(date!(2026 - 06 - 01)).state(date!(2026 - 05 - 31)), ConventionState::NotSigned);
    }

    #[test]
    fn twelve_month_term_renewed_tacitly() {
        let c = signed(date!(2025 - 03 - 15));
        assert_eq!(c.state(date!(2025 - 03 - 15)), ConventionState::InForce { term: date!(2026 - 03 - 15) });
        assert_eq!(c.state(date!(2026 - 03 - 15)), ConventionState::InForce { term: date!(2027 - 03 - 15) });
        assert!(c.state(date!(2030 - 01 - 01)).allows_openings());
    }

    #[test]
    fn non_renewal_needs_a_month_of_notice() {
        let mut c = signed(date!(2025 - 03 - 15));
        c.non_renewal_notified_on = Some(date!(2026 - 02 - 15));
        assert_eq!(c.state(date!(2026 - 03 - 14)), ConventionState::InForce { term: date!(2026 - 03 - 15) });
        assert_eq!(c.state(date!(2026 - 03 - 15)), ConventionState::Ended { on: date!(2026 - 03 - 15) });
        // Too late for this term: ends at the next one.
        c.non_renewal_notified_on = Some(date!(2026 - 02 - 16));
        assert!(c.state(date!(2026 - 03 - 15)).allows_openings());
        assert_eq!(c.state(date!(2027 - 03 - 15)), ConventionState::Ended { on: date!(2027 - 03 - 15) });
    }

    #[test]
    fn termination_ends_at_once() {
        let mut c = signed(date!(2025 - 03 - 15));
        c.terminated_on = Some(date!(2025 - 09 - 01));
        assert!(c.state(date!(2025 - 08 - 31)).allows_openings());
        assert_eq!(c.state(date!(2025 - 09 - 01)), ConventionState::Terminated { on: date!(2025 - 09 - 01) });
    }
}
