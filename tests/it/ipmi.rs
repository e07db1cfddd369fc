//! (Being written: ipmi driver tests against the real peer.)
