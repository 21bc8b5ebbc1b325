//! Every committed fuzz input replays cleanly through the entry points the fuzz targets
//! call: the corpora (`fuzz/corpus/<target>`) and the inputs of fixed findings
//! (`fuzz/regressions/<target>`), so a finding once fixed stays fixed. `bench/fuzz.sh`
//! runs the targets themselves.

use std::path::{Path, PathBuf};

type Entry = fn(&[u8]);

/// The fuzz targets and the entry point each calls.
const TARGETS: [(&str, Entry); 5] = [
    ("http_response", loadgen::fuzzing::http_response),
    ("hlog_merge", loadgen::fuzzing::hlog_merge),
    ("toxiproxy_api", chaos::fuzzing::toxiproxy_api),
    ("checkout_body", target_system::fuzzing::checkout_body),
    ("profile", rig::fuzzing::profile),
];

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| Some(e.ok()?.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.is_file());
    files.sort();
    files
}

/// Each target's corpus is there (the test cannot pass on an empty directory), and no
/// input panics its entry point.
#[test]
fn committed_fuzz_inputs_replay_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut failures = Vec::new();
    for (target, entry) in TARGETS {
        let corpus = inputs(&root.join("corpus").join(target));
        assert!(
            corpus.len() >= 10,
            "fuzz/corpus/{target} has {} inputs; run bench/fuzz.sh to grow it",
            corpus.len()
        );
        let regressions = inputs(&root.join("regressions").join(target));
        for file in corpus.iter().chain(&regressions) {
            let bytes = std::fs::read(file).unwrap();
            if std::panic::catch_unwind(|| entry(&bytes)).is_err() {
                failures.push(file.display().to_string());
            }
        }
    }
    assert!(failures.is_empty(), "inputs that fail: {failures:#?}");
}
