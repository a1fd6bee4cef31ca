"""The report from a database whose every value is known, so figures and tables can be
checked against numbers worked out by hand."""

import json
import re

import pandas as pd
import pytest
from conftest import run_record
from typer.testing import CliRunner

from sparsebench.cli import app
from sparsebench.errors import InputError
from sparsebench.report import build_report
from sparsebench.report.figures import BARS, CURVES
from sparsebench.store import ResultsStore
from sparsebench.store.records import (
    EPOCH_COLUMNS,
    TEST_COLUMNS,
    EpochRecord,
    RunSummary,
    TestMetrics,
)

runner = CliRunner()
RAPL_MISSING = "RAPL is not readable on this machine"


def add_run(
    store,
    run_id,
    method,
    scenario,
    seed,
    accuracy,
    energy=None,
    derived_from=None,
    data_path="blood.npz",
    execution=None,
    inference_s=0.002,
    conv=0.5,
    model="resnet18",
    provenance=None,
):
    config = {
        "model": model,
        "dataset": "bloodmnist",
        "data_path": data_path,
        "width": 0.25,
        "method": method,
        "scenario": scenario,
        "conv_sparsity": 0.0 if method == "dense" else conv,
        "linear_sparsity": 0.0 if method == "dense" else 0.8,
        "seed": seed,
        "epochs": 2,
        **({"execution": execution} if execution else {}),
    }
    epochs = [
        EpochRecord.from_row(
            {
                **{column: 0.5 for column in EPOCH_COLUMNS},
                "epoch": epoch,
                "train_accuracy": accuracy - 0.1 * (1 - epoch),
                "train_loss": 1.0 - 0.2 * epoch,
                "train_time_s": 10.0 + seed,
                "memory_kind": "cpu-rss",
                "energy_j": energy,
                "energy_source": None if energy is None else "rapl",
                "energy_missing_reason": RAPL_MISSING if energy is None else None,
            }
        )
        for epoch in range(2)
    ]
    test = {column: 0.25 for column in TEST_COLUMNS}
    test.update(
        accuracy=accuracy,
        inference_time_per_sample_s=inference_s,
        inference_energy_j=energy,
        inference_energy_source=None if energy is None else "rapl",
        inference_energy_missing_reason=RAPL_MISSING if energy is None else None,
        confusion_matrix=[[1, 0], [0, 1]],
        params_compact=None,  # as a run trained masked: its size is the full network's
        macs_compact=None,
    )
    test = TestMetrics(**test)
    store.begin_run(run_record(run_id, config), "cpu", {})
    summary = RunSummary(
        run_id=run_id,
        status="finished",
        config=config,
        device="cpu",
        data={"name": "bloodmnist"},
        epochs=epochs,
        test=test,
        test_best_val=None,
        layers=[],
        sparsity_by_kind={"conv": 0.5, "linear": 0.8},
        provenance=provenance,
    )
    store.finish_run(run_id, summary, derived_from=derived_from)


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "results.db"
    with ResultsStore(path) as store:
        add_run(store, "dense0", "dense", None, 0, 0.90)
        add_run(store, "dense1", "dense", None, 1, 0.80)
        add_run(store, "pre0", "pre", "mixed", 0, 0.70, energy=120.0)
        add_run(store, "pre1", "pre", "mixed", 1, 0.60, energy=100.0)
        add_run(store, "post0", "post", "mixed", 0, 0.30, derived_from="dense0")
        add_run(store, "set0", "set", "uniform", 0, 0.50)
        # Unfinished and failed runs are not results.
        store.begin_run(
            run_record(
                "broken",
                {
                    "model": "resnet18",
                    "dataset": "bloodmnist",
                    "data_path": "blood.npz",
                    "method": "in",
                    "scenario": "mixed",
                    "conv_sparsity": 0.5,
                    "linear_sparsity": 0.8,
                    "seed": 0,
                    "epochs": 2,
                },
            ),
            "cpu",
            {},
        )
        store.mark_run("broken", "failed", "RuntimeError: boom")
        store.record_inference_bench(
            "pre0",
            "run pre0",
            [
                {
                    "variant": "compact",
                    "batch_size": 64,
                    "threads": 2,
                    "latency_median_ms": 12.5,
                    "latency_p95_ms": 13.0,
                    "throughput_per_s": 5120.0,
                    "macs_per_sample": 1000,
                    "energy_per_inference_j": None,
                    "energy_source": None,
                    "energy_missing_reason": RAPL_MISSING,
                    "speedup": 3.25,
                    "mac_ratio": 4.0,
                    "efficiency": 0.8125,
                }
            ],
            max_rel_difference=1e-6,
        )
    return path


def test_every_figure_of_every_scenario_is_written_as_png_and_svg(db, tmp_path):
    report = build_report(db, tmp_path / "report")
    page = report.index.read_text()
    # no uniform run measured energy: those two figures are left out (see below)
    drawn = {"mixed": [*CURVES, *BARS], "uniform": [*CURVES, *(m for m in BARS if not m.energy)]}
    for scenario, metrics in drawn.items():
        for metric in metrics:
            stem = tmp_path / "report" / "figures" / f"{scenario}_{metric.column}"
            png, svg = stem.with_suffix(".png"), stem.with_suffix(".svg")
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert "<svg" in svg.read_text()[:1000]
            assert f"figures/{scenario}_{metric.column}.png" in page
    assert "linear-only" not in {f.scenario for f in report.figures}  # nothing ran there
    assert len(report.figures) == 7 + 5 + 2 + 1  # two trade-off, one confusion figure


