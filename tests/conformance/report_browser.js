// Loads a run's report.html in headless Chromium (Debian `chromium`, driven by npm
// `playwright-core`) and checks what a reader sees: no console errors, every chart has data
// drawn inside its plot area, each fault window shaded, and (with --failing) the
// counterexamples present. Saves a full-page screenshot. Prints one JSON line of figures.
//
//   NODE_PATH=CACHE/node_modules node tests/conformance/report_browser.js REPORT.html SHOT.png [--failing] [--windows N]
"use strict";

const { chromium } = require("playwright-core");

async function main() {
  const [report, shot, ...flags] = process.argv.slice(2);
  const failing = flags.includes("--failing");
  const windowsAt = flags.indexOf("--windows");
  const windows = windowsAt >= 0 ? Number(flags[windowsAt + 1]) : 0;
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox"],
  });
  const problems = [];
  try {
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    page.on("console", (m) => { if (m.type() === "error") problems.push(`console error: ${m.text()}`); });
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
    await page.goto("file://" + report, { waitUntil: "load" });
    const figures = await page.evaluate(() => {
      const charts = [...document.querySelectorAll("svg")].map((svg) => {
        const frame = svg.querySelector("rect.frame").getBBox();
        const inside = (b) => b.x >= frame.x - 0.5 && b.y >= frame.y - 0.5 &&
          b.x + b.width <= frame.x + frame.width + 0.5 && b.y + b.height <= frame.y + frame.height + 0.5;
        const lines = [...svg.querySelectorAll("polyline")];
        return {
          title: svg.getAttribute("aria-label"),
          lines: lines.length,
          points: lines.reduce((n, l) => n + l.points.numberOfItems, 0),
          inside: lines.every((l) => inside(l.getBBox())),
          shaded: svg.querySelectorAll("rect.fault, rect.faultcut").length,
        };
      });
      const counterexamples = [...document.querySelectorAll("h3")]
        .filter((h) => h.textContent.includes("counterexamples")).length;
      const dossiers = document.querySelectorAll("details").length;
      return { charts, counterexamples, dossiers, title: document.title };
    });
    await page.screenshot({ path: shot, fullPage: true });
    if (figures.charts.length === 0) problems.push("no chart");
    for (const c of figures.charts) {
      if (c.lines === 0 || c.points < 2) problems.push(`chart ${c.title}: no data drawn`);
      if (!c.inside) problems.push(`chart ${c.title}: data drawn outside the plot area`);
      if (c.shaded < windows) problems.push(`chart ${c.title}: ${c.shaded} shaded windows, expected ${windows}`);
    }
    if (failing && figures.counterexamples === 0) problems.push("a failing run shows no counterexamples");
    if (!failing && figures.counterexamples > 0) problems.push("a passing run shows counterexamples");
    console.log(JSON.stringify(figures));
  } finally {
    await browser.close();
  }
  if (problems.length > 0) {
    console.error(problems.map((p) => `FAIL: ${p}`).join("\n"));
    process.exit(1);
  }
  console.log("report in a browser: every check passed");
}

main().catch((e) => { console.error(`FAIL: ${e.stack || e}`); process.exit(1); });
