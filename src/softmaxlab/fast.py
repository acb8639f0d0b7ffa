"""The tuned training epoch: the same minibatch SGD as ``train.train_epoch``, every speed trick here.

An epoch of the from-scratch model is bound by two thin matrix products per batch; everything
around them is kept to a few kernels and little Python. The tricks, each with its reason:

- **Class-major scores** (C, B) = W^T X^T + b: on (N, C) with C = 10 the softmax reductions run
  over 10 columns per row and are ~10x slower than over the leading dimension.
- **W stored column-major** (``column_major``): W^T is then contiguous (nn.Linear's layout), and
  the BLAS kernels for W^T X^T and dS^T X are several times faster for these thin shapes.
- **The step folded into the backward matmul**: with no hook between gradient and step,
  W^T += -lr/B · dS^T X is one ``addmm_`` into the weights (momentum: into the velocity), with no
  gradient tensor in between.
- **Only the gradient per batch**: softmax(o) − onehot(y) in two kernels; the losses and the
  accuracy come from the scores written into a ``ScoreStore`` block (a contiguous piece per
  batch, so the product writes it and the softmax reads it without copies), folded into two
  running sums once per block of 65,536 examples (a few large kernels instead of several small
  ones per batch; no sync and no ``float()`` until the epoch's end). Cross-entropy keeps each
  example's p_y from the batch's softmax (one small gather) and folds -log p_y, not a
  logsumexp over every score: 50 ms less of a 700k-image epoch with 62 classes.
- **One reused block of scores** (``ScoreStore``): no allocation per batch; thousands of small
  tensors alive between each batch's temporaries fragment the heap (+150 MB of resident memory
  on Fashion-MNIST), and keeping every score of an epoch would take C x N floats (173 MB at
  EMNIST-byclass's 697,932 images and 62 classes).
- **Reused buffers** (``_reused_batches``): each batch is one gather and one conversion into the
  same two buffers, which the loop is done with before it asks for the next batch
  (``torch.div(uint8, 255, out=float)`` would convert into a temporary first).
- **No pass for the 1/255**: uint8 pixel values are converted as they are and the products
  scale them (their alpha: W^T (x / 255) = (W^T x) / 255), or standardisation's one
  multiply-add does (``Standardizer.apply_counts_``); the scores round differently from
  x / 255's by an ulp. A pass less over each batch: 0.1-0.2 s of a 700k-image epoch.
- **Views and constants made once**: per-epoch views of the parameters, the batches' views made
  once per size, the -1 of the one-hot cached per shape; the Python around a batch's few kernels
  is a good part of an epoch.

``FastSGD`` is the whole interface: ``train_epoch`` runs one epoch; between each batch's
**gradient** and its **step** an optional ``grad_hook`` sees the gradient (summed over the
batch's examples) and says how many examples to divide it by (an all-reduce goes there, or a
check); without a hook the step is fused into the backward matmul.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from .errors import DataError
from .models import ScratchSoftmaxRegression
from .preprocess import Standardizer
from .train import load_momentum_buffers

# grad_hook(flat_gradient, batch_examples) -> examples to divide by. flat_gradient: the batch's
# summed gradient, dW^T (C, D) then db (C,) flattened into one tensor, which the hook may change
# in place (e.g. all-reduce it); batch_examples: the examples of the whole (global) batch.
GradHook = Callable[[torch.Tensor, int], int]


@dataclass(frozen=True)
class Shard:
    """This process's part in data-parallel training: its rank among ``world_size``, a sum over
    the processes (in place), and ``rows``: None when every process holds the whole training
    set, else each rank's number of rows when each holds only its own (``--shard``)."""

    rank: int
    world_size: int
    all_reduce: Callable[[torch.Tensor], torch.Tensor]
    rows: tuple[int, ...] | None = None

    def share(self, idx: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous share of one global batch (shares differ by at most one)."""
        k = idx.shape[0]
        return idx[self.rank * k // self.world_size:(self.rank + 1) * k // self.world_size]

    def batches(self, order: torch.Tensor, batch_size: int
                ) -> tuple[list[torch.Tensor], list[int]]:
        """This rank's example indices per step, and each step's examples over all ranks.

        Replicated data: ``order`` is the global shuffle; step s is global batch s, of which
        this rank takes its share. Sharded data: ``order`` shuffles this rank's rows; every rank
        takes the same number of steps as a replicated epoch, S = ceil(N / batch_size), and in
        step s its s-th of S near-equal chunks of its shuffle, so a step's global batch is about
        batch_size examples drawn from every shard. Rank r's chunk boundaries are shifted by r/W
        of a chunk, so that shards smaller than S do not all put their rows in the same steps;
        steps no rank has an example for are left out, on every rank alike.
        """
        if self.rows is None:
            batches = order.split(batch_size)
            return [self.share(idx) for idx in batches], [idx.shape[0] for idx in batches]
        steps, world = -(-sum(self.rows) // batch_size), self.world_size

        def bounds(n: int, r: int) -> list[int]:  # from 0 to n in S steps, shifted by r/W
            return [(s * n * world + r * steps) // (steps * world) for s in range(steps + 1)]

        mine = bounds(len(order), self.rank)
        idxs = [order[mine[s]:mine[s + 1]] for s in range(steps)]
        every = [bounds(n, r) for r, n in enumerate(self.rows)]
        ks = [sum(b[s + 1] - b[s] for b in every) for s in range(steps)]
        kept = [s for s in range(steps) if ks[s]]
        return [idxs[s] for s in kept], [ks[s] for s in kept]
Prepare = Callable[[torch.Tensor], torch.Tensor]
Wrap = Callable[[Iterator, int], Iterator]


def _as_they_are(X: torch.Tensor) -> None:
    """The converted pixel values 0-255 left as they are (the products scale them)."""


def column_major(W: torch.Tensor) -> torch.Tensor:
    """W (D, C) with the same values, stored column-major (W.t() contiguous); a new leaf."""
    return W.detach().t().contiguous().t().requires_grad_(W.requires_grad)


# --------------------------------------------------------------------- the losses, class-major
# For scores (C, N) and labels (N,), without the label checks of ``functional`` (the labels were
# checked when the dataset was loaded). None changes the scores in place.

_MINUS_ONES: dict[tuple, torch.Tensor] = {}  # (dtype, device, shape) -> -1 broadcast to it


def _minus_onehot_(grad: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """grad[y_i, i] -= 1 for every column i, in place: one scatter of a broadcast constant."""
    yi = y.unsqueeze(0)
    key = (grad.dtype, grad.device, yi.shape)
    minus_ones = _MINUS_ONES.get(key)
    if minus_ones is None:
        if len(_MINUS_ONES) > 64:  # (a loop sees two shapes: the batch's and the last one's)
            _MINUS_ONES.clear()
        minus_ones = torch.tensor(-1.0, dtype=grad.dtype, device=grad.device).expand(yi.shape)
        _MINUS_ONES[key] = minus_ones
    return grad.scatter_add_(0, yi, minus_ones)


def _ce_grad_t(o_t: torch.Tensor, y: torch.Tensor,
               keep: Callable[[torch.Tensor, torch.Tensor], None] | None = None) -> torch.Tensor:
    """``functional.cross_entropy_grad`` class-major: softmax(o) - onehot(y), two kernels;
    ``keep(p, y)`` sees the softmax p first (``ScoreStore.pick``)."""
    p = torch.softmax(o_t, dim=0)
    if keep is not None:
        keep(p, y)
    return _minus_onehot_(p, y)


def _ce_value_t(o_t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``functional.cross_entropy(reduction="none")`` class-major: (C, N) -> (N,), as
    logsumexp(o) - o_y (no (C, N) log-probabilities made: 5x faster than log_softmax's)."""
    return torch.logsumexp(o_t, dim=0).sub_(o_t.gather(0, y.unsqueeze(0)).squeeze(0))


def _mse_grad_t(o_t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``functional.onehot_mse_grad`` class-major: o - onehot(y)."""
    return _minus_onehot_(o_t.clone(), y)


def _mse_value_t(o_t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``functional.onehot_mse(reduction="none")`` class-major: (C, N) -> (N,)."""
    diff = _mse_grad_t(o_t, y)
    return 0.5 * (diff * diff).sum(0)


# loss name -> (value, grad), both class-major
LOSSES_T = {"ce": (_ce_value_t, _ce_grad_t), "mse": (_mse_value_t, _mse_grad_t)}


# --------------------------------------------------------------------- an epoch's data


class ScoreStore:
    """The class-major scores (C, k) of an epoch's batches, folded into the epoch's loss and
    accuracy sums a block at a time.

    ``next(k)`` gives a contiguous (C, k) piece of the block to write a batch's scores into (the
    forward product writes it directly and the softmax reads it as it is, with no copies); when
    the block is full it is folded: ``value_t`` and the correct predictions of its examples,
    against ``labels`` (the epoch's labels in batch order), are added to ``sums`` (tensors: no
    sync), and the block is reused. Runs of pieces of one size are folded as one (C, m, k) view:
    a few kernels over many examples. ``totals()`` folds the rest: (loss sum, correct, examples)
    as float64. One block of memory (C x ``block``) whatever the data size.

    Cross-entropy (``picked=True``): the batch's softmax, made for its gradient anyway, gives
    each example's loss as -log p_y; ``pick(p, y)`` keeps p_y, and the fold takes their logs
    instead of a logsumexp over all C x block scores (a tenth of the work). Where some p_y of a
    block is below 1e-30 (rounding there is coarse, and 0 would give inf) the block's loss is
    computed from its scores as without ``picked``.
    """

    def __init__(self, num_classes: int, dtype: torch.dtype, labels: torch.Tensor,
                 value_t: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 block: int = 65536, picked: bool = False) -> None:
        self.labels, self.value_t, self.num_classes = labels, value_t, num_classes
        self.data = torch.empty(num_classes * block, dtype=dtype, device=labels.device)
        self.picked = torch.empty(1, block, dtype=dtype, device=labels.device) if picked else None
        self.sums = torch.zeros(2, dtype=torch.float64, device=labels.device)
        self.pieces: list[int] = []  # the examples of each piece in the block
        self.used = 0  # examples in the block
        self.done = 0  # examples folded so far

    def next(self, k: int) -> torch.Tensor:
        C = self.num_classes
        if (self.used + k) * C > self.data.numel():
            self._fold()
            if k * C > self.data.numel():
                self.data = self.data.new_empty(k * C)
                if self.picked is not None:
                    self.picked = self.picked.new_empty(1, k)
        view = self.data.narrow(0, self.used * C, k * C).view(C, k)
        self.used += k
        self.pieces.append(k)
        return view

    def pick(self, p_t: torch.Tensor, y: torch.Tensor) -> None:
        """Keep p_y of the last piece's examples: p_t (C, k) their softmax, y (k,) labels."""
        k = y.shape[0]
        torch.gather(p_t, 0, y.unsqueeze(0), out=self.picked.narrow(1, self.used - k, k))

    def _fold(self) -> None:
        C, start, i = self.num_classes, 0, 0
        value_sum = None
        if self.picked is not None and self.used:
            p_y = self.picked[:, :self.used]
            if not bool((p_y < 1e-30).any()):
                value_sum = p_y.log().sum().double().neg()
        while i < len(self.pieces):
            k, j = self.pieces[i], i
            while j < len(self.pieces) and self.pieces[j] == k:
                j += 1
            m = j - i  # pieces i..j-1, each (C, k): one (C, m, k) view
            o_t = self.data.narrow(0, start * C, m * k * C).view(m, C, k).transpose(0, 1)
            y = self.labels.narrow(0, self.done + start, m * k).view(m, k)
            # correct: the label's score is the largest (amax: 5x faster than max's indices;
            # a tie with another class counts as correct, where argmax would pick either)
            hit = o_t.gather(0, y.unsqueeze(0)).squeeze(0) == o_t.amax(0)
            value = self.value_t(o_t, y).double().sum() if value_sum is None else \
                value_sum if start == 0 else value_sum.new_zeros(())
            self.sums += torch.stack([value, hit.sum().double()])
            start, i = start + m * k, j
        self.done += self.used
        self.used, self.pieces = 0, []

    def totals(self) -> torch.Tensor:
        self._fold()
        return torch.cat([self.sums, self.sums.new_tensor([self.done])])


def _reused_batches(inputs: torch.Tensor, ys: Sequence[torch.Tensor],
                    idxs: Sequence[torch.Tensor], dtype: torch.dtype,
                    counts: Callable[[torch.Tensor], object] | None = None
                    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(X (k, ...) of ``dtype``, y) per batch, X in a buffer the next batch overwrites.

    inputs: uint8 images (N, H, W), each batch gathered and converted to ``dtype``, then given
    to ``counts`` (in place) when there is one, else scaled to [0, 1] exactly as
    ``ImageDataset.to_float`` (``x / 255``); or floating features (N, ...) gathered as they
    are. ys, idxs: each batch's labels and example indices.
    """
    size, shape = max(y.shape[0] for y in ys), inputs.shape[1:]  # (sharded: sizes vary)
    scale = inputs.dtype == torch.uint8
    # Images stored transposed (EMNIST's: an upright view of the file's array): gather whole
    # stored rows (contiguous copies, 2.5x faster than gathering the view's strided pixels) and
    # transpose in the conversion's one pass
    stored = inputs.transpose(1, 2) if scale and inputs.dim() == 3 and \
        not inputs.is_contiguous() and inputs.transpose(1, 2).is_contiguous() else inputs
    if scale:
        shape = (1, *shape)  # images get their channel: (k, 1, H, W), as the plain batches
    buffer = torch.empty(size, *shape, dtype=dtype, device=inputs.device)
    staging = torch.empty(size, *stored.shape[1:], dtype=inputs.dtype, device=inputs.device)
    views: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
    for y, idx in zip(ys, idxs):
        k = y.shape[0]
        view = views.get(k)
        if view is None:  # the full size, and the last batch's
            gathered = staging[:k] if scale else buffer[:k].view(k, *inputs.shape[1:])
            upright = gathered.transpose(1, 2) if stored is not inputs else gathered
            view = views[k] = (gathered, upright.unsqueeze(1) if scale else upright, buffer[:k])
        gathered, upright, dest = view
        torch.index_select(stored, 0, idx, out=gathered)
        if scale:
            # convert (and transpose) into the buffer, then work on it in place: no temporary
            # (torch.div(uint8, float, out=) would convert into one first)
            dest.copy_(upright)
            if counts is not None:
                counts(dest)
            else:
                dest.div_(255.0)  # exactly x / 255
        yield dest, y


# --------------------------------------------------------------------- the epoch


class FastSGD:
    """Minibatch SGD (momentum, weight decay: ``torch.optim.SGD``'s rule) on the scratch model.

    Takes over ``model``'s parameters: W is re-laid out column-major (same values), and both are
    updated in place. ``lr`` may change between epochs. ``state_dict`` has ``train.SGD``'s form.
    """

    def __init__(self, model: ScratchSoftmaxRegression, loss: str, lr: float,
                 momentum: float = 0.0, weight_decay: float = 0.0) -> None:
        model.W = column_major(model.W)
        self.model, self.lr, self.loss = model, lr, loss
        self.momentum, self.weight_decay = momentum, weight_decay
        self.value_t, self.grad_t = LOSSES_T[loss]
        self.buffers: list[torch.Tensor] | None = None  # velocities (W's layout, b), when used

    def _velocities(self) -> list[torch.Tensor]:
        if self.buffers is None:
            self.buffers = [torch.zeros_like(p) for p in self.model.parameters()]
        return self.buffers

    def train_epoch(self, inputs: torch.Tensor, labels: torch.Tensor, batch_size: int,
                    order: torch.Tensor, prepare: Prepare | None = None, wrap: Wrap | None = None,
                    grad_hook: GradHook | None = None, shard: Shard | None = None
                    ) -> tuple[float, float]:
        """One epoch over (inputs, labels) in ``order`` (a permutation); (mean loss, accuracy).

        inputs: uint8 images (N, H, W) (scaled to [0, 1] per batch) or floating features (N, D);
        labels (N,) int64. ``prepare(X)`` -> X for the model (may work in place on X; a
        ``Standardizer`` is folded into the uint8 conversion),
        ``wrap(batches, n)`` wraps the batch iterator (a progress bar). ``shard``: this process
        takes only its part of each step's batch (``Shard.batches``; ``grad_hook`` must then add
        the ranks' gradients), and the epoch's loss and accuracy are summed over the ranks.
        """
        W_t, b = self.model.W.t(), self.model.b  # (C, D) contiguous, (C,): views made once
        if shard is None:
            idxs = order.split(batch_size)
            labels = labels.index_select(0, order)  # the epoch's labels in one gather
            ys = labels.split(batch_size)
            ks = [y.shape[0] for y in ys]  # each batch's examples (globally: all of them)
        else:
            if grad_hook is None:
                raise ValueError("a shard needs a grad_hook that sums the ranks' gradients")
            idxs, ks = shard.batches(order, batch_size)
            labels = labels.index_select(0, torch.cat(idxs))
            ys = labels.split([idx.shape[0] for idx in idxs])
        if not ys:
            raise DataError("no training batches: the training split is empty")
        # uint8 images: the 1/255 goes into the products' alpha, W^T (x / 255) = (W^T x) / 255
        # (a pass over each batch less), or into standardisation's multiply-add (see
        # ``Standardizer.apply_counts_``); any other preparation gets x / 255 as it is
        alpha, counts = 1.0, None
        if inputs.dtype == torch.uint8:
            if prepare is None:
                alpha, counts = 1.0 / 255, _as_they_are
            elif isinstance(prepare, Standardizer):
                counts, prepare = prepare.apply_counts_, None
        batches: Iterator = _reused_batches(inputs, ys, idxs, W_t.dtype, counts)
        if prepare is not None:
            batches = ((prepare(X), y) for X, y in batches)
        if wrap is not None:
            batches = wrap(batches, len(ys))
        step = self._fused_step(W_t, b, alpha) if grad_hook is None else \
            self._hooked_step(W_t, b, grad_hook, alpha)
        ce = self.loss == "ce"  # the losses from the softmax's p_y (``ScoreStore``)
        store = ScoreStore(W_t.shape[0], W_t.dtype, labels, self.value_t, picked=ce)
        b_col, grad_t, n_in = b.unsqueeze(1), self.grad_t, W_t.shape[1]
        with torch.no_grad():
            for (X, y), k in zip(batches, ks):
                n = y.shape[0]  # this process's examples (len(tensor) is slow in this loop)
                X2 = X.reshape(n, n_in)
                o_t = torch.addmm(b_col, W_t, X2.t(), alpha=alpha, out=store.next(n))  # (C, n)
                step(X2, grad_t(o_t, y, store.pick) if ce else grad_t(o_t, y), k)
            sums = store.totals()
        if shard is not None:
            shard.all_reduce(sums)
        loss_sum, correct, n = sums.tolist()
        return loss_sum / n, correct / n

    def _fused_step(self, W_t: torch.Tensor, b: torch.Tensor, alpha: float
                    ) -> Callable[[torch.Tensor, torch.Tensor, int], None]:
        """step(X2 (k, D), d_t (C, k), k): the gradient alpha d_t X2 / k and the SGD step in
        one (alpha: the inputs' scale, see ``train_epoch``)."""
        lr, momentum, weight_decay = self.lr, self.momentum, self.weight_decay
        if not momentum and not weight_decay:
            def sgd_step(X2: torch.Tensor, d_t: torch.Tensor, k: int) -> None:
                W_t.addmm_(d_t, X2, alpha=-lr * alpha / k)
                b.add_(d_t.sum(1), alpha=-lr / k)

            return sgd_step
        vW, vb = self._velocities()
        vW_t = vW.t()

        def momentum_step(X2: torch.Tensor, d_t: torch.Tensor, k: int) -> None:
            vW_t.addmm_(d_t, X2, beta=momentum, alpha=alpha / k)  # v = m v + g / k
            if momentum:
                vb.mul_(momentum)
            else:
                vb.zero_()
            vb.add_(d_t.sum(1), alpha=1.0 / k)
            if weight_decay:
                vW_t.add_(W_t, alpha=weight_decay)
                vb.add_(b, alpha=weight_decay)
            W_t.sub_(vW_t, alpha=lr)
            b.sub_(vb, alpha=lr)

        return momentum_step

    def _hooked_step(self, W_t: torch.Tensor, b: torch.Tensor, hook: GradHook, alpha: float
                     ) -> Callable[[torch.Tensor, torch.Tensor, int], None]:
        """step(X2, d_t, k): the summed gradient into one flat buffer, ``hook``, then the step."""
        C, D = W_t.shape
        flat = torch.empty(C * D + C, dtype=W_t.dtype, device=W_t.device)
        gW_t, gb = flat[:C * D].view(C, D), flat[C * D:]
        lr, momentum, weight_decay = self.lr, self.momentum, self.weight_decay
        velocities = self._velocities() if momentum or weight_decay else None

        def step(X2: torch.Tensor, d_t: torch.Tensor, k: int) -> None:
            torch.addmm(gW_t, d_t, X2, beta=0, alpha=alpha, out=gW_t)
            torch.sum(d_t, 1, out=gb)
            n = hook(flat, k)
            if velocities is None:
                W_t.sub_(gW_t, alpha=lr / n)
                b.sub_(gb, alpha=lr / n)
                return
            vW_t, vb = velocities[0].t(), velocities[1]
            for p, v, g in ((W_t, vW_t, gW_t), (b, vb, gb)):
                v.mul_(momentum).add_(g, alpha=1.0 / n).add_(p, alpha=weight_decay)
                p.sub_(v, alpha=lr)

        return step

    def state_dict(self) -> dict:
        """{"state": {index: {"momentum_buffer": tensor}}}, as ``train.SGD`` and torch's SGD."""
        buffers = self.buffers or []
        return {"state": {i: {"momentum_buffer": v} for i, v in enumerate(buffers)}}

    def load_state_dict(self, state: dict) -> None:
        self.buffers = load_momentum_buffers(self.model.parameters(), state)
