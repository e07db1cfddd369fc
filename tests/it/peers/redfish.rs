//! (Being written: the redfish peer harness.)
