"""Train a small classifier with its loss computed by lossd.

    python examples/train_remote_loss.py [URL]        (default http://localhost:8000)

A two-layer network learns three Gaussian blobs; the cross-entropy and its gradient come from
the lossd server at URL (``RemoteLoss``: forward on the server, backward from the gradient it
returned). Prints the mean loss of each epoch. Needs ``pip install 'lossd[torch]'``.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from lossd import Client
from lossd.torch import RemoteLoss


def blobs(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points around three centres in 2-D, and their class."""
    centres = torch.tensor([[0.0, 2.0], [-2.0, -1.0], [2.0, -1.0]])
    labels = torch.randint(0, 3, (n,), generator=generator)
    points = centres[labels] + 0.8 * torch.randn(n, 2, generator=generator)
    return points, labels


def main() -> None:
    """Train for ``--epochs`` epochs against the server at ``url``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", nargs="?", default="http://localhost:8000")
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()

    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    points, labels = blobs(512, generator)
    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with Client(args.url) as client:
        criterion = RemoteLoss("cross_entropy", client, label_smoothing=0.05)
        for epoch in range(1, args.epochs + 1):
            total = 0.0
            for batch in torch.randperm(len(points), generator=generator).split(64):
                optimizer.zero_grad()
                loss = criterion(model(points[batch]), labels[batch])
                loss.backward()
                optimizer.step()
                total += loss.item() * len(batch)
            print(f"epoch {epoch}: loss {total / len(points):.4f}")


if __name__ == "__main__":
    main()
