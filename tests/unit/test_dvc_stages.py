"""dvc.yaml names every code file its stages run, so DVC re-runs a stage when its code changes."""

from __future__ import annotations

import grimp
import yaml

from app.config import PROJECT_ROOT

OURS = ("app", "training")  # the packages a training stage can reach (architecture: training imports only app)


def _closure(module: str) -> set[str]:
    graph = grimp.build_graph(*OURS, include_external_packages=False)
    modules = {module, *graph.find_upstream_modules(module)}
    files = set()
    for name in modules:
        path = PROJECT_ROOT.joinpath(*name.split("."))
        files.add(f"{path.relative_to(PROJECT_ROOT)}.py" if path.with_suffix(".py").exists()
                  else f"{path.relative_to(PROJECT_ROOT)}/__init__.py")
    return {f for f in files if not f.endswith("__init__.py") and not f.startswith("app/cli/")}


def test_every_module_the_stages_import_is_a_dependency_of_a_stage() -> None:
    stages = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]
    listed = {dep for stage in stages.values() for dep in stage.get("deps", []) if not dep.startswith("${")}
    needed = _closure("training.stages")
    # the stages never migrate the store: that is the stack's job before they run
    needed -= {"app/migrate.py"}
    assert needed <= listed, f"dvc.yaml misses {sorted(needed - listed)}"
    assert all((PROJECT_ROOT / dep).exists() for dep in listed), "dvc.yaml names a file that does not exist"


def test_the_stage_outputs_follow_the_artifact_layout() -> None:
    # dvc.yaml cannot import app.model_artifact: its output paths are pinned to the layout's names here
    from app import model_artifact

    stages = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]

    def paths(stage: str, kind: str) -> set[str]:
        return {next(iter(o)) if isinstance(o, dict) else o for o in stages[stage].get(kind, [])}

    assert f"${{dir}}/{model_artifact.PREPROCESSOR_FILE}" in paths("features", "outs")
    assert paths("train", "outs") == {f"${{dir}}/{model_artifact.MODEL_DIR}"}
    evaluated = paths("evaluate", "outs") | paths("evaluate", "metrics") | paths("evaluate", "plots")
    assert evaluated and all(p.startswith(f"${{dir}}/{model_artifact.REPORT_DIR}/") for p in evaluated)
