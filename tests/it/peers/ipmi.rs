//! (Being written: the ipmi peer harness.)
