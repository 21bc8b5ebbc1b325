//! Chaos layer (not built yet: see the [chaos] issue).
