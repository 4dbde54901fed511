"""The paper's experiments as Hydra multirun presets plus a small driver (``python -m warmserve.experiments``)."""
