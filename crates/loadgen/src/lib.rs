//! Open-loop load generator (not built yet: see the [loadgen-engine] issue).
