//! Fugue's own MLS namespace (`/.p2/fugue-mls/v1/`, core §8.6): which group encrypts a
//! channel, and the join requests of encrypted channels with their gatekeepers
//! (polyproto-chat §6, which names the flow but no route).

endpoints! {
    /// Every endpoint of Fugue's MLS additions.
    FUGUE_MLS_ENDPOINTS;
    /// Where Fugue's MLS additions live below a home server's origin.
    FUGUE_MLS_API = "/.p2/fugue-mls/";

    /// Encrypts a channel, DM or group conversation with an MLS group the caller has a
    /// device in, for good (a guild channel: MANAGE_CHANNELS; a group: its owner; a DM:
    /// either member).
    encrypt_channel = PUT "v1/channels/{channel_id}/group" (channel_id: u64), auth AnySession {
        pub type Request = crate::mls::SetChannelGroup;
        pub type Response = crate::mls::ChannelGroup;
    }

    /// The group that encrypts a channel the caller reads (404 when it is not encrypted).
    channel_group = GET "v1/channels/{channel_id}/group" (channel_id: u64), auth AnySession {
        pub type Response = crate::mls::ChannelGroup;
    }

    /// Asks to join an encrypted channel the caller may read, with the package of the
    /// calling device; the channel's readers are told.
    request_join = POST "v1/channels/{channel_id}/join-requests" (channel_id: u64),
        auth AnySession {
        pub type Request = crate::mls::KeyPackage;
        pub type Response = crate::mls::JoinRequest;
    }

    /// The channel's pending join requests (for devices in its group).
    join_requests = GET "v1/channels/{channel_id}/join-requests" (channel_id: u64),
        auth AnySession {
        pub type Response = Vec<crate::mls::JoinRequest>;
    }

    /// The gatekeeper added the requesting device (its commit is in): the request is done.
    accept_join = POST "v1/join-requests/{request_id}/accept" (request_id: u64),
        auth AnySession {
        pub type Response = crate::mls::JoinRequest;
    }

    /// Refuses a join request, saying why (a package that does not verify, say).
    deny_join = POST "v1/join-requests/{request_id}/deny" (request_id: u64), auth AnySession {
        pub type Request = crate::mls::DenyJoin;
        pub type Response = crate::mls::JoinRequest;
    }
}
