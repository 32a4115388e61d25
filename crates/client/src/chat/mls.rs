//! The `mls` routes on the server holding a conversation (`/.p2/mls/v1/`): groups, their
//! members, proposals and commits, and KeyPackages claimed for an actor of that server.

use fugue_proto::FederationId;
use fugue_proto::api::{
    claim_key_packages, create_mls_group, get_mls_group, group_member, group_members,
    latest_commit, list_proposals, submit_commit, submit_proposal,
};
use fugue_proto::mls::{self, CIPHERSUITE};
use reqwest::StatusCode;

use super::Chat;
use crate::error::Result;
use crate::http::send;

impl Chat {
    /// Registers a group made with [`crate::mls::Mls::create_group`].
    pub async fn mls_create_group(&self, body: &mls::CreateGroup) -> Result<mls::Group> {
        self.json(self.authed(create_mls_group::target())?.json(body))
            .await
    }

    pub async fn mls_group(&self, group_id: &str) -> Result<mls::Group> {
        self.json(self.authed(get_mls_group::target(group_id))?)
            .await
    }

    pub async fn mls_members(&self, group_id: &str) -> Result<Vec<mls::GroupMember>> {
        self.json(self.authed(group_members::target(group_id))?)
            .await
    }

    pub async fn mls_member(&self, group_id: &str, member: &str) -> Result<mls::GroupMember> {
        self.json(self.authed(group_member::target(group_id, member))?)
            .await
    }

    pub async fn mls_propose(&self, group_id: &str, proposal: &mls::Proposal) -> Result<()> {
        self.empty(
            self.authed(submit_proposal::target(group_id))?
                .json(proposal),
        )
        .await
    }

    pub async fn mls_proposals(&self, group_id: &str) -> Result<Vec<mls::Proposal>> {
        self.json(self.authed(list_proposals::target(group_id))?)
            .await
    }

    /// Submits a commit; the Welcome it carried when it added devices.
    pub async fn mls_commit(
        &self,
        group_id: &str,
        commit: &mls::Commit,
    ) -> Result<Option<mls::Welcome>> {
        let response = send(self.authed(submit_commit::target(group_id))?.json(commit)).await?;
        if response.status() == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        Ok(Some(self.client.read_json(response).await?))
    }

    pub async fn mls_latest_commit(&self, group_id: &str) -> Result<mls::Commit> {
        self.json(self.authed(latest_commit::target(group_id))?)
            .await
    }

    /// One KeyPackage per device of `fid` (an actor of this server), each handed out once;
    /// empty when none has one.
    pub async fn claim_key_packages(&self, fid: &FederationId) -> Result<Vec<mls::KeyPackage>> {
        let query = claim_key_packages::Query {
            versions: Some(mls::VERSION_1_0.to_owned()),
            ciphersuites: mls::code(CIPHERSUITE),
            extensions: None,
        };
        let response = send(self.authed_query(claim_key_packages::target(fid), &query)?).await?;
        if response.status() == StatusCode::NO_CONTENT {
            return Ok(Vec::new());
        }
        self.client.read_json(response).await
    }
}
