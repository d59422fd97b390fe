//! Fixture round trips, v3 upgrade, model API and error reporting.

mod common;

use common::{fixture, input_fixtures, mask_cell_ids};
use nbpipe_notebook::{read, to_bytes, to_string, CellType, Notebook, NotebookError, Value};
use serde_json::json;

/// Fixtures whose cell ids nbformat generates randomly.
fn has_random_ids(name: &str) -> bool {
    name.starts_with("v3") || name.contains("missing_ids")
}

#[test]
fn every_fixture_matches_committed_nbformat_output() {
    let mut checked = 0;
    for path in input_fixtures() {
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let expected_path = path.with_extension("expected.json");
        let Ok(expected) = std::fs::read_to_string(&expected_path) else {
            continue;
        };
        let nb = read(&std::fs::read(&path).unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = to_string(&nb);
        if has_random_ids(&name) {
            assert_eq!(mask_cell_ids(&got), mask_cell_ids(&expected), "{name}");
        } else {
            assert_eq!(got, expected, "{name}");
        }
        // Writing what we wrote is a fixed point.
        let again = to_string(&read(got.as_bytes()).unwrap());
        assert_eq!(again, got, "{name}: second round trip differs");
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} fixtures checked");
}

#[test]
fn kitchen_sink_keeps_unknown_things() {
    let nb = read(&fixture("v4_5_kitchen_sink.ipynb")).unwrap();
    assert_eq!((nb.nbformat, nb.nbformat_minor), (4, 5));
    assert_eq!(
        nb.extra["x_vendor_top"],
        json!({"keep": [1, 2.5, null, true]})
    );
    assert_eq!(
        nb.metadata["papermill"],
        json!({"parameters": {"alpha": 0.6}})
    );
    // transient keys are stripped on read, like nbformat
    assert!(!nb.metadata.contains_key("signature"));
    assert!(!nb.metadata.contains_key("orig_nbformat"));
    assert!(!nb.cells[0].metadata.contains_key("trusted"));

    let md = &nb.cells[0];
    assert_eq!(md.cell_type, CellType::Markdown);
    assert!(md.source.starts_with("# Title\n\nSome"));
    assert_eq!(
        md.extra["attachments"]["pic.png"]["text/plain"],
        json!("alt\ntext"),
        "attachment bundles are rejoined"
    );

    let code = &nb.cells[3];
    assert_eq!(code.execution_count, Some(7));
    assert_eq!(code.source, "print('hi')\nx");
    assert_eq!(code.outputs.len(), 7);
    assert_eq!(code.outputs[0]["text"], json!("hi\nthere\n"));
    let data = &code.outputs[2]["data"];
    assert_eq!(data["text/plain"], json!("<Figure>\nline2"));
    assert_eq!(data["application/vnd.custom.thing"], json!("keep\njoined"));
    assert_eq!(
        data["application/vnd.vegalite.v5+json"]["list"],
        json!(["x\n", "y"]),
        "JSON mime types are left alone"
    );
    assert_eq!(code.outputs[5]["output_type"], json!("vendor_thing"));
    assert_eq!(
        code.outputs[5]["payload"],
        json!({"z": 1, "a": [true, null]})
    );

    assert_eq!(nb.cells[4].cell_type, CellType::Raw);
    let md_with_outputs = &nb.cells[5];
    assert!(md_with_outputs.outputs.is_empty());
    assert_eq!(md_with_outputs.extra["outputs"], json!([{"odd": true}]));
    assert_eq!(md_with_outputs.extra["execution_count"], json!(3));
    let vendor = &nb.cells[6];
    assert_eq!(vendor.cell_type, CellType::Other("vendor_cell".into()));
    assert_eq!(vendor.extra["vendor_key"], json!([1, {"k": "v"}]));
    nb.validate().unwrap();
}

#[test]
fn old_minor_versions_do_not_gain_ids() {
    for name in ["v4_0.ipynb", "v4_4.ipynb"] {
        let nb = read(&fixture(name)).unwrap();
        assert!(nb.nbformat_minor < 5);
        let ids: Vec<_> = nb.cells.iter().map(|c| c.id.clone()).collect();
        assert!(ids[..2].iter().all(Option::is_none), "{name}: {ids:?}");
        assert!(!to_string(&nb).contains("\"id\": \"") || name == "v4_4.ipynb");
        let fresh = nb.new_code_cell("x");
        assert_eq!(fresh.id, None);
        nb.validate().unwrap();
    }
    let nb = read(&fixture("v4_4.ipynb")).unwrap();
    assert_eq!(nb.cells[2].id.as_deref(), Some("kept-anyway"));
    assert_eq!(nb.language(), Some("python"));
    assert_eq!(nb.kernel_name(), None);
}

#[test]
fn missing_and_duplicate_ids_are_repaired_like_nbformat() {
    let nb = read(&fixture("v4_5_missing_ids.ipynb")).unwrap();
    let ids: Vec<&str> = nb.cells.iter().map(|c| c.id.as_deref().unwrap()).collect();
    assert_eq!(ids[1], "dup", "first holder of an id keeps it");
    assert_ne!(ids[2], "dup");
    assert_ne!(ids[0], ids[2]);
    for id in &ids {
        assert!(nbpipe_notebook::is_valid_cell_id(id), "{id}");
    }
    nb.validate().unwrap();
}

#[test]
fn v3_upgrade_matches_nbformat() {
    let nb = read(&fixture("v3.ipynb")).unwrap();
    assert_eq!((nb.nbformat, nb.nbformat_minor), (4, 5));
    assert_eq!(nb.cells.len(), 8, "worksheets are flattened");
    assert_eq!(nb.cells[0].source, "## Heading two lines");
    assert_eq!(nb.cells[1].source, "# default level");
    assert_eq!(
        nb.cells[2].source, "line1\nline2",
        "splitlines() lists joined with \\n"
    );
    let code = &nb.cells[3];
    assert_eq!(code.source, "import os\nos.getcwd()");
    assert_eq!(code.execution_count, Some(3));
    assert_eq!(code.metadata["collapsed"], json!(false));
    assert!(!code.extra.contains_key("language"));
    let out = &code.outputs[0];
    assert_eq!(out["output_type"], json!("execute_result"));
    assert_eq!(out["data"]["application/json"], json!({"a": [1, 2]}));
    assert_eq!(
        out["data"]["pdf"],
        json!("JVBER"),
        "nbformat has no alias for pdf"
    );
    assert_eq!(out["metadata"], json!({"image/png": {"width": 5}}));
    assert_eq!(code.outputs[2]["name"], json!("stderr"));
    assert_eq!(code.outputs[3]["name"], json!("stdout"));
    assert_eq!(code.outputs[4]["output_type"], json!("error"));
    assert_eq!(nb.cells[7].cell_type, CellType::Markdown, "html cell");
    // in memory, like nbformat; stripped when written
    assert_eq!(nb.metadata["orig_nbformat"], json!(2));
    assert!(!nb.metadata.contains_key("name"));
    let mut ids: Vec<&str> = nb.cells.iter().map(|c| c.id.as_deref().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), nb.cells.len());
    nb.validate().unwrap();
}

