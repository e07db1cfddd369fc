//! (Being written: the redfish driver.)
