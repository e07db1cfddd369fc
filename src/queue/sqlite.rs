//! The embedded queue: one SQLite file in WAL mode. (Being written.)
