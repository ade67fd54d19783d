"""Each stage's dependencies follow from its code, its data and its params (dvc.yaml keeps them by
hand; these tests derive them and name the line to add or remove).

- code: a stage runs its script and every project module the script imports, transitively
  (read with `ast`, imports inside functions included): each must be a dep, and no other module;
- data: every path of a stage's command under data/ or reports/ is one of its deps or outs, each
  file its script opens there by name (`Path(args.x) / "name"`, `read_split(args.x, "split")`)
  too, and each dep there is what another stage writes;
- params: a param that changes what one model learns reruns that model's stages alone.

Stages are read through DVC itself (foreach expanded against params.yaml); a stage's script is the
`stages/*.py` of its command.
"""

import ast
import shlex
import shutil
from collections import deque
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from kdcascade.compose import compose

PACKAGE = "kdcascade"
TRACKED = ("data/", "reports/")
# kept out of DVC on purpose: DVC would delete a killed stage's checkpoints before rerunning it
UNTRACKED = ("data/checkpoints/",)


# --- the stages, as DVC resolves them --------------------------------------------------------

def copy_pipeline(dest: Path, root: Path = ROOT, params: Path | None = None) -> Path:
    """dvc.yaml, params.yaml and .dvc/config in `dest` (a DVC project without git), so that DVC
    resolves the stages without touching the checkout."""
    (dest / ".dvc").mkdir(parents=True, exist_ok=True)
    shutil.copy(root / ".dvc" / "config", dest / ".dvc" / "config")
    shutil.copy(root / "dvc.yaml", dest / "dvc.yaml")
    shutil.copy(params or root / "params.yaml", dest / "params.yaml")
    return dest


def resolved_stages(root: Path) -> dict[str, dict]:
    """{stage name: {group, cmd, deps, outs, params}} of root/dvc.yaml; `group` is the name of its
    definition in dvc.yaml (`finetune` for finetune@L3)."""
    from dvc.dependency import ParamsDependency
    from dvc.repo import Repo
    from dvc.stage import PipelineStage

    stages = {}
    with Repo(str(root), config={"core": {"no_scm": True}}) as repo:
        for s in repo.index.stages:
            if not isinstance(s, PipelineStage):
                continue
            params = [p for d in s.deps if isinstance(d, ParamsDependency) for p in d.params]
            stages[s.name] = {
                "group": s.name.split("@")[0], "cmd": s.cmd, "params": params,
                "deps": [d.def_path for d in s.deps if not isinstance(d, ParamsDependency)],
                "outs": [o.def_path for o in s.outs]}
    return stages


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    return resolved_stages(copy_pipeline(tmp_path_factory.mktemp("pipeline")))


def script_of(stage: dict) -> str:
    """The stage script its command runs (`python stages/x.py ...`)."""
    scripts = [w for w in shlex.split(stage["cmd"])
               if w.startswith("stages/") and w.endswith(".py")]
    assert len(scripts) == 1, f"{stage['cmd']}: expected one stages/*.py script"
    return scripts[0]


# --- code --------------------------------------------------------------------------------------

def has_code(path: Path) -> bool:
    """Whether a module does anything when imported (a docstring alone does not)."""
    body = ast.parse(path.read_text(encoding="utf-8")).body
    return any(not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)) for n in body)


def imported_modules(path: Path, package: Path) -> set[Path]:
    """The project modules one file imports, anywhere in it (imports inside functions too):
    `from kdcascade import a`, `from kdcascade.a import x`, `import kdcascade.a`, and inside the
    package `from . import a`, `from .a import x`."""
    found = set()

    def module(dotted: str | None, names=()):
        if dotted:
            found.add(package / f"{dotted.split('.')[0]}.py")
        else:  # `from kdcascade import a, b`: modules, or names of __init__
            found.update(p for p in (package / f"{a.name}.py" for a in names) if p.is_file())
        init = package / "__init__.py"
        if init.is_file() and has_code(init):
            found.add(init)

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    module(alias.name.partition(".")[2] or None, ())
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and (node.module or "").split(".")[0] == PACKAGE:
                module(node.module.partition(".")[2] or None, node.names)
            elif node.level == 1 and path.parent == package:
                module(node.module, node.names)
    found.discard(path)
    return found


def code_of(script: Path, package: Path) -> dict[Path, list[Path]]:
    """Every file a script runs: {file: the import chain from the script to it}."""
    chains, todo = {script: [script]}, deque([script])
    while todo:
        current = todo.popleft()
        for module in sorted(imported_modules(current, package)):
            if module not in chains:
                chains[module] = chains[current] + [module]
                todo.append(module)
    return chains


