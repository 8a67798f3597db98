//! A plain A4 text document as PDF, for the attestation of destruction.
//!
//! The text is set in the standard Helvetica fonts with WinAnsiEncoding
//! (Windows-1252): every PDF reader has them, and the encoding covers French
//! (é è ê à â ç ô î ù û ë ï œ « » ’ –), so no font file needs to be embedded.
//! A character outside it is written as `?` rather than dropped.

use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str, TextStr};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Title,
    Heading,
    Body,
    Small,
}

impl Style {
    fn size(self) -> f32 {
        match self {
            Style::Title => 16.0,
            Style::Heading => 12.0,
            Style::Body => 10.5,
            Style::Small => 8.5,
        }
    }
    fn bold(self) -> bool {
        matches!(self, Style::Title | Style::Heading)
    }
    /// Characters per line: Helvetica averages about half an em per character.
    fn wrap_at(self) -> usize {
        (TEXT_WIDTH / (self.size() * 0.5)) as usize
    }
}

const PAGE_W: f32 = 595.0;
const PAGE_H: f32 = 842.0;
const MARGIN: f32 = 60.0;
const TEXT_WIDTH: f32 = PAGE_W - 2.0 * MARGIN;

/// One paragraph; an empty text is a blank line.
#[derive(Debug, Clone)]
pub struct Paragraph {
    pub style: Style,
    pub text: String,
}

impl Paragraph {
    pub fn new(style: Style, text: impl Into<String>) -> Self {
        Paragraph { style, text: text.into() }
    }
}

/// Windows-1252 bytes of `text`; unmappable characters become `?`.
pub fn win_ansi(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut buf = [0u8; 4];
    for c in text.chars() {
        let (bytes, _, unmappable) = encoding_rs::WINDOWS_1252.encode(c.encode_utf8(&mut buf));
        if unmappable || bytes.len() != 1 { out.push(b'?') } else { out.extend_from_slice(&bytes) }
    }
    out
}

/// Greedy word wrap at `width` characters (a longer word gets its own line).
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    lines.push(line);
    lines
}

/// Lays the paragraphs out on as many A4 pages as needed.
pub fn render(title: &str, paragraphs: &[Paragraph]) -> Vec<u8> {
    // Lines with their style, then cut into pages.
    let mut pages: Vec<Vec<(Style, String, f32)>> = vec![Vec::new()];
    let mut y = PAGE_H - MARGIN;
    for p in paragraphs {
        for line in wrap(&p.text, p.style.wrap_at()) {
            let lead = p.style.size() * 1.4;
            if y - lead < MARGIN {
                pages.push(Vec::new());
                y = PAGE_H - MARGIN;
            }
            y -= lead;
            if let Some(page) = pages.last_mut() {
                page.push((p.style, line, y));
            }
        }
        y -= p.style.size() * 0.5;
    }

    let catalog = Ref::new(1);
    let tree = Ref::new(2);
    let regular = Ref::new(3);
    let bold = Ref::new(4);
    let info = Ref::new(5);
    let first_page = 6;
    let page_ids: Vec<Ref> = (0..pages.len()).map(|i| Ref::new(first_page + 2 * i as i32)).collect();

    let mut pdf = Pdf::new();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree).kids(page_ids.iter().copied()).count(pages.len() as i32);
    pdf.type1_font(regular).base_font(Name(b"Helvetica")).encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.type1_font(bold).base_font(Name(b"Helvetica-Bold")).encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.document_info(info).title(TextStr(title)).producer(TextStr("coop-idp"));
    for (i, lines) in pages.iter().enumerate() {
        let page_id = page_ids[i];
        let content_id = Ref::new(page_id.get() + 1);
        let mut page = pdf.page(page_id);
        page.media_box(Rect::new(0.0, 0.0, PAGE_W, PAGE_H)).parent(tree).contents(content_id);
        page.resources().fonts().pair(Name(b"F1"), regular).pair(Name(b"F2"), bold);
        page.finish();
        let mut content = Content::new();
        for (style, text, y) in lines {
            let encoded = win_ansi(text);
            content.begin_text();
            content.set_font(Name(if style.bold() { b"F2" } else { b"F1" }), style.size());
            content.next_line(MARGIN, *y);
            content.show(Str(&encoded));
            content.end_text();
        }
        pdf.stream(content_id, &content.finish());
    }
    pdf.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn french_text_is_encoded_in_win_ansi() {
        assert_eq!(win_ansi("données détruites à l’échéance"), b"donn\xe9es d\xe9truites \xe0 l\x92\xe9ch\xe9ance");
        assert_eq!(win_ansi("œuvre « clé »"), b"\x9cuvre \xab cl\xe9 \xbb");
        assert_eq!(win_ansi("日"), b"?");
    }

    #[test]
    fn wrap_keeps_words_whole() {
        assert_eq!(wrap("un deux trois quatre", 9), vec!["un deux", "trois", "quatre"]);
        assert_eq!(wrap("", 9), vec![""]);
        assert_eq!(wrap("anticonstitutionnellement", 5), vec!["anticonstitutionnellement"]);
    }

    #[test]
    fn long_documents_get_more_pages() {
        let many: Vec<Paragraph> = (0..200).map(|i| Paragraph::new(Style::Body, format!("Ligne n° {i}"))).collect();
        let pdf = render("Essai", &many);
        assert!(pdf.starts_with(b"%PDF-"));
        let text = String::from_utf8_lossy(&pdf);
        assert!(!text.contains("/Count 1"), "200 lines need more than one page");
        assert!(text.contains("/WinAnsiEncoding"));
    }
}
