"""`sparsebench report`: every figure and table of the study from a results database,
written with an `index.html` that opens from the file system (no server, no network).

The report is built in a temporary folder beside `out_dir` and moved into place whole,
so a failed or interrupted report never leaves a half-written one.
"""

from __future__ import annotations

import html
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from sparsebench.errors import InputError
from sparsebench.report.compare import against_dense
from sparsebench.report.confusions import confusion_figure
from sparsebench.report.curves import has_curves, sparsity_figure
from sparsebench.report.federated import federated_figure, federated_summary, load_federated
from sparsebench.report.figures import BARS, CURVES, FigureNotes, bar_figure, curve_figure
from sparsebench.report.producers import mixed_configurations, producers_text
from sparsebench.report.results import (
    COSTS,
    METRICS,
    SCENARIO_NAMES,
    Cost,
    Results,
    baseline_rows,
    load_results,
)
from sparsebench.report.spread import MARGIN
from sparsebench.report.tables import (
    bench_table,
    per_run_table,
    references_table,
    table_one,
    table_one_page,
)
from sparsebench.report.tradeoff import (
    ACCURACY_TOLERANCE,
    close_column,
    recommendations,
    tradeoff_figure,
)


@dataclass
class FigureEntry:
    scenario: str
    title: str
    stem: str
    energy: bool
    notes: FigureNotes


@dataclass
class Report:
    out_dir: Path
    index: Path
    svg: bool = True
    figures: list[FigureEntry] = field(default_factory=list)
    tables: list[Path] = field(default_factory=list)
    # the answer, one line per data set and model: what `report` prints on the terminal
    answers: list[str] = field(default_factory=list)
    # what the reader must know before trusting the answers (printed after them)
    cautions: list[str] = field(default_factory=list)
    # per section, figures not drawn and why (a quantity no run measured)
    not_drawn: dict[str, list[str]] = field(default_factory=dict)


MARKER = ".sparsebench-report"


