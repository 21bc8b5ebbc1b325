//! Seeded expansion of a timeline into the exact plan a run executes: every entry's window
//! (start and end from load start, with `at_jitter` drawn from the seed) and the ordered
//! steps. Done before the run, so the plan can be journaled and shaded on plots, and checked
//! for faults that would fight over the same toxic or provider setting.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;

use super::{Fault, PartitionMode, Timeline};
use crate::ChaosError;
use crate::desired::{Desired, ExecSpec, ProcessDesired, ProcessState, ProxyDesired};
use crate::provider::ProviderFaults;
use crate::toxics::{Stream, Timeout, Toxic, ToxicSpec};
use evidence::duration::format_duration;
use evidence::seed::SeededRng;

/// Stands for "every provider" when checking a plan before the providers are known.
const EVERY_PROVIDER: &str = "*";

/// Start or end of a fault window. At the same instant, ends come first, so one fault can
/// hand over to the next without a moment where both are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Stop,
    Start,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Start => "start",
        }
    }
}

/// When one entry's fault is on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Window {
    pub entry: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "start_seconds", serialize_with = "seconds")]
    pub start: Duration,
    #[serde(rename = "end_seconds", serialize_with = "seconds")]
    pub end: Duration,
    #[serde(flatten)]
    pub fault: Fault,
}

/// One transition of the plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub index: usize,
    #[serde(rename = "at_seconds", serialize_with = "seconds")]
    pub at: Duration,
    pub entry: usize,
    pub action: Action,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// The expanded timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub seed: u64,
    /// One per `[[chaos]]` entry, in entry order.
    pub windows: Vec<Window>,
    /// Ordered by time (ends before starts at the same instant).
    pub steps: Vec<Step>,
}

impl Timeline {
    /// Fixes every window from `seed` and checks that simultaneous faults do not clash.
    pub fn expand(&self, seed: u64) -> Result<Plan, ChaosError> {
        let windows: Vec<Window> = self
            .entries
            .iter()
            .map(|entry| {
                let jitter_ms = u64::try_from(entry.at_jitter.as_millis()).unwrap_or(u64::MAX);
                let offset_ms = if jitter_ms == 0 {
                    0
                } else {
                    let mut rng = SeededRng::derive(seed, &[entry.index as u64]);
                    rng.between(0, i64::try_from(jitter_ms).unwrap_or(i64::MAX))
                        .unsigned_abs()
                };
                let start = entry.at + Duration::from_millis(offset_ms);
                Window {
                    entry: entry.index,
                    name: entry.name.clone(),
                    start,
                    end: start + entry.duration,
                    fault: entry.fault.clone(),
                }
            })
            .collect();
        let mut steps: Vec<Step> = windows
            .iter()
            .flat_map(|w| {
                [
                    (w.start, w.entry, Action::Start),
                    (w.end, w.entry, Action::Stop),
                ]
            })
            .map(|(at, entry, action)| Step {
                index: 0,
                at,
                entry,
                action,
            })
            .collect();
        steps.sort_by_key(|s| (s.at, s.action, s.entry));
        for (index, step) in steps.iter_mut().enumerate() {
            step.index = index;
        }
        let plan = Plan {
            seed,
            windows,
            steps,
        };
        plan.check_overlaps()?;
        Ok(plan)
    }
}

impl Plan {
    /// Proxies any window acts on.
    pub fn proxies(&self) -> BTreeSet<String> {
        let mut proxies = BTreeSet::new();
        for window in &self.windows {
            match &window.fault {
                Fault::Partition { direction, .. } => {
                    proxies.extend(direction.proxies().iter().map(|p| p.to_string()));
                }
                Fault::Link { proxy, .. } => {
                    proxies.insert(proxy.clone());
                }
                Fault::Provider { .. }
                | Fault::Sink { .. }
                | Fault::Crash { .. }
                | Fault::Pause { .. }
                | Fault::Clock { .. }
                | Fault::Operator { .. }
                | Fault::Exec { .. } => {}
            }
        }
        proxies
    }

    /// Processes any window crashes, pauses or shifts the clock of.
    pub fn processes(&self) -> BTreeSet<String> {
        self.windows
            .iter()
            .filter_map(|w| match &w.fault {
                Fault::Crash { target } | Fault::Pause { target } | Fault::Clock { target, .. } => {
                    Some(target.clone())
                }
                _ => None,
            })
            .collect()
    }

