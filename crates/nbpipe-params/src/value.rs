//! Parameter values and the ordered parameter set.

use crate::pynum::py_float_repr;

/// A parameter value: what papermill's YAML sources (`-y`, `-f`, `-b`) and
/// `-p`/`-r` options produce, i.e. the JSON/YAML subset of Python objects.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Python `None`.
    None,
    /// Python `bool`.
    Bool(bool),
    /// Python `int` of any size, as canonical decimal digits with an optional
    /// leading `-` (no `+`, no leading zeros, never `-0`).
    Int(String),
    /// Python `float`.
    Float(f64),
    /// Python `str`.
    Str(String),
    /// Python `list`.
    List(Vec<Value>),
    /// Python `dict` with string keys, in insertion order. YAML keys that are
    /// not strings are converted with Python's `str()` (see [`crate::parse_yaml`]).
    Dict(Vec<(String, Value)>),
}

impl Value {
    /// An [`Value::Int`] from a machine integer.
    pub fn int(v: i128) -> Value {
        Value::Int(v.to_string())
    }

    /// A [`Value::Str`].
    pub fn str(s: impl Into<String>) -> Value {
        Value::Str(s.into())
    }

    /// Python's `type(v).__name__` for this value (`NoneType`, `bool`, `int`,
    /// `float`, `str`, `list`, `dict`).
    pub fn python_type_name(&self) -> &'static str {
        match self {
            Value::None => "NoneType",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
        }
    }

    /// Python's truthiness (`bool(v)`).
    pub fn is_truthy(&self) -> bool {
        match self {
            Value::None => false,
            Value::Bool(b) => *b,
            Value::Int(s) => s != "0",
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Dict(d) => !d.is_empty(),
        }
    }

    /// Python's `str(v)` for scalars (`None`, `True`, `42`, `1e+16`, `nan`,
    /// the string itself); `None` for lists and dicts.
    pub fn scalar_py_str(&self) -> Option<String> {
        Some(match self {
            Value::None => "None".to_owned(),
            Value::Bool(true) => "True".to_owned(),
            Value::Bool(false) => "False".to_owned(),
            Value::Int(s) => s.clone(),
            Value::Float(f) => py_float_repr(*f),
            Value::Str(s) => s.clone(),
            Value::List(_) | Value::Dict(_) => return None,
        })
    }

    /// The JSON form stored in `metadata.papermill.parameters`.
    ///
    /// Python's `json.dumps` writes every `int` as a JSON number and
    /// non-finite floats as the non-standard tokens `NaN`/`Infinity`.
    /// `serde_json` can hold neither arbitrarily large integers nor those
    /// tokens, so: an `Int` outside the `i64`/`u64` range becomes a JSON
    /// *string* of its digits, and a NaN or infinite `Float` becomes `null`.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::None => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(s) => {
                if let Ok(i) = s.parse::<i64>() {
                    J::from(i)
                } else if let Ok(u) = s.parse::<u64>() {
                    J::from(u)
                } else {
                    J::String(s.clone())
                }
            }
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::List(l) => J::Array(l.iter().map(Value::to_json).collect()),
            Value::Dict(d) => J::Object(d.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()),
        }
    }

    /// Convert parsed JSON (e.g. papermill's stored parameters) back to a
    /// value. JSON numbers that are integers become `Int`, others `Float`.
    pub fn from_json(j: &serde_json::Value) -> Value {
        use serde_json::Value as J;
        match j {
            J::Null => Value::None,
            J::Bool(b) => Value::Bool(*b),
            J::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Value::Int(i.to_string())
                } else if let Some(u) = n.as_u64() {
                    Value::Int(u.to_string())
                } else {
                    Value::Float(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            J::String(s) => Value::Str(s.clone()),
            J::Array(a) => Value::List(a.iter().map(Value::from_json).collect()),
            J::Object(o) => {
                let mut d = Vec::with_capacity(o.len());
                for (k, v) in o {
                    dict_set(&mut d, k.clone(), Value::from_json(v));
                }
                Value::Dict(d)
            }
        }
    }
}

