//! Values between the command line's JSON and the mesh's MessagePack.
//!
//! Arguments are JSON, sent as the MessagePack of the same value. Replies
//! may hold what JSON lacks: binary strings become arrays of byte values,
//! and map keys that are not strings are written as JSON text.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::outcome::Failure;

/// JSON text from the command line (none means `null`).
pub fn parse(text: Option<&str>) -> Result<Value, Failure> {
    match text {
        None => Ok(Value::Null),
        Some(t) => serde_json::from_str(t)
            .map_err(|e| Failure::Usage(format!("arguments {t:?} are not JSON: {e}"))),
    }
}

/// Any MessagePack value, as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Json(pub Value);

impl serde::Serialize for Json {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Json, D::Error> {
        d.deserialize_any(JsonVisitor).map(Json)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any MessagePack value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // NaN and infinities have no JSON form.
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_bytes<E>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::Array(v.iter().map(|&b| Value::from(b)).collect()))
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Json::deserialize(d).map(|j| j.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        // No capacity from the input's own claim: it is the peer's.
        let mut items = Vec::new();
        while let Some(Json(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some((Json(k), Json(v))) = map.next_entry()? {
            let key = match k {
                Value::String(s) => s,
                other => other.to_string(),
            };
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, _data: A) -> Result<Value, A::Error> {
        Err(de::Error::custom("an extension type has no JSON form"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What `value`, encoded as a peer would, looks like to the command line.
    fn seen<T: serde::Serialize>(value: &T) -> Value {
        let bytes = rmp_serde::to_vec_named(value).unwrap();
        rmp_serde::from_slice::<Json>(&bytes).unwrap().0
    }

    #[test]
    fn json_arguments_parse_and_bad_ones_are_usage_errors() {
        assert_eq!(parse(None).unwrap(), Value::Null);
        assert_eq!(parse(Some("[1, \"a\"]")).unwrap(), json!([1, "a"]));
        assert_eq!(parse(Some("{nope")).unwrap_err().code(), 2);
    }

    #[test]
    fn every_messagepack_value_has_a_json_form() {
        let nested = json!({"list": [1, -2, 3.5, null, true], "text": "héllo", "map": {"k": "v"}});
        assert_eq!(seen(&nested), nested);
        assert_eq!(seen(&serde_bytes::Bytes::new(b"\x00\xff")), json!([0, 255]));
        let int_keys: std::collections::BTreeMap<u32, &str> = [(1, "a"), (2, "b")].into();
        assert_eq!(seen(&int_keys), json!({"1": "a", "2": "b"}));
        assert_eq!(seen(&f64::NAN), Value::Null);
        assert_eq!(seen(&u64::MAX), json!(u64::MAX));
        assert_eq!(seen(&i64::MIN), json!(i64::MIN));
    }
}
