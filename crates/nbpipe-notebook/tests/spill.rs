//! A notebook whose large strings were moved to a [`Spill`] writes the very same bytes.

mod common;

use common::{fixture, input_fixtures, Rng};
use nbpipe_notebook::{read, to_bytes, write_to, Notebook, Spill, Value};
use serde_json::json;

fn stash_all(nb: &mut Notebook, spill: &mut Spill) {
    for out in nb.cells.iter_mut().flat_map(|c| c.outputs.iter_mut()) {
        spill.stash_output(out).unwrap();
    }
}

/// The streaming writer on a spilled notebook against `to_bytes` of the original.
fn assert_same_bytes(original: &Notebook, spilled: &Notebook, spill: &Spill, what: &str) {
    let want = String::from_utf8(to_bytes(original)).unwrap();
    let mut streamed = Vec::new();
    write_to(spilled, Some(spill), &mut streamed).unwrap();
    let got = String::from_utf8(streamed).unwrap();
    assert!(
        got == want,
        "{what}: write_to differs:\n{got}\n---- want ----\n{want}"
    );
}

#[test]
fn spilled_notebooks_write_the_same_bytes() {
    let mut rng = Rng(99);
    let mut notebooks: Vec<Notebook> = input_fixtures()
        .iter()
        .map(|p| read(&std::fs::read(p).unwrap()).unwrap())
        .collect();
    for _ in 0..300 {
        notebooks.push(read(&serde_json::to_vec(&rng.notebook()).unwrap()).unwrap());
    }
    let mut spilled_strings = 0;
    for (i, original) in notebooks.iter().enumerate() {
        for threshold in [1, 8] {
            let mut spill = Spill::new(threshold).unwrap();
            let mut nb = original.clone();
            stash_all(&mut nb, &mut spill);
            spilled_strings += nb
                .cells
                .iter()
                .flat_map(|c| c.outputs.iter())
                .map(|o| o.to_string().matches("nbpipe-spill").count())
                .sum::<usize>();
            assert_same_bytes(
                original,
                &nb,
                &spill,
                &format!("notebook {i}, threshold {threshold}"),
            );
            spill.restore_notebook(&mut nb).unwrap();
            assert_eq!(
                &nb, original,
                "notebook {i}: restore gives the original back"
            );
        }
    }
    assert!(
        spilled_strings > 1000,
        "only {spilled_strings} strings were spilled"
    );
}

#[test]
fn line_breaks_straddling_stream_chunks_split_like_python() {
    // The writer reads spilled strings in 64 KiB chunks; put every kind of line break (1, 2
    // and 3 bytes long) across every possible chunk boundary position.
    let chunk = 64 * 1024;
    let breaks = [
        "\n", "\r", "\r\n", "\u{85}", "\u{2028}", "\u{2029}", "\x0b", "\x1e",
    ];
    let mut base = read(&fixture("v4_5_kitchen_sink.ipynb")).unwrap();
    base.cells.clear();
    for brk in breaks {
        for pad in 0..5 {
            let mut text = "é".repeat((chunk - 4) / 2);
            text.push_str(&"x".repeat(pad));
            for _ in 0..3 {
                text.push_str(brk);
                text.push_str(&"\"\\\u{1}y".repeat(chunk / 4 - 1));
                text.push_str(&"z".repeat(pad));
            }
            let mut cell = base.new_code_cell("print()");
            cell.outputs
                .push(json!({"output_type": "stream", "name": "stdout", "text": text}));
            cell.outputs
                .push(json!({"output_type": "display_data", "metadata": {},
                "data": {"text/plain": text, "image/svg+xml": text, "image/png": text}}));
            base.cells.push(cell);
        }
    }
    let mut spill = Spill::new(1024).unwrap();
    let mut nb = base.clone();
    stash_all(&mut nb, &mut spill);
    assert!(spill.file_bytes() > 40 * chunk as u64);
    assert_same_bytes(&base, &nb, &spill, "long lines");
}

