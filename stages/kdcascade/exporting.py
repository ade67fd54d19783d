"""A fine-tuned classifier as ONNX (encoder + head, dynamic batch and length), its ONNX Runtime
int8 variant (dynamic quantisation), and prediction, timing and sizes of every variant.

The graph is traced by torch.onnx.export and quantised by onnxruntime.quantization's
quantize_dynamic: weights of MatMul and Gather (so the word embeddings too) are stored in 8 bits,
activations are quantised per batch at run time. Nothing here is a hand-written quantiser.

torch.onnx.export runs its TorchScript tracer (`dynamo=False`), not the torch.export-based
exporter that torch 2.9 made the default (it warns that the tracer is the legacy path): on the
quickstart student (3 layers, this 2-core CPU) the dynamo exporter took 7-9 s of CPU against
about 1 s for the tracer, for a graph with the same logits (within 3e-7 of PyTorch's either way)
and the same ONNX Runtime speed, and every export stage pays it. `export` checks the traced graph
against PyTorch on shapes and padding it was not traced with.
"""

import json
import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic

from . import classify, efficiency
from .errors import ConfigError
from .labels import LABELS

FP32_FILE = "model.onnx"
MANIFEST = "export.json"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
WEIGHT_TYPES = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
PYTORCH = "pytorch-fp32"  # the reference every exported variant is compared with
# a fp32 export must give PyTorch's logits to float rounding; more means a wrong graph
TOLERANCE = 1e-3
OPSET = 17  # the first with LayerNormalization as one operator


def quantized_file(mode: str) -> str:
    return f"model.{mode}.onnx"


def input_names(tokenizer) -> list[str]:
    """The model inputs the tokenizer gives, in INPUTS order (no token types for XLM-R-style
    tokenizers): the ONNX graph takes exactly what the tokenizer returns."""
    return [name for name in INPUTS if name in tokenizer.model_input_names]