def build_report(
    db: str | Path,
    out_dir: str | Path,
    latency_budget_ms: float | None = None,
    svg: bool = True,
    metric: str = "accuracy",
    select: str | None = None,
    rank_by: str = "latency",
    margin: float = MARGIN,
) -> Report:
    """`svg=False` writes PNG figures only: a report committed to a repository or mailed
    is half the size. `metric` (a key of METRICS) is what Table 1, the trade-off figures
    and the recommendations compare methods by; `select` whose weights' test metrics
    every figure and table shows: the best validation epoch's (by default, where the
    runs kept them) or the last epoch's;
    `rank_by` (a key of COSTS) what the recommendations call the cheapest by; `margin`
    the difference from dense that counts as none (equivalence, `report.spread`)."""
    db, out_dir = Path(db), Path(out_dir)
    if metric not in METRICS:
        raise InputError(f"--metric: unknown metric {metric!r} (choose from {', '.join(METRICS)})")
    if rank_by not in COSTS:
        raise InputError(f"--rank-by: expected {' or '.join(COSTS)}, got {rank_by!r}")
    _check_replaceable(out_dir)
    results = replace(
        load_results(db, select), metric=METRICS[metric], cost=COSTS[rank_by], margin=margin
    )
    if results.empty and results.left_out:
        raise InputError(
            f"{db}: none of its {results.left_out} finished run(s) has best-validation "
            "metrics (they were stored before sparsebench kept them): report --select last"
        )
    federated = load_federated(db)
    if results.empty and federated.empty:
        raise InputError(f"{db}: no finished runs to report")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        report = _write(results, federated, db, staging, latency_budget_ms, svg)
        _replace_folder(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report.out_dir = out_dir
    report.index = out_dir / "index.html"
    report.tables = [out_dir / path.name for path in report.tables]
    return report


def _check_replaceable(out_dir: Path) -> None:
    """A report replaces only an empty folder or an earlier report: `--out .` must never
    take a user's folder with it."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise InputError(f"{out_dir}: a file, not a folder for the report; choose another --out")
    entries = {entry.name for entry in out_dir.iterdir()}
    earlier_report = MARKER in entries or {"index.html", "figures"} <= entries
    if entries and not earlier_report:
        raise InputError(
            f"{out_dir}: a folder that is not an earlier sparsebench report (it would be "
            "replaced whole); choose an empty or new --out"
        )


def _replace_folder(staging: Path, out_dir: Path) -> None:
    os.chmod(staging, 0o755)
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old")
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
        out_dir.rename(old)
        staging.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(out_dir)


def _write(
    results: Results,
    federated: pd.DataFrame,
    db: Path,
    folder: Path,
    latency_budget_ms: float | None,
    svg: bool,
) -> Report:
    report = Report(out_dir=folder, index=folder / "index.html", svg=svg)
    (folder / MARKER).write_text("written by sparsebench report; replaced by the next one\n")
    (folder / "figures").mkdir()
    federated_parts = _federated_section(federated, report)
    if results.empty:
        page = _federated_page(db, federated_parts)
    else:
        _draw_figures(results, report)
        tables = _write_tables(results, report, latency_budget_ms)
        page = _index_html(results, db, report, tables, federated_parts)
    (folder / "index.html").write_text(page)
    return report


def answers(advice: pd.DataFrame, cost: Cost) -> list[str]:
    """Each data set and model's recommendation in one line, with what it rests on."""
    close = close_column(cost)
    return [
        f"{row['data set']}, {row['model']}: {close}: {row[close]} (rests on: {row['rests on']})"
        for _, row in advice.iterrows()
    ]


def _federated_section(federated: pd.DataFrame, report: Report) -> list[str]:
    """The federated runs' figure and round table (nothing without federated runs)."""
    if federated.empty:
        return []
    title = "Federated runs: test accuracy against rounds and megabytes uploaded"
    entry = _save(federated_figure(federated), report, "federated", "accuracy", title)
    report.figures.append(entry)
    path = report.out_dir / "federated_rounds.csv"
    federated.to_csv(path, index=False)
    report.tables.append(path)
    summary = federated_summary(federated)
    summary_path = report.out_dir / "federated_summary.csv"
    summary.to_csv(summary_path, index=False)
    report.tables.append(summary_path)
    shown = summary.drop(columns=["run_id"]).rename(columns=FEDERATED_SUMMARY_HEADINGS)
    formats = {heading: "{:.3f}" for heading in FEDERATED_SUMMARY_HEADINGS.values()}
    formats.update({"round s": "{:.1f}", "rounds": "{:d}", "data": "{}"})
    return [
        "<h2 id='federated'>Federated runs</h2>",
        "<p>Each round's global model on the held-out test split; megabytes are the "
        "clients' replies as serialised by Flower, summed from the set-up (round 0). "
        "<a href='federated_rounds.csv'>CSV</a> of every round, with bytes down, failed "
        "clients and round times.</p>",
        _figure(report, entry),
        "<p>Whether sparse training paid: the megabytes each run uploaded until its "
        "global model first reached the final accuracy of dense FedAvg in the same "
        "federation (same data, model, clients and seed), and that as a share of what "
        "dense uploaded to get there; missing: never reached, or no dense run in that "
        "federation. "
        "<a href='federated_summary.csv'>CSV</a>.</p>",
        f"<div class='scroll'>{_html_table(shown, formats)}</div>",
    ]


FEDERATED_SUMMARY_HEADINGS = {
    "data_label": "data",
    "final_accuracy": "final test accuracy",
    "final_val_accuracy": "final validation accuracy",
    "best_val_round": "best validation round",
    "accuracy_at_best_val": "its test accuracy",
    "mb_uploaded": "MB uploaded",
    "mb_per_round": "MB up a round",
    "setup_mb_up": "set-up MB up",
    "round_s": "round s",
    "mb_to_dense_final": "MB to dense's final validation accuracy",
    "of_dense_mb": "of dense's MB",
}


def _federated_page(db: Path, parts: list[str]) -> str:
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


def _draw_figures(results: Results, report: Report) -> None:
    metric = results.metric.heading
    # Ranked by multiply-adds, the times as tested are not comparisons between runs:
    # the figures that would read them as such draw multiply-adds or are left out.
    by_time = results.cost.name == "latency"
    per_image = "inference_ms" if by_time else "mmacs"
    for cost, title in (
        (
            per_image,
            f"{metric} against {'inference time' if by_time else 'multiply-adds'} per image",
        ),
        ("train_s", f"{metric} against total training time"),
    ):
        report.figures.append(
            _save(tradeoff_figure(results, cost), report, "tradeoff", cost, title)
        )
    if has_curves(results):
        for axis_name, title in (
            ("conv_target", f"{metric} against conv sparsity"),
            ("macs_share", f"{metric} against multiply-adds per image"),
            *([("inference_ms", f"{metric} against inference time per image")] if by_time else []),
        ):
            figure = sparsity_figure(results, axis_name)
            report.figures.append(_save(figure, report, "sparsity", axis_name, title))
    for index, dataset in enumerate(results.datasets()):
        figure = confusion_figure(results, dataset)
        title = f"Test confusion matrices on {dataset}"
        report.figures.append(_save(figure, report, "confusion", str(index), title))
    for scenario in _sections(results):
        for metric in CURVES:
            figure, notes = curve_figure(results, scenario, metric)
            report.figures.append(_save(figure, report, scenario, metric.column, metric.title))
            report.figures[-1].notes = notes
        for metric in BARS:
            figure, notes = bar_figure(results, scenario, metric)
            if metric.energy and notes.measured == 0:
                plt.close(figure)
                report.not_drawn.setdefault(scenario, []).append(_unmeasured(metric.title, notes))
                continue
            entry = _save(figure, report, scenario, metric.column, metric.title, metric.energy)
            entry.notes = notes
            report.figures.append(entry)


def _write_tables(results: Results, report: Report, latency_budget_ms: float | None) -> Tables:
    """Every table of the report as CSV (the per-run one also as Parquet), listed in
    `report.tables`; the tables the page shows."""
    folder = report.out_dir
    advice = recommendations(results, latency_budget_ms)
    report.answers = answers(advice, results.cost)
    comparisons = against_dense(results)
    mixed = mixed_configurations(results)
    if not mixed.empty:
        report.cautions.append(
            f"{len(mixed)} configuration(s) pool runs of different releases or machines "
            "(mixed_producers.csv): their means are over two experiments"
        )
    runs = per_run_table(results)
    first = table_one(results)
    references = references_table(results)
    bench = bench_table(results)
    runs.to_csv(folder / "runs.csv", index=False)
    runs.to_parquet(folder / "runs.parquet", index=False)
    report.tables += [folder / "runs.csv", folder / "runs.parquet"]
    for table, name in (
        (first, "table1.csv"),
        (advice, "recommendations.csv"),
        (comparisons, "comparisons.csv"),
        *([(mixed, "mixed_producers.csv")] if not mixed.empty else []),
        *([(bench, "inference_bench.csv")] if not bench.empty else []),
    ):
        table.to_csv(folder / name, index=False)
        report.tables.append(folder / name)
    references.to_csv(folder / "references.csv", index=False)
    return Tables(*table_one_page(results), references, bench, runs, advice, comparisons, mixed)


def _save(
    figure: plt.Figure, report: Report, scenario: str, column: str, title: str, energy: bool = False
) -> FigureEntry:
    stem = f"figures/{scenario}_{column}"
    # "tight": the methods' legend stands right of the panels, outside the axes' area
    figure.savefig(report.out_dir / f"{stem}.png", dpi=110, bbox_inches="tight")
    if report.svg:
        figure.savefig(report.out_dir / f"{stem}.svg", bbox_inches="tight")
    plt.close(figure)
    return FigureEntry(scenario, title, stem, energy, FigureNotes())


def _svg_link(report: Report, entry: FigureEntry) -> str:
    return f" <a href='{html.escape(entry.stem)}.svg'>SVG</a>" if report.svg else ""


def _unmeasured(title: str, notes: FigureNotes) -> str:
    """Why a figure of a quantity that no run measured is left out."""
    reasons = "; ".join(sorted(notes.reasons)) or "no reason recorded"
    return f"{title}: not drawn, no run shown measured it ({reasons})."


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


@dataclass
class Tables:
    """The tables the report page shows."""

    first: pd.DataFrame
    first_intervals: pd.DataFrame  # each Table 1 cell's 95% interval, shown on hover
    references: pd.DataFrame
    bench: pd.DataFrame
    runs: pd.DataFrame
    advice: pd.DataFrame
    comparisons: pd.DataFrame
    mixed: pd.DataFrame  # configurations pooling runs of different producers


def _index_html(
    results: Results, db: Path, report: Report, tables: Tables, federated_parts: list[str]
) -> str:
    scenarios = _sections(results)
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
        _html_table(tables.runs, _number_formats(tables.runs)),
        "</div></body></html>",
    ]
    return "\n".join(parts)


