"""d2l-en 1.x, 4.5 "concise implementation of softmax regression", on softmaxlab.d2l.

Our own script, not the book's text: a ``d2l.Classifier`` subclass over ``nn.Flatten`` and
``nn.LazyLinear``; ``d2l.Classifier.loss`` replaced (with ``add_to_class``) by the cross-entropy of
``torch.nn.functional`` on the scores; ``d2l.FashionMNIST(batch_size=256)`` and
``d2l.Trainer(max_epochs=10).fit``. Checks: validation accuracy >= 0.80 (``BOOK_EPOCHS`` sets
the epochs), then the learned weights as images with ``d2l.show_weights``.
"""

# %%
import os

import torch
from torch import nn
from torch.nn import functional as F

from softmaxlab import d2l

EPOCHS = int(os.environ.get("BOOK_EPOCHS", "10"))
torch.manual_seed(0)


class ConciseSoftmax(d2l.Classifier):
    def __init__(self, num_outputs, lr):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Flatten(), nn.LazyLinear(num_outputs))

    def forward(self, X):
        return self.net(X)


@d2l.add_to_class(d2l.Classifier)
def loss(self, Y_hat, Y, averaged=True):
    Y_hat = d2l.reshape(Y_hat, (-1, Y_hat.shape[-1]))
    Y = d2l.reshape(Y, (-1,))
    return F.cross_entropy(Y_hat, Y, reduction="mean" if averaged else "none")


# %% training on Fashion-MNIST
data = d2l.FashionMNIST(batch_size=256)
model = ConciseSoftmax(num_outputs=10, lr=0.1)
trainer = d2l.Trainer(max_epochs=EPOCHS)
trainer.fit(model, data)

with torch.no_grad():
    right = sum(int((model(X).argmax(1) == y).sum()) for X, y in data.val_dataloader())
val_acc = right / len(data.val)
print(f"RESULT val_acc={val_acc:.4f}")
assert val_acc >= 0.80, val_acc

# %% what each class's weights look like
d2l.show_weights(model)
