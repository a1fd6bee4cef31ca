"""The report's page: `index.html`, every section of it as HTML, from what
`report.build` drew and wrote. Text from the data is escaped wherever it is shown."""

from __future__ import annotations

import html
import time
from pathlib import Path

import pandas as pd

from sparsebench.report.curves import has_curves
from sparsebench.report.entries import FigureEntry, Report, Tables
from sparsebench.report.figures import FigureNotes
from sparsebench.report.producers import producers_text
from sparsebench.report.results import SCENARIO_NAMES, Results, baseline_rows
from sparsebench.report.tradeoff import ACCURACY_TOLERANCE


def federated_page(db: Path, parts: list[str]) -> str:
    e = html.escape
    return "\n".join(
        [
            "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
            "<title>sparsebench report</title>",
            f"<style>{_STYLE}</style></head><body>",
            "<h1>sparsebench report</h1>",
            f"<p>From <code>{e(str(db))}</code>, {time.strftime('%Y-%m-%d %H:%M %Z')}: "
            "federated runs only.</p>",
            *parts,
            "</body></html>",
        ]
    )


def _svg_link(report: Report, entry: FigureEntry) -> str:
    return f" <a href='{html.escape(entry.stem)}.svg'>SVG</a>" if report.svg else ""


def _energy_statement(notes: FigureNotes) -> str:
    if notes.missing == 0:
        return f"Energy measured for all {notes.measured} runs shown."
    reasons = "; ".join(sorted(notes.reasons)) or "no reason recorded"
    if notes.measured == 0:
        return (
            f"Energy missing for all {notes.missing} runs shown (never drawn as zero): {reasons}."
        )
    return (
        f"Energy measured for {notes.measured} runs and missing for {notes.missing} "
        f"(shown as missing, never as zero): {reasons}."
    )


