//! (Being written: snmp driver tests against the real peer.)
