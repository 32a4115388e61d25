//! Fugue's own core namespace (`/.p2/fugue-core/v1/`, core §8.6): what a home server needs
//! beyond the core spec — the outcome of data imports, which core §7.3 leaves to the
//! server to report.

endpoints! {
    /// Every endpoint of Fugue's core additions.
    FUGUE_CORE_ENDPOINTS;
    /// Where Fugue's core additions live below a home server's origin.
    FUGUE_CORE_API = "/.p2/fugue-core/";

    /// The caller's data imports, newest first (at most 20): running, done or failed, with
    /// what they stored and what they refused.
    data_imports = GET "v1/migration/imports", auth Session {
        pub type Response = Vec<crate::export::ImportReport>;
    }
}