    /// Regions an operator step acts on.
    pub fn operator_regions(&self) -> BTreeSet<String> {
        self.windows
            .iter()
            .filter_map(|w| match &w.fault {
                Fault::Operator { target, .. } => Some(target.clone()),
                _ => None,
            })
            .collect()
    }

    /// Providers named by some window.
    pub fn named_providers(&self) -> BTreeSet<String> {
        self.windows
            .iter()
            .filter_map(|w| match &w.fault {
                Fault::Provider {
                    provider: Some(p), ..
                } => Some(p.clone()),
                Fault::Sink { .. } => Some(super::SINK.to_string()),
                _ => None,
            })
            .collect()
    }

    /// True when some window acts on a provider.
    pub fn uses_providers(&self) -> bool {
        self.windows
            .iter()
            .any(|w| matches!(w.fault, Fault::Provider { .. } | Fault::Sink { .. }))
    }

    /// Checks every window against the topology it will act on, before anything starts:
    /// each proxy it names is one of `proxies`, each provider one of `providers`. The error
    /// names the entry, the unknown name and the names that exist.
    pub fn check_targets(
        &self,
        proxies: &[&str],
        providers: &[&str],
        processes: &[&str],
    ) -> Result<(), String> {
        for window in &self.windows {
            let entry = describe_entry(window);
            let named: Vec<String> = match &window.fault {
                Fault::Crash { target } | Fault::Pause { target } | Fault::Clock { target, .. } => {
                    if !processes.contains(&target.as_str()) {
                        return Err(if processes.is_empty() {
                            format!(
                                "{entry}: kind = \"{}\" acts on a process the run started, and this run starts none of the system's processes; for a system the rig did not start, use kind = \"exec\" with the commands that do it (e.g. docker kill / docker start)",
                                window.fault.kind()
                            )
                        } else {
                            format!(
                                "{entry}: target = {target:?} is not a process of the run; use one of {}",
                                processes.join(", ")
                            )
                        });
                    }
                    Vec::new()
                }
                Fault::Exec { .. } | Fault::Operator { .. } => Vec::new(),
                Fault::Partition { direction, .. } => {
                    direction.proxies().iter().map(|p| p.to_string()).collect()
                }
                Fault::Link { proxy, .. } => vec![proxy.clone()],
                Fault::Provider { provider, .. } => {
                    if let Some(name) = provider
                        && !providers.contains(&name.as_str())
                    {
                        return Err(format!(
                            "{entry}: provider = {name:?} is not part of the run; the run's provider is {}",
                            providers
                                .iter()
                                .filter(|p| **p != super::SINK)
                                .copied()
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                    }
                    Vec::new()
                }
                Fault::Sink { .. } => {
                    if !providers.contains(&super::SINK) {
                        return Err(format!(
                            "{entry}: kind = \"sink\" acts on the rig's event sink, which this run does not have (the system does not deliver its events to the rig)"
                        ));
                    }
                    Vec::new()
                }
            };
            if let Some(unknown) = named.iter().find(|p| !proxies.contains(&p.as_str())) {
                return Err(format!(
                    "{entry}: proxy = {unknown:?} is not part of the run's topology; use one of {}",
                    proxies.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// Checks that every window ends while the load runs (the timeline stops, healing
    /// everything, when the load ends: a later window would be cut short or never run).
    pub fn check_within(&self, load: Duration) -> Result<(), String> {
        match self.windows.iter().find(|w| w.end > load) {
            None => Ok(()),
            Some(window) => Err(format!(
                "{}: the window {}..{} ends after the load, which lasts {} (the timeline stops \
                 when the load ends, so it would be cut short or never run); move its `at` or \
                 shorten its `for`, lengthen the load, or drop the chaos with --set chaos=[]",
                describe_entry(window),
                format_duration(window.start),
                format_duration(window.end),
                format_duration(load),
            )),
        }
    }

    /// When the last window ends.
    pub fn end(&self) -> Duration {
        self.windows.iter().map(|w| w.end).max().unwrap_or_default()
    }

    /// Steps grouped by instant, in order.
    pub fn groups(&self) -> Vec<(Duration, Vec<&Step>)> {
        let mut groups: Vec<(Duration, Vec<&Step>)> = Vec::new();
        for step in &self.steps {
            match groups.last_mut() {
                Some((at, group)) if *at == step.at => group.push(step),
                _ => groups.push((step.at, vec![step])),
            }
        }
        groups
    }

    pub fn window(&self, entry: usize) -> Option<&Window> {
        self.windows.iter().find(|w| w.entry == entry)
    }

    /// What every target should look like while exactly the `active` entries are on.
    /// `providers` are the provider names the run knows (entries without `provider` act on
    /// all of them).
    pub fn desired(
        &self,
        active: &BTreeSet<usize>,
        providers: &[String],
    ) -> Result<Desired, String> {
        let mut desired = Desired::default();
        for proxy in self.proxies() {
            desired.proxies.insert(proxy, ProxyDesired::default());
        }
        for process in self.processes() {
            desired.processes.insert(process, ProcessDesired::RUNNING);
        }
        for provider in providers {
            desired
                .providers
                .insert(provider.clone(), ProviderFaults::default());
        }
        let mut toxic_owner: BTreeMap<(String, String), usize> = BTreeMap::new();
        let mut field_owner: BTreeMap<(String, &'static str), usize> = BTreeMap::new();
        for window in self.windows.iter().filter(|w| active.contains(&w.entry)) {
            let entry = window.entry;
            match &window.fault {
                Fault::Partition { mode, direction } => {
                    for proxy in direction.proxies() {
                        match mode {
                            PartitionMode::Refuse => {
                                desired
                                    .proxies
                                    .entry(proxy.to_string())
                                    .or_default()
                                    .enabled = false;
                            }
                            PartitionMode::Blackhole => {
                                for stream in [Stream::Upstream, Stream::Downstream] {
                                    let hole = Toxic::Timeout(Timeout { timeout: 0 });
                                    add_toxic(
                                        &mut desired,
                                        &mut toxic_owner,
                                        entry,
                                        proxy,
                                        ToxicSpec::new(stream, hole),
                                    )?;
                                }
                            }
                        }
                    }
                }
                Fault::Link { proxy, toxic } => {
                    add_toxic(&mut desired, &mut toxic_owner, entry, proxy, toxic.clone())?;
                }
                Fault::Provider { provider, faults } => {
                    let targets: Vec<String> = match provider {
                        Some(name) => vec![name.clone()],
                        // Every provider: the sink's fault API is not a provider's.
                        None => providers
                            .iter()
                            .filter(|p| *p != super::SINK)
                            .cloned()
                            .collect(),
                    };
                    set_faults(&mut desired, &mut field_owner, entry, targets, faults)?;
                }
                Fault::Sink { faults } => {
                    let targets = vec![super::SINK.to_string()];
                    set_faults(&mut desired, &mut field_owner, entry, targets, faults)?;
                }
                // A process that is down cannot also be paused: down wins.
                Fault::Crash { target } => {
                    desired.processes.entry(target.clone()).or_default().state = ProcessState::Down;
                }
                Fault::Pause { target } => {
                    let process = desired.processes.entry(target.clone()).or_default();
                    if process.state != ProcessState::Down {
                        process.state = ProcessState::Paused;
                    }
                }
                // One shift per clock at a time; a crashed process starts with the shift.
                Fault::Clock { target, offset_ms } => {
                    let key = (format!("process {target}"), "clock");
                    if let Some(other) = field_owner.insert(key, entry) {
                        return Err(format!(
                            "chaos[{other}] and chaos[{entry}] both shift region {target}'s clock at once; end one before the other starts"
                        ));
                    }
                    desired
                        .processes
                        .entry(target.clone())
                        .or_default()
                        .clock_offset_ms = *offset_ms;
                }
                Fault::Operator { target, action } => {
                    if matches!(action, crate::operator::OperatorAction::PausePayments) {
                        let key = (format!("region {target}"), "payments");
                        if let Some(other) = field_owner.insert(key, entry) {
                            return Err(format!(
                                "chaos[{other}] and chaos[{entry}] both pause region {target}'s payments at once; end one before the other starts"
                            ));
                        }
                    }
                    desired.operators.insert(
                        entry,
                        crate::operator::OperatorSpec {
                            target: target.clone(),
                            action: action.clone(),
                        },
                    );
                }
                Fault::Exec { run, heal, timeout } => {
                    desired.execs.insert(
                        entry,
                        ExecSpec {
                            run: run.clone(),
                            heal: heal.clone(),
                            timeout: *timeout,
                        },
                    );
                }
            }
        }
        Ok(desired)
    }

    /// Every instant's desired state must be well defined.
    fn check_overlaps(&self) -> Result<(), ChaosError> {
        let mut providers: Vec<String> = self.named_providers().into_iter().collect();
        providers.push(EVERY_PROVIDER.to_string());
        let mut active = BTreeSet::new();
        for (at, group) in self.groups() {
            for step in &group {
                match step.action {
                    Action::Start => active.insert(step.entry),
                    Action::Stop => active.remove(&step.entry),
                };
            }
            if let Err(message) = self.desired(&active, &providers) {
                let entry = group.last().map_or(0, |s| s.entry);
                return Err(ChaosError::Timeline {
                    location: format!("chaos[{entry}]"),
                    message: format!("{message} (at {}, seed {})", format_duration(at), self.seed),
                });
            }
        }
        Ok(())
    }
}

/// Adds one entry's faults to the fault APIs named `targets`; two entries setting the same
/// field on one target at once is an error naming both.
fn set_faults(
    desired: &mut Desired,
    field_owner: &mut BTreeMap<(String, &'static str), usize>,
    entry: usize,
    targets: Vec<String>,
    faults: &ProviderFaults,
) -> Result<(), String> {
    for target in targets {
        let Some(slot) = desired.providers.get_mut(&target) else {
            return Err(format!(
                "chaos[{entry}] names provider {target:?}, which the run does not know"
            ));
        };
        if let Some(field) = slot.merge(faults).first() {
            let other = field_owner[&(target.clone(), *field)];
            return Err(format!(
                "chaos[{other}] and chaos[{entry}] both set {field} on {target} at the same \
                 time: move one of them"
            ));
        }
        for field in faults.fields_set() {
            field_owner.insert((target.clone(), field), entry);
        }
    }
    Ok(())
}

/// Adds a toxic to a proxy's desired set; the same toxic twice is fine, two different ones
/// with the same name (type and stream) are a clash.
fn add_toxic(
    desired: &mut Desired,
    owners: &mut BTreeMap<(String, String), usize>,
    entry: usize,
    proxy: &str,
    spec: ToxicSpec,
) -> Result<(), String> {
    let slot = desired.proxies.entry(proxy.to_string()).or_default();
    if let Some(existing) = slot.toxics.iter().find(|t| t.name == spec.name) {
        if existing.same_effect(&spec) {
            return Ok(());
        }
        let other = owners[&(proxy.to_string(), spec.name.clone())];
        return Err(format!(
            "chaos[{other}] and chaos[{entry}] both put a {} toxic on {proxy} {} at the same \
             time; Toxiproxy names toxics by type and stream, so they cannot overlap: move one \
             of them",
            spec.toxic.type_name(),
            spec.stream.as_str()
        ));
    }
    owners.insert((proxy.to_string(), spec.name.clone()), entry);
    slot.toxics.push(spec);
    Ok(())
}

/// `chaos[2] ("partition a-b")`: how a message names a window's entry.
fn describe_entry(window: &Window) -> String {
    match &window.name {
        Some(name) => format!("chaos[{}] ({name:?})", window.entry),
        None => format!("chaos[{}]", window.entry),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn timeline(text: &str) -> Timeline {
        Timeline::from_profile_str(text, Path::new("p.toml")).unwrap()
    }

    /// `at_jitter` is drawn from the seed: same seed, same plan; another seed, another plan.
    #[test]
    fn seed_decides_the_plan() {
        let t = timeline(
            "[[chaos]]\nat=\"10s\"\nfor=\"5s\"\nat_jitter=\"20s\"\nkind=\"provider\"\noutage=true\n\
             [[chaos]]\nat=\"40s\"\nfor=\"5s\"\nat_jitter=\"20s\"\nkind=\"provider\"\nlatency_ms=9\n",
        );
        let starts = |seed| -> Vec<Duration> {
            t.expand(seed)
                .unwrap()
                .windows
                .iter()
                .map(|w| w.start)
                .collect()
        };
        assert_eq!(starts(1), starts(1));
        assert_ne!(starts(1), starts(2));
        for seed in 0..50 {
            let s = starts(seed);
            assert!(s[0] >= Duration::from_secs(10) && s[0] <= Duration::from_secs(30));
        }
    }

    /// Ends come before starts at the same instant; the desired state follows the windows.
    #[test]
    fn steps_and_desired_state() {
        let t = timeline(
            "[[chaos]]\nat=\"0s\"\nfor=\"10s\"\nkind=\"partition\"\nbetween=[\"a\",\"b\"]\ndirection=\"a_to_b\"\n\
             [[chaos]]\nat=\"10s\"\nfor=\"10s\"\nkind=\"partition\"\nbetween=[\"a\",\"b\"]\nmode=\"refuse\"\n",
        );
        let plan = t.expand(0).unwrap();
        let order: Vec<_> = plan
            .steps
            .iter()
            .map(|s| (s.at.as_secs(), s.entry, s.action))
            .collect();
        assert_eq!(
            order,
            vec![
                (0, 0, Action::Start),
                (10, 0, Action::Stop),
                (10, 1, Action::Start),
                (20, 1, Action::Stop)
            ]
        );
        let first = plan.desired(&BTreeSet::from([0]), &[]).unwrap();
        assert_eq!(first.proxies["a_to_b"].toxics.len(), 2);
        assert!(first.proxies["b_to_a"].toxics.is_empty());
        let second = plan.desired(&BTreeSet::from([1]), &[]).unwrap();
        assert!(!second.proxies["a_to_b"].enabled && !second.proxies["b_to_a"].enabled);
    }

    /// Overlapping faults on the same toxic or provider field are refused before the run.
    #[test]
    fn clashes_are_refused() {
        let toxic = timeline(
            "[[chaos]]\nat=\"0s\"\nfor=\"10s\"\nkind=\"link\"\nproxy=\"a_to_b\"\ntoxic=\"latency\"\nlatency_ms=5\n\
             [[chaos]]\nat=\"5s\"\nfor=\"10s\"\nkind=\"link\"\nproxy=\"a_to_b\"\ntoxic=\"latency\"\nlatency_ms=9\n",
        );
        let m = toxic.expand(0).unwrap_err().to_string();
        assert!(m.starts_with("chaos[1]") && m.contains("chaos[0]"), "{m}");
        let provider = timeline(
            "[[chaos]]\nat=\"0s\"\nfor=\"10s\"\nkind=\"provider\"\nlatency_ms=5\n\
             [[chaos]]\nat=\"5s\"\nfor=\"10s\"\nkind=\"provider\"\nprovider=\"main\"\nlatency_ms=9\n",
        );
        assert!(
            provider
                .expand(0)
                .unwrap_err()
                .to_string()
                .contains("latency_ms")
        );
        let handover = timeline(
            "[[chaos]]\nat=\"0s\"\nfor=\"5s\"\nkind=\"provider\"\nlatency_ms=5\n\
             [[chaos]]\nat=\"5s\"\nfor=\"10s\"\nkind=\"provider\"\nlatency_ms=9\noutage=true\n",
        );
        assert!(handover.expand(0).is_ok());
    }

    /// A window on a proxy or provider the topology lacks, or ending after the load, is
    /// refused naming the entry, the name or the times, and the fix.
    #[test]
    fn plans_are_checked_against_the_topology_and_the_load() {
        let t = timeline(
            "[[chaos]]\nname=\"cut\"\nat=\"1s\"\nfor=\"2s\"\nkind=\"link\"\nproxy=\"a_to_c\"\ntoxic=\"latency\"\nlatency_ms=5\n",
        );
        let plan = t.expand(1).unwrap();
        let proxies = ["a_to_b", "b_to_a", "a_to_provider", "b_to_provider"];
        let err = plan
            .check_targets(&proxies, &["provider"], &[])
            .unwrap_err();
        assert!(
            err.contains("chaos[0] (\"cut\")") && err.contains("\"a_to_c\""),
            "{err}"
        );
        assert!(
            err.contains("a_to_b, b_to_a, a_to_provider, b_to_provider"),
            "{err}"
        );
        let t = timeline(
            "[[chaos]]\nat=\"10s\"\nfor=\"30s\"\nkind=\"partition\"\nbetween=[\"a\",\"b\"]\n",
        );
        let plan = t.expand(1).unwrap();
        assert_eq!(plan.check_targets(&proxies, &["provider"], &[]), Ok(()));
        assert_eq!(plan.check_within(Duration::from_secs(40)), Ok(()));
        let err = plan.check_within(Duration::from_secs(20)).unwrap_err();
        assert!(
            err.contains("10s..40s") && err.contains("lasts 20s"),
            "{err}"
        );
        assert!(err.contains("--set chaos=[]"), "{err}");
    }

    /// Process faults: a crash without `for` restarts at once (two distinct steps), a
    /// frozen process that is also crashed is down, `for` and `restart_after` are one
    /// thing, and a pause needs its length and a known target.
    #[test]
    fn crash_and_pause_windows() {
        let plan = timeline(
            "[[chaos]]\nat=\"2s\"\nkind=\"crash\"\ntarget=\"a\"\n\
             [[chaos]]\nat=\"5s\"\nrestart_after=\"3s\"\nkind=\"crash\"\ntarget=\"provider\"\n\
             [[chaos]]\nat=\"4s\"\nfor=\"5s\"\nkind=\"pause\"\ntarget=\"provider\"\n",
        )
        .expand(0)
        .unwrap();
        assert_eq!(
            plan.windows[0].end - plan.windows[0].start,
            Duration::from_millis(1)
        );
        assert_eq!(
            plan.windows[1].end - plan.windows[1].start,
            Duration::from_secs(3)
        );
        let a = plan.desired(&BTreeSet::from([0]), &[]).unwrap();
        assert_eq!(a.processes["a"].state, ProcessState::Down);
        assert_eq!(a.processes["provider"].state, ProcessState::Running);
        let both = plan.desired(&BTreeSet::from([1, 2]), &[]).unwrap();
        assert_eq!(both.processes["provider"].state, ProcessState::Down);
        let paused = plan.desired(&BTreeSet::from([2]), &[]).unwrap();
        assert_eq!(paused.processes["provider"].state, ProcessState::Paused);
        assert!(
            plan.check_targets(&[], &[], &["a", "b", "provider"])
                .is_ok()
        );
        let none = plan.check_targets(&[], &[], &[]).unwrap_err();
        assert!(none.contains("kind = \"exec\""), "{none}");
        for (entry, named) in [
            (
                "at=\"1s\"\nfor=\"1s\"\nrestart_after=\"1s\"\nkind=\"crash\"\ntarget=\"a\"",
                "chaos[0].restart_after",
            ),
            ("at=\"1s\"\nkind=\"pause\"\ntarget=\"a\"", "chaos[0].for"),
            ("at=\"1s\"\nfor=\"1s\"\nkind=\"pause\"", "chaos[0].target"),
            (
                "at=\"1s\"\nfor=\"1s\"\nkind=\"crash\"\ntarget=\"sink\"",
                "\"a\", \"b\", \"provider\"",
            ),
            (
                "at=\"1s\"\nfor=\"1s\"\nkind=\"pause\"\ntarget=\"a\"\nrestart_after=\"1s\"",
                "chaos[0].restart_after",
            ),
        ] {
            let err =
                Timeline::from_profile_str(&format!("[[chaos]]\n{entry}\n"), Path::new("p.toml"))
                    .unwrap_err()
                    .to_string();
            assert!(err.contains(named), "{entry}: {err}");
        }
    }

    /// Two entries `body`, starting 1 s apart and 5 s long each, clash, naming both.
    fn assert_clash(body: &str) {
        let one = |at: &str| format!("[[chaos]]\nat=\"{at}\"\nfor=\"5s\"\n{body}\n");
        let err = Timeline::from_profile_str(&(one("1s") + &one("2s")), Path::new("p.toml"))
            .unwrap()
            .expand(0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("chaos[0] and chaos[1]"), "{err}");
    }

    /// One `[[chaos]]` entry is refused with a message containing `named`.
    fn assert_refused(entry: &str, named: &str) {
        let err = Timeline::from_profile_str(&format!("[[chaos]]\n{entry}\n"), Path::new("p.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(named), "{entry}: {err}");
    }

    /// Clock faults: a region's shift holds for its window and rides along a crash of the
    /// same process; two shifts of one clock at once, a shift of the provider, a missing,
    /// zero or unsigned-garbage offset are refused naming the field.
    #[test]
    fn clock_windows() {
        let plan = timeline(
            "[[chaos]]\nat=\"2s\"\nfor=\"10s\"\nkind=\"clock\"\ntarget=\"b\"\noffset=\"+30s\"\n\
             [[chaos]]\nat=\"12s\"\nfor=\"10s\"\nkind=\"clock\"\ntarget=\"b\"\noffset=\"-1.5s\"\n\
             [[chaos]]\nat=\"4s\"\nfor=\"1s\"\nkind=\"crash\"\ntarget=\"b\"\n",
        )
        .expand(0)
        .unwrap();
        let ahead = plan.desired(&BTreeSet::from([0]), &[]).unwrap();
        assert_eq!(ahead.processes["b"].clock_offset_ms, 30_000);
        let crashed = plan.desired(&BTreeSet::from([0, 2]), &[]).unwrap();
        assert_eq!(crashed.processes["b"].state, ProcessState::Down);
        assert_eq!(crashed.processes["b"].clock_offset_ms, 30_000);
        let behind = plan.desired(&BTreeSet::from([1]), &[]).unwrap();
        assert_eq!(behind.processes["b"].clock_offset_ms, -1_500);
        assert_eq!(
            plan.desired(&BTreeSet::new(), &[]).unwrap().processes["b"],
            ProcessDesired::RUNNING
        );
        let none = plan.check_targets(&[], &[], &[]).unwrap_err();
        assert!(none.contains("kind = \"exec\""), "{none}");
        assert_clash("kind=\"clock\"\ntarget=\"a\"\noffset=\"1s\"");
        for (entry, named) in [
            ("target=\"provider\"\noffset=\"1s\"", "chaos[0].target"),
            ("target=\"a\"", "chaos[0].offset"),
            ("target=\"a\"\noffset=\"0s\"", "shifts nothing"),
            ("target=\"a\"\noffset=\"+-3s\"", "chaos[0].offset"),
            ("target=\"a\"\noffset=\"2d\"", "chaos[0].offset"),
            ("target=\"a\"\noffset=\"25h\"", "more than a day"),
            (
                "target=\"a\"\noffset=\"1s\"\nrestart_after=\"1s\"",
                "chaos[0].restart_after",
            ),
        ] {
            assert_refused(
                &format!("at=\"1s\"\nfor=\"1s\"\nkind=\"clock\"\n{entry}"),
                named,
            );
        }
    }

    /// Operator steps: a pause holds for its window, a resolve is one step (no `for`), two
    /// pauses of one region at once clash, and each field error names the field.
    #[test]
    fn operator_steps() {
        let plan = timeline(
            "[[chaos]]\nat=\"2s\"\nfor=\"5s\"\nkind=\"operator\"\naction=\"pause_payments\"\ntarget=\"a\"\n\
             [[chaos]]\nat=\"8s\"\nkind=\"operator\"\naction=\"resolve_pending\"\ntarget=\"b\"\ncount=7\n",
        )
        .expand(0)
        .unwrap();
        assert_eq!(
            plan.windows[0].end - plan.windows[0].start,
            Duration::from_secs(5)
        );
        assert_eq!(
            plan.windows[1].end - plan.windows[1].start,
            Duration::from_millis(1)
        );
        let paused = plan.desired(&BTreeSet::from([0]), &[]).unwrap();
        assert_eq!(
            paused.operators[&0].action,
            crate::OperatorAction::PausePayments
        );
        let resolve = plan.desired(&BTreeSet::from([1]), &[]).unwrap();
        assert_eq!(
            resolve.operators[&1].action,
            crate::OperatorAction::ResolvePending {
                count: 7,
                operator: "playbook".into(),
                note: "the timeline's operator step".into()
            }
        );
        assert_eq!(
            plan.operator_regions(),
            BTreeSet::from(["a".to_string(), "b".to_string()])
        );
        assert_clash("kind=\"operator\"\naction=\"pause_payments\"\ntarget=\"a\"");
        for (entry, named) in [
            ("action=\"pause_payments\"\ntarget=\"a\"", "chaos[0].for"),
            (
                "action=\"resolve_pending\"\ntarget=\"c\"",
                "chaos[0].target",
            ),
            ("action=\"reboot\"\ntarget=\"a\"", "chaos[0].action"),
            (
                "action=\"resolve_pending\"\ntarget=\"a\"\ncount=0",
                "chaos[0].count",
            ),
            (
                "for=\"1s\"\naction=\"pause_payments\"\ntarget=\"a\"\ncount=3",
                "chaos[0].count",
            ),
            (
                "action=\"resolve_pending\"\ntarget=\"a\"\noffset=\"1s\"",
                "chaos[0].offset",
            ),
        ] {
            assert_refused(&format!("at=\"1s\"\nkind=\"operator\"\n{entry}"), named);
        }
    }
}
