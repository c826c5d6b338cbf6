//! Changing mail through the mount (issue 3).