#[test]
fn appended_stream_text_spills_once_large_and_keeps_growing() {
    let mut base = read(&fixture("v4_5_kitchen_sink.ipynb")).unwrap();
    base.cells.truncate(0);
    let mut cell = base.new_code_cell("for i in range(n): print(i)");
    cell.outputs
        .push(json!({"output_type": "stream", "name": "stdout", "text": ""}));
    cell.outputs
        .push(json!({"output_type": "display_data", "metadata": {}, "data": {}}));
    base.cells.push(cell);
    let mut nb = base.clone();
    let mut spill = Spill::new(1000).unwrap();
    let mut want = String::new();
    for i in 0..3000 {
        let line = format!("line {i} \u{2028} ünïcode\r\n");
        want.push_str(&line);
        let Value::String(text) = &mut nb.cells[0].outputs[0]["text"] else {
            panic!("text is a string");
        };
        spill.append(text, &line).unwrap();
        if i % 500 == 0 {
            // Another spilled value lands after the stream's entry: the next append moves it.
            let mut other = json!({"image/png": "A".repeat(2000)});
            spill.stash_output(&mut other).unwrap();
            nb.cells[0].outputs[1]["data"] = other;
        }
    }
    assert!(spill.is_marker(nb.cells[0].outputs[0]["text"].as_str().unwrap()));
    base.cells[0].outputs[0]["text"] = json!(want);
    base.cells[0].outputs[1]["data"] = json!({"image/png": "A".repeat(2000)});
    assert_same_bytes(&base, &nb, &spill, "appended");
}

#[test]
fn compaction_drops_cleared_outputs_and_keeps_the_rest() {
    let mut base = read(&fixture("v4_5_kitchen_sink.ipynb")).unwrap();
    base.cells.truncate(0);
    base.cells.push(base.new_code_cell("animation"));
    let mut nb = base.clone();
    let mut spill = Spill::new(100).unwrap();
    spill.compact_from(50_000);
    let mut compactions = 0;
    for frame in 0..200 {
        // clear_output(wait=True) + a new frame: the previous frame becomes garbage.
        let mut out = json!({"output_type": "display_data", "metadata": {},
            "data": {"image/png": format!("{frame:05}").repeat(400), "text/plain": "<Figure>"}});
        spill.stash_output(&mut out).unwrap();
        nb.cells[0].outputs = vec![out.clone(), out];
        if spill.compact(&mut nb).unwrap() {
            compactions += 1;
        }
    }
    assert!(compactions >= 3, "compacted {compactions} times");
    // 200 frames of 2,000 bytes were written; only the live one (shared twice) is kept.
    assert!(
        spill.file_bytes() < 60_000,
        "{} bytes left",
        spill.file_bytes()
    );
    let frame = json!({"output_type": "display_data", "metadata": {},
        "data": {"image/png": "00199".repeat(400), "text/plain": "<Figure>"}});
    base.cells[0].outputs = vec![frame.clone(), frame];
    assert_same_bytes(&base, &nb, &spill, "after compaction");
}

#[test]
fn strings_that_look_like_markers_are_plain_data() {
    let mut other = Spill::new(1).unwrap();
    let mut forged = json!("x".repeat(10));
    other.stash_output(&mut forged).unwrap();
    let forged = forged.as_str().unwrap().to_string();
    let spill = Spill::new(1).unwrap();
    assert!(!spill.is_marker(&forged));
    let mut nb = read(&fixture("v4_5_kitchen_sink.ipynb")).unwrap();
    nb.cells.truncate(0);
    let mut cell = nb.new_code_cell("print('\\0nbpipe-spill')");
    cell.outputs
        .push(json!({"output_type": "stream", "name": "stdout", "text": forged.clone()}));
    cell.outputs
        .push(json!({"output_type": "stream", "name": "stderr", "text": "\0nbpipe-spill:0"}));
    nb.cells.push(cell);
    assert_same_bytes(&nb, &nb, &spill, "forged markers");
    assert!(String::from_utf8(to_bytes(&nb))
        .unwrap()
        .contains("\\u0000nbpipe-spill:"));
}
