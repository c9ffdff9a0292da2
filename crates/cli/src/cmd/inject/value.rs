//! Small helpers over [`serde_yaml_ng::Value`]: building mappings in a fixed key order, reading
//! fields without trusting their types, and the one normalisation applied to every document.

use serde_yaml_ng::{Mapping, Value};

/// A string value.
pub fn s(text: impl Into<String>) -> Value {
    Value::String(text.into())
}

/// An integer value.
pub fn n(i: i64) -> Value {
    Value::Number(i.into())
}

/// A mapping with its keys in the order given.
pub fn map<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    let mut m = Mapping::with_capacity(N);
    for (k, v) in pairs {
        m.insert(s(k), v);
    }
    Value::Mapping(m)
}

/// A sequence.
pub fn seq(items: impl IntoIterator<Item = Value>) -> Value {
    Value::Sequence(items.into_iter().collect())
}

/// A sequence of strings.
pub fn strings<'a>(items: impl IntoIterator<Item = &'a str>) -> Value {
    seq(items.into_iter().map(s))
}

/// `m[key]` if it is a string.
pub fn str_field<'a>(m: &'a Mapping, key: &str) -> Option<&'a str> {
    m.get(key).and_then(Value::as_str)
}

/// A field that should hold a mapping: absent (or `null`), a mapping, or something else.
pub enum Field<'a> {
    Absent,
    Mapping(&'a Mapping),
    Wrong,
}

/// Reads `m[key]` as an optional mapping.
pub fn mapping_field<'a>(m: &'a Mapping, key: &str) -> Field<'a> {
    match m.get(key) {
        None | Some(Value::Null) => Field::Absent,
        Some(Value::Mapping(inner)) => Field::Mapping(inner),
        Some(_) => Field::Wrong,
    }
}

/// `m[key]` as a mapping, created (as the first key, where people expect `metadata`) when absent
/// or `null`; `None` if it holds something else.
pub fn mapping_entry<'a>(m: &'a mut Mapping, key: &str, first: bool) -> Option<&'a mut Mapping> {
    let absent = matches!(m.get(key), None | Some(Value::Null));
    if absent {
        if first && !m.contains_key(key) {
            let rest = std::mem::take(m);
            m.insert(s(key), Value::Mapping(Mapping::new()));
            for (k, v) in rest {
                m.insert(k, v);
            }
        } else {
            m.insert(s(key), Value::Mapping(Mapping::new()));
        }
    }
    m.get_mut(key).and_then(Value::as_mapping_mut)
}

/// `m[key]` as a sequence, created at the end when absent or `null`; `None` if it holds
/// something else.
pub fn sequence_entry<'a>(m: &'a mut Mapping, key: &str) -> Option<&'a mut Vec<Value>> {
    if matches!(m.get(key), None | Some(Value::Null)) {
        m.insert(s(key), Value::Sequence(Vec::new()));
    }
    m.get_mut(key).and_then(Value::as_sequence_mut)
}

/// A scalar as the text a person wrote (`"true"`, `"5"`), or what kind of thing it is.
pub fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

/// Rewrites file modes written as YAML 1.1 octal (`defaultMode: 0644`) under `volumes` to the
/// integer Kubernetes reads (420).
///
/// Kubernetes parses manifests as YAML 1.1, where `0644` is an octal integer; serde_yaml_ng
/// follows YAML 1.2, where it is the string "0644", and would write it back quoted (`'0644'`),
/// which the API server then rejects (a string where an int32 belongs). Such modes are common in
/// Secret and ConfigMap volumes, so every document gets this treatment, injected or not. Only
/// `mode`/`defaultMode` under a `volumes` key are touched; a quoted `"0644"` there was invalid
/// anyway.
pub fn normalize_octal_modes(v: &mut Value) {
    walk(v, false);

    fn walk(v: &mut Value, in_volumes: bool) {
        match v {
            Value::Mapping(m) => {
                for (k, child) in m.iter_mut() {
                    let key = k.as_str().unwrap_or("");
                    if in_volumes && (key == "mode" || key == "defaultMode") {
                        if let Some(mode) = child.as_str().and_then(octal) {
                            *child = n(mode);
                            continue;
                        }
                    }
                    walk(child, in_volumes || key == "volumes");
                }
            }
            Value::Sequence(items) => items.iter_mut().for_each(|i| walk(i, in_volumes)),
            Value::Tagged(t) => walk(&mut t.value, in_volumes),
            _ => {}
        }
    }

    fn octal(s: &str) -> Option<i64> {
        let digits = s.strip_prefix('0')?;
        if digits.is_empty()
            || digits.len() > 4
            || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
        {
            return None;
        }
        i64::from_str_radix(digits, 8).ok()
    }
}
