//! Run-summary wire types (being written).
