//! Lists the vendored DSFR files (static/dsfr/) for `src/web/assets.rs`,
//! which embeds each with `include_bytes!`: the binary serves the design
//! system on its own, and adding an icon needs no code change.

use std::fs;
use std::path::{Path, PathBuf};

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap_or_else(|e| panic!("read {}: {e}", dir.display())).path();
        if path.is_dir() {
            walk(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let out_dir = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let root = Path::new(&manifest).join("static").join("dsfr");
    println!("cargo:rerun-if-changed=static/dsfr");
    let mut files = Vec::new();
    walk(&root, &mut files);
    let mut entries: Vec<(String, PathBuf)> = files
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(&root).expect("under static/dsfr").to_string_lossy().replace('\\', "/");
            (rel, p)
        })
        .collect();
    // Sorted, so that the server can binary-search the table.
    entries.sort();
    let mut table = String::from("&[\n");
    // Paths from the crate's own folder at compile time, not absolute ones:
    // cargo may reuse this script's output for another checkout of the crate
    // built in the same target folder.
    for (rel, _) in entries {
        table.push_str(&format!(
            "    ({rel:?}, include_bytes!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/static/dsfr/\", {rel:?})) as &[u8]),\n"
        ));
    }
    table.push_str("]\n");
    fs::write(Path::new(&out_dir).join("dsfr_files.rs"), table).expect("write dsfr_files.rs");
}
