//! polyproto distinguished names (DIGEST §4.3, OP-15, OP-16).
//!
//! We emit `DC=<tld>, DC=<domain>[, DC=<sub>…], UID, CN, uniqueIdentifier`, one attribute per
//! RDN; DC and uniqueIdentifier as IA5String, UID and CN as UTF8String. We accept any order,
//! any common string type and multi-valued RDNs, but never duplicate CN, UID or session IDs.

use der::asn1::{Any, Ia5StringRef, SetOfVec, Utf8StringRef};
use der::{Tag, Tagged};
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};

use super::{CertError, OID_CN, OID_DC, OID_UID, OID_UNIQUE_ID};
use crate::{DomainName, FederationId, SessionId};

/// The polyproto-relevant attributes of a name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pdn {
    /// Domain components in DER order (most significant first: `com`, `example`).
    pub dcs: Vec<String>,
    pub cn: Option<String>,
    pub uid: Option<String>,
    pub session_id: Option<String>,
}

impl Pdn {
    /// The DCs as a domain (`example.com`), lowercased.
    pub fn domain(&self) -> String {
        let mut parts: Vec<&str> = self.dcs.iter().map(String::as_str).collect();
        parts.reverse();
        parts.join(".").to_ascii_lowercase()
    }

    /// True when the DCs name `domain` exactly, in order (case-insensitive).
    pub fn dcs_match(&self, domain: &DomainName) -> bool {
        let mut want: Vec<&str> = domain.components().collect();
        want.reverse();
        self.dcs.len() == want.len()
            && self
                .dcs
                .iter()
                .zip(want)
                .all(|(a, b)| a.eq_ignore_ascii_case(b))
    }
}

fn string_value(value: &Any) -> Result<String, CertError> {
    match value.tag() {
        Tag::Utf8String | Tag::Ia5String | Tag::PrintableString | Tag::VisibleString => {
            std::str::from_utf8(value.value())
                .map(str::to_owned)
                .map_err(|_| CertError::Malformed("name attribute is not valid UTF-8".into()))
        }
        other => Err(CertError::Malformed(format!(
            "unsupported string type {other} in name"
        ))),
    }
}

fn set_once(slot: &mut Option<String>, value: String, what: &str) -> Result<(), CertError> {
    if slot.replace(value).is_some() {
        return Err(CertError::SubjectMismatch(format!(
            "{what} appears more than once"
        )));
    }
    Ok(())
}

/// Extracts the pDN attributes of `name`; other attributes are ignored (core §6.1.1).
pub fn parse(name: &Name) -> Result<Pdn, CertError> {
    let mut pdn = Pdn::default();
    for rdn in name.0.iter() {
        for atv in rdn.0.iter() {
            if atv.oid == OID_DC {
                pdn.dcs.push(string_value(&atv.value)?);
            } else if atv.oid == OID_CN {
                set_once(&mut pdn.cn, string_value(&atv.value)?, "CN")?;
            } else if atv.oid == OID_UID {
                set_once(&mut pdn.uid, string_value(&atv.value)?, "UID")?;
            } else if atv.oid == OID_UNIQUE_ID {
                let v = string_value(&atv.value).map_err(|_| CertError::InvalidSessionId)?;
                set_once(&mut pdn.session_id, v, "uniqueIdentifier")?;
            }
        }
    }
    Ok(pdn)
}

fn rdn(
    oid: der::asn1::ObjectIdentifier,
    value: Any,
) -> Result<RelativeDistinguishedName, CertError> {
    let atv = AttributeTypeAndValue { oid, value };
    Ok(RelativeDistinguishedName(SetOfVec::try_from(vec![atv])?))
}

fn dc_rdns(domain: &DomainName) -> Result<Vec<RelativeDistinguishedName>, CertError> {
    let mut parts: Vec<&str> = domain.components().collect();
    parts.reverse();
    parts
        .into_iter()
        .map(|dc| rdn(OID_DC, Any::encode_from(&Ia5StringRef::new(dc)?)?))
        .collect()
}

/// Home-server pDN: domain components only.
pub fn server_name(domain: &DomainName) -> Result<Name, CertError> {
    Ok(RdnSequence(dc_rdns(domain)?))
}

/// Actor pDN for `fid` on the home server `fid.domain()`.
pub fn actor_name(fid: &FederationId, session: &SessionId) -> Result<Name, CertError> {
    let mut rdns = dc_rdns(fid.domain())?;
    let fid_text = fid.to_string();
    rdns.push(rdn(
        OID_UID,
        Any::encode_from(&Utf8StringRef::new(&fid_text)?)?,
    )?);
    rdns.push(rdn(
        OID_CN,
        Any::encode_from(&Utf8StringRef::new(fid.local_name().as_str())?)?,
    )?);
    rdns.push(rdn(
        OID_UNIQUE_ID,
        Any::encode_from(&Ia5StringRef::new(session.as_str())?)?,
    )?);
    Ok(RdnSequence(rdns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actor_names_round_trip_through_parse() {
        let fid: FederationId = "xenia@sub.example.com".parse().unwrap();
        let session: SessionId = "phone".parse().unwrap();
        let pdn = parse(&actor_name(&fid, &session).unwrap()).unwrap();
        assert_eq!(pdn.dcs, ["com", "example", "sub"]);
        assert_eq!(pdn.domain(), "sub.example.com");
        assert!(pdn.dcs_match(fid.domain()));
        assert!(!pdn.dcs_match(&"example.com".parse().unwrap()));
        assert_eq!(pdn.cn.as_deref(), Some("xenia"));
        assert_eq!(pdn.uid.as_deref(), Some("xenia@sub.example.com"));
        assert_eq!(pdn.session_id.as_deref(), Some("phone"));
    }
}
