//! (Being written: ssh driver tests against the real peer.)