def code_problems(stages: dict, root: Path = ROOT) -> list[str]:
    """What each stage misses or lists in vain among its code deps, in words that say which line
    of dvc.yaml to add or remove (one message per definition and file)."""
    package = root / "stages" / PACKAGE
    problems = {}
    for name, stage in stages.items():
        script = root / script_of(stage)
        runs = {str(p.relative_to(root)): chain for p, chain in code_of(script, package).items()}
        listed = {d for d in stage["deps"] if d.startswith("stages/") and d.endswith(".py")}
        for path in sorted(set(runs) - listed):
            how = " -> ".join([str(runs[path][0].relative_to(root))]
                              + [f"{PACKAGE}.{p.stem}" for p in runs[path][1:]])
            problems[(stage["group"], path)] = (
                f"stage {name} runs {path} ({how}) but does not depend on it: add the line "
                f"`- {path}` to the deps of `{stage['group']}` in dvc.yaml")
        for path in sorted(listed - set(runs)):
            problems[(stage["group"], path)] = (
                f"stage {name} depends on {path} but never imports it (a change there would rerun "
                f"it for nothing): remove the line `- {path}` from the deps of "
                f"`{stage['group']}` in dvc.yaml")
    return list(problems.values())


def test_every_stage_depends_on_exactly_the_code_it_runs(stages):
    assert code_problems(stages) == []


def test_an_import_without_its_dep_is_named_with_the_line_to_add(stages, tmp_path):
    """A copy of the code where classify.py imports a new module: every stage that runs classify
    is named, with the line to add (and nothing else changes)."""
    shutil.copytree(ROOT / "stages", tmp_path / "stages",
                    ignore=shutil.ignore_patterns("__pycache__"))
    before = code_problems(stages, tmp_path)
    assert before == code_problems(stages)
    package = tmp_path / "stages" / PACKAGE
    (package / "pooling_rules.py").write_text('"""A module added without its dep."""\n')
    classify = package / "classify.py"
    classify.write_text(classify.read_text() + "\nfrom . import pooling_rules  # noqa\n")
    problems = [p for p in code_problems(stages, tmp_path) if p not in before]
    runs_classify = {s["group"] for s in stages.values()
                     if "stages/kdcascade/classify.py" in s["deps"]}
    assert {"evaluate", "finetune"} <= runs_classify
    assert len(problems) == len(runs_classify)
    for problem in problems:
        assert "runs stages/kdcascade/pooling_rules.py (" in problem
        assert "kdcascade.classify -> kdcascade.pooling_rules)" in problem
        assert "add the line `- stages/kdcascade/pooling_rules.py` to the deps of `" in problem
    assert any("to the deps of `evaluate` in dvc.yaml" in p for p in problems)


def test_a_dep_on_code_the_stage_never_runs_is_named(stages):
    report = dict(stages["report"], deps=stages["report"]["deps"] + ["stages/kdcascade/losses.py"])
    assert code_problems({"report": report}) == [
        "stage report depends on stages/kdcascade/losses.py but never imports it (a change "
        "there would rerun it for nothing): remove the line `- stages/kdcascade/losses.py` from "
        "the deps of `report` in dvc.yaml"]


# --- data --------------------------------------------------------------------------------------

# reads a script's code names that a stage never makes: the plain baseline learns the labels
# alone, so finetune.py never reads the transfer pairs for it (transfer_on is false)
NEVER_READ = {("finetune-plain", "data/prepared/transfer")}
SPLIT_READERS = ("read_split", "split_path")  # kdcascade.data: (folder, split name)


def covers(a: str, b: str) -> bool:
    """Whether one path is the other or a folder holding it."""
    return a == b or b.startswith(a.rstrip("/") + "/") or a.startswith(b.rstrip("/") + "/")


def tracked(path: str) -> bool:
    return path.startswith(TRACKED) and not path.startswith(UNTRACKED)


def command_paths(cmd: str) -> dict[str, str]:
    """{flag: value} of a command's options whose value is a path DVC tracks."""
    words = shlex.split(cmd)
    return {flag: value for flag, value in zip(words, words[1:])
            if flag.startswith("--") and tracked(value)}