def test_no_svg_writes_png_figures_only_and_links_none(db, tmp_path):
    result = runner.invoke(
        app, ["report", "--db", str(db), "--out", str(tmp_path / "report"), "--no-svg"]
    )
    assert result.exit_code == 0, result.output
    figures = tmp_path / "report" / "figures"
    pngs = sorted(figures.glob("*.png"))
    assert len(pngs) == 7 + 5 + 2 + 1  # no uniform run measured energy
    assert not list(figures.glob("*.svg"))
    page = (tmp_path / "report" / "index.html").read_text()
    assert ".svg" not in page and all(f"figures/{png.name}" in page for png in pngs)
    assert "SVG (linked)" not in page and "(no SVG written)" in page
    assert "figures (PNG) and" in result.output


def test_table_one_holds_the_best_and_the_mean_over_seeds(db, tmp_path):
    build_report(db, tmp_path / "report")
    table = pd.read_csv(tmp_path / "report" / "table1.csv")
    row = table.iloc[0]
    # the data's own name (its file's), the model's display name
    assert (row["data set"], row["model"]) == ("blood", "ResNet18")
    assert row["Dense best"] == pytest.approx(0.90)
    # mean 0.85, sample standard deviation sqrt(0.005) = 0.0707
    assert row["Dense mean ± sd (n)"] == "0.8500 ± 0.0707 (2)"
    assert row["Pre-Training (mixed) best"] == pytest.approx(0.70)
    assert row["Post-Training (mixed) mean ± sd (n)"] == "0.3000 (1)"
    assert row["In-Training (mixed) best"] == "failed"  # not a result, and says so
    assert row["SET (mixed) mean ± sd (n)"] == "not run"  # SET ran only in uniform
    # the literature beside it, each value with its protocol
    assert row["literature (protocol)"] == (
        "0.958 (MedMNIST v2: from scratch, 28x28, Adam 1e-3, 100 epochs); "
        "0.963 (MedMNIST v2: from scratch, 28 upscaled to 224); "
        "0.9193 ± 0.0037 (Doerrich et al.: ImageNet-pretrained, 28 padded to 224); "
        "0.9894 ± 0.0008 (Doerrich et al.: ImageNet-pretrained, 224x224)"
    )
    page = (tmp_path / "report" / "index.html").read_text()
    assert "MedMNIST v2" in page and "Doerrich et al." in page
    assert "<td>not run</td>" in page and "None" not in page


def test_missing_energy_is_stated_and_never_zero(db, tmp_path):
    report = build_report(db, tmp_path / "report")
    runs = pd.read_parquet(tmp_path / "report" / "runs.parquet")
    assert len(runs) == 6 and "broken" not in set(runs.run_id)
    energy = runs.set_index("run_id").total_train_energy_j
    assert energy["pre0"] == pytest.approx(240.0)  # 2 epochs x 120 J
    assert energy[["dense0", "dense1", "post0", "set0"]].isna().all()
    assert (runs.set_index("run_id").train_energy_missing_reason["dense0"]) == RAPL_MISSING
    page = report.index.read_text()
    mixed = [f for f in report.figures if f.scenario == "mixed" and f.energy]
    assert {(f.notes.measured, f.notes.missing) for f in mixed} == {(2, 3)}
    assert "Energy measured for 2 runs and missing for 3" in page
    # a quantity no run shown measured is not drawn as an empty figure: one sentence
    assert not [f for f in report.figures if f.scenario == "uniform" and f.energy]
    assert not (tmp_path / "report" / "figures" / "uniform_total_train_energy_j.png").exists()
    for title in (m.title for m in BARS if m.energy):
        assert f"{title}: not drawn, no run shown measured it ({RAPL_MISSING})." in page
    curves = [f for f in report.figures if f.scenario == "uniform" and not f.energy]
    assert "In-Training (resnet18, blood)" in curves[0].notes.not_run


def test_bench_rows_are_shown(db, tmp_path):
    report = build_report(db, tmp_path / "report")
    page = report.index.read_text()
    bench = page[page.index("id='bench'") :]
    assert re.search(r"<td>3\.25</td>", bench) and re.search(r"<td>0\.8125</td>", bench)
    assert (tmp_path / "report" / "inference_bench.csv").is_file()


def test_a_report_replaces_the_old_one_whole_and_a_failed_one_leaves_it(db, tmp_path):
    out = tmp_path / "report"
    build_report(db, out)
    (out / "stale.txt").write_text("from before")
    build_report(db, out)
    assert not (out / "stale.txt").exists()
    empty = tmp_path / "empty.db"
    ResultsStore(empty).close()
    with pytest.raises(InputError, match="no finished runs"):
        build_report(empty, out)
    assert (out / "index.html").is_file()
    assert not any(p.name.startswith(".report") for p in tmp_path.iterdir())
    result = runner.invoke(app, ["report", "--db", str(tmp_path / "absent.db"), "--out", str(out)])
    assert result.exit_code == 2 and "absent.db: results database does not exist" in result.output


def test_diverged_runs_are_listed_and_their_slot_says_so(db, tmp_path):
    with ResultsStore(db) as store:
        config = {"model": "resnet18", "dataset": "bloodmnist", "data_path": "blood.npz"}
        config |= {"method": "set", "scenario": "mixed", "conv_sparsity": 0.5}
        config |= {"linear_sparsity": 0.8, "seed": 0, "epochs": 2}
        store.begin_run(run_record("wild", config), "cpu", {})
        store.mark_run("wild", "diverged", "the training loss became nan at epoch 2, step 3")
    report = build_report(db, tmp_path / "report")
    page = report.index.read_text()
    assert "Runs that diverged or failed" in page
    assert "the training loss became nan at epoch 2, step 3" in page
    assert "RuntimeError: boom" in page  # the fixture's failed run
    # matplotlib names each drawn text in an SVG comment
    svg = (tmp_path / "report" / "figures" / "mixed_test_accuracy.svg").read_text()
    assert svg.count("<!-- diverged -->") == 1 and svg.count("<!-- failed -->") == 1
    uniform = (tmp_path / "report" / "figures" / "uniform_test_accuracy.svg").read_text()
    assert "<!-- diverged -->" not in uniform


