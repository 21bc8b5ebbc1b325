//! What a run produced, as the documents of its directory read it ([`Outcome`]), and the
//! verdict and exit code it comes to.

use evidence::StoreUrl;
use loadgen::Summary;
use loadgen::checkout::CheckoutReport;

use super::profile::Profile;
use super::thresholds::Judged;

/// Everything a run produced.
pub struct Outcome<'a> {
    pub run_id: &'a str,
    pub profile: &'a Profile,
    pub summary: &'a Summary,
    pub checkout: &'a CheckoutReport,
    pub verdict: &'a verifier::Report,
    pub thresholds: &'a [Judged],
    pub plan: &'a chaos::Plan,
    pub incomplete: &'a [String],
    pub store: &'a StoreUrl,
    pub drain_left: Option<String>,
    /// The kind of system the run judged.
    pub system: super::SystemKind,
    /// The orders section of the report.
    pub orders: Option<&'a verifier::orders::Orders>,
}

impl Outcome<'_> {
    /// `pass`, `fail` or `partial`.
    pub fn verdict(&self) -> &'static str {
        if !self.incomplete.is_empty() {
            "partial"
        } else if self.verdict.status == verifier::Status::Fail
            || self.thresholds.iter().any(|t| !t.passed)
        {
            "fail"
        } else {
            "pass"
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self.verdict() {
            "pass" => crate::exit::PASS,
            "fail" => crate::exit::FAILED,
            _ => crate::exit::COULD_NOT_COMPLETE,
        }
    }
}
