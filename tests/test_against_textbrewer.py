"""The distill step against an independent implementation: TextBrewer's GeneralDistiller, fed the
same batches from the same initial student (benchmarks/distill_step.py builds both)."""

import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import distill_step as bench  # noqa: E402


@pytest.mark.parametrize("layer_map", ["shifted", "last"])
def test_same_losses_as_textbrewer_over_three_steps(minilm_path, accelerator, layer_map):
    """fp32: the same terms, masks, averaging, AdamW, schedule and clipping give the same loss
    at every step (measured: equal to 1e-7 relative, float rounding)."""
    batches = bench.make_batches(minilm_path, 3, 8)
    ours = bench.build("ours fp32", layer_map, minilm_path, accelerator, 3)
    textbrewer = bench.build("textbrewer fp32", layer_map, minilm_path, accelerator, 3)
    for micro in batches:
        assert ours(micro) == pytest.approx(textbrewer(micro), rel=1e-5)
