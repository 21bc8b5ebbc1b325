//! `junit.xml`: one test case per invariant and per threshold, so CI shows a run like a test
//! suite. Unknown invariants are skipped, with the reason.

use super::outcome::Outcome;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn render(o: &Outcome<'_>) -> String {
    let mut cases = String::new();
    let mut failures = 0;
    let mut skipped = 0;
    for v in &o.verdict.verdicts {
        cases.push_str(&format!(
            "    <testcase classname=\"invariants\" name=\"{}\">\n",
            escape(v.invariant)
        ));
        match v.status {
            verifier::Status::Pass => {}
            verifier::Status::Fail => {
                failures += 1;
                let first = v
                    .dossiers
                    .first()
                    .map(|d| d.narrative.as_str())
                    .unwrap_or("");
                cases.push_str(&format!(
                    "      <failure message=\"{} violations\">{}\n{}</failure>\n",
                    v.violations,
                    escape(&v.summary),
                    escape(first)
                ));
            }
            verifier::Status::Unknown | verifier::Status::Partial => {
                skipped += 1;
                cases.push_str(&format!(
                    "      <skipped message=\"{}\"/>\n",
                    escape(v.reason.as_deref().unwrap_or("unknown"))
                ));
            }
        }
        cases.push_str("    </testcase>\n");
    }
    for t in o.thresholds {
        cases.push_str(&format!(
            "    <testcase classname=\"thresholds\" name=\"{}\">\n",
            escape(&t.key)
        ));
        if !t.passed {
            failures += 1;
            cases.push_str(&format!(
                "      <failure message=\"{} {} (measured {})\"/>\n",
                escape(&t.key),
                escape(&t.expression),
                t.measured()
            ));
        }
        cases.push_str("    </testcase>\n");
    }
    if !o.incomplete.is_empty() {
        failures += 1;
        cases.push_str(&format!(
            "    <testcase classname=\"run\" name=\"complete\">\n      <failure message=\"{}\"/>\n    </testcase>\n",
            escape(&o.incomplete.join("; "))
        ));
    }
    let tests =
        o.verdict.verdicts.len() + o.thresholds.len() + usize::from(!o.incomplete.is_empty());
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n  <testsuite name=\"rig run {}\" tests=\"{tests}\" failures=\"{failures}\" skipped=\"{skipped}\">\n{cases}  </testsuite>\n</testsuites>\n",
        escape(o.run_id)
    )
}