#[test]
fn bom_is_ignored() {
    let mut bytes = b"\xef\xbb\xbf".to_vec();
    bytes.extend(fixture("v4_0.ipynb"));
    assert_eq!(read(&bytes).unwrap().cells.len(), 3);
}

#[test]
fn model_api() {
    let mut nb = Notebook::new();
    assert_eq!(nb.kernel_name(), None);
    nb.metadata.insert(
        "kernelspec".into(),
        json!({"name": "python3", "display_name": "Python 3"}),
    );
    nb.metadata
        .insert("language_info".into(), json!({"name": "python"}));
    assert_eq!(nb.kernel_name(), Some("python3"));
    assert_eq!(nb.language(), Some("python"), "falls back to language_info");
    nb.metadata["kernelspec"]["language"] = json!("julia");
    assert_eq!(nb.language(), Some("julia"));

    let mut cell = nb.new_code_cell("a = 1");
    let id = cell.id.clone().unwrap();
    assert_eq!(id.len(), 8);
    assert!(nbpipe_notebook::is_valid_cell_id(&id));
    assert!(cell.is_code());
    assert!(cell.tags().is_empty());
    cell.metadata
        .insert("tags".into(), json!(["parameters", 3, "x"]));
    assert_eq!(cell.tags(), ["parameters", "x"]);
    assert!(cell.has_tag("parameters"));
    assert!(!cell.has_tag("injected-parameters"));
    nb.cells.push(cell.clone());
    nb.cells.push(nb.new_cell(CellType::Markdown, "# hi"));
    nb.validate().unwrap();
    assert_ne!(nb.cells[0].id, nb.cells[1].id);

    let text = to_string(&nb);
    assert!(text.contains("\"execution_count\": null"));
    assert!(text.contains("\"outputs\": []"));
    let back = read(text.as_bytes()).unwrap();
    assert_eq!(back, nb);

    nb.cells.push(cell);
    match nb.validate() {
        Err(NotebookError::DuplicateCellId {
            first: 0, index: 2, ..
        }) => {}
        other => panic!("{other:?}"),
    }
    nb.cells[2].id = None;
    assert!(matches!(
        nb.validate(),
        Err(NotebookError::MissingKey { key: "id", .. })
    ));
    nb.cells[2].id = Some("z".into());
    nb.cells[2].outputs.push(json!({"no_type": 1}));
    let err = nb.validate().unwrap_err().to_string();
    assert_eq!(err, "cell 2 output 0 has no `output_type`");
    nb.cells[2].outputs[0] = json!(5);
    assert!(nb
        .validate()
        .unwrap_err()
        .to_string()
        .contains("found an integer"));
}

