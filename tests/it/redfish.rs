//! (Being written: redfish driver tests against the real peer.)
