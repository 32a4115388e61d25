//! A group's public state as the server keeps it between requests; the MLS objects
//! themselves are read with [`fugue_proto::mls_wire`], as the client reads them.

use std::collections::HashMap;
use std::sync::RwLock;

use openmls_rust_crypto::MemoryStorage;

use fugue_proto::mls;
pub(super) use fugue_proto::mls_wire::*;

use super::Error;

/// A group's public state, as openmls stored it, in one value.
pub(super) fn encode_state(storage: &MemoryStorage) -> Vec<u8> {
    storage
        .values
        .read()
        .map(|v| mls::encode_entries(v.iter()))
        .unwrap_or_default()
}

/// The state [`encode_state`] wrote.
pub(super) fn decode_state(bytes: &[u8]) -> Result<MemoryStorage, Error> {
    let entries = mls::decode_entries(bytes)
        .ok_or_else(|| Error::Store(fugue_store::Error::Decode("MLS group state".into())))?;
    Ok(MemoryStorage {
        values: RwLock::new(entries.into_iter().collect::<HashMap<_, _>>()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_refuses_truncation() {
        let s = MemoryStorage::default();
        if let Ok(mut v) = s.values.write() {
            v.insert(b"b".to_vec(), vec![2; 300]);
            v.insert(b"a".to_vec(), Vec::new());
        }
        let bytes = encode_state(&s);
        let back = decode_state(&bytes).map(|s| encode_state(&s));
        assert_eq!(back.ok(), Some(bytes.clone()));
        assert!(decode_state(&bytes[..bytes.len() - 1]).is_err());
    }
}
