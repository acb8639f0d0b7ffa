"""d2l-zh 2.0, 3.7 "concise implementation of softmax regression", on softmaxlab.d2l.

Our own script, not the book's text: an ``nn.Sequential`` of ``Flatten`` and ``Linear(784, 10)``
initialised with ``apply``, the per-example ``CrossEntropyLoss``, ``torch.optim.SGD`` at 0.1,
trained by ``d2l.train_ch3`` (whose own asserts are the section's checks), then test accuracy
>= 0.80. ``BOOK_EPOCHS`` sets the epochs (the book's 10 by default).
"""

# %%
import os

import torch
from torch import nn

from softmaxlab import d2l

EPOCHS = int(os.environ.get("BOOK_EPOCHS", "10"))
torch.manual_seed(0)
train_iter, test_iter = d2l.load_data_fashion_mnist(256)

# %% the model: flatten (B, 1, 28, 28) to (B, 784), one linear layer, weights ~ N(0, 0.01)
net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))


def init_weights(m):
    if type(m) is nn.Linear:
        nn.init.normal_(m.weight, std=0.01)


net.apply(init_weights)

# %% the loss on the scores (softmax inside, stable) and the optimiser
loss = nn.CrossEntropyLoss(reduction="none")
trainer = torch.optim.SGD(net.parameters(), lr=0.1)

# %% training: train_ch3 plots and ends with the chapter's asserts
d2l.train_ch3(net, train_iter, test_iter, loss, EPOCHS, trainer)
test_acc = d2l.evaluate_accuracy(net, test_iter)
assert test_acc >= 0.80, test_acc
print(f"RESULT test_acc={test_acc:.4f}")