def test_text_from_the_data_is_escaped_in_html_and_svg_and_never_mathtext(tmp_path):
    hostile = "<img src=x onerror=alert(1)> $\\alpha$ & -->"
    path = tmp_path / "results.db"
    with ResultsStore(path) as store:
        add_run(store, "a", "dense", None, 0, 0.9, data_path=f"{hostile}.npz")
        add_run(store, "b", "pre", "mixed", 0, 0.8, data_path="two.npz")
    report = build_report(path, tmp_path / "report")
    page = report.index.read_text()
    assert "&lt;img src=x onerror=alert(1)&gt; $\\alpha$ &amp; --&gt;.npz" in page
    assert "<img src=x" not in page
    svgs = list((tmp_path / "report" / "figures").glob("*.svg"))
    assert svgs
    drawn = "on &lt;img src=x onerror=alert(1)&gt; $\\alpha$ &amp; - -&gt;"
    for svg in svgs:
        text = svg.read_text()
        assert "<img" not in text and "-->." not in text
        # the panel title, drawn as typed (not as the letter alpha), its comment escaped;
        # a data set's confusion matrices are its own figure
        assert drawn in text or svg.name == "confusion_1.svg"
    assert drawn in (tmp_path / "report" / "figures" / "confusion_0.svg").read_text()


def test_a_method_beyond_the_study_appears_by_its_name_and_colour(tmp_path):
    path = tmp_path / "results.db"
    with ResultsStore(path) as store:
        add_run(store, "dense0", "dense", None, 0, 0.9)
        add_run(store, "rigl0", "rigl", "mixed", 0, 0.8)
        add_run(store, "gmp0", "gmp", "mixed", 0, 0.7)
    build_report(path, tmp_path / "report")
    table = pd.read_csv(tmp_path / "report" / "table1.csv")
    assert table.loc[0, "RigL (mixed) best"] == pytest.approx(0.8)
    assert table.loc[0, "GMP (mixed) best"] == pytest.approx(0.7)
    assert "Pre-Training (mixed) best" not in table.columns  # not in this database
    svg = (tmp_path / "report" / "figures" / "mixed_test_accuracy.svg").read_text()
    assert "<!-- RigL -->" in svg and "<!-- GMP -->" in svg
    assert "#8c564b" in svg and "#e377c2" in svg  # their registered colours
    assert "<!-- ResNet18 on blood -->" in svg  # the model's display name, the data's own


def test_the_report_says_which_execution_produced_each_training_cost(tmp_path):
    path = tmp_path / "results.db"
    with ResultsStore(path) as store:
        add_run(store, "dense0", "dense", None, 0, 0.9, execution="compact")
        add_run(store, "pre0", "pre", "mixed", 0, 0.8, execution="masked")
        add_run(store, "pre1", "pre", "mixed", 1, 0.7)  # stored before executions: masked
        add_run(store, "set0", "set", "mixed", 0, 0.6, execution="compact")
    build_report(path, tmp_path / "report")
    runs = pd.read_csv(tmp_path / "report" / "runs.csv").set_index("run_id")
    assert runs.execution.to_dict() == {
        "dense0": "compact",
        "pre0": "masked",
        "pre1": "masked",
        "set0": "compact",
    }
    index = (tmp_path / "report" / "index.html").read_text()
    statement = "Training execution: compact for 2 runs, masked for 2 runs"
    # on the training time figure, not on accuracy or inference (the training energy
    # figure, which would also say it, is not drawn: no run measured energy)
    assert index.count(statement) == 1
    svg = (tmp_path / "report" / "figures" / "mixed_total_train_time_s.svg").read_text()
    # the title wraps to the figure's width: each of its lines is a text of its own
    texts = " ".join(re.findall(r"<!-- (.*?) -->", svg))
    assert "compact and masked execution: masked bars hatched" in texts
    accuracy = (tmp_path / "report" / "figures" / "mixed_test_accuracy.svg").read_text()
    assert "execution" not in accuracy


def test_the_pareto_front_by_hand():
    from sparsebench.report.tradeoff import pareto_front

    cost = pd.Series([1.0, 2.0, 3.0, 2.0, 4.0])
    accuracy = pd.Series([0.6, 0.8, 0.7, 0.9, 0.95])
    # (3.0, 0.7) is beaten by (2.0, 0.8) and (2.0, 0.9); (2.0, 0.8) by (2.0, 0.9)
    assert pareto_front(cost, accuracy).tolist() == [True, False, False, True, True]