class Logits(torch.nn.Module):
    """The classifier with named tensor inputs and the logits as its one output."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        return self.model(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids).logits


class TrimmedEmbedding(torch.nn.Module):
    """The word embeddings of some token ids only. An id is first looked up in `remap` (its
    row, or the unknown token's row for an id not kept), so the tokenizer stays as it is and
    the exported graph takes the same ids."""

    def __init__(self, full: torch.nn.Embedding, keep, unk_id: int):
        super().__init__()
        keep = sorted(set(map(int, keep)) | {int(unk_id)})
        rows = torch.arange(len(keep), dtype=torch.int32)
        remap = torch.full((full.num_embeddings,), keep.index(int(unk_id)), dtype=torch.int32)
        remap[torch.tensor(keep)] = rows
        self.register_buffer("remap", remap)
        self.rows = torch.nn.Embedding.from_pretrained(full.weight.detach()[keep].clone())

    def forward(self, input_ids):
        return self.rows(self.remap[input_ids])


def seen_token_ids(paths) -> set[int]:
    """Every token id of some prepared splits (settings.seen_splits)."""
    from .data import token_vocabulary

    return token_vocabulary(paths)


def trim_vocabulary(model, tokenizer, keep) -> dict:
    """Replace the model's word embeddings by the rows of `keep` and the special tokens
    (TrimmedEmbedding); returns how many of how many tokens remain."""
    words = model.base_model.get_input_embeddings()
    keep = set(keep) | set(tokenizer.all_special_ids)
    unk = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else tokenizer.pad_token_id
    trimmed = TrimmedEmbedding(words, keep, unk)
    model.base_model.set_input_embeddings(trimmed)
    return {"tokens": trimmed.rows.num_embeddings, "of": words.num_embeddings}


def to_onnx(model, path: Path, names: list[str]) -> None:
    """Trace the classifier (fp32, CPU) into one self-contained .onnx file; batch and sequence
    length stay dynamic. One row of the example batch is padded, so the trace keeps the
    attention mask's path (code that skips a mask of ones would otherwise drop it)."""
    model = model.float().cpu().eval()
    example = efficiency.random_inputs(model.config.vocab_size, 2, 8, names)
    example["attention_mask"][1, 5:] = 0
    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    with warnings.catch_warnings():  # the legacy-path notice and the tracer's notes
        warnings.simplefilter("ignore")
        torch.onnx.export(Logits(model), tuple(example[n] for n in names), str(path),
                          dynamo=False, opset_version=OPSET, input_names=names,
                          output_names=["logits"], dynamic_axes={**axes, "logits": {0: "batch"}})


def quantize(source: Path, target: Path, mode: str, per_channel: bool) -> None:
    """ONNX Runtime's dynamic quantisation, weights stored as `mode` (int8 or uint8) with a
    scale per output channel of each weight (per_channel) or one per weight."""
    if mode not in WEIGHT_TYPES:
        raise ConfigError(f"export.quantization={mode!r}: expected one of "
                          f"{', '.join(WEIGHT_TYPES)} or none")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to pre-process the graph, printed every time
    try:
        quantize_dynamic(str(source), str(target), weight_type=WEIGHT_TYPES[mode],
                         per_channel=per_channel)
    finally:
        root.setLevel(level)


def session(path: Path, threads: int | None = None) -> onnxruntime.InferenceSession:
    """A CPU session using `threads` threads (default: PyTorch's, so both engines get the same
    cores; ONNX Runtime would otherwise take every physical core)."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_logits(sess, df, batch_size: int, pad_token_id: int) -> np.ndarray:
    """The session's logits of every row of a prepared split, in row order (batched like
    PyTorch's prediction, classify.logits)."""
    names = [i.name for i in sess.get_inputs()]
    return classify.logits_in_row_order(
        lambda batch: sess.run(None, {n: batch[n].numpy() for n in names})[0],
        df, batch_size, pad_token_id)


def max_difference(model, sess, names: list[str]) -> float:
    """Largest |logit difference| between PyTorch and the session on two random batches with
    padding (different shapes from the traced example)."""
    worst = 0.0
    for batch_size, length in ((3, 19), (1, 40)):
        feed = efficiency.random_inputs(model.config.vocab_size, batch_size, length, names)
        feed["attention_mask"][0, length // 2:] = 0
        with torch.no_grad():
            ref = Logits(model.eval())(**feed).numpy()
        got = sess.run(None, {n: t.numpy() for n, t in feed.items()})[0]
        worst = max(worst, float(np.abs(got - ref).max()))
    return worst


def save_tokenizer(tokenizer, folder: Path, max_length: int) -> None:
    """The tokenizer, its tokenizer.json set to truncate pairs to `max_length` (longest side
    first, as prepare did) and to pad a batch with the model's pad token: what a server needs
    from the `tokenizers` library alone."""
    from tokenizers import Tokenizer

    tokenizer.save_pretrained(folder)
    path = str(Path(folder) / "tokenizer.json")
    fast = Tokenizer.from_file(path)
    fast.enable_truncation(max_length, strategy="longest_first")
    fast.enable_padding(pad_id=tokenizer.pad_token_id, pad_token=tokenizer.pad_token)
    fast.save(path)


def export(model, tokenizer, folder: Path, mode: str, per_channel: bool, max_length: int,
           about: dict | None = None, keep_tokens=None) -> dict:
    """model.onnx (fp32) and, unless mode is none, model.<mode>.onnx in `folder` (quantize), the
    tokenizer (save_tokenizer) and the manifest export.json (`about`, then the labels, inputs,
    variants and their files), which it returns. With `keep_tokens`, the word embeddings keep
    those rows only (trim_vocabulary: the model is changed in place). A fp32 graph whose logits
    differ from the (trimmed) PyTorch model's by more than TOLERANCE is refused."""
    folder = Path(folder)
    names = input_names(tokenizer)
    vocabulary = None
    if keep_tokens is not None:
        vocabulary = trim_vocabulary(model, tokenizer, keep_tokens)
    to_onnx(model, folder / FP32_FILE, names)
    difference = max_difference(model, session(folder / FP32_FILE), names)
    if not difference <= TOLERANCE:
        raise RuntimeError(f"the ONNX graph's logits differ from PyTorch's by {difference:.2e} "
                           f"(more than {TOLERANCE}): the export is wrong")
    variants = {"onnx-fp32": FP32_FILE}
    if mode != "none":
        quantize(folder / FP32_FILE, folder / quantized_file(mode), mode, per_channel)
        variants[f"onnx-{mode}"] = quantized_file(mode)
    save_tokenizer(tokenizer, folder, max_length)
    manifest = {**(about or {}), "labels": list(LABELS), "inputs": names,
                "max_length": max_length, "variants": variants,
                "per_channel": per_channel if mode != "none" else None, "opset": OPSET,
                "vocabulary": vocabulary,
                "max_logit_difference": difference}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def read_manifest(folder: Path) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise ConfigError(f"{path}: missing; run the export stage first")
    return json.loads(path.read_text())


def onnx_bytes(path: Path, matrix_shape: tuple[int, int], vocab_size: int | None = None,
               module: str = "") -> tuple[int, int]:
    """Size of an .onnx file and the bytes of its word embeddings: its initializers of
    `matrix_shape` (fp32 in the exported graph, int8 once quantised) and, for a trimmed
    vocabulary, the id table of `vocab_size` entries; with `module` (the embedding's name in
    the classifier), only those under that name, so that a trimmed matrix of as many rows as
    the position embeddings or a hidden layer is not mistaken for them."""
    graph = onnx.load(str(path), load_external_data=False).graph
    shapes = {matrix_shape, (vocab_size,)} if vocab_size else {matrix_shape}
    matrix = sum(len(t.raw_data) for t in graph.initializer
                 if tuple(t.dims) in shapes and t.name.startswith(module))
    return Path(path).stat().st_size, matrix


def embedding_module(model) -> str:
    """The word embeddings' name in the traced graph (Logits wraps the classifier as `model`)."""
    words = model.base_model.get_input_embeddings()
    return next(f"model.{name}." for name, m in model.named_modules() if m is words)


def pytorch_bytes(model, folder: Path) -> tuple[int, int]:
    """Size of a fine-tuned folder's weights and the bytes of its word-embedding matrix."""
    words = model.base_model.get_input_embeddings().weight
    return efficiency.size_on_disk(folder), words.numel() * words.element_size()


def engines(model, exported: Path, manifest: dict, threads: int | None = None) -> dict:
    """The PyTorch model first, then an ONNX Runtime session per exported variant."""
    return {PYTORCH: model.float().cpu().eval(),
            **{variant: session(Path(exported) / file, threads)
               for variant, file in manifest["variants"].items()}}


def is_session(engine) -> bool:
    return isinstance(engine, onnxruntime.InferenceSession)


def logits_of(engine, df, batch_size: int, pad_token_id: int) -> np.ndarray:
    if is_session(engine):
        return onnx_logits(engine, df, batch_size, pad_token_id)
    return classify.logits(engine, df, batch_size, torch.device("cpu"))


def runner(engine, feed: dict):
    """A call of the engine on a fixed batch of tensors, for timing."""
    if is_session(engine):
        arrays = {i.name: feed[i.name].numpy() for i in engine.get_inputs()}
        return lambda: engine.run(None, arrays)

    def forward():
        with torch.no_grad():
            engine(**feed)
    return forward


def agreement(logits: dict[str, np.ndarray], languages, labels) -> dict[str, dict]:
    """Per variant: accuracy per language (kdcascade.evaluation's), the % of rows predicted as
    PyTorch predicts them, and the largest |logit difference| from PyTorch."""
    from .evaluation import accuracy_by_language

    reference = logits[PYTORCH]
    out = {}
    for variant, values in logits.items():
        preds = values.argmax(-1)
        out[variant] = {
            "accuracy": accuracy_by_language(languages, labels, preds),
            "agreement": round(100.0 * float(np.mean(preds == reference.argmax(-1))), 2)
            if len(preds) else 100.0,
            "max_logit_difference": float(np.abs(values - reference).max()) if len(preds) else 0.0}
    return out


def sizes(engines_: dict, model, finetuned: Path, exported: Path, manifest: dict) -> dict:
    """Bytes on disk of every variant, with and without the word-embedding matrix."""
    vocab, hidden = model.base_model.get_input_embeddings().weight.shape
    trimmed = manifest.get("vocabulary")
    shape, table = ((trimmed["tokens"], hidden), vocab) if trimmed else ((vocab, hidden), None)
    module = embedding_module(model)
    out = {}
    for variant in engines_:
        total, words = (pytorch_bytes(model, finetuned) if variant == PYTORCH else
                        onnx_bytes(Path(exported) / manifest["variants"][variant], shape, table,
                                   module))
        out[variant] = {"bytes_on_disk": total, "bytes_without_word_embeddings": total - words}
    return out