/// Python `d[key] = value` on an ordered list of pairs: re-setting a key
/// keeps its first position.
pub(crate) fn dict_set(d: &mut Vec<(String, Value)>, key: String, value: Value) {
    if let Some(slot) = d.iter_mut().find(|(k, _)| *k == key) {
        slot.1 = value;
    } else {
        d.push((key, value));
    }
}

/// Ordered parameters with Python-dict update semantics: re-setting a name
/// keeps its first position and takes the new value.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Parameters {
    entries: Vec<(String, Value)>,
}

impl Parameters {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// `params[name] = v`.
    pub fn set(&mut self, name: &str, v: Value) {
        dict_set(&mut self.entries, name.to_owned(), v);
    }

    /// `params.update(other)`.
    pub fn update(&mut self, other: Parameters) {
        for (k, v) in other.entries {
            dict_set(&mut self.entries, k, v);
        }
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.entries.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// Remove `name`, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<Value> {
        let i = self.entries.iter().position(|(k, _)| k == name)?;
        Some(self.entries.remove(i).1)
    }

    /// Names and values in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The JSON object stored as `metadata.papermill.parameters`; see
    /// [`Value::to_json`] for the two lossy cases (huge ints, NaN/infinity).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.entries
                .iter()
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect(),
        )
    }

    /// The parameters as a [`Value::Dict`].
    pub fn into_value(self) -> Value {
        Value::Dict(self.entries)
    }
}

impl FromIterator<(String, Value)> for Parameters {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Self {
        let mut p = Parameters::new();
        for (k, v) in iter {
            dict_set(&mut p.entries, k, v);
        }
        p
    }
}

impl IntoIterator for Parameters {
    type Item = (String, Value);
    type IntoIter = std::vec::IntoIter<(String, Value)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_keeps_first_position() {
        let mut p = Parameters::new();
        p.set("a", Value::int(1));
        p.set("b", Value::int(2));
        let mut q = Parameters::new();
        q.set("c", Value::int(3));
        q.set("a", Value::str("x"));
        p.update(q);
        let names: Vec<_> = p.iter().map(|(k, _)| k).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(p.get("a"), Some(&Value::str("x")));
        assert_eq!(p.len(), 3);
        assert_eq!(p.remove("b"), Some(Value::int(2)));
        assert!(!p.is_empty());
    }

    #[test]
    fn json_forms() {
        let mut p = Parameters::new();
        p.set("n", Value::None);
        p.set("i", Value::int(-5));
        p.set("u", Value::Int("18446744073709551615".into()));
        p.set("big", Value::Int("123456789012345678901234567890".into()));
        p.set("f", Value::Float(1.5));
        p.set("nan", Value::Float(f64::NAN));
        p.set("l", Value::List(vec![Value::Bool(true), Value::str("s")]));
        p.set("d", Value::Dict(vec![("k".into(), Value::Float(1e16))]));
        let j = p.to_json();
        assert_eq!(
            j,
            serde_json::json!({
                "n": null, "i": -5, "u": 18446744073709551615u64,
                "big": "123456789012345678901234567890", "f": 1.5, "nan": null,
                "l": [true, "s"], "d": {"k": 1e16}
            })
        );
        let back = Value::from_json(&serde_json::json!({"a": 1, "b": 2.5, "c": [null]}));
        assert_eq!(
            back,
            Value::Dict(vec![
                ("a".into(), Value::int(1)),
                ("b".into(), Value::Float(2.5)),
                ("c".into(), Value::List(vec![Value::None])),
            ])
        );
    }

    #[test]
    fn truthiness_and_str() {
        assert!(!Value::Int("0".into()).is_truthy());
        assert!(!Value::Float(-0.0).is_truthy());
        assert!(Value::Float(f64::NAN).is_truthy());
        assert!(!Value::str("").is_truthy());
        assert_eq!(Value::Float(1e16).scalar_py_str().unwrap(), "1e+16");
        assert_eq!(Value::Bool(true).scalar_py_str().unwrap(), "True");
        assert_eq!(Value::None.scalar_py_str().unwrap(), "None");
        assert!(Value::List(vec![]).scalar_py_str().is_none());
    }
}
