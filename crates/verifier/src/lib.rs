//! Verifier (not built yet: see the [verifier] issue).
