//! Helpers shared by the server's integration tests. Those that the binary's tests
//! (`crates/cli/tests/it`) need too live in `fugue-testkit` and are re-exported here.

use fugue_proto::{ErrorCode, api};
use fugue_testkit::TestServer;

pub use fugue_testkit::totp::{
    enrol_totp, totp_code_at, totp_code_in, unix_now, wait_for_fresh_totp_step, wrong_totp_code,
};
pub use fugue_testkit::{assert_problem, fakes, federated_pair, login_with};

/// Reads a raw reqwest response as a problem and checks status, media type and code.
pub async fn assert_raw_problem(
    resp: reqwest::Response,
    status: u16,
    code: ErrorCode,
) -> fugue_proto::Problem {
    assert_eq!(resp.status().as_u16(), status, "status");
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(ct.as_deref(), Some("application/problem+json"));
    let problem: fugue_proto::Problem = resp.json().await.unwrap();
    assert_eq!(problem.error, code);
    assert_eq!(problem.status, status);
    problem
}

/// The URL of `path_and_query` on `server`, for raw requests.
pub fn url(server: &TestServer, path_and_query: &str) -> String {
    format!("{}{path_and_query}", server.url)
}

/// `DELETE /.p2/core/v1/session?session_id=` with an optional solution.
pub async fn delete_session(
    server: &TestServer,
    token: &str,
    target: &str,
    solution: Option<&str>,
) -> reqwest::Response {
    let mut request = server
        .client()
        .raw()
        .delete(format!(
            "{}{}?session_id={target}",
            server.url,
            api::delete_session::PATH
        ))
        .bearer_auth(token);
    if let Some(solution) = solution {
        request = request.header(api::SENSITIVE_HEADER, solution);
    }
    request.send().await.unwrap()
}
