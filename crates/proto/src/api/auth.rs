//! Accounts (polyproto-auth, OP-24): registration, login, TOTP, password, deletion.

endpoints! {
    /// Every endpoint of the auth API.
    AUTH_ENDPOINTS;
    /// Where the auth API lives below a home server's origin.
    AUTH_API = "/.p2/auth/";

    /// A new account.
    register = POST "v1/register", auth None {
        use serde::{Deserialize, Serialize};

        #[derive(Debug, Clone, Serialize, Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub struct Request {
            #[serde(alias = "local_name")]
            pub local_name: String,
            pub password: String,
            #[serde(
                default,
                alias = "tos_consent",
                skip_serializing_if = "Option::is_none"
            )]
            pub tos_consent: Option<bool>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub invite: Option<String>,
        }

        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Response {
            pub fid: crate::FederationId,
        }
    }

    /// Password (+TOTP) and an ID-CSR → ID-Cert and session token.
    login = POST "v1/login", auth None {
        use serde::{Deserialize, Serialize};

        #[derive(Debug, Clone, Serialize, Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub struct Request {
            #[serde(alias = "local_name")]
            pub local_name: String,
            pub password: String,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub totp: Option<String>,
            /// The ID-CSR, PEM. Without it the session starts without a certificate and gets
            /// its first one through [`post_idcert`](crate::api::post_idcert) (no second
            /// factor needed then).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub csr: Option<String>,
            #[serde(default, alias = "session_id", skip_serializing_if = "Option::is_none")]
            pub session_id: Option<String>,
        }

        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Response {
            pub fid: crate::FederationId,
            #[serde(rename = "sessionId")]
            pub session_id: crate::SessionId,
            pub token: String,
            /// The new ID-Cert, PEM, if a CSR was sent. Sent under both spellings: the SDK
            /// reads `idCert`, beta.3 `id_cert`.
            #[serde(rename = "idCert", default, skip_serializing_if = "Option::is_none")]
            pub id_cert: Option<String>,
            #[serde(rename = "id_cert", default, skip_serializing_if = "Option::is_none")]
            pub id_cert_beta3: Option<String>,
        }
    }

    /// Starts TOTP enrolment; confirm with [`totp_confirm`](super::totp_confirm).
    totp_enroll = POST "v1/totp", auth Session, sensitive Always {
        use serde::{Deserialize, Serialize};

        #[derive(Debug, Clone, Serialize, Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub struct Response {
            /// Base32 secret for the authenticator app.
            pub secret: String,
            pub otpauth_url: String,
        }
    }

    /// A first valid code activates TOTP.
    totp_confirm = POST "v1/totp/confirm", auth Session {
        use serde::{Deserialize, Serialize};

        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Request {
            pub code: String,
        }
    }

    /// Turns TOTP off; login then needs the password only.
    totp_disable = DELETE "v1/totp", auth Session, sensitive Always {}

    /// A new password (core §4.2). The old one stops working at once; other sessions stay
    /// unless `endSessions` is true.
    change_password = PUT "v1/password", auth Session, sensitive Always {
        use serde::{Deserialize, Serialize};

        #[derive(Debug, Clone, Serialize, Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub struct Request {
            pub password: String,
            /// End every other session of the actor (this one stays).
            #[serde(default, alias = "end_sessions")]
            pub end_sessions: bool,
        }
    }

    /// Deletes the account (core §4.2): ends every session, revokes every certificate (they
    /// stay published, so old messages stay verifiable) and retires the name for good.
    delete_account = DELETE "v1/account", auth Session, sensitive Always {}
}
