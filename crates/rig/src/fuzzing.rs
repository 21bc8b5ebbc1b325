//! Entry point for the profile fuzz target (`fuzz/`) and its regression tests: it takes
//! untrusted bytes, and must return without panicking, hanging or allocating without bound
//! whatever the bytes are.

use crate::run::SystemKind;
use crate::run::prepare::check_plan;
use crate::run::profile::{MAX_PROFILE_BYTES, load_text};

/// Most `--set` overrides one input gives.
const MAX_SETS: usize = 16;

/// A profile as `rig run` reads it: the bytes up to the first NUL are the profile's text,
/// each line after it one `--set`. It is loaded and validated, its workload compiled and
/// its chaos timeline expanded and checked against the reference topology, as before a
/// run. A profile that loads writes a resolved `profile.toml` that loads again (as `rig
/// verify RUN_DIR` reads it) to the same resolved text.
pub fn profile(data: &[u8]) {
    if data.len() as u64 > MAX_PROFILE_BYTES {
        return;
    }
    let (text, sets) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let (Ok(text), Ok(sets)) = (std::str::from_utf8(text), std::str::from_utf8(sets)) else {
        return;
    };
    let sets: Vec<String> = sets.lines().take(MAX_SETS).map(str::to_string).collect();
    let Ok(loaded) = load_text("fuzz.toml", text, &sets, None, &[]) else {
        return;
    };
    let _ = check_plan(&loaded.profile, "fuzz.toml", SystemKind::Reference, false);
    let again = load_text("profile.toml", &loaded.resolved, &[], None, &[]).unwrap_or_else(|err| {
        panic!(
            "the resolved profile does not load: {err}\n{}",
            loaded.resolved
        )
    });
    assert_eq!(
        again.resolved, loaded.resolved,
        "resolving twice changes the profile"
    );
}