def test_the_recommendation_table_answers_which_method_by_hand(tmp_path):
    path = tmp_path / "results.db"
    with ResultsStore(path) as store:
        add_run(store, "dense0", "dense", None, 0, 0.900, inference_s=0.010)
        add_run(store, "pre0", "pre", "mixed", 0, 0.895, inference_s=0.004)  # within 1 point
        add_run(store, "set0", "set", "mixed", 0, 0.880, inference_s=0.003)  # faster, too weak
        add_run(store, "set1", "set", "uniform", 0, 0.600, inference_s=0.001)
    report = runner.invoke(
        app,
        ["report", "--db", str(path), "--out", str(tmp_path / "r"), "--latency-budget-ms", "3.5"],
    )
    assert report.exit_code == 0, report.stderr
    [row] = pd.read_csv(tmp_path / "r" / "recommendations.csv").to_dict("records")
    assert row["dense accuracy"] == "0.9000 (1)"
    # one seed: no interval, so the cell names the candidate by its single run
    assert row["fastest within 1 point of dense"].startswith(
        "none shown at 95%; by the mean: Pre-Training, mixed: accuracy 0.8950"
    )
    assert row["most accurate within 3.5 ms/image"] == (
        "SET, mixed: accuracy 0.8800, 3 ms/image (one seed: not ranked against the others)"
    )
    # the answer on the terminal, with what it rests on
    [answer] = report.stdout.splitlines()[:-1]
    assert answer.startswith(f"{row['data set']}, ResNet18: fastest within 1 point of dense: ")
    assert "rests on: one dense seed: nothing is tested" in answer
    assert report.stdout.splitlines()[-1].endswith("index.html")
    figures = tmp_path / "r" / "figures"
    assert (figures / "tradeoff_inference_ms.png").is_file()
    assert (figures / "tradeoff_train_s.svg").is_file()
    assert "Which method and sparsity for this box?" in (tmp_path / "r" / "index.html").read_text()


def test_test_accuracy_bars_draw_the_majority_class_and_chance_levels(tmp_path):
    """Seven of ten test images in one class: a network that never finds the other
    scores 0.7, which the figure marks; chance for two classes is 0.5."""
    from sparsebench.report.figures import bar_figure
    from sparsebench.report.results import load_results

    path = tmp_path / "results.db"
    with ResultsStore(path) as store:
        add_run(store, "dense0", "dense", None, 0, 0.70)
        add_run(store, "pre0", "pre", "mixed", 0, 0.80)
        store.connection.execute("UPDATE test_metrics SET confusion_json = '[[7, 0], [2, 1]]'")
    metric = next(bar for bar in BARS if bar.column == "test_accuracy")
    figure, _ = bar_figure(load_results(path), "mixed", metric)
    (axis,) = [a for a in figure.axes if a.get_xticks().size]
    levels = sorted(line.get_ydata()[0] for line in axis.lines if line.get_linestyle() != "-")
    assert levels == [pytest.approx(0.5), pytest.approx(0.7)]
    texts = [text.get_text() for text in axis.texts]
    assert "majority class 0.700" in texts and "chance 0.500" in texts


def test_data_is_named_by_its_own_name_never_by_its_loader(tmp_path):
    from sparsebench.report.results import data_label
    from sparsebench.train import RunConfig

    assert data_label("mvtec3d-objects", "../data/neu_det", None) == "neu_det"
    assert data_label("bloodmnist", "x/bloodmnist_like_28.npz", None) == "bloodmnist_like_28"
    assert data_label("visa", "../magnetic_tile_visa", "magnetic tiles") == "magnetic tiles"
    assert data_label("elpv", None, None) == "ELPV"  # read from a package: the loader's
    # a name is how results show, not what a run computes: the same run, the same id
    plain = RunConfig(dataset="synthetic")
    assert RunConfig(dataset="synthetic", data_name="tiles").run_id() == plain.run_id()

    path = tmp_path / "results.db"
    with ResultsStore(path) as store:
        add_run(store, "d", "dense", None, 0, 0.9, data_path="/data/neu_det")
        add_run(store, "p", "pre", "mixed", 0, 0.8, data_path="/data/neu_det")
    report = build_report(path, tmp_path / "report")
    assert report.index.is_file()
    table = pd.read_csv(tmp_path / "report" / "table1.csv")
    assert list(table["data set"]) == ["neu_det"]
    runs = pd.read_csv(tmp_path / "report" / "runs.csv")
    assert set(runs["data"]) == {"neu_det"} and set(runs["layout"]) == {"BloodMNIST"}


