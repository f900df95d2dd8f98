"""fluxlenet: the Flux.jl LeNet-5 write-up, reproduced in Flux.jl and PyTorch side by side.

Importing the package imports neither torch nor juliacall: each backend run happens in
its own spawned worker, and the Flux worker must import juliacall before torch.
"""

__version__ = "0.1.0"
