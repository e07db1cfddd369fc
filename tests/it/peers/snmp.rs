//! (Being written: the snmp peer harness.)