def _figure(report: Report, entry: FigureEntry, caption: str | None = None) -> str:
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
        f"<div class='scroll'>{_html_table(mixed, {})}</div>",
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
        _html_table(tables.advice, _number_formats(tables.advice)),
        *(
            _figure(report, f, e(f.title) + curve_caption)
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
        *(_figure(report, f) for f in report.figures if f.scenario == "tradeoff"),
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
        _html_table(tables.comparisons, {}),
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
        *(_figure(report, f) for f in report.figures if f.scenario == "confusion"),
    ]
    if not references.empty:
        parts += [
            "<h3>Reference accuracies from the literature</h3>",
            "<p>Measured under their authors' protocols (below), not re-run here; the "
            "BloodMNIST-style data in <code>../shared/data</code> uses its own split.</p>",
            _html_table(references, {"accuracy": "{:.4g}", "sd": "{:.4f}"}),
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
        parts.append(_figure(report, entry, caption))
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
        _html_table(bench, _number_formats(bench)),
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
        _html_table(unfinished, {}),
        "</div>",
    ]


def _sections(results: Results) -> list[str]:
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


def _number_formats(frame: pd.DataFrame) -> dict[str, str]:
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


def _html_table(frame: pd.DataFrame, formats: dict[str, str]) -> str:
    # An empty text cell (a run not derived from another) is empty, not "None".
    frame = frame.copy()
    for column in frame.columns:
        if frame[column].dtype == object and column not in formats:
            frame[column] = frame[column].map(lambda value: "" if value is None else value)
    formatters = {
        column: (lambda value, f=fmt: _formatted(value, f)) for column, fmt in formats.items()
    }
    return frame.to_html(index=False, na_rep="missing", formatters=formatters, border=0)
