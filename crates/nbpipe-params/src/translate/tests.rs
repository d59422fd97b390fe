//! Translator tests: papermill snapshots and literal round-trips.

use super::*;

fn int(s: &str) -> Value {
    Value::Int(s.to_owned())
}
fn s(x: &str) -> Value {
    Value::Str(x.to_owned())
}

/// The parameters used to produce the papermill snapshots below.
fn base(lang: Language) -> Parameters {
    let mut p = Parameters::new();
    p.set("s", s("hello world"));
    p.set("q", s("say \"hi\""));
    p.set("i", int("42"));
    p.set("big", int("3000000000"));
    p.set("neg", int("-7"));
    p.set("minint", int("-2147483648"));
    p.set("maxint", int("2147483647"));
    p.set("huge", int("123456789012345678901234567890"));
    p.set("f", Value::Float(1.5));
    p.set("f2", Value::Float(1e16));
    p.set("f3", Value::Float(1e-5));
    p.set("f4", Value::Float(0.1));
    p.set("b", Value::Bool(true));
    p.set("c", Value::Bool(false));
    let mut l = vec![int("1"), s("a"), Value::Float(2.5), Value::Bool(true)];
    if lang != Language::CSharp {
        l.push(Value::List(vec![Value::None]));
    }
    p.set("l", Value::List(l));
    if lang != Language::Bash {
        p.set(
            "d",
            Value::Dict(vec![
                ("k".into(), s("v")),
                ("n".into(), Value::List(vec![int("1"), int("2")])),
                ("e".into(), Value::Dict(vec![])),
            ]),
        );
    }
    p.set("el", Value::List(vec![]));
    if lang != Language::CSharp {
        p.set("n", Value::None);
    }
    if lang != Language::Matlab {
        p.set("_u", int("1"));
    }
    p.set("nan", Value::Float(f64::NAN));
    p.set("inf", Value::Float(f64::INFINITY));
    p.set("ninf", Value::Float(f64::NEG_INFINITY));
    p
}

