"""Published figures shipped with the package (copies of the project's shared reference files).

- blog-2021-epoch-logs.csv: every epoch line of the LeNet-5 / Flux.jl post ("How my LeNet
  achieves 99% accuracy", 2021): baseline, batch-size, L2 and optimizer sweeps, 10 epochs
  each, with the seconds of each epoch (the first includes compilation). Flux 0.12.4,
  Julia 1.6.2, an 8-core desktop CPU, MNIST.
- published-results.csv: the final figures of the three source write-ups (the post, a
  CIFAR-10 learning-rate study, a LeNet architecture-variants report).

Read them with `parity.published`.
"""
