//! Builds workbooks for tests: a minimal XLSX writer (inline strings), and
//! the crafted files of [`hostile`] that try to make a reader allocate
//! without bound, shared by the unit tests of [`super::parse`], the
//! integration tests and `benches/annex1_hostile.rs`. Not used by the server.

use super::limits::cell_name;

/// The kind of a cell.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    /// An inline string.
    S(&'a str),
    /// A number without date format.
    N(f64),
    /// A serial with the built-in date format 14.
    D(f64),
}

/// The rows of a sheet: (row number, cells from column A).
pub type Rows<'a> = Vec<(u32, Vec<Cell<'a>>)>;

/// A zip of `files`, stored or deflated; `None` when a part outgrows a
/// plain (non-zip64) zip.
pub fn zip(files: &[(String, Vec<u8>)], deflate: bool) -> Option<Vec<u8>> {
    use std::io::Write;
    let method = if deflate { zip::CompressionMethod::Deflated } else { zip::CompressionMethod::Stored };
    let options = zip::write::SimpleFileOptions::default().compression_method(method);
    let options = if deflate { options.compression_level(Some(1)) } else { options };
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in files {
        out.start_file(name.as_str(), options).ok()?;
        out.write_all(data).ok()?;
    }
    out.finish().ok().map(std::io::Cursor::into_inner)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A workbook; each sheet is (name, rows), a row being (row number, cells
/// from column A). `None` only when it outgrows a plain (non-zip64) zip.
pub fn xlsx(sheets: &[(&str, Rows<'_>)]) -> Option<Vec<u8>> {
    let sheets: Vec<(&str, String)> = sheets.iter().map(|(name, rows)| (*name, sheet_data(rows))).collect();
    zip(&xlsx_parts(&sheets, None), false)
}

/// The `<row>` elements of a sheet.
pub fn sheet_data(rows: &Rows<'_>) -> String {
    let mut xml = String::new();
    for (r, cells) in rows {
        xml.push_str(&format!("<row r=\"{r}\">"));
        for (c, cell) in cells.iter().enumerate() {
            let at = cell_name(*r as usize, c);
            match cell {
                Cell::S(s) => xml.push_str(&format!("<c r=\"{at}\" t=\"inlineStr\"><is><t>{}</t></is></c>", esc(s))),
                Cell::N(v) => xml.push_str(&format!("<c r=\"{at}\"><v>{v}</v></c>")),
                Cell::D(v) => xml.push_str(&format!("<c r=\"{at}\" s=\"1\"><v>{v}</v></c>")),
            }
        }
        xml.push_str("</row>");
    }
    xml
}

/// The parts of a workbook whose sheets are (name, the XML inside
/// `<sheetData>`), with a shared-strings part when given (the XML inside
/// `<sst>`).
pub fn xlsx_parts(sheets: &[(&str, String)], shared_strings: Option<&str>) -> Vec<(String, Vec<u8>)> {
    const NS: &str = "http://schemas.openxmlformats.org/spreadsheetml/2006/main";
    const REL: &str = "http://schemas.openxmlformats.org/officeDocument/2006/relationships";
    let mut files = Vec::new();
    let mut types = String::new();
    let mut wb_sheets = String::new();
    let mut rels = String::new();
    for (i, (name, data)) in sheets.iter().enumerate() {
        let n = i + 1;
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?><worksheet xmlns=\"{NS}\"><sheetData>{data}</sheetData></worksheet>"
        );
        files.push((format!("xl/worksheets/sheet{n}.xml"), xml.into_bytes()));
        types.push_str(&format!("<Override PartName=\"/xl/worksheets/sheet{n}.xml\" ContentType=\"application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml\"/>"));
        wb_sheets.push_str(&format!("<sheet name=\"{}\" sheetId=\"{n}\" r:id=\"rId{n}\"/>", esc(name)));
        rels.push_str(&format!(
            "<Relationship Id=\"rId{n}\" Type=\"{REL}/worksheet\" Target=\"worksheets/sheet{n}.xml\"/>"
        ));
    }
    let styles_rel = sheets.len() + 1;
    rels.push_str(&format!("<Relationship Id=\"rId{styles_rel}\" Type=\"{REL}/styles\" Target=\"styles.xml\"/>"));
    if let Some(sst) = shared_strings {
        let n = sheets.len() + 2;
        rels.push_str(&format!(
            "<Relationship Id=\"rId{n}\" Type=\"{REL}/sharedStrings\" Target=\"sharedStrings.xml\"/>"
        ));
        types.push_str("<Override PartName=\"/xl/sharedStrings.xml\" ContentType=\"application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml\"/>");
        files.push((
            "xl/sharedStrings.xml".into(),
            format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><sst xmlns=\"{NS}\">{sst}</sst>").into_bytes(),
        ));
    }
    files.push(("[Content_Types].xml".into(), format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Types xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\">\
         <Default Extension=\"rels\" ContentType=\"application/vnd.openxmlformats-package.relationships+xml\"/>\
         <Default Extension=\"xml\" ContentType=\"application/xml\"/>\
         <Override PartName=\"/xl/workbook.xml\" ContentType=\"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml\"/>\
         <Override PartName=\"/xl/styles.xml\" ContentType=\"application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml\"/>{types}</Types>").into_bytes()));
    files.push(("_rels/.rels".into(), format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Relationships xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\">\
         <Relationship Id=\"rId1\" Type=\"{REL}/officeDocument\" Target=\"xl/workbook.xml\"/></Relationships>").into_bytes()));
    files.push(("xl/workbook.xml".into(), format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><workbook xmlns=\"{NS}\" xmlns:r=\"{REL}\"><sheets>{wb_sheets}</sheets></workbook>").into_bytes()));
    files.push(("xl/_rels/workbook.xml.rels".into(), format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Relationships xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\">{rels}</Relationships>").into_bytes()));
    files.push(("xl/styles.xml".into(), format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><styleSheet xmlns=\"{NS}\"><cellXfs count=\"2\"><xf numFmtId=\"0\"/><xf numFmtId=\"14\" applyNumberFormat=\"1\"/></cellXfs></styleSheet>").into_bytes()));
    files
}

