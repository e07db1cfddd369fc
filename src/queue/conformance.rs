//! The conformance suite every queue backend must pass. (Being written.)
