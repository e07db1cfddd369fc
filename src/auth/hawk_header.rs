//! Parsing the `Authorization: Hawk …` header. (Being written.)

/// Hawk's limit on the header (mozilla/hawk `lib/utils.js`).
pub const MAX_HEADER_LEN: usize = 4096;
