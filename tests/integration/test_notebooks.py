"""Analyst notebooks run top to bottom on the sample state after the pipeline (every code cell, in order)."""
import json
from pathlib import Path

import pytest

from cqube_spark.runner import run_job
from cqube_spark.sample.generator import generate

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def pipeline_lake(tmp_path_factory, spark):
    import os

    root = tmp_path_factory.mktemp("nb") / "data"
    old = os.environ.get("CQUBE_DATA_ROOT")
    os.environ["CQUBE_DATA_ROOT"] = str(root)
    generate(str(root / "emission"), schools=12, students_per_school=4, months=["2020-06", "2020-07"],
             sources="masters,student_attendance")
    assert run_job("pipeline", run_id="nb-pipeline") == 0
    yield root
    if old is None:
        os.environ.pop("CQUBE_DATA_ROOT", None)
    else:
        os.environ["CQUBE_DATA_ROOT"] = old


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ has no .ipynb"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom(notebook, pipeline_lake, capsys):
    nb = json.loads(notebook.read_text())
    namespace: dict = {"__name__": "__notebook__"}
    for i, cell in enumerate(c for c in nb["cells"] if c["cell_type"] == "code"):
        source = "".join(cell["source"])
        exec(compile(source, f"{notebook.name}[cell {i}]", "exec"), namespace)  # noqa: S102
    out = capsys.readouterr().out
    assert "lake:" in out and str(pipeline_lake) in out