#[test]
fn transient_keys_are_not_written() {
    let mut nb = Notebook::new();
    nb.metadata.insert("signature".into(), json!("x"));
    nb.metadata.insert("orig_nbformat".into(), json!(3));
    let mut cell = nb.new_code_cell("");
    cell.metadata.insert("trusted".into(), json!(true));
    nb.cells.push(cell);
    let text = to_string(&nb);
    assert!(!text.contains("signature") && !text.contains("orig_nbformat"));
    assert!(!text.contains("trusted"));
    assert!(
        text.contains("\"source\": []"),
        "empty source is an empty list"
    );
}

#[test]
fn extra_cannot_shadow_known_fields() {
    let mut nb = Notebook::new();
    nb.extra.insert("cells".into(), json!("bogus"));
    nb.extra.insert("zzz".into(), json!(1));
    // only cell attachments are mime bundles to split
    nb.extra
        .insert("attachments".into(), json!({"a": {"text/plain": "x\ny"}}));
    let mut cell = nb.new_code_cell("x");
    cell.extra.insert("source".into(), json!("bogus"));
    nb.cells.push(cell);
    let text = to_string(&nb);
    assert!(!text.contains("bogus"));
    assert_eq!(text.matches("\"cells\"").count(), 1);
    assert!(text.ends_with("\"zzz\": 1\n}\n"));
    assert!(text.contains("\"text/plain\": \"x\\ny\""), "{text}");
}

fn err(input: &str) -> NotebookError {
    read(input.as_bytes()).expect_err(input)
}

