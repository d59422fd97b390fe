//! Byte-for-byte comparison with Python's `nbformat` (skipped when the test
//! virtualenv with nbformat is not installed).

mod common;

use common::{input_fixtures, mask_cell_ids, python_roundtrip, Rng};
use nbpipe_notebook::{read, to_string};
use serde_json::Value;

/// Whether nbformat will invent (random) cell ids for this input.
fn ids_are_generated(input: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<Value>(input) else {
        return false;
    };
    if v["nbformat"] == 3 {
        return true;
    }
    let Some(cells) = v["cells"].as_array() else {
        return false;
    };
    let ids: Vec<&Value> = cells.iter().map(|c| &c["id"]).collect();
    v["nbformat_minor"].as_u64().unwrap_or(0) >= 5
        && ids
            .iter()
            .enumerate()
            .any(|(i, id)| id.is_null() || ids[..i].contains(id))
}

#[test]
fn matches_python_nbformat_byte_for_byte() {
    let mut inputs: Vec<(String, Vec<u8>)> = input_fixtures()
        .into_iter()
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    // Real-world notebooks shipped with papermill's test suite.
    let papermill = common::site_packages().join("papermill/tests/notebooks");
    if let Ok(dir) = std::fs::read_dir(papermill) {
        for entry in dir.flatten() {
            let p = entry.path();
            if p.extension().is_some_and(|e| e == "ipynb") {
                inputs.push((p.display().to_string(), std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut rng = Rng(0xdead_beef);
    for i in 0..200 {
        let nb = rng.notebook();
        let bytes = if i % 2 == 0 {
            serde_json::to_vec(&nb).unwrap()
        } else {
            serde_json::to_vec_pretty(&nb).unwrap()
        };
        inputs.push((format!("random notebook {i}"), bytes));
    }
    for i in 0..100 {
        let bytes = serde_json::to_vec(&rng.v3_notebook()).unwrap();
        inputs.push((format!("random v3 notebook {i}"), bytes));
    }
    let raw: Vec<Vec<u8>> = inputs.iter().map(|(_, b)| b.clone()).collect();
    let Some(expected) = python_roundtrip(&raw) else {
        return;
    };
    for ((name, input), want) in inputs.iter().zip(expected) {
        let want = String::from_utf8(want).unwrap();
        let got = to_string(&read(input).unwrap_or_else(|e| panic!("{name}: {e}")));
        if ids_are_generated(input) {
            assert_eq!(mask_cell_ids(&got), mask_cell_ids(&want), "{name}");
        } else {
            assert_eq!(
                got,
                want,
                "{name}\ninput: {}",
                String::from_utf8_lossy(input)
            );
        }
    }
    eprintln!("compared {} notebooks with Python nbformat", inputs.len());
}