/// Output of papermill 2.7.0's `Translator.codify(base, "Parameters")` for
/// each language (generated with CPython 3.11, black not installed).
const SNAPSHOTS: &[(Language, &str)] = &[
    (
        Language::Python,
        "# Parameters\ns = \"hello world\"\nq = \"say \\\"hi\\\"\"\ni = 42\nbig = 3000000000\nneg = -7\nminint = -2147483648\nmaxint = 2147483647\nhuge = 123456789012345678901234567890\nf = 1.5\nf2 = 1e+16\nf3 = 1e-05\nf4 = 0.1\nb = True\nc = False\nl = [1, \"a\", 2.5, True, [None]]\nd = {\"k\": \"v\", \"n\": [1, 2], \"e\": {}}\nel = []\nn = None\n_u = 1\nnan = float('nan')\ninf = float('inf')\nninf = float('-inf')\n",
    ),
    (
        Language::R,
        "# Parameters\ns = \"hello world\"\nq = \"say \\\"hi\\\"\"\ni = 42\nbig = 3000000000\nneg = -7\nminint = -2147483648\nmaxint = 2147483647\nhuge = 123456789012345678901234567890\nf = 1.5\nf2 = 1e+16\nf3 = 1e-05\nf4 = 0.1\nb = TRUE\nc = FALSE\nl = list(1, \"a\", 2.5, TRUE, list(NULL))\nd = list(\"k\" = \"v\", \"n\" = list(1, 2), \"e\" = list())\nel = list()\nn = NULL\nu = 1\nnan = nan\ninf = inf\nninf = -inf\n",
    ),
    (
        Language::Julia,
        "# Parameters\ns = \"hello world\"\nq = \"say \\\"hi\\\"\"\ni = 42\nbig = 3000000000\nneg = -7\nminint = -2147483648\nmaxint = 2147483647\nhuge = 123456789012345678901234567890\nf = 1.5\nf2 = 1e+16\nf3 = 1e-05\nf4 = 0.1\nb = true\nc = false\nl = [1, \"a\", 2.5, true, [nothing]]\nd = Dict(\"k\" => \"v\", \"n\" => [1, 2], \"e\" => Dict())\nel = []\nn = nothing\n_u = 1\nnan = nan\ninf = inf\nninf = -inf\n",
    ),
    (
        Language::Scala,
        "// Parameters\nval s = \"hello world\"\nval q = \"say \\\"hi\\\"\"\nval i = 42\nval big = 3000000000L\nval neg = -7\nval minint = -2147483648\nval maxint = 2147483647\nval huge = 123456789012345678901234567890L\nval f = 1.5\nval f2 = 1e+16\nval f3 = 1e-05\nval f4 = 0.1\nval b = true\nval c = false\nval l = Seq(1, \"a\", 2.5, true, Seq(None))\nval d = Map(\"k\" -> \"v\", \"n\" -> Seq(1, 2), \"e\" -> Map())\nval el = Seq()\nval n = None\nval _u = 1\nval nan = nan\nval inf = inf\nval ninf = -inf\n",
    ),
    (
        Language::Matlab,
        "% Parameters\ns = \"hello world\";\nq = \"say \"\"hi\"\"\";\ni = 42;\nbig = 3000000000;\nneg = -7;\nminint = -2147483648;\nmaxint = 2147483647;\nhuge = 123456789012345678901234567890;\nf = 1.5;\nf2 = 1e+16;\nf3 = 1e-05;\nf4 = 0.1;\nb = true;\nc = false;\nl = {1, \"a\", 2.5, true, {NaN}};\nd = containers.Map({'k', 'n', 'e'}, {\"v\", {1, 2}, containers.Map({}, {})});\nel = {};\nn = NaN;\nnan = nan;\ninf = inf;\nninf = -inf;\n",
    ),
    (
        Language::CSharp,
        "// Parameters\nvar s = \"hello world\";\nvar q = \"say \\\"hi\\\"\";\nvar i = 42;\nvar big = 3000000000L;\nvar neg = -7;\nvar minint = -2147483648;\nvar maxint = 2147483647;\nvar huge = 123456789012345678901234567890L;\nvar f = 1.5;\nvar f2 = 1e+16;\nvar f3 = 1e-05;\nvar f4 = 0.1;\nvar b = true;\nvar c = false;\nvar l = new [] { 1, \"a\", 2.5, true };\nvar d = new Dictionary<string,Object>{ { \"k\" , \"v\" }, { \"n\" , new [] { 1, 2 } }, { \"e\" , new Dictionary<string,Object>{  } } };\nvar el = new [] {  };\nvar _u = 1;\nvar nan = nan;\nvar inf = inf;\nvar ninf = -inf;\n",
    ),
    (
        Language::FSharp,
        "(* Parameters *)\nlet s = \"hello world\"\nlet q = \"say \\\"hi\\\"\"\nlet i = 42\nlet big = 3000000000L\nlet neg = -7\nlet minint = -2147483648\nlet maxint = 2147483647\nlet huge = 123456789012345678901234567890L\nlet f = 1.5\nlet f2 = 1e+16\nlet f3 = 1e-05\nlet f4 = 0.1\nlet b = true\nlet c = false\nlet l = [ 1; \"a\"; 2.5; true; [ None ] ]\nlet d = [ (\"k\", \"v\" :> IComparable); (\"n\", [ 1; 2 ] :> IComparable); (\"e\", [  ] |> Map.ofList :> IComparable) ] |> Map.ofList\nlet el = [  ]\nlet n = None\nlet _u = 1\nlet nan = nan\nlet inf = inf\nlet ninf = -inf\n",
    ),
    (
        Language::PowerShell,
        "# Parameters\n$s = \"hello world\"\n$q = \"say `\"hi`\"\"\n$i = 42\n$big = 3000000000\n$neg = -7\n$minint = -2147483648\n$maxint = 2147483647\n$huge = 123456789012345678901234567890\n$f = 1.5\n$f2 = 1e+16\n$f3 = 1e-05\n$f4 = 0.1\n$b = $True\n$c = $False\n$l = @(1, \"a\", 2.5, $True, @($Null))\n$d = @{\"k\" = \"v\"\n \"n\" = @(1, 2)\n \"e\" = @{}}\n$el = @()\n$n = $Null\n$_u = 1\n$nan = [double]::NaN\n$inf = [double]::PositiveInfinity\n$ninf = [double]::NegativeInfinity\n",
    ),
    (
        Language::Bash,
        "# Parameters\ns='hello world'\nq='say \"hi\"'\ni=42\nbig=3000000000\nneg=-7\nminint=-2147483648\nmaxint=2147483647\nhuge=123456789012345678901234567890\nf=1.5\nf2=1e+16\nf3=1e-05\nf4=0.1\nb=true\nc=false\nl=(1 a 2.5 true ())\nel=()\nn=\n_u=1\nnan=nan\ninf=inf\nninf=-inf\n",
    ),
];

