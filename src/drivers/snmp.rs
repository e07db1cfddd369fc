//! (Being written: the snmp driver.)
