//! (Being written: the ipmi driver.)
