//! Builds small workbooks for tests: a minimal XLSX writer (a stored zip
//! with inline strings, no compression), shared by the unit tests of
//! [`super::parse`] and the integration tests. Not used by the server.

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

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A zip of `files` stored without compression; `None` when a name, a part
/// or the archive outgrows a plain (non-zip64) zip.
fn zip_stored(files: &[(String, Vec<u8>)]) -> Option<Vec<u8>> {
    fn u16le(v: &mut Vec<u8>, x: usize) -> Option<()> {
        v.extend_from_slice(&u16::try_from(x).ok()?.to_le_bytes());
        Some(())
    }
    fn u32le(v: &mut Vec<u8>, x: usize) -> Option<()> {
        v.extend_from_slice(&u32::try_from(x).ok()?.to_le_bytes());
        Some(())
    }
    let (mut out, mut central) = (Vec::new(), Vec::new());
    for (name, data) in files {
        let offset = out.len();
        let crc = crc32(data) as usize;
        // Local file header: version 2.0, no flags, stored, 1980-01-01.
        u32le(&mut out, 0x0403_4b50)?;
        for x in [20, 0, 0, 0, 33] {
            u16le(&mut out, x)?;
        }
        for x in [crc, data.len(), data.len()] {
            u32le(&mut out, x)?;
        }
        u16le(&mut out, name.len())?;
        u16le(&mut out, 0)?;
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        u32le(&mut central, 0x0201_4b50)?;
        for x in [20, 20, 0, 0, 0, 33] {
            u16le(&mut central, x)?;
        }
        for x in [crc, data.len(), data.len()] {
            u32le(&mut central, x)?;
        }
        for x in [name.len(), 0, 0, 0, 0] {
            u16le(&mut central, x)?;
        }
        u32le(&mut central, 0)?;
        u32le(&mut central, offset)?;
        central.extend_from_slice(name.as_bytes());
    }
    let cd_offset = out.len();
    out.extend_from_slice(&central);
    u32le(&mut out, 0x0605_4b50)?;
    for x in [0, 0, files.len(), files.len()] {
        u16le(&mut out, x)?;
    }
    u32le(&mut out, central.len())?;
    u32le(&mut out, cd_offset)?;
    u16le(&mut out, 0)?;
    Some(out)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The letters of the 0-based column `c`: A … Z, AA, AB …
fn column(mut c: usize) -> String {
    let mut letters = Vec::new();
    loop {
        letters.push(b'A' + (c % 26) as u8);
        if c < 26 {
            break;
        }
        c = c / 26 - 1;
    }
    letters.reverse();
    String::from_utf8_lossy(&letters).into_owned()
}

/// A workbook; each sheet is (name, rows), a row being (row number, cells
/// from column A). `None` only when it outgrows a plain (non-zip64) zip.
pub fn xlsx(sheets: &[(&str, Rows<'_>)]) -> Option<Vec<u8>> {
    const NS: &str = "http://schemas.openxmlformats.org/spreadsheetml/2006/main";
    const REL: &str = "http://schemas.openxmlformats.org/officeDocument/2006/relationships";
    let mut files = Vec::new();
    let mut types = String::new();
    let mut wb_sheets = String::new();
    let mut rels = String::new();
    for (i, (name, rows)) in sheets.iter().enumerate() {
        let n = i + 1;
        let mut xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?><worksheet xmlns=\"{NS}\"><sheetData>"
        );
        for (r, cells) in rows {
            xml.push_str(&format!("<row r=\"{r}\">"));
            for (c, cell) in cells.iter().enumerate() {
                let col = column(c);
                match cell {
                    Cell::S(s) => {
                        xml.push_str(&format!("<c r=\"{col}{r}\" t=\"inlineStr\"><is><t>{}</t></is></c>", esc(s)))
                    }
                    Cell::N(v) => xml.push_str(&format!("<c r=\"{col}{r}\"><v>{v}</v></c>")),
                    Cell::D(v) => xml.push_str(&format!("<c r=\"{col}{r}\" s=\"1\"><v>{v}</v></c>")),
                }
            }
            xml.push_str("</row>");
        }
        xml.push_str("</sheetData></worksheet>");
        files.push((format!("xl/worksheets/sheet{n}.xml"), xml.into_bytes()));
        types.push_str(&format!("<Override PartName=\"/xl/worksheets/sheet{n}.xml\" ContentType=\"application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml\"/>"));
        wb_sheets.push_str(&format!("<sheet name=\"{}\" sheetId=\"{n}\" r:id=\"rId{n}\"/>", esc(name)));
        rels.push_str(&format!(
            "<Relationship Id=\"rId{n}\" Type=\"{REL}/worksheet\" Target=\"worksheets/sheet{n}.xml\"/>"
        ));
    }
    let styles_rel = sheets.len() + 1;
    rels.push_str(&format!("<Relationship Id=\"rId{styles_rel}\" Type=\"{REL}/styles\" Target=\"styles.xml\"/>"));
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
    zip_stored(&files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_letters() {
        let got: Vec<String> = [0, 1, 25, 26, 27, 51, 52, 701, 702].into_iter().map(column).collect();
        assert_eq!(got, ["A", "B", "Z", "AA", "AB", "AZ", "BA", "ZZ", "AAA"]);
    }

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }
}
