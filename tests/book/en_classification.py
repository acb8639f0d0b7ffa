"""d2l-en 1.x, 4.1 "the base classification model", on softmaxlab.d2l.

Our own script, not the book's text: a classifier base of its own on ``d2l.Module`` whose
``validation_step`` plots loss and accuracy, ``configure_optimizers`` added to ``d2l.Module``
itself, and an ``accuracy`` written with ``d2l.reshape`` / ``d2l.astype`` / ``d2l.argmax`` /
``d2l.float32`` / ``d2l.reduce_mean``.
"""

# %%
import torch

from softmaxlab import d2l


class BaseClassifier(d2l.Module):
    def validation_step(self, batch):
        Y_hat = self(*batch[:-1])
        self.plot("loss", self.loss(Y_hat, batch[-1]), train=False)
        self.plot("acc", self.accuracy(Y_hat, batch[-1]), train=False)


@d2l.add_to_class(d2l.Module)
def configure_optimizers(self):
    return torch.optim.SGD(self.parameters(), lr=self.lr)


@d2l.add_to_class(BaseClassifier)
def accuracy(self, Y_hat, Y, averaged=True):
    Y_hat = d2l.reshape(Y_hat, (-1, Y_hat.shape[-1]))
    preds = d2l.astype(d2l.argmax(Y_hat, axis=1), Y.dtype)
    compare = d2l.astype(preds == d2l.reshape(Y, -1), d2l.float32)
    return d2l.reduce_mean(compare) if averaged else compare


# %% check it on a toy case
model = BaseClassifier()
model.lr, model.net = 0.5, torch.nn.Linear(3, 2)
scores = d2l.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
labels = d2l.tensor([1, 0, 0])
assert abs(float(model.accuracy(scores, labels)) - 2 / 3) < 1e-6
assert model.accuracy(scores, labels, averaged=False).tolist() == [1.0, 1.0, 0.0]
optimizer = model.configure_optimizers()
assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["lr"] == 0.5
print("RESULT ok")
