//! Peak memory and time of reading crafted annex-1 files (issue 13): each
//! file is written to disk, then read and parsed by a child process of this
//! bench, as `annex1 import` would, and the child reports its own peak
//! resident set (`VmHWM`, which, unlike `wait4`'s `ru_maxrss`, does not
//! inherit the parent's peak across fork and exec). Target: under 200 MB for
//! every file.
//!
//!     cargo bench --bench annex1_hostile

use std::process::Command;
use std::time::Instant;

use coop_idp::provisioning::annex1::fixture::{Cell::S, Rows, hostile, sheet_data, xlsx_parts, zip};
use coop_idp::provisioning::annex1::limits::cell_name;
use coop_idp::provisioning::annex1::parse_annex1;

const CHILD: &str = "COOP_IDP_BENCH_ANNEX_FILE";

/// A valid annex of `people` rows, as CSV.
fn people_csv(people: usize) -> Vec<u8> {
    let mut csv = String::from("Liste;Nom;Prénom(s);Adresse électronique professionnelle;Qualité/fonction\n");
    for i in 0..people {
        csv.push_str(&format!("ouvert;Nom{i};Prénom{i};agent{i}@cc-girou.fr;Fonction {}\n", i % 17));
    }
    csv.into_bytes()
}

/// A workbook as large as the limits let it be: a 16 MiB shared-strings
/// part of a million tiny strings, and a sheet of 200,000 filled cells
/// (9,999 rows of 20 columns of 30 characters), about 15 MiB of XML.
fn at_every_limit_xlsx() -> Vec<u8> {
    let sst: String = (0..950_000).map(|i| format!("<si><t>{}</t></si>", i % 10)).collect();
    let header: Rows<'_> = vec![(
        1,
        vec![S("Liste"), S("Nom"), S("Prénom(s)"), S("Adresse électronique professionnelle"), S("Qualité/fonction")],
    )];
    let mut xml = sheet_data(&header);
    for r in 2..=10_000 {
        xml.push_str(&format!("<row r=\"{r}\">"));
        for c in 0..20 {
            let text = format!("{:030}", r * 20 + c);
            xml.push_str(&format!("<c r=\"{}\" t=\"inlineStr\"><is><t>{text}</t></is></c>", cell_name(r, c)));
        }
        xml.push_str("</row>");
    }
    zip(&xlsx_parts(&[("Annexe 1", xml)], Some(&sst)), true).unwrap_or_default()
}

/// The same at the limits as CSV (Windows-1252, so every byte is decoded).
fn at_every_limit_csv() -> Vec<u8> {
    let mut text = String::from("Liste;Nom;Prénom(s);Adresse électronique professionnelle;Qualité/fonction\n");
    for r in 2..=10_000 {
        let line: Vec<String> = (0..20).map(|c| format!("é{:029}", r * 20 + c)).collect();
        text.push_str(&line.join(";"));
        text.push('\n');
    }
    encoding_rs::WINDOWS_1252.encode(&text).0.into_owned()
}

/// The same at the limits as ODS: 9,999 rows of 12 cells, about 14 MiB of
/// `content.xml`, which calamine holds as one rectangle per sheet.
fn at_every_limit_ods() -> Vec<u8> {
    let mut table =
        hostile::ods_row(&["Liste", "Nom", "Prénom(s)", "Adresse électronique professionnelle", "Qualité/fonction"]);
    for r in 2..=10_000 {
        let cells: Vec<String> = (0..12).map(|c| format!("{:030}", r * 12 + c)).collect();
        table.push_str(&hostile::ods_row(&cells.iter().map(String::as_str).collect::<Vec<_>>()));
    }
    hostile::ods(&table)
}

fn cases() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    vec![
        ("5,000 people (CSV, baseline)", "annexe1.csv", people_csv(5_000)),
        ("at every limit (XLSX, accepted)", "annexe1.xlsx", at_every_limit_xlsx()),
        ("at every limit (CSV, Windows-1252)", "annexe1.csv", at_every_limit_csv()),
        ("at every limit (ODS)", "annexe1.ods", at_every_limit_ods()),
        ("sparse: one value at XFD1048576", "annexe1.xlsx", hostile::sparse_xlsx()),
        ("dense: 1,000,000 numbers", "annexe1.xlsx", hostile::dense_xlsx(62_500, 16)),
        ("dense: 400,000 numbers, 16 MiB of XML", "annexe1.xlsx", hostile::dense_xlsx(25_000, 16)),
        ("shared string of 800 MB", "annexe1.xlsx", hostile::shared_string_bomb_xlsx(800 << 20)),
        ("one 4 KiB string in 200,000 cells", "annexe1.xlsx", hostile::shared_string_fanout_xlsx(4096, 200_000)),
        ("zip bomb: 1 GB of zeros", "annexe1.xlsx", hostile::zip_bomb_xlsx(1 << 30)),
        ("zip bomb, sizes in headers lying", "annexe1.xlsx", hostile::lying_sizes_xlsx(1 << 30)),
        ("ODS: a row repeated 1,048,576 times", "annexe1.ods", hostile::ods_repeated_rows(1_048_576)),
        ("ODS: a cell repeated 16,384 times", "annexe1.ods", hostile::ods_repeated_cells(16_384)),
        ("CSV: 10 MB of separators on one line", "annexe1.csv", hostile::csv_many_fields(10_000_000)),
        ("CSV renamed .xlsx", "annexe1.xlsx", hostile::csv_as_xlsx()),
        ("truncated archive", "annexe1.xlsx", hostile::truncated_xlsx()),
    ]
}

/// The child: reads the file and parses it, prints the outcome.
fn child(path: &str, name: &str) {
    let bytes = std::fs::read(path).expect("file");
    let started = Instant::now();
    let outcome = match parse_annex1(name, &bytes) {
        Ok(parsed) => format!("read: {} people, {} problems", parsed.rows.len(), parsed.problems.len()),
        Err(p) => format!("refused: {}", p.code),
    };
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let peak_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(f64::NAN);
    println!("{outcome}\t{:.0}\t{:.0}", started.elapsed().as_secs_f64() * 1000.0, peak_kb * 1.024 / 1000.0);
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD) {
        let (path, name) = spec.split_once('|').expect("path|name");
        child(path, name);
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let me = std::env::current_exe().expect("bench binary");
    println!("| file | size | outcome | parse time | peak RSS of the process |");
    println!("|---|---:|---|---:|---:|");
    for (i, (label, name, bytes)) in cases().into_iter().enumerate() {
        let path = dir.path().join(format!("{i}-{name}"));
        std::fs::write(&path, &bytes).expect("write");
        let size = bytes.len();
        drop(bytes);
        let out = Command::new(&me).env(CHILD, format!("{}|{name}", path.display())).output().expect("child");
        let text = String::from_utf8_lossy(&out.stdout);
        let fields: Vec<&str> = text.trim().split('\t').collect();
        let (outcome, ms, mb) = match (out.status.success(), fields.as_slice()) {
            (true, [outcome, ms, mb]) => (outcome.to_string(), *ms, *mb),
            _ => (format!("crashed ({})", out.status), "-", "-"),
        };
        println!("| {label} | {} KB | {outcome} | {ms} ms | {mb} MB |", size.div_ceil(1000));
    }
}
