//! polyproto-mls (`/.p2/mls/v1/`, the mls OpenAPI alpha.4): KeyPackages, groups, proposals
//! and commits — the server as MLS authentication and delivery service (mls.md §2). Bodies
//! are the models of [`crate::mls`], each carrying its RFC 9420 object (`fugue:mls`).

endpoints! {
    /// Every endpoint of polyproto-mls.
    MLS_ENDPOINTS;
    /// Where polyproto-mls lives below a home server's origin.
    MLS_API = "/.p2/mls/";

    /// A new group: the creator's KeyPackage (the spec's body) and the group's GroupInfo at
    /// epoch 0 (`fugue:groupInfo`). The group's id is its MLS group id.
    create_mls_group = POST "v1/groups", auth AnySession {
        pub type Request = crate::mls::CreateGroup;
        pub type Response = crate::mls::Group;
    }

    /// A group the caller has a device in (404 to everyone else).
    get_mls_group = GET "v1/groups/{group_id}" (group_id: &str), auth AnySession {
        pub type Response = crate::mls::Group;
    }

    /// A proposal of a member device for the current epoch: 204, passed on to the members.
    submit_proposal = POST "v1/groups/{group_id}/proposals" (group_id: &str), auth AnySession {
        pub type Request = crate::mls::Proposal;
    }

    /// The proposals pending in the current epoch, oldest first.
    list_proposals = GET "v1/groups/{group_id}/proposals" (group_id: &str), auth AnySession {
        pub type Response = Vec<crate::mls::Proposal>;
    }

    /// A commit for the current epoch: exactly one wins each epoch (409 for the others).
    /// 200 with the Welcome when it adds devices, else 204.
    submit_commit = POST "v1/groups/{group_id}/commits" (group_id: &str), auth AnySession {
        pub type Request = crate::mls::Commit;
        pub type Response = crate::mls::Welcome;
    }

    /// The commit that started the current epoch (404 at epoch 0).
    latest_commit = GET "v1/groups/{group_id}/commits/latest" (group_id: &str), auth AnySession {
        pub type Response = crate::mls::Commit;
    }

    /// The group's member devices, by leaf index.
    group_members = GET "v1/groups/{group_id}/members" (group_id: &str), auth AnySession {
        pub type Response = Vec<crate::mls::GroupMember>;
    }

    /// One member device by its id (leaf index).
    group_member = GET "v1/groups/{group_id}/members/{member_id}" (group_id: &str, member_id: &str),
        auth AnySession {
        pub type Response = crate::mls::GroupMember;
    }

    /// The calling device's KeyPackages: checked one by one, stored all or none (400 with
    /// a reason per refused package; 413 beyond the device's limit).
    upload_key_packages = POST "v1/keypackages", auth Session {
        pub type Request = Vec<crate::mls::KeyPackage>;
    }

    /// Claims one KeyPackage per device of an actor of this server, each handed out once
    /// (the last-resort one when a device has no other). 204 when there is none, 404 for an
    /// unknown actor; throttled per requester and actor.
    claim_key_packages = GET "v1/keypackages/{fid}" (fid: &crate::FederationId), auth AnySession {
        use serde::{Deserialize, Serialize};

        /// Allow-lists, comma-separated (`explode: false`).
        #[derive(Debug, Clone, Default, Serialize, Deserialize)]
        pub struct Query {
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub versions: Option<String>,
            pub ciphersuites: String,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub extensions: Option<String>,
        }
        pub type Response = Vec<crate::mls::KeyPackage>;
    }
}
