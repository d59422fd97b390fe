//! Tests of `image:`, the project's OCI image settings.

use super::*;

fn image(body: &str) -> Result<ImageConfig, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.ipynb"), "{}").unwrap();
    let text = format!("notebooks: [a.ipynb]\nimage:\n{body}");
    parse(dir.path(), "nbpipe.yaml", &text).map(|p| p.image)
}

fn err(body: &str, line: usize, key: &str) -> String {
    let e = image(body).expect_err(body);
    let shown = e.to_string();
    let inv = e.invalid().unwrap_or_else(|| panic!("{shown}")).clone();
    assert_eq!((inv.line, inv.key.as_str()), (line, key), "{shown}");
    shown
}

#[test]
fn image_reads_every_key() {
    let i = image(
        "  name: 127.0.0.1:5000/team/demo\n  base: localhost:5000/base:bookworm\n  \
         apt: [libgomp1, fonts-dejavu-core=2.37-6]\n",
    )
    .unwrap();
    assert_eq!(
        i,
        ImageConfig {
            name: Some("127.0.0.1:5000/team/demo".into()),
            base: Some("localhost:5000/base:bookworm".into()),
            apt: vec!["libgomp1".into(), "fonts-dejavu-core=2.37-6".into()],
        }
    );
    assert_eq!(image("  apt: git\n").unwrap().apt, vec!["git".to_string()]);
    assert_eq!(
        image("  base: python@sha256:abcd\n")
            .unwrap()
            .base
            .as_deref(),
        Some("python@sha256:abcd")
    );
}

#[test]
fn image_is_empty_when_absent_or_null() {
    assert_eq!(image("").unwrap(), ImageConfig::default());
}

#[test]
fn image_rejects_bad_values_with_their_location() {
    let e = err("  name: Team/Demo\n", 3, "image.name");
    assert!(e.contains("lowercase"), "{e}");
    let e = err("  base: https://reg/x\n", 3, "image.base");
    assert!(e.contains("without a scheme"), "{e}");
    let e = err("  apt: [git, 'Bad Pkg']\n", 3, "image.apt");
    assert!(e.contains("Debian package"), "{e}");
    let e = err("  nmae: x\n", 3, "image.nmae");
    assert!(e.contains("expected one of `name`"), "{e}");
    let e = err("  apt: {a: 1}\n", 3, "image.apt");
    assert!(e.contains("list of strings"), "{e}");
}
