//! (Being written: the ssh driver.)
