"""``python -m lightning_mixup.bench``: see :mod:`lightning_mixup.bench`."""

from lightning_mixup.bench import main

main()
