"""d2l-en 1.x, 3.4 "linear regression implementation from scratch", on softmaxlab.d2l.

Our own script, not the book's text: a ``d2l.Module`` subclass with its parameters from
``d2l.normal`` / ``d2l.zeros``; ``forward``, ``loss`` and ``configure_optimizers`` (an SGD of its
own on ``d2l.HyperParameters``) added with ``add_to_class``; ``prepare_batch`` and ``fit_epoch``
replaced on ``d2l.Trainer`` itself; then ``d2l.Trainer(max_epochs=3).fit`` on
``d2l.SyntheticRegressionData`` must run the replacements and recover w and b.
"""

# %%
import torch

from softmaxlab import d2l

torch.manual_seed(0)


class LinearScratch(d2l.Module):
    def __init__(self, num_inputs, lr, sigma=0.01):
        super().__init__()
        self.save_hyperparameters()
        self.w = d2l.normal(0, sigma, (num_inputs, 1), requires_grad=True)
        self.b = d2l.zeros(1, requires_grad=True)


@d2l.add_to_class(LinearScratch)
def forward(self, X):
    return d2l.matmul(X, self.w) + self.b


@d2l.add_to_class(LinearScratch)
def loss(self, y_hat, y):
    return d2l.reduce_mean((y_hat - y) ** 2 / 2)


class PlainSGD(d2l.HyperParameters):
    def __init__(self, params, lr):
        self.save_hyperparameters()

    def step(self):
        for p in self.params:
            p -= self.lr * p.grad

    def zero_grad(self):
        for p in self.params:
            if p.grad is not None:
                p.grad.zero_()


@d2l.add_to_class(LinearScratch)
def configure_optimizers(self):
    return PlainSGD([self.w, self.b], self.lr)


# %% the training loop, replaced on the Trainer class (fit must call these)
calls = {"prepare_batch": 0, "fit_epoch": 0}


@d2l.add_to_class(d2l.Trainer)
def prepare_batch(self, batch):
    calls["prepare_batch"] += 1
    return batch


@d2l.add_to_class(d2l.Trainer)
def fit_epoch(self):
    calls["fit_epoch"] += 1
    self.model.train()
    for batch in self.train_dataloader:
        loss = self.model.training_step(self.prepare_batch(batch))
        self.optim.zero_grad()
        with torch.no_grad():
            loss.backward()
            if self.gradient_clip_val > 0:
                self.clip_gradients(self.gradient_clip_val, self.model)
            self.optim.step()
        self.train_batch_idx += 1
    self.model.eval()
    for batch in self.val_dataloader:
        with torch.no_grad():
            self.model.validation_step(self.prepare_batch(batch))
        self.val_batch_idx += 1


# %% train for 3 epochs at lr 0.03 and compare with the true parameters
model = LinearScratch(2, lr=0.03)
data = d2l.SyntheticRegressionData(w=d2l.tensor([2, -3.4]), b=4.2)
trainer = d2l.Trainer(max_epochs=3)
trainer.fit(model, data)
assert calls == {"fit_epoch": 3, "prepare_batch": 3 * (32 + 32)}, calls
with torch.no_grad():
    w_error = data.w - d2l.reshape(model.w, data.w.shape)
    b_error = data.b - model.b
print(f"RESULT error in w {w_error.tolist()}, in b {b_error.tolist()}")
assert float(w_error.abs().max()) < 0.5 and float(b_error.abs().max()) < 0.5
assert [len(model.board.data[k]) for k in ("train_loss", "val_loss")] == [6, 3]