/// Crafted files, each trying one way to make a reader allocate or spin
/// without bound. Every one must be refused with a clear problem, in
/// bounded memory (measured by `benches/annex1_hostile.rs`).
pub mod hostile {
    use super::{Cell::S, Rows, cell_name, sheet_data, xlsx_parts, zip};

    /// The canonical header and one person, as `<row>` elements.
    fn header_and_person() -> String {
        let rows: Rows<'_> = vec![
            (
                1,
                vec![
                    S("Liste"),
                    S("Nom"),
                    S("Prénom(s)"),
                    S("Adresse électronique professionnelle"),
                    S("Qualité/fonction"),
                ],
            ),
            (2, vec![S("ouvert"), S("Dupont"), S("Marie"), S("marie.dupont@cc-girou.fr"), S("Coordinatrice CTG")]),
        ];
        sheet_data(&rows)
    }

    fn xlsx_with(sheet: String, shared: Option<&str>) -> Vec<u8> {
        zip(&xlsx_parts(&[("Annexe 1", sheet)], shared), true).unwrap_or_default()
    }

    /// A person and one value at `XFD1048576`: a declared range of 17
    /// billion cells (what once took the server down).
    pub fn sparse_xlsx() -> Vec<u8> {
        let far = "<row r=\"1048576\"><c r=\"XFD1048576\" t=\"inlineStr\"><is><t>x</t></is></c></row>";
        xlsx_with(format!("<dimension ref=\"A1:XFD1048576\"/>{}{far}", header_and_person()), None)
    }

    /// `rows` rows of `cols` numbers each, after the person.
    pub fn dense_xlsx(rows: usize, cols: usize) -> Vec<u8> {
        let mut xml = header_and_person();
        for r in 3..rows + 3 {
            xml.push_str(&format!("<row r=\"{r}\">"));
            for c in 0..cols {
                xml.push_str(&format!("<c r=\"{}\"><v>{c}</v></c>", cell_name(r, c)));
            }
            xml.push_str("</row>");
        }
        xlsx_with(xml, None)
    }

    /// One shared string of `bytes` letters (deflate shrinks it about a
    /// thousand times), used by one cell.
    pub fn shared_string_bomb_xlsx(bytes: usize) -> Vec<u8> {
        let sst = format!("<si><t>{}</t></si>", "A".repeat(bytes));
        let cell = "<row r=\"3\"><c r=\"A3\" t=\"s\"><v>0</v></c></row>";
        xlsx_with(format!("{}{cell}", header_and_person()), Some(&sst))
    }

    /// One shared string of `bytes` letters used by `cells` cells: little
    /// to decompress, much to copy.
    pub fn shared_string_fanout_xlsx(bytes: usize, cells: usize) -> Vec<u8> {
        let sst = format!("<si><t>{}</t></si>", "B".repeat(bytes));
        let mut xml = header_and_person();
        for i in 0..cells {
            let (r, c) = (3 + i / 6, i % 6);
            if c == 0 {
                xml.push_str(&format!("<row r=\"{r}\">"));
            }
            xml.push_str(&format!("<c r=\"{}\" t=\"s\"><v>0</v></c>", cell_name(r, c + 6)));
            if c == 5 || i + 1 == cells {
                xml.push_str("</row>");
            }
        }
        xlsx_with(xml, Some(&sst))
    }

    /// A valid workbook plus a part of `bytes` zeros.
    pub fn zip_bomb_xlsx(bytes: usize) -> Vec<u8> {
        let mut parts = xlsx_parts(&[("Annexe 1", header_and_person())], None);
        parts.push(("xl/media/padding.bin".into(), vec![0; bytes]));
        zip(&parts, true).unwrap_or_default()
    }

    /// [`zip_bomb_xlsx`] whose headers claim every part is 100 bytes long.
    pub fn lying_sizes_xlsx(bytes: usize) -> Vec<u8> {
        let mut book = zip_bomb_xlsx(bytes);
        // Local headers (PK\3\4) hold the uncompressed size at +22, central
        // ones (PK\1\2) at +24.
        let mut i = 0;
        while i + 30 <= book.len() {
            let at = match &book[i..i + 4] {
                b"PK\x03\x04" => Some(i + 22),
                b"PK\x01\x02" => Some(i + 24),
                _ => None,
            };
            if let Some(at) = at {
                book[at..at + 4].copy_from_slice(&100u32.to_le_bytes());
            }
            i += 1;
        }
        book
    }

    /// An ODS whose `content.xml` holds `table` (the XML inside
    /// `<table:table>`).
    pub fn ods(table: &str) -> Vec<u8> {
        let content = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><office:document-content \
             xmlns:office=\"urn:oasis:names:tc:opendocument:xmlns:office:1.0\" \
             xmlns:table=\"urn:oasis:names:tc:opendocument:xmlns:table:1.0\" \
             xmlns:text=\"urn:oasis:names:tc:opendocument:xmlns:text:1.0\"><office:body><office:spreadsheet>\
             <table:table table:name=\"Annexe 1\">{table}</table:table></office:spreadsheet></office:body>\
             </office:document-content>"
        );
        let manifest = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><manifest:manifest \
             xmlns:manifest=\"urn:oasis:names:tc:opendocument:xmlns:manifest:1.0\">\
             <manifest:file-entry manifest:full-path=\"/\" manifest:media-type=\"application/vnd.oasis.opendocument.spreadsheet\"/>\
             <manifest:file-entry manifest:full-path=\"content.xml\" manifest:media-type=\"text/xml\"/></manifest:manifest>";
        let parts = vec![
            ("mimetype".to_string(), b"application/vnd.oasis.opendocument.spreadsheet".to_vec()),
            ("META-INF/manifest.xml".to_string(), manifest.as_bytes().to_vec()),
            ("content.xml".to_string(), content.into_bytes()),
        ];
        zip(&parts, true).unwrap_or_default()
    }

    /// An ODS row of the given string cells.
    pub fn ods_row(cells: &[&str]) -> String {
        let cells: String = cells
            .iter()
            .map(|c| format!("<table:table-cell office:value-type=\"string\"><text:p>{c}</text:p></table:table-cell>"))
            .collect();
        format!("<table:table-row>{cells}</table:table-row>")
    }

    /// The header and the person, as ODS rows.
    pub fn ods_header_and_person() -> String {
        ods_row(&["Liste", "Nom", "Prénom(s)", "Adresse électronique professionnelle", "Qualité/fonction"])
            + &ods_row(&["ouvert", "Dupont", "Marie", "marie.dupont@cc-girou.fr", "Coordinatrice CTG"])
    }

    /// A row holding a value, repeated `times` times.
    pub fn ods_repeated_rows(times: u64) -> Vec<u8> {
        let row = format!(
            "<table:table-row table:number-rows-repeated=\"{times}\"><table:table-cell office:value-type=\"float\" \
             office:value=\"1\"><text:p>1</text:p></table:table-cell></table:table-row>"
        );
        ods(&(ods_header_and_person() + &row))
    }

    /// A cell holding a value, repeated `times` times along its row.
    pub fn ods_repeated_cells(times: u64) -> Vec<u8> {
        let row = format!(
            "<table:table-row><table:table-cell table:number-columns-repeated=\"{times}\" office:value-type=\"float\" \
             office:value=\"1\"><text:p>1</text:p></table:table-cell></table:table-row>"
        );
        ods(&(ods_header_and_person() + &row))
    }

    /// CSV text under a workbook's name.
    pub fn csv_as_xlsx() -> Vec<u8> {
        "Liste;Nom;Prénom(s);Adresse électronique professionnelle;Qualité/fonction\n\
         ouvert;Dupont;Marie;marie.dupont@cc-girou.fr;Coordinatrice CTG\n"
            .as_bytes()
            .to_vec()
    }

    /// The first half of a valid workbook.
    pub fn truncated_xlsx() -> Vec<u8> {
        let book = xlsx_with(header_and_person(), None);
        book[..book.len() / 2].to_vec()
    }

    /// A CSV header and one line of `fields` separators.
    pub fn csv_many_fields(fields: usize) -> Vec<u8> {
        let mut text = String::from("Liste;Nom;Prénom(s);Adresse électronique professionnelle;Qualité/fonction\n");
        text.push_str(&";".repeat(fields));
        text.push_str("x\n");
        text.into_bytes()
    }
}