def _execution_statement(notes: FigureNotes) -> str:
    """Which execution produced a training cost: compact runs train the smaller network
    their masks leave; masked runs, and runs stored before compact execution existed,
    the full one."""
    counts = ", ".join(
        f"{kind} for {n} run{'s' if n > 1 else ''}" for kind, n in sorted(notes.executions.items())
    )
    return f"Training execution: {counts} (column execution in the run table)."


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.25em; margin-top: 2em; } h3 { font-size: 1.05em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
figure { margin: 1em 0 2em; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #444; } .missing { color: #a33; }
.scroll { overflow-x: auto; } nav a { margin-right: 1em; }
"""


def index_html(
    results: Results, db: Path, report: Report, tables: Tables, federated_parts: list[str]
) -> str:
    scenarios = sections(results)
    parts = [
        *_page_head(results, db, report, scenarios, tables),
        *_choice_section(results, report, tables),
        *_table1_section(results, tables),
        *_confusion_section(report, tables.references),
        *(part for scenario in scenarios for part in _scenario_section(report, scenario)),
        *_bench_section(tables.bench),
        *_unfinished_section(results),
        *federated_parts,
        "<h2 id='runs'>Every run</h2>",
        "<p><a href='runs.csv'>CSV</a> · <a href='runs.parquet'>Parquet</a>. "
        "Empty energy cells are missing measurements (reason in the next column).</p>",
        "<div class='scroll'>",
        html_table(tables.runs, number_formats(tables.runs)),
        "</div></body></html>",
    ]
    return "\n".join(parts)


def figure_html(report: Report, entry: FigureEntry, caption: str | None = None) -> str:
    """A figure as PNG, its caption (the title, escaped, unless given) and SVG link."""
    e = html.escape
    caption = e(entry.title) if caption is None else caption
    return (
        f"<figure><img src='{e(entry.stem)}.png' alt='{e(entry.title)}'>"
        f"<figcaption>{caption}{_svg_link(report, entry)}</figcaption></figure>"
    )


def _mixed_producers(mixed: pd.DataFrame) -> list[str]:
    if mixed.empty:
        return []
    return [
        f"<p class='missing'>{len(mixed)} configuration(s) pool runs of different "
        "numerics, releases or machines: their means and intervals are over more than one "
        "experiment (floats from other kernels differ, and training amplifies that). "
        "<a href='mixed_producers.csv'>CSV</a>.</p>",
        f"<div class='scroll'>{html_table(mixed, {})}</div>",
    ]


def _page_head(
    results: Results, db: Path, report: Report, scenarios: list[str], tables: Tables
) -> list[str]:
    e = html.escape
    return [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>sparsebench report</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>sparsebench report</h1>",
        f"<p>From <code>{e(str(db))}</code>, {time.strftime('%Y-%m-%d %H:%M %Z')}: "
        f"{len(results.runs)} finished runs ({_count_text(results)}). Figures are PNG "
        f"{'(shown) and SVG (linked)' if report.svg else '(no SVG written)'}; tables are "
        "CSV, and Parquet for the per-run table.</p>",
        f"<p>{e(_selection_text(results))}</p>",
        f"<p>{e(producers_text(results))}</p>",
        *_mixed_producers(tables.mixed),
        "<nav>",
        "<a href='#choice'>which method</a><a href='#table1'>Table 1</a>",
        "<a href='#confusion'>confusion matrices</a>",
        *(f"<a href='#{e(s)}'>scenario {e(s)}</a>" for s in scenarios),
        "<a href='#bench'>inference benchmark</a><a href='#runs'>every run</a></nav>",
    ]


def _choice_section(results: Results, report: Report, tables: Tables) -> list[str]:
    """The answer first (the recommendation table), then the curves of accuracy against
    sparsity, which read without a legend hunt, then the trade-off scatter."""
    e = html.escape
    curve_caption = (
        ": one curve per method through the mean over seeds, the band from the lowest to "
        "the highest seed, dense as the grey band; a curve is cut where its number of "
        "seeds changes (a point of its own is a different seed count)"
    )
    cheapest = results.cost.cheapest
    ranked_by = (
        " (<code>--rank-by macs</code>: multiply-adds per image, the same on every "
        "machine, where the times were taken on several or beside other work)"
        if results.cost.name == "macs"
        else ""
    )
    return [
        "<h2 id='choice'>Which method and sparsity for this box?</h2>",
        f"<p>{cheapest.capitalize()} within {ACCURACY_TOLERANCE * 100:.0f} point of dense"
        f"{ranked_by}: a configuration qualifies when the 95% interval of its difference "
        "from dense, seed by seed, lies above minus one point; where none does, the cell "
        f"names the {cheapest} whose mean does, the one to run more seeds of. "
        + (
            "Most accurate within the latency budget "
            "(<code>report --latency-budget-ms</code>), by the mean, with how many others "
            "are not shown worse than it (a paired t test at 5%). "
            if any(c.startswith("most accurate within") for c in tables.advice.columns)
            else ""
        )
        + "<a href='recommendations.csv'>CSV</a></p>",
        html_table(tables.advice, number_formats(tables.advice)),
        *(
            figure_html(report, f, e(f.title) + curve_caption)
            for f in report.figures
            if f.scenario == "sparsity"
        ),
        *_tradeoff_part(results, report),
        *_against_dense_part(results, tables),
    ]


def _tradeoff_part(results: Results, report: Report) -> list[str]:
    """The trade-off scatter and how to read it."""
    return [
        "<p>Each point of the trade-off figures is one method and scenario (seeds "
        "averaged, whiskers one standard deviation), its marker the method's (a label "
        "that would print over another is left to the legend); the line joins the Pareto "
        "front, the configurations no other one beats on both accuracy and cost. "
        + (
            "Inference time is per test image as the run was tested (the compact network "
            "for compact runs).</p>"
            if results.cost.name == "latency"
            else "Multiply-adds are those per image of the compact network where the run "
            "trained compact (else of the full-size network's non-zero weights), the same "
            "on every machine (<code>--rank-by macs</code>); the times of "
            "these runs, taken on several machines or beside other work, are in the per-run "
            "table.</p>"
        ),
        *(figure_html(report, f) for f in report.figures if f.scenario == "tradeoff"),
    ]


def _against_dense_part(results: Results, tables: Tables) -> list[str]:
    """Every configuration against dense, and how its verdicts are reached."""
    return [
        "<h3 id='against-dense'>Every configuration against dense</h3>",
        "<p>Mean ± standard deviation over seeds (number of seeds), the 95% interval of "
        "the mean (Student's t, kept within the metric's range) and each seed's value; the "
        "difference from dense is taken seed by seed over the seeds both ran. Each "
        f"difference is tested twice, and each kind of test corrected over all "
        f"{len(tables.comparisons)} comparisons of this report (Holm): "
        f"<em>equivalent within {results.margin * 100:g} point(s)</em> where two one-sided "
        "tests show the difference within that margin (<code>report --margin</code>), the "
        "only verdict that says a configuration costs nothing; <em>better</em> or "
        "<em>worse</em> where a paired t test shows a difference; <em>not resolved</em> "
        "where neither, and then more seeds are needed (an interval that holds zero does "
        "not show the two equal); <em>one seed</em> where there is nothing to test with. "
        "<a href='comparisons.csv'>CSV</a></p>",
        f"<details><summary>{len(tables.comparisons)} configurations</summary>",
        html_table(tables.comparisons, {}),
        "</details>",
    ]


def _table1_section(results: Results, tables: Tables) -> list[str]:
    return [
        f"<h2 id='table1'>Table 1: {html.escape(results.metric.label)}, dense and mixed "
        "scenario</h2>",
        "<p>Mean ± standard deviation over seeds (number of seeds); a cell without a "
        "result says whether its run was not run, diverged or failed. The best over seeds, "
        "the 95% interval of each mean and the literature's accuracies with their "
        "protocols in short are in the <a href='table1.csv'>CSV</a>; the published "
        "accuracies are in the table below with their sources and protocols: none was "
        "measured here, and none follows the study's protocol (from scratch at 28x28, "
        "Adam 1e-4, 50 epochs).</p>",
        *_no_mixed_runs(results),
        _titled_table(tables.first, tables.first_intervals),
    ]


def _no_mixed_runs(results: Results) -> list[str]:
    """A sentence where Table 1 can hold dense alone: a grid of sparsity lists."""
    runs = results.runs
    if (runs[~baseline_rows(runs)].scenario == "mixed").any():
        return []
    return [
        "<p>No sparse run here is in the mixed scenario (conv 0.5, linear 0.8), so this "
        "table holds dense alone: every configuration is compared with dense under "
        "<a href='#against-dense'>every configuration against dense</a>.</p>"
    ]


def _confusion_section(report: Report, references: pd.DataFrame) -> list[str]:
    parts = [
        "<h2 id='confusion'>Where the networks err</h2>",
        "<p>Per data set, the test confusion matrices of dense and of every method in the "
        "mixed scenario (for data with no run in it, the configuration most methods ran, "
        "named above its matrices), summed over seeds; each row is a true class, shaded by "
        "the share of its images predicted as each class, so the diagonal is the per-class "
        "recall "
        "(<code>recall_per_class</code> in <code>train --json</code>).</p>",
        *(figure_html(report, f) for f in report.figures if f.scenario == "confusion"),
    ]
    if not references.empty:
        parts += [
            "<h3>Reference accuracies from the literature</h3>",
            "<p>Measured under their authors' protocols (below), not re-run here; the "
            "BloodMNIST-style data in <code>../shared/data</code> uses its own split.</p>",
            html_table(references, {"accuracy": "{:.4g}", "sd": "{:.4f}"}),
        ]
    return parts


def _scenario_section(report: Report, scenario: str) -> list[str]:
    e = html.escape
    parts = [
        f"<h2 id='{e(scenario)}'>Scenario {e(SCENARIO_NAMES.get(scenario, scenario))}</h2>",
        "<p>Dense is the same baseline in every scenario. Post-Training shares its dense "
        "run's training (it is derived from the dense weights), so its curves and "
        "training time are the dense ones.</p>",
    ]
    for entry in (f for f in report.figures if f.scenario == scenario):
        caption = e(entry.title) + "."
        if entry.energy:
            caption += f" <span class='missing'>{e(_energy_statement(entry.notes))}</span>"
        if entry.notes.executions:
            caption += " " + e(_execution_statement(entry.notes))
        if entry.notes.not_run:
            caption += " Not run: " + e(", ".join(sorted(set(entry.notes.not_run)))) + "."
        parts.append(figure_html(report, entry, caption))
    parts += [f"<p class='missing'>{e(line)}</p>" for line in report.not_drawn.get(scenario, [])]
    return parts


def _bench_section(bench: pd.DataFrame) -> list[str]:
    parts = ["<h2 id='bench'>Inference benchmark (sparsebench bench)</h2>"]
    if bench.empty:
        return parts + [
            "<p>No benchmark in this database yet: <code>sparsebench bench RUN_ID</code> "
            "measures masked vs compact vs ONNX Runtime latency and stores it here.</p>"
        ]
    return parts + [
        "<p>Latest measurement of each subject, variant, batch size and thread count; "
        "speedup is over the masked model, efficiency = speedup / MAC ratio. "
        "<a href='inference_bench.csv'>CSV</a></p>",
        "<div class='scroll'>",
        html_table(bench, number_formats(bench)),
        "</div>",
    ]


def _unfinished_section(results: Results) -> list[str]:
    if results.unfinished.empty:
        return []
    unfinished = results.unfinished[
        ["run_id", "model", "data_label", "method", "scenario", "seed", "status", "error"]
    ].rename(columns={"data_label": "data set"})
    return [
        "<h2 id='unfinished'>Runs that diverged or failed</h2>",
        "<p>Not drawn in the figures (their slot says so). A diverged run's training "
        "loss became NaN or infinite; the same settings diverge again, so a sweep does "
        "not retrain it: lower the learning rate.</p>",
        "<div class='scroll'>",
        html_table(unfinished, {}),
        "</div>",
    ]


def sections(results: Results) -> list[str]:
    """The scenarios that get a section of figures: the named ones, and free sparsity
    pairs only when there is no curve to draw them on (a sweep's `sparsities:` axis adds
    a point to each method's curve, not seven figures)."""
    if not has_curves(results):
        return results.scenarios()
    return [scenario for scenario in results.scenarios() if scenario in SCENARIO_NAMES]


def _selection_text(results: Results) -> str:
    """Which weights every test metric of the report is of."""
    if results.no_best_val:
        return (
            "Test metrics are those of each run's last epoch: the runs of this database were "
            "stored before sparsebench kept the weights of the best validation epoch."
        )
    if results.select == "last":
        return (
            "Test metrics are those of each run's last epoch, the study's protocol "
            "(report --select best-val: those of the best validation epoch, the default)."
        )
    text = (
        "Test metrics are those of the weights at each run's best validation epoch, among "
        "the epochs validated at the trained sparsity; the test split is read once, for "
        "those weights (report --select last: the last epoch's, the study's protocol)."
    )
    if results.left_out:
        text += (
            f" {results.left_out} finished run(s) stored before the best validation epoch "
            "was kept are left out."
        )
    return text


def _count_text(results: Results) -> str:
    counts = results.runs.groupby("method").size()
    return ", ".join(f"{method} {count}" for method, count in counts.items())


def number_formats(frame: pd.DataFrame) -> dict[str, str]:
    return {
        column: "{:.4g}" for column in frame.columns if pd.api.types.is_float_dtype(frame[column])
    }


def _formatted(value: object, fmt: str) -> str:
    """A number in `fmt`; a word (Table 1's "not run") as it is; nothing as "missing"."""
    if isinstance(value, str):
        return value
    return "missing" if pd.isna(value) else fmt.format(value)


def _titled_table(cells: pd.DataFrame, titles: pd.DataFrame) -> str:
    """A table of text cells, each with its title (a browser shows it on hover)."""
    e = html.escape
    head = "".join(f"<th>{e(str(column))}</th>" for column in cells.columns)
    rows = []
    pairs = zip(cells.itertuples(index=False), titles.itertuples(index=False), strict=True)
    for values, tips in pairs:
        row = "".join(
            f"<td title='{e(str(tip))}'>{e(str(value))}</td>"
            if tip
            else f"<td>{e(str(value))}</td>"
            for value, tip in zip(values, tips, strict=True)
        )
        rows.append(f"<tr>{row}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def html_table(frame: pd.DataFrame, formats: dict[str, str]) -> str:
    # An empty text cell (a run not derived from another) is empty, not "None".
    frame = frame.copy()
    for column in frame.columns:
        if frame[column].dtype == object and column not in formats:
            frame[column] = frame[column].map(lambda value: "" if value is None else value)
    formatters = {
        column: (lambda value, f=fmt: _formatted(value, f)) for column, fmt in formats.items()
    }
    return frame.to_html(index=False, na_rep="missing", formatters=formatters, border=0)
