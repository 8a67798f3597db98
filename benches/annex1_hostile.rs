//! Peak memory and time of reading crafted annex-1 files (issue 13): each
//! file is written to disk, then read and parsed by a child process of this
//! bench, as `annex1 import` would, and the child's peak resident set is
//! read from the kernel (`wait4`). Target: under 200 MB for every file.
//!
//!     cargo bench --bench annex1_hostile

use std::process::Command;
use std::time::Instant;

use coop_idp::provisioning::annex1::fixture::{hostile, sheet_data, xlsx_parts, zip, Cell::S, Rows};
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
/// (9,999 rows of 20 columns), about 15 MiB of XML.
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
            let text = format!("{:040}", r * 20 + c);
            xml.push_str(&format!("<c r=\"{}\" t=\"inlineStr\"><is><t>{text}</t></is></c>", cell_name(r, c)));
        }
        xml.push_str("</row>");
    }
    zip(&xlsx_parts(&[("Annexe 1", xml)], Some(&sst)), true).unwrap_or_default()
}

fn cases() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    vec![
        ("5,000 people (CSV, baseline)", "annexe1.csv", people_csv(5_000)),
        ("at every limit (XLSX, accepted)", "annexe1.xlsx", at_every_limit_xlsx()),
        ("sparse: one value at XFD1048576", "annexe1.xlsx", hostile::sparse_xlsx()),
        ("dense: 1,000,000 numbers", "annexe1.xlsx", hostile::dense_xlsx(62_500, 16)),
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
    println!("{outcome}\t{:.0}", started.elapsed().as_secs_f64() * 1000.0);
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
        let child = Command::new(&me)
            .env(CHILD, format!("{}|{name}", path.display()))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("child");
        let pid = child.id() as libc::pid_t;
        let mut out = child.stdout.expect("stdout");
        let mut text = String::new();
        std::io::Read::read_to_string(&mut out, &mut text).expect("read");
        // SAFETY: plain wait4 on our own child, with zeroed out-parameters.
        let (status, usage) = unsafe {
            let mut status = 0;
            let mut usage: libc::rusage = std::mem::zeroed();
            libc::wait4(pid, &mut status, 0, &mut usage);
            (status, usage)
        };
        let (outcome, ms) = text.trim().split_once('\t').unwrap_or(("crashed", "-"));
        let outcome = if status == 0 { outcome.to_string() } else { format!("crashed (status {status})") };
        println!(
            "| {label} | {} KB | {outcome} | {ms} ms | {:.0} MB |",
            size.div_ceil(1000),
            usage.ru_maxrss as f64 / 1000.0 * 1.024
        );
    }
}