def html_tables(page: str) -> list[list[list[str]]]:
    """Every table of an HTML page as rows of cell texts (header row first)."""
    from html.parser import HTMLParser

    class Tables(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.tables: list[list[list[str]]] = []
            self.cell: list[str] | None = None

        def handle_starttag(self, tag, attrs):
            if tag == "table":
                self.tables.append([])
            elif tag == "tr":
                self.tables[-1].append([])
            elif tag in ("td", "th"):
                self.cell = []

        def handle_endtag(self, tag):
            if tag in ("td", "th") and self.cell is not None:
                self.tables[-1][-1].append("".join(self.cell).strip())
                self.cell = None

        def handle_data(self, data):
            if self.cell is not None:
                self.cell.append(data)

    parser = Tables()
    parser.feed(page)
    return parser.tables


def test_table_one_on_the_page_is_one_cell_per_result_with_the_literature_apart(db, tmp_path):
    report = build_report(db, tmp_path / "report")
    tables = html_tables(report.index.read_text())
    header, *rows = next(t for t in tables if t[0][:3] == ["data set", "model", "Dense"])
    # data set, model, then one column per method: no best/mean pairs, no literature
    assert not any("literature" in c or "best" in c for c in header)
    row = dict(zip(header, rows[0], strict=True))
    # mean 0.85, sd sqrt(0.005), 2 seeds; no break inside the spread
    assert row["Dense"] == "0.850\u00a0±\u00a00.071 (2)"
    assert row["Post-Training"] == "0.300 (1)"
    assert row["In-Training"] == "failed" and row["SET"] == "not run"
    # the 95% interval of each mean rests on its cell: t(0.975, 1) x sd / sqrt(2) = 0.635
    assert "<td title='95% interval [0.215, 1.000]'>0.850\u00a0±\u00a00.071 (2)</td>" in (
        report.index.read_text()
    )
    assert any("protocol" in t[0] for t in tables)  # the literature in a table of its own


def test_the_metric_a_report_compares_by_changes_its_recommendations(tmp_path):
    """Pre-Training answers the majority class (90 of 100 test images) and is faster;
    SET finds both classes. By accuracy both are within one point of dense and the
    faster is named; by balanced accuracy (0.5 against 0.89) only SET is. One seed
    shows no interval, and the cells say so."""
    from dataclasses import replace

    from sparsebench.report.results import METRICS, load_results
    from sparsebench.report.tradeoff import recommendations

    path = tmp_path / "results.db"
    confusions = {
        "dense0": [[45, 5], [5, 45]],  # accuracy 0.90, balanced 0.90
        "pre0": [[90, 0], [10, 0]],  # accuracy 0.90, balanced 0.50
        "set0": [[44, 6], [5, 45]],  # accuracy 0.89, balanced 0.89
    }
    with ResultsStore(path) as store:
        add_run(store, "dense0", "dense", None, 0, 0.90)
        add_run(store, "pre0", "pre", "mixed", 0, 0.90, inference_s=0.001)
        add_run(store, "set0", "set", "uniform", 0, 0.89)
        for run_id, confusion in confusions.items():
            store.connection.execute(
                "UPDATE test_metrics SET confusion_json = ? WHERE run_id = ?",
                (json.dumps(confusion), run_id),
            )
    results = load_results(path)
    by_accuracy = recommendations(results).iloc[0]
    assert by_accuracy["fastest within 1 point of dense"] == (
        "none shown at 95%; by the mean: Pre-Training, mixed: accuracy 0.9000, 1 ms/image; "
        "minus dense +0.000 (one seed)"
    )
    balanced = recommendations(replace(results, metric=METRICS["balanced_accuracy"])).iloc[0]
    assert balanced["dense balanced accuracy"] == "0.9000 (1)"
    assert balanced["fastest within 1 point of dense"] == (
        "none shown at 95%; by the mean: SET, uniform: balanced accuracy 0.8900, 2 ms/image; "
        "minus dense -0.010 (one seed)"
    )
    result = runner.invoke(
        app,
        ["report", "--db", str(path), "--out", str(tmp_path / "r"), "--metric", "balanced"],
    )
    assert result.exit_code == 2 and "--metric: unknown metric 'balanced'" in result.stderr
    out = tmp_path / "by-balanced"
    arguments = ["--db", str(path), "--out", str(out), "--metric", "balanced_accuracy"]
    result = runner.invoke(app, ["report", *arguments, "--no-svg"])
    assert result.exit_code == 0, result.stderr
    page = (out / "index.html").read_text()
    # the figures' captions name the metric they compare by
    assert "Balanced accuracy against inference time per image" in page
    assert "Test accuracy against" not in page


def test_recommendations_rank_by_multiply_adds_when_asked(tmp_path):
    """Pre-Training was timed faster (1 ms against SET's 2 ms, say on a quieter machine)
    but computes more: 40 million multiply-adds per image against SET's 10. By latency
    the recommendation names Pre-Training; `--rank-by macs` names SET, its multiply-adds
    and its time."""
    path = tmp_path / "results.db"
    with ResultsStore(path) as store:
        for seed in (0, 1):
            add_run(store, f"dense{seed}", "dense", None, seed, 0.90, inference_s=0.004)
            add_run(store, f"pre{seed}", "pre", "mixed", seed, 0.90, inference_s=0.001)
            add_run(store, f"set{seed}", "set", "uniform", seed, 0.90, inference_s=0.002)
        for prefix, macs in (("dense", 80e6), ("pre", 40e6), ("set", 10e6)):
            store.connection.execute(
                "UPDATE test_metrics SET macs_effective = ? WHERE run_id LIKE ?",
                (macs, f"{prefix}%"),
            )
    for rank_by, column, named in (
        (
            "latency",
            "fastest within 1 point of dense",
            "Pre-Training, mixed: accuracy 0.9000, 1 ms",
        ),
        (
            "macs",
            "fewest multiply-adds within 1 point of dense",
            "SET, uniform: accuracy 0.9000, 10 MMACs/image, 2 ms/image",
        ),
    ):
        out = tmp_path / rank_by
        result = runner.invoke(
            app, ["report", "--db", str(path), "--out", str(out), "--no-svg", "--rank-by", rank_by]
        )
        assert result.exit_code == 0, result.stderr
        advice = pd.read_csv(out / "recommendations.csv").iloc[0]
        assert advice[column].startswith(named), advice[column]
    assert advice["dense MMACs/image"] == 80
    assert "most accurate within budget" not in advice  # no budget given, none hinted at
    assert "Most accurate within the latency budget" not in (out / "index.html").read_text()
    # ranked by multiply-adds, no figure reads the times as a comparison between runs
    figures = {path.name for path in (out / "figures").iterdir()}
    assert "tradeoff_mmacs.png" in figures and "tradeoff_inference_ms.png" not in figures
    assert "tradeoff_inference_ms.png" in {
        p.name for p in (tmp_path / "latency" / "figures").iterdir()
    }
    refused = runner.invoke(app, ["report", "--db", str(path), "--rank-by", "flops"])
    assert refused.exit_code == 2 and "--rank-by: expected latency or macs" in refused.stderr


def test_an_interval_by_hand():
    from sparsebench.report.spread import spread_of

    spread = spread_of(pd.Series([0.80, 0.85, 0.90, None]))
    # mean 0.85, sd 0.05; t(0.975, 2 df) = 4.30265, half-width 4.30265 x 0.05 / sqrt(3)
    assert (spread.mean, spread.n, spread.sd) == pytest.approx((0.85, 3, 0.05))
    assert (spread.low, spread.high) == pytest.approx((0.725793, 0.974207), abs=1e-6)
    assert spread.cell() == "0.850 ± 0.050 (3)" and spread.interval() == "[0.726, 0.974]"
    assert spread_of(pd.Series([0.7])).interval() == "one seed"
    assert spread_of(pd.Series([None], dtype=float)) is None


def test_a_difference_seed_by_seed_is_not_the_difference_of_spreads():
    from sparsebench.report.spread import paired_difference, spread_of, verdicts

    # each seed of A is three points above the same seed of dense (give or take a
    # tenth), though the seeds spread ten points: paired, A is better; seed 3 of A has
    # no dense partner
    dense = pd.Series({0: 0.89, 1: 0.79, 2: 0.84})
    better = pd.Series({0: 0.921, 1: 0.819, 2: 0.870, 3: 0.20})
    difference = paired_difference(better, dense)
    assert difference.n == 3 and difference.mean == pytest.approx(0.03)
    assert verdicts([difference]) == ["better"]
    assert verdicts([paired_difference(dense, better)]) == ["worse"]
    # the unpaired intervals overlap: they could not tell A from dense
    assert spread_of(better[:3]).low < spread_of(dense).high
    noisy = pd.Series({0: 0.92, 1: 0.77, 2: 0.84})  # +0.03, -0.02, 0.00
    assert verdicts([paired_difference(noisy, dense)]) == ["not resolved"]
    assert verdicts([paired_difference(pd.Series({0: 0.9}), dense)]) == ["one seed"]


def test_within_one_point_of_dense_is_judged_on_the_interval(tmp_path):
    """Over three seeds, SET is 0.5 point below dense each time (interval well within
    one point); Pre-Training is faster and 0.3 point below on average, but its seeds
    scatter by two points: it is named only as the candidate when nothing else is. The
    comparison table finds SET equivalent within a point and Pre-Training not resolved."""
    from sparsebench.report.compare import against_dense
    from sparsebench.report.results import load_results
    from sparsebench.report.tradeoff import recommendations

    path = tmp_path / "results.db"
    dense = (0.90, 0.85, 0.88)
    with ResultsStore(path) as store:
        for seed, value in enumerate(dense):
            add_run(store, f"dense{seed}", "dense", None, seed, value)
            add_run(store, f"set{seed}", "set", "mixed", seed, value - 0.005 + 0.001 * seed)
            noise = (-0.03, 0.02, 0.001)[seed]
            add_run(store, f"pre{seed}", "pre", "mixed", seed, value + noise, inference_s=0.001)
    results = load_results(path)
    advice = recommendations(results).iloc[0]
    assert advice["dense accuracy"] == "0.8767 ± 0.0252 (3)"
    # SET: differences -0.005, -0.004, -0.003: mean -0.004, sd 0.001
    assert advice["fastest within 1 point of dense"] == (
        "SET, mixed: accuracy 0.8727, 2 ms/image; minus dense -0.004 [-0.006, -0.002] (3 seeds)"
    )
    table = against_dense(results).set_index("method")
    assert table.loc["SET", "against dense"] == "equivalent within 1 point(s)"
    assert table.loc["Pre-Training", "against dense"] == "not resolved: more seeds needed"
    assert table.loc["SET", "per seed"] == "s0 0.895, s1 0.846, s2 0.877"
    assert table.loc["SET", "test accuracy"] == "0.873 ± 0.025 (3)"
    # one seed fewer for dense: SET's comparison takes the two seeds both ran
    with ResultsStore(path) as store:
        store.connection.execute("UPDATE runs SET status = 'failed' WHERE run_id = 'dense2'")
    table = against_dense(load_results(path)).set_index("method")
    assert table.loc["SET", "minus dense (95% interval, shared seeds)"].endswith("(2 seeds)")


def test_a_sparsity_axis_draws_one_curve_per_method_through_the_mean_over_seeds(tmp_path):
    from sparsebench.report.curves import sparsity_figure
    from sparsebench.report.results import load_results

    path = tmp_path / "results.db"
    with ResultsStore(path) as store:
        add_run(store, "d0", "dense", None, 0, 0.90)
        add_run(store, "d1", "dense", None, 1, 0.80)
        for conv, accuracies in ((0.3, (0.85, 0.75)), (0.9, (0.5, 0.3))):
            for seed, accuracy in enumerate(accuracies):
                add_run(store, f"p{conv}{seed}", "pre", None, seed, accuracy, conv=conv)
    figure = sparsity_figure(load_results(path), "conv_target")
    (axis,) = [a for a in figure.axes if a.get_title()]
    curves = [line for line in axis.lines if len(line.get_xdata()) > 1 and line.get_marker() == "o"]
    assert len(curves) == 1  # Pre-Training; dense is the band
    assert list(curves[0].get_xdata()) == [0.3, 0.9]
    assert list(curves[0].get_ydata()) == pytest.approx([0.80, 0.40])  # means over 2 seeds
    dense = [line for line in axis.lines if line.get_marker() != "o"]
    assert dense[0].get_ydata()[0] == pytest.approx(0.85)
    report = build_report(path, tmp_path / "report")
    page = report.index.read_text()
    for axis_name in ("conv_target", "macs_share", "inference_ms"):
        assert f"figures/sparsity_{axis_name}.png" in page
    # the grid's points are on the curves, not each a section of seven figures
    assert {f.scenario for f in report.figures} == {"tradeoff", "sparsity", "confusion"}


def test_a_curve_is_cut_where_its_seed_count_changes(tmp_path):
    from sparsebench.report.curves import sparsity_figure
    from sparsebench.report.results import load_results

    path = tmp_path / "results.db"
    with ResultsStore(path) as store:
        add_run(store, "d0", "dense", None, 0, 0.90)
        # three seeds at 0.3 and 0.5, one at 0.7, three again at 0.9
        for conv, accuracies in (
            (0.3, (0.85, 0.80, 0.75)),
            (0.5, (0.70, 0.70, 0.70)),
            (0.7, (0.95,)),
            (0.9, (0.5, 0.4, 0.3)),
        ):
            for seed, accuracy in enumerate(accuracies):
                add_run(store, f"p{conv}{seed}", "pre", None, seed, accuracy, conv=conv)
    figure = sparsity_figure(load_results(path), "conv_target")
    (axis,) = [a for a in figure.axes if a.get_title()]
    pieces = [list(line.get_xdata()) for line in axis.lines if line.get_marker() == "o"]
    assert pieces == [[0.3, 0.5], [0.7], [0.9]]


def test_a_panel_of_a_model_and_data_set_with_no_runs_says_so(tmp_path):
    from sparsebench.report.curves import sparsity_figure
    from sparsebench.report.results import load_results
    from sparsebench.report.tradeoff import tradeoff_figure

    path = tmp_path / "results.db"
    with ResultsStore(path) as store:
        for model, data in (("resnet18", "blood.npz"), ("vgg16", "neu")):
            add_run(store, f"d-{model}", "dense", None, 0, 0.9, data_path=data, model=model)
            add_run(store, f"p-{model}", "pre", "mixed", 0, 0.8, data_path=data, model=model)
    results = load_results(path)
    for figure in (tradeoff_figure(results, "train_s"), sparsity_figure(results, "conv_target")):
        said = {
            axis.get_title(): [text.get_text() for text in axis.texts]
            for axis in figure.axes
            if axis.get_title()
        }
        assert said["VGG16 on blood"] == ["no finished runs"]
        assert said["ResNet18 on neu"] == ["no finished runs"]
        assert "no finished runs" not in said["ResNet18 on blood"]
        assert "no finished runs" not in said["VGG16 on neu"]


def test_a_figure_of_one_seed_says_so(db, tmp_path):
    from sparsebench.report.figures import bar_figure, curve_figure
    from sparsebench.report.results import load_results

    metric = next(bar for bar in BARS if bar.column == "test_accuracy")
    two_seeds, _ = bar_figure(load_results(db), "mixed", metric)
    assert "one seed" not in two_seeds._suptitle.get_text()  # dense and pre have two
    path = tmp_path / "one.db"
    with ResultsStore(path) as store:
        add_run(store, "d", "dense", None, 0, 0.9)
        add_run(store, "p", "pre", "mixed", 0, 0.8)
    results = load_results(path)
    for figure, _ in (
        bar_figure(results, "mixed", metric),
        curve_figure(results, "mixed", CURVES[0]),
    ):
        assert figure._suptitle.get_text().endswith("; one seed: no spread shown")


def test_confusion_matrices_are_summed_over_seeds_and_shown_as_shares_of_each_class(tmp_path):
    from sparsebench.report.confusions import confusion_figure
    from sparsebench.report.results import load_results

    path = tmp_path / "results.db"
    with ResultsStore(path) as store:
        add_run(store, "dense0", "dense", None, 0, 0.8)
        add_run(store, "dense1", "dense", None, 1, 0.7)
        add_run(store, "pre0", "pre", "uniform", 0, 0.7)  # not Table 1's scenario
        add_run(store, "set0", "set", "mixed", 0, 0.7)
        for run_id, confusion in (("dense0", [[7, 0], [2, 1]]), ("dense1", [[6, 1], [1, 2]])):
            store.connection.execute(
                "UPDATE test_metrics SET confusion_json = ? WHERE run_id = ?",
                (json.dumps(confusion), run_id),
            )
        store.connection.execute(
            "UPDATE runs SET data_json = ?", (json.dumps({"classes": ["good", "crack"]}),)
        )
    figure = confusion_figure(load_results(path), "blood")
    drawn = figure.axes[0]
    # summed: [[13, 1], [3, 3]]; rows divided by 14 and 6 images
    shares = drawn.images[0].get_array()
    assert shares.ravel().tolist() == pytest.approx([13 / 14, 1 / 14, 0.5, 0.5])
    assert [t.get_text() for t in drawn.get_yticklabels()] == ["good", "crack"]
    assert drawn.get_title() == "Dense"
    # Pre-Training ran only in uniform, not Table 1's scenario: not drawn
    assert [axis.get_title() for axis in figure.axes] == ["Dense", "SET"]


def test_data_with_no_mixed_run_shows_the_configuration_most_methods_ran(tmp_path):
    """A grid of sparsity lists alone: the confusion matrices are those of the
    configuration that most methods ran (conv 0.9 here: pre and set; conv 0.3 only pre),
    of those the nearest to the mixed scenario (conv 0.7 before 0.9), its title says
    which and wraps to the figure, and Table 1 says it holds dense alone."""
    from sparsebench.report.confusions import confusion_figure
    from sparsebench.report.results import load_results

    path = tmp_path / "results.db"
    with ResultsStore(path) as store:
        add_run(store, "dense0", "dense", None, 0, 0.8)
        add_run(store, "pre3", "pre", "conv0.3-linear0.8", 0, 0.7, conv=0.3)
        add_run(store, "pre9", "pre", "conv0.9-linear0.8", 0, 0.6, conv=0.9)
        add_run(store, "set9", "set", "conv0.9-linear0.8", 0, 0.5, conv=0.9)
    figure = confusion_figure(load_results(path), "blood")
    assert [axis.get_title() for axis in figure.axes] == ["Dense", "Pre-Training", "SET"]
    title = figure._suptitle.get_text()
    assert "dense and scenario conv0.9-linear0.8" in title.replace("\n", " ")
    with ResultsStore(path) as store:
        add_run(store, "pre7", "pre", "conv0.7-linear0.8", 0, 0.7, conv=0.7)
        add_run(store, "set7", "set", "conv0.7-linear0.8", 0, 0.5, conv=0.7)
    title = confusion_figure(load_results(path), "blood")._suptitle.get_text()
    assert "dense and scenario conv0.7-linear0.8" in title.replace("\n", " ")
    characters_per_inch = max(len(line) for line in title.splitlines()) / figure.get_figwidth()
    assert characters_per_inch <= 13
    build_report(path, tmp_path / "report", svg=False)
    page = (tmp_path / "report" / "index.html").read_text()
    assert "No sparse run here is in the mixed scenario" in page


def test_auroc_compares_two_class_data_and_says_so_for_the_rest(tmp_path):
    path = tmp_path / "results.db"
    with ResultsStore(path) as store:
        for data in ("tiles.npz", "steel.npz"):
            add_run(store, f"dense-{data}", "dense", None, 0, 0.9, data_path=data)
            add_run(store, f"pre-{data}", "pre", "mixed", 0, 0.8, data_path=data)
        # only the tiles are two-class: AUROC exists for their runs alone
        store.connection.execute("UPDATE test_metrics SET auroc = NULL, positive_class = NULL")
        for run_id, auroc in (("dense-tiles.npz", 0.97), ("pre-tiles.npz", 0.91)):
            store.connection.execute(
                "UPDATE test_metrics SET auroc = ?, positive_class = 'defect' WHERE run_id = ?",
                (auroc, run_id),
            )
    build_report(path, tmp_path / "report", svg=False, metric="auroc")
    table = pd.read_csv(tmp_path / "report" / "table1.csv").set_index("data set")
    assert table.loc["tiles", "Dense best"] == "0.97"
    assert table.loc["tiles", "Pre-Training (mixed) mean ± sd (n)"] == "0.9100 (1)"
    assert table.loc["steel", "Dense best"] == "no AUROC"  # six classes: not "not run"
    advice = pd.read_csv(tmp_path / "report" / "recommendations.csv")
    assert list(advice["data set"]) == ["tiles"]
    assert advice.loc[0, "dense AUROC"] == "0.9700 (1)"


def test_trade_off_labels_that_would_print_over_each_other_are_left_to_the_legend(tmp_path):
    """Three configurations at one point: one label is kept (the Pareto front's), the
    others would print over it; a point apart keeps its own."""
    from sparsebench.report.results import load_results
    from sparsebench.report.tradeoff import tradeoff_figure

    path = tmp_path / "results.db"
    with ResultsStore(path) as store:
        add_run(store, "dense0", "dense", None, 0, 0.90, inference_s=0.010)
        for name in ("pre", "in", "set"):
            add_run(store, f"{name}0", name, "mixed", 0, 0.80, inference_s=0.005)
        add_run(store, "set1", "set", "uniform", 0, 0.60, inference_s=0.001)
    figure = tradeoff_figure(load_results(path), "inference_ms")
    texts = [t.get_text() for axis in figure.axes for t in axis.texts if t.get_gid()]
    assert sorted(texts) == ["dense", "mixed", "uniform"]


def _produced(release, processor="Intel Xeon", capability="AVX512"):
    return {
        "release": release,
        "numerics": 2,
        "cpu_capability": capability,
        "processor": processor,
    }


def test_a_configuration_pooling_two_releases_or_machines_is_named(tmp_path):
    path = tmp_path / "results.db"
    with ResultsStore(path) as store:
        one = _produced("0.1.0+aaa")
        add_run(store, "dense0", "dense", None, 0, 0.90, provenance=one)
        add_run(store, "dense1", "dense", None, 1, 0.80, provenance=one)
        add_run(store, "pre0", "pre", "mixed", 0, 0.70, provenance=one)
        add_run(store, "pre1", "pre", "mixed", 1, 0.60, provenance=_produced("0.1.0+bbb"))
        add_run(store, "set0", "set", "mixed", 0, 0.50, provenance=one)
        add_run(
            store,
            "set1",
            "set",
            "mixed",
            1,
            0.50,
            provenance=_produced("0.1.0+aaa", "Ampere Altra", "DEFAULT"),
        )
    result = runner.invoke(app, ["report", "--db", str(path), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert (
        "caution: 2 configuration(s) pool runs of different releases or machines" in result.output
    )
    mixed = pd.read_csv(tmp_path / "r" / "mixed_producers.csv")
    assert mixed.set_index("method").mixes.to_dict() == {
        "Pre-Training": "releases 0.1.0+aaa (1 runs), 0.1.0+bbb (1 runs)",
        "SET": "machines Intel Xeon (AVX512) (1 runs), Ampere Altra (DEFAULT) (1 runs)",
    }
    page = (tmp_path / "r" / "index.html").read_text()
    assert "2 configuration(s) pool runs of different numerics, releases or machines" in page
    assert "Produced by numerics 2; releases 0.1.0+aaa (5 runs), 0.1.0+bbb (1 runs);" in page


def test_one_producer_is_said_once_and_nothing_is_flagged(tmp_path):
    path = tmp_path / "results.db"
    with ResultsStore(path) as store:
        for seed in (0, 1):
            add_run(store, f"dense{seed}", "dense", None, seed, 0.9, provenance=_produced("0.2.0"))
            add_run(store, f"pre{seed}", "pre", "mixed", seed, 0.8, provenance=_produced("0.2.0"))
    report = build_report(path, tmp_path / "r")
    assert not report.cautions and not (tmp_path / "r" / "mixed_producers.csv").exists()
    page = report.index.read_text()
    assert "Produced by numerics 2; release 0.2.0; machine Intel Xeon (AVX512)." in page
