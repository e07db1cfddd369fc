//! (Being written: the ssh peer harness.)
