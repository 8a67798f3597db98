//! User-facing text: French first, English on request.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use super::texts as catalogue;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locale {
    Fr,
    En,
}

impl Locale {
    pub fn code(self) -> &'static str {
        match self {
            Locale::Fr => "fr",
            Locale::En => "en",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        let primary = s.trim().split(['-', '_', ';']).next().unwrap_or("").to_ascii_lowercase();
        match primary.as_str() {
            "fr" => Some(Locale::Fr),
            "en" => Some(Locale::En),
            _ => None,
        }
    }

    /// The first supported tag of a space-separated `ui_locales`, or of an
    /// `Accept-Language` header (in the order given; q-values are rarely used
    /// to reorder these two languages).
    pub fn first_supported(list: &str) -> Option<Self> {
        list.split([' ', ',']).filter(|s| !s.is_empty()).find_map(Locale::parse)
    }

    /// Chooses the page language: explicit switch, then the remembered
    /// choice, then `ui_locales`, then `Accept-Language`; French by default.
    pub fn choose(switch: Option<&str>, cookie: Option<&str>, ui_locales: Option<&str>, accept: Option<&str>) -> Self {
        switch
            .and_then(Locale::parse)
            .or_else(|| cookie.and_then(Locale::parse))
            .or_else(|| ui_locales.and_then(Locale::first_supported))
            .or_else(|| accept.and_then(Locale::first_supported))
            .unwrap_or(Locale::Fr)
    }

    pub fn other(self) -> Self {
        match self {
            Locale::Fr => Locale::En,
            Locale::En => Locale::Fr,
        }
    }
}

/// The texts of `locale`, by key: what templates read as `t.<key>`.
/// Built once per language from its catalogue (`web/texts/`).
pub fn texts(locale: Locale) -> &'static BTreeMap<&'static str, &'static str> {
    static MAPS: OnceLock<[BTreeMap<&'static str, &'static str>; 2]> = OnceLock::new();
    let maps = MAPS.get_or_init(|| [Locale::Fr, Locale::En].map(|l| catalogue::of(l).entries().collect()));
    match locale {
        Locale::Fr => &maps[0],
        Locale::En => &maps[1],
    }
}

/// One text by key; a key no catalogue has is a bug of the caller (keys
/// are literals in the code), logged, and shown as nothing.
pub fn text(locale: Locale, key: &str) -> &'static str {
    match texts(locale).get(key) {
        Some(t) => t,
        None => {
            tracing::error!(key, "no text for this key");
            ""
        }
    }
}

/// The headers of the connection-log CSV in `locale`, in the order of
/// `audit::export::CSV_COLUMNS`.
pub fn csv_headers(locale: Locale) -> [&'static str; 12] {
    crate::audit::export::CSV_COLUMNS.map(|c| text(locale, &format!("csv_col_{c}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choice_order_and_default() {
        assert_eq!(Locale::choose(None, None, None, None), Locale::Fr);
        assert_eq!(Locale::choose(None, None, None, Some("en-GB,en;q=0.8")), Locale::En);
        assert_eq!(Locale::choose(None, None, Some("de en"), Some("fr")), Locale::En);
        assert_eq!(Locale::choose(None, Some("fr"), Some("en"), None), Locale::Fr);
        assert_eq!(Locale::choose(Some("en"), Some("fr"), None, None), Locale::En);
        assert_eq!(Locale::choose(None, None, None, Some("de, es")), Locale::Fr);
    }

    #[test]
    fn every_key_has_a_text_in_both_languages() {
        for locale in [Locale::Fr, Locale::En] {
            for (k, t) in catalogue::of(locale).entries() {
                assert!(!t.trim().is_empty(), "{k} ({})", locale.code());
            }
        }
    }

    #[test]
    fn every_csv_column_has_a_header_in_both_languages() {
        for locale in [Locale::Fr, Locale::En] {
            let headers = csv_headers(locale);
            assert!(headers.iter().all(|h| !h.is_empty()), "{headers:?}");
            let distinct: std::collections::BTreeSet<_> = headers.iter().collect();
            assert_eq!(distinct.len(), headers.len(), "{headers:?}");
        }
        assert_eq!(csv_headers(Locale::Fr)[2], "Type d'événement");
        assert_eq!(csv_headers(Locale::En)[2], "Event kind");
    }

    /// The pages read the catalogue flat (`t.<key>`): a key declared in
    /// two page groups would silently shadow the other.
    #[test]
    fn every_key_is_defined_once() {
        let mut seen = std::collections::BTreeSet::new();
        for (k, _) in catalogue::of(Locale::Fr).entries() {
            assert!(seen.insert(k), "{k} is defined twice");
        }
        assert_eq!(texts(Locale::Fr).len(), seen.len());
    }
}
