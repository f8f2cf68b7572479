//! Nothing here: this package holds the cross-binary tests in `tests/`.
