"""The report page reads in a browser 1280 pixels wide: no table outside a scrolling
box is wider than the text column (the page's 1200 pixels), at its narrowest layout.

The narrowest layout of a table puts in each column its longest piece of text that a
browser cannot break (split at spaces and after hyphens, as Chromium does), measured
with the advance widths of DejaVu Sans (the font Chromium draws the page in on Debian;
matplotlib ships it) at the page's table size, plus each cell's padding and border.
The published page was also looked at in headless Chromium (see CHANGELOG)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from matplotlib.font_manager import FontProperties, findfont
from matplotlib.ft2font import FT2Font, LoadFlags
from test_report import add_run

from sparsebench.report import build_report
from sparsebench.store import ResultsStore

TEXT_WIDTH = 1200  # body { max-width } of the page
TABLE_FONT_PX = 16 * 0.85  # table { font-size: 0.85em }
CELL_EXTRA_PX = 2 * 6 + 1  # padding 3px 6px, a 1px border
DATA = ("NEU steel defects", "magnetic tiles", "BloodMNIST-style (own split)")
METHODS = ("pre", "in", "post", "set", "static", "snip", "rigl", "gmp")
SCENARIOS = (("uniform", 0.8), ("mixed", 0.5), ("linear-only", 0.0))


class PageTables(HTMLParser):
    """Each table's cells (header row first, whether bold) and whether it scrolls."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[dict] = []
        self.divs: list[bool] = []
        self.cell: list[str] | None = None
        self.bold = False

    def handle_starttag(self, tag, attrs):
        if tag == "div":
            self.divs.append(dict(attrs).get("class") == "scroll")
        elif tag == "table":
            self.tables.append({"scrolls": any(self.divs), "rows": []})
        elif tag == "tr":
            self.tables[-1]["rows"].append([])
        elif tag in ("td", "th"):
            self.cell, self.bold = [], tag == "th"

    def handle_endtag(self, tag):
        if tag == "div":
            self.divs.pop()
        elif tag in ("td", "th") and self.cell is not None:
            self.tables[-1]["rows"][-1].append(("".join(self.cell).strip(), self.bold))
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def text_width(text: str, bold: bool) -> float:
    font = FT2Font(findfont(FontProperties(family="DejaVu Sans", weight="bold" if bold else None)))
    font.set_size(TABLE_FONT_PX, 72)  # points at 72 dpi are pixels
    font.set_text(text, flags=LoadFlags.NO_HINTING)  # a browser's advances are unhinted
    return font.get_width_height()[0] / 64


def narrowest(rows: list[list[tuple[str, bool]]]) -> float:
    columns: dict[int, float] = {}
    for row in rows:
        for index, (text, bold) in enumerate(row):
            pieces = [p for p in re.split(r" |(?<=-)", text) if p]  # nbsp does not break
            widest = max((text_width(p, bold) for p in pieces), default=0.0)
            columns[index] = max(columns.get(index, 0.0), widest + CELL_EXTRA_PX)
    return sum(columns.values()) + 1


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> str:
    """A report of nine methods in three scenarios, three seeds, the shared data's
    three names and both models: the published report's shape."""
    folder = tmp_path_factory.mktemp("page")
    path = folder / "results.db"
    with ResultsStore(path) as store:
        for model in ("vgg16", "resnet18"):
            for d, data in enumerate(DATA):
                for seed in range(3):
                    add_run(
                        store, f"{model}-dense{d}{seed}", "dense", None, seed, 0.9, data_path=data
                    )
                    for m, method in enumerate(METHODS):
                        for scenario, conv in SCENARIOS:
                            accuracy = 0.8 + 0.01 * m + 0.001 * seed
                            run_id = f"{model}-{method}{d}{seed}{scenario}"
                            add_run(
                                store,
                                run_id,
                                method,
                                scenario,
                                seed,
                                accuracy,
                                data_path=data,
                                conv=conv,
                            )
        store.connection.execute(
            "UPDATE runs SET model = 'vgg16', config_json = json_set(config_json, '$.model', "
            "'vgg16') WHERE run_id LIKE 'vgg16-%'"
        )
    return build_report(path, folder / "report", svg=False).index.read_text()


@pytest.mark.parametrize(
    ("text", "bold", "chromium_px"),
    [
        ("0.841 ± 0.010", False, 97.875),
        ("BloodMNIST-style", False, 117.469),
        ("Pre-Training", True, 91.594),
    ],
)
def test_text_is_measured_as_chromium_lays_it_out(text, bold, chromium_px):
    # widths of these spans at 13.6 px in headless Chromium 1xx (Debian), system-ui
    # resolving to DejaVu Sans: getBoundingClientRect().width
    assert text_width(text, bold) == pytest.approx(chromium_px, abs=0.5)


def test_no_table_outside_a_scrolling_box_is_wider_than_the_text(page):
    parser = PageTables()
    parser.feed(page)
    in_text = [table for table in parser.tables if not table["scrolls"]]
    assert len(in_text) >= 4  # recommendations, comparisons, Table 1, the literature
    for table in in_text:
        header = [text for text, _ in table["rows"][0]]
        assert narrowest(table["rows"]) <= TEXT_WIDTH, header
    assert any(table["scrolls"] for table in parser.tables)  # every run: it scrolls


def test_table_one_wraps_a_cell_before_its_seed_count_never_inside_the_spread(page):
    parser = PageTables()
    parser.feed(page)
    table_one = next(t for t in parser.tables if [c for c, _ in t["rows"][0]][2] == "Dense")
    cell = table_one["rows"][1][3][0]
    assert re.fullmatch(r"0\.\d{3}\u00a0±\u00a00\.\d{3} \(3\)", cell), cell
