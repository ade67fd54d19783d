"""Export to ONNX: the round trip on a tiny model, the README's serving code, and bad input."""

import json
import re
import time

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import ROOT, read_split_frame
from kdcascade import classify, data, efficiency, exporting, heads, models, schedule, settings
from kdcascade.errors import ConfigError
from kdcascade.labels import LABELS
from kdcascade.synthetic import generate_nli
from test_stage_errors import assert_one_line_error, call_stage, edit_params, workdir  # noqa: F401

MAX_LENGTH = 64


def tiny_classifier(minilm_path, layers=(0, 1)):
    """MiniLM cut to its first layers with a seeded mean-pooling head (weights of unit scale, so
    the classes' logits are far apart, as after fine-tuning, and not near-ties)."""
    torch.manual_seed(0)
    model = heads.MeanPoolingClassifier(models.truncate(models.load_encoder(minilm_path),
                                                        list(layers)), list(LABELS))
    model.classifier.weight.data.normal_(0.0, 1.0)
    return model.eval()


@pytest.fixture(scope="module")
def exported(minilm_path, tmp_path_factory):
    model = tiny_classifier(minilm_path)
    tokenizer = models.load_tokenizer(minilm_path)
    folder = tmp_path_factory.mktemp("exported")
    manifest = exporting.export(model, tokenizer, folder, "int8", True, MAX_LENGTH)
    pairs = pd.concat([generate_nli(lang, 30, seed=1) for lang in ("en", "de", "fr", "es")])
    test, _ = data.tokenize_pairs(tokenizer, pairs, MAX_LENGTH)
    return model, folder, manifest, test