def named_reads(script: Path) -> list[tuple[str, str, bool, int]]:
    """(flag, name, is_split, line) of what a script opens by name under a path argument:
    `Path(args.x) / "name"` and `read_split(args.x, "split")` (a split: its file's suffix is
    the data module's)."""
    def flag_of(node):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id == "args"):
            return "--" + node.attr.replace("_", "-")
        return None

    found = []
    for node in ast.walk(ast.parse(script.read_text(encoding="utf-8"))):
        if (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div)
                and isinstance(node.left, ast.Call) and getattr(node.left.func, "id", "") == "Path"
                and len(node.left.args) == 1 and flag_of(node.left.args[0])
                and isinstance(node.right, ast.Constant) and isinstance(node.right.value, str)):
            found.append((flag_of(node.left.args[0]), node.right.value, False, node.lineno))
        elif (isinstance(node, ast.Call) and len(node.args) >= 2 and flag_of(node.args[0])
              and getattr(node.func, "attr", getattr(node.func, "id", "")) in SPLIT_READERS
              and isinstance(node.args[1], ast.Constant)):
            found.append((flag_of(node.args[0]), node.args[1].value, True, node.lineno))
    return found


def split_file(folder: str, split: str) -> str:
    """The file of a prepared split, as kdcascade.data names it."""
    from kdcascade import data

    return str(data.split_path(folder, split))


def data_problems(stages: dict, root: Path = ROOT) -> list[str]:
    problems = {}
    for name, stage in stages.items():
        where = f"the deps or outs of `{stage['group']}` in dvc.yaml"
        mine = stage["deps"] + stage["outs"]
        flags = command_paths(stage["cmd"])
        for flag, path in flags.items():
            if not any(covers(p, path) for p in mine):
                problems[(stage["group"], path)] = (
                    f"stage {name} is given {flag} {path} but neither depends on it nor writes "
                    f"it: add the line `- {path}` (or the files it uses there) to {where}")
        script = script_of(stage)
        for flag, file, is_split, line in named_reads(root / script):
            if flag not in flags or (stage["group"], f"{flags[flag]}/{file}") in NEVER_READ:
                continue
            path = split_file(flags[flag], file) if is_split else f"{flags[flag]}/{file}"
            if not any(covers(p, path) for p in mine):
                problems[(stage["group"], path)] = (
                    f"stage {name} opens {path} ({script} line {line}) but neither depends on "
                    f"it nor writes it: add the line `- {path}` to {where}")
        others = [o for other, s in stages.items() if other != name for o in s["outs"]]
        for dep in stage["deps"]:
            if tracked(dep) and not any(covers(o, dep) for o in others):
                problems[(stage["group"], dep)] = (
                    f"stage {name} depends on {dep}, which no stage writes: fix the path in the "
                    f"deps of `{stage['group']}` in dvc.yaml, or list it in the outs of the stage "
                    "that writes it")
    return list(problems.values())


def test_every_stage_depends_on_the_data_it_reads_and_lists_what_it_writes(stages):
    assert data_problems(stages) == []


def test_a_file_read_without_its_dep_is_named(stages):
    """report without its dep on the prepared data's summary (which its script opens), and with
    a dep on a file no stage writes."""
    report = dict(stages["report"])
    report["deps"] = [d for d in report["deps"] if d != "data/prepared/summary.json"]
    assert data_problems({**stages, "report": report}) == [
        "stage report is given --data data/prepared but neither depends on it nor writes it: "
        "add the line `- data/prepared` (or the files it uses there) to the deps or outs of "
        "`report` in dvc.yaml",
        "stage report opens data/prepared/summary.json (stages/report.py line "
        f"{next(n[3] for n in named_reads(ROOT / 'stages/report.py') if n[1] == 'summary.json')})"
        " but neither depends on it nor writes it: add the line `- data/prepared/summary.json` "
        "to the deps or outs of `report` in dvc.yaml"]
    report["deps"] = stages["report"]["deps"] + ["data/prepare/summary.json"]
    assert data_problems({**stages, "report": report}) == [
        "stage report depends on data/prepare/summary.json, which no stage writes: fix the path "
        "in the deps of `report` in dvc.yaml, or list it in the outs of the stage that writes it"]
    evaluate = dict(stages["evaluate"], deps=[d for d in stages["evaluate"]["deps"]
                                              if not d.startswith("data/prepared/")])
    given, opened = data_problems({**stages, "evaluate": evaluate})
    assert given.startswith("stage evaluate is given --data data/prepared but")
    assert opened.startswith(f"stage evaluate opens {split_file('data/prepared', 'test')} "
                             "(stages/evaluate.py line ")


