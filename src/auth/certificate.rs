//! Taskcluster temporary credentials (`ext.certificate`). (Being written.)
