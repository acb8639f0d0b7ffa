"""d2l-en 1.x, 4.4 "softmax regression implementation from scratch", on softmaxlab.d2l.

Our own script, not the book's text: a softmax written with ``d2l.reduce_sum(..., keepdims=True)``;
a ``d2l.Classifier`` subclass holding W and b itself (its own ``parameters()``), ``forward`` and
``loss`` added with ``add_to_class``; ``d2l.FashionMNIST(batch_size=256)`` and
``d2l.Trainer(max_epochs=10).fit``; then the wrong predictions of a validation batch shown with
``visualize``. Checks: validation accuracy >= 0.80 (``BOOK_EPOCHS`` sets the epochs).
"""

# %%
import os

import torch

from softmaxlab import d2l

EPOCHS = int(os.environ.get("BOOK_EPOCHS", "10"))
torch.manual_seed(0)

M = d2l.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
assert d2l.reduce_sum(M, 0, keepdims=True).shape == (1, 3)


def softmax(scores):
    e = d2l.exp(scores)
    return e / d2l.reduce_sum(e, 1, keepdims=True)


probs = softmax(d2l.rand((2, 5)))
torch.testing.assert_close(d2l.reduce_sum(probs, 1), torch.ones(2))


# %% the model holds its own parameters
class ScratchSoftmax(d2l.Classifier):
    def __init__(self, num_inputs, num_outputs, lr, sigma=0.01):
        super().__init__()
        self.save_hyperparameters()
        self.W = torch.normal(0, sigma, size=(num_inputs, num_outputs), requires_grad=True)
        self.b = torch.zeros(num_outputs, requires_grad=True)

    def parameters(self):
        return [self.W, self.b]


@d2l.add_to_class(ScratchSoftmax)
def forward(self, X):
    return softmax(d2l.matmul(d2l.reshape(X, (-1, self.W.shape[0])), self.W) + self.b)


def cross_entropy(p, labels):
    return -d2l.reduce_mean(d2l.log(p[list(range(len(p))), labels]))


@d2l.add_to_class(ScratchSoftmax)
def loss(self, y_hat, y):
    return cross_entropy(y_hat, y)


# %% training on Fashion-MNIST
data = d2l.FashionMNIST(batch_size=256)
model = ScratchSoftmax(num_inputs=784, num_outputs=10, lr=0.1)
trainer = d2l.Trainer(max_epochs=EPOCHS)
trainer.fit(model, data)

with torch.no_grad():
    right = seen = 0
    for X, y in data.val_dataloader():
        right += int((d2l.argmax(model(X), axis=1) == y).sum())
        seen += len(y)
val_acc = right / seen
board_acc = float(model.board.data["val_acc"][-1].y)
print(f"RESULT val_acc={val_acc:.4f} board_val_acc={board_acc:.4f}")
assert val_acc >= 0.80 and abs(board_acc - val_acc) < 0.01, (val_acc, board_acc)
assert len(model.board.data["train_loss"]) == 2 * EPOCHS

# %% the wrong predictions of the first validation batch, titled true / predicted
X, y = next(iter(data.val_dataloader()))
with torch.no_grad():
    preds = d2l.argmax(model(X), axis=1)
wrong = d2l.astype(preds, y.dtype) != y
X, y, preds = X[wrong], y[wrong], preds[wrong]
labels = [f"{a}\n{b}" for a, b in zip(data.text_labels(y), data.text_labels(preds))]
data.visualize([X, y], labels=labels)
