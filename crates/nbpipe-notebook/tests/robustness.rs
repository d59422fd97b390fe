//! No panics on hostile input, idempotent writes, and linear-time writing.

mod common;

use std::time::Instant;

use common::{fixture, input_fixtures, Rng};
use nbpipe_notebook::{read, to_bytes, Notebook};
use serde_json::json;

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..5000 {
        let len = rng.below(64);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        let _ = read(&bytes);
    }
    // JSON-ish alphabets reach deeper into the parser and model.
    let alphabet = b"{}[]\":,0123456789.-enulltruefals \n\\u";
    for _ in 0..5000 {
        let len = rng.below(80);
        let bytes: Vec<u8> = (0..len)
            .map(|_| alphabet[rng.below(alphabet.len())])
            .collect();
        let _ = read(&bytes);
    }
    let deep = "[".repeat(100_000);
    assert!(read(deep.as_bytes()).is_err());
}

#[test]
fn truncated_and_mutated_fixtures_never_panic() {
    let mut rng = Rng(42);
    for path in input_fixtures() {
        let bytes = std::fs::read(&path).unwrap();
        for cut in 0..bytes.len() {
            if let Ok(nb) = read(&bytes[..cut]) {
                let _ = to_bytes(&nb);
            }
        }
        for _ in 0..1000 {
            let mut m = bytes.clone();
            for _ in 0..=rng.below(3) {
                let i = rng.below(m.len());
                let junk = b"{}[]\",:0an\\ \x00\xff";
                m[i] = junk[rng.below(junk.len())];
            }
            if let Ok(nb) = read(&m) {
                let _ = nb.validate();
                let _ = to_bytes(&nb);
            }
        }
    }
}

/// Structurally valid JSON with wrong types in every notebook position.
#[test]
fn wrong_types_everywhere_never_panic() {
    let mut rng = Rng(7);
    for _ in 0..3000 {
        let mut nb = rng.notebook();
        if rng.below(2) == 0 {
            nb["nbformat"] = json!(3);
            let cells = nb["cells"].take();
            nb["worksheets"] = json!([{"cells": cells}]);
        }
        // Replace one random position with a random value.
        let target = rng.below(6);
        let junk = rng.json(2);
        match target {
            0 => nb["metadata"] = junk,
            1 => nb["nbformat_minor"] = junk,
            _ => {
                if let Some(cells) = nb.get_mut("cells").and_then(|c| c.as_array_mut()) {
                    if !cells.is_empty() {
                        let i = rng.below(cells.len());
                        let keys = [
                            "cell_type",
                            "source",
                            "metadata",
                            "outputs",
                            "execution_count",
                            "id",
                        ];
                        cells[i][keys[rng.below(keys.len())]] = junk;
                    }
                }
            }
        }
        let bytes = serde_json::to_vec(&nb).unwrap();
        if let Ok(nb) = read(&bytes) {
            let _ = nb.validate();
            let _ = to_bytes(&nb);
        }
    }
}

#[test]
fn writing_is_idempotent_on_random_notebooks() {
    let mut rng = Rng(1234);
    for i in 0..500 {
        let input = serde_json::to_vec_pretty(&rng.notebook()).unwrap();
        let nb = read(&input).unwrap_or_else(|e| panic!("notebook {i}: {e}"));
        let once = to_bytes(&nb);
        let back = read(&once).unwrap();
        assert_eq!(back, nb, "notebook {i}: model changed by a round trip");
        assert_eq!(
            to_bytes(&back),
            once,
            "notebook {i}: bytes changed by a round trip"
        );
    }
}

fn big_notebook(cells: usize, image_bytes: usize) -> Notebook {
    let mut nb = read(&fixture("v4_5_kitchen_sink.ipynb")).unwrap();
    nb.cells.clear();
    let image: String = "iVBORw0KGgoAAAANSUhEUgAA+/="
        .chars()
        .cycle()
        .take(image_bytes)
        .collect();
    for i in 0..cells {
        let mut cell = nb.new_code_cell(&format!("x = {i}\nprint(x)\n# comment line\n"));
        cell.execution_count = Some(i as i64);
        cell.outputs
            .push(json!({"output_type": "stream", "name": "stdout", "text": format!("{i}\n")}));
        if image_bytes > 0 {
            cell.outputs
                .push(json!({"output_type": "display_data", "metadata": {},
                "data": {"image/png": image, "text/plain": "<Figure size 640x480 with 1 Axes>"}}));
        }
        nb.cells.push(cell);
    }
    nb
}

#[test]
fn writing_large_notebooks_is_fast() {
    let nb = big_notebook(1000, 0);
    let t = Instant::now();
    let bytes = to_bytes(&nb);
    let small = t.elapsed();
    assert_eq!(read(&bytes).unwrap().cells.len(), 1000);

    // 20 cells x 1 MiB of base64 = 20 MiB of image data.
    let nb = big_notebook(20, 1 << 20);
    let t = Instant::now();
    let bytes = to_bytes(&nb);
    let big = t.elapsed();
    assert!(bytes.len() > 20 << 20);
    eprintln!("to_bytes: 1000 cells in {small:?}, 20 MiB of images in {big:?}");
    // Generous bounds: tests usually run unoptimized on a shared machine.
    assert!(small.as_secs_f64() < 2.0, "1000 cells took {small:?}");
    assert!(big.as_secs_f64() < 5.0, "20 MiB took {big:?}");
}