#[test]
fn codify_matches_papermill() {
    for &(lang, want) in SNAPSHOTS {
        let got = render_parameters(lang, &base(lang), "Parameters").unwrap();
        assert_eq!(got, want, "{lang:?}");
    }
}

#[test]
fn comments() {
    let empty = Parameters::new();
    let r = |lang, c: &str| render_parameters(lang, &empty, c).unwrap();
    assert_eq!(r(Language::Python, ""), "#\n");
    assert_eq!(r(Language::Python, "Custom comment"), "# Custom comment\n");
    assert_eq!(r(Language::Scala, ""), "//\n");
    assert_eq!(r(Language::Matlab, ""), "%\n");
    assert_eq!(r(Language::FSharp, ""), "(*  *)\n");
    // Line breaks cannot escape the comment (papermill would emit code).
    assert_eq!(r(Language::Python, "multi\nline  "), "# multi line\n");
    assert_eq!(r(Language::CSharp, "a\u{2028}b\rc"), "// a b c\n");
    assert_eq!(r(Language::FSharp, "x *) y (* z"), "(* x * ) y ( * z *)\n");
    assert_eq!(r(Language::FSharp, "(**)"), "(* ( ** ) *)\n");
}

#[test]
fn registry_lookup() {
    use Language::*;
    let cases = [
        (("python3", "python"), Some(Python)),
        (("python", "anything"), Some(Python)),
        (("ir", "R"), Some(R)),
        (("ir", "r"), None),
        (("julia-1.10", "julia"), Some(Julia)),
        (("sparkkernel", "scala"), Some(Scala)),
        (("pysparkkernel", "python"), Some(Python)),
        (("sparkrkernel", "x"), Some(R)),
        ((".net-csharp", "C#"), Some(CSharp)),
        ((".net-fsharp", "F#"), Some(FSharp)),
        ((".net-powershell", "PowerShell"), Some(PowerShell)),
        (("powershell", "powershell"), None),
        (("bash", "bash"), Some(Bash)),
        (("imatlab", "matlab"), Some(Matlab)),
        (("foo", "bar"), None),
    ];
    for ((k, l), want) in cases {
        assert_eq!(Language::from_kernel(k, l), want, "{k} {l}");
    }
}

#[test]
fn unsupported_values() {
    let mut p = Parameters::new();
    p.set("x", Value::None);
    assert!(matches!(
        render_parameters(Language::CSharp, &p, "Parameters"),
        Err(ParamError::Unsupported { .. })
    ));
    assert!(translate_value(Language::CSharp, &Value::List(vec![Value::None])).is_err());
    assert!(translate_value(Language::Bash, &Value::Dict(vec![])).is_err());
    assert!(matches!(
        translate_value(Language::R, &s("a\0b")),
        Err(ParamError::Unrepresentable { .. })
    ));
    assert!(translate_value(Language::Bash, &Value::List(vec![s("\0")])).is_err());
    assert_eq!(
        translate_value(Language::Python, &s("a\0b")).unwrap(),
        r#""a\x00b""#
    );
}

#[test]
fn names_are_validated() {
    let mut p = Parameters::new();
    p.set("x = 1\nimport os\ny", int("1"));
    assert!(matches!(
        render_parameters(Language::Python, &p, "Parameters"),
        Err(ParamError::InvalidName { .. })
    ));
    let mut p = Parameters::new();
    p.set("___", int("1"));
    assert!(render_parameters(Language::R, &p, "Parameters").is_err());
}

#[test]
fn special_values_render() {
    use Language::*;
    let t = |l, v: &Value| translate_value(l, v).unwrap();
    assert_eq!(t(Python, &Value::Float(-0.0)), "-0.0");
    assert_eq!(t(Python, &Value::Float(1e22)), "1e+22");
    assert_eq!(t(PowerShell, &Value::Float(f64::NAN)), "[double]::NaN");
    assert_eq!(t(Bash, &Value::None), "");
    assert_eq!(
        t(Bash, &Value::List(vec![int("1"), Value::None, s("a b")])),
        "(1  'a b')"
    );
    assert_eq!(
        t(
            PowerShell,
            &Value::Dict(vec![("a".into(), int("1")), ("b".into(), int("2"))])
        ),
        "@{\"a\" = 1\n \"b\" = 2}"
    );
    assert_eq!(
        t(Matlab, &Value::Dict(vec![("it's\n".into(), s("v\\"))])),
        "containers.Map({['it''s' char(10)]}, {\"v\\\"})"
    );
    assert_eq!(t(Scala, &int("-2147483649")), "-2147483649L");
}