#[test]
fn malformed_inputs_give_specific_errors() {
    let e = err("{\n \"cells\": [\n  1,\n ,]}");
    assert!(
        matches!(e, NotebookError::InvalidJson { line: 4, .. }),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .starts_with("not a notebook: invalid JSON at line 4 column 2: "),
        "{e}"
    );
    assert!(matches!(err(""), NotebookError::InvalidJson { .. }));
    assert!(matches!(
        read(b"\xff\xfe{}"),
        Err(NotebookError::InvalidJson { .. })
    ));

    let e = err("[1, 2]");
    assert!(matches!(
        e,
        NotebookError::NotAnObject { found: "an array" }
    ));
    assert_eq!(
        e.to_string(),
        "not a notebook: the top-level JSON value is an array, expected an object"
    );

    assert!(matches!(err("{}"), NotebookError::MissingVersion));
    let e = err(r#"{"nbformat": "4", "cells": []}"#);
    assert_eq!(
        e.to_string(),
        "the notebook: `nbformat` must be an integer, found a string"
    );

    let e = err(r#"{"nbformat": 4, "nbformat_minor": 5, "metadata": {}}"#);
    assert_eq!(e.to_string(), "the notebook has no `cells`");
    let e = err(r#"{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": {}}"#);
    assert_eq!(
        e.to_string(),
        "the notebook: `cells` must be an array, found an object"
    );

    let e = err(
        r#"{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "code", "source": "", "metadata": {}, "outputs": []},
        {"cell_type": "code", "source": "", "metadata": {}, "outputs": []},
        {"cell_type": "code", "source": "", "metadata": {}, "outputs": []},
        {"source": "x", "metadata": {}}]}"#,
    );
    assert_eq!(e.to_string(), "cell 3 has no `cell_type`");

    let e = err(
        r#"{"nbformat": 4, "nbformat_minor": 4, "cells": [{"cell_type": "code", "source": ["a", 1]}]}"#,
    );
    assert_eq!(
        e.to_string(),
        "cell 0: `source` must be a string or a list of strings, found an integer"
    );
    let e = err(r#"{"nbformat": 4, "cells": [{"cell_type": "code", "execution_count": "1"}]}"#);
    assert_eq!(
        e.to_string(),
        "cell 0: `execution_count` must be an integer or null, found a string"
    );
    let e = err(r#"{"nbformat": 4, "cells": ["x"]}"#);
    assert_eq!(
        e.to_string(),
        "cell 0: a cell must be a JSON object, found a string"
    );

    let e = err(r#"{"nbformat": 3, "nbformat_minor": 0, "metadata": {}}"#);
    assert_eq!(e.to_string(), "the v3 notebook has no `worksheets`");
    let e = err(
        r#"{"nbformat": 3, "metadata": {}, "worksheets": [{"cells": [{"cell_type": "code", "input": "x"}]}]}"#,
    );
    assert_eq!(e.to_string(), "worksheet 0 cell 0 has no `outputs`");
    let e = err(
        r#"{"nbformat": 3, "metadata": {}, "worksheets": [{"cells": [{"cell_type": "code", "outputs": [
        {"output_type": "pyout", "json": "{not json"}]}]}]}"#,
    );
    assert!(
        e.to_string()
            .starts_with("worksheet 0 cell 0 output 0: the `json` output is not valid JSON"),
        "{e}"
    );

    for (input, major) in [
        (r#"{"nbformat": 5, "nbformat_minor": 0, "cells": []}"#, 5),
        (r#"{"nbformat": 2, "worksheets": []}"#, 2),
        (r#"{"nbformat": 1, "cells": []}"#, 1),
    ] {
        let e = err(input);
        assert!(
            matches!(e, NotebookError::UnsupportedVersion { major: m, .. } if m == major),
            "{e:?}"
        );
        assert!(e
            .to_string()
            .starts_with(&format!("unsupported notebook format version {major}.0: ")));
    }
}

#[test]
fn future_minor_is_read_as_is() {
    let nb = read(br#"{"nbformat": 4, "nbformat_minor": 9, "metadata": {}, "cells": [
        {"cell_type": "code", "id": "a", "source": "", "metadata": {}, "outputs": [], "execution_count": null, "new_key": 1}]}"#)
    .unwrap();
    assert_eq!(nb.nbformat_minor, 9);
    assert_eq!(nb.cells[0].extra["new_key"], json!(1));
}

#[test]
fn numbers_are_written_like_python() {
    let nb = read(br#"{"nbformat": 4, "nbformat_minor": 4, "cells": [], "metadata": {
        "a": [1.0, 1e2, 1E-5, 0.5e1, -0.0, 18446744073709551615, -9223372036854775808, 2.5e-320]}}"#)
    .unwrap();
    let text = to_string(&nb);
    let expected = "[\n   1.0,\n   100.0,\n   1e-05,\n   5.0,\n   -0.0,\n   18446744073709551615,\n   -9223372036854775808,\n   2.5e-320\n  ]";
    assert!(text.contains(expected), "{text}");
    let _: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(to_bytes(&nb), text.into_bytes());
}
