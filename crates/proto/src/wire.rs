//! Wire conventions shared by every route (OP-9, OP-41, OP-49; SDK-COMPAT §1).
//!
//! - u64 values are emitted as decimal strings and accepted as number or string.
//! - Every JSON response body is RFC 8785 (JCS) canonical text: the reference SDK rejects
//!   anything else on certificate responses, and one rule for all routes is simpler.

use serde::Serialize;

/// Serialises `value` as RFC 8785 canonical JSON.
pub fn to_canonical_vec<T: Serialize>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    serde_json_canonicalizer::to_vec(value)
}

/// `#[serde(with = "u64_string")]`: emit a decimal string, accept a number or a string.
pub mod u64_string {
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;

    pub fn serialize<S: Serializer>(value: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(value)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        d.deserialize_any(U64Visitor)
    }

    struct U64Visitor;

    impl Visitor<'_> for U64Visitor {
        type Value = u64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an unsigned 64-bit integer as a number or a decimal string")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v).map_err(|_| E::custom("negative value"))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(E::custom("not a decimal unsigned integer"));
            }
            v.parse().map_err(E::custom)
        }
    }

    /// The same for `Option<u64>` (absent or null = `None`); use with `#[serde(default)]`.
    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(value: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
            match value {
                Some(v) => s.collect_str(v),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
            #[derive(Deserialize)]
            struct Wrap(#[serde(with = "super")] u64);
            Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct T {
        #[serde(with = "u64_string")]
        b: u64,
        #[serde(
            with = "u64_string::option",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        a: Option<u64>,
    }

    #[test]
    fn u64_accepts_numbers_and_strings_and_emits_strings() {
        let t: T = serde_json::from_str(r#"{"b":18446744073709551615,"a":"7"}"#).unwrap();
        assert_eq!(
            t,
            T {
                b: u64::MAX,
                a: Some(7)
            }
        );
        let t: T = serde_json::from_str(r#"{"b":"12"}"#).unwrap();
        assert_eq!(t.a, None);
        assert_eq!(
            String::from_utf8(to_canonical_vec(&t).unwrap()).unwrap(),
            r#"{"b":"12"}"#
        );
        for bad in [
            r#"{"b":-1}"#,
            r#"{"b":"1e3"}"#,
            r#"{"b":"-1"}"#,
            r#"{"b":""}"#,
            r#"{"b":1.5}"#,
        ] {
            assert!(serde_json::from_str::<T>(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn canonical_output_sorts_keys_and_has_no_whitespace() {
        let v = serde_json::json!({"z": 1, "a": {"y": "x", "b": [1, 2]}});
        assert_eq!(
            to_canonical_vec(&v).unwrap(),
            br#"{"a":{"b":[1,2],"y":"x"},"z":1}"#
        );
    }
}
