"""The peer: the book's pipeline, rebuilt with torch + PIL only (torchvision cannot be installed here).

A per-sample ``Dataset`` turns each uint8 image into a PIL image and then into a float tensor
exactly as torchvision's ``ToTensor`` does; a ``DataLoader(batch_size=256, shuffle=True,
num_workers=N)`` feeds the chapter's from-scratch model (naive softmax, index-picking
cross-entropy, ``sgd``) trained by the chapter's ``train_epoch_ch3`` loop with a test evaluation
each epoch. Run as a script it trains once and prints a JSON line with its timings, so the
benchmark can time the whole command too.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from PIL import Image
from torch.utils import data


class FashionMNISTLike(data.Dataset):
    """torchvision.datasets.FashionMNIST's __getitem__ with transform=ToTensor()."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.data, self.targets = images, labels

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        img, target = self.data[index], int(self.targets[index])
        img = Image.fromarray(img.numpy(), mode="L")
        return to_tensor(img), target


def to_tensor(pic: Image.Image) -> torch.Tensor:
    """torchvision.transforms.functional.to_tensor for a PIL image of mode L."""
    img = torch.from_numpy(np.array(pic, np.uint8, copy=True))
    img = img.view(pic.size[1], pic.size[0], 1)
    img = img.permute((2, 0, 1)).contiguous()
    return img.to(dtype=torch.get_default_dtype()).div(255)


# ---------------------------------------------------------------- the chapter's code

def softmax(X):
    X_exp = torch.exp(X)
    partition = X_exp.sum(1, keepdim=True)
    return X_exp / partition


def cross_entropy(y_hat, y):
    return -torch.log(y_hat[range(len(y_hat)), y])


def accuracy(y_hat, y):
    if len(y_hat.shape) > 1 and y_hat.shape[1] > 1:
        y_hat = y_hat.argmax(axis=1)
    cmp = y_hat.type(y.dtype) == y
    return float(cmp.type(y.dtype).sum())


class Accumulator:
    def __init__(self, n):
        self.data = [0.0] * n

    def add(self, *args):
        self.data = [a + float(b) for a, b in zip(self.data, args)]

    def __getitem__(self, idx):
        return self.data[idx]


def evaluate_accuracy(net, data_iter):
    metric = Accumulator(2)
    with torch.no_grad():
        for X, y in data_iter:
            metric.add(accuracy(net(X), y), y.numel())
    return metric[0] / metric[1]


def sgd(params, lr, batch_size):
    with torch.no_grad():
        for param in params:
            param -= lr * param.grad / batch_size
            param.grad.zero_()


def train_epoch_ch3(net, train_iter, loss, updater):
    metric = Accumulator(3)
    for X, y in train_iter:
        y_hat = net(X)
        l = loss(y_hat, y)
        l.sum().backward()
        updater(X.shape[0])
        metric.add(float(l.sum()), accuracy(y_hat, y), y.numel())
    return metric[0] / metric[2], metric[1] / metric[2]


def run(images_train, labels_train, images_test, labels_test, workers: int, epochs: int = 10,
        batch_size: int = 256, lr: float = 0.1, seed: int = 0) -> dict:
    """Train the chapter's model through the per-sample pipeline; timings and final metrics."""
    torch.manual_seed(seed)
    train_iter = data.DataLoader(FashionMNISTLike(images_train, labels_train), batch_size,
                                 shuffle=True, num_workers=workers)
    test_iter = data.DataLoader(FashionMNISTLike(images_test, labels_test), batch_size,
                                shuffle=False, num_workers=workers)
    W = torch.normal(0, 0.01, size=(784, 10), requires_grad=True)
    b = torch.zeros(10, requires_grad=True)

    def net(X):
        return softmax(torch.matmul(X.reshape((-1, W.shape[0])), W) + b)

    def updater(n):
        return sgd([W, b], lr, n)

    train_seconds, total0 = 0.0, time.perf_counter()
    for _ in range(epochs):
        t0 = time.perf_counter()
        train_loss, train_acc = train_epoch_ch3(net, train_iter, cross_entropy, updater)
        train_seconds += time.perf_counter() - t0
        test_acc = evaluate_accuracy(net, test_iter)
    return {"workers": workers, "train_seconds": train_seconds,
            "loop_seconds": time.perf_counter() - total0, "train_loss": train_loss,
            "train_acc": train_acc, "test_acc": test_acc}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--epochs", type=int, default=10)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from softmaxlab.data import load_dataset  # the same files, found the same way

    train, test = load_dataset()
    print(json.dumps(run(train.images, train.labels, test.images, test.labels, args.workers,
                         args.epochs)))


if __name__ == "__main__":
    main()
