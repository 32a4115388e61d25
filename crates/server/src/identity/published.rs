//! The published certificate lists of local actors (`GET /idcert/actor/{fid}`), built once
//! per change and cache-window step. Asking again costs a count query and a copy — not one
//! signature and one serialisation per certificate, so no actor can turn the public route
//! into a CPU or memory amplifier by collecting certificates.

use std::collections::HashMap;
use std::sync::Arc;

use fugue_proto::api::get_actor_idcerts::Query;

/// Bytes of serialised entries kept over all actors; beyond it the cache starts afresh.
const BUDGET: usize = 32 * 1024 * 1024;

/// One certificate of the list: what the filters look at, and its canonical JSON.
pub(super) struct Item {
    pub not_before: u64,
    pub not_after: u64,
    pub session_id: String,
    pub json: Vec<u8>,
}

/// `(certificates, revoked ones)` of an actor: the version of its list.
type Version = (i64, i64);

/// The lists of one window step (signatures are per step), within [`BUDGET`].
#[derive(Default)]
pub(super) struct Published {
    step: u64,
    /// actor → (version of its certificates, list).
    lists: HashMap<i64, (Version, Arc<Vec<Item>>)>,
    bytes: usize,
}

fn size(items: &[Item]) -> usize {
    items
        .iter()
        .map(|i| i.json.len() + i.session_id.len())
        .sum()
}

impl Published {
    /// The actor's list if it was built in this step for this version of its certificates.
    pub fn get(&self, actor_id: i64, step: u64, version: Version) -> Option<Arc<Vec<Item>>> {
        if step != self.step {
            return None;
        }
        self.lists
            .get(&actor_id)
            .filter(|(v, _)| *v == version)
            .map(|(_, items)| items.clone())
    }

    pub fn put(&mut self, actor_id: i64, step: u64, version: Version, items: Arc<Vec<Item>>) {
        if step < self.step {
            return; // built by a request of the previous step; its signatures are stale
        }
        let bytes = size(&items);
        if step != self.step || self.bytes + bytes > BUDGET {
            self.step = step;
            self.lists.clear();
            self.bytes = 0;
        }
        if bytes > BUDGET {
            return;
        }
        if let Some((_, old)) = self.lists.insert(actor_id, (version, items)) {
            self.bytes -= size(&old);
        }
        self.bytes += bytes;
    }
}

/// The JSON array of the items the query selects (the same rules as the store's
/// `certs_of`); canonical JSON of an array is its canonical elements joined by commas.
pub(super) fn answer(items: &[Item], q: &Query) -> Vec<u8> {
    let selected = items
        .iter()
        .filter(|i| q.selects(i.not_before, i.not_after, Some(&i.session_id)));
    let mut out = Vec::with_capacity(2 + items.iter().map(|i| i.json.len() + 1).sum::<usize>());
    out.push(b'[');
    for (n, item) in selected.enumerate() {
        if n > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&item.json);
    }
    out.push(b']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(nb: u64, na: u64, sid: &str) -> Item {
        Item {
            not_before: nb,
            not_after: na,
            session_id: sid.into(),
            json: format!(r#"{{"s":"{sid}"}}"#).into_bytes(),
        }
    }

    #[test]
    fn answers_filter_like_the_store_and_stay_canonical_arrays() {
        let items = vec![item(10, 20, "a"), item(15, 30, "b"), item(25, 40, "a")];
        let q = |nb, na, sid: Option<&str>| Query {
            not_before: nb,
            not_after: na,
            session_id: sid.map(str::to_owned),
        };
        let all = answer(&items, &q(None, None, None));
        assert_eq!(all, br#"[{"s":"a"},{"s":"b"},{"s":"a"}]"#);
        assert_eq!(
            answer(&items, &q(Some(21), None, None)),
            br#"[{"s":"b"},{"s":"a"}]"#
        );
        assert_eq!(answer(&items, &q(None, Some(14), None)), br#"[{"s":"a"}]"#);
        assert_eq!(answer(&items, &q(None, None, Some("b"))), br#"[{"s":"b"}]"#);
        assert_eq!(answer(&items, &q(Some(100), None, None)), b"[]");
        let parsed: serde_json::Value = serde_json::from_slice(&all).unwrap();
        assert_eq!(parsed.as_array().map(Vec::len), Some(3));
    }

    #[test]
    fn lists_are_kept_per_step_and_version() {
        let mut p = Published::default();
        p.put(1, 60, (2, 0), Arc::new(vec![item(1, 2, "a")]));
        assert!(p.get(1, 60, (2, 0)).is_some());
        assert!(
            p.get(1, 60, (2, 1)).is_none(),
            "a revocation changes the version"
        );
        assert!(p.get(1, 120, (2, 0)).is_none(), "a new step signs anew");
        p.put(2, 120, (1, 0), Arc::new(vec![item(1, 2, "b")]));
        assert!(p.get(1, 60, (2, 0)).is_none(), "older steps are dropped");
        assert!(p.get(2, 120, (1, 0)).is_some());
        p.put(3, 60, (1, 0), Arc::new(vec![item(1, 2, "c")]));
        assert!(
            p.get(3, 60, (1, 0)).is_none(),
            "a late list of an old step is not kept"
        );
        assert!(
            p.get(2, 120, (1, 0)).is_some(),
            "and does not clear the current step"
        );
    }
}