def test_imports_are_read_in_every_form(tmp_path):
    package = tmp_path / PACKAGE
    package.mkdir()
    (package / "__init__.py").write_text('"""Docstring only: runs nothing."""\n')
    for name in ("a", "b", "c", "d", "e"):
        (package / f"{name}.py").write_text("")
    (package / "a.py").write_text("from . import b\nfrom .c import thing\n")
    script = tmp_path / "script.py"
    script.write_text("import os\nfrom kdcascade import a\n\n\ndef run():\n"
                      "    import kdcascade.d\n    from kdcascade.e import x\n")
    chains = code_of(script, package)
    assert {p.name for p in chains} == {"script.py", "a.py", "b.py", "c.py", "d.py", "e.py"}
    assert [p.name for p in chains[package / "b.py"]] == ["script.py", "a.py", "b.py"]
    (package / "__init__.py").write_text("from .b import *\n")  # now importing runs it
    assert package / "__init__.py" in code_of(script, package)


# --- params ------------------------------------------------------------------------------------

def param_value(params: dict, path: str):
    node = params
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def rerun(before: dict, after: dict, params_before: dict, params_after: dict) -> list[str]:
    """The stages `dvc status` says changed once params.yaml goes from one to the other (before
    anything reruns): a command or a param a stage lists differs, or the stage is new or gone."""
    def changed(name):
        if name not in before or name not in after:
            return True
        a, b = before[name], after[name]
        return a["cmd"] != b["cmd"] or any(param_value(params_before, p) != param_value(
            params_after, p) for p in set(a["params"]) | set(b["params"]))
    return sorted(name for name in {*before, *after} if changed(name))


MODELS_LIST = ["evaluate", "evaluate-export", "export@student", "prune-lock"]


@pytest.mark.parametrize("override, expected", [
    # what one model learns: that model's stage alone (and the report, which prints every param)
    ("finetune.transfer.models=distilled", ["finetune@L3-trunc"]),
    ("finetune.intermediate.models=distilled", ["finetune@L3-trunc"]),
    ("cascade.logits_from=predecessor", ["finetune@L3", "finetune@L4"]),
    # what every model that learns the teacher's logits reads: not the teacher, not the plain one
    ("finetune.soft_labels.temperature=3.0",
     ["finetune@L3", "finetune@L3-trunc", "finetune@L4", "finetune@L5"]),
    ("finetune.lr=1e-4", ["finetune-plain@L3-plain", "finetune-teacher", "finetune@L3",
                          "finetune@L3-trunc", "finetune@L4", "finetune@L5"]),
    ("finetune.checkpoint_every=100", []),
    # no plain baseline: its stage is gone and the model lists change
    ("cascade.plain_baseline=false", ["finetune-plain@L3-plain", *MODELS_LIST]),
])
def test_a_param_reruns_the_stages_whose_output_it_changes(stages, tmp_path, override, expected):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    compose(tmp_path / "params.yaml", [override])
    after = resolved_stages(copy_pipeline(tmp_path / "after", params=tmp_path / "params.yaml"))
    changed = rerun(stages, after, params, yaml.safe_load((tmp_path / "params.yaml").read_text()))
    assert changed == sorted([*expected, "report"])


# keys of `finetune` no finetune stage lists, and why: per model, in the command
# (cascade.learns_from), or not changing any output
PER_MODEL = {"finetune.transfer.models", "finetune.intermediate.models"}
NO_OUTPUT_CHANGE = {"finetune.checkpoint_every"}


def test_every_finetune_param_reaches_the_stages_it_changes(stages):
    """A key added to `finetune` must be listed by the finetune stages (or said here why not)."""
    def leaves(node, prefix):
        for key, value in node.items():
            if isinstance(value, dict):
                yield from leaves(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}"

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    listed = {p for s in stages.values() if s["group"].startswith("finetune") for p in s["params"]}
    missing = [key for key in leaves(params["finetune"], "finetune.")
               if key not in PER_MODEL | NO_OUTPUT_CHANGE
               and not any(covers(p.replace(".", "/"), key.replace(".", "/")) for p in listed)]
    assert missing == [], (
        f"{', '.join(missing)}: no finetune stage depends on it; add it to the `finetune_training` "
        "list in dvc.yaml (every model) or to the params of the stages it changes")
    assert "finetune" not in listed  # the whole section would rerun every model for any key
