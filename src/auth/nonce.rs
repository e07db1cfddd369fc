//! Replay protection for locally verified Hawk headers. (Being written.)
