use axum::http::StatusCode;
use fugue_proto::ErrorCode;
use fugue_proto::chat::Permissions;

use crate::http::ApiError;
use crate::{federation, sessions};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("guild {0} does not exist or is not visible to you")]
    GuildNotFound(u64),
    #[error("channel {0} does not exist or is not visible to you")]
    ChannelNotFound(u64),
    #[error("message {0} does not exist in this channel")]
    MessageNotFound(u64),
    #[error("{0} is not a member of this guild")]
    MemberNotFound(String),
    #[error("role {0} does not exist in this guild")]
    RoleNotFound(u64),
    #[error("no such invite")]
    InviteNotFound,
    #[error("{0} is not known here")]
    ActorNotFound(String),
    #[error("you lack the {0} permission here")]
    MissingPermission(Permissions),
    #[error("only the guild's owner may do this")]
    NotOwner,
    #[error("only the message's author may edit it")]
    NotAuthor,
    #[error("you are banned from this guild")]
    Banned,
    #[error("you are a member of this guild already")]
    AlreadyMember,
    #[error("the guild's owner cannot leave or be removed; transfer the guild first")]
    OwnerCannotLeave,
    #[error("the invite is unknown, used up, expired or for another guild")]
    InvalidInvite,
    #[error("this guild is joined with an invite only")]
    InviteRequired,
    #[error("{0}")]
    Invalid(String),
    #[error("the message signature does not verify: {0}")]
    BadSignature(String),
    #[error("the message's certificate cannot be used: {0}")]
    BadCert(String),
    #[error("nonce {0:?} was used for another message")]
    NonceReused(String),
    #[error("the message changed meanwhile; read it again and retry")]
    Changed,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} is not an actor this server can reach")]
    UserNotFound(String),
    #[error("only the group's owner may do this")]
    NotGroupOwner,
    /// A plain message, or one for another group, in an encrypted channel.
    #[error("{0}")]
    EncryptionRequired(String),
    #[error("the channel is encrypted already (group {0})")]
    AlreadyEncrypted(String),
    /// The channel's group moved to another epoch: process its commit and encrypt again.
    #[error("the channel's group is at epoch {0}; this message was made for another")]
    StaleEpoch(u32),
    /// The author has no device in the channel's group.
    #[error("{0}")]
    NotInGroup(String),
    #[error(transparent)]
    Sessions(#[from] sessions::Error),
    #[error(transparent)]
    Federation(#[from] federation::Error),
    #[error(transparent)]
    Media(#[from] crate::media::Error),
    #[error(transparent)]
    Store(#[from] fugue_store::Error),
}

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        use StatusCode as S;
        let detail = err.to_string();
        let (status, code) = match err {
            Error::GuildNotFound(_) => (S::NOT_FOUND, ErrorCode::GuildNotFound),
            Error::ChannelNotFound(_) => (S::NOT_FOUND, ErrorCode::ChannelNotFound),
            Error::MessageNotFound(_) => (S::NOT_FOUND, ErrorCode::MessageNotFound),
            Error::MemberNotFound(_) => (S::NOT_FOUND, ErrorCode::MemberNotFound),
            Error::RoleNotFound(_) => (S::NOT_FOUND, ErrorCode::RoleNotFound),
            Error::InviteNotFound => (S::NOT_FOUND, ErrorCode::InviteNotFound),
            Error::ActorNotFound(_) => (S::NOT_FOUND, ErrorCode::ActorNotFound),
            Error::MissingPermission(_)
            | Error::NotOwner
            | Error::NotAuthor
            | Error::NotGroupOwner => (S::FORBIDDEN, ErrorCode::MissingPermission),
            Error::Banned => (S::FORBIDDEN, ErrorCode::Banned),
            Error::AlreadyMember => (S::CONFLICT, ErrorCode::ConcurrentChange),
            Error::OwnerCannotLeave => (S::CONFLICT, ErrorCode::OwnerCannotLeave),
            Error::InvalidInvite => (S::BAD_REQUEST, ErrorCode::InvalidInvite),
            Error::InviteRequired => (S::FORBIDDEN, ErrorCode::InviteRequired),
            Error::Invalid(_) => (S::BAD_REQUEST, ErrorCode::InvalidChatInput),
            Error::BadSignature(_) => (S::BAD_REQUEST, ErrorCode::SignatureInvalid),
            Error::BadCert(_) => (S::BAD_REQUEST, ErrorCode::MessageCertInvalid),
            Error::NonceReused(_) => (S::CONFLICT, ErrorCode::NonceReused),
            Error::Changed => (S::CONFLICT, ErrorCode::ConcurrentChange),
            Error::Forbidden(_) => (S::FORBIDDEN, ErrorCode::Forbidden),
            Error::UserNotFound(_) => (S::NOT_FOUND, ErrorCode::UserNotFound),
            Error::EncryptionRequired(_) => (S::BAD_REQUEST, ErrorCode::EncryptionRequired),
            Error::AlreadyEncrypted(_) => (S::CONFLICT, ErrorCode::AlreadyEncrypted),
            Error::StaleEpoch(epoch) => {
                return ApiError::new(S::CONFLICT, ErrorCode::StaleEpoch, detail)
                    .with_extension("epoch", epoch);
            }
            Error::NotInGroup(_) => (S::FORBIDDEN, ErrorCode::MlsForbidden),
            Error::Sessions(e) => return e.into(),
            Error::Federation(e) => return foreign_cert(e),
            Error::Media(e) => return e.into(),
            Error::Store(e) => return ApiError::internal(&e),
        };
        ApiError::new(status, code, detail)
    }
}

/// A foreign author's certificate: what its home server says about it is the sender's
/// problem (400, nothing stored); a home server we cannot reach stays the federation's
/// answer (424).
fn foreign_cert(e: federation::Error) -> ApiError {
    use federation::Error as F;
    let code = match &e {
        F::CertNotFound { .. } | F::InvalidFid(_) | F::LocalActor(_) => {
            ErrorCode::MessageCertInvalid
        }
        F::CertInvalid { .. } => ErrorCode::ForeignCertInvalid,
        F::Revoked { .. } => ErrorCode::CertRevoked,
        F::HomeServer { .. } | F::NotAHomeServer { .. } => return e.into(),
    };
    ApiError::new(StatusCode::BAD_REQUEST, code, e.to_string())
}
