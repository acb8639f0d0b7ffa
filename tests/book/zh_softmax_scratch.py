"""d2l-zh 2.0, 3.6 "softmax regression from scratch", on softmaxlab.d2l.

Our own script, not the book's text: it uses d2l the way the section does (the tensor aliases,
``load_data_fashion_mnist``, ``sgd``, a live plot of its own made with ``use_svg_display``,
``plt`` and ``set_axes`` and shown with IPython's ``display``, ``show_images``) and checks what the
section checks: train loss < 0.5, both accuracies in (0.7, 1], and test accuracy >= 0.80.
``BOOK_EPOCHS`` sets the epochs (the book's 10 by default). Cells are marked ``# %%``.
"""

# %%
import os

import torch
from IPython import display

from softmaxlab import d2l

EPOCHS = int(os.environ.get("BOOK_EPOCHS", "10"))
torch.manual_seed(0)
train_iter, test_iter = d2l.load_data_fashion_mnist(256)

# %% the parameters: 784 pixels -> 10 classes
W = torch.normal(0, 0.01, size=(784, 10), requires_grad=True)
b = torch.zeros(10, requires_grad=True)

# %% row sums and a softmax written with the aliases
M = d2l.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
assert d2l.reduce_sum(M, 0, keepdim=True).tolist() == [[5.0, 7.0, 9.0]]
assert d2l.reduce_sum(M, 1, keepdim=True).tolist() == [[6.0], [15.0]]


def softmax(scores):
    e = d2l.exp(scores)
    return e / d2l.reduce_sum(e, 1, keepdim=True)


probs = softmax(d2l.normal(0, 1, (2, 5)))
torch.testing.assert_close(d2l.reduce_sum(probs, 1), torch.ones(2))


def net(X):
    return softmax(d2l.matmul(d2l.reshape(X, (-1, W.shape[0])), W) + b)


# %% cross-entropy by picking each row's probability of its label; correct predictions
def cross_entropy(p, labels):
    return -d2l.log(p[range(len(p)), labels])


def count_correct(p, labels):
    guess = d2l.argmax(p, axis=1) if p.ndim > 1 and p.shape[1] > 1 else p
    same = d2l.astype(guess, labels.dtype) == labels
    return float(d2l.reduce_sum(d2l.astype(same, labels.dtype)))


y = d2l.tensor([0, 2])
y_hat = d2l.tensor([[0.1, 0.3, 0.6], [0.3, 0.2, 0.5]])
torch.testing.assert_close(cross_entropy(y_hat, y), d2l.tensor([2.3026, 0.6931]), atol=1e-4,
                           rtol=0)
assert count_correct(y_hat, y) / len(y) == 0.5


def accuracy_on(model, batches):
    right = seen = 0.0
    with torch.no_grad():
        for X, labels in batches:
            right += count_correct(model(X), labels)
            seen += d2l.size(labels)
    return right / seen


assert accuracy_on(net, test_iter) < 0.3  # untrained: about a guess among 10 classes


# %% a live plot of our own, shown with IPython's display as the section shows its Animator
class LivePlot:
    def __init__(self, names):
        d2l.use_svg_display()
        self.fig, self.ax = d2l.plt.subplots(figsize=(3.5, 2.5))
        self.names, self.points = names, []

    def add(self, x, values):
        self.points.append((x, values))
        self.ax.cla()
        for i, fmt in enumerate(("-", "m--", "g-.")):
            self.ax.plot([p[0] for p in self.points], [p[1][i] for p in self.points], fmt)
        d2l.set_axes(self.ax, "epoch", None, [1, EPOCHS], [0.3, 0.9], "linear", "linear",
                     self.names)
        display.display(self.fig)
        display.clear_output(wait=True)


# %% training with d2l.sgd as the updater (it divides the summed gradient by the batch size)
def one_epoch(updater):
    total = right = seen = 0.0
    for X, labels in train_iter:
        p = net(X)
        losses = cross_entropy(p, labels)
        losses.sum().backward()
        updater(X.shape[0])
        total += float(losses.detach().sum())
        right += count_correct(p, labels)
        seen += labels.numel()
    return total / seen, right / seen


live = LivePlot(["train loss", "train acc", "test acc"])
for epoch in range(EPOCHS):
    train_loss, train_acc = one_epoch(lambda n: d2l.sgd([W, b], 0.1, n))
    test_acc = accuracy_on(net, test_iter)
    live.add(epoch + 1, (train_loss, train_acc, test_acc))
assert train_loss < 0.5, train_loss
assert 0.7 < train_acc <= 1 and 0.7 < test_acc <= 1, (train_acc, test_acc)
assert test_acc >= 0.80, test_acc
print(f"RESULT train_loss={train_loss:.4f} train_acc={train_acc:.4f} test_acc={test_acc:.4f}")

# %% the first test images, titled true / predicted
X, y = next(iter(test_iter))
trues = d2l.get_fashion_mnist_labels(y)
preds = d2l.get_fashion_mnist_labels(d2l.argmax(net(X), axis=1))
d2l.show_images(d2l.reshape(X[:6], (6, 28, 28)), 1, 6,
                titles=[f"{t}\n{p}" for t, p in zip(trues[:6], preds[:6])])
