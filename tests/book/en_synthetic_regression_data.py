"""d2l-en 1.x, 3.3 "synthetic regression data", on softmaxlab.d2l.

Our own script, not the book's text: a ``d2l.DataModule`` subclass generating y = Xw + b + noise
with ``d2l.randn`` / ``d2l.matmul`` / ``d2l.reshape``; a hand-written ``get_dataloader`` added with
``add_to_class`` (shuffled indices, ``d2l.tensor``); then ``d2l.DataModule.get_tensorloader``
replaced by a ``TensorDataset`` + ``DataLoader`` one, as the section does, and used.
"""

# %%
import random

import torch

from softmaxlab import d2l


class LinearData(d2l.DataModule):
    def __init__(self, w, b, noise=0.01, num_train=1000, num_val=1000, batch_size=32):
        super().__init__()
        self.save_hyperparameters()
        n = num_train + num_val
        self.X = d2l.randn(n, len(w))
        self.y = d2l.matmul(self.X, d2l.reshape(w, (-1, 1))) + b + d2l.randn(n, 1) * noise


data = LinearData(w=d2l.tensor([2, -3.4]), b=4.2)
assert data.X.shape == (2000, 2) and data.y.shape == (2000, 1)
assert data.root == "../data" and data.batch_size == 32


# %% a loader by hand: shuffled indices for training, in order for validation
@d2l.add_to_class(LinearData)
def get_dataloader(self, train):
    order = list(range(self.num_train) if train else
                 range(self.num_train, self.num_train + self.num_val))
    if train:
        random.shuffle(order)
    for i in range(0, len(order), self.batch_size):
        rows = d2l.tensor(order[i:i + self.batch_size])
        yield self.X[rows], self.y[rows]


X, y = next(iter(data.train_dataloader()))
assert (X.shape, y.shape) == ((32, 2), (32, 1))


# %% the framework's loader, registered on d2l.DataModule itself
@d2l.add_to_class(d2l.DataModule)
def get_tensorloader(self, tensors, train, indices=slice(0, None)):
    dataset = torch.utils.data.TensorDataset(*(t[indices] for t in tensors))
    return torch.utils.data.DataLoader(dataset, self.batch_size, shuffle=train)


@d2l.add_to_class(LinearData)
def get_dataloader(self, train):  # noqa: F811 (the section replaces it)
    rows = slice(0, self.num_train) if train else slice(self.num_train, None)
    return self.get_tensorloader((self.X, self.y), train, rows)


loader = data.train_dataloader()
assert isinstance(loader, torch.utils.data.DataLoader) and len(loader) == 32
X, y = next(iter(loader))
assert (X.shape, y.shape) == ((32, 2), (32, 1))
print("RESULT ok")
