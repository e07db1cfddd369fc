//! Taskcluster scope satisfaction. (Being written.)

/// Whether the held scopes satisfy `required` (a trailing `*` on a held scope is a prefix wildcard).
pub fn satisfies(held: &[String], required: &str) -> bool {
    held.iter()
        .any(|h| h == required || (h.ends_with('*') && required.starts_with(&h[..h.len() - 1])))
}