def test_onnx_gives_pytorchs_logits_and_int8_mostly_its_predictions(exported):
    model, folder, manifest, test = exported
    assert manifest["variants"] == {"onnx-fp32": "model.onnx", "onnx-int8": "model.int8.onnx"}
    assert manifest["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    assert manifest["max_logit_difference"] < 1e-4
    reference = classify.logits(model, test, 16, torch.device("cpu"))
    # dynamic batch and length: batches of 16 rows padded to their own longest, and single rows
    fp32 = exporting.session(folder / "model.onnx")
    np.testing.assert_allclose(exporting.onnx_logits(fp32, test, 16, 0), reference,
                               atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(exporting.onnx_logits(fp32, test.iloc[:6], 1, 0), reference[:6],
                               atol=1e-4, rtol=1e-4)
    int8 = exporting.onnx_logits(exporting.session(folder / "model.int8.onnx"), test, 16, 0)
    measured = exporting.agreement({exporting.PYTORCH: reference, "onnx-int8": int8},
                                   test.language, test.label)
    assert measured[exporting.PYTORCH]["agreement"] == 100.0
    # 8-bit weights move the logits (this head's are of order 3) but keep most predictions
    error = np.abs(int8 - reference)
    assert 0 < error.mean() < 0.25 * np.abs(reference).mean()
    assert measured["onnx-int8"]["agreement"] >= 90.0
    assert manifest["per_channel"] is True


def test_sizes_with_and_without_the_word_embeddings(exported):
    model, folder, manifest, _ = exported
    words = 30522 * 384
    fp32_total, fp32_words = exporting.onnx_bytes(folder / "model.onnx", (30522, 384))
    int8_total, int8_words = exporting.onnx_bytes(folder / "model.int8.onnx", (30522, 384))
    assert fp32_words == 4 * words and int8_words == words  # the Gather is quantised too
    assert fp32_total > fp32_words and int8_total < fp32_total / 3.5


def test_the_readme_serves_an_exported_folder_with_onnxruntime_and_tokenizers(exported):
    """The README's code, run as written on the exported folder: the pairs are tokenized as the
    prepare stage tokenized them, and the predictions are the int8 session's."""
    model, folder, _, test = exported
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(.*?onnxruntime.*?)```", readme, re.S).group(1)
    code = code.replace('"data/exported/student"', repr(str(folder)))
    rows = test.iloc[:5]
    code = re.sub(r"pairs = \[.*?\]\n", "pairs = PAIRS\n", code, flags=re.S)
    scope = {"PAIRS": list(zip(rows.premise, rows.hypothesis)), "print": lambda *a: None}
    exec(compile(code, "README.md", "exec"), scope)
    padded = [ids.tolist() + [0] * (len(scope["encodings"][0].ids) - len(ids))
              for ids in rows.input_ids]
    assert [e.ids for e in scope["encodings"]] == padded
    expected = exporting.onnx_logits(exporting.session(folder / "model.int8.onnx"), rows, 5, 0)
    assert scope["predicted"] == [LABELS[i] for i in expected.argmax(-1)]


def test_timing_takes_turns_and_sizes_a_pytorch_folder(exported, tmp_path):
    model, folder, manifest, _ = exported
    variants = exporting.engines(model, folder, manifest)
    assert list(variants) == [exporting.PYTORCH, "onnx-fp32", "onnx-int8"]
    feed = efficiency.random_inputs(model.config.vocab_size, 2, 16, manifest["inputs"])
    times = efficiency.take_turns({v: exporting.runner(e, feed) for v, e in variants.items()},
                                  batch_size=2, repeats=2, warmup=1)
    assert set(times) == set(variants) and all(t["ms"] > 0 for t in times.values())
    assert {t["runs"] for t in times.values()} == {2}
    # fast calls get more rounds, until the timed rounds took min_seconds (or max_repeats)
    calls = []
    times = efficiency.take_turns({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                                  batch_size=1, repeats=3, warmup=1, min_seconds=10.0,
                                  max_repeats=7)
    assert calls == ["a", "b"] * 8 and times["a"]["runs"] == times["b"]["runs"] == 7
    times = efficiency.take_turns({"slow": lambda: time.sleep(0.02)}, batch_size=1, repeats=2,
                                  warmup=0, min_seconds=0.1)
    assert 2 < times["slow"]["runs"] <= 5 and times["slow"]["ms"] >= 20  # 20 ms a call
    model.save_pretrained(tmp_path)
    sizes = exporting.sizes(variants, model, tmp_path, folder, manifest)
    assert sizes[exporting.PYTORCH]["bytes_on_disk"] - sizes[exporting.PYTORCH][
        "bytes_without_word_embeddings"] == 30522 * 384 * 4


def test_roles_name_models_and_quantisation_modes_are_checked():
    cascade = schedule.models(6, 3, 3)
    assert [schedule.model_named(x, cascade, "export.models")
            for x in ("student", "truncated", "teacher", "L4")] == ["L3", "L3-trunc", "L6", "L4"]
    with pytest.raises(ConfigError, match="'assistant' is neither a model"):
        schedule.model_named("assistant", cascade, "export.models")
    assert set(exporting.WEIGHT_TYPES) | {"none"} == set(settings.QUANTIZATIONS)
    for bad in ([], "student", ["student", "student"], [3]):
        with pytest.raises(ConfigError, match="export.models="):
            settings.check_export_params({"models": bad, "quantization": "int8",
                                          "per_channel": True})
    with pytest.raises(ConfigError, match="export.per_channel='yes': expected true or false"):
        settings.check_export_params({"models": ["student"], "quantization": "int8",
                                      "per_channel": "yes"})
    with pytest.raises(ConfigError, match="export.vocabulary='used': expected full .* or seen"):
        settings.check_export_params({"models": ["student"], "quantization": "int8",
                                      "per_channel": True, "vocabulary": "used"})


def test_a_trimmed_vocabulary_keeps_the_logits_of_kept_tokens(minilm_path, tmp_path):
    """Trimmed to the tokens of some pairs: those pairs get the full model's logits, in PyTorch
    and in the exported graph; any other token reads as the unknown token; the word-embedding
    matrix shrinks to the kept rows (plus an id table of one int32 per token of the tokenizer)."""
    tokenizer = models.load_tokenizer(minilm_path)
    seen, _ = data.tokenize_pairs(tokenizer, generate_nli("en", 20, seed=3), MAX_LENGTH)
    keep = {int(i) for ids in seen.input_ids for i in ids}
    full = tiny_classifier(minilm_path)
    reference = classify.logits(full, seen, 8, torch.device("cpu"))
    model = tiny_classifier(minilm_path)
    manifest = exporting.export(model, tokenizer, tmp_path, "int8", True, MAX_LENGTH,
                                keep_tokens=keep)
    kept = len(keep | set(tokenizer.all_special_ids))
    assert manifest["vocabulary"] == {"tokens": kept, "of": 30522} and kept < 200
    np.testing.assert_allclose(classify.logits(model, seen, 8, torch.device("cpu")), reference,
                               atol=1e-6)
    onnx_fp32 = exporting.onnx_logits(exporting.session(tmp_path / "model.onnx"), seen, 8, 0)
    np.testing.assert_allclose(onnx_fp32, reference, atol=1e-4, rtol=1e-4)
    # a token never seen is the unknown token, in the graph as in PyTorch
    unseen = next(i for i in range(1000, 30522) if i not in keep)
    row = seen.iloc[:1].copy()
    row.at[row.index[0], "input_ids"] = np.array([*row.input_ids.iloc[0][:-1], unseen,
                                                  row.input_ids.iloc[0][-1]])
    row.at[row.index[0], "token_type_ids"] = np.array([*row.token_type_ids.iloc[0], 1])
    as_unk = row.copy()
    as_unk.at[as_unk.index[0], "input_ids"] = np.where(
        row.input_ids.iloc[0] == unseen, tokenizer.unk_token_id, row.input_ids.iloc[0])
    np.testing.assert_allclose(
        exporting.onnx_logits(exporting.session(tmp_path / "model.onnx"), row, 1, 0),
        classify.logits(full, as_unk, 1, torch.device("cpu")), atol=1e-4, rtol=1e-4)
    total, words = exporting.onnx_bytes(tmp_path / "model.onnx", (kept, 384), 30522)
    assert words == kept * 384 * 4 + 30522 * 4 and total < 30522 * 384 * 4 / 2
    _, words = exporting.onnx_bytes(tmp_path / "model.int8.onnx", (kept, 384), 30522)
    assert words == kept * 384 + 30522 * 4  # the rows in 8 bits, the id table as it was


def test_a_trimmed_export_needs_splits_other_than_test(workdir, minilm_path):
    finetuned_folder(workdir, minilm_path)
    prepared_test_split(workdir, minilm_path)
    edit_params(workdir, lambda p: p["export"].update(vocabulary="seen"))
    out = call_stage(workdir, "export.py", "--model", "student", "--finetuned", "ft",
                     "--out", "exp/student")
    assert_one_line_error(out, "export.vocabulary=seen: give --data")
    out = call_stage(workdir, "export.py", "--model", "student", "--finetuned", "ft",
                     "--data", "prep", "--out", "exp/student")
    assert_one_line_error(out, "prep: no train, dev, distill, transfer split")
    assert not (workdir / "exp").exists()
    # with a train split: its tokens are kept, and evaluate-export measures the trimmed graph
    # against the full PyTorch model on test pairs that hold tokens train does not
    pairs = generate_nli("en", 4, seed=5)
    data.write_pairs(workdir / "prep" / "train.arrow", pairs, models.load_tokenizer(minilm_path),
                     MAX_LENGTH)
    train = read_split_frame(workdir / "prep" / "train.arrow")
    edit_params(workdir, lambda p: p["evaluate"].update(timing_repeats=0))
    out = call_stage(workdir, "export.py", "--model", "student", "--finetuned", "ft",
                     "--data", "prep", "--out", "exp/student")
    assert out.returncode == 0, out.stderr
    kept = {int(i) for ids in train.input_ids for i in ids}
    assert f"{len(kept | set(models.load_tokenizer(minilm_path).all_special_ids))} of 30522 " \
        "tokens kept" in out.stdout
    out = call_stage(workdir, "evaluate_export.py", "--exported", "exp", "--finetuned", "ft",
                     "--data", "prep", "--out", "rep")
    assert out.returncode == 0, out.stderr
    measured = json.loads((workdir / "rep" / "metrics.json").read_text())
    import report
    assert "L3 (student) " in report.vocabulary_note(measured)
    variants = measured["models"]["student"]["variants"]
    assert variants["onnx-fp32"]["bytes_on_disk"] < variants["pytorch-fp32"]["bytes_on_disk"] / 3


def finetuned_folder(workdir, minilm_path):
    model = tiny_classifier(minilm_path, layers=(0,))
    models.save_model(model, workdir / "ft" / "L3", models.load_tokenizer(minilm_path), "t", {})
    return workdir / "ft" / "L3"


def prepared_test_split(workdir, minilm_path, rows_per_language=3):
    (workdir / "prep").mkdir()
    pairs = pd.concat([generate_nli(lang, rows_per_language, seed=0) for lang in ("en", "de")])
    data.write_pairs(workdir / "prep" / "test.arrow", pairs, models.load_tokenizer(minilm_path),
                     MAX_LENGTH)


def test_export_and_evaluate_export_stages_write_what_the_report_shows(workdir, minilm_path):
    """export@student writes a servable folder; evaluate-export measures it next to PyTorch;
    the report's table and plot read the result."""
    import report

    finetuned_folder(workdir, minilm_path)
    prepared_test_split(workdir, minilm_path)
    edit_params(workdir, lambda p: (p["export"].update(models=["student"], quantization="uint8"),
                                    p["evaluate"].update(timing_batches=[1, 2], timing_length=8,
                                                         timing_repeats=1)))
    out = call_stage(workdir, "export.py", "--model", "student", "--finetuned", "ft",
                     "--out", "exp/student")
    assert out.returncode == 0, out.stderr
    manifest = json.loads((workdir / "exp" / "student" / "export.json").read_text())
    assert manifest["model"] == "L3" and manifest["pooling"] == "mean"
    assert manifest["variants"] == {"onnx-fp32": "model.onnx", "onnx-uint8": "model.uint8.onnx"}
    assert {"tokenizer.json", "provenance.json"} <= {
        p.name for p in (workdir / "exp" / "student").iterdir()}

    out = call_stage(workdir, "evaluate_export.py", "--exported", "exp", "--finetuned", "ft",
                     "--data", "prep", "--out", "rep")
    assert out.returncode == 0, out.stderr
    measured = json.loads((workdir / "rep" / "metrics.json").read_text())
    variants = measured["models"]["student"]["variants"]
    assert list(variants) == [exporting.PYTORCH, "onnx-fp32", "onnx-uint8"]
    assert variants["onnx-fp32"]["accuracy"] == variants[exporting.PYTORCH]["accuracy"]
    assert variants["onnx-fp32"]["agreement"] == 100.0
    for m in variants.values():
        assert set(m["accuracy"]) == {"en", "de", "avg"}
        assert set(m["latency"]) == {"batch1", "batch2"} and m["speedup_batch2"] > 0
        assert 0 < m["bytes_without_word_embeddings"] < m["bytes_on_disk"]
    assert variants["onnx-uint8"]["bytes_on_disk"] < variants["onnx-fp32"]["bytes_on_disk"] / 2

    table = report.export_table(measured)
    assert list(table.index) == ["L3 (student) pytorch-fp32", "L3 (student) onnx-fp32",
                                 "L3 (student) onnx-uint8"]
    assert {"avg", "agreement %", "batch1 ms", "batch2 ms", "MB",
            "MB without word embeddings"} <= set(table.columns)
    assert report.plot_export(measured, workdir / "export.png")
    assert (workdir / "export.png").stat().st_size > 1000


def test_export_refuses_a_folder_without_a_head(workdir, minilm_path):
    bare = models.truncate(models.load_encoder(minilm_path), [0])  # an encoder, not fine-tuned
    models.save_model(bare, workdir / "ft" / "L3", models.load_tokenizer(minilm_path), "t", {})
    out = call_stage(workdir, "export.py", "--model", "student", "--finetuned", "ft",
                     "--out", "exp/student")
    assert_one_line_error(out, "ft/L3: no classification head", "not a bare encoder")
    assert not (workdir / "exp").exists()


def test_export_refuses_a_head_config_without_its_weights(workdir, minilm_path):
    folder = finetuned_folder(workdir, minilm_path)
    (folder / settings.HEAD_WEIGHTS).unlink()
    out = call_stage(workdir, "export.py", "--model", "L3", "--finetuned", "ft", "--out", "e")
    assert_one_line_error(out, "classifier_head.json without classifier_head.safetensors")


def test_export_refuses_an_unknown_quantisation_mode(workdir):
    edit_params(workdir, lambda p: p["export"].update(quantization="int4"))
    out = call_stage(workdir, "export.py", "--model", "student", "--finetuned", "ft",
                     "--out", "exp/student")
    assert_one_line_error(out, "export.quantization='int4': expected one of int8, uint8, none")
    assert not (workdir / "exp").exists()


def test_export_refuses_a_model_outside_the_cascade(workdir):
    out = call_stage(workdir, "export.py", "--model", "L9", "--finetuned", "ft", "--out", "e")
    assert_one_line_error(out, "--model (an item of export.models): 'L9' is neither a model of "
                          "this cascade (L6, L5, L4, L3, L3-trunc, L3-plain)")


def test_evaluate_export_refuses_an_export_of_another_model(workdir, minilm_path):
    finetuned_folder(workdir, minilm_path)
    (workdir / "exp" / "student").mkdir(parents=True)
    (workdir / "exp" / "student" / "export.json").write_text(json.dumps({"model": "L4"}))
    prepared_test_split(workdir, minilm_path)
    edit_params(workdir, lambda p: p["export"].update(models=["student"]))
    out = call_stage(workdir, "evaluate_export.py", "--exported", "exp", "--finetuned", "ft",
                     "--data", "prep", "--out", "rep")
    assert_one_line_error(out, "exp/student: holds L4, but this cascade's student is L3",
                          "run export@student")
    assert not (workdir / "rep").exists()


def test_evaluate_export_refuses_an_unknown_model_before_loading_any(workdir):
    edit_params(workdir, lambda p: p["export"].update(models=["student", "assistant"]))
    out = call_stage(workdir, "evaluate_export.py", "--exported", "exp", "--finetuned", "ft",
                     "--data", "prep", "--out", "rep")
    assert_one_line_error(out, "export.models: 'assistant' is neither a model of this cascade")
    assert not (workdir / "rep").exists()
