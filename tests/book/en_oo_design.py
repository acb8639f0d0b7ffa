"""d2l-en 1.x, 3.2 "object-oriented design for implementation", on softmaxlab.d2l.

Our own script, not the book's text: ``add_to_class`` on an existing instance, a
``d2l.HyperParameters`` subclass saving its arguments (one ignored), ``d2l.ProgressBoard`` drawing
two curves with different ``every_n``, and the section's own Module / DataModule / Trainer
skeletons built on ``d2l.nn_Module`` and ``d2l.HyperParameters``.
"""

# %%
import numpy as np
import torch

from softmaxlab import d2l


# %% add_to_class: a method added after the instance exists
class Counter:
    def __init__(self):
        self.start = 1


counter = Counter()


@d2l.add_to_class(Counter)
def bump(self):
    return self.start + 1


assert counter.bump() == 2


# %% HyperParameters: __init__'s arguments become attributes, except the ignored ones
class Config(d2l.HyperParameters):
    def __init__(self, depth, width, secret):
        self.save_hyperparameters(ignore=["secret"])


config = Config(depth=3, width=8, secret="x")
assert (config.depth, config.width) == (3, 8) and not hasattr(config, "secret")
assert config.hparams == {"depth": 3, "width": 8}

# %% ProgressBoard: each every_n points of a curve are averaged into one point
board = d2l.ProgressBoard("x")
for x in np.arange(0, 10, 0.1):
    board.draw(x, np.sin(x), "sin", every_n=2)
    board.draw(x, np.cos(x), "cos", every_n=10)
assert [len(board.data[k]) for k in ("sin", "cos")] == [50, 10]
first = board.data["cos"][0]
assert abs(first.x - 0.45) < 1e-9 and abs(first.y - np.mean(np.cos(np.arange(10) / 10))) < 1e-9


# %% the section's skeletons: a model base class, a data base class, a trainer
class Model(d2l.nn_Module, d2l.HyperParameters):
    def __init__(self, plot_train_per_epoch=2, plot_valid_per_epoch=1):
        super().__init__()
        self.save_hyperparameters()
        self.board = d2l.ProgressBoard()

    def forward(self, X):
        assert hasattr(self, "net"), "no network defined"
        return self.net(X)


class Data(d2l.HyperParameters):
    def __init__(self, root="../data", num_workers=4):
        self.save_hyperparameters()


class Fitter(d2l.HyperParameters):
    def __init__(self, max_epochs, num_gpus=0, gradient_clip_val=0):
        self.save_hyperparameters()
        assert num_gpus == 0, "No GPU support yet"


model = Model()
model.net = torch.nn.Linear(2, 1)
assert isinstance(model, torch.nn.Module) and model(torch.ones(3, 2)).shape == (3, 1)
assert model.plot_train_per_epoch == 2 and Data().num_workers == 4
assert Fitter(max_epochs=3).max_epochs == 3
print("RESULT ok")
