"""A mean-pooling classification head, for encoders trained with mean pooling.

Sentence encoders such as all-MiniLM-L6-v2 and multilingual-e5 are trained to be mean-pooled:
their CLS vector hardly varies between inputs below the top layer, so a truncated student with
BERT's CLS pooler starts from a constant feature and fine-tuning stalls at chance. Saved as the
encoder's own Hugging Face folder (loadable with AutoModel) plus the head's weights beside it.
"""

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel
from transformers.modeling_outputs import SequenceClassifierOutput

from .settings import HEAD_CONFIG, HEAD_WEIGHTS


class MeanPoolingClassifier(torch.nn.Module):
    def __init__(self, encoder, labels: list[str]):
        super().__init__()
        self.encoder = encoder
        self.config = encoder.config
        self.labels = list(labels)
        self.dropout = torch.nn.Dropout(encoder.config.hidden_dropout_prob)
        self.classifier = torch.nn.Linear(encoder.config.hidden_size, len(labels))
        self.classifier.weight.data.normal_(0.0, encoder.config.initializer_range)
        self.classifier.bias.data.zero_()

    @property
    def base_model(self):
        return self.encoder

    def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None,
                output_hidden_states=False):
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                           token_type_ids=token_type_ids,
                           output_hidden_states=output_hidden_states)
        hidden = out.last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        logits = self.classifier(self.dropout(pooled))
        loss = (torch.nn.functional.cross_entropy(logits.float(), labels)
                if labels is not None else None)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states)

    def save_pretrained(self, folder) -> None:
        folder = Path(folder)
        self.encoder.save_pretrained(folder)
        save_file({k: v.contiguous() for k, v in self.classifier.state_dict().items()},
                  folder / HEAD_WEIGHTS)
        (folder / HEAD_CONFIG).write_text(json.dumps({"pooling": "mean", "labels": self.labels}))

    @classmethod
    def from_pretrained(cls, folder, labels: list[str]):
        folder = Path(folder)
        model = cls(AutoModel.from_pretrained(folder), labels)
        if (folder / HEAD_WEIGHTS).is_file():
            model.classifier.load_state_dict(load_file(folder / HEAD_WEIGHTS))
        return model


def has_mean_head(folder) -> bool:
    return (Path(folder) / HEAD_CONFIG).is_file()
