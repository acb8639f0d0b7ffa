"""Dive into Deep Learning, chapter 3, on softmaxlab: the Fashion-MNIST dataset, softmax regression
from scratch, then the concise implementation.

The chapter's code with ``from d2l import torch as d2l`` changed to ``from softmaxlab import d2l``;
it runs in a terminal, no Jupyter needed. Run it from the folder the figures should go to:

    python examples/chapter3_softmax_regression.py            # the chapter's 10 epochs
    python examples/chapter3_softmax_regression.py --epochs 20

It writes show_images.png (a peek at the data), animator.png and predict_ch3.png (from scratch)
and animator-2.png (concise), and prints one line per epoch. After 10 epochs expect, for both
models, train loss ~0.45, train acc ~0.85, test acc ~0.82-0.84 (the book: 0.45 / 0.85 / 0.82-0.83);
an epoch takes a fraction of a second on a 2-core CPU. ``train_ch3`` ends with the chapter's
checks (train loss < 0.5, accuracies > 0.7): with fewer than about 5 epochs the train-loss check
fails with an AssertionError, as the book's would.
"""

import argparse

import torch
from torch import nn

from softmaxlab import d2l


def the_dataset() -> None:
    """3.5 The image classification dataset."""
    train_iter, test_iter = d2l.load_data_fashion_mnist(18)
    print(len(train_iter.dataset), len(test_iter.dataset))  # 60000 10000
    X, y = next(iter(train_iter))  # 18 training images (shuffled)
    d2l.show_images(X.reshape(18, 28, 28), 2, 9, titles=d2l.get_fashion_mnist_labels(y))

    train_iter, test_iter = d2l.load_data_fashion_mnist(256)
    timer = d2l.Timer()
    for X, y in train_iter:
        continue
    print(f"{timer.stop():.2f} sec to read the training set once")

    train_iter, test_iter = d2l.load_data_fashion_mnist(32, resize=64)
    for X, y in train_iter:
        print(X.shape, X.dtype, y.shape, y.dtype)  # [32, 1, 64, 64] float32, [32] int64
        break


def from_scratch(num_epochs: int) -> None:
    """3.6 Softmax regression from scratch."""
    batch_size = 256
    train_iter, test_iter = d2l.load_data_fashion_mnist(batch_size)

    num_inputs = 784  # 28 x 28 pixels, flattened
    num_outputs = 10  # classes
    W = torch.normal(0, 0.01, size=(num_inputs, num_outputs), requires_grad=True)
    b = torch.zeros(num_outputs, requires_grad=True)

    X = torch.normal(0, 1, (2, 5))
    X_prob = d2l.softmax(X)
    print(X_prob, X_prob.sum(1))  # each row sums to 1

    def net(X):
        return d2l.softmax(torch.matmul(X.reshape((-1, W.shape[0])), W) + b)

    y = torch.tensor([0, 2])
    y_hat = torch.tensor([[0.1, 0.3, 0.6], [0.3, 0.2, 0.5]])
    print(y_hat[[0, 1], y])  # tensor([0.1000, 0.5000]): each row's probability of its label
    print(d2l.cross_entropy(y_hat, y))  # tensor([2.3026, 0.6931])
    print(d2l.accuracy(y_hat, y) / len(y))  # 0.5
    print(d2l.evaluate_accuracy(net, test_iter))  # ~0.1 before training: a guess among 10

    lr = 0.1

    def updater(batch_size):
        return d2l.sgd([W, b], lr, batch_size)

    d2l.train_ch3(net, train_iter, test_iter, d2l.cross_entropy, num_epochs, updater)
    d2l.predict_ch3(net, test_iter)


def concise(num_epochs: int) -> None:
    """3.7 Concise implementation of softmax regression."""
    batch_size = 256
    train_iter, test_iter = d2l.load_data_fashion_mnist(batch_size)

    # PyTorch does not reshape the inputs implicitly: Flatten turns (B, 1, 28, 28) into (B, 784)
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))

    def init_weights(m):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.01)

    net.apply(init_weights)
    loss = nn.CrossEntropyLoss(reduction="none")  # from the logits, numerically stable
    trainer = torch.optim.SGD(net.parameters(), lr=0.1)
    d2l.train_ch3(net, train_iter, test_iter, loss, num_epochs, trainer)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10,
                        help="epochs of each training run (fewer than ~5 fail the chapter's "
                             "train-loss check)")
    parser.add_argument("--seed", type=int, default=0,
                        help="torch.manual_seed: the weights' draw and the shuffles")
    args = parser.parse_args()
    if args.epochs < 1:
        parser.error(f"--epochs {args.epochs} is not allowed; it must be >= 1")
    torch.manual_seed(args.seed)

    print("== 3.5 the image classification dataset")
    the_dataset()
    print("== 3.6 softmax regression from scratch")
    from_scratch(args.epochs)
    print("== 3.7 concise implementation")
    concise(args.epochs)


if __name__ == "__main__":
    main()
